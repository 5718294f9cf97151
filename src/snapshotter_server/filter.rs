//! Walk filters, in containerd's syntax (`filters/parser.go`): a filter is
//! selectors joined by `,` (all must match), a request's filters are
//! alternatives (any may match). A selector is a field path, optionally an
//! operator (`==`, `!=`, `~=` a regular expression) and a value, bare or
//! quoted with `"…"` or `/…/`. The fields of a snapshot are `name`,
//! `parent`, `kind` (`active`, `view`, `committed`) and `labels.KEY`
//! (`labels."containerd.io/gc.root"`); a path alone tests presence.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use regex::Regex;

/// The most bytes of filter text a request may carry.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("filter {0:?}: {1}")]
    Syntax(String, &'static str),
    #[error("filter {0:?}: bad regular expression: {1}")]
    Regex(String, String),
    #[error("the filters are longer than {MAX_FILTER_BYTES} bytes")]
    TooLong,
}

#[derive(Debug)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// Parsed filters: empty matches everything.
#[derive(Debug, Default)]
pub struct Filters(Vec<Vec<Selector>>);

/// The fields a filter sees of one snapshot.
pub struct Fields<'a> {
    pub name: &'a str,
    pub parent: &'a str,
    pub kind: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl Filters {
    pub fn parse(filters: &[String]) -> Result<Filters, FilterError> {
        if filters.iter().map(String::len).sum::<usize>() > MAX_FILTER_BYTES {
            return Err(FilterError::TooLong);
        }
        filters
            .iter()
            .filter(|f| !f.trim().is_empty())
            .map(|f| parse_one(f))
            .collect::<Result<Vec<_>, _>>()
            .map(Filters)
    }

    pub fn matches(&self, fields: &Fields) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|all| all.iter().all(|s| s.matches(fields)))
    }
}

impl Selector {
    fn matches(&self, fields: &Fields) -> bool {
        let value = match self.path.as_slice() {
            [f] if f == "name" => Some(fields.name),
            [f] if f == "parent" => Some(fields.parent),
            [f] if f == "kind" => Some(fields.kind),
            [f, key] if f == "labels" => fields.labels.get(key).map(String::as_str),
            _ => None,
        };
        match (&self.op, value) {
            (Op::Present, v) => v.is_some(),
            (Op::Equal(want), Some(v)) => v == want,
            (Op::NotEqual(want), Some(v)) => v != want,
            (Op::Matches(re), Some(v)) => re.is_match(v),
            (_, None) => false,
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    whole: &'a str,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn err(&self, why: &'static str) -> FilterError {
        FilterError::Syntax(self.whole.to_string(), why)
    }

    /// A field: a quoted string or `[A-Za-z0-9_]+`.
    fn field(&mut self) -> Result<String, FilterError> {
        if self.rest().starts_with(['"', '/']) {
            return self.quoted();
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err("expected a field name"));
        }
        let field = self.rest()[..len].to_string();
        self.pos += len;
        Ok(field)
    }

    /// A value: quoted, or everything up to `,` or white space.
    fn value(&mut self) -> Result<String, FilterError> {
        if self.rest().starts_with(['"', '/']) {
            return self.quoted();
        }
        let len = self
            .rest()
            .find(|c: char| c == ',' || c.is_whitespace())
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err("expected a value"));
        }
        let value = self.rest()[..len].to_string();
        self.pos += len;
        Ok(value)
    }

    /// `"…"` with Go escapes, or `/…/` (only `\/` escaped).
    fn quoted(&mut self) -> Result<String, FilterError> {
        let quote = self.rest().chars().next().expect("a quote");
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((_, next)) = chars.next() else { break };
            let unescaped = match (quote, next) {
                ('"', 'n') => '\n',
                ('"', 't') => '\t',
                ('"', 'r') => '\r',
                ('"', '"') | ('"', '\\') | ('/', '/') => next,
                // A regular expression keeps its own escapes.
                ('/', other) => {
                    out.push('\\');
                    other
                }
                _ => return Err(self.err("unknown escape in a quoted string")),
            };
            out.push(unescaped);
        }
        Err(self.err("unterminated quoted string"))
    }
}

fn parse_one(text: &str) -> Result<Vec<Selector>, FilterError> {
    let mut s = Scanner {
        text,
        pos: 0,
        whole: text,
    };
    let mut selectors = Vec::new();
    loop {
        s.skip_space();
        let mut path = vec![s.field()?];
        while s.eat(".") {
            path.push(s.field()?);
        }
        s.skip_space();
        let op = if s.eat("==") {
            s.skip_space();
            Op::Equal(s.value()?)
        } else if s.eat("!=") {
            s.skip_space();
            Op::NotEqual(s.value()?)
        } else if s.eat("~=") {
            s.skip_space();
            let pattern = s.value()?;
            let re = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| FilterError::Regex(text.to_string(), e.to_string()))?;
            Op::Matches(re)
        } else {
            Op::Present
        };
        selectors.push(Selector { path, op });
        s.skip_space();
        if s.rest().is_empty() {
            return Ok(selectors);
        }
        if !s.eat(",") {
            return Err(s.err("expected `,` between selectors"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(labels: &'a BTreeMap<String, String>) -> Fields<'a> {
        Fields {
            name: "default/3/sha256:abc",
            parent: "p1",
            kind: "committed",
            labels,
        }
    }

    #[test]
    fn selectors_operators_and_alternatives() {
        let labels: BTreeMap<String, String> = [
            ("containerd.io/gc.root".to_string(), "2026".to_string()),
            ("a".to_string(), "x,y".to_string()),
        ]
        .into();
        let f = fields(&labels);
        let table: &[(&[&str], bool)] = &[
            (&[], true),
            (&["kind==committed"], true),
            (&["kind==active"], false),
            (&["kind!=active"], true),
            (&["name~=^default/[0-9]+/"], true),
            (&[r#"name~=/sha256:a.c$/"#], true),
            (&[r#"labels."containerd.io/gc.root""#], true),
            (&[r#"labels."containerd.io/gc.root"==2026"#], true),
            (&["labels.missing"], false),
            (&["labels.missing!=x"], false),
            (&[r#"labels.a=="x,y""#], true),
            (&["kind==committed, parent==p1"], true),
            (&["kind==committed,parent==p2"], false),
            (&["kind==view", "parent==p1"], true),
            (&["kind==view", "parent==p2"], false),
            (&["other==1"], false),
        ];
        for (filters, want) in table {
            let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
            let parsed = Filters::parse(&filters).unwrap();
            assert_eq!(parsed.matches(&f), *want, "{filters:?}");
        }
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            "==x",
            "kind==",
            "kind==a b",
            r#"labels."open"#,
            "name~=(",
            "kind==a,",
            r#"labels."\q""#,
        ] {
            assert!(Filters::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert_eq!(
            Filters::parse(&["x".repeat(MAX_FILTER_BYTES + 1)]).unwrap_err(),
            FilterError::TooLong
        );
    }
}
