//! A Redis-protocol gateway over an in-memory, unreplicated KV store, for trying the
//! gateway with `redis-cli` / `redis-benchmark` without a cluster:
//!
//! ```text
//! cargo run --release -p byzscale-gateway --example memory_gateway -- 127.0.0.1:6390 [delay_us]
//! redis-cli -p 6390 set k v
//! redis-benchmark -p 6390 -t set,get -n 100000 -P 16 -r 1000 -q
//! ```
//!
//! `delay_us` makes every backend call's reply wait that long (default 0), which is a
//! crude stand-in for a replication round trip and shows what pipelining buys.
//! Stops on Ctrl-C and prints the gateway's counters.

use std::sync::Arc;
use std::time::Duration;

use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_gateway::{serve, BoxFuture, GatewayOptions, KvBackend, MemoryBackend};

struct Delayed {
    inner: MemoryBackend,
    delay: Duration,
}

impl KvBackend for Delayed {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        if self.delay.is_zero() {
            return self.inner.exec(op, read_only);
        }
        let call = self.inner.exec(op, read_only);
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            call.await
        })
    }

    /// The op takes effect in `exec`; only the reply is delayed.
    fn stream(&self, op: &KvOp) -> Option<u64> {
        self.inner.stream(op)
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6390".to_string());
    let delay_us: u64 = args.next().and_then(|d| d.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("memory gateway on {}", listener.local_addr()?);
    let backend = Arc::new(Delayed {
        inner: MemoryBackend::new(),
        delay: Duration::from_micros(delay_us),
    });
    let opts = GatewayOptions::default();
    let stats = opts.stats();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    serve(listener, backend, opts, stop).await?;
    eprintln!("{:?}", stats.snapshot());
    Ok(())
}
