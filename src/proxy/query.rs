//! Query strings parsed as Go's `url.ParseQuery` parses them for dockerd, and
//! re-encoded by the proxy, so the parameters it checked are the ones dockerd reads.

#![forbid(unsafe_code)]

use percent_encoding::percent_decode;

use super::policy::Reject;

/// The parameters of a query string, in order, duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Parses like Go: `&`-separated `key=value` pairs, `+` is a space, and a
    /// `;` or a bad escape is an error (dockerd answers 400 to those).
    pub fn parse(raw: &str) -> Result<Query, Reject> {
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            if part.contains(';') {
                return Err(Reject::bad_request(
                    "query",
                    "a `;` in the query string is not accepted",
                ));
            }
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((unescape(key)?, unescape(value)?));
        }
        Ok(Query(pairs))
    }

    /// What dockerd's `r.FormValue(name)` returns: the first value.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(k, _)| k == name).count()
    }

    /// Replaces every value of `name` with one `value` (appended when absent).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter().position(|(k, _)| k == name) {
            Some(i) => {
                self.0[i].1 = value.to_string();
                let mut seen = 0;
                self.0.retain(|(k, _)| {
                    k != name || {
                        seen += 1;
                        seen == 1
                    }
                });
            }
            None => self.0.push((name.to_string(), value.to_string())),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

fn unescape(s: &str) -> Result<String, Reject> {
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        let valid = bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if !valid {
            return Err(Reject::bad_request(
                "query",
                format!("bad escape in query string: {s:?}"),
            ));
        }
    }
    let plus_as_space = s.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            Reject::bad_request("query", "the query string is not valid UTF-8 once decoded")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reencodes_like_go() {
        let q = Query::parse("t=a%2Fb&t=c+d&x&networkmode=%68ost").unwrap();
        assert_eq!(q.first("t"), Some("a/b"));
        assert_eq!(q.count("t"), 2);
        assert_eq!(q.first("x"), Some(""));
        assert_eq!(q.first("networkmode"), Some("host"));
        assert_eq!(q.encode(), "t=a%2Fb&t=c+d&x=&networkmode=host");
    }

    #[test]
    fn semicolons_and_bad_escapes_are_refused() {
        assert!(Query::parse("a=1;networkmode=host").is_err());
        assert!(Query::parse("a=%zz").is_err());
        assert!(Query::parse("a=%4").is_err());
    }
}
