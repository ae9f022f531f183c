//! The plumbing under every client library: a client protocol on the tokio
//! runtime under a fresh identity, shared by many callers, each awaiting the
//! answer to its own call (matched by call number).

use anyhow::{Context, Result};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::Identity;
use byzscale_core::{ClientId, Protocol, WireKind};
use byzscale_net::{NodeConfig, Runnable, Runtime, RuntimeHandle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// The client was stopped before the call was submitted.
    Stopped,
    /// The client was stopped while the call waited.
    Gone,
    /// No answer within this time.
    Timeout(Duration),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Stopped => write!(f, "client stopped"),
            CallError::Gone => write!(f, "client stopped before the reply"),
            CallError::Timeout(t) => write!(f, "no reply within {} s", t.as_secs_f64()),
        }
    }
}

impl std::error::Error for CallError {}

/// Callers waiting for their answers, by call number.
pub(crate) struct Pending<V>(Arc<Mutex<BTreeMap<u64, oneshot::Sender<V>>>>);

impl<V> Clone for Pending<V> {
    fn clone(&self) -> Self {
        Pending(self.0.clone())
    }
}

impl<V> Default for Pending<V> {
    fn default() -> Self {
        Pending(Arc::default())
    }
}

impl<V> Pending<V> {
    /// Wait for the answer to call `n`.
    pub(crate) fn wait(&self, n: u64) -> oneshot::Receiver<V> {
        let (tx, rx) = oneshot::channel();
        self.0.lock().expect("waiters lock").insert(n, tx);
        rx
    }
    /// Hand `v` to the caller waiting for call `n`, if any.
    pub(crate) fn answer(&self, n: u64, v: V) {
        if let Some(tx) = self.0.lock().expect("waiters lock").remove(&n) {
            let _ = tx.send(v);
        }
    }
    /// Stop waiting for call `n`.
    pub(crate) fn forget(&self, n: u64) {
        self.0.lock().expect("waiters lock").remove(&n);
    }
}

/// A running client protocol `P` whose calls are answered with `V`s.
pub(crate) struct Calls<P: Protocol, V> {
    handle: RuntimeHandle<P::Input>,
    /// Call numbers count from 1 in submission order (the SMR and ByzCast
    /// clients number their submissions so); this lock keeps our count and
    /// the input channel in step.
    next: tokio::sync::Mutex<u64>,
    waiters: Pending<V>,
    runtime: Mutex<Option<Runtime<P>>>,
}

impl<P: Runnable, V: Send + 'static> Calls<P, V> {
    /// Start `make(id)` for a fresh client: a new key, and the id it
    /// certifies ([`ClientId::of_key`]), as a
    /// client of `dep` on wire `kind`. `answer` picks the call number and the
    /// answer out of an output. With `all_replicas`, wait (at most 5 s: a
    /// replica may be down) until connected to every replica of `dep`.
    pub(crate) async fn start(
        dep: &Deployment,
        kind: WireKind,
        all_replicas: bool,
        make: impl FnOnce(ClientId) -> P,
        answer: impl Fn(P::Output) -> Option<(u64, V)> + Send + 'static,
    ) -> Result<Self> {
        let identity = Identity::generate();
        let id = ClientId::of_key(&identity.public());
        let cfg = NodeConfig::client(dep, id, identity, kind.byte())?;
        let (rt, mut outputs) = Runtime::start(make(id), cfg)
            .await
            .context("starting the client runtime")?;
        if all_replicas {
            let replicas = dep.groups.iter().map(|g| g.replicas.len()).sum();
            rt.wait_connected(replicas, Duration::from_secs(5)).await;
        }
        let waiters = Pending::default();
        let w = waiters.clone();
        tokio::spawn(async move {
            while let Some(o) = outputs.recv().await {
                if let Some((n, v)) = answer(o) {
                    w.answer(n, v);
                }
            }
        });
        Ok(Calls {
            handle: rt.handle(),
            next: tokio::sync::Mutex::new(1),
            waiters,
            runtime: Mutex::new(Some(rt)),
        })
    }

    /// Submit `input(n)` as call number n and wait for the answer to n (at
    /// most `timeout`, if given).
    pub(crate) async fn call(
        &self,
        input: impl FnOnce(u64) -> P::Input,
        timeout: Option<Duration>,
    ) -> Result<V, CallError> {
        let (n, rx) = {
            let mut next = self.next.lock().await;
            let n = *next;
            let rx = self.waiters.wait(n);
            if self.handle.submit(input(n)).await.is_err() {
                self.waiters.forget(n);
                return Err(CallError::Stopped);
            }
            *next += 1;
            (n, rx)
        };
        let Some(t) = timeout else {
            return rx.await.map_err(|_| CallError::Gone);
        };
        match tokio::time::timeout(t, rx).await {
            Ok(r) => r.map_err(|_| CallError::Gone),
            Err(_) => {
                self.waiters.forget(n);
                Err(CallError::Timeout(t))
            }
        }
    }

    /// Stop the client runtime (calls still waiting fail).
    pub(crate) async fn stop(&self) {
        let rt = self.runtime.lock().expect("runtime lock").take();
        if let Some(rt) = rt {
            let _ = rt.stop().await;
        }
    }
}
