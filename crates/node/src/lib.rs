//! byzscale-node: running byzscale's protocols as processes. The protocol
//! crates are sans-IO state machines and `byzscale-net` drives one of them
//! over TCP; this crate makes whole nodes, deployments and clients out of
//! them. The `byzscale` binary is a thin shell around it (`node`, `cluster`,
//! `client`, `config local`, `bench*`).
//!
//! Modules, top down:
//!
//! - [`dispatch`]: the one dispatcher, [`run_node`] (`byzscale node`),
//!   [`start_cluster`] (`byzscale cluster`) and [`run_client_command`]
//!   (`byzscale client`);
//! - [`protocols`]: one module per protocol ([`protocols::smr`],
//!   [`protocols::byzcast`], [`protocols::at2`], [`protocols::bank`]), each
//!   with its node process, client library, workload and cluster report;
//! - [`cluster`]: what a local cluster run takes ([`ClusterSpec`]) and gives
//!   ([`ClusterOutcome`], the one report printer);
//! - [`launcher`]: node processes on loopback (ports, directories, waiting
//!   until they listen, SIGKILL and restart, clean-up), or in one network
//!   namespace each ([`netns`], for real partitions);
//! - [`chaos`]: `byzscale chaos`, a cluster under SIGKILLs, restarts and
//!   partitions, checked at the end;
//! - [`load`]: the closed- and open-loop load generator with latency
//!   histograms;
//! - [`daemon`]: what every node process shares (the output loop until a
//!   shutdown signal, the Redis gateway); [`persist`]: the redb store,
//!   recovery and the group-commit persister of `Effect::Persist` records;
//! - [`node_file`]: node files and their per-protocol sections;
//!   [`generate`]: deployment generation (`byzscale config local`);
//! - `calls`: the plumbing under every client library.
//!
//! Errors are `anyhow` errors with context: this crate sits at the process
//! boundary (files, sockets, child processes), where the message is the
//! product.
//!
//! # Client libraries
//!
//! [`SmrClient`], [`ByzcastClient`] and [`At2Client`] connect a fresh
//! client identity to a deployment and may be shared by many tasks, each
//! awaiting its own answer:
//!
//! ```no_run
//! use byzscale_apps::kv::KvOp;
//! use byzscale_at2::{Account, ClientOp};
//! use byzscale_core::GroupId;
//! use byzscale_node::{load_deployment, At2Client, ByzcastClient, SmrClient};
//! use std::path::Path;
//! use std::time::Duration;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! // one SMR group serving the KV store
//! let dep = load_deployment(Path::new("deploy/deployment.toml"))?;
//! let smr = SmrClient::connect(&dep, GroupId(0), byzscale_smr::Params::default(), 16).await?;
//! let set = KvOp::Set(b"greeting".to_vec(), b"hello".to_vec());
//! println!("{}", smr.kv(&set, false).await?);
//! smr.stop().await;
//!
//! // a KV store sharded over a ByzCast tree
//! let tree = Path::new("bc/deployment.toml");
//! if let Some((dep, topo)) = byzscale_node::protocols::byzcast::client_topology(tree)? {
//!     let bc = ByzcastClient::connect(&dep, topo, byzscale_smr::Params::default()).await?;
//!     let mset = KvOp::MSet(vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
//!     println!("{}", bc.kv(&mset).await?); // one atomic multicast across shards
//!     bc.stop().await;
//! }
//!
//! // AT2: an account's owner signs its transfers; any node takes them
//! let dep = load_deployment(Path::new("at2/deployment.toml"))?;
//! let node = byzscale_node::protocols::at2::members(&dep)[0];
//! let at2 = At2Client::connect(&dep).await?;
//! let key = byzscale_node::protocols::at2::read_account_key(Path::new("alice.key"))?;
//! let to = Account::from_hex(&"ab".repeat(32)).map_err(anyhow::Error::msg)?;
//! println!("{:?}", at2.transfer(node, &key, to, 5, Duration::from_secs(10)).await?);
//! println!("{:?}", at2.call(node, ClientOp::Balance(to), Duration::from_secs(10)).await?);
//! at2.stop().await;
//! # Ok(()) }
//! ```

mod calls;
pub mod chaos;
pub mod cluster;
pub mod daemon;
pub mod dispatch;
pub mod generate;
pub mod launcher;
pub mod load;
pub mod netns;
pub mod node_file;
pub mod persist;
pub mod protocols;

pub use calls::CallError;
pub use cluster::{ClusterOutcome, ClusterSpec};
pub use dispatch::{run_client_command, run_node, start_cluster};
pub use generate::{LocalConfig, Ports};
pub use launcher::Local;
pub use load::{LoadResult, LoadSpec, LoadSummary};
pub use node_file::{
    deployment_of, load_deployment, At2Broadcast, At2Settings, ByzcastSection, LoadedNode,
    NodeFile, NodeProtocol, SmrService, StewardSection,
};
pub use protocols::at2::At2Client;
pub use protocols::byzcast::ByzcastClient;
pub use protocols::smr::SmrClient;
pub use protocols::steward::StewardClient;
