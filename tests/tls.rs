//! The proxy's TLS listener through real sockets (issue 6, TLS): certificates
//! from `dindbox::tls::prepare` in a temp dir, the proxy on 127.0.0.1:0 in
//! front of the fake dockerd of `tests/support/dockerd.rs` (API 1.41; `/_ping`
//! answers OK, attach echoes in upper case), and rustls clients.
//!
//! - the client certificate of the set gets `/_ping` = OK, and a hijacked
//!   stream keeps working after the client half-closes (`docker run -i`);
//! - no client certificate, one from another CA, and an expired one signed by
//!   the right CA are all refused at the handshake, with the TLS alert that
//!   says why;
//! - a client that never finishes its handshake delays nobody else;
//! - `dindbox proxy --listen-tcp` with dockerd's `--tlsverify --tlscacert
//!   --tlscert --tlskey`, or with `--tls-certdir` (issue 6): the same
//!   handshake rules, through the real binary.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dindbox::proxy::{ListenAddr, Listener, Proxy, ProxyConfig};
use dindbox::tls::{self, San};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use support::dockerd::Fake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

struct Harness {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn wanted() -> BTreeSet<San> {
    tls::wanted_sans("box", ["127.0.0.1".parse().unwrap()], &[])
}

fn certs(dir: &Path) -> Arc<rustls::ServerConfig> {
    tls::prepare(dir, &wanted(), SystemTime::now())
        .expect("certificates")
        .config
}

/// Certificates in a temp dir, a fake dockerd, and the proxy serving TLS.
async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let certdir = dir.path().join("certs");
    let config = certs(&certdir);
    let upstream = dir.path().join("dockerd.sock");
    Fake::dockerd_20().spawn(&upstream);
    let proxy = Proxy::new(ProxyConfig {
        upstream,
        policy: Default::default(),
    });
    let listener = Listener::bind(&ListenAddr::Tls(([127, 0, 0, 1], 0).into(), config))
        .await
        .unwrap();
    let addr = listener.local_tcp_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy.serve(listener, shutdown.clone()));
    Harness {
        dir,
        addr,
        shutdown,
    }
}

/// A client that trusts `ca_dir/ca/cert.pem` and presents `identity`
/// (cert, key) if any.
fn client(ca_dir: &Path, identity: Option<(Vec<u8>, Vec<u8>)>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_dir.join("ca/cert.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(&key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

fn client_identity(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("client/cert.pem")).unwrap(),
        std::fs::read(dir.join("client/key.pem")).unwrap(),
    )
}

const PING: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";

/// Connects, sends `raw`, half-closes, reads to the end: the answer, or the
/// TLS error that ended the connection.
async fn exchange(h: &Harness, connector: &TlsConnector, raw: &[u8]) -> Result<String, String> {
    exchange_at(h.addr, connector, raw).await
}

async fn exchange_at(
    addr: SocketAddr,
    connector: &TlsConnector,
    raw: &[u8],
) -> Result<String, String> {
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // TLS 1.3: the server checks the client certificate after the
        // client's last handshake message, so a refusal arrives on read.
        tls.write_all(raw)
            .await
            .map_err(|e| format!("write: {e}"))?;
        tls.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await;
    result.expect("the proxy answered or refused within 10 s")
}

/// The server refused with one of `alerts` (read from the client-side
/// I/O error's text).
fn refused_with(result: Result<String, String>, alerts: &[AlertDescription]) {
    match result {
        Ok(answer) => panic!("the proxy answered instead of refusing:\n{answer}"),
        Err(err) => assert!(
            alerts
                .iter()
                .any(|a| err.contains(&format!("alert: {a:?}"))),
            "expected one of the alerts {alerts:?}, got: {err}"
        ),
    }
}

#[tokio::test]
async fn the_client_certificate_of_the_set_gets_ping_ok() {
    let h = start().await;
    let certdir = h.dir.path().join("certs");
    let connector = client(&certdir, Some(client_identity(&certdir)));
    let answer = exchange(&h, &connector, PING).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");
}

#[tokio::test]
async fn a_hijacked_stream_over_tls_survives_the_client_half_close() {
    let h = start().await;
    let certdir = h.dir.path().join("certs");
    let connector = client(&certdir, Some(client_identity(&certdir)));
    let raw = b"POST /v1.41/containers/c0ffee/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n\
                Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello";
    let answer = exchange(&h, &connector, raw).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.ends_with("HELLObye"), "{answer}");
}

#[tokio::test]
async fn no_client_certificate_is_refused_at_the_handshake() {
    let h = start().await;
    let connector = client(&h.dir.path().join("certs"), None);
    refused_with(
        exchange(&h, &connector, PING).await,
        &[AlertDescription::CertificateRequired],
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_at_the_handshake() {
    let h = start().await;
    let other = tempfile::tempdir().unwrap();
    certs(other.path());
    // Trusts the right server, presents the other set's client certificate.
    let connector = client(
        &h.dir.path().join("certs"),
        Some(client_identity(other.path())),
    );
    // Every dindbox CA is named "dindbox CA" (as every docker:dind CA is
    // "docker:dind CA"): the issuer is found by name, and its signature fails.
    refused_with(
        exchange(&h, &connector, PING).await,
        &[AlertDescription::DecryptError],
    );

    // A CA of another name: unknown.
    let foreign_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "someone else's CA");
    let issuer = rcgen::Issuer::new(ca, &foreign_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let connector = client(
        &h.dir.path().join("certs"),
        Some((cert.pem().into_bytes(), key.serialize_pem().into_bytes())),
    );
    refused_with(
        exchange(&h, &connector, PING).await,
        &[AlertDescription::UnknownCA],
    );
}

#[tokio::test]
async fn an_expired_client_certificate_of_the_right_ca_is_refused_at_the_handshake() {
    let h = start().await;
    let certdir = h.dir.path().join("certs");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(certdir.join("ca/key.pem")).unwrap())
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(certdir.join("ca/cert.pem")).unwrap(),
        &ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let day = Duration::from_secs(24 * 3600);
    params.not_before = (SystemTime::now() - 30 * day).into();
    params.not_after = (SystemTime::now() - day).into();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let connector = client(
        &certdir,
        Some((cert.pem().into_bytes(), key.serialize_pem().into_bytes())),
    );
    refused_with(
        exchange(&h, &connector, PING).await,
        &[AlertDescription::CertificateExpired],
    );
}

#[tokio::test]
async fn a_silent_client_delays_nobody_else() {
    let h = start().await;
    // Connects and never says a word: its handshake waits in its own task.
    let _silent = TcpStream::connect(h.addr).await.unwrap();
    let certdir = h.dir.path().join("certs");
    let connector = client(&certdir, Some(client_identity(&certdir)));
    let started = std::time::Instant::now();
    let answer = exchange(&h, &connector, PING).await.unwrap();
    assert!(answer.ends_with("OK"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------- `dindbox proxy` with TLS flags

/// The `dindbox proxy` binary in front of a fake dockerd, with `tls_flags`,
/// on a free loopback port; killed on drop.
struct Standalone {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    child: std::process::Child,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn standalone(dir: tempfile::TempDir, tls_flags: &[&str]) -> Standalone {
    let upstream = dir.path().join("dockerd.sock");
    Fake::dockerd_20().spawn(&upstream);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dindbox"))
        .arg("proxy")
        .arg("--ds")
        .arg(&upstream)
        .args(["--listen-tcp", &addr.to_string()])
        .args(tls_flags)
        .env_remove("DINDBOX_POLICY")
        .spawn()
        .expect("start dindbox proxy");
    let mut proxy = Standalone {
        _dir: dir,
        addr,
        child,
    };
    let started = std::time::Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            panic!("dindbox proxy exited before listening: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dindbox proxy did not listen on {addr} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy
}

/// A client without a certificate finishes its side of the handshake, says
/// nothing, and reads the server's alert. (Across processes, a client that
/// writes first may see its write fail before it reads the alert.)
async fn refused_without_a_client_certificate(addr: SocketAddr, certdir: &Path) {
    let connector = client(certdir, None);
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .expect("the proxy refused within 10 s");
    refused_with(result, &[AlertDescription::CertificateRequired]);
}

#[tokio::test]
async fn standalone_proxy_serves_mtls_with_dockerds_flag_names() {
    let dir = tempfile::tempdir().unwrap();
    let certdir = dir.path().join("certs");
    certs(&certdir);
    let file = |rel: &str| certdir.join(rel).to_string_lossy().into_owned();
    let (ca, cert, key) = (
        file("ca/cert.pem"),
        file("server/cert.pem"),
        file("server/key.pem"),
    );
    let proxy = standalone(
        dir,
        &[
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
        ],
    )
    .await;
    let with_cert = client(&certdir, Some(client_identity(&certdir)));
    let answer = exchange_at(proxy.addr, &with_cert, PING).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");
    refused_without_a_client_certificate(proxy.addr, &certdir).await;
}

#[tokio::test]
async fn standalone_proxy_generates_and_serves_a_docker_dind_cert_dir() {
    let dir = tempfile::tempdir().unwrap();
    let certdir = dir.path().join("generated");
    let flag = certdir.to_string_lossy().into_owned();
    let proxy = standalone(
        dir,
        &["--tls-certdir", &flag, "--tls-san", "DNS:ci.example"],
    )
    .await;
    for file in [
        "ca/cert.pem",
        "server/cert.pem",
        "client/cert.pem",
        "client/key.pem",
    ] {
        assert!(certdir.join(file).is_file(), "{file} was not generated");
    }
    let with_cert = client(&certdir, Some(client_identity(&certdir)));
    let answer = exchange_at(proxy.addr, &with_cert, PING).await.unwrap();
    assert!(answer.ends_with("OK"), "{answer}");
    refused_without_a_client_certificate(proxy.addr, &certdir).await;
}

#[test]
fn standalone_tls_flags_without_verification_are_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dindbox"))
        .args([
            "proxy",
            "--ds",
            "/nonexistent.sock",
            "--listen-tcp",
            "127.0.0.1:0",
        ])
        .args(["--tlscert", "/c/cert.pem", "--tlskey", "/c/key.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("need --tlsverify"), "{stderr}");
}
