//! `byzscale sim at2-scale`: messages per process against N.
//!
//! The same engine as `sim at2`, failure-free: the chosen latency matrix, the
//! calibrated CPU model, `CryptoMode::Modeled` signatures and the engine's
//! modeled channels (labelled: keyed BLAKE3 signatures; channel MACs charged
//! in the CPU model but not computed, spoofed senders still rejected; see
//! [`byzscale_sim::engine`]), no adversary. All nodes share one key directory
//! ([`byzscale_sim::group`]), so N = 1000 holds 1000 key entries, not 10⁶.
//! Reported: messages and bytes sent per process per transfer against N
//! (seed 002: Bracha's O(N) against Contagion's O(log N) per process and
//! broadcast). Each transfer also costs its vote round (see `byzscale_at2`):
//! about two messages per process on average, but N−1 proposals and N−1
//! votes at the node that took it, so the busiest process's count grows
//! like N under Contagion too. `sim at2 --modeled-crypto` uses the same modeled channels;
//! with real crypto, pairwise channel keys are derived when a pair first
//! talks.

use crate::{BroadcastKind, Config, SimBroadcast};
use byzscale_at2::{demo_key, Account, At2, Batch, Genesis, SignedTransfer, Transfer};
use byzscale_broadcast::probabilistic::params::ContagionParams;
use byzscale_broadcast::{Bracha, Contagion, SecureBroadcast};
use byzscale_core::crypto::CryptoMode;
use byzscale_core::protocol::{Time, MICROS};
use byzscale_core::{Addr, NodeId};
use byzscale_scenario_broadcast::MODELED;
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Channels, Control, NodeIdx, NodeStats};
use byzscale_sim::group;
use byzscale_sim::net_model::{NetModel, NetworkChoice};
use byzscale_sim::scenario::SimError;
use serde::Serialize;
use std::sync::Arc;

/// One point of the scale figure.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ScalePoint {
    pub broadcast: String,
    pub processes: usize,
    pub transfers: u64,
    /// Mean over processes of messages sent, per transfer (= per broadcast).
    pub messages_per_process_per_transfer: f64,
    /// Same, for the busiest process.
    pub max_messages_per_process_per_transfer: f64,
    pub bytes_per_process_per_transfer: f64,
    pub contagion_params: Option<ContagionParams>,
    pub contagion_epsilon: Option<f64>,
    /// Every process applied every transfer.
    pub complete: bool,
    /// Virtual time until the last application (transfers are started 200
    /// one-way latencies apart).
    pub virtual_ms: f64,
    pub events: u64,
    /// Most events (mostly messages in flight) scheduled at once.
    pub peak_events_in_flight: usize,
    pub wall_seconds: f64,
}

/// Scale runs (see the module docs): failure-free, modeled signatures and
/// channels, calibrated CPU model.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    pub transfers: u64,
    pub network: NetworkChoice,
    /// Contagion parameters are selected for each N with these
    /// ([`byzscale_broadcast::probabilistic::params::select`]).
    pub assumed_fraction: f64,
    pub epsilon: f64,
    pub seed: u64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            transfers: 2,
            network: NetworkChoice::Preset("lan".into()),
            assumed_fraction: 0.1,
            epsilon: 1e-9,
            seed: 1,
        }
    }
}

/// Run AT2 over `kind` with `n` processes: `cfg.transfers` owners spread over
/// the group each issue one transfer, one after the other (200 one-way
/// latencies apart).
pub fn scale_point(
    kind: BroadcastKind,
    n: usize,
    cfg: &ScaleConfig,
) -> Result<ScalePoint, SimError> {
    if n < 4 {
        return Err(SimError::Config(format!(
            "scale runs need at least 4 processes, got {n}"
        )));
    }
    let t = cfg.transfers.clamp(1, n as u64);
    let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    let sources: Vec<NodeId> = (0..t)
        .map(|k| NodeId((k as usize * n / t as usize) as u32))
        .collect();
    let mut sim_cfg = Config::new(n, 0, kind);
    sim_cfg.assumed_fraction = cfg.assumed_fraction;
    sim_cfg.epsilon = cfg.epsilon;
    let contagion = match kind {
        BroadcastKind::Contagion => Some(sim_cfg.contagion()?),
        BroadcastKind::Bracha => None,
    };
    let started = std::time::Instant::now();
    let net = cfg.network.model()?;
    let mut at2 =
        byzscale_at2::Config::new(Genesis::demo(n as u32, 1000), members.clone(), sim_cfg.f());
    let hop = net.max_one_way().max(MICROS);
    at2.vote_timeout = 20 * hop;
    at2.defer_timeout = 40 * hop;
    let at2 = Arc::new(at2);
    let ScaleRun {
        complete,
        last,
        events,
        peak,
        counters,
    } = match kind {
        BroadcastKind::Bracha => {
            let make = Bracha::<Batch>::build(&sim_cfg, &members)?;
            scale_run(&members, &sources, &net, cfg.seed, |i| {
                At2::new(make(i), at2.clone())
            })
        }
        BroadcastKind::Contagion => {
            let make = Contagion::<Batch>::build(&sim_cfg, &members)?;
            scale_run(&members, &sources, &net, cfg.seed, |i| {
                At2::new(make(i), at2.clone())
            })
        }
    };
    let per = |x: u64| x as f64 / n as f64 / t as f64;
    let sent: u64 = counters.iter().map(|c| c.sent).sum();
    let bytes: u64 = counters.iter().map(|c| c.bytes_sent).sum();
    let max = counters.iter().map(|c| c.sent).max().unwrap_or(0);
    Ok(ScalePoint {
        broadcast: kind.name().to_string(),
        processes: n,
        transfers: t,
        messages_per_process_per_transfer: per(sent),
        max_messages_per_process_per_transfer: max as f64 / t as f64,
        bytes_per_process_per_transfer: per(bytes),
        contagion_params: contagion.as_ref().map(|c| c.0),
        contagion_epsilon: contagion.as_ref().map(|c| c.1.epsilon),
        complete,
        virtual_ms: last as f64 / 1e6,
        events,
        peak_events_in_flight: peak as usize,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// What one scale run measured.
struct ScaleRun {
    /// Every process applied every transfer.
    complete: bool,
    /// Time of the last application.
    last: Time,
    events: u64,
    peak: u64,
    counters: Vec<NodeStats>,
}

fn scale_run<B: SecureBroadcast<Batch> + 'static>(
    members: &[NodeId],
    sources: &[NodeId],
    net: &NetModel,
    seed: u64,
    make: impl Fn(NodeId) -> At2<B>,
) -> ScaleRun {
    let directory = group::directory(members.iter().copied());
    let mut sim = group::sim(
        seed,
        net.clone(),
        CpuModel::calibrated(),
        &directory,
        CryptoMode::Modeled,
        members,
        make,
    );
    sim.set_channels(Channels::Modeled);
    let n = members.len() as u32;
    // one transfer every `gap`, so that one broadcast's burst of messages is
    // over before the next starts (the event queue stays small)
    let gap = 200 * net.max_one_way().max(MICROS);
    for (k, s) in sources.iter().enumerate() {
        let key = demo_key(s.0);
        let t = Transfer {
            from: Account::of(&key),
            seq: 1,
            to: Account::of(&demo_key((s.0 + 1) % n)),
            amount: 1,
        };
        let input = byzscale_at2::Input::Submit {
            transfer: SignedTransfer::sign_in(&key, CryptoMode::Modeled, t, vec![]),
            tag: 0,
        };
        sim.schedule_input(k as Time * gap, NodeIdx(s.0), input);
    }
    let mut applied = vec![0u32; members.len()];
    let mut last = 0;
    let mut obs = |at: Time,
                   node: NodeIdx,
                   _: Addr,
                   out: byzscale_at2::Output,
                   _: &mut Control<byzscale_at2::Input>| {
        if let byzscale_at2::Output::Applied(_) = out {
            applied[node.index()] += 1;
            last = last.max(at);
        }
    };
    // failure-free and without periodic timers: runs until nothing is left
    sim.run_until(Time::MAX, &mut obs);
    let complete = applied.iter().all(|a| *a as usize == sources.len());
    let st = sim.stats();
    ScaleRun {
        complete,
        last,
        events: st.events,
        peak: st.peak_pending,
        counters: st.per_node.clone(),
    }
}

/// The figure's data: one point per (broadcast, N).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ScaleReport {
    pub crypto: String,
    pub network: String,
    pub cpu: String,
    pub assumed_fraction: f64,
    pub epsilon: f64,
    pub points: Vec<ScalePoint>,
}

/// Run every (broadcast, N) pair; `progress` sees each point as it finishes.
pub fn scale(
    runs: &[(BroadcastKind, usize)],
    cfg: &ScaleConfig,
    mut progress: impl FnMut(&ScalePoint),
) -> Result<ScaleReport, SimError> {
    let mut points = Vec::new();
    for &(kind, n) in runs {
        let p = scale_point(kind, n, cfg)?;
        progress(&p);
        points.push(p);
    }
    Ok(ScaleReport {
        crypto: MODELED.into(),
        network: cfg.network.name(),
        cpu: "calibrated (channel MACs charged, not computed: modeled channels)".into(),
        assumed_fraction: cfg.assumed_fraction,
        epsilon: cfg.epsilon,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contagion_per_process_cost_grows_like_log_n_and_bracha_like_n() {
        // modeled crypto, N = 250 and 1000 (no timing assertions)
        let cfg = ScaleConfig {
            transfers: 2,
            ..ScaleConfig::default()
        };
        let c250 = scale_point(BroadcastKind::Contagion, 250, &cfg).unwrap();
        let c1000 = scale_point(BroadcastKind::Contagion, 1000, &cfg).unwrap();
        assert!(c250.complete && c1000.complete);
        let contagion =
            c1000.messages_per_process_per_transfer / c250.messages_per_process_per_transfer;
        // ln(1000)/ln(250) ≈ 1.25; linear growth would be 4
        assert!(
            contagion > 1.0 && contagion < 1.6,
            "contagion grew {contagion}x: {c250:?} {c1000:?}"
        );
        let b100 = scale_point(BroadcastKind::Bracha, 100, &cfg).unwrap();
        let b250 = scale_point(BroadcastKind::Bracha, 250, &cfg).unwrap();
        let bracha =
            b250.messages_per_process_per_transfer / b100.messages_per_process_per_transfer;
        assert!(
            b100.complete && b250.complete && (bracha - 2.5).abs() < 0.1,
            "bracha grew {bracha}x"
        );
        // at N = 1000 Contagion already sends fewer messages than Bracha's 2N
        assert!(c1000.messages_per_process_per_transfer < 2.0 * 1000.0);
        assert!(c1000.contagion_epsilon.unwrap() <= 1e-9);
    }
}
