//! `byzscale node --config FILE`: one replica as a long-running process.
//!
//! - Recovers from its redb store (latest snapshot plus the decided log after it)
//!   and catches up with the others by log and state transfer.
//! - Persists every decided batch and every stable checkpoint's snapshot (which
//!   truncates the log, so disk use is bounded by the checkpoint interval).
//!   Writes are group-committed off the protocol task, at most one fsync'd
//!   transaction per `persist_interval_ms` (default 10 ms) after execution;
//!   an acknowledged write survives any f simultaneous crashes by replication,
//!   and a crashed replica's own log is fsync'd up to its last group commit.
//! - Serves Prometheus metrics and, if configured, the Redis gateway.

use crate::deploy::{NodeFile, NodeProtocol, SmrService, SMR_KIND};
use crate::smr_client::SmrClient;
use anyhow::{Context, Result};
use byzscale_apps::kv::KvStore;
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::codec;
use byzscale_core::NodeId;
use byzscale_gateway::{BoxFuture, KvBackend};
use byzscale_net::{NodeConfig, Registry, Runtime, Storage};
use byzscale_smr as smr;
use byzscale_smr::{Batch, GroupInfo, Record, Replica};
use std::path::Path;
use std::sync::Arc;
use tracing::{info, warn};

pub async fn run(config: &Path) -> Result<()> {
    let loaded = NodeFile::load(config)?;
    match loaded.file.protocol {
        NodeProtocol::Smr if loaded.file.service == SmrService::Bank => {
            return crate::at2_deploy::bank_node(loaded).await
        }
        NodeProtocol::Smr => {}
        NodeProtocol::Byzcast => return crate::byzcast_deploy::node(loaded).await,
        NodeProtocol::At2 => return crate::at2_deploy::node(loaded).await,
    }
    let me = NodeId(loaded.file.node);
    let dep = loaded.deployment.clone();
    let (gc, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let g = GroupInfo::new(gc.id, gc.members(), gc.quorum_system()?);
    std::fs::create_dir_all(&loaded.file.data_dir)
        .with_context(|| format!("creating {}", loaded.file.data_dir.display()))?;
    let db = loaded.file.data_dir.join("replica.redb");
    let (storage, rec) = Storage::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let mut log = Vec::with_capacity(rec.log.len());
    for (slot, bytes) in &rec.log {
        let batch: Batch = codec::from_bytes(bytes, usize::MAX)
            .with_context(|| format!("decoding logged batch {slot} in {}", db.display()))?;
        log.push((*slot, batch));
    }
    let snap_slot = rec.snapshot.as_ref().map(|(s, _)| *s).unwrap_or(0);
    info!(node = %me, snapshot = snap_slot, logged = log.len(), "recovering from disk");
    let replica = Replica::recover(
        me,
        g,
        loaded.file.smr.clone(),
        KvStore::new(),
        rec.snapshot,
        log,
    )
    .map_err(|e| anyhow::anyhow!("recovering from {}: {e}", db.display()))?;
    let cfg = NodeConfig::replica(&dep, me, loaded.identity.clone(), SMR_KIND)?;
    let (ptx, mut prx) = tokio::sync::mpsc::channel::<Record>(4096);
    let registry = Arc::new(Registry::new());
    let (rt, mut outputs) = Runtime::start_with_records(replica, cfg, None, registry, Some(ptx))
        .await
        .context("starting the replica runtime")?;
    info!(node = %me, addr = %rc.addr, metrics = ?rc.metrics_addr, "replica running");

    let reg = rt.registry().clone();
    let decided = reg.counter("byzscale_decided_slots_total", "Slots decided and executed");
    let executed = reg.counter(
        "byzscale_executed_requests_total",
        "Client requests in decided slots",
    );
    let view = reg.gauge("byzscale_view", "Current view (regency)");
    let view_changes = reg.counter(
        "byzscale_view_changes_total",
        "Views installed after a synchronization phase",
    );
    let suspicions = reg.counter(
        "byzscale_suspicions_total",
        "Times this replica suspected the leader",
    );
    let transfers = reg.counter(
        "byzscale_state_transfers_total",
        "Snapshots installed from other replicas",
    );
    let checkpoints = reg.counter("byzscale_stable_checkpoints_total", "Stable checkpoints");
    let last_slot = reg.gauge(
        "byzscale_last_executed_slot",
        "Highest slot executed (or installed by state transfer)",
    );
    let persist_lag = reg.gauge(
        "byzscale_persist_queue",
        "Outputs waiting to be written to disk",
    );

    // persistence: group commits off the protocol task
    let storage = Arc::new(storage);
    let st = storage.clone();
    let lag = persist_lag.clone();
    let pace = std::time::Duration::from_millis(loaded.file.persist_interval_ms);
    let persister = tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        while let Some(first) = prx.recv().await {
            // group commit: one fsync'd transaction per interval at most, holding
            // everything decided meanwhile (the fsync, not the bytes, is the cost)
            tokio::time::sleep_until(last + pace).await;
            last = tokio::time::Instant::now();
            let mut items = vec![first];
            while let Ok(o) = prx.try_recv() {
                items.push(o);
            }
            lag.set(prx.len() as i64);
            let st = st.clone();
            let r = tokio::task::spawn_blocking(move || {
                let mut b = byzscale_net::Batch::new();
                for o in items {
                    match o {
                        Record::Decided { slot, batch } => {
                            b = b.append(slot, codec::to_bytes(&batch))
                        }
                        Record::Checkpoint { slot, snapshot } => {
                            // the snapshot covers every slot up to `slot`: the
                            // log below it goes, so disk use stays bounded by
                            // the checkpoint interval
                            b = b.snapshot(slot, snapshot).truncate_below(slot + 1)
                        }
                    }
                }
                if b.is_empty() {
                    Ok(())
                } else {
                    st.commit(b)
                }
            })
            .await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "persisting decided state failed"),
                Err(e) => warn!(error = %e, "persistence task failed"),
            }
        }
    });

    // the Redis gateway: a BFT client of this group, co-located with the replica
    let (gw_stop_tx, gw_stop) = tokio::sync::watch::channel(false);
    let mut gateway = None;
    if let Some(addr) = &rc.redis_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Redis gateway on {addr}"))?;
        let window = loaded.file.smr.client_window;
        let client =
            Arc::new(SmrClient::connect(&dep, gc.id, loaded.file.smr.clone(), window).await?);
        let opts = byzscale_gateway::GatewayOptions {
            unordered_reads: true,
            ..Default::default()
        };
        let backend: Arc<dyn KvBackend> = Arc::new(SmrBackend(client.clone()));
        let task = start_gateway(me, addr, listener, backend, opts, &reg, gw_stop);
        gateway = Some((client, task));
    }

    let mut stop = Box::pin(shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            o = outputs.recv() => {
                let Some(o) = o else { break };
                match &o {
                    smr::replica::Output::Decided { slot, batch, .. } => {
                        decided.inc();
                        last_slot.set(*slot as i64);
                        executed.add(batch.requests.len() as u64);
                    }
                    smr::replica::Output::ViewChanged { view: v, leader } => {
                        view.set(*v as i64);
                        view_changes.inc();
                        info!(node = %me, view = v, %leader, "view changed");
                    }
                    smr::replica::Output::Suspected { .. } => suspicions.inc(),
                    smr::replica::Output::StateTransferred { slot } => {
                        transfers.inc();
                        last_slot.set(*slot as i64);
                        info!(node = %me, slot, "state transferred");
                    }
                    smr::replica::Output::Stable { .. } => checkpoints.inc(),
                }
            }
        }
    }
    info!(node = %me, "shutting down");
    let _ = gw_stop_tx.send(true);
    if let Some((client, task)) = gateway {
        let _ = task.await;
        client.stop().await;
    }
    // stopping the runtime closes the record channel; the persister then
    // writes what it still holds and ends
    let _ = rt.stop().await;
    let _ = persister.await;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Serve the Redis gateway on `listener` in front of `backend` until `stop`,
/// adding its command and protocol-error counts to `reg`'s metrics once a second.
pub(crate) fn start_gateway(
    me: NodeId,
    addr: &str,
    listener: tokio::net::TcpListener,
    backend: Arc<dyn KvBackend>,
    opts: byzscale_gateway::GatewayOptions,
    reg: &Registry,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let stats = opts.stats();
    let commands = reg.counter("byzscale_gateway_commands_total", "Redis commands served");
    let gw_errors = reg.counter(
        "byzscale_gateway_protocol_errors_total",
        "Redis connections closed for bad input",
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let (mut c0, mut e0) = (0, 0);
        loop {
            tick.tick().await;
            let s = stats.snapshot();
            commands.add(s.commands - c0);
            gw_errors.add(s.protocol_errors - e0);
            (c0, e0) = (s.commands, s.protocol_errors);
        }
    });
    info!(node = %me, %addr, "Redis gateway listening");
    tokio::spawn(byzscale_gateway::serve(listener, backend, opts, stop))
}

/// The gateway's view of the replicated store: every command is a BFT request.
struct SmrBackend(Arc<SmrClient>);

impl KvBackend for SmrBackend {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        let c = self.0.clone();
        Box::pin(async move {
            let bytes = c
                .call(op.encode(), read_only)
                .await
                .map_err(|e| e.to_string())?;
            KvReply::decode(&bytes).map_err(|e| format!("undecodable reply: {e}"))
        })
    }
}
