//! `vlexivo`: the facilitator service and the command line.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "vlexivo",
    version,
    about = "Vlexivo: HTTP 402 per-call API payments",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the facilitator (payment service). Prints VLEXIVO_URL=… on stdout when ready.
    Serve(cli::ServeArgs),
    /// Onboard and inspect providers.
    #[command(subcommand)]
    Provider(cli::ProviderCmd),
    /// Payer wallets: create, balance, sandbox top-up.
    #[command(subcommand)]
    Wallet(cli::WalletCmd),
    /// Check a facilitator database.
    #[command(subcommand)]
    Ledger(cli::LedgerCmd),
    /// Call a paid API: show the price, pay within --max-price, print the response.
    Pay(vlexivo_facilitator::pay::PayArgs),
    /// The whole product on loopback in a few seconds.
    Demo(vlexivo_facilitator::demo::DemoArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        // Pure local work: no runtime needed.
        Command::Ledger(cmd) => cli::ledger(cmd),
        cmd => {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            rt.block_on(async move {
                match cmd {
                    Command::Serve(a) => cli::serve(a).await,
                    Command::Provider(c) => cli::provider(c).await,
                    Command::Wallet(c) => cli::wallet(c).await,
                    Command::Pay(a) => vlexivo_facilitator::pay::run(a).await,
                    Command::Demo(a) => vlexivo_facilitator::demo::run(a).await,
                    Command::Ledger(_) => unreachable!("handled above"),
                }
            })
        }
    };
    std::process::exit(code);
}
