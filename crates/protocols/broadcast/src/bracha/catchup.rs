//! Catch-up of a member that fell behind (a lossy link, a restart): it asks
//! the peers ahead of it for the instances they delivered, and completes an
//! instance on f+1 matching vouches.
//!
//! A member learns its peers' delivery frontiers from their STATUS. On every
//! retransmission tick, for each source whose frontier here did not move
//! since the previous tick while some peer's is ahead, it sends those peers
//! [`Message::Fetch`] `{source, from}`; each answers with a
//! [`Message::Vouch`] for every instance from `from` it still keeps (at most
//! [`MAX_ANSWER`]): "I delivered this payload, signed by its source". The
//! payload's signature is checked as in an ECHO; votes are counted per digest
//! and a weak quorum (f+1) completes the instance: one of them is correct and
//! delivered it, so by Bracha's agreement every correct member delivers that
//! payload. When the answered range is delivered and peers are still ahead,
//! the member asks again at once (catch-up runs at round-trip speed, not at
//! the tick's).
//!
//! Vouches are statements about the past, not votes of the broadcast: a
//! member that never echoed an instance does not echo it now.
//!
//! Bounds: a member keeps delivered payloads while some peer's STATUS has not
//! shown them delivered, at most [`Config::retain`] per source and
//! [`Config::retain_bytes`] in all (oldest first); a peer gets at most one
//! answer per source per tick unless it asks for a later range (it made
//! progress); a vouch opens an instance only inside the source's window,
//! like any other message.

use super::{Ballot, Bracha, Config, Fault, Message, Phase, MAX_ANSWER};
use crate::common::{Payload, Retained, Signed, SourceOrder};
use byzscale_core::protocol::Cx;
use byzscale_core::{Addr, NodeId};
use std::collections::BTreeMap;

/// The catch-up state of one member (see the module docs).
#[derive(Clone, Debug)]
pub(super) struct CatchUp<P> {
    /// Delivered payloads kept for lagging peers.
    kept: Retained<P>,
    /// The latest STATUS of each peer.
    pub(super) peer_next: BTreeMap<NodeId, Vec<u64>>,
    /// This member's frontier per source at the previous tick.
    last_tick: BTreeMap<NodeId, u64>,
    /// Per source, the end of the range asked for and not yet delivered.
    asked: BTreeMap<NodeId, u64>,
    /// Per (peer, source), the tick and start of the last answer.
    answered: BTreeMap<(NodeId, NodeId), (u64, u64)>,
}

impl<P: Payload> CatchUp<P> {
    pub(super) fn new() -> Self {
        CatchUp {
            kept: Retained::new(),
            peer_next: BTreeMap::new(),
            last_tick: BTreeMap::new(),
            asked: BTreeMap::new(),
            answered: BTreeMap::new(),
        }
    }

    /// Keep the payload of delivered instance `key` for lagging peers.
    pub(super) fn keep(&mut self, key: (NodeId, u64), signed: Signed<P>, cfg: &Config) {
        self.kept.keep(key, signed, cfg.retain, cfg.retain_bytes);
    }

    pub(super) fn kept_mut(&mut self) -> &mut Retained<P> {
        &mut self.kept
    }

    pub(super) fn get(&self, key: &(NodeId, u64)) -> Option<&Signed<P>> {
        self.kept.get(key)
    }

    /// Payloads kept, and their bytes.
    pub(super) fn kept(&self) -> (usize, usize) {
        self.kept.size()
    }

    pub(super) fn status(&mut self, from: NodeId, next: Vec<u64>) {
        self.peer_next.insert(from, next);
    }

    /// Forget what every other member has shown delivered, and what is more
    /// than `retain` behind this member's own frontier.
    pub(super) fn forget_delivered(&mut self, cfg: &Config, others: &[NodeId], o: &SourceOrder<P>) {
        let peer_next = &self.peer_next;
        self.kept.retain(|&(source, seq)| {
            seq.saturating_add(cfg.retain) >= o.next(source)
                && others
                    .iter()
                    .any(|m| match (peer_next.get(m), cfg.pos(source)) {
                        (Some(v), Some(p)) => v.get(p).is_none_or(|n| *n <= seq),
                        _ => true,
                    })
        });
    }
}

impl<P: Payload> Bracha<P> {
    /// Delivered payloads kept for lagging peers, and their bytes.
    pub fn kept(&self) -> (usize, usize) {
        self.catchup.kept()
    }

    /// The peers whose last STATUS shows `source` ahead of this member.
    fn ahead(&self, source: NodeId) -> Vec<Addr> {
        let (Some(pos), mine) = (self.cfg.pos(source), self.ms.order.next(source)) else {
            return Vec::new();
        };
        let peers = &self.catchup.peer_next;
        self.others
            .iter()
            .filter(|a| {
                a.node()
                    .and_then(|n| peers.get(&n))
                    .and_then(|v| v.get(pos))
                    .is_some_and(|n| *n > mine)
            })
            .copied()
            .collect()
    }

    fn fetch(&mut self, cx: &mut Cx<'_, Self>, source: NodeId) -> bool {
        let ahead = self.ahead(source);
        if ahead.is_empty() {
            self.catchup.asked.remove(&source);
            return false;
        }
        let from = self.ms.order.next(source);
        self.catchup.asked.insert(source, from + MAX_ANSWER);
        cx.multicast(ahead, Message::Fetch { source, from });
        true
    }

    /// On a tick: ask for every source stuck since the previous tick.
    pub(super) fn fetch_stuck(&mut self, cx: &mut Cx<'_, Self>) {
        let members = self.cfg.members.clone();
        for source in members {
            let now = self.ms.order.next(source);
            let before = self.catchup.last_tick.insert(source, now);
            // a held source is not stuck: what completes waits here
            if before == Some(now) && !self.ms.order.is_held(source) {
                self.fetch(cx, source);
            }
        }
    }

    /// After a delivery of `source`: ask for more once the range asked for
    /// is delivered.
    pub(super) fn fetch_more(&mut self, cx: &mut Cx<'_, Self>, source: NodeId) {
        if let Some(end) = self.catchup.asked.get(&source) {
            if self.ms.order.next(source) >= *end {
                self.fetch(cx, source);
            }
        }
    }

    pub(super) fn on_fetch(
        &mut self,
        cx: &mut Cx<'_, Self>,
        from: NodeId,
        source: NodeId,
        start: u64,
    ) {
        if self.cfg.retransmit.is_none() {
            return;
        }
        if self.cfg.pos(source).is_none() {
            let detail = format!("fetch for non-member {source}");
            self.fault(cx, from, Fault::UnknownSource, detail);
            return;
        }
        let last = self.catchup.answered.get(&(from, source)).copied();
        if last.is_some_and(|(tick, s)| tick == self.tick && start <= s) {
            return;
        }
        self.catchup
            .answered
            .insert((from, source), (self.tick, start));
        let end = self
            .ms
            .order
            .next(source)
            .min(start.saturating_add(MAX_ANSWER));
        // the transport drops the *oldest* queued frames on overflow: queue
        // the most needed vouch (the requester's frontier) last, or a slow
        // link loses exactly that one on every ask
        for seq in (start..end).rev() {
            if let Some(signed) = self.catchup.get(&(source, seq)) {
                let signed = signed.clone();
                cx.send(
                    from,
                    Message::Vouch {
                        source,
                        seq,
                        signed,
                    },
                );
            }
        }
    }

    pub(super) fn on_vouch(
        &mut self,
        cx: &mut Cx<'_, Self>,
        from: NodeId,
        source: NodeId,
        seq: u64,
        signed: Signed<P>,
    ) {
        if self.open(cx, from, source, seq).is_none() {
            return;
        }
        let Some(d) = self.check(cx, from, source, seq, &signed) else {
            return;
        };
        let pos = self.cfg.pos(from).unwrap_or(usize::MAX);
        let phase = Phase::Vouch;
        let votes = self.add_vote(
            cx,
            Ballot {
                phase,
                from,
                pos,
                source,
                seq,
                d,
            },
        );
        if votes.is_some_and(|v| v >= self.cfg.ready_threshold()) {
            // as good as a READY quorum: kept (pinned) and finished
            if let Some(inst) = self.instances.get_mut(&(source, seq)) {
                inst.decided = Some(d);
            }
        }
        self.keep(cx, source, seq, d, signed);
    }
}
