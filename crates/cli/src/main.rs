//! The `byzscale` command-line tool.

mod atum_cmd;
mod aware_cmd;
mod bench_cmd;
mod broadcast_cmd;
mod chaos_cmd;
mod deploy_cmd;
mod dqbft_cmd;
mod lazarus_cmd;
mod memory_cmd;
mod overload_cmd;
mod plot;
mod sim_cmd;
mod tree_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "byzscale",
    version,
    about = "Scalable Byzantine fault-tolerant replication"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster on loopback, run a KV workload, print throughput and latency.
    Cluster(deploy_cmd::ClusterArgs),
    /// Closed- or open-loop KV load; writes bench/results/<name>.json and .svg.
    Bench(bench_cmd::BenchArgs),
    /// ByzCast on loopback against one SMR group at several client counts;
    /// writes bench/results/byzcast-real.json and .svg.
    BenchByzcast(bench_cmd::BenchByzcastArgs),
    /// AT2 against a bank on the SMR core, same nodes and workload; writes
    /// bench/results/<name>.json and .svg.
    BenchAt2(bench_cmd::BenchAt2Args),
    /// Replica memory under a Byzantine peer and client (VmRSS each second);
    /// writes bench/results/memory.json and .svg.
    BenchMemory(memory_cmd::MemoryArgs),
    /// Achieved against offered rate, open loop from a fraction to several
    /// times the closed-loop peak; writes bench/results/overload.json and .svg.
    BenchOverload(overload_cmd::OverloadArgs),
    /// A local cluster under load with random SIGKILLs, restarts and
    /// partitions; checks every acknowledged write and the replicas' logs.
    Chaos(chaos_cmd::ChaosArgs),
    /// Run one replica.
    Node {
        /// The node's TOML file (as written by `byzscale config local`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one command to a deployment, e.g. `byzscale client --config d.toml set k v`.
    Client {
        /// The deployment TOML (or a node file next to it); not needed by
        /// `account new`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Order reads too (default: GET/EXISTS/MGET use the unordered read-only path).
        #[arg(long)]
        ordered: bool,
        /// GET K | SET K V | DEL K.. | EXISTS K.. | INCR K | MGET K.. | MSET K V.. | PING
        /// (KV), or (AT2) ACCOUNT NEW [--out FILE] | TRANSFER --from KEYFILE --to ACCOUNT
        /// AMOUNT | BALANCE ACCOUNT | HISTORY ACCOUNT | ACCOUNT ACCOUNT, where an
        /// ACCOUNT is a public key (64 hex digits) or an account key file
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Generate an identity key file (ed25519 + X25519) and print its public keys;
    /// with --threshold and --members, a trusted dealer's BLS threshold key for a
    /// group instead: OUT is a folder that receives group.key (public) and
    /// share-<i>.key (each member's secret share).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Shares needed for a signature (a Steward site of 3f+1 servers: 2f+1).
        #[arg(long, requires = "members")]
        threshold: Option<usize>,
        /// Members of the group (shares dealt).
        #[arg(long, requires = "threshold")]
        members: Option<usize>,
    },
    /// Generate deployment configurations.
    #[command(subcommand)]
    Config(deploy_cmd::ConfigCommand),
    /// Run protocols in the deterministic simulator with adversaries and checkers.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Byzantine reliable broadcast tools: Contagion parameters, Monte Carlo check.
    #[command(subcommand)]
    Broadcast(broadcast_cmd::BroadcastCommand),
    /// ByzCast overlay trees: optimize for a workload, evaluate, check.
    #[command(subcommand)]
    Tree(tree_cmd::TreeCommand),
    /// AWARE's latency model: the best leader and V_max set for a latency matrix.
    #[command(subcommand)]
    Aware(aware_cmd::AwareCommand),
    /// Atum's parameter guideline: walk length and vgroup robustness.
    #[command(subcommand)]
    Atum(atum_cmd::AtumCommand),
    /// DQBFT/Destiny: the paper's throughput formulas.
    #[command(subcommand)]
    Dqbft(dqbft_cmd::DqbftCommand),
    /// Lazarus: diversity-driven replica-set choice from NVD vulnerability
    /// data, and the 1,000-run study of replica-set strategies.
    #[command(subcommand)]
    Lazarus(lazarus_cmd::LazarusCommand),
}

/// `byzscale sim … --json | head` closes standard output early; `println!`
/// then panics with "failed printing to stdout: Broken pipe". Exit quietly
/// the way a Unix filter does (status 141, killed by SIGPIPE) instead of
/// printing a panic; every other panic keeps the default report.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() {
    quiet_on_broken_pipe();
    // logs go to stderr; silent unless RUST_LOG is set (e.g. RUST_LOG=info)
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r: Result<()> = match cli.cmd {
        Command::Sim(c) => sim_cmd::run(c),
        Command::Tree(c) => tree_cmd::run_tree(c),
        Command::Broadcast(c) => broadcast_cmd::run_broadcast(c),
        Command::Aware(c) => aware_cmd::run_aware(c),
        Command::Atum(c) => atum_cmd::run_atum(c),
        Command::Dqbft(c) => dqbft_cmd::run_dqbft(c),
        Command::Lazarus(c) => lazarus_cmd::run_lazarus(c),
        Command::Cluster(a) => block_on(until_signal(deploy_cmd::cluster(a))),
        Command::Bench(a) => block_on(until_signal(bench_cmd::bench(a))),
        Command::BenchByzcast(a) => block_on(until_signal(bench_cmd::bench_byzcast(a))),
        Command::BenchAt2(a) => block_on(until_signal(bench_cmd::bench_at2(a))),
        Command::BenchMemory(a) => block_on(until_signal(memory_cmd::bench_memory(a))),
        Command::BenchOverload(a) => block_on(until_signal(overload_cmd::bench_overload(a))),
        Command::Chaos(a) => block_on(until_signal(chaos_cmd::chaos(a))),
        Command::Node { config } => block_on(deploy_cmd::node(config)),
        Command::Client {
            config,
            ordered,
            command,
        } => block_on(deploy_cmd::client(config, ordered, command)),
        Command::Keygen {
            out,
            threshold,
            members,
        } => match threshold.zip(members) {
            Some((k, n)) => deploy_cmd::threshold_keygen(out, k, n),
            None => deploy_cmd::keygen(out),
        },
        Command::Config(c) => deploy_cmd::config(c),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

/// Run `f` until it ends or SIGINT/SIGTERM arrives. On a signal `f` is
/// dropped, and with it the local cluster it started: its node processes are
/// killed and its temporary directory removed (unless started with --keep).
async fn until_signal(f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::select! {
        // the handlers are installed before the first node starts
        biased;
        () = byzscale_node::daemon::shutdown_signal() => {
            anyhow::bail!("stopped by a signal; the node processes were stopped and their temporary files removed")
        }
        r = f => r,
    }
}

/// Run `f` on a multi-threaded tokio runtime.
fn block_on(f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?
        .block_on(f)
}
