//! `Content-Type` as Go's `mime.ParseMediaType` (Go 1.19, the Go of the
//! dockerd the proxy serves) reads it for dockerd: `r.ParseForm` decides by it
//! whether a body is a form whose values override the query, and
//! `CheckForJSON` whether a body is JSON. The port keeps Go's quirks on
//! purpose: the media type is lowered with Unicode simple case mapping (`İ`
//! is `i`, the Kelvin sign is `k`) and trimmed of Unicode spaces (U+00A0), and
//! a bad parameter keeps the media type while reporting an error, which
//! dockerd's `ParseForm` ignores.

#![forbid(unsafe_code)]

use std::collections::HashSet;

/// What `mime.ParseMediaType` returns: the media type (`""` when Go gives
/// none) and the error, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoMediaType {
    pub media_type: String,
    pub error: Option<&'static str>,
}

impl GoMediaType {
    fn failed(error: &'static str) -> GoMediaType {
        GoMediaType {
            media_type: String::new(),
            error: Some(error),
        }
    }
}

/// `mime.ParseMediaType(v)` for the raw bytes of a header value.
pub fn parse_media_type(value: &[u8]) -> GoMediaType {
    let base_len = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    let media_type = go_trim_space(&go_to_lower(&value[..base_len])).to_string();
    if let Err(error) = check_media_type_disposition(&media_type) {
        return GoMediaType::failed(error);
    }
    match check_params(&value[base_len..]) {
        Ok(()) => GoMediaType {
            media_type,
            error: None,
        },
        Err(ParamError::Invalid) => GoMediaType {
            media_type,
            error: Some("mime: invalid media parameter"),
        },
        Err(ParamError::Duplicate) => GoMediaType::failed("mime: duplicate parameter name"),
    }
}

enum ParamError {
    /// `ErrInvalidMediaParameter`: Go keeps the media type.
    Invalid,
    /// A repeated parameter name: Go drops the media type.
    Duplicate,
}

/// The parameter loop of `ParseMediaType`, for its verdict only.
fn check_params(mut v: &[u8]) -> Result<(), ParamError> {
    let mut seen = HashSet::new();
    let mut continued: HashSet<(Vec<u8>, Vec<u8>)> = HashSet::new();
    while !v.is_empty() {
        v = trim_left_space(v);
        if v.is_empty() {
            break;
        }
        let Some((key, rest)) = consume_media_param(v) else {
            if go_trim_space(&String::from_utf8_lossy(v)) == ";" {
                break;
            }
            return Err(ParamError::Invalid);
        };
        // RFC 2231 continuations (`name*0`, `name*`) live in a map per base name.
        let fresh = match key.iter().position(|&b| b == b'*') {
            Some(star) => continued.insert((key[..star].to_vec(), key.clone())),
            None => seen.insert(key),
        };
        if !fresh {
            return Err(ParamError::Duplicate);
        }
        v = rest;
    }
    Ok(())
}

/// `consumeMediaParam`: `; key = value`, or `None` where Go returns an empty key.
fn consume_media_param(v: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let rest = trim_left_space(v).strip_prefix(b";")?;
    let (param, rest) = consume_token(trim_left_space(rest));
    if param.is_empty() {
        return None;
    }
    let rest = trim_left_space(trim_left_space(rest).strip_prefix(b"=")?);
    let (value_found, after) = consume_value(rest);
    if !value_found && after.len() == rest.len() {
        return None;
    }
    Some((param.to_ascii_lowercase(), after))
}

/// `consumeValue`: a token or a quoted string; whether a non-empty value was
/// read, and the rest (the input itself when nothing was).
fn consume_value(v: &[u8]) -> (bool, &[u8]) {
    let Some(quoted) = v.strip_prefix(b"\"") else {
        let (token, rest) = consume_token(v);
        return (!token.is_empty(), rest);
    };
    let mut i = 0;
    let mut len = 0;
    while i < quoted.len() {
        match quoted[i] {
            b'"' => return (len > 0, &quoted[i + 1..]),
            b'\\' if quoted.get(i + 1).is_some_and(|&c| is_tspecial(c)) => i += 1,
            b'\r' | b'\n' => return (false, v),
            _ => {}
        }
        len += 1;
        i += 1;
    }
    (false, v)
}

fn check_media_type_disposition(s: &str) -> Result<(), &'static str> {
    let (typ, rest) = consume_token(s.as_bytes());
    if typ.is_empty() {
        return Err("mime: no media type");
    }
    if rest.is_empty() {
        return Ok(());
    }
    let Some(rest) = rest.strip_prefix(b"/") else {
        return Err("mime: expected slash after first token");
    };
    let (subtype, rest) = consume_token(rest);
    if subtype.is_empty() {
        return Err("mime: expected token after slash");
    }
    if !rest.is_empty() {
        return Err("mime: unexpected content after media subtype");
    }
    Ok(())
}

/// `consumeToken`: token characters are printable ASCII but tspecials, so a
/// byte of a multi-byte rune (or an invalid one) ends the token as Go's
/// rune-wise scan does.
fn consume_token(v: &[u8]) -> (&[u8], &[u8]) {
    let end = v.iter().position(|&b| !is_token_char(b)).unwrap_or(v.len());
    v.split_at(end)
}

fn is_token_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !is_tspecial(b)
}

fn is_tspecial(b: u8) -> bool {
    b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// `strings.ToLower`: invalid UTF-8 becomes U+FFFD, and each rune takes its
/// simple lower-case mapping (one rune, unlike Rust's full mapping of `İ`).
pub fn go_to_lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(simple_lower)
        .collect()
}

fn simple_lower(c: char) -> char {
    match c {
        // The two non-ASCII runes whose simple lower case is ASCII.
        '\u{0130}' => 'i',
        '\u{212A}' => 'k',
        c => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        }
    }
}

/// `strings.TrimSpace`: Go's `unicode.IsSpace` is the Unicode White_Space
/// property, as Rust's `char::is_whitespace`.
fn go_trim_space(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

/// `strings.TrimLeftFunc(v, unicode.IsSpace)` on bytes that may not be UTF-8
/// (an invalid byte is U+FFFD to Go, which is not a space).
fn trim_left_space(mut v: &[u8]) -> &[u8] {
    while let Some(c) = first_char(v) {
        if !c.is_whitespace() {
            break;
        }
        v = &v[c.len_utf8()..];
    }
    v
}

fn first_char(v: &[u8]) -> Option<char> {
    let width = match *v.first()? {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    };
    std::str::from_utf8(v.get(..width)?).ok()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[u8]) -> (String, Option<&'static str>) {
        let parsed = parse_media_type(v);
        (parsed.media_type, parsed.error)
    }

    #[test]
    fn plain_types_and_parameters() {
        assert_eq!(
            parse(b"application/json"),
            ("application/json".into(), None)
        );
        assert_eq!(
            parse(b" Application/JSON ; charset=utf-8"),
            ("application/json".into(), None)
        );
        assert_eq!(parse(b"text/plain;"), ("text/plain".into(), None));
        assert_eq!(parse(b"a/b; x=\"q\\\"t\""), ("a/b".into(), None));
    }

    #[test]
    fn the_review_s_form_spellings_are_forms_to_go() {
        let form = "application/x-www-form-urlencoded";
        // A bad parameter keeps the type (and ParseForm ignores `mime:` errors).
        assert_eq!(
            parse(b"application/x-www-form-urlencoded; x=\xff"),
            (form.into(), Some("mime: invalid media parameter"))
        );
        assert_eq!(
            parse("appl\u{0130}cation/x-www-form-urlencoded".as_bytes()),
            (form.into(), None)
        );
        assert_eq!(
            parse("\u{00A0}application/x-www-form-urlencoded".as_bytes()),
            (form.into(), None)
        );
    }

    #[test]
    fn errors_that_drop_the_type() {
        assert_eq!(parse(b""), (String::new(), Some("mime: no media type")));
        assert_eq!(
            parse(b"a/b/c").1,
            Some("mime: unexpected content after media subtype")
        );
        assert_eq!(
            parse(b"a b").1,
            Some("mime: expected slash after first token")
        );
        assert_eq!(
            parse(b"a/b; x=1; X=2"),
            (String::new(), Some("mime: duplicate parameter name"))
        );
        assert_eq!(
            parse("\u{0131}/x".as_bytes()).1,
            Some("mime: no media type")
        );
    }

    #[test]
    fn parameter_errors_keep_the_type() {
        for bad in [
            &b"a/b; x"[..],
            b"a/b; x=",
            b"a/b; =1",
            b"a/b; x=1 y",
            b"a/b; x=\"open",
        ] {
            assert_eq!(
                parse(bad).1,
                Some("mime: invalid media parameter"),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"a/b; x=\"\xff\"").1,
            None,
            "a quoted value takes any byte"
        );
        assert_eq!(parse(b"a/b; x*0=1; x*1=2; x=3").1, None);
    }
}
