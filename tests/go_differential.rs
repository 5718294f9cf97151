//! The proxy's parsers against Go's own (issue 11, "parse as dockerd parses,
//! by construction"): `tests/go/parsecheck` answers what Go's standard library
//! makes of a Content-Type, a query string, a form request, a path, a JSON
//! body and an API version, the way dockerd calls it; each test feeds the same generated inputs
//! (and seeds from issue 11) to both and fails on a disagreement the policy
//! would judge differently, printing the input and both answers.
//!
//! Needs `go` (Debian's golang-go; `scripts/test.sh` installs it).
//! `PROPTEST_CASES` sets the batches per test (default 256, of up to 64 inputs).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use dindbox::proxy::check::{admit, check_body};
use dindbox::proxy::gojson::{decode_struct, Field, Json, Kind};
use dindbox::proxy::gopath::clean_path;
use dindbox::proxy::policy::{
    container_create, container_create_fields, exec_create, exec_create_fields, Policy,
};
use dindbox::proxy::query::Query;
use dindbox::proxy::version::ApiVersion;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::Method;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

const BATCH: usize = 64;

// ------------------------------------------------------------------ the Go side

/// The parsecheck program, built once per test run under `target/`.
fn parsecheck_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_parsecheck)
}

fn build_parsecheck() -> PathBuf {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("parsecheck");
    let binary = work.join("parsecheck");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/parsecheck"))
        // Standard library only, offline, no state in $HOME (CI runs as root).
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .output();
    match output {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`go` is not installed, and the differential check against Go needs it: \
             scripts/test.sh installs golang-go (as root), or `apt-get install golang-go`"
        ),
        Err(err) => panic!("running `go build`: {err}"),
        Ok(out) if !out.status.success() => panic!(
            "`go build` of tests/go/parsecheck failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => binary,
    }
}

/// A running parsecheck: requests go in as JSON lines, answers come back in order.
struct Go {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Go {
    fn start() -> RefCell<Go> {
        let mut child = Command::new(parsecheck_binary())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting parsecheck");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        RefCell::new(Go {
            child,
            stdin,
            stdout,
        })
    }

    /// One round trip for a whole batch. The requests are written from
    /// another thread so that neither side blocks on a full pipe.
    fn ask(&mut self, requests: &[Value]) -> Vec<Value> {
        let mut text = String::new();
        for request in requests {
            text.push_str(&request.to_string());
            text.push('\n');
        }
        let stdin = self.stdin.as_mut().expect("parsecheck's stdin is open");
        let stdout = &mut self.stdout;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                stdin
                    .write_all(text.as_bytes())
                    .and_then(|()| stdin.flush())
                    .expect("writing to parsecheck")
            });
            (0..requests.len())
                .map(|_| {
                    let mut line = String::new();
                    stdout.read_line(&mut line).expect("reading parsecheck");
                    let answer: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|err| panic!("parsecheck answered {line:?}: {err}"));
                    assert!(answer.get("fault").is_none(), "parsecheck: {answer}");
                    answer
                })
                .collect()
        })
    }
}

impl Drop for Go {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("parsecheck sends hex"))
        .collect()
}

/// Go's `url.Values` as parsecheck lists them, by key, each key's values in order.
type Values = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

fn go_values(list: &Value) -> Values {
    let pairs = list.as_array().map(Vec::as_slice).unwrap_or_default();
    pairs
        .iter()
        .map(|p| {
            let values = p["v"].as_array().expect("values");
            let key = unhex(p["k"].as_str().expect("key"));
            (
                key,
                values.iter().map(|v| unhex(v.as_str().unwrap())).collect(),
            )
        })
        .collect()
}

fn our_values(query: &Query) -> Values {
    let mut values = Values::new();
    for (k, v) in &query.0 {
        let entry = values.entry(k.as_bytes().to_vec()).or_default();
        entry.push(v.as_bytes().to_vec());
    }
    values
}

/// Runs `check` on every seed batch, then on generated batches (shrunk on failure).
fn differential<S: Strategy>(
    seeds: Vec<S::Value>,
    strategy: S,
    check: impl Fn(&mut Go, &[S::Value]) -> Result<(), String>,
) where
    S::Value: Clone,
{
    let go = Go::start();
    let seed_failures: Vec<String> = seeds
        .iter()
        .filter_map(|seed| check(&mut go.borrow_mut(), std::slice::from_ref(seed)).err())
        .collect();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&vec(strategy, 1..=BATCH), |batch| {
        check(&mut go.borrow_mut(), &batch).map_err(TestCaseError::fail)
    });
    // Generated cases run even when seeds fail, so that both are reported.
    let generated = result.err().map(|f| format!("generated: {f}"));
    assert!(
        seed_failures.is_empty() && generated.is_none(),
        "{} seed(s) disagree with Go:\n{}\n{}",
        seed_failures.len(),
        seed_failures.join("\n"),
        generated.unwrap_or_default()
    );
}

// ------------------------------------------------------------------ media types and forms

/// A request's Content-Type bytes (`None`: no header), method and body.
#[derive(Debug, Clone)]
struct FormRequest {
    method: &'static str,
    content_type: Option<Vec<u8>>,
    body: &'static str,
}

impl FormRequest {
    /// An endpoint the proxy admits for the method when the Content-Type allows it.
    fn target(&self) -> &'static str {
        match self.method {
            "POST" => "/v1.41/containers/prune?filters=%7B%22label%22%3A%5B%22o%3Dme%22%5D%7D",
            "PUT" => "/v1.41/containers/c/archive?path=%2F",
            _ => "/v1.41/containers/json",
        }
    }

    /// The header as an HTTP/1.1 server hands it on: surrounding spaces and
    /// tabs are not part of a field value (RFC 9112 section 5), and Go's
    /// textproto trims them too.
    fn headers(&self) -> Option<HeaderMap> {
        let mut headers = HeaderMap::new();
        if let Some(raw) = &self.content_type {
            let trimmed = raw.trim_ascii();
            headers.insert(CONTENT_TYPE, HeaderValue::from_bytes(trimmed).ok()?);
        }
        Some(headers)
    }
}

const FORM_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/json",
    "application/x-tar",
    "text/plain",
];

/// Spellings of a media type that Go may still read as it: case, `İ` (U+0130,
/// lower-cases to `i`), the Kelvin sign (to `k`), `ſ` (stays itself).
fn media_spelling() -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(FORM_TYPES), 0..6u8).prop_map(|(media, how)| {
        let spelled = match how {
            0 => media.to_string(),
            1 => media.to_ascii_uppercase(),
            2 => media.replacen('i', "\u{0130}", 1),
            3 => media.replacen('k', "\u{212A}", 1),
            4 => media.replacen('s', "\u{017F}", 1),
            _ => media.replacen('a', "A", 1),
        };
        spelled.into_bytes()
    })
}

/// Bytes that make parsers disagree: Unicode spaces Go's TrimSpace removes,
/// non-UTF-8 bytes, tabs, quotes and separators.
fn odd_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(vec![
        "\u{00A0}".as_bytes().to_vec(),
        "\u{0085}".as_bytes().to_vec(),
        "\u{2028}".as_bytes().to_vec(),
        "\u{0130}".as_bytes().to_vec(),
        b"\xff".to_vec(),
        b"\xc3".to_vec(),
        b"\t".to_vec(),
        b" ".to_vec(),
        b";".to_vec(),
        b"\"".to_vec(),
        b"=".to_vec(),
        b"/".to_vec(),
        b"".to_vec(),
    ])
}

fn parameter() -> impl Strategy<Value = Vec<u8>> {
    let separator = proptest::sample::select(vec![";", ";;", " ; ", ";\t", "; ;"]);
    let name = proptest::sample::select(vec!["x", "charset", "boundary", "X", ""]);
    let value = prop_oneof![
        Just(b"1".to_vec()),
        Just(b"utf-8".to_vec()),
        Just(b"\"quoted value\"".to_vec()),
        Just(b"\"unterminated".to_vec()),
        Just(b"\xff".to_vec()),
        Just("\u{212A}".as_bytes().to_vec()),
        Just(b"".to_vec()),
    ];
    (separator, name, value, odd_bytes()).prop_map(|(sep, name, value, odd)| {
        [sep.as_bytes(), name.as_bytes(), b"=", &value, &odd].concat()
    })
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    let structured = (
        odd_bytes(),
        media_spelling(),
        odd_bytes(),
        vec(parameter(), 0..3),
    )
        .prop_map(|(lead, media, trail, params)| [lead, media, trail, params.concat()].concat());
    let noise = vec(
        prop_oneof![
            proptest::sample::select(b"aAiIkKsS/-+;=\" \t".to_vec()).prop_map(|b| vec![b]),
            odd_bytes(),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat());
    prop_oneof![
        8 => structured.prop_map(Some),
        2 => noise.prop_map(Some),
        1 => Just(None),
    ]
}

fn form_request() -> impl Strategy<Value = FormRequest> {
    let method = proptest::sample::select(vec!["POST", "POST", "PUT", "GET", "DELETE"]);
    let body = proptest::sample::select(vec!["filters=%7B%7D", "a=%zz&filters=x", "{}"]);
    (method, content_type(), body).prop_map(|(method, content_type, body)| FormRequest {
        method,
        content_type,
        body,
    })
}

fn form_seeds() -> Vec<FormRequest> {
    let post = |ct: &[u8]| FormRequest {
        method: "POST",
        content_type: Some(ct.to_vec()),
        body: "filters=%7B%7D",
    };
    vec![
        post(b"application/x-www-form-urlencoded"),
        post(b"application/x-www-form-urlencoded; x=\xff"),
        post("appl\u{0130}cation/x-www-form-urlencoded".as_bytes()),
        post("\u{00A0}application/x-www-form-urlencoded".as_bytes()),
        post(b"application/json"),
        post(b"application/json; charset=utf-8"),
        post(b"Multipart/Form-Data; boundary=x"),
    ]
}

/// What the proxy does with a request: whether `admit` lets it through, and
/// whether a JSON body behind its Content-Type is accepted at container create.
fn our_admission(request: &FormRequest, headers: &HeaderMap) -> (bool, bool) {
    let policy = Policy::default();
    let admitted = admit(
        &policy,
        &Method::from_bytes(request.method.as_bytes()).unwrap(),
        &request.target().parse().unwrap(),
        headers,
    )
    .is_ok();
    let create = "/v1.41/containers/create".parse().unwrap();
    let json_accepted = admit(&policy, &Method::POST, &create, headers).is_ok()
        && check_body(
            &policy,
            dindbox::proxy::policy::container_create,
            headers,
            br#"{"Image":"busybox"}"#,
        )
        .is_ok();
    (admitted, json_accepted)
}

fn check_forms(go: &mut Go, requests: &[FormRequest]) -> Result<(), String> {
    let asks: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({"op": "form", "method": r.method, "target": r.target(),
                   "ct": r.content_type.as_deref().map(hex), "body": hex(r.body.as_bytes())})
        })
        .collect();
    for (request, answer) in requests.iter().zip(go.ask(&asks)) {
        let Some(headers) = request.headers() else {
            continue; // hyper refuses the header before the proxy sees it
        };
        if !answer["request_err"].is_null() {
            continue; // net/http refuses the request: dockerd never sees it
        }
        let (admitted, json_accepted) = our_admission(request, &headers);
        let shown = || {
            format!(
                "{} {} with Content-Type {:?} (hex {:?}), body {:?}: Go {answer}, ours admitted={admitted} json_accepted={json_accepted}",
                request.method,
                request.target(),
                request.content_type.as_deref().map(String::from_utf8_lossy),
                request.content_type.as_deref().map(hex),
                request.body,
            )
        };
        if answer["body_read"] == true && admitted {
            return Err(format!(
                "dockerd reads the body as form values (they win over the query) but the proxy admits it: {}",
                shown()
            ));
        }
        // The proxy admits plain-ASCII Content-Types only (stricter than Go,
        // which also trims Unicode spaces and lowers `İ`): no JSON client
        // sends anything else.
        let plain_ascii = request
            .content_type
            .as_deref()
            .is_none_or(|ct| ct.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)));
        if answer["json_accepted"] == true && !json_accepted && plain_ascii {
            return Err(format!(
                "dockerd accepts this Content-Type for JSON but the proxy refuses it: {}",
                shown()
            ));
        }
        // Where Go reads only the query, its form is the query the proxy checked.
        if answer["body_read"] == false && answer["moby_refuses"] == false && admitted {
            let target: http::Uri = request.target().parse().unwrap();
            let ours = Query::parse(target.query().unwrap_or("")).map_err(|r| r.message)?;
            if go_values(&answer["form"]) != our_values(&ours) {
                return Err(format!("r.Form differs from the query: {}", shown()));
            }
        }
    }
    Ok(())
}

#[test]
fn a_form_body_is_refused_whenever_go_would_read_one() {
    // Without a Content-Type, every target used here is admitted: a refusal
    // below is the Content-Type's doing.
    for method in ["POST", "PUT", "GET", "DELETE"] {
        let request = FormRequest {
            method,
            content_type: None,
            body: "",
        };
        assert!(our_admission(&request, &HeaderMap::new()).0, "{method}");
    }
    differential(form_seeds(), form_request(), check_forms);
}

fn check_media_types(go: &mut Go, types: &[Option<Vec<u8>>]) -> Result<(), String> {
    let asks: Vec<Value> = types
        .iter()
        .flatten()
        .map(|ct| json!({"op": "media", "ct": hex(ct)}))
        .collect();
    let answers = go.ask(&asks);
    // Go's reading of each type decides the form check above; here the answers
    // must at least be well-formed (an error comes with no media type but
    // `mime: invalid media parameter`, which keeps it).
    for (ct, answer) in types.iter().flatten().zip(answers) {
        let media = unhex(answer["mediatype"].as_str().unwrap_or_default());
        let error = answer["err"].as_str().unwrap_or_default();
        let error_keeps_media_type = error.is_empty() || error == "mime: invalid media parameter";
        if !media.is_empty() && !error_keeps_media_type {
            return Err(format!(
                "{:?}: Go returned {answer}",
                String::from_utf8_lossy(ct)
            ));
        }
    }
    Ok(())
}

#[test]
fn go_keeps_the_media_type_only_without_error_or_with_a_parameter_error() {
    differential(Vec::new(), content_type(), check_media_types);
}

// ------------------------------------------------------------------ query strings

fn query_string() -> impl Strategy<Value = String> {
    let atom = proptest::sample::select(vec![
        "a", "b", "filters", "=", "+", "%41", "%2B", "%26", "%3D", "%00", "%zz", "%4", "%", "%ff",
        "%c3%a9", "%C3", ";", "&", "&&", "%20", "1",
    ]);
    vec(atom, 0..10).prop_map(|atoms| atoms.concat())
}

fn query_seeds() -> Vec<String> {
    [
        "t=a%2Fb&t=c+d&x&networkmode=%68ost",
        "a=1;networkmode=host",
        "a=%zz&b=2",
        "a=%ff",
        "=x&&a=",
        "filters=%7B%7D&filters=%7B%22label%22%3A%5B%5D%7D",
    ]
    .map(String::from)
    .to_vec()
}

fn check_queries(go: &mut Go, queries: &[String]) -> Result<(), String> {
    let asks: Vec<Value> = queries
        .iter()
        .map(|q| json!({"op": "query", "raw": q}))
        .collect();
    for (raw, answer) in queries.iter().zip(go.ask(&asks)) {
        let theirs = go_values(&answer["values"]);
        let go_failed = !answer["err"].is_null();
        match Query::parse(raw) {
            Ok(ours) if our_values(&ours) != theirs => {
                return Err(format!("{raw:?}: Go {answer}, ours {ours:?}"));
            }
            Ok(_) => {}
            // dockerd answers 400 to a query Go cannot parse, and a handler
            // that reads r.URL.Query() still sees only the values compared above.
            Err(_) if go_failed => {}
            // Refusing values Go would pass through as non-UTF-8 bytes is
            // stricter than dockerd, never looser.
            Err(_)
                if theirs
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().chain([k]))
                    .any(|b| std::str::from_utf8(b).is_err()) => {}
            Err(reject) => {
                return Err(format!("{raw:?}: Go {answer}, ours {}", reject.message));
            }
        }
    }
    Ok(())
}

#[test]
fn queries_parse_as_go_parses_them() {
    differential(query_seeds(), query_string(), check_queries);
}

// ------------------------------------------------------------------ paths

fn path_string() -> impl Strategy<Value = String> {
    let element = proptest::sample::select(vec![
        "", ".", "..", "...", "proc", "self", "fd", "7", "x", ".a", "a.", "é",
    ]);
    let separator = proptest::sample::select(vec!["/", "/", "//"]);
    (
        any::<bool>(),
        vec((element, separator), 0..7),
        any::<bool>(),
    )
        .prop_map(|(rooted, parts, trailing)| {
            let mut path = String::from(if rooted { "/" } else { "" });
            for (element, separator) in parts {
                path.push_str(element);
                path.push_str(separator);
            }
            if !trailing {
                path.pop();
            }
            path
        })
}

const PROC_SEEDS: [&str; 3] = [
    "//proc/self/fd/7",
    "/./proc/self/fd/7",
    "/x/../proc/self/fd/7",
];

fn check_paths(go: &mut Go, paths: &[String]) -> Result<(), String> {
    let asks: Vec<Value> = paths
        .iter()
        .map(|p| json!({"op": "clean", "path": p}))
        .collect();
    for (path, answer) in paths.iter().zip(go.ask(&asks)) {
        let ours = clean_path(path);
        let agrees = answer["filepath"] == ours.as_str()
            && answer["path"] == ours.as_str()
            && answer["abs"] == path.starts_with('/');
        if !agrees {
            return Err(format!("{path:?}: Go {answer}, ours {ours:?}"));
        }
        check_working_dir_policy(path, &ours)?;
    }
    Ok(())
}

/// dockerd uses the cleaned `WorkingDir`: one under /proc must be refused
/// however it is spelled (the CVE-2024-21626 class).
fn check_working_dir_policy(dir: &str, cleaned: &str) -> Result<(), String> {
    if cleaned != "/proc" && !cleaned.starts_with("/proc/") {
        return Ok(());
    }
    let body = Json::parse(
        json!({"Image": "x", "WorkingDir": dir})
            .to_string()
            .as_bytes(),
    )
    .expect("a JSON body");
    if container_create(&Policy::default(), body.clone()).is_ok() || exec_create(body).is_ok() {
        return Err(format!(
            "WorkingDir {dir:?} is {cleaned:?} to dockerd, but the policy allows it"
        ));
    }
    Ok(())
}

#[test]
fn paths_clean_as_go_cleans_them() {
    let seeds = PROC_SEEDS.map(String::from).to_vec();
    differential(seeds, path_string(), check_paths);
}

// ------------------------------------------------------------------ API versions

/// A path's `/v<text>` as the proxy and dockerd's router take it (`[0-9.]+`):
/// parts with leading zeros, empty ones, and numbers past u32 and past Go's int.
fn version_text() -> impl Strategy<Value = String> {
    let part = proptest::sample::select(vec![
        "",
        "0",
        "00",
        "1",
        "01",
        "41",
        "044",
        "52",
        "4294967295",
        "4294967296",
        "9223372036854775808",
    ]);
    vec(part, 1..5).prop_map(|parts| parts.join("."))
}

const VERSION_SEEDS: [&str; 7] = [
    "1.41",
    "1.41.",
    "01.041",
    "1.41.0.0",
    "1.41.0.2",
    ".41",
    "4294967295.1",
];

/// A version the proxy reads must be the one dockerd reads (`versions.compare`
/// equal to ours); one it cannot read is refused with a 400, which fails closed.
fn check_versions(go: &mut Go, texts: &[String]) -> Result<(), String> {
    let read: Vec<(&String, ApiVersion)> = texts
        .iter()
        .filter_map(|text| Some((text, ApiVersion::parse(text)?)))
        .collect();
    let asks: Vec<Value> = read
        .iter()
        .map(|(text, version)| json!({"op": "version", "raw": text, "than": version.to_string()}))
        .collect();
    for ((text, version), answer) in read.iter().zip(go.ask(&asks)) {
        if answer["cmp"] != 0 {
            return Err(format!(
                "/v{text}: ours {version}, Go compares it {answer} to that"
            ));
        }
    }
    Ok(())
}

#[test]
fn api_versions_read_as_dockerd_compares_them() {
    differential(
        VERSION_SEEDS.map(String::from).to_vec(),
        version_text(),
        check_versions,
    );
}

// ------------------------------------------------------------------ JSON bodies

/// A request shape both sides model: parsecheck's name for it and our table.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Create,
    Exec,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Create => "create",
            Shape::Exec => "exec",
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            Shape::Create => container_create_fields(),
            Shape::Exec => exec_create_fields(),
        }
    }
}

/// The struct fields of `HostConfig` in the create table.
fn host_config_fields() -> &'static [Field] {
    container_create_fields()
        .iter()
        .find_map(|f| match (f.name, f.kind) {
            ("HostConfig", Kind::Pointer(fields)) => Some(fields),
            _ => None,
        })
        .expect("the create table has HostConfig")
}

/// The Go type of a scalar field, by name (the tables only say "scalar").
#[derive(Debug, Clone, Copy)]
enum Scalar {
    Bool,
    Int,
    Str,
}

fn scalar_type(name: &str) -> Scalar {
    const BOOLS: &[&str] = &[
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "Tty",
        "OpenStdin",
        "StdinOnce",
        "ArgsEscaped",
        "NetworkDisabled",
        "AutoRemove",
        "Privileged",
        "PublishAllPorts",
        "ReadonlyRootfs",
        "OomKillDisable",
        "Init",
        "ReadOnly",
        "NonRecursive",
        "CreateMountpoint",
        "ReadOnlyNonRecursive",
        "ReadOnlyForceRecursive",
        "NoCopy",
        "Detach",
    ];
    const INTS: &[&str] = &[
        "Interval",
        "Timeout",
        "StartPeriod",
        "StartInterval",
        "Retries",
        "StopTimeout",
        "MaximumRetryCount",
        "CpuShares",
        "Memory",
        "NanoCpus",
        "BlkioWeight",
        "CpuPeriod",
        "CpuQuota",
        "CpuRealtimePeriod",
        "CpuRealtimeRuntime",
        "KernelMemory",
        "KernelMemoryTCP",
        "MemoryReservation",
        "MemorySwap",
        "MemorySwappiness",
        "PidsLimit",
        "CpuCount",
        "CpuPercent",
        "IOMaximumIOps",
        "IOMaximumBandwidth",
        "OomScoreAdj",
        "ShmSize",
        "SizeBytes",
        "Mode",
        "IPPrefixLen",
        "GlobalIPv6PrefixLen",
        "GwPriority",
    ];
    if BOOLS.contains(&name) {
        Scalar::Bool
    } else if INTS.contains(&name) {
        Scalar::Int
    } else {
        Scalar::Str
    }
}

/// JSON text, built as bytes so that it can hold duplicate keys, escapes and
/// invalid UTF-8.
type Text = Vec<u8>;

/// Spellings Go's decoder matches to the field: case, `ſ` for s, the Kelvin
/// sign for k, a `\u` escape, and near misses it does not match.
fn key(name: &'static str) -> BoxedStrategy<Text> {
    let first = name.chars().next().unwrap_or('x');
    let escaped = format!("\\u{:04x}{}", u32::from(first), &name[first.len_utf8()..]);
    proptest::sample::select(vec![
        name.to_string(),
        name.to_string(),
        name.to_ascii_lowercase(),
        name.to_ascii_uppercase(),
        name.replace(['s', 'S'], "\u{017F}"),
        name.replace(['k', 'K'], "\u{212A}"),
        escaped,
        name.replacen('i', "\u{0131}", 1),
        format!("{name} "),
    ])
    .prop_map(|k| format!("\"{k}\"").into_bytes())
    .boxed()
}

fn string_value() -> BoxedStrategy<Text> {
    proptest::sample::select(vec![
        b"\"x\"".to_vec(),
        b"\"\"".to_vec(),
        b"\"/proc/self/fd/7\"".to_vec(),
        b"\"//proc/self/fd/7\"".to_vec(),
        b"\"host\"".to_vec(),
        b"\"/:/host\"".to_vec(),
        b"\"\\u0068ost\"".to_vec(),
        b"\"\xff\"".to_vec(),
        b"\"\\ud800\"".to_vec(),
    ])
    .boxed()
}

/// A value that is the wrong type for most fields.
fn wrong_value() -> BoxedStrategy<Text> {
    proptest::sample::select(vec![
        b"null".to_vec(),
        b"true".to_vec(),
        b"1".to_vec(),
        b"1.5".to_vec(),
        b"\"1\"".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
    ])
    .boxed()
}

fn scalar_value(name: &str) -> BoxedStrategy<Text> {
    let right = match scalar_type(name) {
        Scalar::Bool => proptest::sample::select(vec![b"true".to_vec(), b"false".to_vec()]).boxed(),
        Scalar::Int => proptest::sample::select(vec![
            b"0".to_vec(),
            b"1".to_vec(),
            b"-1".to_vec(),
            b"100".to_vec(),
            b"-0".to_vec(),
        ])
        .boxed(),
        Scalar::Str => string_value(),
    };
    prop_oneof![6 => right, 1 => Just(b"null".to_vec()), 1 => wrong_value()].boxed()
}

fn array_of(item: BoxedStrategy<Text>) -> BoxedStrategy<Text> {
    vec(item, 0..3)
        .prop_map(|items| [b"[".to_vec(), items.join(&b","[..]), b"]".to_vec()].concat())
        .boxed()
}

fn object_of(entries: BoxedStrategy<Vec<(Text, Text)>>) -> BoxedStrategy<Text> {
    entries
        .prop_map(|entries| {
            let members: Vec<Text> = entries
                .into_iter()
                .map(|(k, v)| [k, b":".to_vec(), v].concat())
                .collect();
            [b"{".to_vec(), members.join(&b","[..]), b"}".to_vec()].concat()
        })
        .boxed()
}

/// Objects for the slice fields our tables leave opaque but Go decodes into structs.
fn slice_element(name: &str) -> BoxedStrategy<Text> {
    let fields: &[(&'static str, Scalar)] = match name {
        "Ulimits" => &[
            ("Name", Scalar::Str),
            ("Hard", Scalar::Int),
            ("Soft", Scalar::Int),
        ],
        "Devices" => &[
            ("PathOnHost", Scalar::Str),
            ("PathInContainer", Scalar::Str),
        ],
        "BlkioWeightDevice" => &[("Path", Scalar::Str), ("Weight", Scalar::Int)],
        name if name.starts_with("BlkioDevice") => &[("Path", Scalar::Str), ("Rate", Scalar::Int)],
        "ConsoleSize" => return scalar_value("Mode"),
        _ => return prop_oneof![8 => string_value(), 1 => wrong_value()].boxed(),
    };
    let entry = proptest::sample::select(fields.to_vec())
        .prop_flat_map(|(name, _)| (key(name), scalar_value(name)));
    prop_oneof![8 => object_of(vec(entry, 0..3).boxed()), 1 => Just(b"null".to_vec())].boxed()
}

fn map_value(name: &str) -> BoxedStrategy<Text> {
    match name {
        "ExposedPorts" | "Volumes" => Just(b"{}".to_vec()).boxed(),
        "PortBindings" => {
            array_of(Just(br#"{"HostIp":"0.0.0.0","HostPort":"80"}"#.to_vec()).boxed())
        }
        _ => string_value(),
    }
}

fn map_entries(value: BoxedStrategy<Text>) -> BoxedStrategy<Text> {
    let map_key = proptest::sample::select(vec![
        b"\"a\"".to_vec(),
        b"\"A\"".to_vec(),
        b"\"80/tcp\"".to_vec(),
        b"\"/data\"".to_vec(),
        b"\"\xff\"".to_vec(),
    ]);
    object_of(vec((map_key, value), 0..3).boxed())
}

/// A value for a field of the given kind; `depth` bounds nesting.
fn value(field: Field, depth: u32) -> BoxedStrategy<Text> {
    let right = match field.kind {
        Kind::Scalar | Kind::Nullable => return scalar_value(field.name),
        Kind::Opaque => prop_oneof![
            string_value(),
            array_of(string_value()),
            Just(b"null".to_vec())
        ]
        .boxed(),
        Kind::Slice | Kind::Array(_) | Kind::ArrayPointer(_) => array_of(slice_element(field.name)),
        Kind::SliceOf(fields) | Kind::SliceOfPointers(fields) => {
            array_of(struct_value(fields, depth))
        }
        Kind::Map => map_entries(map_value(field.name)),
        Kind::MapOf(fields) => map_entries(struct_value(fields, depth)),
        Kind::Struct(fields) | Kind::Pointer(fields) => struct_value(fields, depth),
    };
    prop_oneof![8 => right, 1 => Just(b"null".to_vec()), 1 => wrong_value()].boxed()
}

/// Fields most likely to matter, chosen more often so that keys repeat.
const HOT: &[&str] = &[
    "HostConfig",
    "NetworkingConfig",
    "WorkingDir",
    "Cmd",
    "Privileged",
    "Binds",
    "Mounts",
    "CapAdd",
    "Ulimits",
    "PidsLimit",
    "Init",
    "ConsoleSize",
    "NetworkMode",
    "Devices",
    "Memory",
    "Labels",
    "EndpointsConfig",
    "NetworkID",
    "Type",
    "Source",
    "BindOptions",
];

fn struct_value(fields: &'static [Field], depth: u32) -> BoxedStrategy<Text> {
    if depth == 0 {
        return Just(b"{}".to_vec()).boxed();
    }
    let unknown = (
        proptest::sample::select(vec!["Foo", "Privileged", "Memory", "Cpuset", "GwPriority"])
            .prop_flat_map(key),
        wrong_value(),
    );
    if fields.is_empty() {
        // An empty Go struct (ClusterOptions): only keys it ignores.
        return object_of(vec(unknown, 0..3).boxed());
    }
    let hot: Vec<Field> = fields
        .iter()
        .filter(|f| HOT.contains(&f.name))
        .copied()
        .collect();
    let any_field = proptest::sample::select(fields.to_vec()).boxed();
    let pick = match hot.is_empty() {
        true => any_field,
        false => prop_oneof![proptest::sample::select(hot), any_field].boxed(),
    };
    let entry = pick.prop_flat_map(move |f| (key(f.name), value(f, depth - 1)));
    let entries = vec(prop_oneof![6 => entry, 1 => unknown], 0..5).boxed();
    object_of(entries)
}

/// A create body: the create table's fields, and (as dockerd 20.10 also reads
/// them there) `HostConfig`'s fields at the top level.
fn create_body() -> BoxedStrategy<Text> {
    let own = struct_value(container_create_fields(), 4);
    let top_level_host_config = struct_value(host_config_fields(), 3);
    (own, top_level_host_config, any::<bool>())
        .prop_map(
            |(own, extra, mixed)| match mixed && own.len() > 2 && extra.len() > 2 {
                // Splice the second object's members into the first.
                true => [&own[..own.len() - 1], b",", &extra[1..]].concat(),
                false => own,
            },
        )
        .boxed()
}

fn json_case() -> impl Strategy<Value = (Shape, Text)> {
    prop_oneof![
        3 => create_body().prop_map(|b| (Shape::Create, b)),
        1 => struct_value(exec_create_fields(), 2).prop_map(|b| (Shape::Exec, b)),
    ]
}

fn json_seeds() -> Vec<(Shape, Text)> {
    let mut seeds: Vec<(Shape, Text)> = [
        r#"{"HostConfig":{"privileged":true,"Privileged":false}}"#,
        r#"{"HostConfig":{"Bind\u017f":["/:/h"],"\u212aernelMemory":1}}"#,
        r#"{"HostConfig":{"\u0050rivileged":true}}"#,
        r#"{"HostConfig":{"Privileged":true},"HostConfig":{"CapAdd":["ALL"]}}"#,
        r#"{"HostConfig":{"PidsLimit":5,"pidslimit":null,"Init":true,"init":null}}"#,
        r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/"}],"mounts":[{"Target":"/h"}]}}"#,
        r#"{"HostConfig":{"Ulimits":[{"Name":"rtprio"}],"Ulimits":[{"Soft":99,"Hard":99}]}}"#,
        r#"{"HostConfig":{"ConsoleSize":[1,2,3]},"hostconfig":{"ConsoleSize":null}}"#,
        r#"{"Image":"x","Privileged":true,"Binds":["/:/host"]}"#,
        r#"{"NetworkingConfig":{"EndpointsConfig":{"mine":{"NetworkID":"theirs"}}}}"#,
        r#"{"Cmd":"ls","Entrypoint":null,"WorkingDir":"/x/../proc/self/fd/7"}"#,
        r#"{"HostConfig":{"Memory":-0}}"#,
        r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{"GwPriority":1,"gwpriority":null},"b":{"GwPriority":"1"}}}}"#,
        r#"{"HostConfig":{"Mounts":[{"Type":"image","ImageOptions":{"Subpath":"a"},"imageoptions":null,"ClusterOptions":{"x":1}}]}}"#,
        r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","TmpfsOptions":{"Options":[["exec"]],"options":[["noexec"],["dev"]]}}]}}"#,
        // Found by the generator: a later array of structs merges into the structs before it.
        r#"{"HostConfig":{"Devices":[{"PathOnHost":"/proc/self/fd/7"}],"Devices":[{}]},"Foo ":"1"}"#,
        r#"{"HostConfig":{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1}],"blkiodevicereadbps":[{"rate":2},null]}}"#,
        r#"{"HostConfig":{"DeviceRequests":[{"Driver":"nvidia","Count":-1}],"DeviceRequests":[{"deviceids":["0"]}]}}"#,
    ]
    .iter()
    .map(|b| (Shape::Create, b.as_bytes().to_vec()))
    .collect();
    seeds.push((
        Shape::Exec,
        br#"{"privileged":true,"Privileged":false,"WorkingDir":"//proc/self/fd/7"}"#.to_vec(),
    ));
    seeds.push((Shape::Create, b"{\"Image\":\"\xff\"}".to_vec()));
    seeds
}

/// Whether a value is Go's zero value as encoding/json writes it (`[0,0]` is
/// the zero `[2]uint` of ConsoleSize).
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items
            .iter()
            .all(|i| matches!(i, Value::Number(_)) && is_zero(i)),
        Value::Object(members) => members.is_empty(),
    }
}

/// Go's decoded request, re-marshalled, reduced to the fields of our table
/// with zero values left out (Go writes every field; we write what was set).
fn normalize_struct(value: &Value, fields: &[Field]) -> Value {
    let Value::Object(members) = value else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for field in fields {
        let Some(member) = members.get(field.name) else {
            continue;
        };
        let normalized = normalize(member, field.kind);
        if !is_zero(&normalized) {
            out.insert(field.name.to_string(), normalized);
        }
    }
    Value::Object(out)
}

fn normalize(value: &Value, kind: Kind) -> Value {
    match (kind, value) {
        (Kind::Struct(fields) | Kind::Pointer(fields), value) => normalize_struct(value, fields),
        (Kind::SliceOf(fields), Value::Array(items)) => {
            Value::Array(items.iter().map(|i| normalize_struct(i, fields)).collect())
        }
        (Kind::MapOf(fields), Value::Object(members)) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), normalize_struct(v, fields)))
                .collect(),
        ),
        (_, value) => normalize_untyped(value),
    }
}

/// Inside values our table does not describe (slice elements, map values):
/// objects there are Go structs, so their zero members go too.
fn normalize_untyped(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(normalize_untyped).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), normalize_untyped(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        value => value.clone(),
    }
}

fn ask_json(shape: Shape, body: &[u8]) -> Value {
    json!({"op": "json", "shape": shape.name(), "body": hex(body)})
}

/// Our reading of a body: what `gojson` decodes it to, as JSON text (or why not).
fn our_decoding(shape: Shape, body: &[u8]) -> Result<Vec<u8>, String> {
    let json = Json::parse(body).map_err(|err| format!("parse: {err}"))?;
    let decoded = decode_struct(json, shape.fields()).map_err(|err| format!("decode: {err}"))?;
    Ok(Json::Object(decoded.fields).to_vec())
}

/// What the proxy forwards for the body, when the policy allows it.
fn forwarded(shape: Shape, body: &[u8]) -> Option<Vec<u8>> {
    let json = Json::parse(body).ok()?;
    let checked = match shape {
        Shape::Create => container_create(&Policy::default(), json),
        Shape::Exec => exec_create(json),
    };
    checked.ok().map(|json| json.to_vec())
}

/// serde_json refuses what Go's decoder replaces with U+FFFD: invalid UTF-8
/// and lone surrogate escapes. Refusing is stricter than dockerd, never looser.
fn refused_for_encoding(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_err() || body.windows(3).any(|w| w == b"\\ud")
}

/// Compares Go's reading of each body with Go's reading of what we decoded it
/// to: our decoded tree must mean to dockerd what the body meant. Then checks
/// that what the proxy forwards means the same to dockerd 20.10 (which also
/// reads HostConfig's fields at the top level) as to the current shape.
fn check_json(go: &mut Go, cases: &[(Shape, Text)]) -> Result<(), String> {
    let ours: Vec<Result<Vec<u8>, String>> =
        cases.iter().map(|(s, b)| our_decoding(*s, b)).collect();
    let sent: Vec<Option<Vec<u8>>> = cases.iter().map(|(s, b)| forwarded(*s, b)).collect();
    let mut asks: Vec<Value> = cases.iter().map(|(s, b)| ask_json(*s, b)).collect();
    for ((shape, _), (decoded, forwarded)) in cases.iter().zip(ours.iter().zip(&sent)) {
        asks.push(ask_json(*shape, decoded.as_deref().unwrap_or(b"{}")));
        asks.push(ask_json(*shape, forwarded.as_deref().unwrap_or(b"{}")));
    }
    let answers = go.ask(&asks);
    let (originals, rereads) = answers.split_at(cases.len());
    for (i, (shape, body)) in cases.iter().enumerate() {
        let shown_body = String::from_utf8_lossy(body);
        let original = &originals[i];
        let (of_decoded, of_forwarded) = (&rereads[2 * i], &rereads[2 * i + 1]);
        if !original["err"].is_null() {
            continue; // dockerd refuses the body (400); nothing to compare
        }
        let decoded = match &ours[i] {
            Err(_) if refused_for_encoding(body) => continue,
            Err(why) => {
                return Err(format!(
                    "{shape:?} body {shown_body}: Go decodes it to {}, we refuse it ({why})",
                    original["value"]
                ))
            }
            Ok(decoded) => decoded,
        };
        let fields = shape.fields();
        let theirs = normalize_struct(&original["value"], fields);
        let via_ours = normalize_struct(&of_decoded["value"], fields);
        if theirs != via_ours || !of_decoded["err"].is_null() {
            return Err(format!(
                "{shape:?} body {shown_body}\n  Go reads:            {theirs}\n  we decode it to:     {}\n  which Go reads as:   {via_ours} {}",
                String::from_utf8_lossy(decoded),
                of_decoded["err"]
            ));
        }
        if let (Shape::Create, Some(forwarded)) = (shape, &sent[i]) {
            let current = normalize_struct(&of_forwarded["value"], fields);
            let old = normalize_struct(&of_forwarded["effective_2010"], fields);
            if current != old || !of_forwarded["err"].is_null() {
                return Err(format!(
                    "body {shown_body}: we forward {}\n  dockerd 28 reads:    {current}\n  dockerd 20.10 reads: {old} {}",
                    String::from_utf8_lossy(forwarded),
                    of_forwarded["err"]
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn json_bodies_decode_as_go_decodes_them() {
    differential(json_seeds(), json_case(), check_json);
}

/// Every field of our tables is a field of moby's types: set each to a
/// non-zero value and Go must keep it (a misspelt or invented field would be
/// one Go ignores but the policy reads).
#[test]
fn every_table_field_is_one_go_decodes() {
    let mut go = Go::start();
    let go = go.get_mut();
    for shape in [Shape::Create, Shape::Exec] {
        let mut missing = Vec::new();
        walk_fields(
            shape.fields(),
            &mut Vec::new(),
            &mut |path: &[&str], field: Field| {
                if let Kind::Struct(_) | Kind::Pointer(_) = field.kind {
                    return; // its own fields are checked one by one
                }
                let body = nested_body(path, field);
                let answer = &go.ask(&[ask_json(shape, body.to_string().as_bytes())])[0];
                let mut value = &answer["value"];
                for name in path.iter().chain([&field.name]) {
                    value = &value[*name];
                }
                if !answer["err"].is_null() || is_zero(value) {
                    missing.push(format!("{}.{} ({answer})", path.join("."), field.name));
                }
            },
        );
        assert!(
            missing.is_empty(),
            "{shape:?}: Go does not decode {missing:#?}"
        );
    }
}

/// Calls `visit` for every field reachable through structs and pointers.
fn walk_fields<'a>(
    fields: &'a [Field],
    path: &mut Vec<&'a str>,
    visit: &mut dyn FnMut(&[&str], Field),
) {
    for field in fields {
        visit(path, *field);
        if let Kind::Struct(inner) | Kind::Pointer(inner) = field.kind {
            path.push(field.name);
            walk_fields(inner, path, visit);
            path.pop();
        }
    }
}

/// `{"A":{"B":{"Field": <non-zero value of its type>}}}`.
fn nested_body(path: &[&str], field: Field) -> Value {
    let leaf = match field.kind {
        Kind::Scalar | Kind::Nullable => match scalar_type(field.name) {
            Scalar::Bool => json!(true),
            Scalar::Int => json!(1),
            Scalar::Str => json!("x"),
        },
        Kind::Opaque => json!(["x"]),
        Kind::Slice => match field.name {
            "ConsoleSize" => json!([1, 1]),
            "Ulimits" | "Devices" | "DeviceRequests" => json!([{}]),
            name if name.starts_with("Blkio") => json!([{}]),
            _ => json!(["x"]),
        },
        Kind::Array(_) | Kind::ArrayPointer(_) => json!([1, 1]),
        Kind::SliceOf(_) | Kind::SliceOfPointers(_) => json!([{}]),
        Kind::Map => match field.name {
            "ExposedPorts" | "Volumes" => json!({"x": {}}),
            "PortBindings" => json!({"x": []}),
            _ => json!({"x": "x"}),
        },
        Kind::MapOf(_) => json!({"x": {}}),
        Kind::Struct(_) | Kind::Pointer(_) => json!({}),
    };
    path.iter().rev().fold(
        json!({ field.name: leaf }),
        |inner, name| json!({ *name: inner }),
    )
}
