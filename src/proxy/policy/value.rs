//! Reading checked values out of decoded objects: absent and `null` mean the
//! zero value, as they do for dockerd; a value of the wrong type is a 400.

#![forbid(unsafe_code)]

use super::Reject;
use crate::proxy::gojson::{decode_struct, get, Decoded, Field, Json};

pub(super) fn decode(body: Json, fields: &[Field]) -> Result<Decoded, Reject> {
    decode_struct(body, fields).map_err(|err| Reject::bad_request("body-type", err))
}

pub(super) fn boolean(object: &[(String, Json)], name: &str, path: &str) -> Result<bool, Reject> {
    match get(object, name) {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(other) => Err(type_mismatch(path, "a boolean", other)),
    }
}

pub(super) fn string<'a>(
    object: &'a [(String, Json)],
    name: &str,
    path: &str,
) -> Result<&'a str, Reject> {
    match get(object, name) {
        None | Some(Json::Null) => Ok(""),
        Some(Json::String(s)) => Ok(s),
        Some(other) => Err(type_mismatch(path, "a string", other)),
    }
}

pub(super) fn integer(object: &[(String, Json)], name: &str, path: &str) -> Result<i64, Reject> {
    match get(object, name) {
        None | Some(Json::Null) => Ok(0),
        Some(Json::Number(n)) => n
            .as_i64()
            .ok_or_else(|| type_mismatch(path, "a 64-bit integer", &Json::Number(n.clone()))),
        Some(other) => Err(type_mismatch(path, "an integer", other)),
    }
}

pub(super) fn array<'a>(object: &'a [(String, Json)], name: &str) -> &'a [Json] {
    match get(object, name) {
        Some(Json::Array(items)) => items,
        _ => &[],
    }
}

/// A slice or map that holds something (null, absent and empty are all "nothing").
pub(super) fn non_empty(object: &[(String, Json)], name: &str) -> bool {
    match get(object, name) {
        Some(Json::Array(items)) => !items.is_empty(),
        Some(Json::Object(entries)) => !entries.is_empty(),
        _ => false,
    }
}

pub(super) fn type_mismatch(path: &str, expected: &str, found: &Json) -> Reject {
    Reject::bad_request(
        "body-type",
        format!("{path} must be {expected}, not {}", found.type_name()),
    )
}

pub(super) fn display(value: &Json) -> String {
    String::from_utf8_lossy(&value.to_vec()).into_owned()
}

pub(super) fn set_default(object: &mut Vec<(String, Json)>, name: &str, value: &str) {
    if matches!(get(object, name), None | Some(Json::Null))
        || matches!(get(object, name), Some(Json::String(s)) if s.is_empty())
    {
        set(object, name, Json::String(value.to_string()));
    }
}

pub(super) fn set(object: &mut Vec<(String, Json)>, name: &str, value: Json) {
    match object.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => object.push((name.to_string(), value)),
    }
}

/// Sets each label in the `Labels` map of `object`, creating the map when absent.
pub(super) fn inject_labels(object: &mut Vec<(String, Json)>, labels: &[(String, String)]) {
    if labels.is_empty() {
        return;
    }
    let mut map = match get(object, "Labels") {
        Some(Json::Object(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    for (key, value) in labels {
        set(&mut map, key, Json::String(value.clone()));
    }
    set(object, "Labels", Json::Object(map));
}
