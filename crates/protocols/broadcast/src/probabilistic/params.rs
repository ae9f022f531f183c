//! Parameters of the probabilistic stack and the analysis that picks them.
//!
//! The thesis names the parameters (G, E, Ê, R, R̂, D, D̂) but gives no values
//! and no formulas: all quantification is deferred to the AT2 report and the
//! DISC'19 paper (digest §0, §2.5). The bounds below are ours. They are union
//! bounds per broadcast instance, for N processes of which B = ⌊βN⌋ are
//! Byzantine and C = N − B correct. A correct process samples among the N−1
//! others ([`crate::sampling`]), so a sample member is Byzantine with
//! probability β' = B/(N−1), independently (sampling with replacement).
//! Write T(n, p, k) = P[Bin(n, p) ≥ k].
//!
//! | term | failure event | bound |
//! |---|---|---|
//! | `gossip_disconnected` | the gossip graph of the correct processes is disconnected (Murmur totality, §4.3.3) | Σ_{k=1}^{⌊C/2⌋} C(C,k)(1−p)^{k(C−k)} with p = 1−(1−G/(N−1))², plus C·e^{−(1−β)(G+E+R+D)} for a process nobody contacts |
//! | `sieve_validity` | some correct process has more than E−Ê Byzantine echo-sample members (§4.4.3, total validity) | C·T(E, β', E−Ê+1) |
//! | `sieve_consistency` | two correct processes deliver different payloads, against the thesis' optimal adversary: feed m to correct processes until one delivers, then m′ to all others (§4.4.3), all Byzantine echoing both | Σ_x u(x)·(p₂(x)−p₂(x+1)) with u(x) = min(1, x·T(E,(B+x)/(N−1),Ê)) bounding "the first delivery of m happens by the x-th echo of m" and p₂(x) = min(1, (C−x)·T(E,(B+C−x)/(N−1),Ê)) bounding "some m′-echoer delivers m′" |
//! | `contagion_consistency` | a correct process delivers a payload no correct process pcb-delivered: every Byzantine process is ready for it (§4.5.3) | C·T(R, β', R̂) (some correct process catches readiness from the Byzantine alone) + C·T(D, β', D̂) (or delivers on Byzantine readies alone) |
//! | `contagion_validity` | all correct processes are ready but some correct process's delivery sample holds more than D−D̂ Byzantine members | C·T(D, β', D−D̂+1) |
//! | `contagion_totality` | some correct process delivers while the readiness avalanche stalls before reaching every correct process (§4.5.3, "critical threshold") | Σ_{c=1}^{C−1} min(S(c), C·T(D,(c+B)/(N−1),D̂)), S(c) = (1−φ(c))^{C−c}, φ(c) = T(R, c/(N−1), R̂) |
//!
//! `epsilon` is the sum of the six terms. All but the last are rigorous union
//! bounds under the thesis' assumptions (anonymity, secret independent
//! samples, and for Sieve its claim that the two-phase adversary is optimal).
//! The totality term is a **mean-field approximation**: S(c) treats the
//! processes outside a ready set of size c as if their samples were
//! independent of how that set formed (they are positively correlated with
//! "not yet infected"). DISC'19 replaces this by an exact threshold-contagion
//! computation; we validate ours with the Monte Carlo check of the simulator
//! (`byzscale broadcast montecarlo`) at degraded operating points, where
//! failures are frequent enough to count.
//!
//! # Selection
//!
//! [`select`] splits ε equally over the six terms and searches, in order, the
//! smallest G, then the smallest E with a feasible Ê (Ê as high as validity
//! allows and as low as consistency allows: the midpoint is taken), then the
//! pair (R, D) minimizing R + D with feasible R̂ and D̂. The sample sizes grow
//! like log(C/ε): the union bounds carry a factor C and every tail decays
//! exponentially in the sample size (Chernoff), which is the O(log N) of
//! §4.1. They also blow up as β → 1/3: Sieve needs (1+β)/2 < Ê/E < 1−β and
//! Contagion needs β < R̂/R and R̂/R + β < D̂/D < 1−β.
//!
//! Worked examples (`byzscale broadcast params --nodes N
//! --byzantine-fraction β --epsilon ε`):
//!
//! | N | β | ε | G | E / Ê | R / R̂ | D / D̂ | bound |
//! |---|---|---|---|---|---|---|---|
//! | 1,000 | 0.1 | 10⁻⁹ | 16.5 | 232 / 170 | 81 / 34 | 179 / 126 | 6.3·10⁻¹⁰ |
//! | 10,000 | 0.1 | 10⁻⁹ | 18 | 260 / 191 | 75 / 34 | 184 / 129 | 6.1·10⁻¹⁰ |
//! | 1,000 | 0.2 | 10⁻⁹ | 18.5 | 845 / 587 | 349 / 130 | 626 / 424 | 7.2·10⁻¹⁰ |
//! | 10,000 | 0.05 | 10⁻⁶ | 13.5 | 119 / 92 | 23 / 13 | 80 / 58 | 5.2·10⁻⁷ |
//!
//! At β = 0.1 the samples are a few hundred: Contagion sends fewer messages
//! per process than Bracha's 2N from N ≈ 500 on.

use serde::{Deserialize, Serialize};

/// The seven parameters of Murmur/Sieve/Contagion.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContagionParams {
    /// Expected gossip sample size (Poisson mean).
    pub g: f64,
    /// Echo sample size and delivery threshold.
    pub e: u32,
    pub e_hat: u32,
    /// Ready sample size and contagion threshold.
    pub r: u32,
    pub r_hat: u32,
    /// Delivery sample size and delivery threshold.
    pub d: u32,
    pub d_hat: u32,
}

impl ContagionParams {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.g.is_finite() && self.g >= 0.0) {
            return Err(format!("G must be a non-negative number, got {}", self.g));
        }
        for (name, size, thr) in [
            ("E", self.e, self.e_hat),
            ("R", self.r, self.r_hat),
            ("D", self.d, self.d_hat),
        ] {
            if thr == 0 || thr > size {
                return Err(format!(
                    "{name}-threshold must be in 1..={name} ({size}), got {thr}"
                ));
            }
        }
        Ok(())
    }

    /// `G,E,Ê,R,R̂,D,D̂` as written by [`std::fmt::Display`].
    pub fn parse(s: &str) -> Result<Self, String> {
        let v: Vec<&str> = s.split(',').map(str::trim).collect();
        if v.len() != 7 {
            return Err(format!(
                "expected 7 comma-separated values G,E,Ê,R,R̂,D,D̂; got {}",
                v.len()
            ));
        }
        let int = |i: usize| {
            v[i].parse::<u32>()
                .map_err(|e| format!("value {} ({:?}): {e}", i + 1, v[i]))
        };
        let p = ContagionParams {
            g: v[0]
                .parse::<f64>()
                .map_err(|e| format!("G ({:?}): {e}", v[0]))?,
            e: int(1)?,
            e_hat: int(2)?,
            r: int(3)?,
            r_hat: int(4)?,
            d: int(5)?,
            d_hat: int(6)?,
        };
        p.validate()?;
        Ok(p)
    }
}

impl std::fmt::Display for ContagionParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{},{},{},{},{}",
            self.g, self.e, self.e_hat, self.r, self.r_hat, self.d, self.d_hat
        )
    }
}

// ---------------------------------------------------------------------------
// Binomial tails

fn ln_choose(n: u64, k: u64) -> f64 {
    libm::lgamma(n as f64 + 1.0) - libm::lgamma(k as f64 + 1.0) - libm::lgamma((n - k) as f64 + 1.0)
}

/// ln P[Bin(n, p) = k] for 0 < p < 1.
fn ln_pmf(n: u64, k: u64, p: f64) -> f64 {
    ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (-p).ln_1p()
}

/// Σ P[Bin(n,p) = i] for i from `k` upwards (or downwards), starting at the
/// side of the mode where terms only decrease, stopping once they are
/// negligible.
fn tail_sum(n: u64, p: f64, k: u64, up: bool) -> f64 {
    let ratio = p / (1.0 - p);
    let ln_t = ln_pmf(n, k, p);
    let mut t = 1.0; // terms relative to the first one
    let mut sum = 0.0;
    let mut i = k;
    loop {
        sum += t;
        if up {
            if i >= n {
                break;
            }
            t *= (n - i) as f64 / (i + 1) as f64 * ratio;
            i += 1;
        } else {
            if i == 0 {
                break;
            }
            t *= i as f64 / ((n - i + 1) as f64 * ratio);
            i -= 1;
        }
        // the first term is (within one step of) the largest: the rest decay
        if t < sum * 1e-17 {
            break;
        }
    }
    (ln_t + sum.ln()).exp()
}

/// T(n, p, k) = P[Bin(n, p) ≥ k], accurate in the far tail (log-space).
pub fn binomial_upper_tail(n: u64, p: f64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(0.0, 1.0);
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let mean = n as f64 * p;
    if k as f64 >= mean {
        tail_sum(n, p, k, true).min(1.0)
    } else {
        (1.0 - tail_sum(n, p, k - 1, false)).clamp(0.0, 1.0)
    }
}

// ---------------------------------------------------------------------------
// Analysis

/// The per-instance failure bounds of a parameter set (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub nodes: usize,
    pub byzantine: usize,
    pub correct: usize,
    pub gossip_disconnected: f64,
    pub sieve_validity: f64,
    pub sieve_consistency: f64,
    pub contagion_consistency: f64,
    pub contagion_validity: f64,
    pub contagion_totality: f64,
    /// Sum of the six terms (capped at 1).
    pub epsilon: f64,
}

struct Model {
    n: usize,
    b: usize,
    c: usize,
    /// Byzantine fraction among the N−1 others.
    beta: f64,
}

impl Model {
    fn new(n: usize, b: usize) -> Self {
        let b = b.min(n);
        let others = (n.max(2) - 1) as f64;
        Model {
            n,
            b,
            c: n - b,
            beta: b as f64 / others,
        }
    }
    fn frac(&self, count: usize) -> f64 {
        (count as f64 / (self.n.max(2) - 1) as f64).min(1.0)
    }
    fn cf(&self) -> f64 {
        self.c as f64
    }
}

fn grid(max: usize, points: usize) -> Vec<usize> {
    if max <= points {
        return (0..=max).collect();
    }
    let mut v: Vec<usize> = (0..=points)
        .map(|i| (i as f64 * max as f64 / points as f64).round() as usize)
        .collect();
    v.dedup();
    v
}

fn gossip_term(m: &Model, g: f64, others_sum: f64) -> f64 {
    if m.c <= 1 {
        return 0.0;
    }
    let others = (m.n - 1) as f64;
    let q = (g.min(others) / others).clamp(0.0, 1.0);
    let ln_miss = 2.0 * (-q).ln_1p(); // ln(1 − p_edge)
    let c = m.c as u64;
    let mut sum = 0.0f64;
    let mut prev = f64::INFINITY;
    for k in 1..=c / 2 {
        let lt = ln_choose(c, k) + (k * (c - k)) as f64 * ln_miss;
        let t = lt.exp();
        sum += t;
        if sum >= 1.0 {
            return 1.0;
        }
        if k > 2 && lt < prev && t < sum * 1e-20 {
            break;
        }
        prev = lt;
    }
    let isolated = m.cf() * (-(1.0 - m.beta) * (g + others_sum)).exp();
    (sum + isolated).min(1.0)
}

fn sieve_validity(m: &Model, e: u32, e_hat: u32) -> f64 {
    (m.cf() * binomial_upper_tail(e as u64, m.beta, (e - e_hat + 1) as u64)).min(1.0)
}

fn sieve_consistency(m: &Model, e: u32, e_hat: u32) -> f64 {
    let (n, c, b) = (m.n, m.c, m.b);
    let _ = n;
    let t = |count: usize| binomial_upper_tail(e as u64, m.frac(count), e_hat as u64);
    let u = |x: usize| (x as f64 * t(b + x)).min(1.0);
    let p2 = |x: usize| {
        if x >= c {
            0.0
        } else {
            ((c - x) as f64 * t(b + c - x)).min(1.0)
        }
    };
    let g = grid(c, 400);
    let mut bound = 0.0;
    for w in g.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let drop = (p2(lo + 1) - p2(hi + 1)).max(0.0);
        bound += u(hi) * drop;
    }
    bound.min(1.0)
}

fn contagion_consistency(m: &Model, r: u32, r_hat: u32, d: u32, d_hat: u32) -> f64 {
    let a = binomial_upper_tail(r as u64, m.beta, r_hat as u64);
    let b = binomial_upper_tail(d as u64, m.beta, d_hat as u64);
    (m.cf() * (a + b)).min(1.0)
}

fn contagion_validity(m: &Model, d: u32, d_hat: u32) -> f64 {
    (m.cf() * binomial_upper_tail(d as u64, m.beta, (d - d_hat + 1) as u64)).min(1.0)
}

/// φ(c) on a grid of ready-set sizes, for the totality term.
struct Stall {
    points: Vec<usize>,
    stall: Vec<f64>,
}

fn stall_curve(m: &Model, r: u32, r_hat: u32) -> Stall {
    let points: Vec<usize> = grid(m.c, 4096)
        .into_iter()
        .filter(|c| *c >= 1 && *c < m.c)
        .collect();
    let stall = points
        .iter()
        .map(|&c| {
            let phi = binomial_upper_tail(r as u64, m.frac(c), r_hat as u64);
            ((m.c - c) as f64 * (-phi).ln_1p()).exp()
        })
        .collect();
    Stall { points, stall }
}

fn contagion_totality(m: &Model, s: &Stall, d: u32, d_hat: u32) -> f64 {
    let mut sum = 0.0;
    for (i, &c) in s.points.iter().enumerate() {
        let next = s.points.get(i + 1).copied().unwrap_or(m.c);
        let width = (next - c).max(1) as f64;
        let stall = s.stall[i].max(s.stall.get(i + 1).copied().unwrap_or(0.0));
        let deliver = (m.cf()
            * binomial_upper_tail(d as u64, m.frac(next.min(m.c) + m.b), d_hat as u64))
        .min(1.0);
        sum += width * stall.min(deliver);
        if sum >= 1.0 {
            return 1.0;
        }
    }
    sum
}

/// The failure bounds of `p` for `nodes` processes of which `byzantine` are
/// Byzantine.
pub fn analyze(nodes: usize, byzantine: usize, p: &ContagionParams) -> Analysis {
    let m = Model::new(nodes, byzantine);
    let others_sum = (p.e + p.r + p.d) as f64;
    let gossip_disconnected = gossip_term(&m, p.g, others_sum);
    let sieve_validity = sieve_validity(&m, p.e, p.e_hat);
    let sieve_consistency = sieve_consistency(&m, p.e, p.e_hat);
    let contagion_consistency = contagion_consistency(&m, p.r, p.r_hat, p.d, p.d_hat);
    let contagion_validity = contagion_validity(&m, p.d, p.d_hat);
    let stall = stall_curve(&m, p.r, p.r_hat);
    let contagion_totality = contagion_totality(&m, &stall, p.d, p.d_hat);
    let epsilon = (gossip_disconnected
        + sieve_validity
        + sieve_consistency
        + contagion_consistency
        + contagion_validity
        + contagion_totality)
        .min(1.0);
    Analysis {
        nodes,
        byzantine: m.b,
        correct: m.c,
        gossip_disconnected,
        sieve_validity,
        sieve_consistency,
        contagion_consistency,
        contagion_validity,
        contagion_totality,
        epsilon,
    }
}

// ---------------------------------------------------------------------------
// Selection

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    #[error("need at least 2 processes, got {0}")]
    TooFew(usize),
    #[error("byzantine fraction must be in [0, 1/3), got {0}")]
    Fraction(f64),
    #[error("epsilon must be in (0, 1), got {0}")]
    Epsilon(f64),
    #[error("no parameters up to sample size {max} reach ε = {epsilon:e} for N = {nodes}, β = {fraction} (the needed sizes grow without bound as β → 1/3)")]
    Infeasible {
        nodes: usize,
        fraction: f64,
        epsilon: f64,
        max: u32,
    },
}

/// Parameters picked by [`select`] with their analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub nodes: usize,
    pub byzantine_fraction: f64,
    pub target_epsilon: f64,
    pub params: ContagionParams,
    pub analysis: Analysis,
}

/// Largest sample size [`select`] considers.
pub const MAX_SAMPLE: u32 = 20_000;

/// Smallest k with `ok(k)`, for `ok` monotone (false…false true…true) on
/// `lo..=hi`; `None` if `ok(hi)` is false.
fn first_true(lo: u32, hi: u32, mut ok: impl FnMut(u32) -> bool) -> Option<u32> {
    if lo > hi || !ok(hi) {
        return None;
    }
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// Smallest sample size in `1..=MAX_SAMPLE` for which `feasible` returns a
/// threshold (assumed monotone in the size), by doubling then bisection.
fn smallest_size(mut feasible: impl FnMut(u32) -> Option<u32>) -> Option<(u32, u32)> {
    let mut hi = 1;
    while feasible(hi).is_none() {
        if hi >= MAX_SAMPLE {
            return None;
        }
        hi = (hi * 2).min(MAX_SAMPLE);
    }
    let lo = hi / 2 + 1;
    let size = first_true(lo.min(hi), hi, |s| feasible(s).is_some())?;
    feasible(size).map(|t| (size, t))
}

/// Pick (G, E, Ê, R, R̂, D, D̂) for `nodes` processes, a Byzantine fraction
/// and a per-instance failure probability `epsilon` (see the module docs).
pub fn select(
    nodes: usize,
    byzantine_fraction: f64,
    epsilon: f64,
) -> Result<Selection, ParamsError> {
    if nodes < 2 {
        return Err(ParamsError::TooFew(nodes));
    }
    if !(0.0..1.0 / 3.0).contains(&byzantine_fraction) {
        return Err(ParamsError::Fraction(byzantine_fraction));
    }
    if !(epsilon > 0.0 && epsilon < 1.0) {
        return Err(ParamsError::Epsilon(epsilon));
    }
    let infeasible = ParamsError::Infeasible {
        nodes,
        fraction: byzantine_fraction,
        epsilon,
        max: MAX_SAMPLE,
    };
    let b = (byzantine_fraction * nodes as f64).floor() as usize;
    let m = Model::new(nodes, b);
    let budget = epsilon / 6.0;

    // Sieve: smallest E with an Ê satisfying both validity and consistency.
    let sieve = |e: u32| -> Option<u32> {
        // highest Ê validity allows
        let t = first_true(1, e, |t| {
            m.cf() * binomial_upper_tail(e as u64, m.beta, t as u64) <= budget
        })?;
        let hi = e + 1 - t;
        // lowest Ê consistency allows
        let lo = first_true(1, hi, |eh| sieve_consistency(&m, e, eh) <= budget)?;
        Some(lo + (hi - lo) / 2)
    };
    let (e, e_hat) = smallest_size(sieve).ok_or(infeasible.clone())?;

    // Contagion: for each R, the smallest D; minimize R + D.
    let d_for = |r: u32, r_hat: u32| -> Option<(u32, u32)> {
        let stall = stall_curve(&m, r, r_hat);
        let feasible = |d: u32| -> Option<u32> {
            let t = first_true(1, d, |t| {
                m.cf() * binomial_upper_tail(d as u64, m.beta, t as u64) <= budget
            })?;
            let hi = d + 1 - t;
            let lo_cons = first_true(1, d, |dh| {
                m.cf() * binomial_upper_tail(d as u64, m.beta, dh as u64) <= budget / 2.0
            })?;
            let lo_tot = first_true(1, d, |dh| contagion_totality(&m, &stall, d, dh) <= budget)?;
            let lo = lo_cons.max(lo_tot);
            (lo <= hi).then(|| lo + (hi - lo) / 2)
        };
        smallest_size(feasible)
    };
    let r_hat_for = |r: u32| {
        first_true(1, r, |rh| {
            m.cf() * binomial_upper_tail(r as u64, m.beta, rh as u64) <= budget / 2.0
        })
    };
    // the smallest R with any admissible R̂
    let (r_min, _) = smallest_size(&r_hat_for).ok_or(infeasible.clone())?;
    let mut best: Option<(u32, u32, u32, u32)> = None;
    let mut worse = 0;
    let mut r = r_min;
    while r <= MAX_SAMPLE {
        if let Some(r_hat) = r_hat_for(r) {
            if let Some((d, d_hat)) = d_for(r, r_hat) {
                let better = best.is_none_or(|(br, _, bd, _)| r + d < br + bd);
                if better {
                    best = Some((r, r_hat, d, d_hat));
                    worse = 0;
                } else {
                    worse += 1;
                }
            }
        }
        if worse >= 4 || best.is_some_and(|(br, _, bd, _)| r > br + bd) {
            break;
        }
        r += (r / 12).max(1);
    }
    let (r, r_hat, d, d_hat) = best.ok_or(infeasible.clone())?;

    // Gossip: smallest G (in halves) for connectivity.
    let others_sum = (e + r + d) as f64;
    let mut g = 1.0;
    while gossip_term(&m, g, others_sum) > budget {
        g += 0.5;
        if g > (nodes as f64).max(2.0) {
            return Err(infeasible);
        }
    }
    let params = ContagionParams {
        g,
        e,
        e_hat,
        r,
        r_hat,
        d,
        d_hat,
    };
    Ok(Selection {
        nodes,
        byzantine_fraction,
        target_epsilon: epsilon,
        analysis: analyze(nodes, b, &params),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_upper(n: u64, p: f64, k: u64) -> f64 {
        (k..=n).map(|i| ln_pmf(n, i, p).exp()).sum()
    }

    #[test]
    fn tails_match_direct_sums_and_the_digest_table() {
        for &(n, p, k) in &[
            (10u64, 0.3, 3u64),
            (50, 0.5, 40),
            (100, 0.1, 2),
            (300, 0.2, 121),
            (40, 0.9, 39),
        ] {
            let a = binomial_upper_tail(n, p, k);
            let b = exact_upper(n, p, k);
            assert!(
                (a - b).abs() <= 1e-12 + 1e-9 * b,
                "n={n} p={p} k={k}: {a} vs {b}"
            );
        }
        // digest §2.6: P[Bin(E, f) ≥ E−Ê+1]
        let close = |x: f64, y: f64| (x / y - 1.0).abs() < 0.05;
        assert!(close(binomial_upper_tail(100, 0.1, 41), 4.8e-16));
        assert!(close(binomial_upper_tail(200, 0.2, 81), 2.7e-11));
        assert!(close(binomial_upper_tail(300, 0.3, 121), 8.9e-5));
        assert_eq!(binomial_upper_tail(5, 0.5, 0), 1.0);
        assert_eq!(binomial_upper_tail(5, 0.5, 6), 0.0);
        assert_eq!(binomial_upper_tail(5, 0.0, 1), 0.0);
    }

    #[test]
    fn bounds_move_the_right_way() {
        let p = ContagionParams {
            g: 8.0,
            e: 120,
            e_hat: 90,
            r: 120,
            r_hat: 40,
            d: 120,
            d_hat: 90,
        };
        let a = analyze(1000, 100, &p);
        let more_byz = analyze(1000, 200, &p);
        assert!(more_byz.epsilon > a.epsilon);
        let bigger = ContagionParams {
            e: 240,
            e_hat: 180,
            ..p
        };
        let b = analyze(1000, 100, &bigger);
        assert!(b.sieve_validity < a.sieve_validity && b.sieve_consistency < a.sieve_consistency);
        // connectivity: G around ln N is the phase transition
        let g1 = analyze(1000, 0, &ContagionParams { g: 3.0, ..p }).gossip_disconnected;
        let g2 = analyze(1000, 0, &ContagionParams { g: 15.0, ..p }).gossip_disconnected;
        // isolated correct vertex: ≈ C·e^{−2G}
        assert!(g1 > 1e-3 && g2 < 1e-9 && g2 > 1e-11, "{g1} {g2}");
    }

    #[test]
    fn selection_meets_its_target_and_grows_logarithmically() {
        let s1 = select(1000, 0.1, 1e-9).unwrap();
        assert!(s1.analysis.epsilon <= 1e-9 * 1.0001, "{:?}", s1.analysis);
        s1.params.validate().unwrap();
        let s2 = select(100_000, 0.1, 1e-9).unwrap();
        assert!(s2.analysis.epsilon <= 1e-9 * 1.0001);
        let size = |s: &Selection| (s.params.e + s.params.r + s.params.d) as f64;
        // 100x more processes: ln(C/ε) grows from ~27.6 to ~32.2 (+17%)
        let ratio = size(&s2) / size(&s1);
        assert!(
            ratio > 1.0 && ratio < 1.4,
            "{ratio}: {:?} vs {:?}",
            s1.params,
            s2.params
        );
        assert!(select(100, 0.34, 1e-6).is_err());
        assert!(select(1, 0.1, 1e-6).is_err());
    }

    #[test]
    fn params_parse_and_print() {
        let p = ContagionParams::parse("6.5,10,7,8,3,10,7").unwrap();
        assert_eq!(p.to_string(), "6.5,10,7,8,3,10,7");
        assert!(ContagionParams::parse("1,2,3").is_err());
        assert!(ContagionParams::parse("1,2,3,4,5,6,7").is_err(), "R̂ > R");
    }
}
