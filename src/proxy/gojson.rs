//! JSON as dockerd's Go `encoding/json` decoder sees it.
//!
//! Go matches struct field names case-insensitively with Unicode simple folding
//! (`ſ` is `s`, the Kelvin sign is `k`), lets the last duplicate win, merges
//! repeated objects into the same struct or map, and ignores `null` for
//! non-nullable fields. A proxy that reads a body any other way can be told one
//! thing while dockerd does another. So the proxy keeps every entry of every
//! object, in order ([`Json`]), and resolves fields with Go's rules ([`decode_struct`]).

#![forbid(unsafe_code)]

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON document with every object entry kept, duplicates included, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialising an in-memory JSON tree cannot fail")
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Folds a key the way Go's `encoding/json` does before comparing it with a
/// field name: ASCII upper case, and every other rune to the smallest rune of
/// its simple-fold orbit. Field names are ASCII, and the only non-ASCII runes
/// whose orbit reaches ASCII are `ſ` (to `S`) and the Kelvin sign (to `K`);
/// any other rune can never match, so it is kept as it is.
pub fn fold(key: &str) -> String {
    key.chars().map(fold_char).collect()
}

/// `fold(a) == fold(b)`, without allocating.
pub fn fold_eq(a: &str, b: &str) -> bool {
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

fn fold_char(c: char) -> char {
    match c {
        '\u{017F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    }
}

/// How Go decodes one field's value, which decides what a repeated key does.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// bool, number or string: a later value replaces, `null` changes nothing.
    Scalar,
    /// A slice: a later value replaces, `null` resets it.
    Slice,
    /// A slice of structs: as [`Kind::Slice`], each element decoded as a fresh struct.
    SliceOf(&'static [Field]),
    /// A map: a later object adds to it (exact keys, last wins), `null` resets it.
    Map,
    /// A map of structs: as [`Kind::Map`], each value decoded as a fresh struct.
    MapOf(&'static [Field]),
    /// A struct value: a later object merges into it, `null` changes nothing.
    Struct(&'static [Field]),
    /// A pointer to a struct: a later object merges into it, `null` resets it.
    Pointer(&'static [Field]),
    /// A value whose structure the proxy does not inspect: the last one is kept.
    Opaque,
}

/// A struct field: its canonical name and how it decodes.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

pub const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// A value that does not have the type dockerd would decode it into.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} must be {expected}, not {found}", if path.is_empty() { "the body" } else { path })]
pub struct TypeError {
    /// Where, from the decoded object: `HostConfig.CapAdd`, `HostConfig.Mounts[0].Type`.
    pub path: String,
    pub expected: &'static str,
    pub found: &'static str,
}

/// An object decoded into a struct: the fields dockerd would see, and the
/// paths of the keys that match no field, at any depth (dockerd ignores them;
/// the proxy leaves them out, or refuses them).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub fields: Vec<(String, Json)>,
    pub unknown: Vec<String>,
}

/// Decodes an object into a struct with Go's rules. Keys that match a field
/// (by [`fold`]) come out once, under the field's canonical name, holding the
/// value dockerd would end up with.
pub fn decode_struct(value: &Json, fields: &[Field]) -> Result<Decoded, TypeError> {
    let mut unknown = Vec::new();
    let fields = Decoder {
        unknown: &mut unknown,
    }
    .fields(value, fields, &String::new)?;
    Ok(Decoded { fields, unknown })
}

/// Where a value sits, built only when an error or an unknown key needs it.
type Path<'a> = &'a dyn Fn() -> String;

fn child(path: Path, name: &str) -> String {
    match path() {
        parent if parent.is_empty() => name.to_string(),
        parent => format!("{parent}.{name}"),
    }
}

struct Decoder<'a> {
    unknown: &'a mut Vec<String>,
}

impl Decoder<'_> {
    fn fields(
        &mut self,
        value: &Json,
        fields: &[Field],
        path: Path,
    ) -> Result<Vec<(String, Json)>, TypeError> {
        let Json::Object(entries) = value else {
            return Err(type_error(path, "an object", value));
        };
        // `None` is "present but no effect yet" (a scalar set to null), dropped at the end.
        let mut out: Vec<(&'static str, Option<Json>)> = Vec::new();
        for (key, value) in entries {
            // Field names are ASCII: an ASCII key needs no folding beyond case.
            let ascii = key.is_ascii();
            let matches = |f: &&Field| match ascii {
                true => f.name.len() == key.len() && f.name.eq_ignore_ascii_case(key),
                false => fold_eq(f.name, key),
            };
            let Some(field) = fields.iter().find(matches) else {
                self.unknown.push(child(path, key));
                continue;
            };
            let index = match out.iter().position(|(name, _)| *name == field.name) {
                Some(i) => i,
                None => {
                    out.push((field.name, None));
                    out.len() - 1
                }
            };
            self.assign(&mut out[index].1, value, field.kind, &|| {
                child(path, field.name)
            })?;
        }
        Ok(out
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect())
    }

    /// Applies one occurrence of a field to what earlier occurrences left.
    fn assign(
        &mut self,
        slot: &mut Option<Json>,
        value: &Json,
        kind: Kind,
        path: Path,
    ) -> Result<(), TypeError> {
        match (kind, value) {
            (Kind::Opaque, value) => *slot = Some(value.clone()),
            (Kind::Scalar, Json::Null) => {}
            (Kind::Scalar, Json::Array(_) | Json::Object(_)) => {
                return Err(type_error(path, "a boolean, number or string", value))
            }
            (Kind::Scalar, value) => *slot = Some(value.clone()),
            (Kind::Struct(_), Json::Null) => {}
            (
                Kind::Slice | Kind::SliceOf(_) | Kind::Map | Kind::MapOf(_) | Kind::Pointer(_),
                Json::Null,
            ) => *slot = Some(Json::Null),
            (Kind::Slice, Json::Array(_)) => *slot = Some(value.clone()),
            (Kind::SliceOf(fields), Json::Array(items)) => {
                let mut decoded = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    decoded.push(self.element(item, fields, &|| format!("{}[{i}]", path()))?);
                }
                *slot = Some(Json::Array(decoded));
            }
            (Kind::Map | Kind::MapOf(_), Json::Object(entries)) => {
                let mut merged = match slot.take() {
                    Some(Json::Object(earlier)) => earlier,
                    _ => Vec::new(),
                };
                for (key, value) in entries {
                    let value = match kind {
                        Kind::MapOf(fields) => {
                            self.element(value, fields, &|| format!("{}[{key:?}]", path()))?
                        }
                        _ => value.clone(),
                    };
                    match merged.iter_mut().find(|(k, _)| k == key) {
                        Some(entry) => entry.1 = value,
                        None => merged.push((key.clone(), value)),
                    }
                }
                *slot = Some(Json::Object(merged));
            }
            (Kind::Struct(fields) | Kind::Pointer(fields), Json::Object(entries)) => {
                let decoded = match slot.take() {
                    Some(Json::Object(mut earlier)) => {
                        earlier.extend(entries.iter().cloned());
                        self.fields(&Json::Object(earlier), fields, path)?
                    }
                    _ => self.fields(value, fields, path)?,
                };
                *slot = Some(Json::Object(decoded));
            }
            (Kind::Slice | Kind::SliceOf(_), value) => {
                return Err(type_error(path, "an array", value))
            }
            (Kind::Map | Kind::MapOf(_) | Kind::Struct(_) | Kind::Pointer(_), value) => {
                return Err(type_error(path, "an object", value))
            }
        }
        Ok(())
    }

    /// One element of a slice or map of structs: a fresh struct (`null` is its zero value).
    fn element(&mut self, item: &Json, fields: &[Field], path: Path) -> Result<Json, TypeError> {
        match item {
            Json::Null => Ok(Json::Object(Vec::new())),
            item => Ok(Json::Object(self.fields(item, fields, path)?)),
        }
    }
}

fn type_error(path: Path, expected: &'static str, found: &Json) -> TypeError {
    TypeError {
        path: path(),
        expected,
        found: found.type_name(),
    }
}

/// The value of `name` in an object decoded by [`decode_struct`].
pub fn get<'a>(entries: &'a [(String, Json)], name: &str) -> Option<&'a Json> {
    entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_survive_a_second_round_trip() {
        // Found by the fuzz target: without serde_json's float_roundtrip, a
        // float printed by the proxy parsed back to a neighbouring value, so
        // forwarding a forwarded body changed it.
        let once = Json::parse(b"[1.04855555555555555557e32, 0.1, 1e-7]")
            .unwrap()
            .to_vec();
        assert_eq!(Json::parse(&once).unwrap().to_vec(), once);
    }

    const INNER: &[Field] = &[
        field("Privileged", Kind::Scalar),
        field("CapAdd", Kind::Slice),
        field("Labels", Kind::Map),
    ];
    const OUTER: &[Field] = &[
        field("Image", Kind::Scalar),
        field("HostConfig", Kind::Struct(INNER)),
    ];

    fn decode(text: &str, fields: &[Field]) -> Json {
        Json::Object(
            decode_struct(&Json::parse(text.as_bytes()).unwrap(), fields)
                .unwrap()
                .fields,
        )
    }

    fn text(value: &Json) -> String {
        String::from_utf8(value.to_vec()).unwrap()
    }

    #[test]
    fn fold_matches_go_for_long_s_and_kelvin() {
        assert_eq!(fold("privileged"), "PRIVILEGED");
        assert_eq!(fold("Bind\u{017F}"), "BINDS");
        assert_eq!(fold("\u{212A}ernelMemory"), "KERNELMEMORY");
        assert_ne!(
            fold("Priv\u{0131}leged"),
            "PRIVILEGED",
            "dotless i does not fold to i"
        );
    }

    #[test]
    fn field_names_match_case_insensitively_and_come_out_canonical() {
        let v = decode(r#"{"hostconfig":{"PRIVILEGED":true}}"#, OUTER);
        assert_eq!(text(&v), r#"{"HostConfig":{"Privileged":true}}"#);
    }

    #[test]
    fn last_duplicate_wins_across_spellings() {
        let v = decode(
            r#"{"HostConfig":{"privileged":false,"Privileged":true,"privileged":false}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Privileged":false}}"#);
    }

    #[test]
    fn null_does_not_reset_a_scalar() {
        let v = decode(
            r#"{"HostConfig":{"Privileged":true,"privileged":null}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Privileged":true}}"#);
    }

    #[test]
    fn null_resets_a_slice() {
        let v = decode(r#"{"HostConfig":{"CapAdd":["ALL"],"capadd":null}}"#, OUTER);
        assert_eq!(text(&v), r#"{"HostConfig":{"CapAdd":null}}"#);
    }

    #[test]
    fn repeated_structs_merge_like_go() {
        let v = decode(
            r#"{"HostConfig":{"Privileged":true},"hostconfig":{"CapAdd":[]}}"#,
            OUTER,
        );
        assert_eq!(
            text(&v),
            r#"{"HostConfig":{"Privileged":true,"CapAdd":[]}}"#
        );
    }

    #[test]
    fn repeated_maps_merge_with_exact_keys() {
        let v = decode(
            r#"{"HostConfig":{"Labels":{"a":"1","A":"2"},"labels":{"a":"3"}}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Labels":{"a":"3","A":"2"}}}"#);
    }

    #[test]
    fn unknown_keys_are_reported_and_left_out() {
        let body = br#"{"Foo":1,"Image":"x","foo":2,"HostConfig":{"Bar":1}}"#;
        let decoded = decode_struct(&Json::parse(body).unwrap(), OUTER).unwrap();
        assert_eq!(decoded.unknown, ["Foo", "foo", "HostConfig.Bar"]);
        assert_eq!(
            text(&Json::Object(decoded.fields)),
            r#"{"Image":"x","HostConfig":{}}"#
        );
    }

    #[test]
    fn wrong_types_are_errors_naming_the_path() {
        let body = br#"{"HostConfig":{"CapAdd":"ALL"}}"#;
        let err = decode_struct(&Json::parse(body).unwrap(), OUTER).unwrap_err();
        assert_eq!(
            err.to_string(),
            "HostConfig.CapAdd must be an array, not a string"
        );
        let err = decode_struct(&Json::parse(b"[]").unwrap(), OUTER).unwrap_err();
        assert_eq!(err.to_string(), "the body must be an object, not an array");
    }

    #[test]
    fn parse_keeps_every_entry_in_order() {
        let v = Json::parse(br#"{"a":1,"A":2,"a":3}"#).unwrap();
        assert_eq!(text(&v), r#"{"a":1,"A":2,"a":3}"#);
    }

    #[test]
    fn parse_refuses_trailing_values_and_lone_surrogates() {
        assert!(Json::parse(br#"{} {}"#).is_err());
        assert!(Json::parse(br#"{"a":"\ud800"}"#).is_err());
    }
}
