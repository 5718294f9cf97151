//! Wire types of Docker's graphdriver plugin protocol (moby
//! `daemon/graphdriver/proxy.go` and `pkg/plugins`, v20.10.24).
//!
//! Requests are decoded the way Go's `encoding/json` does it where it
//! matters: top-level keys match case-insensitively, absent keys and JSON
//! `null` mean the zero value, unknown keys are ignored, and an empty body
//! (Content-Length 0, as `Plugin.Activate` sends) is `{}`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The longest layer ID accepted. Docker's are 64 hex digits, plus `-init`
/// for a container's init layer; leave room for other clients' schemes.
pub const MAX_ID_LEN: usize = 128;

/// A layer ID that is safe to use as one path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(String);

/// Why an ID was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("an empty layer ID")]
    Empty,
    #[error("layer ID {0:?} is longer than {MAX_ID_LEN} bytes")]
    TooLong(String),
    #[error("layer ID {0:?} is not a single path component (only A-Z a-z 0-9 . _ - are allowed, and not `.` or `..`)")]
    Unsafe(String),
}

impl LayerId {
    /// Accepts `[A-Za-z0-9._-]{1,128}` except `.` and `..`: one path
    /// component that cannot name a parent, a hidden dot-file of ours
    /// (IDs may not start with `.`), or anything outside the layer store.
    pub fn parse(id: &str) -> Result<LayerId, IdError> {
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        if id.len() > MAX_ID_LEN {
            return Err(IdError::TooLong(id.chars().take(MAX_ID_LEN).collect()));
        }
        let charset_ok = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !charset_ok || id.starts_with('.') {
            return Err(IdError::Unsafe(id.to_string()));
        }
        Ok(LayerId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `null` decodes to the type's default, as in Go.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One user-namespace mapping (`pkg/idtools.IDMap`); the keys are snake case
/// on the wire, whatever the published docs say.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct IdMap {
    pub container_id: i64,
    pub host_id: i64,
    pub size: i64,
}

/// `/GraphDriver.Init`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "lowercase")]
pub struct InitRequest {
    #[serde(deserialize_with = "null_default")]
    pub home: String,
    #[serde(deserialize_with = "null_default")]
    pub opts: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub uidmaps: Vec<IdMap>,
    #[serde(deserialize_with = "null_default")]
    pub gidmaps: Vec<IdMap>,
}

/// Every other call (`graphDriverRequest`; all fields are `omitempty`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "lowercase")]
pub struct Request {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub parent: String,
    #[serde(deserialize_with = "null_default")]
    pub mountlabel: String,
    #[serde(deserialize_with = "null_default")]
    pub storageopt: BTreeMap<String, String>,
}

impl Request {
    /// The validated `ID`.
    pub fn id(&self) -> Result<LayerId, IdError> {
        LayerId::parse(&self.id)
    }

    /// The validated `Parent`; empty means none.
    pub fn parent(&self) -> Result<Option<LayerId>, IdError> {
        optional_id(&self.parent)
    }
}

/// An optional ID: empty means none.
pub fn optional_id(id: &str) -> Result<Option<LayerId>, IdError> {
    if id.is_empty() {
        Ok(None)
    } else {
        LayerId::parse(id).map(Some)
    }
}

/// Decodes a request body like Go's `json.Decoder` into a struct whose
/// fields are named in lowercase: top-level keys are folded to lowercase
/// (case-insensitive match), empty input is `{}`.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_str("{}");
    }
    let value: serde_json::Value = serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap_or(Ok(serde_json::Value::Null))?;
    let value = match value {
        serde_json::Value::Object(map) => {
            // Go's decoder lets the last of several case-variants win, as here.
            let folded: serde_json::Map<String, serde_json::Value> = map
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            serde_json::Value::Object(folded)
        }
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        other => other,
    };
    serde_json::from_value(value)
}

/// `archive.ChangeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u8")]
pub enum ChangeKind {
    Modify,
    Add,
    Delete,
}

impl From<ChangeKind> for u8 {
    fn from(kind: ChangeKind) -> u8 {
        match kind {
            ChangeKind::Modify => 0,
            ChangeKind::Add => 1,
            ChangeKind::Delete => 2,
        }
    }
}

/// `archive.Change`: an absolute path in the layer (`/etc/hosts`) and a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Kind")]
    pub kind: ChangeKind,
}

/// `graphdriver.Capabilities`, nested under `"Capabilities"` in the reply.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Capabilities {
    #[serde(rename = "ReproducesExactDiffs")]
    pub reproduces_exact_diffs: bool,
}

/// `graphDriverResponse`: every field is omitted when empty.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reply {
    #[serde(rename = "Err", skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(rename = "Dir", skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(rename = "Exists", skip_serializing_if = "std::ops::Not::not")]
    pub exists: bool,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<[String; 2]>>,
    #[serde(rename = "Changes", skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
    #[serde(rename = "Size", skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "Capabilities", skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

impl Reply {
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            err: message.into(),
            ..Reply::default()
        }
    }

    pub fn size(size: u64) -> Reply {
        Reply {
            size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
            ..Reply::default()
        }
    }
}

/// A call the plugin socket answers, read once from the request path:
/// `/Plugin.Activate` and moby's `GraphDriver.<Method>` calls
/// (`daemon/graphdriver/proxy.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `/Plugin.Activate`: the manifest.
    Activate,
    /// `/GraphDriver.Init`: opens the Home.
    Init,
    /// `/GraphDriver.ApplyDiff?id=ID&parent=PARENT`: a raw tar body.
    ApplyDiff,
    /// `/GraphDriver.Diff`: answered with a tar.
    Diff,
    /// Every other call: JSON in, JSON out, on the Home Init opened.
    Driver(DriverCall),
}

/// Why a path names no [`Call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownCall<'a> {
    /// `/GraphDriver.<method>` with a method moby does not have.
    Method(&'a str),
    /// Not a plugin call's path at all.
    Path,
}

impl Call {
    pub fn parse(path: &str) -> Result<Call, UnknownCall<'_>> {
        if path == "/Plugin.Activate" {
            return Ok(Call::Activate);
        }
        let method = path
            .strip_prefix("/GraphDriver.")
            .ok_or(UnknownCall::Path)?;
        match method {
            "Init" => Ok(Call::Init),
            "ApplyDiff" => Ok(Call::ApplyDiff),
            "Diff" => Ok(Call::Diff),
            _ => DriverCall::ALL
                .into_iter()
                .find(|call| call.name() == method)
                .map(Call::Driver)
                .ok_or(UnknownCall::Method(method)),
        }
    }
}

/// The JSON-in, JSON-out calls a [`Driver`](super::Driver) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverCall {
    Create,
    CreateReadWrite,
    Remove,
    Get,
    Put,
    Exists,
    Status,
    GetMetadata,
    Cleanup,
    Changes,
    DiffSize,
    Capabilities,
}

impl DriverCall {
    pub const ALL: [DriverCall; 12] = [
        DriverCall::Create,
        DriverCall::CreateReadWrite,
        DriverCall::Remove,
        DriverCall::Get,
        DriverCall::Put,
        DriverCall::Exists,
        DriverCall::Status,
        DriverCall::GetMetadata,
        DriverCall::Cleanup,
        DriverCall::Changes,
        DriverCall::DiffSize,
        DriverCall::Capabilities,
    ];

    /// The method name on the wire, `GraphDriver.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            DriverCall::Create => "Create",
            DriverCall::CreateReadWrite => "CreateReadWrite",
            DriverCall::Remove => "Remove",
            DriverCall::Get => "Get",
            DriverCall::Put => "Put",
            DriverCall::Exists => "Exists",
            DriverCall::Status => "Status",
            DriverCall::GetMetadata => "GetMetadata",
            DriverCall::Cleanup => "Cleanup",
            DriverCall::Changes => "Changes",
            DriverCall::DiffSize => "DiffSize",
            DriverCall::Capabilities => "Capabilities",
        }
    }
}

/// The `Plugin.Activate` manifest.
pub const ACTIVATE_REPLY: &str = r#"{"Implements":["GraphDriver"]}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_calls() {
        assert_eq!(Call::parse("/Plugin.Activate"), Ok(Call::Activate));
        assert_eq!(Call::parse("/GraphDriver.Init"), Ok(Call::Init));
        assert_eq!(Call::parse("/GraphDriver.ApplyDiff"), Ok(Call::ApplyDiff));
        assert_eq!(Call::parse("/GraphDriver.Diff"), Ok(Call::Diff));
        for call in DriverCall::ALL {
            let path = format!("/GraphDriver.{}", call.name());
            assert_eq!(Call::parse(&path), Ok(Call::Driver(call)), "{path}");
        }
        let unknown = [
            ("/GraphDriver.Frobnicate", UnknownCall::Method("Frobnicate")),
            ("/GraphDriver.", UnknownCall::Method("")),
            ("/GraphDriver.create", UnknownCall::Method("create")),
            ("/GraphDriver.Diff/x", UnknownCall::Method("Diff/x")),
            ("/Plugin.Activate/", UnknownCall::Path),
            ("/VolumeDriver.Create", UnknownCall::Path),
            ("/", UnknownCall::Path),
        ];
        for (path, want) in unknown {
            assert_eq!(Call::parse(path), Err(want), "{path}");
        }
    }

    #[test]
    fn layer_ids_must_be_one_safe_component() {
        let ok = [
            "054e9b8c3c2d4a5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c72d1",
            "054e9b8c3c2d4a5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c72d1-init",
            "a",
            "layer_1.2",
        ];
        for id in ok {
            assert_eq!(LayerId::parse(id).unwrap().as_str(), id);
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        let bad: [(&str, IdError); 10] = [
            ("", IdError::Empty),
            (".", IdError::Unsafe(".".into())),
            ("..", IdError::Unsafe("..".into())),
            ("../x", IdError::Unsafe("../x".into())),
            ("a/b", IdError::Unsafe("a/b".into())),
            ("/abs", IdError::Unsafe("/abs".into())),
            (".hidden", IdError::Unsafe(".hidden".into())),
            ("a\0b", IdError::Unsafe("a\0b".into())),
            ("a b", IdError::Unsafe("a b".into())),
            (&long, IdError::TooLong("a".repeat(MAX_ID_LEN))),
        ];
        for (id, err) in bad {
            assert_eq!(LayerId::parse(id), Err(err), "{id:?}");
        }
        assert!(LayerId::parse("é").is_err());
        assert_eq!(optional_id("").unwrap(), None);
    }

    #[test]
    fn init_request_decodes_nulls_and_case_variants() {
        let wire = br#"{"Home":"/var/lib/docker/gd","Opts":null,"UIDMaps":null,"GIDMaps":null}
"#;
        let init: InitRequest = decode(wire).unwrap();
        assert_eq!(init.home, "/var/lib/docker/gd");
        assert!(init.opts.is_empty() && init.uidmaps.is_empty());

        let wire = br#"{"home":"/h","opts":["a=b"],"UIDMaps":[{"container_id":0,"host_id":100000,"size":65536}]}"#;
        let init: InitRequest = decode(wire).unwrap();
        assert_eq!(init.opts, vec!["a=b".to_string()]);
        assert_eq!(
            init.uidmaps,
            vec![IdMap {
                container_id: 0,
                host_id: 100000,
                size: 65536
            }]
        );
    }

    #[test]
    fn requests_decode_absent_empty_and_trailing_data() {
        let req: Request = decode(b"").unwrap();
        assert!(req.id.is_empty());
        let req: Request = decode(b"{}\n").unwrap();
        assert_eq!(req.parent().unwrap(), None);
        let req: Request =
            decode(br#"{"ID":"abc","Parent":"def","StorageOpt":{"Size":"1G"}} trailing"#).unwrap();
        assert_eq!(req.id().unwrap().as_str(), "abc");
        assert_eq!(req.parent().unwrap().unwrap().as_str(), "def");
        assert_eq!(req.storageopt["Size"], "1G");
        assert!(decode::<Request>(b"{not json").is_err());
    }

    #[test]
    fn replies_omit_empty_fields_and_nest_capabilities() {
        let ok = serde_json::to_string(&Reply::default()).unwrap();
        assert_eq!(ok, "{}");
        let caps = Reply {
            capabilities: Some(Capabilities::default()),
            ..Reply::default()
        };
        assert_eq!(
            serde_json::to_string(&caps).unwrap(),
            r#"{"Capabilities":{"ReproducesExactDiffs":false}}"#
        );
        let changes = Reply {
            changes: Some(vec![Change {
                path: "/hello".into(),
                kind: ChangeKind::Add,
            }]),
            ..Reply::default()
        };
        assert_eq!(
            serde_json::to_string(&changes).unwrap(),
            r#"{"Changes":[{"Path":"/hello","Kind":1}]}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::error("boom")).unwrap(),
            r#"{"Err":"boom"}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::size(0)).unwrap(),
            r#"{"Size":0}"#
        );
    }
}
