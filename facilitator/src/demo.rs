//! `vlexivo demo`: the whole product on loopback in a few seconds — a facilitator, a provider's
//! paid API (flat, per-model and per-data-range prices) and an agent with auto top-up.

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct DemoArgs {
    /// Keep the demo's SQLite files in this directory (default: a temporary one, removed after).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Less output: only the summary and the ledger check.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs the demo; 0 when every step behaved as expected.
pub async fn run(args: DemoArgs) -> i32 {
    let _ = args;
    eprintln!("vlexivo demo: not implemented yet");
    1
}
