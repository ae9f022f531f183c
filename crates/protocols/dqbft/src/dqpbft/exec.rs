//! The execution cursor (paper §3.2.2, digest §1.5) and the client table.
//!
//! A command α = (R_n, S_ni) is *decided* when D-instance n committed S_ni
//! and the O-instance committed an O-slot naming (n, S_ni); it is *ready*
//! when every O-slot below has executed. The cursor holds the O decisions
//! and the D decisions taken out of their instances (each in its own slot
//! order) and yields the next ready O-slot. Everything here is a pure
//! function of the decisions, so every correct replica executes the same
//! sequence.

use super::message::{Command, DBatch, Ref};
use byzscale_core::ClientId;
use byzscale_smr::Slot;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the cursor hands to execution for one O-slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ready {
    /// O-slot `oslot` names `r`, whose D decision is `batch` (a no-op batch
    /// executes nothing but still consumes `r.seq`).
    Execute { oslot: Slot, r: Ref, batch: DBatch },
    /// A null reference (a view change found nothing prepared): skipped.
    Null { oslot: Slot },
    /// A reference that breaks its instance's FIFO order (a correct
    /// replica never prepares one; only more than f faulty replicas can get
    /// it decided): skipped on every replica alike, and reported.
    OutOfOrder { oslot: Slot, r: Ref, expected: Slot },
}

/// The global execution cursor over O-slots (see the module docs).
#[derive(Debug)]
pub struct Cursor {
    /// The last O-slot executed.
    executed: Slot,
    /// O decisions above `executed`.
    o: BTreeMap<Slot, Ref>,
    /// Per D-instance: the last sequence number executed, and the D
    /// decisions above it.
    d_executed: Vec<Slot>,
    d: Vec<BTreeMap<Slot, DBatch>>,
}

impl Cursor {
    pub fn new(instances: usize) -> Self {
        Cursor {
            executed: 0,
            o: BTreeMap::new(),
            d_executed: vec![0; instances],
            d: vec![BTreeMap::new(); instances],
        }
    }
    /// The last O-slot executed.
    pub fn executed(&self) -> Slot {
        self.executed
    }
    /// The last sequence number executed of each D-instance.
    pub fn d_executed(&self) -> &[Slot] {
        &self.d_executed
    }
    /// Whether D-instance `n` decided `seq` (executed, or waiting here).
    pub fn d_known(&self, n: u32, seq: Slot) -> bool {
        let n = n as usize;
        n < self.d.len() && (seq <= self.d_executed[n] || self.d[n].contains_key(&seq))
    }
    /// D-instance `n` decided `batch` at `seq` (taken out in slot order).
    pub fn d_decided(&mut self, n: u32, seq: Slot, batch: DBatch) {
        if let Some(d) = self.d.get_mut(n as usize) {
            if seq > self.d_executed[n as usize] {
                d.insert(seq, batch);
            }
        }
    }
    /// The O-instance decided `r` at `oslot` (taken out in slot order).
    pub fn o_decided(&mut self, oslot: Slot, r: Ref) {
        if oslot > self.executed {
            self.o.insert(oslot, r);
        }
    }
    /// Bytes of D decisions waiting for their O-slot.
    pub fn waiting_bytes(&self) -> usize {
        use byzscale_smr::replica::order::Value;
        self.d
            .iter()
            .flat_map(|d| d.values())
            .map(|b| b.size())
            .sum()
    }

    /// The next ready O-slot, taken out; `None` while the next O-slot is
    /// not decided or its D decision is not known yet.
    pub fn next_ready(&mut self) -> Option<Ready> {
        let oslot = self.executed + 1;
        let r = *self.o.get(&oslot)?;
        let n = r.instance as usize;
        if r.is_null() {
            self.o.remove(&oslot);
            self.executed = oslot;
            return Some(Ready::Null { oslot });
        }
        let expected = self.d_executed.get(n).map_or(0, |e| e + 1);
        if n >= self.d.len() || r.seq != expected {
            self.o.remove(&oslot);
            self.executed = oslot;
            return Some(Ready::OutOfOrder { oslot, r, expected });
        }
        let batch = self.d[n].remove(&r.seq)?;
        self.o.remove(&oslot);
        self.executed = oslot;
        self.d_executed[n] = r.seq;
        Some(Ready::Execute { oslot, r, batch })
    }
}

/// One client's entry: its last executed timestamp and that command's
/// result (the reply cache).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientEntry {
    pub timestamp: u64,
    pub result: Vec<u8>,
}

/// What the client table makes of a command at execution.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Run it.
    Run,
    /// Already executed (a duplicate, or older than the client's last):
    /// not run again; the cached result if it is the last one.
    Duplicate(Option<Vec<u8>>),
    /// The table is full and the client is new: not run (the client sees
    /// no reply and may retry once entries are freed).
    Full,
}

/// The replicated per-client table (paper §3.2.6: last executed timestamp
/// and reply per client), bounded in clients and in cached result bytes.
#[derive(Debug, Default)]
pub struct ClientTable {
    entries: BTreeMap<ClientId, ClientEntry>,
    max_clients: usize,
    max_result: usize,
}

impl ClientTable {
    pub fn new(max_clients: usize, max_result: usize) -> Self {
        ClientTable {
            entries: BTreeMap::new(),
            max_clients,
            max_result,
        }
    }
    pub fn admit(&self, c: &Command) -> Admit {
        match self.entries.get(&c.client) {
            Some(e) if c.timestamp == e.timestamp => Admit::Duplicate(Some(e.result.clone())),
            Some(e) if c.timestamp < e.timestamp => Admit::Duplicate(None),
            Some(_) => Admit::Run,
            None if self.entries.len() >= self.max_clients => Admit::Full,
            None => Admit::Run,
        }
    }
    /// Whether `client` already executed `timestamp` or a later command.
    pub fn done(&self, client: ClientId, timestamp: u64) -> bool {
        self.entries
            .get(&client)
            .is_some_and(|e| e.timestamp >= timestamp)
    }
    /// Record the result of a command that ran; results over the bound are
    /// cached truncated (a retransmission then gets the truncated copy).
    pub fn record(&mut self, c: &Command, mut result: Vec<u8>) {
        result.truncate(self.max_result);
        let e = ClientEntry {
            timestamp: c.timestamp,
            result,
        };
        self.entries.insert(c.client, e);
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn entries(&self) -> &BTreeMap<ClientId, ClientEntry> {
        &self.entries
    }
}
