//! The Engine API versions the proxy serves: the window from [`MIN_API`] up to
//! the newest version both the daemon and the policy know.
//!
//! A request is served at the version it names (`/v1.51/...`); one without a
//! version at the window's newest, as dockerd serves an unversioned request
//! at its own newest. A version outside the window is refused with dockerd's
//! own words and status (moby `api/server/middleware/version.go` in v28.5.2,
//! `daemon/server/middleware/version.go` in docker-v29.7.2). A version inside
//! the window but below the daemon's own minimum (1.44 on 29.0 to 29.2) is
//! forwarded, and dockerd answers it itself.
//!
//! The daemon states its newest version in `Api-Version` on every answer and
//! in `/version`'s `ApiVersion`: the proxy learns it before it serves the
//! first request ([`DaemonApi`]) and follows every answer after, so a daemon
//! upgraded underneath is followed. Answers state the window's newest
//! (`Api-Version`, `/version`), so clients negotiate to it.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use tracing::{info, warn};

use super::policy::{versions, Reject};

/// The newest Engine API version whose request schemas the policy knows
/// (Docker 29.6 and 29.7; the last of [`versions::VERSIONS`]). A newer daemon
/// is served at this version.
pub const POLICY_MAX_API: ApiVersion =
    ApiVersion(versions::NEWEST_KNOWN.0, versions::NEWEST_KNOWN.1);
/// The oldest version the proxy serves: the oldest any dockerd since 20.10
/// accepts (29.x accepts 1.40 or 1.44 and up, and answers older ones itself).
pub const MIN_API: ApiVersion = ApiVersion(1, 24);

/// An Engine API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses like dockerd's `versions.compare`: dot-separated numbers, where
    /// `1.41.`, `01.041` and `1.41.0` all mean 1.41. A third non-zero part is
    /// not a version any daemon has, so it is refused, as is a part past u32.
    /// `tests/go_differential.rs` checks that a version read here is the one
    /// `versions.compare` reads.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let mut parts = text.split('.').map(|p| match p {
            "" => Some(0),
            p => p.parse::<u32>().ok(),
        });
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        for rest in parts {
            if rest? != 0 {
                return None;
            }
        }
        Some(ApiVersion(major, minor))
    }

    /// Appends `MAJOR.MINOR`, as `Display` writes it (a forwarded target is
    /// built on every request, so without `core::fmt`).
    pub fn push_to(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self.0));
        out.push('.');
        out.push_str(itoa::Buffer::new().format(self.1));
    }

    fn header(self) -> HeaderValue {
        HeaderValue::from_str(&self.to_string()).expect("a version is a valid header value")
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The version a request names: as the client spelt it (dockerd's refusals
/// quote it so) and as dockerd reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested<'a> {
    pub text: &'a str,
    pub version: ApiVersion,
}

/// The versions served: [`MIN_API`] to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub max: ApiVersion,
}

impl Window {
    /// Every version the policy knows, as if the daemon knew them all.
    pub const POLICY: Window = Window {
        max: POLICY_MAX_API,
    };

    /// The window in front of a daemon whose newest version is `daemon_max`.
    pub fn with_daemon(daemon_max: ApiVersion) -> Window {
        Window {
            max: daemon_max.min(POLICY_MAX_API),
        }
    }

    /// The version to serve a request at: the one it names, else the newest.
    pub fn serve(&self, requested: Option<Requested<'_>>) -> Result<ApiVersion, Reject> {
        let Some(Requested { text, version }) = requested else {
            return Ok(self.max);
        };
        if version < MIN_API {
            return Err(unsupported(format!(
                "client version {text} is too old. Minimum supported API version is {MIN_API}, \
                 please upgrade your client to a newer version"
            )));
        }
        if version > self.max {
            return Err(unsupported(format!(
                "client version {text} is too new. Maximum supported API version is {}",
                self.max
            )));
        }
        Ok(version)
    }
}

/// dockerd's `versionUnsupportedError`: 400, its message without a prefix.
fn unsupported(message: String) -> Reject {
    Reject {
        status: StatusCode::BAD_REQUEST,
        rule: "api-version",
        message,
    }
}

/// The one warning about a daemon newer than the policy: `None` when the
/// policy knows every version the daemon serves.
pub fn newer_than_policy(daemon_max: ApiVersion) -> Option<String> {
    (daemon_max > POLICY_MAX_API).then(|| {
        format!(
            "dockerd serves Engine API {daemon_max}, newer than {POLICY_MAX_API}, the newest \
             whose requests dindbox's policy knows: the proxy serves up to {POLICY_MAX_API} \
             (clients negotiate down to it) and refuses newer versions; update dindbox to serve \
             {daemon_max}"
        )
    })
}

/// The header every answer states its newest API version in.
const API_VERSION: HeaderName = HeaderName::from_static("api-version");

/// The daemon's newest API version as it last stated it, shared by every
/// connection; unknown until the daemon first answers.
#[derive(Debug, Default)]
pub struct DaemonApi {
    /// `major << 16 | minor`; 0 while unknown.
    packed: AtomicU32,
}

impl DaemonApi {
    /// The window in front of the daemon, once its newest version is known.
    pub fn window(&self) -> Option<Window> {
        unpack(self.packed.load(Ordering::Relaxed)).map(Window::with_daemon)
    }

    /// Records the newest version the daemon states; says so when it changes
    /// (the first time, or a daemon upgraded underneath), with the warning
    /// when the policy does not know it. Versions older than [`MIN_API`] are
    /// no daemon's and are ignored.
    pub fn heard(&self, daemon_max: ApiVersion) {
        let Some(packed) = pack(daemon_max) else {
            return;
        };
        let before = unpack(self.packed.swap(packed, Ordering::Relaxed));
        if before == Some(daemon_max) {
            return;
        }
        let served = Window::with_daemon(daemon_max).max;
        match before {
            None => info!(dockerd_api = %daemon_max, served_api = %served, "dockerd's API version"),
            Some(before) => info!(
                dockerd_api = %daemon_max,
                before = %before,
                served_api = %served,
                "dockerd's API version changed"
            ),
        }
        if let Some(warning) = newer_than_policy(daemon_max) {
            warn!(dockerd_api = %daemon_max, policy_api = %POLICY_MAX_API, "{warning}");
        }
    }

    /// Records the `Api-Version` an answer of the daemon states.
    pub fn heard_in(&self, headers: &HeaderMap) {
        if let Some(version) = stated_version(headers) {
            self.heard(version);
        }
    }

    /// Records the `Api-Version` an answer of the daemon states, and makes it
    /// state the window's newest instead where they differ (a daemon newer
    /// than the policy).
    pub fn relay(&self, headers: &mut HeaderMap) {
        let stated = stated_version(headers);
        if let Some(version) = stated {
            self.heard(version);
        }
        match self.window() {
            Some(window) if stated != Some(window.max) => {
                headers.insert(API_VERSION, window.max.header());
            }
            _ => {}
        }
    }

    /// Makes an answer state the window's newest version, as dockerd states
    /// its own: clients negotiate from `Api-Version` (`/_ping` above all).
    pub fn advertise(&self, headers: &mut HeaderMap) {
        if let Some(window) = self.window() {
            headers.insert(API_VERSION, window.max.header());
        }
    }
}

/// The version in an `Api-Version` header.
pub fn stated_version(headers: &HeaderMap) -> Option<ApiVersion> {
    headers
        .get(API_VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(ApiVersion::parse)
}

fn pack(version: ApiVersion) -> Option<u32> {
    let (major, minor) = (
        u16::try_from(version.0).ok()?,
        u16::try_from(version.1).ok()?,
    );
    (version >= MIN_API).then(|| u32::from(major) << 16 | u32::from(minor))
}

fn unpack(packed: u32) -> Option<ApiVersion> {
    (packed != 0).then_some(ApiVersion(packed >> 16, packed & 0xffff))
}

/// States `cap` wherever a `GET /version` answer states an API version above
/// it: the top-level `ApiVersion` and the Engine component's (`docker version`
/// prints the latter). `MinAPIVersion` stays the daemon's.
pub fn cap_version_answer(answer: &mut serde_json::Value, cap: ApiVersion) {
    let cap_one = |v: &mut serde_json::Value| {
        if v.as_str()
            .and_then(ApiVersion::parse)
            .is_some_and(|v| v > cap)
        {
            *v = cap.to_string().into();
        }
    };
    if let Some(v) = answer.get_mut("ApiVersion") {
        cap_one(v);
    }
    if let Some(components) = answer.get_mut("Components").and_then(|c| c.as_array_mut()) {
        for details in components.iter_mut().filter_map(|c| c.get_mut("Details")) {
            if let Some(v) = details.get_mut("ApiVersion") {
                cap_one(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_51: ApiVersion = ApiVersion(1, 51);

    fn at(text: &str) -> Option<Requested<'_>> {
        let version = ApiVersion::parse(text).unwrap();
        Some(Requested { text, version })
    }

    #[test]
    fn versions_parse_like_dockerd() {
        for text in ["1.41", "1.41.", "01.041", "1.41.0"] {
            assert_eq!(ApiVersion::parse(text), Some(ApiVersion(1, 41)), "{text}");
        }
        assert_eq!(ApiVersion::parse("1.41.1"), None);
        assert_eq!(ApiVersion::parse("1.x"), None);
        assert_eq!(ApiVersion::parse("1"), Some(ApiVersion(1, 0)));
        assert_eq!(ApiVersion::parse("1.41.0.0"), Some(ApiVersion(1, 41)));
        assert_eq!(ApiVersion::parse("1.41.0.2"), None);
        assert_eq!(ApiVersion::parse(".41"), Some(ApiVersion(0, 41)));
    }

    #[test]
    fn push_to_writes_what_display_writes() {
        for version in [
            ApiVersion(1, 24),
            ApiVersion(1, 52),
            ApiVersion(0, 0),
            ApiVersion(u32::MAX, 7),
        ] {
            let mut pushed = String::from("/v");
            version.push_to(&mut pushed);
            assert_eq!(pushed, format!("/v{version}"));
        }
    }

    #[test]
    fn the_window_is_the_older_of_the_daemons_newest_and_the_policys() {
        assert_eq!(
            Window::with_daemon(ApiVersion(1, 41)).max,
            ApiVersion(1, 41)
        );
        assert_eq!(Window::with_daemon(V1_51).max, V1_51);
        assert_eq!(Window::with_daemon(ApiVersion(1, 55)).max, POLICY_MAX_API);
        assert_eq!(Window::with_daemon(ApiVersion(1, 56)).max, POLICY_MAX_API);
        assert_eq!(Window::with_daemon(ApiVersion(2, 0)).max, POLICY_MAX_API);
    }

    #[test]
    fn a_request_is_served_at_its_version_or_unversioned_at_the_newest() {
        let window = Window::with_daemon(V1_51);
        assert_eq!(window.serve(None), Ok(V1_51));
        assert_eq!(window.serve(at("1.51")), Ok(V1_51));
        assert_eq!(window.serve(at("1.43")), Ok(ApiVersion(1, 43)));
        assert_eq!(window.serve(at("1.24")), Ok(MIN_API));
    }

    #[test]
    fn versions_outside_the_window_are_refused_in_dockerds_words() {
        let window = Window::with_daemon(V1_51);
        let too_new = window.serve(at("1.52")).unwrap_err();
        assert_eq!(too_new.status, StatusCode::BAD_REQUEST);
        assert_eq!(too_new.rule, "api-version");
        assert_eq!(
            too_new.message,
            "client version 1.52 is too new. Maximum supported API version is 1.51"
        );
        // dockerd quotes the version as the client spelt it.
        assert_eq!(
            window.serve(at("01.052")).unwrap_err().message,
            "client version 01.052 is too new. Maximum supported API version is 1.51"
        );
        let too_old = window.serve(at("1.23")).unwrap_err();
        assert_eq!(too_old.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            too_old.message,
            "client version 1.23 is too old. Minimum supported API version is 1.24, please \
             upgrade your client to a newer version"
        );
        assert_eq!(
            Window::with_daemon(ApiVersion(1, 56))
                .serve(at("1.56"))
                .unwrap_err()
                .message,
            "client version 1.56 is too new. Maximum supported API version is 1.55"
        );
    }

    #[test]
    fn only_a_daemon_newer_than_the_policy_is_warned_about() {
        for quiet in [ApiVersion(1, 41), V1_51, POLICY_MAX_API] {
            assert_eq!(newer_than_policy(quiet), None, "{quiet}");
        }
        let warning = newer_than_policy(ApiVersion(1, 56)).expect("1.56 is newer than 1.55");
        assert!(
            warning.contains("Engine API 1.56") && warning.contains("serves up to 1.55"),
            "{warning}"
        );
    }

    #[test]
    fn the_daemons_version_is_learned_and_followed() {
        let daemon = DaemonApi::default();
        assert_eq!(daemon.window(), None, "unknown until the daemon answers");
        let mut answer = HeaderMap::new();
        daemon.advertise(&mut answer);
        assert!(answer.is_empty(), "nothing to state yet");

        answer.insert("Api-Version", HeaderValue::from_static("1.56"));
        daemon.heard_in(&answer);
        assert_eq!(
            daemon.window(),
            Some(Window {
                max: POLICY_MAX_API
            })
        );
        daemon.advertise(&mut answer);
        assert_eq!(answer["api-version"], "1.55");

        // Upgraded (here: downgraded) underneath, and followed.
        answer.insert("Api-Version", HeaderValue::from_static("1.51"));
        daemon.heard_in(&answer);
        daemon.advertise(&mut answer);
        assert_eq!(answer["api-version"], "1.51");

        for junk in ["1.12", "x", "70000.1"] {
            daemon.heard_in(&HeaderMap::from_iter([(
                http::header::HeaderName::from_static("api-version"),
                HeaderValue::from_static(junk),
            )]));
            assert_eq!(daemon.window(), Some(Window { max: V1_51 }), "{junk}");
        }
    }

    #[test]
    fn version_answers_state_the_cap_everywhere_they_state_an_api_version() {
        let mut answer = serde_json::json!({
            "ApiVersion": "1.56",
            "MinAPIVersion": "1.40",
            "Components": [
                { "Name": "Engine", "Details": { "ApiVersion": "1.56", "MinAPIVersion": "1.40" } },
                { "Name": "containerd", "Details": { "GitCommit": "x" } },
            ],
        });
        cap_version_answer(&mut answer, POLICY_MAX_API);
        assert_eq!(answer["ApiVersion"], "1.55");
        assert_eq!(
            answer["MinAPIVersion"], "1.40",
            "the daemon's minimum stays"
        );
        assert_eq!(answer["Components"][0]["Details"]["ApiVersion"], "1.55");
        assert_eq!(answer["Components"][0]["Details"]["MinAPIVersion"], "1.40");
        assert_eq!(
            answer["Components"][1]["Details"],
            serde_json::json!({ "GitCommit": "x" })
        );

        let mut older = serde_json::json!({ "ApiVersion": "1.41", "Components": [
            { "Name": "Engine", "Details": { "ApiVersion": "1.41" } } ] });
        cap_version_answer(&mut older, ApiVersion(1, 41));
        assert_eq!(
            older["ApiVersion"], "1.41",
            "a daemon at the cap is left as it is"
        );
        assert_eq!(older["Components"][0]["Details"]["ApiVersion"], "1.41");
    }
}
