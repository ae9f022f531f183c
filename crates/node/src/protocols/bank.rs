//! The banks ordered by the SMR core, as real processes: what AT2 is
//! compared with (`byzscale bench-at2 --bank plain,signed`).
//!
//! - `plain`: a `service = "bank"` SMR node file runs the SMR replica with
//!   [`byzscale_apps::bank`] as its service (`run_node`, load [`run`],
//!   protocol `"smr-bank"`): N accounts (one per node), worker w spends 1
//!   from account w mod N; clients are authenticated by MACs only (any
//!   client may move any account) and the replicas keep nothing on disk.
//! - `signed`: a `service = "signed-bank"` node file runs the replica with
//!   [`byzscale_apps::signed_bank`] (`run_signed_node`, load
//!   [`run_signed`], protocol `"smr-signed-bank"`): AT2's genesis (the
//!   node file's `[at2]` section, demo accounts by default), one account
//!   per worker as in AT2's load, each transfer signed by the account's
//!   owner with its next sequence number and batch-verified by every
//!   replica once per decided batch (`Service::prepare_batch`); the
//!   replicas are durable exactly as the KV store's
//!   (`protocols::smr::run_durable`: redb, group commit, nothing
//!   sent before the records it follows are fsync'd, recovery on restart).
//!
//! # Paper mapping
//!
//! AT2 (Guerraoui et al., PODC 2019) argues that asset transfer needs no
//! consensus; the comparison point is the same transfers totally ordered by
//! a BFT SMR group (`byzscale_smr`, BFT-SMaRt style): the same nodes, the
//! same closed-loop workload, reported as an [`At2Report`]. The paper's
//! asset-transfer object has owner-authorized transfers; only the signed
//! bank implements that (the owner's signature and sequence number stand
//! for the paper's owner map and per-owner sequence), so it is the
//! like-for-like comparison; the plain bank is an upper bound of an SMR
//! bank without authorization or durability.
//!
//! Deviations: no Redis gateway on bank nodes; the plain bank has no
//! persistence and no owner authorization (a benchmark set-up, not a
//! service); the signed bank's accounts exist only from genesis (no
//! operation creates money), like AT2's.

use crate::daemon::serve_outputs;
use crate::generate::local_params;
use crate::launcher::{Local, LocalSpec};
use crate::load::{Load, LoadResult};
use crate::node_file::{At2Settings, LoadedNode, NodeFile, NodeProtocol, SmrService};
use crate::protocols::at2::{At2Report, TransferRun};
use crate::protocols::smr::{ReplicaMetrics, SmrClient};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::bank::{Bank, BankOp, BankReply};
use byzscale_apps::signed_bank::{
    BankTransfer, SignedBank, SignedBankError, SignedOp, SignedReply,
};
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

/// One local SMR group of `run.nodes` replicas, its node files patched by
/// `patch` (the bank service they run).
async fn start_group(run: &TransferRun, patch: impl Fn(&mut NodeFile)) -> Result<Local> {
    let groups = [(run.nodes, (run.nodes - 1) / 3)];
    let spec = LocalSpec {
        groups: &groups,
        protocol: NodeProtocol::Smr,
        dir: run.dir.clone(),
        keep: run.keep,
        netns: None,
    };
    Local::start(spec, patch).await
}

/// The SMR clients of `clients` closed-loop workers: one per 16, at most 8.
async fn connect(local: &Local, clients: usize) -> Result<Vec<Arc<SmrClient>>> {
    let params = local_params();
    let nconn = clients.div_ceil(16).clamp(1, 8);
    let per = clients.div_ceil(nconn) as u64;
    let mut cs = Vec::new();
    for _ in 0..nconn {
        let window = per.min(params.client_window);
        let c = SmrClient::connect(&local.dep, GroupId(0), params.clone(), window).await?;
        cs.push(Arc::new(c));
    }
    Ok(cs)
}

/// The transfer workload of `run` on an SMR bank of `run.nodes` replicas: N
/// accounts, worker w spends 1 from account w mod N to a random other one.
pub async fn run(run: &TransferRun) -> Result<(At2Report, Local)> {
    run.check()?;
    let (nodes, clients) = (run.nodes, run.clients);
    let local = start_group(run, |f| f.service = SmrService::Bank).await?;
    let settings = At2Settings::default();
    let cs = connect(&local, clients).await?;
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
    finish("smr-bank", run, &out, (total, supply), &cs, local).await
}

/// Stop the clients and report `load` of `run` as `protocol`, with the
/// group's ordered total against the supply: one replicated state, so its
/// answer is every replica's (the balances agree by construction).
async fn finish(
    protocol: &'static str,
    run: &TransferRun,
    load: &LoadResult,
    (total, supply): (u128, u128),
    clients: &[Arc<SmrClient>],
    local: Local,
) -> Result<(At2Report, Local)> {
    for c in clients {
        c.stop().await;
    }
    let report = At2Report {
        supply_conserved: total == supply,
        balances_agree: true,
        supply,
        dir: local.dir_label(),
        ..At2Report::new(protocol, run, load)
    };
    Ok((report, local))
}

// ---------------------------------------------------------------- signed

/// The signed bank's genesis: the `[at2]` section's (its genesis file, or
/// its demo accounts), so that it holds the accounts an AT2 deployment with
/// the same settings holds.
fn signed_genesis(s: &At2Settings) -> Result<SignedBank> {
    let g = crate::protocols::at2::genesis(s)?;
    SignedBank::new(g.accounts().map(|a| (a.0, g.initial(a)))).map_err(|e| anyhow!("{e}"))
}

/// `byzscale node` for a `service = "signed-bank"` SMR node file: the SMR
/// replica of the signed bank, durable like the KV store's (recovery from
/// and group commit to its redb store), without the Redis gateway.
pub(crate) async fn run_signed_node(loaded: LoadedNode) -> Result<()> {
    let bank = signed_genesis(&loaded.file.at2.clone().unwrap_or_default())?;
    crate::protocols::smr::run_durable(loaded, bank, false).await
}

async fn signed_call(c: &SmrClient, op: &SignedOp) -> Result<SignedReply> {
    let bytes = tokio::time::timeout(
        Duration::from_secs(10),
        c.call(op.encode(), op.is_read_only()),
    )
    .await
    .context("no reply within 10 s")??;
    SignedReply::decode(&bytes).map_err(|e| anyhow!("undecodable reply: {e}"))
}

/// One demo account's owner in the signed load: its key and its next
/// sequence number.
struct Payer {
    key: ed25519_dalek::SigningKey,
    seq: u64,
}

/// Before the load, through the running group: a transfer of account 0
/// signed by its owner runs, the same signed bytes sent again are refused
/// as a replay, and a transfer signed by another key is refused, so every
/// run checks that the replicas verify owners and sequence numbers.
async fn check_refusals(c: &SmrClient, owners: &[Payer]) -> Result<()> {
    let (from, to) = (&owners[0].key, &owners[1 % owners.len()].key);
    let t = |seq| BankTransfer {
        from: from.verifying_key().to_bytes(),
        seq,
        to: to.verifying_key().to_bytes(),
        amount: 1,
    };
    let good = t(1).sign(from);
    let expect = [
        (good.clone(), SignedReply::Transferred),
        (
            good,
            SignedReply::Error(SignedBankError::BadSeq {
                expected: 2,
                got: 1,
            }),
        ),
        (
            t(2).sign(to),
            SignedReply::Error(SignedBankError::BadSignature),
        ),
    ];
    for (op, want) in expect {
        let got = signed_call(c, &op).await?;
        if got != want {
            bail!("signed bank check: {want:?} expected, got {got:?}");
        }
    }
    Ok(())
}

/// The transfer workload of `run` on a durable signed bank of `run.nodes`
/// replicas: the AT2 load's accounts (A = as many as workers, at most the
/// demo accounts), worker w signs with the key of account w mod A and
/// spends 1 to a random other of the A accounts.
pub async fn run_signed(run: &TransferRun) -> Result<(At2Report, Local)> {
    run.check()?;
    let clients = run.clients;
    let settings = run.settings.clone();
    let supply = signed_genesis(&settings)?.total() as u128;
    let local = start_group(run, |f| {
        f.service = SmrService::SignedBank;
        f.at2 = Some(settings.clone());
    })
    .await?;
    let cs = connect(&local, clients).await?;
    let accounts = (clients as u32).clamp(2, settings.demo_accounts.max(2));
    let owners: Vec<Payer> = (0..accounts)
        .map(|i| Payer {
            key: byzscale_at2::demo_key(i),
            seq: 1,
        })
        .collect();
    check_refusals(&cs[0], &owners).await?;
    let owners: Arc<Vec<tokio::sync::Mutex<Payer>>> = Arc::new(
        owners
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                tokio::sync::Mutex::new(Payer {
                    seq: 1 + u64::from(i == 0),
                    ..o
                })
            })
            .collect(),
    );
    let pubs: Arc<Vec<[u8; 32]>> = Arc::new(
        (0..accounts)
            .map(|i| byzscale_at2::demo_key(i).verifying_key().to_bytes())
            .collect(),
    );
    let cs2 = cs.clone();
    let out = Load::run(&run.load(), run.progress, move |w, rng| {
        let c = cs2[w % cs2.len()].clone();
        let a = w % accounts as usize;
        let to = pubs[TransferRun::receiver(a as u64, accounts as u64, rng) as usize];
        let (owners, from) = (owners.clone(), pubs[a]);
        (0, async move {
            let mut o = owners[a].lock().await;
            let t = BankTransfer {
                from,
                seq: o.seq,
                to,
                amount: 1,
            };
            match signed_call(&c, &t.sign(&o.key)).await? {
                SignedReply::Transferred => {
                    o.seq += 1;
                    Ok(())
                }
                SignedReply::Error(SignedBankError::BadSeq { expected, .. }) => {
                    let refused = std::mem::replace(&mut o.seq, expected);
                    Err(anyhow!("sequence number {refused} refused"))
                }
                other => Err(anyhow!("{other:?}")),
            }
        })
    })
    .await;
    let total = match signed_call(&cs[0], &SignedOp::Total).await? {
        SignedReply::Total(t) => t as u128,
        other => bail!("reading the signed bank's total: {other:?}"),
    };
    finish("smr-signed-bank", run, &out, (total, supply), &cs, local).await
}
