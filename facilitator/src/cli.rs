//! The `serve`, `provider`, `wallet` and `ledger` commands of the `vlexivo` CLI.
//!
//! Human output by default, one JSON object with `--json`. Errors go to stderr as
//! `error: <code>: <message>`; exit codes: `vlexivo_facilitator::exit`.

use clap::{Args, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use vlexivo_client::tls;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::envvars;
use vlexivo_core::paywall::DEFAULT_FACILITATOR_URL;
use vlexivo_core::wallet::{Address, Wallet};
use vlexivo_facilitator::exit;
use vlexivo_facilitator::pay::TlsArgs;
use vlexivo_facilitator::server::types::{
    CreateProviderRequest, ErrorBody, PaymentList, ProviderCreated, ProviderInfo, TopUpReceipt, WalletBalance,
};
use vlexivo_facilitator::server::{self, ServerConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Alg {
    #[value(name = "HS256", alias = "hs256")]
    Hs256,
    #[value(name = "EdDSA", alias = "eddsa")]
    EdDsa,
}

impl Alg {
    fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sync {
    Full,
    Normal,
}

/// `vlexivo serve`
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Listen address; port 0 picks a free port (printed as VLEXIVO_URL=… on stdout).
    #[arg(long, env = envvars::ADDR.name, default_value = server::DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// The ledger: a SQLite file (created and migrated if needed), or a PostgreSQL URL
    /// (`postgres://user@host/db`) that several facilitators may share.
    #[arg(long, env = envvars::DB.name, default_value = "./vlexivo.db", hide_env_values = true)]
    pub db: String,
    /// Most a sandbox wallet may receive from the faucet in total (decimal usd).
    #[arg(long, env = envvars::FAUCET_CAP.name, value_name = "AMOUNT", default_value = server::DEFAULT_FAUCET_CAP)]
    pub faucet_cap: String,
    /// Proof-token algorithm for providers that do not choose one.
    #[arg(long, env = envvars::TOKEN_ALG.name, value_enum, default_value = "HS256")]
    pub token_alg: Alg,
    /// The URL payers reach this facilitator at (default: the bound URL). Challenges must name
    /// it (providers configure it as their facilitator URL); it is also the tokens' `iss`.
    #[arg(long, env = envvars::PUBLIC_URL.name, value_name = "URL")]
    pub public_url: Option<String>,
    /// When a payment is acknowledged: `full` after an fsync of the ledger (survives power
    /// loss), `normal` once committed to the OS (survives a killed process; lower latency).
    #[arg(long, env = envvars::SYNCHRONOUS.name, value_enum, default_value = "full")]
    pub synchronous: Sync,
    /// PostgreSQL: seconds a write keeps retrying while the database is unreachable before it
    /// is answered facilitator_unavailable (503).
    #[arg(long, env = envvars::DB_RETRY_SECS.name, value_name = "SECS", default_value_t = 10.0)]
    pub db_retry_secs: f64,
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, env = envvars::LOG_FORMAT.name, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Serve HTTPS with this PEM certificate chain (and --tls-key); plain HTTP without, for
    /// loopback or behind a TLS-terminating proxy.
    #[arg(long, env = envvars::TLS_CERT.name, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = envvars::TLS_KEY.name, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Web origins browsers may call the payer endpoints (payments, wallets, JWKS, OpenAPI)
    /// from: `*`, `none`, or comma-separated `https://app.example.com` origins.
    #[arg(long, env = envvars::CORS_ORIGINS.name, value_name = "ORIGINS", default_value = "*",
          value_parser = |s: &str| server::CorsOrigins::parse(s).map_err(|e| e.to_string()))]
    pub cors_origins: server::CorsOrigins,
    /// Most requests served at once (default: 256 per CPU); past it a request is answered at
    /// once with 503 facilitator_overloaded and Retry-After instead of queueing. 0: no limit.
    /// /healthz, /readyz and /metrics are always served.
    #[arg(long, env = envvars::MAX_IN_FLIGHT.name, value_name = "N")]
    pub max_in_flight: Option<usize>,
    #[command(flatten)]
    pub master_key: MasterKeyArg,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Args, Debug, Clone)]
pub struct MasterKeyArg {
    /// Seals the providers' derived keys and the signing key in the database (64 hex digits:
    /// `openssl rand -hex 32`). Without it they are stored plain, for a sandbox only.
    #[arg(long, env = envvars::MASTER_KEY.name, value_name = "KEY", hide_env_values = true)]
    pub master_key: Option<String>,
}

impl MasterKeyArg {
    fn parse(&self) -> Result<Option<std::sync::Arc<server::at_rest::MasterKey>>, Fail> {
        self.master_key
            .as_deref()
            .map(|k| server::at_rest::MasterKey::parse(k).map(std::sync::Arc::new))
            .transpose()
            .map_err(|e| Fail::usage(format!("{}: {e}", e.code())))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Sandbox,
    Live,
}

/// Live mode: where and how `vlexivo serve` settles.
#[derive(Args, Debug, Clone)]
pub struct LiveArgs {
    /// `sandbox` (the ledger simulates settlement) or `live` (EIP-3009 transfers on an EVM chain;
    /// needs --rpc-url, --asset and --relayer-key).
    #[arg(long, env = envvars::MODE.name, value_enum, default_value = "sandbox")]
    pub mode: ModeArg,
    /// Live: the chain's JSON-RPC URL.
    #[arg(long, env = envvars::RPC_URL.name, value_name = "URL", hide_env_values = true)]
    pub rpc_url: Option<String>,
    /// Live: the EIP-3009 token contract (USDC) to settle in.
    #[arg(long, env = envvars::ASSET.name, value_name = "ADDRESS")]
    pub asset: Option<String>,
    /// Live: the relayer's private key; it pays gas and never holds payments.
    #[arg(long, env = envvars::RELAYER_KEY.name, value_name = "KEY", hide_env_values = true)]
    pub relayer_key: Option<String>,
    /// Live: blocks before a proof is issued; 0 issues it once the node accepted the transfer
    /// (the amount stays reserved and the settlement is followed to completion).
    #[arg(long, env = envvars::CONFIRMATIONS.name, default_value_t = 0)]
    pub confirmations: u64,
    /// Live: how often receipts and blocks are polled, in milliseconds.
    #[arg(long, env = envvars::POLL_MS.name, value_name = "MS", default_value_t = 250)]
    pub poll_ms: u64,
    /// Live: relay the payments arriving within this many milliseconds of each other in one
    /// Multicall3 `aggregate3` transaction (each call may fail alone); 0 relays each on its own.
    #[arg(long, env = envvars::BATCH_WINDOW_MS.name, value_name = "MS", default_value_t = 0)]
    pub batch_window_ms: u64,
    /// Live: most payments in one batched relay.
    #[arg(long, env = envvars::BATCH_MAX.name, value_name = "N", default_value_t = 50)]
    pub batch_max: usize,
    /// Live: the Multicall3 contract batched relays go through (its usual address by default).
    #[arg(long, env = envvars::MULTICALL.name, value_name = "ADDRESS", default_value = MULTICALL3_ADDRESS)]
    pub multicall: String,
}

/// Where Multicall3 is deployed on most EVM chains.
pub const MULTICALL3_ADDRESS: &str = "0xcA11bde05977b3631167028862bE2a173976CA11";

impl LiveArgs {
    /// The live configuration, or `None` in sandbox mode.
    pub fn config(&self) -> Result<Option<server::live::LiveConfig>, String> {
        if self.mode == ModeArg::Sandbox {
            return Ok(None);
        }
        let need = |v: &Option<String>, flag: &str, var: &str| {
            v.clone().ok_or_else(|| format!("config_invalid: live mode needs {flag} (or {var})"))
        };
        let rpc_url = need(&self.rpc_url, "--rpc-url", envvars::RPC_URL.name)?;
        let asset = need(&self.asset, "--asset", envvars::ASSET.name)?;
        let relayer_key = need(&self.relayer_key, "--relayer-key", envvars::RELAYER_KEY.name)?;
        let token = Address::parse(&asset).map_err(|e| format!("{}: --asset: {e}", e.code()))?;
        Ok(Some(server::live::LiveConfig {
            chain: vlexivo_live::ChainConfig {
                rpc_url,
                token,
                relayer_key,
                poll: std::time::Duration::from_millis(self.poll_ms.clamp(10, 60_000)),
            },
            confirmations: self.confirmations,
            confirm_timeout: std::time::Duration::from_secs(120),
            batch: match self.batch_window_ms {
                0 => None,
                ms => Some(server::live::BatchConfig {
                    multicall: Address::parse(&self.multicall)
                        .map_err(|e| format!("{}: --multicall: {e}", e.code()))?,
                    window: std::time::Duration::from_millis(ms.min(60_000)),
                    max: self.batch_max.clamp(1, 1_000),
                }),
            },
        }))
    }
}

#[derive(Args, Debug, Clone)]
pub struct UrlArg {
    /// Facilitator base URL.
    #[arg(long, env = envvars::FACILITATOR_URL.name, default_value = DEFAULT_FACILITATOR_URL)]
    pub url: String,
}

#[derive(Subcommand, Debug)]
pub enum ProviderCmd {
    /// Onboard a sandbox provider: prints account, api_secret (shown once) and publishable_key.
    Create {
        #[command(flatten)]
        url: UrlArg,
        /// Proof-token algorithm (default: the facilitator's).
        #[arg(long, value_enum)]
        token_alg: Option<Alg>,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
        /// `live` on a live facilitator (with --payout).
        #[arg(long, value_enum, default_value = "sandbox")]
        mode: ModeArg,
        /// Live: the address the provider's payments go to.
        #[arg(long, value_name = "ADDRESS")]
        payout: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a provider's account and revenue.
    Show {
        #[command(flatten)]
        url: UrlArg,
        /// The provider's apiSecret.
        #[arg(long, env = envvars::SECRET_KEY.name, hide_env_values = true)]
        secret: String,
        #[arg(long)]
        json: bool,
    },
    /// A new apiSecret for the same account (shown once); the current one keeps working for
    /// --overlap-secs, time to deploy the new one.
    Rotate {
        #[command(flatten)]
        url: UrlArg,
        /// The provider's current apiSecret.
        #[arg(long, env = envvars::SECRET_KEY.name, hide_env_values = true)]
        secret: String,
        /// How long the current secrets keep working (seconds, at most 30 days).
        #[arg(long, value_name = "SECS", default_value_t = 86400)]
        overlap_secs: u64,
        #[arg(long)]
        json: bool,
    },
    /// List a provider's latest payments.
    Payments {
        #[command(flatten)]
        url: UrlArg,
        #[arg(long, env = envvars::SECRET_KEY.name, hide_env_values = true)]
        secret: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WalletCmd {
    /// Generate a wallet locally: address and private key (keep the key secret).
    New {
        #[arg(long)]
        json: bool,
    },
    /// A wallet's sandbox balance.
    Balance {
        address: String,
        #[command(flatten)]
        url: UrlArg,
        #[arg(long)]
        json: bool,
    },
    /// Top up a wallet from the sandbox faucet.
    Topup {
        address: String,
        /// Decimal usd amount, e.g. 10 or 0.5.
        amount: String,
        #[command(flatten)]
        url: UrlArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Recompute the hash chain and check double entry and balances; with --checkpoint, also
    /// that the ledger still holds the heads a kept checkpoint signed.
    Verify {
        /// A SQLite file or a PostgreSQL URL.
        #[arg(long, env = envvars::DB.name, default_value = "./vlexivo.db", hide_env_values = true)]
        db: String,
        /// A checkpoint kept from GET /v1/ledger/checkpoint (its JSON answer or the bare JWS):
        /// its signature must verify and every head must still be in the ledger, unchanged.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The facilitator's JWKS as kept (/.well-known/jwks.json) to check the checkpoint's
        /// signature with; without it, the keys in the database.
        #[arg(long, value_name = "FILE", requires = "checkpoint")]
        jwks: Option<PathBuf>,
        /// A receipt's tx_hash that must be in the ledger (under the checkpoint, if given).
        #[arg(long, value_name = "TX_HASH")]
        tx: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Live mode: compare the settlement records with the chain's receipts and the token's
    /// Transfer logs, and name every difference (a reorged-out or re-mined settlement, a revert,
    /// a wrong transfer, a failed record that settled, a relayed transfer without a record).
    /// Exits 1 when there is any.
    Reconcile {
        /// A SQLite file or a PostgreSQL URL.
        #[arg(long, env = envvars::DB.name, default_value = "./vlexivo.db", hide_env_values = true)]
        db: String,
        /// The chain's JSON-RPC URL.
        #[arg(long, env = envvars::RPC_URL.name, value_name = "URL", hide_env_values = true)]
        rpc_url: String,
        /// The token to reconcile (default: the one the records hold).
        #[arg(long, env = envvars::ASSET.name, value_name = "ADDRESS")]
        asset: Option<String>,
        /// First block whose Transfer logs are scanned (default: the earliest recorded block).
        #[arg(long, value_name = "BLOCK")]
        from_block: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

/// `vlexivo verify-payment`: a provider's own check of a live payment on chain.
#[derive(Args, Debug)]
pub struct VerifyPaymentArgs {
    /// The payment's transaction hash (a receipt's `tx_hash`, a proof token's `txh`).
    pub tx_hash: String,
    /// The chain's JSON-RPC URL.
    #[arg(long, env = envvars::RPC_URL.name, value_name = "URL", hide_env_values = true)]
    pub rpc_url: String,
    /// The EIP-3009 token (USDC) the payment is in.
    #[arg(long, env = envvars::ASSET.name, value_name = "ADDRESS")]
    pub asset: String,
    /// Who paid (the proof token's `sub`).
    #[arg(long, value_name = "ADDRESS")]
    pub payer: String,
    /// Who was paid: the provider's payout address.
    #[arg(long, env = envvars::PAY_TO.name, value_name = "ADDRESS")]
    pub payee: String,
    /// The amount, a decimal usd amount (e.g. 0.001).
    #[arg(long)]
    pub amount: String,
    /// Least depth: 1 = mined.
    #[arg(long, default_value_t = 1)]
    pub confirmations: u64,
    /// The payment's EIP-3009 authorization nonce (0x + 64 hex digits): pins the check to its
    /// own Transfer in a transaction that settled several payments.
    #[arg(long, value_name = "NONCE")]
    pub authorization_nonce: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// A new EdDSA signing key (a new kid): the current one stays in the JWKS so the tokens and
    /// checkpoints it signed keep verifying; facilitators sign with the new key once restarted.
    RotateSigningKey {
        /// A SQLite file or a PostgreSQL URL.
        #[arg(long, env = envvars::DB.name, default_value = "./vlexivo.db", hide_env_values = true)]
        db: String,
        #[command(flatten)]
        master_key: MasterKeyArg,
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal who has not asked for none (no-color.org).
        .with_ansi(
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        );
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub async fn serve(args: ServeArgs) -> i32 {
    init_logging(args.log_format);
    let master_key = match args.master_key.parse() {
        Ok(k) => k,
        Err(Fail(code, msg)) => {
            eprintln!("error: {msg}");
            return code;
        }
    };
    let (db_path, database_url) = if server::pg::is_url(&args.db) {
        (PathBuf::new(), Some(args.db))
    } else {
        (PathBuf::from(args.db), None)
    };
    let cfg = ServerConfig {
        addr: args.addr,
        db_path,
        database_url,
        db_retry_for: std::time::Duration::from_secs_f64(args.db_retry_secs.clamp(0.0, 3600.0)),
        faucet_cap: args.faucet_cap,
        public_url: args.public_url,
        token_alg: args.token_alg.as_str().into(),
        durability: match args.synchronous {
            Sync::Full => server::Durability::Full,
            Sync::Normal => server::Durability::Normal,
        },
        cors: args.cors_origins,
        max_in_flight: args.max_in_flight.unwrap_or_else(server::default_max_in_flight),
        master_key,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(server::TlsFiles { cert, key }),
            _ => None,
        },
        live: match args.live.config() {
            Ok(l) => l,
            Err(msg) => {
                eprintln!("error: {msg}");
                return exit::USAGE;
            }
        },
        ..ServerConfig::default()
    };
    let srv = match server::spawn(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", e.code());
            return if e.code() == "config_invalid" { exit::USAGE } else { exit::FAILED };
        }
    };
    // The one line on stdout: test harnesses in every language parse it.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "VLEXIVO_URL={}", srv.url);
    let _ = out.flush();
    drop(out);
    shutdown_signal().await;
    tracing::info!("shutting down");
    srv.shutdown().await;
    exit::OK
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

struct Fail(i32, String);

impl Fail {
    fn usage(msg: impl Into<String>) -> Self {
        Fail(exit::USAGE, msg.into())
    }
}

fn client(tls: &TlsArgs) -> Result<reqwest::Client, Fail> {
    let cfg = tls.config().map_err(|e| Fail::usage(format!("{}: {e}", e.code())))?;
    cfg.client_builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Fail::usage(format!("config_invalid: HTTP client: {}", tls::describe(&e))))
}

fn endpoint(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

async fn send<T: DeserializeOwned>(req: reqwest::RequestBuilder, base: &str) -> Result<T, Fail> {
    let resp = req.send().await.map_err(|e| {
        Fail(
            exit::FACILITATOR_UNAVAILABLE,
            format!("facilitator_unavailable: cannot reach {base}: {}", tls::describe(&e)),
        )
    })?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| {
        Fail(exit::FACILITATOR_UNAVAILABLE, format!("facilitator_unavailable: {}", tls::describe(&e)))
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            Fail(exit::FAILED, format!("facilitator_error: unexpected answer from {base}: {e}"))
        });
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => {
            let code = if b.error == "insufficient_funds" { exit::INSUFFICIENT_FUNDS } else { exit::FAILED };
            Err(Fail(code, format!("{}: {}", b.error, b.message)))
        }
        Err(_) => Err(Fail(exit::FAILED, format!("facilitator_error: HTTP {status} from {base}"))),
    }
}

fn finish(r: Result<(), Fail>) -> i32 {
    match r {
        Ok(()) => exit::OK,
        Err(Fail(code, msg)) => {
            eprintln!("error: {msg}");
            code
        }
    }
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

fn parse_address(s: &str) -> Result<Address, Fail> {
    Address::parse(s).map_err(|e| Fail::usage(format!("{}: {e}", e.code())))
}

// ---------------------------------------------------------------------------------------------
// provider

pub async fn provider(cmd: ProviderCmd, tls: &TlsArgs) -> i32 {
    finish(provider_inner(cmd, tls).await)
}

async fn provider_inner(cmd: ProviderCmd, tls: &TlsArgs) -> Result<(), Fail> {
    match cmd {
        ProviderCmd::Create { url, token_alg, name, mode, payout, json } => {
            let body = CreateProviderRequest {
                mode: Some(if mode == ModeArg::Live { "live" } else { "sandbox" }.into()),
                name,
                token_alg: token_alg.map(|a| a.as_str().to_string()),
                payout_address: payout,
            };
            let p: ProviderCreated =
                send(client(tls)?.post(endpoint(&url.url, "/v1/providers")).json(&body), &url.url).await?;
            if json {
                print_json(&p);
            } else {
                println!("account:          {}", p.account);
                println!("api_secret:       {}", p.api_secret);
                println!("publishable_key:  {}", p.publishable_key);
                println!("mode:             {}", p.mode);
                println!("token_alg:        {}", p.token_alg);
                if let Some(t) = &p.terms {
                    println!("\nThe paywall's settlement terms (its environment):\n{}", t.env_lines());
                }
                eprintln!("\nThe api_secret is shown only once: store it now (e.g. VLX_SECRET_KEY).");
            }
        }
        ProviderCmd::Rotate { url, secret, overlap_secs, json } => {
            let body = vlexivo_facilitator::server::types::RotateRequest { overlap_secs: Some(overlap_secs) };
            let r: vlexivo_facilitator::server::types::ProviderRotated = send(
                client(tls)?
                    .post(endpoint(&url.url, "/v1/providers/me/rotate"))
                    .bearer_auth(secret.trim())
                    .json(&body),
                &url.url,
            )
            .await?;
            if json {
                print_json(&r);
            } else {
                println!("account:          {}", r.account);
                println!("api_secret:       {}", r.api_secret);
                println!("publishable_key:  {}", r.publishable_key);
                println!("previous secrets retire at {} (Unix time)", r.previous_secrets_retire_at);
                eprintln!(
                    "\nThe new api_secret is shown only once: deploy it (VLX_SECRET_KEY) before the overlap ends."
                );
            }
        }
        ProviderCmd::Show { url, secret, json } => {
            let info: ProviderInfo = send(
                client(tls)?.get(endpoint(&url.url, "/v1/providers/me")).bearer_auth(secret.trim()),
                &url.url,
            )
            .await?;
            if json {
                print_json(&info);
            } else {
                println!("account:          {}", info.account);
                if !info.publishable_key.is_empty() {
                    println!("publishable_key:  {}", info.publishable_key);
                }
                println!("mode:             {}", info.mode);
                println!("token_alg:        {}", info.token_alg);
                println!(
                    "revenue:          {} {} from {} payment{}",
                    info.revenue.total,
                    info.revenue.currency,
                    info.revenue.count,
                    if info.revenue.count == 1 { "" } else { "s" }
                );
            }
        }
        ProviderCmd::Payments { url, secret, limit, json } => {
            let list: PaymentList = send(
                client(tls)?
                    .get(endpoint(&url.url, &format!("/v1/providers/me/payments?limit={limit}")))
                    .bearer_auth(secret.trim()),
                &url.url,
            )
            .await?;
            if json {
                print_json(&list);
            } else if list.payments.is_empty() {
                println!("no payments yet");
            } else {
                for p in &list.payments {
                    println!(
                        "{}  {} {}  {}  {}  {}",
                        p.paid_at, p.amount, p.currency, p.payer, p.resource, p.tx_hash
                    );
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// wallet

pub async fn wallet(cmd: WalletCmd, tls: &TlsArgs) -> i32 {
    finish(wallet_inner(cmd, tls).await)
}

async fn wallet_inner(cmd: WalletCmd, tls: &TlsArgs) -> Result<(), Fail> {
    match cmd {
        WalletCmd::New { json } => {
            let w = Wallet::generate(&OsEntropy);
            if json {
                print_json(&json!({"address": w.address().to_checksum(), "private_key": w.secret_hex()}));
            } else {
                println!("address:      {}", w.address());
                println!("private_key:  {}", w.secret_hex());
                eprintln!("\nKeep the private key secret (e.g. VLX_WALLET_KEY); it is not stored anywhere.");
            }
        }
        WalletCmd::Balance { address, url, json } => {
            let a = parse_address(&address)?;
            let b: WalletBalance =
                send(client(tls)?.get(endpoint(&url.url, &format!("/v1/wallets/{a}"))), &url.url).await?;
            if json {
                print_json(&b);
            } else {
                println!("{} {}", b.balance, b.currency);
            }
        }
        WalletCmd::Topup { address, amount, url, json } => {
            let a = parse_address(&address)?;
            let r: TopUpReceipt = send(
                client(tls)?
                    .post(endpoint(&url.url, &format!("/v1/wallets/{a}/topup")))
                    .json(&json!({"amount": amount})),
                &url.url,
            )
            .await?;
            if json {
                print_json(&r);
            } else {
                println!("topped up {} {}: balance {} {}", r.amount, r.currency, r.balance, r.currency);
                println!("tx_hash: {}", r.tx_hash);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ledger

/// Read a kept checkpoint and check its signature: under the kept JWKS if given, else under
/// the keys the database publishes.
fn kept_checkpoint(
    path: &std::path::Path,
    jwks: Option<&std::path::Path>,
    db_keys: impl FnOnce() -> Result<Vec<(String, [u8; 32])>, String>,
) -> Result<(Vec<server::checkpoint::ChainHead>, &'static str), Fail> {
    use server::checkpoint;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| Fail::usage(format!("cannot read {}: {e}", p.display())))
    };
    let jws = checkpoint::parse_kept(&read(path)?).map_err(|e| Fail::usage(e.to_string()))?;
    let (keys, source) = match jwks {
        Some(p) => {
            (checkpoint::jwks_keys(&read(p)?).map_err(|e| Fail::usage(e.to_string()))?, "the kept JWKS")
        }
        None => (db_keys().map_err(|e| Fail(exit::FAILED, e))?, "the database's keys"),
    };
    let claims = checkpoint::verify(&jws, &keys).map_err(|e| Fail(exit::FAILED, e.to_string()))?;
    Ok((claims.heads, source))
}

pub fn ledger(cmd: LedgerCmd) -> i32 {
    let (db, checkpoint, jwks, tx, json) = match cmd {
        LedgerCmd::Verify { db, checkpoint, jwks, tx, json } => (db, checkpoint, jwks, tx, json),
        LedgerCmd::Reconcile { db, rpc_url, asset, from_block, json } => {
            return reconcile(&db, &rpc_url, asset.as_deref(), from_block, json);
        }
    };
    let fail = |f: Fail| {
        if json {
            print_json(&json!({"ok": false, "error": f.1}));
        }
        eprintln!("ledger verification FAILED: {}", f.1);
        f.0
    };
    let mut opts = server::VerifyOptions { checkpoint: None, tx: tx.map(|t| t.to_ascii_lowercase()) };
    let mut signed_by = None;
    let verified = if server::pg::is_url(&db) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return exit::FAILED;
            }
        };
        if let Some(cp) = &checkpoint {
            let keys = || rt.block_on(server::published_keys_postgres(&db)).map_err(|e| e.to_string());
            match kept_checkpoint(cp, jwks.as_deref(), keys) {
                Ok((heads, source)) => (opts.checkpoint, signed_by) = (Some(heads), Some(source)),
                Err(f) => return fail(f),
            }
        }
        rt.block_on(server::verify_postgres_with(&db, opts))
    } else {
        let path = PathBuf::from(&db);
        if !path.exists() {
            eprintln!("error: no database at {}", path.display());
            return exit::USAGE;
        }
        let conn = match server::db::open_ro(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {}: {e}", e.code());
                return exit::FAILED;
            }
        };
        if let Some(cp) = &checkpoint {
            let keys = || server::published_keys_sqlite(&conn).map_err(|e| e.to_string());
            match kept_checkpoint(cp, jwks.as_deref(), keys) {
                Ok((heads, source)) => (opts.checkpoint, signed_by) = (Some(heads), Some(source)),
                Err(f) => return fail(f),
            }
        }
        server::verify_sqlite_with(&conn, opts)
    };
    match verified {
        Ok(s) => {
            if json {
                print_json(&json!({"ok": true, "summary": s}));
            } else {
                println!(
                    "ledger OK: {} transactions ({} payments, {} top-ups), {} accounts, balances sum to zero",
                    s.transactions, s.payments, s.topups, s.accounts
                );
                if s.streams.len() > 1 || s.streams.iter().any(|c| c.stream.is_some()) {
                    for c in &s.streams {
                        println!(
                            "stream {}: {} transactions, head {}",
                            c.stream.unwrap_or(0),
                            c.transactions,
                            c.head
                        );
                    }
                }
                println!("head: {}", s.head);
                if let (Some(n), Some(by)) = (s.checkpoint_heads, signed_by) {
                    println!(
                        "checkpoint: signature checked against {by}; its {n} head(s) are in the ledger unchanged"
                    );
                } else if let Some(by) = signed_by {
                    println!("checkpoint: signature checked against {by}; it signed an empty ledger");
                }
                if let Some(t) = &s.tx {
                    let under = if signed_by.is_some() { ", under the checkpoint" } else { "" };
                    match t.stream {
                        Some(st) => println!("transaction {}: stream {st} seq {}{under}", t.hash, t.seq),
                        None => println!("transaction {}: seq {}{under}", t.hash, t.seq),
                    }
                }
            }
            exit::OK
        }
        Err(e) => fail(Fail(exit::FAILED, e.to_string())),
    }
}

fn reconcile(db: &str, rpc_url: &str, asset: Option<&str>, from_block: Option<u64>, json: bool) -> i32 {
    use server::live::reconcile;
    let run = || -> Result<vlexivo_live::reconcile::Reconciliation, Fail> {
        let asset = asset.map(parse_address).transpose()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Fail(exit::FAILED, format!("cannot start the async runtime: {e}")))?;
        let failed = |e: vlexivo_core::Error| {
            let code = match e.code() {
                "config_invalid" => exit::USAGE,
                "facilitator_unavailable" => exit::FACILITATOR_UNAVAILABLE,
                _ => exit::FAILED,
            };
            Fail(code, format!("{}: {e}", e.code()))
        };
        rt.block_on(async {
            let store = reconcile::open_store(db)?;
            reconcile::run(&store, rpc_url, asset, from_block).await
        })
        .map_err(failed)
    };
    match run() {
        Ok(r) => {
            if json {
                print_json(&json!({"ok": r.is_clean(), "reconciliation": r}));
            } else {
                println!(
                    "{} settlement records ({} confirmed, {} pending, {} failed) of token {}; blocks {}..={}: {} transfers to payout addresses ({} not relayed by this facilitator)",
                    r.records,
                    r.confirmed,
                    r.pending,
                    r.failed,
                    r.token,
                    r.from_block,
                    r.to_block,
                    r.transfers,
                    r.other_transfers
                );
                for d in &r.differences {
                    let of = match (&d.account, &d.nonce) {
                        (Some(a), Some(n)) => format!(" (account {a}, payment {n})"),
                        _ => String::new(),
                    };
                    println!("DIFFERENCE {}: {}{of}: {}", d.kind.as_str(), d.tx_hash, d.detail);
                }
                if r.is_clean() {
                    println!("reconciled: the records and the chain agree");
                } else {
                    eprintln!("{} difference(s) between the records and the chain", r.differences.len());
                }
            }
            if r.is_clean() { exit::OK } else { exit::FAILED }
        }
        Err(f) => {
            if json {
                print_json(&json!({"ok": false, "error": f.1}));
            }
            eprintln!("error: {}", f.1);
            f.0
        }
    }
}

pub async fn verify_payment(a: VerifyPaymentArgs) -> i32 {
    use vlexivo_client::onchain::{Expected, verify_payment};
    let json = a.json;
    let run = async {
        let usage = |e: vlexivo_core::Error| Fail::usage(format!("{}: {e}", e.code()));
        let expected = Expected::parse(
            &a.asset,
            &a.payer,
            &a.payee,
            &a.amount,
            a.confirmations,
            a.authorization_nonce.as_deref(),
        )
        .map_err(usage)?;
        verify_payment(&a.rpc_url, &a.tx_hash, expected).await.map_err(|e| {
            let code = match e.code() {
                "chain_unavailable" => exit::FACILITATOR_UNAVAILABLE,
                "request_malformed" => exit::USAGE,
                _ => exit::FAILED,
            };
            Fail(code, format!("{}: {e}", e.code()))
        })
    };
    match run.await {
        Ok(p) => {
            if json {
                let mut v = serde_json::to_value(&p).unwrap_or_default();
                v["ok"] = json!(true);
                print_json(&v);
            } else {
                println!(
                    "paid: {} usd from {} to {} in token {}, block {} ({} confirmations, gas {}){}",
                    p.amount,
                    p.payer,
                    p.payee,
                    p.token,
                    p.block,
                    p.confirmations,
                    p.gas_used,
                    if p.transfers > 1 {
                        format!(", log {} of a transaction with {} transfers", p.log_index, p.transfers)
                    } else {
                        String::new()
                    }
                );
            }
            exit::OK
        }
        Err(f) => {
            if json {
                print_json(&json!({"ok": false, "error": f.1}));
            }
            eprintln!("NOT verified: {}", f.1);
            f.0
        }
    }
}

// ---------------------------------------------------------------------------------------------
// keys

pub fn keys(cmd: KeysCmd) -> i32 {
    let KeysCmd::RotateSigningKey { db, master_key, json } = cmd;
    let run = || -> Result<(String, String), Fail> {
        let master = master_key.parse()?;
        let failed = |e: vlexivo_core::Error| {
            let code = if e.code() == "config_invalid" { exit::USAGE } else { exit::FAILED };
            Fail(code, format!("{}: {e}", e.code()))
        };
        if server::pg::is_url(&db) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Fail(exit::FAILED, format!("cannot start the async runtime: {e}")))?;
            rt.block_on(server::rotate_signing_key_postgres(&db, master, &OsEntropy)).map_err(failed)
        } else {
            let path = PathBuf::from(&db);
            if !path.exists() {
                return Err(Fail::usage(format!("no database at {}", path.display())));
            }
            server::rotate_signing_key_sqlite(&path, master, &OsEntropy).map_err(failed)
        }
    };
    finish(run().map(|(old, new)| {
        if json {
            print_json(&json!({"retired_kid": old, "kid": new}));
        } else {
            println!("signing key rotated: new kid {new}; {old} stays in the JWKS. Restart every facilitator on this database.");
        }
    }))
}
