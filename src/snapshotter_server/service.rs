//! containerd's snapshots service with overlay semantics (containerd
//! `plugins/snapshots/overlay/overlay.go` and `core/snapshots/storage/` at
//! v2.1): the rules of the calls, the quota, and the host mounts that
//! stand for active snapshots and views.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use containerd_snapshots::api::types::Mount;
use containerd_snapshots::tonic::{self, Status};
use containerd_snapshots::{Info, Snapshotter};
use tracing::{debug, info, warn};

use super::area::{Area, AreaError, Plan};
use super::filter::{Fields, FilterError, Filters};
use super::store::{Kind, Record, Store, StoreError, Usage};

/// The longest key or name accepted.
pub const MAX_KEY_BYTES: usize = 4096;
/// containerd's limit on one label (key and value together).
pub const MAX_LABEL_BYTES: usize = 4096;
/// The most label bytes one snapshot may carry.
pub const MAX_LABELS_BYTES: usize = 64 * 1024;
/// Tests only: `after-commit-record` makes the server abort between
/// Commit's transaction and its unmount, a window a real kill rarely hits.
/// Read by debug builds alone: the release binary has no fault points.
pub const FAULT_ENV: &str = "DINDBOX_SN_TEST_FAULT";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Area(#[from] AreaError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the box's snapshots would take {would} bytes, more than its quota of {max} (--max-bytes)"
    )]
    Quota { would: u64, max: u64 },
    #[error("a worker task failed: {0}")]
    Join(String),
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        let text = err.to_string();
        match err {
            ServiceError::Store(StoreError::NotFound(_)) => Status::not_found(text),
            ServiceError::Store(StoreError::AlreadyExists(_)) => Status::already_exists(text),
            ServiceError::Store(
                StoreError::ParentNotCommitted(_)
                | StoreError::NotActive(_)
                | StoreError::HasChildren(_),
            ) => Status::failed_precondition(text),
            ServiceError::Invalid(_) | ServiceError::Filter(_) => Status::invalid_argument(text),
            ServiceError::Quota { .. } => Status::resource_exhausted(text),
            _ => Status::internal(text),
        }
    }
}

/// The service: one box's store and area.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    area: Area,
    max_bytes: Option<u64>,
    /// Calls that change records and mounts run one at a time.
    changing: Mutex<()>,
}

impl Service {
    /// Opens the store in `area`, remounts what a previous run mounted and
    /// the host lost (a reboot, a new mount namespace) and sweeps leftovers.
    pub fn open(area: Area, max_bytes: Option<u64>) -> Result<Service, ServiceError> {
        let path = area
            .metadata_path()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let store = Store::open(&path)?;
        let inner = Inner {
            store,
            area,
            max_bytes,
            changing: Mutex::new(()),
        };
        inner.restore()?;
        Ok(Service {
            inner: Arc::new(inner),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Inner) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || call(&inner))
            .await
            .map_err(|e| ServiceError::Join(e.to_string()))?
    }
}

/// Aborts here if [`FAULT_ENV`] names this point (a crash, for tests).
fn fault_point(point: &str) {
    if cfg!(debug_assertions) && std::env::var_os(FAULT_ENV).is_some_and(|v| v == point) {
        tracing::error!(point, "{FAULT_ENV}: aborting");
        std::process::abort();
    }
}

fn check_key(what: &str, key: &str) -> Result<(), ServiceError> {
    if key.is_empty() {
        return Err(ServiceError::Invalid(format!("the {what} is empty")));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ServiceError::Invalid(format!(
            "the {what} is {} bytes, more than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

fn check_labels(labels: HashMap<String, String>) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut total = 0;
    for (k, v) in &labels {
        if k.is_empty() {
            return Err(ServiceError::Invalid("a label key is empty".into()));
        }
        if k.len() + v.len() > MAX_LABEL_BYTES {
            return Err(ServiceError::Invalid(format!(
                "label {:?}: key and value are {} bytes, more than {MAX_LABEL_BYTES}",
                k.chars().take(64).collect::<String>(),
                k.len() + v.len()
            )));
        }
        total += k.len() + v.len();
    }
    if total > MAX_LABELS_BYTES {
        return Err(ServiceError::Invalid(format!(
            "the labels are {total} bytes, more than {MAX_LABELS_BYTES}"
        )));
    }
    Ok(labels.into_iter().collect())
}

/// Whether a key is containerd's for unpacking a layer: `extract-…`
/// (`snapshots.UnpackKeyPrefix`), behind the metadata store's
/// `<namespace>/<n>/`. The box chooses it; it only decides whether its own
/// layer is synced to disk at unmount.
fn is_extraction(key: &str) -> bool {
    key.splitn(3, '/')
        .nth(2)
        .is_some_and(|k| k.starts_with("extract-"))
}

fn info(key: &str, record: &Record) -> Info {
    Info {
        kind: match record.kind {
            Kind::View => containerd_snapshots::Kind::View,
            Kind::Active => containerd_snapshots::Kind::Active,
            Kind::Committed => containerd_snapshots::Kind::Committed,
        },
        name: key.to_string(),
        parent: record.parent.clone(),
        labels: record.labels.clone().into_iter().collect(),
        created_at: record.created,
        updated_at: record.updated,
    }
}

impl Inner {
    fn restore(&self) -> Result<(), ServiceError> {
        let records = self.store.all()?;
        self.area.sweep(&self.store.ids()?)?;
        let mut remounted = 0;
        for (key, record) in &records {
            if record.kind == Kind::Committed {
                // A crash between Commit's transaction and its unmount.
                if self.area.is_mounted(record.id) {
                    warn!(name = %key, id = record.id, "unmounting a committed snapshot a crash left mounted");
                    self.area.unmount(record.id)?;
                }
                continue;
            }
            if self.area.is_mounted(record.id) {
                continue;
            }
            match self
                .plan(key, record)
                .and_then(|plan| Ok(self.area.mount(record.id, &plan)?))
            {
                Ok(()) => remounted += 1,
                Err(err) => {
                    warn!(key = %key, id = record.id, error = %err, "could not remount a snapshot")
                }
            }
        }
        info!(
            snapshots = records.len(),
            remounted, "restored the snapshots of the previous run"
        );
        Ok(())
    }

    /// How a record is mounted (overlay.go's `mounts`).
    fn plan(&self, key: &str, record: &Record) -> Result<Plan, ServiceError> {
        let readonly = record.kind == Kind::View;
        let lowers: Vec<u64> = self
            .store
            .chain(&record.parent)?
            .iter()
            .map(|r| r.id)
            .collect();
        Ok(match (lowers.as_slice(), readonly) {
            ([], _) => Plan::Own { readonly },
            ([only], true) => Plan::Parent(*only),
            _ => Plan::Overlay {
                lowers,
                readonly,
                volatile: is_extraction(key),
            },
        })
    }

    /// Bytes of every snapshot but `except`: frozen for committed ones,
    /// measured for active ones.
    fn total_usage(&self, except: Option<u64>) -> Result<u64, ServiceError> {
        let mut total = 0;
        for (_, record) in self.store.all()? {
            if Some(record.id) == except {
                continue;
            }
            total += match record.usage {
                Some(usage) => usage.size,
                None if record.kind == Kind::Active => self.area.usage(record.id)?.size,
                None => 0,
            };
        }
        Ok(total)
    }

    fn check_quota(&self, adding: u64) -> Result<(), ServiceError> {
        let Some(max) = self.max_bytes else {
            return Ok(());
        };
        let would = self.total_usage(None)? + adding;
        if would > max {
            return Err(ServiceError::Quota { would, max });
        }
        Ok(())
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ServiceError> {
        check_key("key", key)?;
        let labels = check_labels(labels)?;
        let _changing = self.changing.lock().expect("lock");
        if kind == Kind::Active {
            self.check_quota(0)?;
        }
        let record = self
            .store
            .create(key, kind, parent, labels, |id| self.area.make_dirs(id))?;
        let mounted = self
            .plan(key, &record)
            .and_then(|plan| Ok(self.area.mount(record.id, &plan)?));
        if let Err(err) = mounted {
            let _ = self.store.remove(key);
            let _ = self.area.unmount(record.id);
            let _ = self.area.remove_dirs(record.id);
            return Err(err);
        }
        info!(
            key,
            parent,
            id = record.id,
            kind = kind.name(),
            "snapshot created and mounted"
        );
        Ok(vec![self.area.box_mount(record.id, kind == Kind::View)])
    }

    fn record(&self, key: &str) -> Result<Record, ServiceError> {
        self.store
            .get(key)?
            .ok_or_else(|| StoreError::NotFound(key.to_string()).into())
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, ServiceError> {
        let record = self.record(key)?;
        if record.kind == Kind::Committed {
            return Err(ServiceError::Invalid(format!(
                "snapshot {key:?} is committed: it has no mounts"
            )));
        }
        Ok(vec![self
            .area
            .box_mount(record.id, record.kind == Kind::View)])
    }

    fn commit(
        &self,
        name: &str,
        key: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ServiceError> {
        check_key("name", name)?;
        let labels = check_labels(labels)?;
        let _changing = self.changing.lock().expect("lock");
        let record = self.record(key)?;
        if record.kind != Kind::Active {
            return Err(StoreError::NotActive(key.to_string()).into());
        }
        let usage = self.area.usage(record.id)?;
        if let Some(max) = self.max_bytes {
            let would = self.total_usage(Some(record.id))? + usage.size;
            if would > max {
                return Err(ServiceError::Quota { would, max });
            }
        }
        let committed = self.store.commit(key, name, labels, usage)?;
        fault_point("after-commit-record");
        // A committed snapshot is only ever a lower: never an upper again.
        self.area.unmount(committed.id)?;
        info!(
            key,
            name,
            id = committed.id,
            size = usage.size,
            "snapshot committed"
        );
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), ServiceError> {
        let _changing = self.changing.lock().expect("lock");
        let record = self.store.remove(key)?;
        if record.kind != Kind::Committed {
            self.area.unmount(record.id)?;
        }
        self.area.remove_dirs(record.id)?;
        info!(key, id = record.id, "snapshot removed");
        Ok(())
    }

    fn usage(&self, key: &str) -> Result<Usage, ServiceError> {
        let record = self.record(key)?;
        match record.usage {
            Some(usage) => Ok(usage),
            None => Ok(self.area.usage(record.id)?),
        }
    }

    /// Only labels change (storage's `UpdateInfo`): `labels` replaces them
    /// all, `labels.KEY` sets or deletes one, no paths means `labels`.
    fn update(&self, new: Info, paths: Option<Vec<String>>) -> Result<Info, ServiceError> {
        check_key("key", &new.name)?;
        let labels = check_labels(new.labels)?;
        let paths = paths.filter(|p| !p.is_empty());
        let _changing = self.changing.lock().expect("lock");
        let record = self.store.update(&new.name, |record| {
            let mut updated = record.labels.clone();
            match &paths {
                None => updated = labels.clone(),
                Some(paths) => {
                    for path in paths {
                        if path == "labels" {
                            updated = labels.clone();
                        } else if let Some(label) = path.strip_prefix("labels.") {
                            match labels.get(label) {
                                Some(v) => updated.insert(label.to_string(), v.clone()),
                                None => updated.remove(label),
                            };
                        } else {
                            return Err(ServiceError::Invalid(format!(
                                "cannot update the {:?} field of a snapshot",
                                path.chars().take(64).collect::<String>()
                            )));
                        }
                    }
                }
            }
            let total: usize = updated.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > MAX_LABELS_BYTES {
                return Err(ServiceError::Invalid(format!(
                    "the labels would be {total} bytes, more than {MAX_LABELS_BYTES}"
                )));
            }
            record.labels = updated;
            Ok(())
        })?;
        Ok(info(&new.name, &record))
    }

    fn walk(&self, filters: &[String]) -> Result<Vec<Info>, ServiceError> {
        let filters = Filters::parse(filters)?;
        Ok(self
            .store
            .all()?
            .into_iter()
            .filter(|(key, r)| {
                filters.matches(&Fields {
                    name: key,
                    parent: &r.parent,
                    kind: r.kind.name(),
                    labels: &r.labels,
                })
            })
            .map(|(key, r)| info(&key, &r))
            .collect())
    }

    fn cleanup(&self) -> Result<(), ServiceError> {
        let _changing = self.changing.lock().expect("lock");
        self.area.sweep(&self.store.ids()?)?;
        Ok(())
    }
}

#[tonic::async_trait]
impl Snapshotter for Service {
    type Error = ServiceError;

    async fn stat(&self, key: String) -> Result<Info, ServiceError> {
        debug!(call = "Stat", %key);
        self.run(move |s| Ok(info(&key, &s.record(&key)?))).await
    }

    async fn update(
        &self,
        info: Info,
        fieldpaths: Option<Vec<String>>,
    ) -> Result<Info, ServiceError> {
        debug!(call = "Update", key = %info.name, ?fieldpaths);
        self.run(move |s| s.update(info, fieldpaths)).await
    }

    async fn usage(&self, key: String) -> Result<containerd_snapshots::Usage, ServiceError> {
        debug!(call = "Usage", %key);
        let usage = self.run(move |s| s.usage(&key)).await?;
        Ok(containerd_snapshots::Usage {
            size: i64::try_from(usage.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(usage.inodes).unwrap_or(i64::MAX),
        })
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, ServiceError> {
        debug!(call = "Mounts", %key);
        self.run(move |s| s.mounts(&key)).await
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ServiceError> {
        debug!(call = "Prepare", %key, %parent);
        self.run(move |s| s.create(Kind::Active, &key, &parent, labels))
            .await
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ServiceError> {
        debug!(call = "View", %key, %parent);
        self.run(move |s| s.create(Kind::View, &key, &parent, labels))
            .await
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), ServiceError> {
        debug!(call = "Commit", %key, %name);
        self.run(move |s| s.commit(&name, &key, labels)).await
    }

    async fn remove(&self, key: String) -> Result<(), ServiceError> {
        debug!(call = "Remove", %key);
        self.run(move |s| s.remove(&key)).await
    }

    async fn clear(&self) -> Result<(), ServiceError> {
        debug!(call = "Cleanup");
        self.run(|s| s.cleanup()).await
    }

    type InfoStream = tokio_stream::Iter<std::vec::IntoIter<Result<Info, ServiceError>>>;

    async fn list(
        &self,
        _snapshotter: String,
        filters: Vec<String>,
    ) -> Result<Self::InfoStream, ServiceError> {
        debug!(call = "Walk", ?filters);
        let infos = self.run(move |s| s.walk(&filters)).await?;
        Ok(tokio_stream::iter(
            infos.into_iter().map(Ok).collect::<Vec<_>>(),
        ))
    }
}
