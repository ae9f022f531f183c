//! The paper's Figure 2: messages per batch and maximum throughput per
//! protocol, and the two bounds of its §2.3 (digest §3.1–3.2).
//!
//! B is each replica's bandwidth (bytes/s), N the replicas, NF = N − f the
//! non-faulty ones, pm a payload message and sm a state message (bytes).
//! BFT protocols have N = 3f+1 (NF = 2f+1), hybrid ones N = 2f+1 (NF = f+1).
//! The bracketed denominators of DQPBFT and Destiny are the digest's
//! reconstruction of fractions the extraction split across lines. The
//! throughput is in payload messages (batches) per second.

use serde::Serialize;

/// One column of Figure 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    Pbft,
    Hybster,
    Dqpbft,
    Destiny,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Pbft, Proto::Hybster, Proto::Dqpbft, Proto::Destiny];

    /// Whether it runs in the hybrid model (a trusted subsystem, N = 2f+1).
    pub fn hybrid(self) -> bool {
        matches!(self, Proto::Hybster | Proto::Destiny)
    }

    /// Messages per batch, replies excluded (Fig. 2).
    pub fn messages(self, n: u64) -> u64 {
        match self {
            Proto::Pbft => n + 2 * n * n,
            Proto::Hybster => n + n * n,
            Proto::Dqpbft => 2 * n + 4 * n * n,
            Proto::Destiny => 7 * n,
        }
    }

    /// Communication phases (optimistic or pessimistic ordering).
    pub fn phases(self) -> &'static str {
        match self {
            Proto::Pbft => "3",
            Proto::Hybster => "2",
            Proto::Dqpbft => "4 or 6",
            Proto::Destiny => "5 or 7",
        }
    }

    /// Maximum throughput in batches per second (Fig. 2).
    pub fn throughput(self, s: &Setting) -> f64 {
        let (n, nf) = (s.n as f64, s.nf(self.hybrid()) as f64);
        let (pm, sm, b) = (s.pm, s.sm, s.bandwidth);
        match self {
            Proto::Pbft => b / ((n - 1.0) * (pm + 3.0 * sm)),
            Proto::Hybster => b / ((n - 1.0) * (pm + sm)),
            Proto::Dqpbft => {
                nf * b
                    / ((n - 1.0) * (pm + 3.0 * sm)
                        + (nf - 1.0) * (pm + 4.0 * (n - 1.0) * sm)
                        + (n - 1.0) * 4.0 * sm)
            }
            Proto::Destiny => {
                nf * b
                    / ((n - 1.0) * (pm + 3.0 * sm)
                        + (nf - 1.0) * (pm + 3.0 * sm)
                        + (n - 1.0) * 4.0 * sm)
            }
        }
    }
}

/// The parameters of one point of Figure 3.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Setting {
    pub n: u64,
    /// Bytes per second per replica.
    pub bandwidth: f64,
    /// Payload message bytes.
    pub pm: f64,
    /// State message bytes.
    pub sm: f64,
}

impl Setting {
    /// Fig. 3: 1 Gbit/s, sm = 250 B.
    pub fn figure3(n: u64, pm: f64) -> Setting {
        Setting {
            n,
            bandwidth: 1.25e8,
            pm,
            sm: 250.0,
        }
    }

    /// Tolerated faults: ⌊(N−1)/2⌋ hybrid, ⌊(N−1)/3⌋ BFT.
    pub fn f(&self, hybrid: bool) -> u64 {
        (self.n - 1) / if hybrid { 2 } else { 3 }
    }

    /// Non-faulty replicas, N − f.
    pub fn nf(&self, hybrid: bool) -> u64 {
        self.n - self.f(hybrid)
    }

    /// T_p = B / ((N−1)·pm): one primary sending every payload.
    pub fn single_primary(&self) -> f64 {
        self.bandwidth / ((self.n - 1) as f64 * self.pm)
    }

    /// T_cmax = NF·B / ((N−1)·pm + (NF−1)·pm): every non-faulty replica a
    /// primary, state messages free.
    pub fn concurrent_max(&self, hybrid: bool) -> f64 {
        let (n, nf) = (self.n as f64, self.nf(hybrid) as f64);
        nf * self.bandwidth / ((n - 1.0) * self.pm + (nf - 1.0) * self.pm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest's table (§3.2), computed there from the same formulas by
    /// hand: every value to the rounding.
    #[test]
    fn figure_3_values() {
        let rows: [(u64, [f64; 6]); 5] = [
            (19, [1356., 1183., 1293., 10579., 4051., 7083.]),
            (49, [509., 444., 485., 10071., 2032., 6640.]),
            (97, [254., 222., 242., 9918., 1139., 6507.]),
            (193, [127., 111., 121., 9842., 607., 6441.]),
            (301, [81., 71., 78., 9814., 398., 6417.]),
        ];
        for (n, want) in rows {
            let s = Setting::figure3(n, 5120.0);
            let got = [
                s.single_primary(),
                Proto::Pbft.throughput(&s),
                Proto::Hybster.throughput(&s),
                s.concurrent_max(false),
                Proto::Dqpbft.throughput(&s),
                Proto::Destiny.throughput(&s),
            ];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 0.5, "N={n}: {got:?} vs {want:?}");
            }
        }
        let big: [(u64, [f64; 5]); 3] = [
            (19, [67., 68., 490., 446., 452.]),
            (97, [13., 13., 358., 410., 415.]),
            (301, [4., 4., 225., 404., 410.]),
        ];
        for (n, want) in big {
            let s = Setting::figure3(n, 102_400.0);
            let got = [
                Proto::Pbft.throughput(&s),
                Proto::Hybster.throughput(&s),
                Proto::Dqpbft.throughput(&s),
                Proto::Destiny.throughput(&s),
                s.concurrent_max(true),
            ];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 0.5, "N={n}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn message_counts_and_shapes() {
        assert_eq!(Proto::Destiny.messages(301), 2107);
        assert_eq!(Proto::Dqpbft.messages(4), 72);
        assert_eq!(Proto::Pbft.messages(4), 36);
        // single-primary throughput falls with N; Destiny keeps its share of
        // T_cmax as N grows (constant state traffic per instance) while
        // DQPBFT's shrinks (quadratic state traffic)
        for pm in [5120.0, 102_400.0] {
            let (small, large) = (Setting::figure3(19, pm), Setting::figure3(301, pm));
            assert!(Proto::Pbft.throughput(&large) < Proto::Pbft.throughput(&small) / 10.0);
            let share = |p: Proto, s: &Setting| p.throughput(s) / s.concurrent_max(p.hybrid());
            let destiny = share(Proto::Destiny, &large) / share(Proto::Destiny, &small);
            let dqpbft = share(Proto::Dqpbft, &large) / share(Proto::Dqpbft, &small);
            assert!(
                destiny > 0.98 && dqpbft < 0.6,
                "pm {pm}: {destiny} {dqpbft}"
            );
        }
    }
}
