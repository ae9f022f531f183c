//! The pieces of a node process every protocol shares: the output loop that
//! runs until a shutdown signal, and the Redis gateway start-up and shutdown.

use anyhow::{Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::NodeId;
use byzscale_gateway::{BoxFuture, GatewayOptions, KvBackend};
use byzscale_net::Registry;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::info;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
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

/// Hand node `me`'s protocol outputs to `on_output` until a shutdown signal
/// or the end of the runtime's output channel.
pub(crate) async fn serve_outputs<O>(
    me: NodeId,
    outputs: &mut mpsc::Receiver<O>,
    mut on_output: impl FnMut(O),
) {
    let mut stop = Box::pin(shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            o = outputs.recv() => {
                let Some(o) = o else { break };
                on_output(o);
            }
        }
    }
    info!(node = %me, "shutting down");
}

/// A client library the Redis gateway can serve from: it runs KV commands
/// and is stopped after the gateway.
pub(crate) trait KvClient: Send + Sync + 'static {
    /// Run `op` (`read_only`: it may take the unordered read path).
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'_, Result<KvReply, String>>;
    /// The FIFO stream `op` goes into ([`KvBackend::stream`]).
    fn stream(&self, op: &KvOp) -> Option<u64>;
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// The gateway's view of a [`KvClient`].
struct Backend<C>(Arc<C>);

impl<C: KvClient> KvBackend for Backend<C> {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        let c = self.0.clone();
        Box::pin(async move { c.exec(op, read_only).await })
    }
    fn stream(&self, op: &KvOp) -> Option<u64> {
        self.0.stream(op)
    }
}

/// A running Redis gateway in front of its client.
pub(crate) struct Gateway<C: KvClient> {
    client: Arc<C>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl<C: KvClient> Gateway<C> {
    /// Bind node `me`'s Redis gateway on `addr`, then connect its client and
    /// serve, adding its command and protocol-error counts to `reg`'s
    /// metrics once a second.
    pub(crate) async fn start(
        me: NodeId,
        addr: &str,
        opts: GatewayOptions,
        reg: &Registry,
        connect: impl std::future::Future<Output = Result<C>>,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Redis gateway on {addr}"))?;
        let client = Arc::new(connect.await?);
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
        let (stop, stop_rx) = watch::channel(false);
        let backend: Arc<dyn KvBackend> = Arc::new(Backend(client.clone()));
        let task = tokio::spawn(byzscale_gateway::serve(listener, backend, opts, stop_rx));
        Ok(Gateway { client, stop, task })
    }

    /// Stop serving, then stop the client.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.client.stop().await;
    }
}
