use std::net::{Ipv4Addr, Ipv6Addr};

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::inspect::*;
use super::plan::*;
use super::sans::*;
use super::*;

fn dns(name: &str) -> San {
    San::Dns(name.into())
}

fn ip(addr: &str) -> San {
    San::Ip(addr.parse().unwrap())
}

#[test]
fn parse_sans_takes_dns_and_ip_entries_like_docker_dind() {
    assert_eq!(
        parse_sans("DNS:foo,IP:1.2.3.4").unwrap(),
        [dns("foo"), ip("1.2.3.4")]
    );
    assert_eq!(
        parse_sans(" dns:Foo.Example.com , ip:::1 ,,IP: 10.0.0.1").unwrap(),
        [dns("foo.example.com"), ip("::1"), ip("10.0.0.1")]
    );
    assert_eq!(
        parse_sans("DNS:*.example.com").unwrap(),
        [dns("*.example.com")]
    );
    assert_eq!(parse_sans("").unwrap(), []);
    assert_eq!(parse_sans(" , ").unwrap(), []);
}

#[test]
fn parse_sans_rejects_what_a_certificate_cannot_carry() {
    for spec in [
        "foo",
        "URI:http://x",
        "email:a@b",
        "IP:1.2.3",
        "IP:foo",
        "DNS:",
        "DNS:foo bar",
        "DNS:-foo",
        "DNS:foo..bar",
        "DNS:caf\u{e9}",
    ] {
        let err = parse_sans(spec).unwrap_err().to_string();
        assert!(err.contains("DOCKER_TLS_SAN"), "{spec}: {err}");
        assert!(err.contains("DNS:foo,IP:1.2.3.4"), "{spec}: {err}");
    }
}

#[test]
fn wanted_sans_are_docker_localhost_hostname_addresses_and_extras() {
    let sans = wanted_sans(
        "Box1.corp.example.",
        [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "fe80::42:acff:fe11:2".parse().unwrap(),
            "::ffff:10.1.2.3".parse().unwrap(),
        ],
        &[dns("foo"), ip("1.2.3.4")],
    );
    let expected: BTreeSet<San> = [
        dns("docker"),
        dns("localhost"),
        dns("box1.corp.example"),
        dns("box1"),
        ip("127.0.0.1"),
        ip("172.17.0.2"),
        ip("::1"),
        ip("10.1.2.3"),
        dns("foo"),
        ip("1.2.3.4"),
    ]
    .into_iter()
    .collect();
    assert_eq!(sans, expected);
    // No hostname: still docker and localhost.
    assert_eq!(wanted_sans("", [], &[]).len(), 2);
}

const DAY: Duration = Duration::from_secs(24 * 3600);

fn at(days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(days * 24 * 3600)
}

/// A good certificate valid from day 100 to day 925.
fn good(sans: &[San]) -> CertFacts {
    CertFacts {
        not_before: at(100),
        not_after: at(925),
        sans: sans.iter().cloned().collect(),
        issued_by_ca: true,
        key_matches: true,
        ca_copy_matches: true,
    }
}

fn complete(server_sans: &[San]) -> Inventory {
    Inventory {
        present: Pem::ALL.into_iter().collect(),
        ca: Some(good(&[])),
        server: Some(good(server_sans)),
        client: Some(good(&[])),
    }
}

fn wanted() -> BTreeSet<San> {
    [dns("docker"), ip("127.0.0.1")].into_iter().collect()
}

fn decide(inv: &Inventory, now: SystemTime) -> Result<Plan, TlsError> {
    plan(Path::new("/certs"), inv, &wanted(), now)
}

fn gen(ca: bool, server: bool, client: bool) -> Plan {
    Plan::Generate { ca, server, client }
}

#[test]
fn plans_say_what_they_did() {
    assert_eq!(
        Plan::ALL.to_string(),
        "generated a new CA, server and client certificate"
    );
    assert_eq!(
        gen(false, true, false).to_string(),
        "generated a new server certificate (kept the CA)"
    );
    assert_eq!(
        gen(false, true, true).to_string(),
        "generated a new server and client certificate (kept the CA)"
    );
}

#[test]
fn an_empty_dir_gets_everything() {
    assert_eq!(decide(&Inventory::default(), at(200)).unwrap(), Plan::ALL);
}

#[test]
fn a_complete_valid_set_covering_the_sans_is_reused() {
    let inv = complete(&[dns("docker"), ip("127.0.0.1"), dns("extra")]);
    assert_eq!(decide(&inv, at(200)).unwrap(), Plan::REUSE);
    assert!(!Plan::REUSE.writes());
}

#[test]
fn a_server_cert_missing_a_wanted_san_is_regenerated_alone() {
    let inv = complete(&[dns("docker")]);
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
}

#[test]
fn expired_or_expiring_leaves_are_regenerated_with_the_ca_kept() {
    let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
    inv.client.as_mut().unwrap().not_after = at(150);
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, false, true));
    // Within RENEW_BEFORE of the end counts as expired.
    let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
    inv.server.as_mut().unwrap().not_after = at(210);
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
    // Not yet valid.
    assert_eq!(decide(&inv, at(50)).unwrap(), Plan::ALL);
}

#[test]
fn leaves_not_from_this_ca_or_with_foreign_keys_are_regenerated() {
    let base = complete(&[dns("docker"), ip("127.0.0.1")]);
    let mut inv = base.clone();
    inv.server.as_mut().unwrap().issued_by_ca = false;
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
    let mut inv = base.clone();
    inv.client.as_mut().unwrap().key_matches = false;
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, false, true));
    let mut inv = base;
    inv.server.as_mut().unwrap().ca_copy_matches = false;
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
}

#[test]
fn an_expired_ca_means_a_new_set() {
    let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
    inv.ca.as_mut().unwrap().not_after = at(201);
    assert_eq!(decide(&inv, at(200)).unwrap(), Plan::ALL);
}

#[test]
fn a_missing_leaf_directory_is_generated_with_the_existing_ca() {
    let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
    for f in Pem::CLIENT {
        inv.present.remove(&f);
    }
    inv.client = None;
    assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, false, true));
}

#[test]
fn server_files_without_ca_key_are_brought_by_the_user() {
    let inv = Inventory {
        present: Pem::SERVER.into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(decide(&inv, at(200)).unwrap(), Plan::BringYourOwn);
    // ca/cert.pem alongside (docker:dind's layout without the key) too.
    let mut inv = complete(&[]);
    inv.present.remove(&Pem::CaKey);
    assert_eq!(decide(&inv, at(200)).unwrap(), Plan::BringYourOwn);
}

fn incomplete(present: &[Pem]) -> String {
    let inv = Inventory {
        present: present.iter().copied().collect(),
        ..complete(&[])
    };
    let err = decide(&inv, at(200)).unwrap_err();
    assert!(matches!(err, TlsError::Incomplete { .. }), "{err}");
    err.to_string()
}

#[test]
fn a_half_present_set_is_an_error_naming_the_missing_files() {
    let msg = incomplete(&[Pem::ServerCert]);
    assert!(
        msg.contains("missing server/key.pem, server/ca.pem"),
        "{msg}"
    );
    assert!(msg.contains("present: server/cert.pem"), "{msg}");
    assert!(msg.contains("/certs"), "{msg}");

    let msg = incomplete(&[Pem::ClientKey, Pem::ClientCert, Pem::ClientCa]);
    assert!(msg.contains("missing ca/key.pem, ca/cert.pem"), "{msg}");

    let msg = incomplete(&[Pem::CaKey]);
    assert!(msg.contains("missing ca/cert.pem"), "{msg}");

    let mut all: Vec<Pem> = Pem::ALL.to_vec();
    all.retain(|f| *f != Pem::ClientKey);
    let msg = incomplete(&all);
    assert!(msg.contains("missing client/key.pem"), "{msg}");
    assert!(!msg.contains("missing ca/"), "{msg}");

    let mut all: Vec<Pem> = Pem::ALL.to_vec();
    all.retain(|f| *f != Pem::ServerCa);
    let msg = incomplete(&all);
    assert!(msg.contains("missing server/ca.pem"), "{msg}");
}

// ------------------------------------------------------------ on disk

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn snapshot(dir: &Path) -> Vec<(Pem, Vec<u8>)> {
    Pem::ALL
        .into_iter()
        .map(|f| (f, fs::read(dir.join(f.rel())).unwrap()))
        .collect()
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn generated_files_have_the_layout_and_modes_of_docker_dind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let prepared = prepare(&dir, &wanted(), now()).unwrap();
    assert_eq!(prepared.plan, Plan::ALL);
    for f in Pem::ALL {
        assert_eq!(mode(&dir.join(f.rel())), f.mode(), "{}", f.rel());
    }
    assert_eq!(mode(&dir.join("ca/key.pem")), 0o600);
    assert_eq!(mode(&dir.join("server/key.pem")), 0o600);
    assert_eq!(mode(&dir.join("client/key.pem")), 0o644);
    // No temporary file left behind.
    for sub in ["ca", "server", "client"] {
        for entry in fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.starts_with('.'), "{sub}/{name}");
        }
    }
    let ca = fs::read(dir.join("ca/cert.pem")).unwrap();
    assert_eq!(fs::read(dir.join("server/ca.pem")).unwrap(), ca);
    assert_eq!(fs::read(dir.join("client/ca.pem")).unwrap(), ca);

    let inv = inspect(&dir).unwrap();
    let server = inv.server.unwrap();
    assert!(server.issued_by_ca && server.key_matches && server.ca_copy_matches);
    assert_eq!(server.sans, wanted());
    assert!(server.not_after > now() + VALIDITY - DAY);
    let client = inv.client.unwrap();
    assert!(client.issued_by_ca && client.key_matches);
    // The client certificate is no server certificate, and vice versa.
    assert!(inv.ca.unwrap().issued_by_ca);
}

#[test]
fn a_second_prepare_rewrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir, &wanted(), now()).unwrap();
    let before = snapshot(dir);
    let again = prepare(dir, &wanted(), now()).unwrap();
    assert_eq!(again.plan, Plan::REUSE);
    assert_eq!(snapshot(dir), before);
}

#[test]
fn a_new_san_regenerates_only_the_server_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir, &wanted(), now()).unwrap();
    let before = snapshot(dir);
    let mut more = wanted();
    more.insert(dns("tenant1.example.com"));
    let again = prepare(dir, &more, now()).unwrap();
    assert_eq!(again.plan, gen(false, true, false));
    let after = snapshot(dir);
    for ((f, old), (_, new)) in before.iter().zip(&after) {
        let changed = old != new;
        let expected = matches!(f, Pem::ServerKey | Pem::ServerCert);
        assert_eq!(changed, expected, "{}", f.rel());
    }
    assert!(inspect(dir)
        .unwrap()
        .server
        .unwrap()
        .sans
        .contains(&dns("tenant1.example.com")));
    // A client certificate of the kept CA still verifies: it is unchanged.
}

#[test]
fn a_bring_your_own_set_is_used_as_is_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("generated");
    prepare(&src, &wanted(), now()).unwrap();
    let own = tmp.path().join("own");
    fs::create_dir_all(own.join("server")).unwrap();
    for f in Pem::SERVER {
        fs::copy(src.join(f.rel()), own.join(f.rel())).unwrap();
    }
    let before: Vec<_> = Pem::SERVER
        .iter()
        .map(|f| fs::read(own.join(f.rel())).unwrap())
        .collect();
    let prepared = prepare(&own, &wanted(), now()).unwrap();
    assert_eq!(prepared.plan, Plan::BringYourOwn);
    let after: Vec<_> = Pem::SERVER
        .iter()
        .map(|f| fs::read(own.join(f.rel())).unwrap())
        .collect();
    assert_eq!(before, after);
    assert!(!own.join("ca").exists() && !own.join("client").exists());

    // A CA that did not sign the certificate: refused, naming the file.
    let other = tmp.path().join("other");
    prepare(&other, &wanted(), now()).unwrap();
    fs::copy(other.join("ca/cert.pem"), own.join("server/ca.pem")).unwrap();
    let err = prepare(&own, &wanted(), now()).unwrap_err().to_string();
    assert!(err.contains("server/cert.pem"), "{err}");
    assert!(
        err.contains("does not verify against server/ca.pem"),
        "{err}"
    );

    // A key of another certificate.
    fs::copy(src.join("server/ca.pem"), own.join("server/ca.pem")).unwrap();
    fs::copy(other.join("server/key.pem"), own.join("server/key.pem")).unwrap();
    let err = prepare(&own, &wanted(), now()).unwrap_err().to_string();
    assert!(err.contains("server/key.pem"), "{err}");
}

#[test]
fn garbage_where_a_certificate_should_be_is_an_error_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir, &wanted(), now()).unwrap();
    fs::write(dir.join("server/cert.pem"), "junk").unwrap();
    let err = prepare(dir, &wanted(), now()).unwrap_err().to_string();
    assert!(err.contains("server/cert.pem"), "{err}");
    assert_eq!(fs::read(dir.join("server/cert.pem")).unwrap(), b"junk");
}

#[test]
fn parallel_prepares_on_one_dir_agree_on_one_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || prepare(&dir, &wanted(), now()).map(|p| p.plan))
        })
        .collect();
    let plans: Vec<Plan> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(
        plans.iter().filter(|p| **p == Plan::ALL).count(),
        1,
        "{plans:?}"
    );
    assert_eq!(
        plans.iter().filter(|p| **p == Plan::REUSE).count(),
        3,
        "{plans:?}"
    );
}
