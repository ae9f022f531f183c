//! An async handle on a running SMR [`Client`] protocol over TCP: many callers
//! share one client (up to its window of outstanding requests), each awaiting its
//! own reply.

use crate::deploy::SMR_KIND;
use anyhow::{anyhow, Context, Result};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::Identity;
use byzscale_core::{ClientId, GroupId};
use byzscale_net::{NodeConfig, Runtime, RuntimeHandle};
use byzscale_smr as smr;
use byzscale_smr::{Client, GroupInfo, Params};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub struct SmrClient {
    handle: RuntimeHandle<smr::client::Input>,
    /// Submission ids are assigned by the protocol in input order; this lock keeps
    /// our count and the input channel in step.
    next: tokio::sync::Mutex<u64>,
    waiters: Arc<Mutex<BTreeMap<u64, oneshot::Sender<Vec<u8>>>>>,
    runtime: Mutex<Option<Runtime<Client>>>,
}

pub fn group_info(dep: &Deployment, group: GroupId) -> Result<GroupInfo> {
    let g = dep.group(group)?;
    Ok(GroupInfo::new(g.id, g.members(), g.quorum_system()?))
}

impl SmrClient {
    /// Connect a fresh client identity (random id, new key) to `group`.
    pub async fn connect(
        dep: &Deployment,
        group: GroupId,
        mut params: Params,
        window: u64,
    ) -> Result<Self> {
        let id = ClientId(rand::thread_rng().gen_range(1..ClientId::REPLICA_BASE));
        params.client_window = window.max(1);
        let g = group_info(dep, group)?;
        let client = Client::new(id, g, params);
        let cfg = NodeConfig::client(dep, id, Identity::generate(), SMR_KIND)?;
        let (rt, mut outputs) = Runtime::start(client, cfg)
            .await
            .context("starting the client runtime")?;
        // bounded: a replica may be down
        let replicas = dep.groups.iter().map(|g| g.replicas.len()).sum();
        rt.wait_connected(replicas, std::time::Duration::from_secs(5))
            .await;
        let waiters: Arc<Mutex<BTreeMap<u64, oneshot::Sender<Vec<u8>>>>> = Arc::default();
        let w = waiters.clone();
        tokio::spawn(async move {
            while let Some(smr::client::Output::Done { id, result, .. }) = outputs.recv().await {
                if let Some(tx) = w.lock().expect("waiters lock").remove(&id) {
                    let _ = tx.send(result);
                }
            }
        });
        Ok(SmrClient {
            handle: rt.handle(),
            next: tokio::sync::Mutex::new(1),
            waiters,
            runtime: Mutex::new(Some(rt)),
        })
    }

    /// Submit `op` and wait for its result (retransmission is the protocol's job).
    pub async fn call(&self, op: Vec<u8>, read_only: bool) -> Result<Vec<u8>> {
        let rx = {
            let mut next = self.next.lock().await;
            let id = *next;
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().expect("waiters lock").insert(id, tx);
            if self
                .handle
                .submit(smr::client::Input::Submit { op, read_only })
                .await
                .is_err()
            {
                self.waiters.lock().expect("waiters lock").remove(&id);
                return Err(anyhow!("client stopped"));
            }
            *next += 1;
            rx
        };
        rx.await
            .map_err(|_| anyhow!("client stopped before the reply"))
    }

    pub async fn stop(&self) {
        let rt = self.runtime.lock().expect("runtime lock").take();
        if let Some(rt) = rt {
            let _ = rt.stop().await;
        }
    }
}
