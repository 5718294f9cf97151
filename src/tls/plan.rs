//! What to do with a cert dir: use it, reuse it, or generate what is stale.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use super::inspect::Inventory;
use super::sans::San;
use super::{list, Pem, TlsError};

/// What to do with a cert dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `server/{ca,cert,key}.pem` without `ca/key.pem`: the user's, used as is.
    BringYourOwn,
    /// Regenerate these (all false: reuse everything); the rest is kept byte
    /// for byte. A new CA always comes with a new server and client.
    Generate {
        ca: bool,
        server: bool,
        client: bool,
    },
}

impl Plan {
    pub const REUSE: Plan = Plan::Generate {
        ca: false,
        server: false,
        client: false,
    };
    pub(super) const ALL: Plan = Plan::Generate {
        ca: true,
        server: true,
        client: true,
    };

    pub fn writes(self) -> bool {
        !matches!(self, Plan::BringYourOwn | Plan::REUSE)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Plan::BringYourOwn => write!(f, "using the supplied server/{{ca,cert,key}}.pem"),
            Plan::REUSE => write!(f, "reusing the existing CA, server and client certificates"),
            Plan::Generate { ca, server, client } => {
                let made: Vec<&str> = [(ca, "CA"), (server, "server"), (client, "client")]
                    .into_iter()
                    .filter_map(|(on, what)| on.then_some(what))
                    .collect();
                let made = match made.as_slice() {
                    [.., last] if made.len() > 1 => {
                        format!("{} and {last}", made[..made.len() - 1].join(", "))
                    }
                    _ => made.join(""),
                };
                write!(f, "generated a new {made} certificate")?;
                if !ca {
                    write!(f, " (kept the CA)")?;
                }
                Ok(())
            }
        }
    }
}

/// Decides what to generate, from what exists, the SANs the server must
/// carry, and the time. Pure: no I/O.
pub fn plan(
    dir: &Path,
    inv: &Inventory,
    wanted: &BTreeSet<San>,
    now: SystemTime,
) -> Result<Plan, TlsError> {
    let has = |f: Pem| inv.present.contains(&f);
    if inv.present.is_empty() {
        return Ok(Plan::ALL);
    }
    let incomplete = |group: &[Pem], hint: &'static str| TlsError::Incomplete {
        dir: dir.to_path_buf(),
        missing: list(group.iter().copied().filter(|f| !has(*f))),
        present: list(inv.present.iter().copied()),
        hint,
    };
    if !has(Pem::CaKey) {
        if Pem::SERVER.iter().all(|f| has(*f)) {
            return Ok(Plan::BringYourOwn);
        }
        let wanted_files: Vec<Pem> = if Pem::SERVER.iter().any(|f| has(*f)) {
            Pem::SERVER.to_vec()
        } else {
            vec![Pem::CaKey, Pem::CaCert]
        };
        return Err(incomplete(
            &wanted_files,
            "To bring your own certificates, supply server/ca.pem, server/cert.pem and \
             server/key.pem (and no ca/key.pem); to have dindbox generate a set, empty the \
             directory",
        ));
    }
    if !has(Pem::CaCert) {
        return Err(incomplete(
            &[Pem::CaCert],
            "dindbox will not make a new CA certificate for an existing key (every client \
             would stop working silently): restore ca/cert.pem, or empty the directory to \
             start over",
        ));
    }
    for group in [&Pem::SERVER, &Pem::CLIENT] {
        if group.iter().any(|f| has(*f)) && !group.iter().all(|f| has(*f)) {
            return Err(incomplete(
                group,
                "restore the missing files, or remove the others of that directory to have \
                 dindbox generate them again with the existing CA",
            ));
        }
    }
    if !inv.ca.as_ref().is_some_and(|ca| ca.usable(now)) {
        return Ok(Plan::ALL);
    }
    let server = !inv
        .server
        .as_ref()
        .is_some_and(|s| s.usable(now) && s.sans.is_superset(wanted));
    let client = !inv.client.as_ref().is_some_and(|c| c.usable(now));
    Ok(Plan::Generate {
        ca: false,
        server,
        client,
    })
}
