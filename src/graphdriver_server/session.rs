//! One initialised Home: its driver, where the box sees it, and what its
//! layers take on disk for `--max-bytes`.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::info;

use super::archive::Quota;
use super::beneath::Dir;
use super::protocol::LayerId;
use super::{Driver, DriverError};

pub struct Session {
    pub host_home: PathBuf,
    container_home: PathBuf,
    pub driver: Arc<dyn Driver>,
    /// Bytes on disk per layer, for `--max-bytes`.
    usage: Mutex<HashMap<LayerId, u64>>,
    /// Container (read-write) layers: re-measured on Put.
    rw: Mutex<HashSet<LayerId>>,
    _home: Dir,
}

impl Session {
    /// Starts serving `home` (at `host_home` on the host, `container_home`
    /// in the box) with `driver`, measuring the layers already there.
    pub fn open(
        host_home: PathBuf,
        container_home: PathBuf,
        home: Dir,
        driver: Arc<dyn Driver>,
        max_bytes: Option<u64>,
    ) -> Result<Session, DriverError> {
        let mut usage = HashMap::new();
        for id in driver.layers()? {
            let size = driver.size(&id).unwrap_or(0);
            usage.insert(id, size);
        }
        info!(
            host_home = %host_home.display(),
            driver = driver.name(),
            layers = usage.len(),
            bytes = usage.values().sum::<u64>(),
            max_bytes = ?max_bytes,
            "home ready"
        );
        Ok(Session {
            host_home,
            container_home,
            driver,
            usage: Mutex::new(usage),
            rw: Mutex::new(HashSet::new()),
            _home: home,
        })
    }

    /// A host path in the home, as the container sees it.
    pub fn to_container(&self, host: &Path) -> Result<String, DriverError> {
        let rel = host.strip_prefix(&self.host_home).map_err(|_| {
            DriverError::Invalid(format!(
                "refusing to hand out {}: it is outside the container's storage",
                host.display()
            ))
        })?;
        Ok(self.container_home.join(rel).display().to_string())
    }

    /// The budget left under `limit` for one operation.
    pub fn quota(&self, limit: Option<u64>) -> Quota {
        let used = self.usage.lock().expect("usage lock").values().sum();
        Quota::new(limit, used)
    }

    /// Adds what an operation wrote to layer `id`.
    pub fn charge(&self, id: &LayerId, bytes: u64) {
        *self
            .usage
            .lock()
            .expect("usage lock")
            .entry(id.clone())
            .or_default() += bytes;
    }

    /// Marks `id` a container layer, whose size changes while it runs.
    pub fn add_rw(&self, id: LayerId) {
        self.rw.lock().expect("rw lock").insert(id);
    }

    /// Re-measures a container layer (after a Put: the container may have
    /// written into it meanwhile); image layers keep what they were charged.
    pub fn remeasure(&self, id: &LayerId) {
        if self.rw.lock().expect("rw lock").contains(id) {
            if let Ok(size) = self.driver.size(id) {
                self.usage
                    .lock()
                    .expect("usage lock")
                    .insert(id.clone(), size);
            }
        }
    }

    /// Forgets a removed layer.
    pub fn forget(&self, id: &LayerId) {
        self.usage.lock().expect("usage lock").remove(id);
        self.rw.lock().expect("rw lock").remove(id);
    }
}
