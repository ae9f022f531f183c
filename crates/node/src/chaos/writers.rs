//! The load of a chaos run of a KV store (SMR, ByzCast): closed-loop writers
//! through the replicas' Redis gateways, each command a SET (or an MSET of
//! keys on several shards) on keys of its own with values of their own, so
//! every acknowledged write can be checked. A writer whose gateway fails (killed,
//! cut off, an error, no answer within 5 s) counts the write as not
//! acknowledged and moves on to the next gateway.

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// What writer `w` writes as its `k`-th command: one `(key, value)` (a SET)
/// or several (an MSET); each key is written once, with its own value.
pub type Keys = Arc<dyn Fn(usize, u64) -> Vec<(String, String)> + Send + Sync>;

/// The keys of an SMR run: `chaos:w:k` set to `seed.w.k`.
pub fn single_keys(seed: u64) -> Keys {
    Arc::new(move |w, k| vec![(format!("chaos:{w}:{k}"), format!("{seed}.{w}.{k}"))])
}

/// Closed-loop tasks (writers of any kind) that run until stopped, each
/// returning what it did.
pub struct Crew<T> {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<T>>,
}

impl<T: Send + 'static> Crew<T> {
    /// Spawn `task(i, stop)` for i in `0..n`; each runs until `stop` is set.
    pub fn start<F, Fut>(n: usize, task: F) -> Crew<T>
    where
        F: Fn(usize, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..n)
            .map(|i| tokio::spawn(task(i, stop.clone())))
            .collect();
        Crew { stop, tasks }
    }

    /// Stop the tasks (what is in flight is abandoned, unacknowledged) and
    /// fold what they did into `all` with `merge`.
    pub async fn finish<A>(self, mut all: A, merge: impl Fn(&mut A, T)) -> A {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            if let Ok(done) = t.await {
                merge(&mut all, done);
            }
        }
        all
    }
}

/// The running writers.
pub struct Writers(Crew<Written>);

/// What the writers did.
#[derive(Default)]
pub struct Written {
    /// Acknowledged `(key, value)` pairs.
    pub acked: Vec<(String, String)>,
    /// Writes without an acknowledgement (they may or may not have taken
    /// effect; nothing is checked about them).
    pub unacked: u64,
    /// Acknowledged commands that wrote several keys (MSETs).
    pub multi_key: u64,
}

impl Writers {
    /// Start `n` writers over the gateways at `gateways` (writer w starts at
    /// gateway w mod len), writing `keys`.
    pub fn start(n: usize, gateways: Vec<String>, keys: Keys) -> Writers {
        Writers(Crew::start(n, |w, stop| {
            write(w, gateways.clone(), keys.clone(), stop)
        }))
    }

    /// Stop the writers and collect what they did.
    pub async fn finish(self) -> Written {
        self.0
            .finish(Written::default(), |all, w| {
                all.acked.extend(w.acked);
                all.unacked += w.unacked;
                all.multi_key += w.multi_key;
            })
            .await
    }
}

async fn connect(addr: &str) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .ok()
}

async fn write(w: usize, gateways: Vec<String>, keys: Keys, stop: Arc<AtomicBool>) -> Written {
    let mut out = Written::default();
    let mut g = w % gateways.len();
    let mut con: Option<MultiplexedConnection> = None;
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            con = connect(&gateways[g]).await;
            if con.is_none() {
                g = (g + 1) % gateways.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let kvs = keys(w, k);
        k += 1;
        let mut cmd = redis::cmd(if kvs.len() == 1 { "SET" } else { "MSET" });
        for (key, value) in &kvs {
            cmd.arg(key).arg(value);
        }
        let r: redis::RedisResult<String> = cmd.query_async(c).await;
        match r {
            Ok(s) if s == "OK" => {
                out.multi_key += u64::from(kvs.len() > 1);
                out.acked.extend(kvs);
            }
            _ => {
                out.unacked += 1;
                con = None;
                g = (g + 1) % gateways.len();
            }
        }
    }
    out
}
