//! Byte sizes as operators write them: `DINDBOX_MEMORY_LIMIT=2g`, the policy
//! file's `memory = "512m"`, `dindbox tenant create --memory 2g --budget 4g`,
//! `dindbox graphdriver-server --max-bytes 20G`. One grammar for all of them:
//!
//! ```text
//! size   = digits [ unit ]          surrounding whitespace is ignored
//! digits = 1*( "0" - "9" )          no sign, no fraction, no spaces
//! unit   = ( "k" | "m" | "g" | "t" ) [ "b" ] | "b"      any case
//! ```
//!
//! `k`, `m`, `g`, `t` are powers of 1024, as `docker run --memory` reads them
//! (go-units `RAMInBytes`); `kb` means the same as `k`, and `b` is bytes. A
//! size that overflows is refused, never wrapped.

#![forbid(unsafe_code)]

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size {0:?} is not a byte count such as 1048576, 512k or 2g (a whole number with an optional b, k, m, g or t suffix, or kb, mb, gb, tb; powers of 1024)")]
    Syntax(String),
    #[error("size {0:?} is out of range")]
    Range(String),
}

/// A size in bytes, zero included.
pub fn parse(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let syntax = || SizeError::Syntax(trimmed.to_string());
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => return Err(syntax()),
    };
    if digits.is_empty() {
        return Err(syntax());
    }
    let range = || SizeError::Range(trimmed.to_string());
    let count: u64 = digits.parse().map_err(|_| range())?;
    count.checked_mul(1 << shift).ok_or_else(range)
}

/// A size for Docker's signed 64-bit byte fields (`HostConfig.Memory`),
/// where 0 would mean "no limit": more than 0 and at most `i64::MAX`.
pub fn parse_positive_i64(text: &str) -> Result<i64, SizeError> {
    let bytes = parse(text)?;
    match i64::try_from(bytes) {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(SizeError::Range(text.trim().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_a_power_of_1024_in_any_case() {
        let table: [(&str, u64); 16] = [
            ("1048576", 1 << 20),
            ("0", 0),
            ("10b", 10),
            ("10B", 10),
            ("512k", 512 << 10),
            ("512K", 512 << 10),
            ("512kb", 512 << 10),
            ("512m", 512 << 20),
            ("512MB", 512 << 20),
            ("2g", 2 << 30),
            ("2GB", 2 << 30),
            ("2gB", 2 << 30),
            ("10G", 10 << 30),
            ("2T", 2 << 40),
            ("2tb", 2 << 40),
            (" 4k\n", 4 << 10),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_a_syntax_error() {
        let junk = [
            "", " ", "k", "gb", "b", "1.5g", "-1g", "+5g", "12x", "10bb", "10kib", "10 g", "1e3",
            "g10", "0x10", "１０",
        ];
        for text in junk {
            assert!(
                matches!(parse(text), Err(SizeError::Syntax(_))),
                "{text:?}: {:?}",
                parse(text)
            );
        }
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        assert_eq!(parse("16777215t"), Ok(16_777_215 << 40));
        for text in ["16777216t", "18446744073709551616", "99999999999T"] {
            assert_eq!(parse(text), Err(SizeError::Range(text.into())), "{text:?}");
        }
        assert_eq!(parse("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn docker_limits_are_positive_and_fit_an_i64() {
        assert_eq!(parse_positive_i64("512m"), Ok(512 << 20));
        assert_eq!(parse_positive_i64("9223372036854775807"), Ok(i64::MAX));
        for text in ["0", "0g", "9223372036854775808", "8388608t"] {
            assert_eq!(
                parse_positive_i64(text),
                Err(SizeError::Range(text.into())),
                "{text:?}"
            );
        }
        assert!(matches!(
            parse_positive_i64("2x"),
            Err(SizeError::Syntax(_))
        ));
    }

    #[test]
    fn messages_name_the_text_and_the_grammar() {
        let err = parse("12x").unwrap_err().to_string();
        assert!(
            err.contains("\"12x\"") && err.contains("512k or 2g"),
            "{err}"
        );
    }
}
