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
    let cli = Cli::parse();
    let r: Result<()> = match cli.cmd {
        Command::Sim(c) => sim_cmd::run(c),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
