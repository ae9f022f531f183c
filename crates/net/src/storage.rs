//! Durable state in [redb](https://docs.rs/redb): a write-ahead log of decided
//! entries keyed by slot, the latest snapshot, and a small metadata key-value
//! store (current view, last signed vote, ...).
//!
//! Everything is opaque bytes: the SMR layer decides what an entry, a snapshot or
//! a metadata value is. Every [`Storage`] method that writes is one redb write
//! transaction committed with redb's default `Durability::Immediate`, so when it
//! returns `Ok` the data is on disk (fsync'd) and survives a crash. Several changes
//! can be made atomically with a [`Batch`] (e.g. "save snapshot at slot s and drop
//! the log below s", or "append entries and record the new view").
//!
//! Disk use stays bounded by truncating the log below each checkpoint:
//! [`Batch::truncate_below`] / [`Storage::truncate_below`]. redb reuses the freed
//! pages; the file does not shrink but does not grow past the high-water mark of
//! live data either.
//!
//! Recovery: [`Storage::open`] returns the [`Recovered`] state — the snapshot, the
//! log entries after it (the whole remaining log, in slot order) and the metadata.
//!
//! The calls block on disk I/O. From async code, wrap the `Storage` in an `Arc` and
//! call it through `tokio::task::spawn_blocking` (or a dedicated thread) so the
//! protocol task is not stalled by an fsync.

// Internal helpers return redb's own (large) error type for `?` convenience; the
// public `StorageError` boxes it.
#![allow(clippy::result_large_err)]

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const INFO: TableDefinition<&str, u64> = TableDefinition::new("byzscale_info");

/// On-disk layout version; bump on incompatible changes.
pub const FORMAT_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage file {0} does not exist")]
    Missing(PathBuf),
    #[error("storage file {path} is not a usable byzscale database (corrupted or not a redb file): {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("storage file {path} is damaged (truncated or corrupted): {detail}")]
    Damaged { path: PathBuf, detail: String },
    #[error("storage file {path} is already open (by this or another process)")]
    Locked { path: PathBuf },
    #[error("storage file {path} has layout version {found}, this build reads {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u64 },
    #[error("storage {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
}

/// What a restarting node reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The latest snapshot and the slot it covers.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Every log entry still stored, in slot order.
    pub log: Vec<(u64, Vec<u8>)>,
    pub meta: BTreeMap<String, Vec<u8>>,
}

/// A set of changes committed atomically by [`Storage::commit`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    entries: Vec<(u64, Vec<u8>)>,
    meta: Vec<(String, Option<Vec<u8>>)>,
    snapshot: Option<(u64, Vec<u8>)>,
    truncate_below: Option<u64>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }
    /// Store (or overwrite) the log entry of `slot`.
    pub fn append(mut self, slot: u64, bytes: impl Into<Vec<u8>>) -> Self {
        self.entries.push((slot, bytes.into()));
        self
    }
    pub fn put_meta(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.meta.push((key.into(), Some(value.into())));
        self
    }
    pub fn delete_meta(mut self, key: impl Into<String>) -> Self {
        self.meta.push((key.into(), None));
        self
    }
    /// Replace the stored snapshot.
    pub fn snapshot(mut self, slot: u64, bytes: impl Into<Vec<u8>>) -> Self {
        self.snapshot = Some((slot, bytes.into()));
        self
    }
    /// Remove every log entry with a slot `< slot` (applied after the appends).
    pub fn truncate_below(mut self, slot: u64) -> Self {
        self.truncate_below = Some(self.truncate_below.map_or(slot, |s| s.max(slot)));
        self
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.meta.is_empty()
            && self.snapshot.is_none()
            && self.truncate_below.is_none()
    }
}

/// redb's page cache (see [`Storage::builder`]).
pub const CACHE_BYTES: usize = 16 << 20;

/// A node's durable state. `Send + Sync`; share it as `Arc<Storage>`.
pub struct Storage {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

impl Storage {
    /// Open the database at `path`, creating it if it does not exist (its parent
    /// directory must exist), and read back its state.
    pub fn open(path: impl AsRef<Path>) -> Result<(Storage, Recovered), StorageError> {
        let path = path.as_ref().to_path_buf();
        guarded(&path, || match Self::builder().create(&path) {
            Ok(db) => Self::init(db, path.clone()),
            Err(e) => Err(classify_open(path.clone(), e)),
        })
    }

    /// Open an existing database; a missing file is [`StorageError::Missing`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<(Storage, Recovered), StorageError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(StorageError::Missing(path));
        }
        guarded(&path, || match Self::builder().open(&path) {
            Ok(db) => Self::init(db, path.clone()),
            Err(e) => Err(classify_open(path.clone(), e)),
        })
    }

    /// redb caches pages in memory up to 1 GiB by default; a replica only writes
    /// here (it reads once, at recovery), so a small cache is enough and keeps
    /// the process's resident memory bounded.
    fn builder() -> redb::Builder {
        let mut b = redb::Builder::new();
        b.set_cache_size(CACHE_BYTES);
        b
    }

    fn init(db: Database, path: PathBuf) -> Result<(Storage, Recovered), StorageError> {
        let s = Storage { db, path };
        // Create the tables (a no-op when they exist) and check the layout version.
        let found = s.with_write(|tx| {
            tx.open_table(LOG)?;
            tx.open_table(SNAPSHOT)?;
            tx.open_table(META)?;
            let mut info = tx.open_table(INFO)?;
            let found = info.get("format")?.map(|v| v.value());
            if found.is_none() {
                info.insert("format", FORMAT_VERSION)?;
            }
            Ok(found)
        })?;
        if let Some(found) = found {
            if found != FORMAT_VERSION {
                return Err(StorageError::Version {
                    path: s.path,
                    found,
                });
            }
        }
        let rec = s.recover()?;
        Ok((s, rec))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StorageError {
        StorageError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn with_write<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, redb::Error>,
    ) -> Result<R, StorageError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let r = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(r)
    }

    /// Read the whole durable state (what [`Storage::open`] returns).
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let run = || -> Result<Recovered, redb::Error> {
            let tx = self.db.begin_read()?;
            let mut rec = Recovered::default();
            let snap = tx.open_table(SNAPSHOT)?;
            if let Some((k, v)) = snap.last()? {
                rec.snapshot = Some((k.value(), v.value().to_vec()));
            }
            let log = tx.open_table(LOG)?;
            for item in log.iter()? {
                let (k, v) = item?;
                rec.log.push((k.value(), v.value().to_vec()));
            }
            let meta = tx.open_table(META)?;
            for item in meta.iter()? {
                let (k, v) = item?;
                rec.meta.insert(k.value().to_string(), v.value().to_vec());
            }
            Ok(rec)
        };
        run().map_err(|e| self.err(e))
    }

    /// Apply `batch` atomically and durably.
    pub fn commit(&self, batch: Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.with_write(|tx| {
            {
                let mut log = tx.open_table(LOG)?;
                for (slot, bytes) in &batch.entries {
                    log.insert(*slot, bytes.as_slice())?;
                }
                if let Some(below) = batch.truncate_below {
                    log.retain_in(..below, |_, _| false)?;
                }
            }
            if !batch.meta.is_empty() {
                let mut meta = tx.open_table(META)?;
                for (k, v) in &batch.meta {
                    match v {
                        Some(v) => meta.insert(k.as_str(), v.as_slice())?,
                        None => meta.remove(k.as_str())?,
                    };
                }
            }
            if let Some((slot, bytes)) = &batch.snapshot {
                let mut snap = tx.open_table(SNAPSHOT)?;
                snap.retain(|_, _| false)?;
                snap.insert(*slot, bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Durably store the log entry of `slot`.
    pub fn append(&self, slot: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.commit(Batch::new().append(slot, bytes))
    }
    /// Durably store several log entries in one commit.
    pub fn append_many<'a>(
        &self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), StorageError> {
        let mut b = Batch::new();
        for (s, e) in entries {
            b = b.append(s, e);
        }
        self.commit(b)
    }
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.commit(Batch::new().put_meta(key, value))
    }
    pub fn delete_meta(&self, key: &str) -> Result<(), StorageError> {
        self.commit(Batch::new().delete_meta(key))
    }
    /// Replace the snapshot and drop the log entries it covers (slots `<= slot`).
    pub fn save_snapshot(&self, slot: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.commit(
            Batch::new()
                .snapshot(slot, bytes)
                .truncate_below(slot.saturating_add(1)),
        )
    }
    /// Remove every log entry with a slot `< slot`.
    pub fn truncate_below(&self, slot: u64) -> Result<(), StorageError> {
        self.commit(Batch::new().truncate_below(slot))
    }

    /// One log entry.
    pub fn entry(&self, slot: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let run = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let log = tx.open_table(LOG)?;
            Ok(log.get(slot)?.map(|v| v.value().to_vec()))
        };
        run().map_err(|e| self.err(e))
    }
    /// Log entries with `from <= slot < to`, in order (for state transfer).
    pub fn range(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let run = || -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let log = tx.open_table(LOG)?;
            let mut out = Vec::new();
            if from < to {
                for item in log.range(from..to)? {
                    let (k, v) = item?;
                    out.push((k.value(), v.value().to_vec()));
                }
            }
            Ok(out)
        };
        run().map_err(|e| self.err(e))
    }
    /// The lowest and highest stored slots and the number of entries.
    pub fn log_bounds(&self) -> Result<Option<(u64, u64, u64)>, StorageError> {
        let run = || -> Result<Option<(u64, u64, u64)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let log = tx.open_table(LOG)?;
            let first = log.first()?.map(|(k, _)| k.value());
            let last = log.last()?.map(|(k, _)| k.value());
            let n = log.len()?;
            Ok(first.zip(last).map(|(a, b)| (a, b, n)))
        };
        run().map_err(|e| self.err(e))
    }
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let run = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let meta = tx.open_table(META)?;
            Ok(meta.get(key)?.map(|v| v.value().to_vec()))
        };
        run().map_err(|e| self.err(e))
    }
}

/// redb 2 asserts (panics) on some damaged files, e.g. one truncated below its
/// header's layout; turn that into a clear error instead of taking the node down.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb panicked".to_string());
            Err(StorageError::Damaged {
                path: path.to_path_buf(),
                detail,
            })
        }
    }
}

fn classify_open(path: PathBuf, e: redb::DatabaseError) -> StorageError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StorageError::Locked { path },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::NotFound =>
        {
            StorageError::Missing(path)
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => StorageError::Db {
            path,
            source: Box::new(redb::Error::Io(io)),
        },
        other => StorageError::Corrupt {
            path,
            source: Box::new(other.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_reopen_truncate_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let (s, rec) = Storage::open(&path).unwrap();
            assert_eq!(rec, Recovered::default());
            for slot in 0..10u64 {
                s.append(slot, format!("entry {slot}").as_bytes()).unwrap();
            }
            s.put_meta("view", &3u64.to_le_bytes()).unwrap();
            s.put_meta("vote", b"signed vote").unwrap();
            s.delete_meta("vote").unwrap();
            assert_eq!(s.log_bounds().unwrap(), Some((0, 9, 10)));
            assert_eq!(s.range(2, 4).unwrap().len(), 2);
        }
        {
            let (s, rec) = Storage::open_existing(&path).unwrap();
            assert_eq!(rec.log.len(), 10);
            assert_eq!(rec.log[3], (3, b"entry 3".to_vec()));
            assert_eq!(rec.meta.get("view").unwrap(), &3u64.to_le_bytes().to_vec());
            assert!(!rec.meta.contains_key("vote"));
            assert_eq!(rec.snapshot, None);
            // checkpoint at 5: snapshot + drop the covered log, atomically
            s.save_snapshot(5, b"state@5").unwrap();
            s.commit(
                Batch::new()
                    .append(10, b"entry 10".to_vec())
                    .put_meta("view", 4u64.to_le_bytes()),
            )
            .unwrap();
            assert_eq!(s.entry(5).unwrap(), None);
            assert_eq!(s.entry(6).unwrap(), Some(b"entry 6".to_vec()));
            // drop without any close: the last commit must be durable
        }
        {
            let (s, rec) = Storage::open(&path).unwrap();
            assert_eq!(rec.snapshot, Some((5, b"state@5".to_vec())));
            let slots: Vec<u64> = rec.log.iter().map(|(s, _)| *s).collect();
            assert_eq!(slots, vec![6, 7, 8, 9, 10]);
            assert_eq!(rec.meta["view"], 4u64.to_le_bytes().to_vec());
            s.truncate_below(9).unwrap();
            s.save_snapshot(8, b"state@8").unwrap();
            let rec = s.recover().unwrap();
            assert_eq!(rec.snapshot, Some((8, b"state@8".to_vec())));
            assert_eq!(
                rec.log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                vec![9, 10]
            );
        }
    }

    #[test]
    fn bounded_disk_use_under_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bounded.redb");
        let (s, _) = Storage::open(&path).unwrap();
        let payload = vec![7u8; 4096];
        let mut sizes = Vec::new();
        for round in 0..6u64 {
            let base = round * 50;
            s.append_many((base..base + 50).map(|i| (i, payload.as_slice())))
                .unwrap();
            s.save_snapshot(base + 49, b"snap").unwrap();
            sizes.push(std::fs::metadata(&path).unwrap().len());
        }
        // the file stops growing once freed pages are reused
        assert!(sizes[5] <= sizes[2] * 2, "{sizes:?}");
        assert_eq!(s.log_bounds().unwrap(), None);
    }

    #[test]
    fn clear_errors_for_missing_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.redb");
        let e = Storage::open_existing(&missing).unwrap_err();
        assert!(matches!(e, StorageError::Missing(_)), "{e}");
        assert!(e.to_string().contains("does not exist"));
        let e = Storage::open(dir.path().join("no/such/dir/x.redb")).unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");

        let bad = dir.path().join("garbage.redb");
        std::fs::write(&bad, vec![0xA5u8; 10_000]).unwrap();
        let e = Storage::open(&bad).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("garbage.redb"), "{msg}");
        assert!(
            matches!(e, StorageError::Corrupt { .. } | StorageError::Db { .. }),
            "{msg}"
        );

        // a truncated real database is also an error, not a panic
        let good = dir.path().join("trunc.redb");
        {
            let (s, _) = Storage::open(&good).unwrap();
            s.append(1, &[1; 1000]).unwrap();
        }
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&good, &bytes[..bytes.len().min(700)]).unwrap();
        match Storage::open(&good) {
            Err(e) => assert!(e.to_string().contains("trunc.redb"), "{e}"),
            Ok((_, rec)) => assert!(rec.log.len() <= 1),
        }

        // a second open of the same file is refused while the first is live
        let (_s, _) = Storage::open(dir.path().join("lock.redb")).unwrap();
        let e = Storage::open(dir.path().join("lock.redb")).unwrap_err();
        assert!(matches!(e, StorageError::Locked { .. }), "{e}");
    }
}
