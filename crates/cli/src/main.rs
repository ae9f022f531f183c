//! The `byzscale` command-line tool.

mod sim_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "byzscale", version, about = "Scalable Byzantine fault-tolerant replication")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run protocols in the deterministic simulator with adversaries and checkers.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
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
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
