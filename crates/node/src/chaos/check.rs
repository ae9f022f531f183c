//! The checks at the end of a chaos run: every acknowledged write read back
//! by a fresh client, and the decided logs of the replicas' durable stores
//! compared slot by slot.
//!
//! A store can be read only while its replica is down (redb locks it), so
//! the run reads a replica's store each time it is SIGKILLed and once more
//! after the end: each read is a sample of the slots above that replica's
//! stable checkpoint (older rows are truncated) and of its checkpoint
//! certificates. Agreement: across every sample of every replica, one slot
//! has one decided digest, and one checkpoint slot one state digest.

use crate::daemon::KvClient;
use crate::protocols::smr::durable_from_disk;
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::crypto::Digest;
use byzscale_net::Storage;
use byzscale_smr::Slot;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// What one read of one replica's store held.
#[derive(Clone, Debug, Default)]
pub struct LogSample {
    pub replica: usize,
    /// Decided slots above the stable checkpoint, with their batch digest.
    pub decided: BTreeMap<Slot, Digest>,
    /// Checkpoint certificates held (stable, and the one of the snapshot):
    /// slot and state digest.
    pub checkpoints: BTreeMap<Slot, Digest>,
}

/// Read replica `replica`'s store in `data_dir` (it must be down). A store
/// that does not exist (never written, or wiped) is an empty sample.
pub fn read_store(replica: usize, data_dir: &Path) -> Result<LogSample> {
    let db = data_dir.join("replica.redb");
    let mut s = LogSample {
        replica,
        ..LogSample::default()
    };
    if !db.exists() {
        return Ok(s);
    }
    let (_, rec) =
        Storage::open_existing(&db).with_context(|| format!("opening {}", db.display()))?;
    let (d, _) = durable_from_disk(rec, &db)?;
    for (slot, e) in &d.slots {
        if let Some((_, digest)) = e.votes.decided {
            s.decided.insert(*slot, digest);
        }
    }
    let certs = d.stable.iter().chain(d.checkpoint.as_ref().map(|(c, _)| c));
    for c in certs {
        s.checkpoints.insert(c.slot, c.state);
    }
    Ok(s)
}

/// The agreement check over every sample.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// Store reads.
    pub samples: usize,
    /// Distinct decided slots seen.
    pub slots_seen: usize,
    /// Slots seen decided at two replicas or more (those compared across
    /// replicas; every slot is also compared across reads of one replica).
    pub slots_compared: usize,
    /// Slots decided with different digests.
    pub disagreeing_slots: usize,
    /// The first few of them.
    pub disagreeing_slot_examples: Vec<Slot>,
    /// Checkpoint slots seen at two replicas or more.
    pub checkpoints_compared: usize,
    /// Checkpoint slots certified with different state digests.
    pub disagreeing_checkpoints: usize,
    pub disagreeing_checkpoint_examples: Vec<Slot>,
}

/// How many examples of a violation a report lists.
const EXAMPLES: usize = 10;

/// Compare every sample: one digest per decided slot, one state per
/// checkpoint slot.
pub fn agreement(samples: &[LogSample]) -> Agreement {
    type Seen = BTreeMap<Slot, (BTreeSet<Digest>, BTreeSet<usize>)>;
    fn fold(seen: &mut Seen, replica: usize, m: &BTreeMap<Slot, Digest>) {
        for (slot, d) in m {
            let e = seen.entry(*slot).or_default();
            e.0.insert(*d);
            e.1.insert(replica);
        }
    }
    let (mut slots, mut cps) = (Seen::new(), Seen::new());
    for s in samples {
        fold(&mut slots, s.replica, &s.decided);
        fold(&mut cps, s.replica, &s.checkpoints);
    }
    let bad = |m: &Seen| -> Vec<Slot> {
        m.iter()
            .filter(|e| e.1 .0.len() > 1)
            .map(|e| *e.0)
            .collect()
    };
    let compared = |m: &Seen| m.values().filter(|e| e.1.len() > 1).count();
    let (bad_slots, bad_cps) = (bad(&slots), bad(&cps));
    Agreement {
        samples: samples.len(),
        slots_seen: slots.len(),
        slots_compared: compared(&slots),
        disagreeing_slots: bad_slots.len(),
        disagreeing_slot_examples: bad_slots.into_iter().take(EXAMPLES).collect(),
        checkpoints_compared: compared(&cps),
        disagreeing_checkpoints: bad_cps.len(),
        disagreeing_checkpoint_examples: bad_cps.into_iter().take(EXAMPLES).collect(),
    }
}

/// Acknowledged writes that a fresh client does not read back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub lost_writes: usize,
    /// A few of them: `key: expected value, got value-or-nil`.
    pub examples: Vec<String>,
}

/// Keys per MGET of the reader.
const CHUNK: usize = 256;

/// Read every acknowledged `(key, value)` through `c` (a fresh client),
/// with ordered MGETs (linearizable: each read is decided after every
/// acknowledged write; with ByzCast an MGET spanning shards is ordered at
/// their lowest common ancestor).
pub(crate) async fn read_back(c: &dyn KvClient, acked: &[(String, String)]) -> Result<Lost> {
    let mut lost = Lost::default();
    for chunk in acked.chunks(CHUNK) {
        let keys = chunk.iter().map(|(k, _)| k.as_bytes().to_vec()).collect();
        let reply = tokio::time::timeout(Duration::from_secs(30), c.exec(KvOp::MGet(keys), false))
            .await
            .map_err(|_| anyhow!("the reader got no answer within 30 s"))?
            .map_err(|e| anyhow!("{e}"))?;
        let KvReply::Array(values) = reply else {
            bail!("MGET answered {reply}");
        };
        if values.len() != chunk.len() {
            bail!(
                "MGET of {} keys answered {} values",
                chunk.len(),
                values.len()
            );
        }
        for ((k, want), got) in chunk.iter().zip(values) {
            if got.as_deref() != Some(want.as_bytes()) {
                lost.lost_writes += 1;
                if lost.examples.len() < EXAMPLES {
                    let got: String =
                        got.map_or("nil".into(), |g| String::from_utf8_lossy(&g).into());
                    lost.examples
                        .push(format!("{k}: acknowledged {want}, read {got}"));
                }
            }
        }
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Digest {
        byzscale_core::crypto::digest(&[b])
    }

    fn sample(replica: usize, decided: &[(Slot, u8)], cps: &[(Slot, u8)]) -> LogSample {
        LogSample {
            replica,
            decided: decided.iter().map(|(s, b)| (*s, d(*b))).collect(),
            checkpoints: cps.iter().map(|(s, b)| (*s, d(*b))).collect(),
        }
    }

    #[test]
    fn agreement_flags_a_slot_or_checkpoint_with_two_digests_even_at_one_replica() {
        let ok = [
            sample(0, &[(1, 1), (2, 2)], &[(0, 9)]),
            sample(1, &[(2, 2), (3, 3)], &[(0, 9)]),
            sample(0, &[(3, 3)], &[]),
        ];
        let a = agreement(&ok);
        assert_eq!(
            (
                a.samples,
                a.slots_seen,
                a.slots_compared,
                a.checkpoints_compared
            ),
            (3, 3, 2, 1)
        );
        assert_eq!((a.disagreeing_slots, a.disagreeing_checkpoints), (0, 0));
        let mut bad = ok.to_vec();
        bad.push(sample(0, &[(1, 7)], &[]));
        bad.push(sample(2, &[], &[(0, 8)]));
        let a = agreement(&bad);
        assert_eq!(a.disagreeing_slot_examples, vec![1]);
        assert_eq!(a.disagreeing_checkpoint_examples, vec![0]);
        assert_eq!((a.disagreeing_slots, a.disagreeing_checkpoints), (1, 1));
    }
}
