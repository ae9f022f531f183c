//! Durability of a node: opening (and recovering from) its redb store, and the
//! group-commit persister that writes the records a protocol emits as
//! `Effect::Persist` (handed over by `Runtime::start_with_records`) off the
//! protocol task.
//!
//! The persister and the runtime share a count: the runtime counts the records
//! it hands over, the persister counts the records it has committed (fsync'd)
//! and publishes that count after each commit ([`RecordSink::durable`]). The
//! runtime holds every send and output that follows a record until the count
//! reaches it, so nothing leaves the node before what justifies it is on disk.
//!
//! Group commit: one transaction holds every record that arrived while the
//! previous one was being written (so a busy node pays one fsync for many
//! records), and at most one transaction starts per `pace` (0, the default:
//! back to back; a pause adds to every hop that waits for a record).

use anyhow::{anyhow, Context, Result};
use byzscale_net::{Batch, Counter, Gauge, Histogram, RecordSink, Recovered, Registry, Storage};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::error;

/// How a protocol's records become writes to the node's store. The journal
/// folds records in emission order and, once per group commit, gives the
/// writes for everything folded since the last commit.
pub trait Journal: Send + 'static {
    type Record: Send + 'static;
    /// Fold in the next record.
    fn record(&mut self, r: Self::Record);
    /// The writes for the records folded since the last call, as one
    /// transaction (empty if nothing changed).
    fn flush(&mut self) -> Batch;
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

/// Refuse a store whose `protocol` records are of another format than the
/// `want` this build reads (`db` names it in the error).
pub fn check_format(db: &Path, protocol: &str, found: &[u8], want: &[u8]) -> Result<()> {
    if found != want {
        return Err(anyhow!(
            "{} holds {protocol} records of format {:?}, this build reads {:?}",
            db.display(),
            String::from_utf8_lossy(found),
            String::from_utf8_lossy(want)
        ));
    }
    Ok(())
}

/// The running persister: stop the runtime (which closes the record channel)
/// before [`Persister::finish`], which waits until everything received is
/// written.
pub struct Persister {
    thread: std::thread::JoinHandle<Result<()>>,
}

/// Most records queued for the persister before the protocol task waits.
const QUEUE: usize = 1 << 14;

impl Persister {
    /// Start writing the records sent to the returned sink into `storage`
    /// through `journal`, one transaction per group commit and at most one
    /// per `pace`, on a thread of its own (a commit blocks on the fsync; one
    /// thread keeps the hand-offs per commit to the two wake-ups that carry
    /// the records in and the count out). Metrics in `reg`: the queue length,
    /// the commits and their duration.
    pub fn start<J: Journal>(
        journal: J,
        storage: Storage,
        pace: Duration,
        reg: &Registry,
    ) -> Result<(RecordSink<J::Record>, Persister)> {
        let m = PersistMetrics {
            lag: reg.gauge(
                "byzscale_persist_queue",
                "Records waiting to be written to disk",
            ),
            commits: reg.counter(
                "byzscale_persist_commits_total",
                "Group commits (fsync'd transactions)",
            ),
            committed: reg.counter("byzscale_persist_records_total", "Records made durable"),
            took: reg.histogram(
                "byzscale_persist_commit_micros",
                "Time to encode and commit (fsync) one group commit",
            ),
        };
        let (tx, rx) = mpsc::channel::<J::Record>(QUEUE);
        let (durable_tx, durable) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("persister".into())
            .spawn(move || run(journal, storage, pace, rx, durable_tx, m))
            .context("starting the persister thread")?;
        let sink = RecordSink {
            records: tx,
            durable,
        };
        Ok((sink, Persister { thread }))
    }

    /// Wait until the persister has written what it still holds (it ends
    /// once the record channel is closed); its error if a commit failed.
    pub async fn finish(self) -> Result<()> {
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .map_err(|e| anyhow!("waiting for the persister: {e}"))?
            .map_err(|_| anyhow!("the persister panicked"))?
    }
}

struct PersistMetrics {
    lag: Gauge,
    commits: Counter,
    committed: Counter,
    took: Histogram,
}

/// The persister's loop: take everything queued, commit it as one
/// transaction, publish the new durable count; until the channel closes.
fn run<J: Journal>(
    mut journal: J,
    storage: Storage,
    pace: Duration,
    mut rx: mpsc::Receiver<J::Record>,
    durable: watch::Sender<u64>,
    m: PersistMetrics,
) -> Result<()> {
    let mut last = std::time::Instant::now();
    let mut count = 0u64;
    while let Some(first) = rx.blocking_recv() {
        if !pace.is_zero() {
            std::thread::sleep((last + pace).saturating_duration_since(std::time::Instant::now()));
        }
        last = std::time::Instant::now();
        journal.record(first);
        let mut n = 1u64;
        while let Ok(r) = rx.try_recv() {
            journal.record(r);
            n += 1;
        }
        m.lag.set(rx.len() as i64);
        let b = journal.flush();
        if let Err(e) = storage.commit(b) {
            // the runtime stops once the channel and the count close
            error!(error = %e, "persisting failed: stopping the node");
            return Err(anyhow!(e).context("persisting records"));
        }
        m.took.record_micros(last.elapsed());
        count += n;
        m.commits.inc();
        m.committed.add(n);
        // the runtime releases the sends that waited for these (if it is
        // gone, what is still queued is written all the same)
        let _ = durable.send(count);
    }
    Ok(())
}
