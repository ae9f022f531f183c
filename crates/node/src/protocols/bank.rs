//! The bank ordered by the SMR core, as real processes: what AT2 is compared
//! with (`byzscale bench-at2`). A `service = "bank"` SMR node file runs the
//! SMR replica with [`byzscale_apps::bank`] as its service.
//!
//! # Paper mapping
//!
//! AT2 (Guerraoui et al., PODC 2019) argues that asset transfer needs no
//! consensus; the comparison point is the same transfers totally ordered by
//! a BFT SMR group (`byzscale_smr`, BFT-SMaRt style): the same nodes, the
//! same closed-loop workload (worker w spends 1 from account w mod N to a
//! random other one), reported as an [`At2Report`] with protocol
//! `"smr-bank"`.
//!
//! Deviations: no Redis gateway and no persistence on bank nodes (a
//! benchmark set-up, not a service).

use crate::daemon::serve_outputs;
use crate::generate::local_params;
use crate::launcher::{Local, LocalSpec};
use crate::load::Load;
use crate::node_file::{At2Settings, LoadedNode, NodeProtocol, SmrService};
use crate::protocols::at2::{At2Report, TransferRun};
use crate::protocols::smr::{ReplicaMetrics, SmrClient};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::bank::{Bank, BankOp, BankReply};
use byzscale_core::{GroupId, WireKind};
use byzscale_net::{NodeConfig, Runtime};
use byzscale_smr::{GroupInfo, Replica};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// `byzscale node` for a `service = "bank"` SMR node file.
pub(crate) async fn run_node(loaded: LoadedNode) -> Result<()> {
    let me = loaded.me();
    let dep = &loaded.deployment;
    let (gc, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let g = GroupInfo::new(gc.id, gc.members(), gc.quorum_system()?);
    let replica = Replica::new(me, g, loaded.file.smr.clone(), Bank::new());
    let cfg = NodeConfig::replica(dep, me, loaded.identity.clone(), WireKind::Smr.byte())?;
    let (rt, mut outputs) = Runtime::start(replica, cfg)
        .await
        .context("starting the replica runtime")?;
    info!(node = %me, addr = %rc.addr, "bank replica running (no persistence)");
    let metrics = ReplicaMetrics::register(me, rt.registry(), "Client requests in decided slots");
    serve_outputs(me, &mut outputs, |o| metrics.observe(&o)).await;
    let _ = rt.stop().await;
    Ok(())
}

async fn bank_call(c: &SmrClient, op: BankOp) -> Result<BankReply> {
    let ro = op.is_read_only();
    let bytes = tokio::time::timeout(Duration::from_secs(10), c.call(op.encode(), ro))
        .await
        .context("no reply within 10 s")??;
    BankReply::decode(&bytes).map_err(|e| anyhow!("undecodable reply: {e}"))
}

/// The transfer workload of `run` on an SMR bank of `run.nodes` replicas: N
/// accounts, worker w spends 1 from account w mod N to a random other one.
pub async fn run(run: &TransferRun) -> Result<(At2Report, Local)> {
    run.check()?;
    let (nodes, clients) = (run.nodes, run.clients);
    let groups = [(nodes, (nodes - 1) / 3)];
    let spec = LocalSpec {
        groups: &groups,
        protocol: NodeProtocol::Smr,
        dir: run.dir.clone(),
        keep: run.keep,
        netns: None,
    };
    let local = Local::start(spec, |f| f.service = SmrService::Bank).await?;
    let settings = At2Settings::default();
    let params = local_params();
    let nconn = clients.div_ceil(16).clamp(1, 8);
    let per = clients.div_ceil(nconn) as u64;
    let mut cs = Vec::new();
    for _ in 0..nconn {
        let window = per.min(params.client_window);
        let c = SmrClient::connect(&local.dep, GroupId(0), params.clone(), window).await?;
        cs.push(Arc::new(c));
    }
    for a in 0..nodes as u64 {
        let initial = settings.initial_balance;
        match bank_call(
            &cs[0],
            BankOp::Open {
                account: a,
                initial,
            },
        )
        .await?
        {
            BankReply::Opened => {}
            other => bail!("opening bank account {a}: {other:?}"),
        }
    }
    let cs2 = cs.clone();
    let n = nodes as u64;
    let out = Load::run(&run.load(), run.progress, move |w, rng| {
        let c = cs2[w % cs2.len()].clone();
        let from = w as u64 % n;
        let to = TransferRun::receiver(from, n, rng);
        (0, async move {
            let op = BankOp::Transfer {
                from,
                to,
                amount: 1,
            };
            match bank_call(&c, op).await? {
                BankReply::Transferred => Ok(()),
                other => Err(anyhow!("{other:?}")),
            }
        })
    })
    .await;
    let supply = settings.initial_balance as u128 * nodes as u128;
    let total = match bank_call(&cs[0], BankOp::Total).await? {
        BankReply::Total(t) => t as u128,
        other => bail!("reading the bank's total: {other:?}"),
    };
    for c in &cs {
        c.stop().await;
    }
    let report = At2Report {
        supply_conserved: total == supply,
        // one replicated state: the ordered Total answer is the group's
        balances_agree: true,
        supply,
        dir: local.dir_label(),
        ..At2Report::new("smr-bank", run, &out)
    };
    Ok((report, local))
}
