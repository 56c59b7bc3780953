//! `vlexivo`: the facilitator service and the command line.

mod cli;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use vlexivo_core::envvars;

#[derive(Parser, Debug)]
#[command(
    name = "vlexivo",
    version,
    about = "Vlexivo: HTTP 402 per-call API payments",
    propagate_version = true,
    after_help = vlexivo_facilitator::exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
    #[command(flatten)]
    tls: vlexivo_facilitator::pay::TlsArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the facilitator (payment service). Prints VLEXIVO_URL=… on stdout when ready.
    #[command(after_help = vlexivo_facilitator::exit::HELP)]
    Serve(cli::ServeArgs),
    /// Onboard and inspect providers.
    #[command(subcommand, after_help = vlexivo_facilitator::exit::HELP)]
    Provider(cli::ProviderCmd),
    /// Payer wallets: create, balance, sandbox top-up.
    #[command(subcommand, after_help = vlexivo_facilitator::exit::HELP)]
    Wallet(cli::WalletCmd),
    /// Check a facilitator database.
    #[command(subcommand, after_help = vlexivo_facilitator::exit::HELP)]
    Ledger(cli::LedgerCmd),
    /// The facilitator's keys at rest: rotate the signing key.
    #[command(subcommand, after_help = vlexivo_facilitator::exit::HELP)]
    Keys(cli::KeysCmd),
    /// Live mode, for providers: check on chain that a transaction hash pays the amount from the
    /// payer to the payout address in the token (its receipt and Transfer log, over JSON-RPC).
    #[command(after_help = vlexivo_facilitator::exit::HELP)]
    VerifyPayment(cli::VerifyPaymentArgs),
    /// Call a paid API: show the price, pay within --max-price, print the response.
    #[command(after_help = vlexivo_facilitator::exit::HELP)]
    Pay(vlexivo_facilitator::pay::PayArgs),
    /// The whole product on loopback in a few seconds.
    Demo(vlexivo_facilitator::demo::DemoArgs),
    /// Print a shell completion script: `vlexivo completions bash > /etc/bash_completion.d/vlexivo`
    /// (zsh: into a directory of $fpath as `_vlexivo`; fish: ~/.config/fish/completions/vlexivo.fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Point each argument that reads a `VLX_*` variable at the older alias the user set instead
/// (core's table), so `VLEXIVO_WALLET_KEY` still works and `--help` shows the new names.
fn read_env_aliases(cmd: clap::Command, conflict: &mut Option<String>) -> clap::Command {
    let found: Vec<(clap::Id, &'static str)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let var = envvars::by_name(a.get_env()?.to_str()?)?;
            match var.lookup(|n| std::env::var(n).ok()) {
                Ok(Some((name, _))) if name != var.name => Some((a.get_id().clone(), name)),
                Ok(_) => None,
                Err(e) => {
                    conflict.get_or_insert(e.to_string());
                    None
                }
            }
        })
        .collect();
    let mut cmd = found.into_iter().fold(cmd, |c, (id, name)| c.mut_arg(id, |a| a.env(name)));
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, |sub| read_env_aliases(sub, conflict));
    }
    cmd
}

fn main() {
    let mut conflict = None;
    let matches = read_env_aliases(Cli::command(), &mut conflict).get_matches();
    if let Some(why) = conflict {
        eprintln!("error: config_invalid: {why}");
        std::process::exit(2);
    }
    let Cli { cmd, tls } = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let code = match cmd {
        // Pure local work: no runtime needed.
        Command::Ledger(cmd) => cli::ledger(cmd),
        Command::Keys(cmd) => cli::keys(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vlexivo", &mut std::io::stdout());
            vlexivo_facilitator::exit::OK
        }
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
                    Command::Provider(c) => cli::provider(c, &tls).await,
                    Command::Wallet(c) => cli::wallet(c, &tls).await,
                    Command::Pay(a) => vlexivo_facilitator::pay::run(a, &tls).await,
                    Command::VerifyPayment(a) => cli::verify_payment(a).await,
                    Command::Demo(a) => vlexivo_facilitator::demo::run(a).await,
                    Command::Ledger(_) | Command::Keys(_) | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `vlexivo serve` and every global flag can come from the environment, by a
    /// name in core's table.
    #[test]
    fn every_serve_flag_reads_a_table_variable() {
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        let args = serve.get_arguments().chain(cmd.get_arguments());
        for a in args.filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
            let env = a.get_env().unwrap_or_else(|| panic!("--{} has no environment variable", a.get_id()));
            let env = env.to_str().unwrap();
            assert!(
                envvars::by_name(env).is_some_and(|v| v.name == env),
                "--{}: {env} is not in the table",
                a.get_id()
            );
        }
    }
}
