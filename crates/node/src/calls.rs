//! The plumbing under every client library: a client protocol on the tokio
//! runtime under a fresh identity, shared by many callers, each awaiting the
//! answer to its own call (matched by call number).
//!
//! Backpressure: at most `limit` calls are submitted and unanswered at once
//! (what the protocol holds in flight and in its backlog). [`Calls::call`]
//! waits for room, so a caller that can wait (the Redis gateway: it stops
//! reading the connection) is slowed to the rate the replicas take;
//! [`Calls::try_call`] fails at once with [`CallError::Full`], so an open-loop
//! load generator sheds the request and says so rather than queueing it
//! without bound (issue 11: 16,384 requests queued in the generator's
//! process at 3x the peak cost the cluster 39% of its throughput).

use anyhow::{Context, Result};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::Identity;
use byzscale_core::{ClientId, Protocol, WireKind};
use byzscale_net::{NodeConfig, Runnable, Runtime, RuntimeHandle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The limit of unanswered calls for a client protocol with no window of
/// its own (ByzCast, AT2): generous, but a bound.
pub(crate) const UNWINDOWED_LIMIT: usize = 4096;

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// The client was stopped before the call was submitted.
    Stopped,
    /// The client was stopped while the call waited.
    Gone,
    /// No answer within this time.
    Timeout(Duration),
    /// [`Calls::try_call`]: the client already holds its limit of calls.
    Full,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Stopped => write!(f, "client stopped"),
            CallError::Gone => write!(f, "client stopped before the reply"),
            CallError::Timeout(t) => write!(f, "no reply within {} s", t.as_secs_f64()),
            CallError::Full => write!(f, "client full: too many calls in flight, not sent"),
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
    /// One permit per call submitted and not yet answered (module docs).
    room: Arc<tokio::sync::Semaphore>,
    runtime: Mutex<Option<Runtime<P>>>,
}

impl<P: Runnable, V: Send + 'static> Calls<P, V> {
    /// Start `make(id)` for a fresh client: a new key, and the id it
    /// certifies ([`ClientId::of_key`]), as a
    /// client of `dep` on wire `kind`. `answer` picks the call number and the
    /// answer out of an output. With `all_replicas`, wait (at most 5 s: a
    /// replica may be down) until connected to every replica of `dep`. At
    /// most `limit` calls are unanswered at once (module docs).
    pub(crate) async fn start(
        dep: &Deployment,
        kind: WireKind,
        all_replicas: bool,
        limit: usize,
        make: impl FnOnce(ClientId) -> P,
        answer: impl Fn(P::Output) -> Option<(u64, V)> + Send + 'static,
    ) -> Result<Self> {
        let identity = Identity::generate();
        let id = ClientId::of_key(&identity.public());
        let cfg = NodeConfig::client(dep, id, identity, kind.byte())?;
        let replicas = dep.groups.iter().map(|g| g.replicas.len()).sum();
        let wait = all_replicas.then_some(replicas);
        Calls::start_with(cfg, wait, limit, make(id), answer).await
    }

    /// Start `protocol` as the client `cfg` configures (its identity, the
    /// replicas it dials); wait (at most 5 s) until `wait` of them are
    /// connected. [`Calls::start`] otherwise.
    pub(crate) async fn start_with(
        cfg: NodeConfig,
        wait: Option<usize>,
        limit: usize,
        protocol: P,
        answer: impl Fn(P::Output) -> Option<(u64, V)> + Send + 'static,
    ) -> Result<Self> {
        let (rt, mut outputs) = Runtime::start(protocol, cfg)
            .await
            .context("starting the client runtime")?;
        if let Some(n) = wait {
            rt.wait_connected(n, Duration::from_secs(5)).await;
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
            room: Arc::new(tokio::sync::Semaphore::new(
                limit.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            runtime: Mutex::new(Some(rt)),
        })
    }

    /// Submit `input(n)` as call number n, once there is room (the client
    /// holds fewer than its limit of calls), and wait for the answer to n
    /// (at most `timeout`, if given).
    pub(crate) async fn call(
        &self,
        input: impl FnOnce(u64) -> P::Input,
        timeout: Option<Duration>,
    ) -> Result<V, CallError> {
        // the fair lock first, then room: calls are numbered and submitted
        // in the order they called, and wait for room in that order (a
        // connection of the Redis gateway relies on it: `KvBackend::stream`;
        // waiting for room first, two calls woken together could take the
        // lock in either order)
        let next = self.next.lock().await;
        let room = self.room.clone().acquire_owned().await;
        let permit = room.map_err(|_| CallError::Stopped)?;
        self.submit(next, input, timeout, permit).await
    }

    /// [`Calls::call`] if there is room now; else [`CallError::Full`] at
    /// once, nothing submitted.
    pub(crate) async fn try_call(
        &self,
        input: impl FnOnce(u64) -> P::Input,
        timeout: Option<Duration>,
    ) -> Result<V, CallError> {
        let permit = self.room.clone().try_acquire_owned().map_err(|e| match e {
            tokio::sync::TryAcquireError::NoPermits => CallError::Full,
            tokio::sync::TryAcquireError::Closed => CallError::Stopped,
        })?;
        let next = self.next.lock().await;
        self.submit(next, input, timeout, permit).await
    }

    /// Whether [`Calls::try_call`] would find room now.
    pub(crate) fn has_room(&self) -> bool {
        self.room.available_permits() > 0
    }

    /// Submit `input(n)` as the call number `next` holds, release the lock,
    /// and wait for the answer, holding `_room` until then.
    async fn submit(
        &self,
        mut next: tokio::sync::MutexGuard<'_, u64>,
        input: impl FnOnce(u64) -> P::Input,
        timeout: Option<Duration>,
        _room: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<V, CallError> {
        let (n, rx) = {
            let n = *next;
            let rx = self.waiters.wait(n);
            if self.handle.submit(input(n)).await.is_err() {
                self.waiters.forget(n);
                return Err(CallError::Stopped);
            }
            *next += 1;
            drop(next);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{generate, local_params, Ports};
    use crate::node_file::NodeProtocol;
    use crate::protocols::smr::group_info;
    use byzscale_core::GroupId;
    use byzscale_smr as smr;

    type SmrCalls = Calls<smr::Client, Result<Vec<u8>, smr::client::Error>>;

    fn submit(_: u64) -> smr::client::Input {
        smr::client::Input::Submit {
            op: b"x".to_vec(),
            read_only: false,
        }
    }

    /// A client at its limit (replicas that never answer: none runs)
    /// refuses a `try_call` at once with `Full`, and a `call` waits for room
    /// instead of queueing. Before, every call went into the SMR client's
    /// backlog, without bound (16,384 at 3x the peak in `bench-overload`).
    #[tokio::test]
    async fn a_full_client_refuses_at_once_and_a_call_waits_for_room() {
        let dir = std::env::temp_dir().join(format!("byzscale-calls-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports = Ports {
            hosts: vec!["127.0.0.1".into()],
            base: 41_400,
        };
        let dep = generate(&dir, &[(4, 1)], &ports, NodeProtocol::Smr, |_| {}).unwrap();
        let g = group_info(&dep, GroupId(0)).unwrap();
        let params = smr::Params {
            client_window: 1,
            ..local_params()
        };
        let calls: Arc<SmrCalls> = Arc::new(
            Calls::start(
                &dep,
                WireKind::Smr,
                false,
                2,
                |id| smr::Client::new(id, g, params),
                |o| Some(o.result()),
            )
            .await
            .unwrap(),
        );
        let spawn_call = |c: Arc<SmrCalls>| tokio::spawn(async move { c.call(submit, None).await });
        let held: Vec<_> = (0..2).map(|_| spawn_call(calls.clone())).collect();
        while calls.has_room() {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            calls.try_call(submit, None).await,
            Err(CallError::Full)
        ));
        // a waiting call submits nothing: the call count stays at the two held
        let waiting = spawn_call(calls.clone());
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        // it waits holding the numbering lock (calls keep their order)
        assert!(calls.next.try_lock().is_err());
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(*calls.next.lock().await, 3, "two calls submitted, no more");
        for t in &held {
            t.abort();
        }
        calls.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
