//! Durability of a node: opening (and recovering from) its redb store, and the
//! group-commit persister that writes the records a protocol emits as
//! `Effect::Persist` (handed over by `Runtime::start_with_records`), at most
//! one fsync'd transaction per interval, off the protocol task.

use anyhow::{Context, Result};
use byzscale_net::{Batch, Recovered, Registry, Storage};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// A protocol record the persister can write.
pub trait Durable: Send + 'static {
    /// Add this record to the transaction `b`.
    fn write(self, b: Batch) -> Batch;
}

/// Open the store in `data_dir` (creating both if needed) and read what it
/// holds. Returns the store, the recovered state and the store's path.
pub fn open(data_dir: &Path) -> Result<(Storage, Recovered, PathBuf)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let db = data_dir.join("replica.redb");
    let (storage, rec) = Storage::open(&db).with_context(|| format!("opening {}", db.display()))?;
    Ok((storage, rec, db))
}

/// The running persister: drop the runtime (which closes the record channel)
/// before [`Persister::finish`], which waits until everything received is
/// written.
pub struct Persister {
    task: JoinHandle<()>,
}

impl Persister {
    /// Start writing the records sent on the returned channel to `storage`,
    /// group-committed once per `pace` at most; the queue length is the
    /// `byzscale_persist_queue` gauge of `reg`.
    pub fn start<R: Durable>(
        storage: Storage,
        pace: Duration,
        reg: &Registry,
    ) -> (mpsc::Sender<R>, Persister) {
        let lag = reg.gauge(
            "byzscale_persist_queue",
            "Outputs waiting to be written to disk",
        );
        let (tx, mut rx) = mpsc::channel::<R>(4096);
        let storage = Arc::new(storage);
        let task = tokio::spawn(async move {
            let mut last = tokio::time::Instant::now();
            while let Some(first) = rx.recv().await {
                // group commit: one fsync'd transaction per interval at most,
                // holding everything decided meanwhile (the fsync, not the
                // bytes, is the cost)
                tokio::time::sleep_until(last + pace).await;
                last = tokio::time::Instant::now();
                let mut items = vec![first];
                while let Ok(o) = rx.try_recv() {
                    items.push(o);
                }
                lag.set(rx.len() as i64);
                let st = storage.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let b = items.into_iter().fold(Batch::new(), |b, r| r.write(b));
                    if b.is_empty() {
                        Ok(())
                    } else {
                        st.commit(b)
                    }
                })
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "persisting decided state failed"),
                    Err(e) => warn!(error = %e, "persistence task failed"),
                }
            }
        });
        (tx, Persister { task })
    }

    /// Wait until the persister has written what it still holds (it ends
    /// once the record channel is closed).
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}
