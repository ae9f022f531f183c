//! byzscale-net: the tokio runtime that drives any sans-IO
//! [`Protocol`](byzscale_core::Protocol) over real TCP.
//!
//! - [`transport`]: TCP listener and dialers, framed with the core codec's header,
//!   ed25519-authenticated handshake, per-frame HMAC-SHA256 with replay counters,
//!   per-peer queues bounded in frames and bytes (bulk dropped before control),
//!   reconnect with backoff and jitter.
//! - [`wire`]: what a peer sends, decoded and checked without I/O (the
//!   handshake as a state machine, sealed frames, messages); the transport's
//!   connection tasks and the fuzz targets call the same functions.
//! - [`delay`]: the optional WAN delay shim (one-way latency matrix + jitter,
//!   applied in userspace to outgoing frames).
//! - [`runtime`]: [`Runtime`] / [`run_protocol`]: one task owns the protocol,
//!   feeds it messages, inputs and timers, and applies its effects.
//! - [`storage`]: durable log, snapshot and metadata in redb, with recovery.
//! - [`metrics`]: atomic counters, gauges and histograms with a Prometheus
//!   text-format endpoint.
//!
//! Limitations (deliberate, for now):
//! - Replica links drop queued frames (oldest bulk first) when a peer's queue
//!   is over its bound; protocols must retransmit (they do: timers and client
//!   retries).
//! - A client id unknown to the deployment is bound to the first key that
//!   authenticates for it, for the life of the process; nothing ties the id to
//!   the key (derive ids from keys, or list clients, if squatting matters).
//!   The id-to-key bindings are never freed (client queues are: they go with
//!   the client's last connection).
//! - Client keys are learned per replica at handshake: a replica that never had
//!   a connection from a client cannot verify that client's MACs.
//! - All peers share one bounded inbound channel and one inbound byte budget
//!   (FIFO-fair among readers), not per-peer quotas: many connections
//!   announcing large frames delay the others' frames (by at most the frame
//!   timeout each) but cannot grow memory past the budget.
//! - [`Storage`] calls block on fsync: call them from `spawn_blocking` or a
//!   dedicated thread, never from the protocol task directly.
//! - The delay shim adds latency at the sender only; it models no bandwidth.
//!
//! Wiring a node (errors elided):
//!
//! ```no_run
//! # use byzscale_net::*;
//! # use byzscale_core::{config::Deployment, NodeId, Protocol};
//! # async fn node<P: Runnable>(protocol: P, toml: &str, key: &str, delay: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
//! let deployment = Deployment::from_toml(toml)?;
//! let identity = read_identity(key)?;
//! let mut cfg = NodeConfig::replica(&deployment, NodeId(0), identity, byzscale_core::WireKind::Smr.byte())?;
//! if let Some(path) = delay {
//!     cfg = cfg.with_delay(DelayMatrix::from_file(path)?);
//! }
//! let (runtime, mut outputs) = Runtime::start(protocol, cfg).await?;
//! let handle = runtime.handle(); // submit inputs, stop
//! while let Some(out) = outputs.recv().await {
//!     println!("{out:?}");
//! }
//! runtime.stop().await?;
//! # Ok(()) }
//! ```

pub mod delay;
pub mod metrics;
pub mod runtime;
pub mod storage;
pub mod transport;
pub mod wire;

pub use delay::{DelayError, DelayMatrix};
pub use metrics::{Counter, Gauge, Histogram, Registry};
pub use runtime::{
    run_protocol, NodeConfig, Portable, RecordSink, Runnable, Runtime, RuntimeHandle, Stopped,
    Wiring,
};
pub use storage::{Batch, Recovered, Storage, StorageError};
pub use transport::{
    Inbound, PeerConfig, RawConnection, Transport, TransportConfig, TransportOptions,
};

use byzscale_core::config::ConfigError;
use byzscale_core::crypto::{CryptoError, Identity};
use byzscale_core::Addr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Deployment(#[from] ConfigError),
    #[error("bad public key for {addr}: {source}")]
    Key {
        addr: Addr,
        #[source]
        source: CryptoError,
    },
    #[error("key file {path}: {detail}")]
    KeyFile { path: String, detail: String },
    #[error(transparent)]
    Delay(#[from] DelayError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("runtime task failed: {0}")]
    Task(String),
}

/// Read a secret identity from a key file: either the 64 raw bytes of
/// [`Identity::to_bytes`] or those bytes as 128 hex digits (surrounding
/// whitespace ignored).
pub fn read_identity(path: impl AsRef<Path>) -> Result<Identity, NetError> {
    let path = path.as_ref();
    let err = |detail: String| NetError::KeyFile {
        path: path.display().to_string(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    parse_identity(&bytes).map_err(err)
}

/// Parse key-file contents (raw 64 bytes or 128 hex digits).
pub fn parse_identity(bytes: &[u8]) -> Result<Identity, String> {
    if let Ok(raw) = <[u8; 64]>::try_from(bytes) {
        if !raw.iter().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Identity::from_bytes(&raw));
        }
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| "neither 64 raw bytes nor hex text".to_string())?;
    let v = hex::decode(text.trim()).map_err(|e| format!("not valid hex: {e}"))?;
    let raw: [u8; 64] = v
        .try_into()
        .map_err(|v: Vec<u8>| format!("expected 64 secret bytes, got {}", v.len()))?;
    Ok(Identity::from_bytes(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_raw_and_hex() {
        let id = Identity::from_seed([3; 32]);
        let raw = id.to_bytes();
        assert_eq!(parse_identity(&raw).unwrap().public(), id.public());
        let hex_text = format!("{}\n", hex::encode(raw));
        assert_eq!(
            parse_identity(hex_text.as_bytes()).unwrap().public(),
            id.public()
        );
        assert!(parse_identity(b"abcd")
            .err()
            .unwrap()
            .contains("expected 64"));
        let dir = tempfile::tempdir().unwrap();
        let e = read_identity(dir.path().join("missing.key"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.key"), "{e}");
    }
}
