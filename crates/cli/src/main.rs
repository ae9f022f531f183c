//! The `byzscale` command-line tool.

mod at2_cmd;
mod at2_deploy;
mod bench;
mod byzcast_cmd;
mod byzcast_deploy;
mod cluster;
mod deploy;
mod node;
mod plot;
mod sim_cmd;
mod smr_client;

use anyhow::{bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::crypto::Identity;
use byzscale_core::GroupId;
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
    Cluster(cluster::ClusterArgs),
    /// Closed- or open-loop KV load; writes bench/results/<name>.json and .svg.
    Bench(bench::BenchArgs),
    /// ByzCast on loopback against one SMR group at several client counts;
    /// writes bench/results/byzcast-real.json and .svg.
    BenchByzcast(byzcast_deploy::FigureArgs),
    /// AT2 against a bank on the SMR core, same nodes and workload; writes
    /// bench/results/<name>.json and .svg.
    BenchAt2(at2_deploy::BenchAt2Args),
    /// Run one replica.
    Node {
        /// The node's TOML file (as written by `byzscale config local`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one KV command to a deployment, e.g. `byzscale client --config d.toml set k v`.
    Client {
        /// The deployment TOML (or a node file next to it).
        #[arg(long)]
        config: PathBuf,
        /// Order reads too (default: GET/EXISTS/MGET use the unordered read-only path).
        #[arg(long)]
        ordered: bool,
        /// GET K | SET K V | DEL K.. | EXISTS K.. | INCR K | MGET K.. | MSET K V.. | PING
        /// (KV), or TRANSFER FROM TO AMOUNT | BALANCE ACCOUNT | HISTORY ACCOUNT (AT2)
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Generate an identity key file (ed25519 + X25519) and print its public keys.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate deployment configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run protocols in the deterministic simulator with adversaries and checkers.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Byzantine reliable broadcast tools: Contagion parameters, Monte Carlo check.
    #[command(subcommand)]
    Broadcast(at2_cmd::BroadcastCommand),
    /// ByzCast overlay trees: optimize for a workload, evaluate, check.
    #[command(subcommand)]
    Tree(byzcast_cmd::TreeCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Keys, deployment.toml and one node-<i>.toml per replica.
    Local {
        #[arg(long, default_value_t = 4)]
        replicas: usize,
        /// Faults tolerated [default: (N-1)/3; spare replicas get WHEAT weights].
        #[arg(long)]
        faulty: Option<usize>,
        #[arg(long)]
        out: PathBuf,
        /// First port: replica i listens on base+i, metrics on base+100+i, Redis on base+200+i.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// A file with one host per line (replica i goes to host i mod lines)
        /// for a multi-host deployment; default 127.0.0.1.
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
}

fn main() {
    // logs go to stderr; silent unless RUST_LOG is set (e.g. RUST_LOG=info)
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r: Result<()> = match cli.cmd {
        Command::Sim(c) => sim_cmd::run(c),
        Command::Tree(c) => byzcast_cmd::run_tree(c),
        Command::Broadcast(c) => at2_cmd::run_broadcast(c),
        Command::Cluster(a) => runtime().and_then(|rt| rt.block_on(cluster::run(a))),
        Command::Bench(a) => runtime().and_then(|rt| rt.block_on(bench::run(a))),
        Command::BenchByzcast(a) => runtime().and_then(|rt| rt.block_on(byzcast_deploy::figure(a))),
        Command::BenchAt2(a) => runtime().and_then(|rt| rt.block_on(at2_deploy::bench(a))),
        Command::Node { config } => runtime().and_then(|rt| rt.block_on(node::run(&config))),
        Command::Client {
            config,
            ordered,
            command,
        } => runtime().and_then(|rt| rt.block_on(client(config, ordered, command))),
        Command::Keygen { out } => keygen(out),
        Command::Config(ConfigCommand::Local {
            replicas,
            faulty,
            out,
            base_port,
            hosts,
        }) => config_local(replicas, faulty, out, base_port, hosts),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

fn keygen(out: PathBuf) -> Result<()> {
    if out.exists() {
        bail!("{} exists; refusing to overwrite a key", out.display());
    }
    let id = Identity::generate();
    std::fs::write(&out, hex::encode(id.to_bytes()))
        .with_context(|| format!("writing {}", out.display()))?;
    let p = id.public();
    println!(
        "sign_key = \"{}\"\ndh_key = \"{}\"",
        hex::encode(p.sign),
        hex::encode(p.dh)
    );
    Ok(())
}

fn config_local(
    replicas: usize,
    faulty: Option<usize>,
    out: PathBuf,
    base_port: u16,
    hosts: Option<PathBuf>,
) -> Result<()> {
    let f = faulty.unwrap_or(replicas.saturating_sub(1) / 3);
    let hosts = match hosts {
        Some(p) => {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let h: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if h.is_empty() {
                bail!("{} lists no hosts", p.display());
            }
            h
        }
        None => vec!["127.0.0.1".into()],
    };
    if base_port as usize + 200 + replicas > u16::MAX as usize {
        bail!("--base-port {base_port} leaves no room for {replicas} replicas");
    }
    deploy::generate(
        &out,
        replicas,
        f,
        &deploy::Ports {
            hosts,
            base: base_port,
        },
    )?;
    println!(
        "wrote {} (deployment.toml, node-<i>.toml, node-<i>.key); start each with:",
        out.display()
    );
    for i in 0..replicas {
        println!(
            "  byzscale node --config {}",
            out.join(format!("node-{i}.toml")).display()
        );
    }
    Ok(())
}

async fn client(config: PathBuf, ordered: bool, command: Vec<String>) -> Result<()> {
    if at2_deploy::is_at2_command(&command) {
        return at2_deploy::client(&config, &command).await;
    }
    if let Some((dep, topo)) = byzcast_deploy::client_topology(&config)? {
        return byzcast_deploy::client(&dep, topo, &command).await;
    }
    let dep = match deploy::load_deployment(&config) {
        Ok(d) => d,
        Err(_) => deploy::NodeFile::load(&config)?.deployment,
    };
    let op = KvOp::from_args(&command).map_err(|e| anyhow::anyhow!(e))?;
    let ro = op.is_read_only() && !ordered;
    let c = smr_client::SmrClient::connect(&dep, GroupId(0), byzscale_smr::Params::default(), 1)
        .await?;
    let r = tokio::time::timeout(std::time::Duration::from_secs(15), c.call(op.encode(), ro))
        .await
        .context("no reply from the replicas within 15 s")??;
    c.stop().await;
    match KvReply::decode(&r) {
        Ok(KvReply::Error(e)) => bail!("{e}"),
        Ok(reply) => println!("{reply}"),
        Err(e) => bail!("undecodable reply: {e}"),
    }
    Ok(())
}
