//! The proxy's request path on arbitrary input: method, target, content type
//! and body. It must never panic, and whatever it forwards must pass the same
//! checks again unchanged (what is forwarded is exactly what was validated).

#![no_main]

#[path = "../../tests/support/policy.rs"]
mod fixture;

use dindbox::proxy::check::{admit, inspects_body, rewrite_body};
use dindbox::proxy::policy::{Family, Policy};
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];

fuzz_target!(|data: &[u8]| {
    // Layout: method selector, target, NUL, content type, NUL, body.
    let Some((&selector, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let (Some(target), Some(content_type), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let method = &METHODS[usize::from(selector) % METHODS.len()];
    let Ok(uri) = Uri::try_from(target) else { return };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    // The selector's high bit picks the policy: a standalone proxy with an
    // owner label, or a box with every optional family enabled (the two
    // cannot be combined; see `config::validate`).
    let (owner, allow) = match selector & 0x80 {
        0 => (Some(("ci.owner".into(), "fuzz".into())), Default::default()),
        _ => (None, Family::ALL.into_iter().collect()),
    };
    let policy = Policy {
        owner,
        allow,
        ..fixture::box_policy()
    };
    let Ok(route) = admit(&policy, method, &uri, &headers) else { return };
    // The forwarded target must route to the same endpoint.
    let forwarded: Uri = route.target().parse().expect("the proxy's own target parses");
    let again = admit(&policy, method, &forwarded, &headers).expect("the forwarded target is admitted");
    assert_eq!(again.endpoint, route.endpoint);
    if !inspects_body(route.endpoint) {
        return;
    }
    if let Ok(out) = rewrite_body(&policy, route.endpoint, &headers, body) {
        if !out.is_empty() {
            let json = HeaderMap::from_iter([(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))]);
            let twice = rewrite_body(&policy, route.endpoint, &json, &out).expect("a forwarded body passes again");
            assert_eq!(twice, out, "rewriting is idempotent");
        }
    }
});
