//! The votes an instance saw per payload digest, whether or not the payload
//! is held, so that the multi-shot wrapper keeps the best-supported
//! candidates (see the module docs of [`super`], "Candidates").
//!
//! A vote is an ECHO or a READY from a member of one of this process' samples
//! ([`super::Layer::weight`] is its multiplicity there; a vote of weight 0 is
//! not recorded). A member counts with its first ECHO only (a correct member
//! echoes one payload) and with at most [`MAX_CANDIDATES`] READYs (a correct
//! member may be ready for several payloads of a Byzantine source, but a
//! correct process never holds more). So the table is bounded by the sample
//! sizes: at most (E + MAX_CANDIDATES·(R + D)) entries.

use super::layers::{Vote, MAX_CANDIDATES};
use byzscale_core::crypto::Digest;
use byzscale_core::NodeId;
use std::collections::BTreeMap;

/// What [`Scores::record`] did with a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Counted now.
    New,
    /// The same vote was counted before.
    Again,
    /// A second ECHO for another payload, or READYs beyond
    /// [`MAX_CANDIDATES`]: not counted.
    Refused,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Scores {
    /// The digests each (member, kind of vote) voted for, in order.
    by_voter: BTreeMap<(NodeId, Vote), Vec<Digest>>,
    /// Each digest's summed weight and its voters, in order.
    by_digest: BTreeMap<Digest, (u64, Vec<(NodeId, Vote)>)>,
}

impl Scores {
    /// Count `voter`'s `vote` of `weight` for digest `d`.
    pub(crate) fn record(&mut self, voter: NodeId, vote: Vote, d: Digest, weight: u32) -> Recorded {
        let mine = self.by_voter.entry((voter, vote)).or_default();
        if mine.contains(&d) {
            return Recorded::Again;
        }
        let limit = match vote {
            Vote::Echo => 1,
            Vote::Ready => MAX_CANDIDATES,
        };
        if mine.len() >= limit {
            return Recorded::Refused;
        }
        mine.push(d);
        let (score, voters) = self.by_digest.entry(d).or_default();
        *score += u64::from(weight);
        voters.push((voter, vote));
        Recorded::New
    }

    /// The summed weight of the votes for `d`.
    pub(crate) fn score(&self, d: &Digest) -> u64 {
        self.by_digest.get(d).map_or(0, |(s, _)| *s)
    }

    /// Who voted for `d`, in the order the votes came.
    pub(crate) fn voters(&self, d: &Digest) -> Vec<(NodeId, Vote)> {
        self.by_digest
            .get(d)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Forget the score of `d`, a forgery: its voters' votes stay spent.
    pub(crate) fn forged(&mut self, d: &Digest) {
        self.by_digest.remove(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_echo_and_a_bounded_number_of_readies_per_member() {
        let mut s = Scores::default();
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(s.record(NodeId(1), Vote::Echo, a, 2), Recorded::New);
        assert_eq!(s.record(NodeId(1), Vote::Echo, a, 2), Recorded::Again);
        assert_eq!(s.record(NodeId(1), Vote::Echo, b, 2), Recorded::Refused);
        assert_eq!(s.record(NodeId(1), Vote::Ready, a, 3), Recorded::New);
        assert_eq!(s.score(&a), 5);
        assert_eq!(s.score(&b), 0);
        for i in 0..MAX_CANDIDATES as u8 - 1 {
            assert_eq!(
                s.record(NodeId(1), Vote::Ready, [10 + i; 32], 1),
                Recorded::New
            );
        }
        assert_eq!(s.record(NodeId(1), Vote::Ready, b, 1), Recorded::Refused);
        assert_eq!(
            s.voters(&a),
            vec![(NodeId(1), Vote::Echo), (NodeId(1), Vote::Ready)]
        );
        s.forged(&a);
        assert_eq!(s.score(&a), 0);
        assert_eq!(s.record(NodeId(1), Vote::Echo, a, 2), Recorded::Again);
    }
}
