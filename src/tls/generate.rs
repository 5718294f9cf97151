//! Generation: the missing or stale certificates made with rcgen, under a lock, written
//! atomically.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;

use super::config::{provider, server_config};
use super::inspect::{bad, cert_chain, inspect, key_spki, parse_cert, read};
use super::plan::{plan, Plan};
use super::sans::San;
use super::{Pem, TlsError, BACKDATE, LOCK_FILE, VALIDITY};

/// What [`prepare`] did.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    /// The SANs of the server certificate when dindbox made or checked it.
    pub sans: BTreeSet<San>,
    pub config: Arc<ServerConfig>,
}

/// Generates or reuses the certificates in `dir` for `wanted`, and returns
/// the proxy's TLS configuration. Holds an exclusive `flock` on
/// `dir/.dindbox.lock` while it looks and writes, so boxes sharing `dir`
/// neither race nor undo each other's work; a read-only `dir` is only read.
pub fn prepare(dir: &Path, wanted: &BTreeSet<San>, now: SystemTime) -> Result<Prepared, TlsError> {
    let _lock = lock(dir)?;
    let plan = plan(dir, &inspect(dir)?, wanted, now)?;
    match plan {
        Plan::BringYourOwn => verify_own(dir, now)?,
        Plan::Generate { ca, server, client } => generate(dir, ca, server, client, wanted, now)?,
    }
    let config = server_config(dir)?;
    Ok(Prepared {
        plan,
        sans: wanted.clone(),
        config,
    })
}

/// Takes the generation lock, creating `dir` if needed. `None` when `dir`
/// is read-only (nothing can be written there, by us or a sibling box).
pub(super) fn lock(dir: &Path) -> Result<Option<Flock<File>>, TlsError> {
    if let Err(err) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        return Err(TlsError::Io {
            what: "create",
            path: dir.to_path_buf(),
            err,
        });
    }
    let path = dir.join(LOCK_FILE);
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::EROFS) => return Ok(None),
        Err(err) => {
            return Err(TlsError::Io {
                what: "open the lock file",
                path,
                err,
            })
        }
    };
    Flock::lock(file, FlockArg::LockExclusive)
        .map(Some)
        .map_err(|(_, errno)| TlsError::Io {
            what: "lock",
            path,
            err: errno.into(),
        })
}

/// docker:dind's `openssl verify -CAfile server/ca.pem server/cert.pem`,
/// plus: valid now, and the key belongs to the certificate.
pub(super) fn verify_own(dir: &Path, now: SystemTime) -> Result<(), TlsError> {
    let chain = cert_chain(dir, Pem::ServerCert, &read(dir, Pem::ServerCert)?)?;
    let roots = cert_chain(dir, Pem::ServerCa, &read(dir, Pem::ServerCa)?)?;
    let anchors = roots
        .iter()
        .map(|der| {
            webpki::anchor_from_trusted_cert(der)
                .map(|a| a.to_owned())
                .map_err(|err| bad(dir, Pem::ServerCa, format!("not a usable CA: {err:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let end = webpki::EndEntityCert::try_from(&chain[0]).map_err(|err| {
        bad(
            dir,
            Pem::ServerCert,
            format!("not a usable certificate: {err:?}"),
        )
    })?;
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    end.verify_for_usage(
        provider().signature_verification_algorithms.all,
        &anchors,
        &chain[1..],
        rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|err| {
        bad(
            dir,
            Pem::ServerCert,
            format!("does not verify against server/ca.pem: {err:?}"),
        )
    })?;
    let cert = parse_cert(dir, Pem::ServerCert, &chain[0])?;
    if key_spki(dir, Pem::ServerKey)?.is_some_and(|spki| spki != cert.public_key().raw) {
        return Err(bad(
            dir,
            Pem::ServerKey,
            "is not the key of server/cert.pem",
        ));
    }
    Ok(())
}

pub(super) fn generate(
    dir: &Path,
    new_ca: bool,
    server: bool,
    client: bool,
    wanted: &BTreeSet<San>,
    now: SystemTime,
) -> Result<(), TlsError> {
    if !(new_ca || server || client) {
        return Ok(());
    }
    let gen = |what, err| TlsError::Generate { what, err };
    let (ca_key, ca_pem) = if new_ca {
        let key = new_key("CA key")?;
        let mut params = params("dindbox CA", now);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| gen("CA certificate", e))?;
        write_atomic(dir, Pem::CaKey, key.serialize_pem().as_bytes())?;
        write_atomic(dir, Pem::CaCert, cert.pem().as_bytes())?;
        (key, cert.pem())
    } else {
        let key_pem = String::from_utf8_lossy(&read(dir, Pem::CaKey)?).into_owned();
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|err| bad(dir, Pem::CaKey, format!("unusable CA key: {err}")))?;
        let ca_pem = String::from_utf8_lossy(&read(dir, Pem::CaCert)?).into_owned();
        (key, ca_pem)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .map_err(|err| bad(dir, Pem::CaCert, format!("unusable CA certificate: {err}")))?;
    let leaves = [
        (
            server,
            "server",
            Pem::SERVER,
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            client,
            "client",
            Pem::CLIENT,
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ];
    for (on, role, [key_file, cert_file, ca_file], eku) in leaves {
        if !(on || new_ca) {
            continue;
        }
        let key = new_key(role)?;
        let mut params = params(&format!("dindbox {role}"), now);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        if role == "server" {
            params.subject_alt_names = wanted
                .iter()
                .map(|san| match san {
                    San::Dns(name) => name
                        .clone()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|e| gen("server certificate", e)),
                    San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                })
                .collect::<Result<_, _>>()?;
        }
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| gen("certificate", e))?;
        write_atomic(dir, key_file, key.serialize_pem().as_bytes())?;
        write_atomic(dir, ca_file, ca_pem.as_bytes())?;
        write_atomic(dir, cert_file, cert.pem().as_bytes())?;
    }
    Ok(())
}

pub(super) fn new_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|err| TlsError::Generate { what, err })
}

pub(super) fn params(common_name: &str, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + VALIDITY).into();
    params
}

/// Writes `dir/file` so that no reader ever sees a partial file: a
/// temporary file in the same directory with the final mode, synced, then
/// renamed over the old one.
pub(super) fn write_atomic(dir: &Path, file: Pem, contents: &[u8]) -> Result<(), TlsError> {
    let path = dir.join(file.rel());
    let parent = path.parent().unwrap_or(dir);
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |err| TlsError::Io { what, path, err }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(io_err("create", parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        out.set_permissions(fs::Permissions::from_mode(file.mode()))?;
        out.write_all(contents)?;
        out.sync_all()
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(err));
    }
    fs::rename(&tmp, &path).map_err(io_err("rename into", &path))?;
    // The rename itself must survive a crash too.
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", parent))
}
