//! The snapshots' metadata: one redb file per box (`ROOT/NAME/metadata.redb`).
//!
//! redb is a pure-Rust, single-file, ACID key-value store: every write
//! transaction is copy-on-write and fsynced on commit, so a crash leaves
//! either the old or the new state, never half a commit. Each snapshot call
//! is one transaction (Commit renames key to name and freezes the usage in
//! the same one). The file system follows the metadata: directories are
//! made before their record and removed after it, so a crash can leave only
//! an orphan directory, which [`Store::ids`] lets the server sweep.
//!
//! Keys and names are opaque strings here; they never become paths (a
//! snapshot's directories are named by its numeric `id`).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const NEXT_ID: &str = "next_id";

/// What a snapshot is, as containerd's `snapshots.Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    View,
    Active,
    Committed,
}

impl Kind {
    /// containerd's `Kind.String()`, which Walk filters compare against.
    pub fn name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// Bytes and inodes, as containerd's `snapshots.Usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

/// One snapshot's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Names its directories (`snapshots/<id>`, `shared/<id>`).
    pub id: u64,
    pub kind: Kind,
    /// The committed parent's name; empty for none.
    pub parent: String,
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Frozen at Commit; `None` while active or a view.
    pub usage: Option<Usage>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("snapshot {0:?}: not found")]
    NotFound(String),
    #[error("snapshot {0:?}: already exists")]
    AlreadyExists(String),
    #[error("parent {0:?} is not a committed snapshot")]
    ParentNotCommitted(String),
    #[error("snapshot {0:?} is not active")]
    NotActive(String),
    #[error("cannot remove snapshot {0:?}: it has a child")]
    HasChildren(String),
    #[error("creating the snapshot's directories: {0}")]
    Dirs(std::io::Error),
    #[error("the metadata store: {0}")]
    Db(Box<redb::Error>),
    #[error("the record of snapshot {key:?} is unreadable: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

fn db<E: Into<redb::Error>>(err: E) -> StoreError {
    StoreError::Db(Box::new(err.into()))
}

/// The open store.
pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens or creates the store at `path` (a redb file), recovering it
    /// after a crash if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let database = redb::Database::create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(SNAPSHOTS).map_err(db)?;
        txn.open_table(COUNTERS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Store { db: database })
    }

    pub fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(SNAPSHOTS).map_err(db)?;
        let value = table.get(key).map_err(db)?;
        value.map(|v| decode(key, v.value())).transpose()
    }

    /// Every record, by key.
    pub fn all(&self) -> Result<Vec<(String, Record)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(SNAPSHOTS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db)? {
            let (key, value) = entry.map_err(db)?;
            let record = decode(key.value(), value.value())?;
            out.push((key.value().to_string(), record));
        }
        Ok(out)
    }

    /// The records of `parent` and its ancestors, nearest first.
    pub fn chain(&self, parent: &str) -> Result<Vec<Record>, StoreError> {
        let mut chain = Vec::new();
        let mut next = parent.to_string();
        while !next.is_empty() {
            let record = self
                .get(&next)?
                .ok_or_else(|| StoreError::NotFound(next.clone()))?;
            next = record.parent.clone();
            chain.push(record);
        }
        Ok(chain)
    }

    /// Adds an active snapshot or a view on `parent` (committed, or empty)
    /// with a fresh id, for which `make_dirs` is run before the record is
    /// stored (a failure there stores nothing).
    pub fn create(
        &self,
        key: &str,
        kind: Kind,
        parent: &str,
        labels: BTreeMap<String, String>,
        make_dirs: impl FnOnce(u64) -> std::io::Result<()>,
    ) -> Result<Record, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let record = {
            let mut table = txn.open_table(SNAPSHOTS).map_err(db)?;
            if table.get(key).map_err(db)?.is_some() {
                return Err(StoreError::AlreadyExists(key.to_string()));
            }
            if !parent.is_empty() {
                let parent_record = table
                    .get(parent)
                    .map_err(db)?
                    .map(|v| decode(parent, v.value()))
                    .transpose()?;
                match parent_record {
                    Some(p) if p.kind == Kind::Committed => {}
                    Some(_) => return Err(StoreError::ParentNotCommitted(parent.to_string())),
                    None => return Err(StoreError::NotFound(parent.to_string())),
                }
            }
            let mut counters = txn.open_table(COUNTERS).map_err(db)?;
            let id = counters.get(NEXT_ID).map_err(db)?.map_or(1, |v| v.value());
            counters.insert(NEXT_ID, id + 1).map_err(db)?;
            let now = SystemTime::now();
            let record = Record {
                id,
                kind,
                parent: parent.to_string(),
                labels,
                created: now,
                updated: now,
                usage: None,
            };
            make_dirs(id).map_err(StoreError::Dirs)?;
            table.insert(key, encode(&record).as_slice()).map_err(db)?;
            record
        };
        txn.commit().map_err(db)?;
        Ok(record)
    }

    /// Turns active `key` into committed `name`, with `labels` and the usage
    /// measured by the caller, in one transaction.
    pub fn commit(
        &self,
        key: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        usage: Usage,
    ) -> Result<Record, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let record = {
            let mut table = txn.open_table(SNAPSHOTS).map_err(db)?;
            if table.get(name).map_err(db)?.is_some() {
                return Err(StoreError::AlreadyExists(name.to_string()));
            }
            let mut record = match table.get(key).map_err(db)? {
                Some(v) => decode(key, v.value())?,
                None => return Err(StoreError::NotFound(key.to_string())),
            };
            if record.kind != Kind::Active {
                return Err(StoreError::NotActive(key.to_string()));
            }
            record.kind = Kind::Committed;
            record.labels = labels;
            record.usage = Some(usage);
            record.updated = SystemTime::now();
            table.remove(key).map_err(db)?;
            table.insert(name, encode(&record).as_slice()).map_err(db)?;
            record
        };
        txn.commit().map_err(db)?;
        Ok(record)
    }

    /// Removes `key`'s record unless another snapshot has it as parent.
    pub fn remove(&self, key: &str) -> Result<Record, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let record = {
            let mut table = txn.open_table(SNAPSHOTS).map_err(db)?;
            let record = match table.get(key).map_err(db)? {
                Some(v) => decode(key, v.value())?,
                None => return Err(StoreError::NotFound(key.to_string())),
            };
            if record.kind == Kind::Committed {
                for entry in table.iter().map_err(db)? {
                    let (child_key, value) = entry.map_err(db)?;
                    if decode(child_key.value(), value.value())?.parent == key {
                        return Err(StoreError::HasChildren(key.to_string()));
                    }
                }
            }
            table.remove(key).map_err(db)?;
            record
        };
        txn.commit().map_err(db)?;
        Ok(record)
    }

    /// Changes `key`'s record with `change` (which may refuse) and stores it.
    pub fn update<E: From<StoreError>>(
        &self,
        key: &str,
        change: impl FnOnce(&mut Record) -> Result<(), E>,
    ) -> Result<Record, E> {
        let txn = self.db.begin_write().map_err(db)?;
        let record = {
            let mut table = txn.open_table(SNAPSHOTS).map_err(db)?;
            let mut record = match table.get(key).map_err(db)? {
                Some(v) => decode(key, v.value())?,
                None => return Err(StoreError::NotFound(key.to_string()).into()),
            };
            change(&mut record)?;
            record.updated = SystemTime::now();
            table.insert(key, encode(&record).as_slice()).map_err(db)?;
            record
        };
        txn.commit().map_err(db)?;
        Ok(record)
    }

    /// The ids in use, for sweeping directories no record owns.
    pub fn ids(&self) -> Result<std::collections::HashSet<u64>, StoreError> {
        Ok(self.all()?.into_iter().map(|(_, r)| r.id).collect())
    }
}

fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("a record serializes")
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dirs(_: u64) -> std::io::Result<()> {
        Ok(())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lifecycle_and_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("m.redb")).unwrap();
        let a = store
            .create("a", Kind::Active, "", labels(&[("x", "1")]), no_dirs)
            .unwrap();
        assert_eq!(a.id, 1);
        assert!(matches!(
            store.create("a", Kind::Active, "", BTreeMap::new(), no_dirs),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.create("b", Kind::Active, "a", BTreeMap::new(), no_dirs),
            Err(StoreError::ParentNotCommitted(_))
        ));
        assert!(matches!(
            store.create("b", Kind::Active, "nope", BTreeMap::new(), no_dirs),
            Err(StoreError::NotFound(_))
        ));
        let usage = Usage { size: 5, inodes: 2 };
        let c = store.commit("a", "A", labels(&[]), usage).unwrap();
        assert_eq!((c.id, c.kind, c.usage), (1, Kind::Committed, Some(usage)));
        assert!(store.get("a").unwrap().is_none());
        assert!(matches!(
            store.commit("A", "B", BTreeMap::new(), usage),
            Err(StoreError::NotActive(_))
        ));
        let b = store
            .create("b", Kind::Active, "A", BTreeMap::new(), no_dirs)
            .unwrap();
        assert_eq!(b.id, 2);
        assert_eq!(store.chain("A").unwrap()[0].id, 1);
        assert!(matches!(store.remove("A"), Err(StoreError::HasChildren(_))));
        store.remove("b").unwrap();
        store.remove("A").unwrap();
        assert!(store.all().unwrap().is_empty());
    }

    #[test]
    fn a_failed_directory_step_stores_nothing_and_ids_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.redb");
        {
            let store = Store::open(&path).unwrap();
            let failed = store.create("a", Kind::Active, "", BTreeMap::new(), |_| {
                Err(std::io::Error::other("disk full"))
            });
            assert!(matches!(failed, Err(StoreError::Dirs(_))));
            assert!(store.get("a").unwrap().is_none());
            store
                .create("b", Kind::View, "", BTreeMap::new(), no_dirs)
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let c = store
            .create("c", Kind::Active, "", BTreeMap::new(), no_dirs)
            .unwrap();
        assert_eq!(store.get("b").unwrap().unwrap().kind, Kind::View);
        assert!(c.id > store.get("b").unwrap().unwrap().id);
    }
}
