//! `vlexivo pay`: curl for paid APIs. Shows the price, pays within `--max-price`, prints the
//! response body and the receipt.

use std::path::PathBuf;

/// `vlexivo pay URL [-X METHOD] [-H 'K: V']... [-d BODY] [--max-price P] [--wallet-key KEY] [--json]`
#[derive(clap::Args, Debug, Clone)]
pub struct PayArgs {
    /// Absolute http(s) URL of the paid API.
    pub url: String,
    /// HTTP method (default GET, or POST when a body is given).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// Request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Request body; "@file" reads a file, "@-" stdin.
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,
    /// Refuse to pay more than this per call (decimal, e.g. 0.01).
    #[arg(long, value_name = "PRICE")]
    pub max_price: Option<String>,
    /// Payer wallet key (0x + 64 hex).
    #[arg(long, env = "VLEXIVO_WALLET_KEY", hide_env_values = true, value_name = "KEY")]
    pub wallet_key: Option<String>,
    /// Only pay through this facilitator (default: the one the challenge names).
    #[arg(long, env = "VLEXIVO_FACILITATOR_URL", value_name = "URL")]
    pub facilitator: Option<String>,
    /// Top up the wallet (sandbox faucet) by this amount first if it cannot cover the price.
    #[arg(long, value_name = "AMOUNT")]
    pub top_up: Option<String>,
    /// Print one JSON object (status, price, receipt, body) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the response status line and headers (like curl -i).
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Write the body to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_OTHER: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_OVER_MAX_PRICE: i32 = 3;
pub const EXIT_INSUFFICIENT_FUNDS: i32 = 4;
pub const EXIT_FACILITATOR_UNAVAILABLE: i32 = 5;

pub async fn run(args: PayArgs) -> i32 {
    let _ = args;
    eprintln!("vlexivo pay: not implemented yet");
    EXIT_OTHER
}
