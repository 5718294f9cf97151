//! The headers dockerd puts on every answer (moby's version and experimental
//! middlewares: `Server`, `Api-Version`, `Ostype`, `Docker-Experimental`),
//! remembered from dockerd's answers so that the answers the proxy gives
//! itself (refusals, Docker's answers for a feature that is off) carry them
//! too, as a client talking to dockerd would see them.

#![forbid(unsafe_code)]

use std::sync::RwLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The headers dockerd sets on every answer, whatever the endpoint.
static NAMES: [HeaderName; 4] = [
    HeaderName::from_static("server"),
    HeaderName::from_static("api-version"),
    HeaderName::from_static("ostype"),
    HeaderName::from_static("docker-experimental"),
];

/// The last seen values of [`NAMES`], in their order (none until dockerd
/// answered once).
#[derive(Debug, Default)]
pub struct DaemonHeaders {
    seen: RwLock<Option<Values>>,
}

type Values = [Option<HeaderValue>; 4];

impl DaemonHeaders {
    /// Remembers dockerd's values from one of its answers (as the client
    /// gets it: `Api-Version` already capped). A read lock when they have not
    /// changed, which is always but after a daemon upgrade.
    pub fn remember(&self, answer: &HeaderMap) {
        if !answer.contains_key(&NAMES[0]) {
            return;
        }
        let unchanged = |seen: &Values| {
            let mut pairs = NAMES.iter().zip(seen);
            pairs.all(|(name, value)| value.as_ref() == answer.get(name))
        };
        if self.read().as_ref().is_some_and(unchanged) {
            return;
        }
        let values = std::array::from_fn(|i| answer.get(&NAMES[i]).cloned());
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = Some(values);
    }

    /// Puts dockerd's values on an answer the proxy gives itself.
    pub fn stamp(&self, answer: &mut HeaderMap) {
        if let Some(seen) = self.read().as_ref() {
            for (name, value) in NAMES.iter().zip(seen) {
                if let Some(value) = value {
                    answer.insert(name.clone(), value.clone());
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Values>> {
        self.seen.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn dockerd_s_own_headers_are_copied_and_nothing_else() {
        let daemon = DaemonHeaders::default();
        let mut answer = headers(&[("content-type", "application/json")]);
        daemon.stamp(&mut answer);
        assert_eq!(answer.len(), 1, "nothing known yet: nothing added");
        daemon.remember(&headers(&[
            ("server", "Docker/28.5.2 (linux)"),
            ("api-version", "1.41"),
            ("ostype", "linux"),
            ("docker-experimental", "false"),
            ("content-length", "3"),
            ("date", "Mon, 01 Jan 2026 00:00:00 GMT"),
        ]));
        daemon.stamp(&mut answer);
        assert_eq!(
            answer,
            headers(&[
                ("content-type", "application/json"),
                ("server", "Docker/28.5.2 (linux)"),
                ("api-version", "1.41"),
                ("ostype", "linux"),
                ("docker-experimental", "false"),
            ])
        );
    }

    #[test]
    fn an_upgraded_daemon_s_values_replace_the_old_ones() {
        let daemon = DaemonHeaders::default();
        daemon.remember(&headers(&[
            ("server", "Docker/20.10.24 (linux)"),
            ("api-version", "1.41"),
        ]));
        // Answers without dockerd's headers (a hijacked stream's) change nothing.
        daemon.remember(&headers(&[("content-type", "text/plain")]));
        daemon.remember(&headers(&[
            ("server", "Docker/28.5.2 (linux)"),
            ("api-version", "1.41"),
        ]));
        let mut answer = HeaderMap::new();
        daemon.stamp(&mut answer);
        assert_eq!(answer["server"], "Docker/28.5.2 (linux)");
    }
}
