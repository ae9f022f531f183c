//! What both broadcast families share: signed payloads, deliveries, the
//! [`SecureBroadcast`] trait, per-source ordering with a bounded window, and
//! statistics.

use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, CryptoError, Digest, Signature};
use byzscale_core::protocol::Protocol;
use byzscale_core::NodeId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

/// Domain separation of every source signature made by this crate.
pub const SIGN_DOMAIN: &str = "byzscale/broadcast/v1";

/// Anything a broadcast can carry.
pub trait Payload:
    Clone + Debug + Serialize + DeserializeOwned + PartialEq + Send + 'static
{
}
impl<T: Clone + Debug + Serialize + DeserializeOwned + PartialEq + Send + 'static> Payload for T {}

/// The bytes a source signs for instance `(source, seq)`: the domain, the
/// instance, then the payload's canonical encoding. Binding the instance into
/// the signature stops a Byzantine relay from replaying a payload into another
/// sequence number.
pub fn signing_bytes<P: Serialize>(source: NodeId, seq: u64, payload: &P) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    codec::write_into(&mut out, &(SIGN_DOMAIN, source, seq));
    codec::write_into(&mut out, payload);
    out
}

/// A payload with its source's ed25519 signature (σ's `sign(m)` in the thesis).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<P> {
    pub payload: P,
    pub sig: Signature,
}

impl<P: Payload> Signed<P> {
    /// Sign `payload` as instance `(source, seq)` with the caller's key (the
    /// caller must be `source`).
    pub fn sign(crypto: &Crypto, source: NodeId, seq: u64, payload: P) -> Self {
        let sig = crypto.sign(&signing_bytes(source, seq, &payload));
        Signed { payload, sig }
    }

    /// The digest that names this payload inside instance `(source, seq)`
    /// (BLAKE3 of the signed bytes, counted in the crypto meter).
    pub fn digest(&self, crypto: &Crypto, source: NodeId, seq: u64) -> Digest {
        crypto.hash(&signing_bytes(source, seq, &self.payload))
    }

    /// Digest and signature check in one encoding pass.
    pub fn check(&self, crypto: &Crypto, source: NodeId, seq: u64) -> Result<Digest, CryptoError> {
        let bytes = signing_bytes(source, seq, &self.payload);
        let d = crypto.hash(&bytes);
        crypto.verify(source.into(), &bytes, &self.sig)?;
        Ok(d)
    }
}

/// One delivery: `payload` was broadcast by `source` as its `seq`-th message.
/// Deliveries of one source come out in `seq` order starting at 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery<P> {
    pub source: NodeId,
    pub seq: u64,
    pub payload: P,
    /// The source's signature over [`signing_bytes`]`(source, seq, payload)`.
    pub sig: Signature,
}

/// Counters every broadcast keeps (message counts are the driver's business).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastStats {
    /// Own broadcasts started.
    pub broadcasts: u64,
    /// Deliveries output (all sources).
    pub delivered: u64,
    /// Instances currently held in memory.
    pub open_instances: u64,
    /// Instances garbage-collected after delivery.
    pub collected: u64,
    /// Byzantine or malformed inputs dropped (each also reported with `cx.fault`).
    pub faults: u64,
    /// Fetch-on-miss (Bracha): payload requests sent (one per peer asked).
    #[serde(default)]
    pub pulls: u64,
    /// Fetch-on-miss (Bracha): payloads obtained by a pull.
    #[serde(default)]
    pub pulled: u64,
}

/// Multi-shot Byzantine reliable ("secure") broadcast with source order: the
/// interface AT2 is written against. Both [`crate::Bracha`] and
/// [`crate::Contagion`] implement it.
///
/// - Input: a payload to broadcast as this process's next sequence number.
/// - Output: [`Delivery`]s, per source in sequence order (1, 2, 3, …).
///
/// Guarantees (Malkhi–Reiter secure reliable multicast, digest §1.5):
/// integrity (a correct process delivers `(source, seq)` at most once, and only
/// what `source` signed), agreement (if a correct process delivers, every
/// correct process delivers the same payload), validity (a correct source
/// delivers its own broadcasts) and source order. Bracha guarantees them
/// deterministically for N > 3f; Contagion with probability at least 1 − ε
/// per instance (see [`crate::params`]).
pub trait SecureBroadcast<P: Payload>: Protocol<Input = P, Output = Delivery<P>> {
    /// This process.
    fn me(&self) -> NodeId;
    /// `"bracha"` or `"contagion"`.
    fn kind(&self) -> &'static str;
    /// The sequence number the next own broadcast gets.
    fn next_seq(&self) -> u64;
    fn stats(&self) -> BroadcastStats;
    /// Hold back the deliveries of `source`: its instances still complete,
    /// and wait (within the window) until [`SecureBroadcast::release`]. For
    /// a layer above whose state for `source` is full (AT2's pending
    /// transfers): a slow consumer delays `source` here instead of losing
    /// what was delivered.
    fn hold(&mut self, source: NodeId);
    /// Deliver what was held back from `source`, and go on delivering.
    fn release(&mut self, source: NodeId, cx: &mut byzscale_core::protocol::Cx<'_, Self>);
}

/// A timer type with no values, for protocols that never set timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NoTimer {}

/// Where a message for instance `(source, seq)` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Already delivered (and possibly collected): ignore quietly, late messages
    /// are normal.
    Old,
    /// Inside the window.
    Open,
    /// `seq` is 0 or too far ahead of the next delivery: a Byzantine source or
    /// relay trying to make us hold state.
    Reject,
}

/// Per-source delivery order: instances may complete in any order, deliveries
/// leave in sequence order.
#[derive(Clone, Debug)]
pub(crate) struct SourceOrder<P> {
    window: u64,
    /// Next sequence number to deliver, per source (absent = 1).
    next: BTreeMap<NodeId, u64>,
    /// Completed instances waiting for an earlier one (or for a release).
    waiting: BTreeMap<(NodeId, u64), Signed<P>>,
    /// Sources whose deliveries are held back ([`SecureBroadcast::hold`]).
    held: std::collections::BTreeSet<NodeId>,
    /// Deliveries let out so far.
    pub(crate) delivered: u64,
}

impl<P: Payload> SourceOrder<P> {
    pub(crate) fn new(window: u64) -> Self {
        SourceOrder {
            window: window.max(1),
            next: BTreeMap::new(),
            waiting: BTreeMap::new(),
            held: Default::default(),
            delivered: 0,
        }
    }

    /// Hold back `source`'s deliveries.
    pub(crate) fn hold(&mut self, source: NodeId) {
        self.held.insert(source);
    }

    pub(crate) fn is_held(&self, source: NodeId) -> bool {
        self.held.contains(&source)
    }

    /// Stop holding `source` back; returns what is now in order.
    pub(crate) fn release(&mut self, source: NodeId) -> Vec<Delivery<P>> {
        self.held.remove(&source);
        self.drain(source)
    }

    /// Resume delivering from `next` (a restarted member's frontier).
    pub(crate) fn resume(&mut self, next: &BTreeMap<NodeId, u64>) {
        self.next = next.clone();
        self.waiting.clear();
    }

    pub(crate) fn next(&self, source: NodeId) -> u64 {
        self.next.get(&source).copied().unwrap_or(1)
    }

    pub(crate) fn admit(&self, source: NodeId, seq: u64) -> Admit {
        let next = self.next(source);
        if seq == 0 || seq >= next.saturating_add(self.window) {
            Admit::Reject
        } else if seq < next || self.waiting.contains_key(&(source, seq)) {
            Admit::Old
        } else {
            Admit::Open
        }
    }

    /// Why `(source, seq)` was rejected, for the fault log.
    pub(crate) fn outside(&self, source: NodeId, seq: u64) -> String {
        format!(
            "{source}/{seq} outside the window (next {}, window {})",
            self.next(source),
            self.window
        )
    }

    /// Whether `(source, seq)` completed (delivered or waiting for its turn).
    pub(crate) fn completed(&self, source: NodeId, seq: u64) -> bool {
        seq < self.next(source) || self.waiting.contains_key(&(source, seq))
    }

    /// Record that `(source, seq)` completed with `signed`; returns the
    /// deliveries that are now in order.
    pub(crate) fn complete(
        &mut self,
        source: NodeId,
        seq: u64,
        signed: Signed<P>,
    ) -> Vec<Delivery<P>> {
        if self.completed(source, seq) {
            return Vec::new();
        }
        self.waiting.insert((source, seq), signed);
        self.drain(source)
    }

    /// The deliveries of `source` now in order (none while it is held).
    fn drain(&mut self, source: NodeId) -> Vec<Delivery<P>> {
        let mut out = Vec::new();
        if self.held.contains(&source) {
            return out;
        }
        let mut next = self.next(source);
        while let Some(s) = self.waiting.remove(&(source, next)) {
            out.push(Delivery {
                source,
                seq: next,
                payload: s.payload,
                sig: s.sig,
            });
            next += 1;
        }
        self.next.insert(source, next);
        self.delivered += out.len() as u64;
        out
    }

    /// The payload of `(source, seq)` if it completed and waits for its
    /// turn (or for a release).
    pub(crate) fn waiting_payload(&self, source: NodeId, seq: u64) -> Option<&Signed<P>> {
        self.waiting.get(&(source, seq))
    }

    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{CryptoMode, Identity};

    fn sig() -> Signed<u8> {
        let c = Crypto::new(
            NodeId(0).into(),
            Identity::from_seed([1; 32]),
            CryptoMode::Real,
        );
        Signed::sign(&c, NodeId(0), 1, 7u8)
    }

    #[test]
    fn source_order_releases_in_sequence_and_bounds_the_window() {
        let mut o: SourceOrder<u8> = SourceOrder::new(4);
        let a = NodeId(3);
        assert_eq!(o.admit(a, 0), Admit::Reject);
        assert_eq!(o.admit(a, 4), Admit::Open);
        assert_eq!(o.admit(a, 5), Admit::Reject);
        assert!(o.complete(a, 2, sig()).is_empty());
        assert_eq!(o.admit(a, 2), Admit::Old);
        let d = o.complete(a, 1, sig());
        assert_eq!(d.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(o.next(a), 3);
        assert_eq!(o.admit(a, 1), Admit::Old);
        assert!(o.complete(a, 1, sig()).is_empty(), "no duplicate delivery");
        assert_eq!(o.waiting(), 0);
        assert_eq!(o.admit(NodeId(4), 1), Admit::Open);
    }

    #[test]
    fn signatures_bind_source_sequence_and_payload() {
        let ia = Identity::from_seed([1; 32]);
        let ib = Identity::from_seed([2; 32]);
        let mut a = Crypto::new(NodeId(0).into(), ia.clone(), CryptoMode::Real);
        let mut b = Crypto::new(NodeId(1).into(), ib.clone(), CryptoMode::Real);
        a.add_peer(NodeId(1).into(), ib.public()).unwrap();
        b.add_peer(NodeId(0).into(), ia.public()).unwrap();
        let s = Signed::sign(&a, NodeId(0), 5, vec![1u8, 2, 3]);
        let d = s.check(&b, NodeId(0), 5).unwrap();
        assert_eq!(d, s.digest(&b, NodeId(0), 5));
        assert!(
            s.check(&b, NodeId(0), 6).is_err(),
            "replayed into another seq"
        );
        assert!(
            s.check(&b, NodeId(1), 5).is_err(),
            "claimed by another source"
        );
        let mut t = s.clone();
        t.payload.push(4);
        assert!(t.check(&b, NodeId(0), 5).is_err(), "tampered payload");
    }
}

/// Payloads of delivered instances kept for lagging peers (Bracha's
/// catch-up, the probabilistic stack's late answers): at most `retain` per
/// source (the oldest sequence numbers go) and `max_bytes` in all (the
/// oldest kept go).
#[derive(Clone, Debug)]
pub(crate) struct Retained<P> {
    kept: BTreeMap<(NodeId, u64), (Signed<P>, usize)>,
    /// `kept` in the order kept (entries already gone are skipped).
    order: VecDeque<(NodeId, u64)>,
    bytes: usize,
}

impl<P: Payload> Retained<P> {
    pub(crate) fn new() -> Self {
        Retained {
            kept: BTreeMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keep the payload of delivered instance `key`.
    pub(crate) fn keep(
        &mut self,
        key: (NodeId, u64),
        signed: Signed<P>,
        retain: u64,
        max_bytes: usize,
    ) {
        let size = codec::encoded_len(&signed);
        if let Some((_, old)) = self.kept.insert(key, (signed, size)) {
            self.bytes -= old;
        } else {
            self.order.push_back(key);
        }
        self.bytes += size;
        let (source, seq) = key;
        if let Some(old) = seq.checked_sub(retain) {
            self.remove(&(source, old));
        }
        while self.bytes > max_bytes {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            self.remove(&k);
        }
    }

    fn remove(&mut self, key: &(NodeId, u64)) {
        if let Some((_, size)) = self.kept.remove(key) {
            self.bytes -= size;
        }
    }

    pub(crate) fn get(&self, key: &(NodeId, u64)) -> Option<&Signed<P>> {
        self.kept.get(key).map(|(s, _)| s)
    }

    /// Payloads kept, and their bytes.
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.kept.len(), self.bytes)
    }

    /// Keep only the instances `keep` says.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&(NodeId, u64)) -> bool) {
        let mut gone = 0;
        self.kept.retain(|k, (_, size)| {
            let stays = keep(k);
            if !stays {
                gone += *size;
            }
            stays
        });
        self.bytes -= gone;
        let kept = &self.kept;
        self.order.retain(|k| kept.contains_key(k));
    }
}

/// Let `delivery` out through `cx` (Bracha and the probabilistic stack
/// alike): kept in `kept` for peers that ask for it later (at most
/// `bounds.0` per source and `bounds.1` bytes), and first recorded as
/// [`crate::bracha::Record::Delivered`] with `persist` (before what the
/// delivery lets out).
pub(crate) fn let_out<P: Payload, Q>(
    cx: &mut byzscale_core::protocol::Cx<'_, Q>,
    delivery: Delivery<P>,
    kept: Option<&mut Retained<P>>,
    bounds: (u64, usize),
    persist: bool,
) where
    Q: Protocol<Output = Delivery<P>, Record = crate::bracha::Record<P>> + ?Sized,
{
    let signed = Signed {
        payload: delivery.payload.clone(),
        sig: delivery.sig,
    };
    let (source, seq) = (delivery.source, delivery.seq);
    if let Some(kept) = kept {
        kept.keep((source, seq), signed.clone(), bounds.0, bounds.1);
    }
    if persist {
        cx.persist(crate::bracha::Record::Delivered {
            source,
            seq,
            signed,
        });
    }
    cx.output(delivery);
}

/// The items of the [`Protocol`] impl that Bracha and the probabilistic
/// stack share: the associated types, the retransmission tick armed at
/// start ([`Timer::Tick`](crate::bracha::Timer::Tick) in each), and own
/// broadcasts through the [`Multishot`] in field `ms` and `fn start`.
macro_rules! multishot_protocol_items {
    () => {
        type Message = Message<P>;
        type Input = P;
        type Output = Delivery<P>;
        type Timer = Timer;
        type Record = Record<P>;

        fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
            if let Some(p) = self.cfg.retransmit {
                cx.set_timer(Timer::Tick, p);
            }
        }

        fn on_input(&mut self, payload: P, cx: &mut Cx<'_, Self>) {
            if let Some((seq, p)) = self.ms.submit(payload) {
                self.start(seq, p, cx);
            }
        }
    };
}
pub(crate) use multishot_protocol_items;

/// Why a message about an instance was refused before it opened one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The source is not a member.
    UnknownSource,
    /// The sequence number is outside the source's window.
    Window,
}

/// What Bracha and the probabilistic stack share around their instances:
/// this process' own broadcasts (sequence numbers, and a backlog waiting for
/// the window), the per-source delivery order, and the statistics.
#[derive(Clone, Debug)]
pub(crate) struct Multishot<P> {
    pub(crate) me: NodeId,
    /// The sequence number the next own broadcast gets.
    pub(crate) next_seq: u64,
    pub(crate) order: SourceOrder<P>,
    /// Own broadcasts waiting because `window` of them are undelivered.
    backlog: VecDeque<P>,
    pub(crate) stats: BroadcastStats,
}

impl<P: Payload> Multishot<P> {
    pub(crate) fn new(me: NodeId, window: u64) -> Self {
        Multishot {
            me,
            next_seq: 1,
            order: SourceOrder::new(window),
            backlog: VecDeque::new(),
            stats: BroadcastStats::default(),
        }
    }

    /// A new own broadcast: its sequence number if the window lets it start
    /// now; otherwise it waits in the backlog.
    pub(crate) fn submit(&mut self, p: P) -> Option<(u64, P)> {
        if self.backlog.is_empty() && self.window_open() {
            return Some(self.number(p));
        }
        self.backlog.push_back(p);
        None
    }

    /// The next waiting own broadcast the window now lets start (ask after
    /// own deliveries, until `None`).
    pub(crate) fn unblocked(&mut self) -> Option<(u64, P)> {
        if !self.window_open() {
            return None;
        }
        let p = self.backlog.pop_front()?;
        Some(self.number(p))
    }

    fn window_open(&self) -> bool {
        self.order.admit(self.me, self.next_seq) == Admit::Open
    }

    fn number(&mut self, p: P) -> (u64, P) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.broadcasts += 1;
        (seq, p)
    }

    /// Whether a message about `(source, seq)` may open or reach its
    /// instance (`member`: whether `source` is a member): `Ok(false)` for an
    /// instance already delivered (late messages are normal: ignore them
    /// quietly), a refusal with its detail for a fault.
    pub(crate) fn admit(
        &self,
        source: NodeId,
        seq: u64,
        member: bool,
    ) -> Result<bool, (Refusal, String)> {
        if !member {
            let detail = format!("instance of non-member {source}");
            return Err((Refusal::UnknownSource, detail));
        }
        match self.order.admit(source, seq) {
            Admit::Old => Ok(false),
            Admit::Open => Ok(true),
            Admit::Reject => Err((Refusal::Window, self.order.outside(source, seq))),
        }
    }
}

/// The [`SecureBroadcast`] of a protocol that keeps its [`Multishot`] in
/// field `ms` and delivers through `fn deliver(&mut self, cx, source, ready)`.
macro_rules! secure_broadcast_via_multishot {
    ($ty:ident, $kind:literal) => {
        impl<P: $crate::common::Payload> $crate::common::SecureBroadcast<P> for $ty<P> {
            fn me(&self) -> byzscale_core::NodeId {
                self.ms.me
            }
            fn kind(&self) -> &'static str {
                $kind
            }
            fn next_seq(&self) -> u64 {
                self.ms.next_seq
            }
            fn stats(&self) -> $crate::common::BroadcastStats {
                $crate::common::BroadcastStats {
                    delivered: self.ms.order.delivered,
                    ..self.ms.stats
                }
            }
            fn hold(&mut self, source: byzscale_core::NodeId) {
                self.ms.order.hold(source);
            }
            fn release(
                &mut self,
                source: byzscale_core::NodeId,
                cx: &mut byzscale_core::protocol::Cx<'_, Self>,
            ) {
                let ready = self.ms.order.release(source);
                self.deliver(cx, source, ready);
            }
        }
    };
}
pub(crate) use secure_broadcast_via_multishot;
