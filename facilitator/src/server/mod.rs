//! The facilitator service (`vlexivo serve`): onboarding, the sandbox ledger, payments and
//! proof tokens over the HTTP API of `docs/protocol.md` §8.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vlexivo_core::Error> {
//! use vlexivo_facilitator::server::{spawn, ServerConfig};
//! let dir = std::env::temp_dir().join("vlexivo-doc");
//! std::fs::create_dir_all(&dir).unwrap();
//! let srv = spawn(ServerConfig {
//!     addr: "127.0.0.1:0".parse().unwrap(),
//!     db_path: dir.join("f.db"),
//!     ..ServerConfig::default()
//! })
//! .await?;
//! let provider = srv.create_provider(None, None).await?;
//! println!("{} {}", srv.url, provider.account);
//! srv.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Writes go through one ledger writer with group commit (`ledger`); reads (balances, payment
//! lists) go to a few read-only connections beside it (`reads`). The database is one SQLite
//! file (the embedded default) or, with [`ServerConfig::database_url`], a PostgreSQL database
//! that several facilitator processes share.

mod api;
pub mod at_rest;
pub mod checkpoint;
mod dashboard;
pub mod db;
// Test only, and the one place this crate needs unsafe: a SQLite VFS shim.
#[cfg(test)]
#[allow(unsafe_code)]
mod failing_fsync;
pub mod ledger;
pub mod live;
pub mod metrics;
mod openapi;
pub mod pg;
mod providers;
mod reads;
mod shed;
pub mod types;

use axum::Router;
use axum::routing::{get, post};
use ledger::{Ledger, Provider, TokenAlg};
use parking_lot::RwLock;
use reads::Reads;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use types::{
    CreateProviderRequest, ProviderCreated, ProviderRotated, RotateRequest, TopUpReceipt, TopUpRequest,
};
use vlexivo_core::api_bodies::NewProvider;
use vlexivo_core::env::{Clock, Entropy, OsEntropy, SystemClock};
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::token::{Ed25519Key, SigningKey, TokenIssuer};
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

pub use api::MAX_BODY_BYTES;
pub use ledger::verify::{
    verify_postgres, verify_postgres_with, verify_sqlite as verify_ledger, verify_sqlite_with,
};
pub use ledger::{Durability, VerifyError, VerifyOptions, VerifySummary};
pub use shed::{PER_CPU as MAX_IN_FLIGHT_PER_CPU, default_max_in_flight};

/// Default listen address of `vlexivo serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4020";
/// Default faucet cap: the most a sandbox wallet may receive from the faucet, in total.
pub const DEFAULT_FAUCET_CAP: &str = "1000";
/// Read-only connections for GET endpoints (SQLite), pooled connections (PostgreSQL).
const READERS: usize = 4;
const PG_READERS: usize = 8;
/// How long `shutdown` waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const META_ED25519_SEED: &str = "ed25519_seed";
/// How long a provider row read from the database is trusted before it is read again.
const PROVIDER_CACHE_TTL: Duration = Duration::from_secs(30);
/// The signing key's public half, readable without the master key (`ledger verify`).
const META_ED25519_PUBLIC: &str = "ed25519_public";
/// Public halves of earlier signing keys, still in the JWKS (tokens and checkpoints they signed).
const META_ED25519_RETIRED: &str = "ed25519_retired";

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address; port 0 picks a free port (read it from [`RunningServer::addr`]).
    pub addr: SocketAddr,
    /// The SQLite file (created and migrated if needed).
    pub db_path: PathBuf,
    /// A PostgreSQL URL instead of the SQLite file: several facilitators may share it.
    pub database_url: Option<String>,
    /// PostgreSQL: how long a write keeps retrying while the database is unreachable before it
    /// is answered `facilitator_unavailable`.
    pub db_retry_for: Duration,
    /// Most a wallet may receive from the sandbox faucet in total, as a decimal string.
    pub faucet_cap: String,
    /// Issuer URL put in tokens (`iss`); the bound URL by default.
    pub public_url: Option<String>,
    /// Default proof-token algorithm for new providers: "HS256" or "EdDSA".
    pub token_alg: String,
    /// When a payment is acknowledged: after an fsync (default) or once committed to the OS.
    pub durability: Durability,
    /// Time source (tests inject a fixed clock).
    pub clock: Arc<dyn Clock>,
    /// Randomness for secrets and keys.
    pub entropy: Arc<dyn Entropy>,
    /// Serve HTTPS with this certificate chain and key (PEM files); plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// Origins browsers may call the payer endpoints from.
    pub cors: CorsOrigins,
    /// Seals the derived keys and the signing key in the database (`VLX_MASTER_KEY`); without
    /// it they are stored plain, which only a sandbox facilitator accepts (`at_rest`).
    pub master_key: Option<Arc<at_rest::MasterKey>>,
    /// Live mode: settle on this chain and token (every provider is then live); sandbox without.
    pub live: Option<live::LiveConfig>,
    /// Most requests served at once (0: no limit; default [`default_max_in_flight`]): past it a
    /// request is answered at once with 503 `facilitator_overloaded` and `Retry-After` instead
    /// of queueing. `/healthz`, `/readyz` and `/metrics` are always served.
    pub max_in_flight: usize,
}

/// The facilitator's own certificate, for serving HTTPS without a terminating proxy.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("valid default address"),
            db_path: PathBuf::from("./vlexivo.db"),
            database_url: None,
            db_retry_for: ledger::postgres::RETRY_FOR,
            faucet_cap: DEFAULT_FAUCET_CAP.into(),
            public_url: None,
            token_alg: "HS256".into(),
            durability: Durability::Full,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            tls: None,
            cors: CorsOrigins::Any,
            master_key: None,
            live: None,
            max_in_flight: default_max_in_flight(),
        }
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    ledger: Ledger,
    /// By the account id a secret derives (`Provider::key_account`), with when it was read.
    providers: RwLock<HashMap<String, (Arc<Provider>, std::time::Instant)>>,
    reads: Reads,
    metrics: metrics::Metrics,
    eddsa: Arc<TokenIssuer>,
    /// Signs ledger checkpoints (the key behind `eddsa`).
    signing_key: Ed25519Key,
    default_alg: TokenAlg,
    jwks_json: String,
    openapi_json: String,
    /// This facilitator's public base URL in normal form: challenges must name it.
    public_url: String,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    at_rest: Arc<at_rest::AtRest>,
    /// Live settlement, when the facilitator runs in live mode.
    live: Option<Arc<live::Live>>,
    /// The issuer URL put in tokens.
    issuer_url: String,
    /// Seals the payment lists' paging cursors.
    cursors: vlexivo_core::paging::CursorKey,
    /// The dashboard's signed-in browsers.
    sessions: dashboard::Sessions,
    /// The limit on requests in flight, if any.
    limit: Option<shed::Limit>,
}

impl AppState {
    /// A provider: from the cache, else from the database (another facilitator sharing it
    /// may have onboarded the provider since this one started).
    /// A secret retired by a rotation (its overlap window over) is no provider any more; a
    /// cached row is read again after [`PROVIDER_CACHE_TTL`], so a rotation made through another
    /// facilitator on the same database takes effect here too.
    async fn provider(&self, account: &str) -> Result<Option<Arc<Provider>>> {
        let cached = self.providers.read().get(account).cloned();
        let p = match cached {
            Some((p, at)) if at.elapsed() < PROVIDER_CACHE_TTL => p,
            _ => {
                let Some(row) = self.reads.provider(account.to_string()).await? else { return Ok(None) };
                let p = Arc::new(row.into_provider(&self.eddsa, &self.at_rest)?);
                self.providers.write().insert(p.key_account.clone(), (p.clone(), std::time::Instant::now()));
                p
            }
        };
        if p.retire_at.is_some_and(|t| self.clock.now() >= t) {
            return Ok(None);
        }
        Ok(Some(p))
    }

    async fn wallet_balance(&self, address: Address) -> Result<i64> {
        self.reads.balance(ledger::wallet_id(&address)).await
    }

    /// The mode every provider and payment of this facilitator is in.
    fn mode(&self) -> Mode {
        if self.live.is_some() { Mode::Live } else { Mode::Sandbox }
    }

    async fn create_provider(&self, req: CreateProviderRequest) -> Result<ProviderCreated> {
        let NewProvider { mode, token_alg, name, payout } = req.check(self.mode(), self.default_alg)?;
        let (p, secret) = self.new_keys(mode, token_alg, name, None)?;
        let mut terms = None;
        if let (Some(live), Some(payout)) = (&self.live, payout) {
            // Before the provider exists, so a live provider always has its payout address.
            live.store.set_payout(&p.account, &payout.to_checksum(), self.clock.now()).await?;
            terms = Some(types::LiveTermsBody::from(&live.chain.terms(payout)));
        }
        self.ledger.create_provider(p.clone()).await?;
        self.providers.write().insert(p.key_account.clone(), (p.clone(), std::time::Instant::now()));
        self.metrics.providers_created.inc();
        tracing::info!(account = %p.account, token_alg = token_alg.as_str(), "provider created");
        Ok(ProviderCreated {
            account: p.account.clone(),
            publishable_key: ProviderKeys::from_secret(&secret)?.publishable_key(),
            api_secret: secret,
            mode: mode.as_str().into(),
            token_alg: token_alg.as_str().into(),
            terms,
        })
    }

    /// A provider with a fresh secret: a new account, or with `rotating` (the account and when
    /// its other secrets retire) a new secret paying into an existing account.
    fn new_keys(
        &self,
        mode: Mode,
        token_alg: TokenAlg,
        name: Option<String>,
        rotating: Option<(&str, u64)>,
    ) -> Result<(Arc<Provider>, String)> {
        let secret = generate_secret(mode, self.entropy.as_ref());
        let keys = ProviderKeys::from_secret(&secret)?;
        let issuer = match token_alg {
            TokenAlg::Hs256 => Arc::new(TokenIssuer::new(SigningKey::Hs256(keys.token_hs256))?),
            TokenAlg::EdDsa => self.eddsa.clone(),
        };
        let seal = |column: &str, key: &[u8; 32]| {
            self.at_rest.seal(&at_rest::provider_aad(&keys.account, column), key, self.entropy.as_ref())
        };
        let p = Provider {
            account: rotating.map_or_else(|| keys.account.clone(), |(a, _)| a.to_string()),
            key_account: keys.account.clone(),
            retire_at: None,
            retire_others_at: rotating.map(|(_, at)| at),
            mode,
            token_alg,
            name,
            challenge_mac: keys.challenge_mac,
            token_hs256: keys.token_hs256,
            auth_digest: keys.auth_digest,
            created_at: self.clock.now(),
            stored_keys: [seal("challenge_mac", &keys.challenge_mac), seal("token_hs256", &keys.token_hs256)],
            issuer,
        };
        Ok((Arc::new(p), secret))
    }

    /// `apiSecret` rotation: a new secret for `p`'s account; the account's other secrets keep
    /// working for `overlap_secs`, then are refused. Challenges made with the new secret name the
    /// id it derives (its publishable key); the facilitator credits the same account.
    async fn rotate_provider(&self, p: &Provider, req: &RotateRequest) -> Result<ProviderRotated> {
        let overlap_secs = req.overlap_secs()?;
        let retire_at = self.clock.now() + overlap_secs;
        let (new, secret) =
            self.new_keys(p.mode, p.token_alg, p.name.clone(), Some((&p.account, retire_at)))?;
        self.ledger.create_provider(new.clone()).await?;
        // This process's cached rows of the account are read again (with their retire_at).
        self.providers.write().retain(|_, (c, _)| c.account != p.account);
        tracing::info!(account = %p.account, retire_at, "provider secret rotated");
        Ok(ProviderRotated {
            account: p.account.clone(),
            publishable_key: ProviderKeys::from_secret(&secret)?.publishable_key(),
            api_secret: secret,
            mode: p.mode.as_str().into(),
            token_alg: p.token_alg.as_str().into(),
            previous_secrets_retire_at: retire_at,
        })
    }

    async fn top_up(&self, address: Address, req: &TopUpRequest) -> Result<TopUpReceipt> {
        let amount = req.amount()?;
        let done = self.ledger.top_up(address, amount.to_atomic(), self.clock.now()).await?;
        self.metrics.topups.inc();
        self.metrics.amount_topped_up_atomic.inc_by(done.amount);
        Ok(TopUpReceipt {
            address: done.address,
            amount: amount.to_string(),
            balance: api::usd(done.balance as i64),
            currency: "usd".into(),
            tx_hash: done.tx_hash,
        })
    }
}

fn router(st: Arc<AppState>, cors: &CorsOrigins) -> Router {
    // What a payer's web page calls: paying, its wallet, the token keys, ledger checkpoints,
    // the API description.
    // The provider endpoints take the apiSecret, which belongs on a server, not in a page.
    let browser = Router::new()
        .route("/v1/payments", post(api::pay))
        .route("/v1/wallets/{address}", get(api::wallet_balance))
        .route("/v1/wallets/{address}/topup", post(api::top_up))
        .route("/.well-known/jwks.json", get(api::jwks))
        .route("/v1/ledger/checkpoint", get(api::ledger_checkpoint))
        .route("/openapi.json", get(api::openapi_json));
    let browser = match cors.layer() {
        Some(layer) => browser.layer(layer),
        None => browser,
    };
    let served = Router::new()
        .route("/v1/providers", post(api::create_provider))
        .route("/v1/providers/me", get(api::provider_me))
        .route("/v1/providers/me/payments", get(api::provider_payments))
        .route("/v1/providers/me/payers/{address}/usage", get(api::payer_usage))
        .route("/v1/providers/me/rotate", post(api::rotate_provider))
        .merge(browser)
        .merge(dashboard::router());
    let served = match &st.limit {
        Some(limit) => limit.apply(served),
        None => served,
    };
    // Outside the limit: an overloaded service is alive and says why it refuses.
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .merge(served)
        .route_layer(axum::middleware::from_fn_with_state(st.clone(), api::track))
        .fallback(api::not_found)
        .with_state(st)
}

/// Which web origins browsers may call the payer endpoints from (CORS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`): the payer endpoints need no cookie or secret, a signature authorizes.
    #[default]
    Any,
    /// Only these origins (`https://app.example.com`).
    List(Vec<String>),
    /// No CORS headers: browsers may not call from other origins.
    Off,
}

impl CorsOrigins {
    /// `*`, `none`, or comma-separated origins (scheme://host[:port], no path).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "*" => return Ok(Self::Any),
            "none" | "" => return Ok(Self::Off),
            _ => {}
        }
        let list = s
            .split(',')
            .map(|o| {
                let o = o.trim().trim_end_matches('/');
                let ok = (o.starts_with("https://") || o.starts_with("http://"))
                    && !o.split_once("://").is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/'))
                    && http::HeaderValue::from_str(o).is_ok();
                if ok {
                    Ok(o.to_string())
                } else {
                    Err(Error::Config(format!("CORS origin {o:?} is not scheme://host[:port]")))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::List(list))
    }

    fn layer(&self) -> Option<tower_http::cors::CorsLayer> {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let origins = match self {
            Self::Off => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(l) => AllowOrigin::list(l.iter().filter_map(|o| http::HeaderValue::from_str(o).ok())),
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([http::Method::GET, http::Method::POST])
                .allow_headers([http::header::CONTENT_TYPE, http::header::ACCEPT])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// A running facilitator. Dropping it leaves the server running until the runtime stops;
/// call [`RunningServer::shutdown`] to stop it cleanly.
pub struct RunningServer {
    /// The bound address (the real port when `addr` had port 0).
    pub addr: SocketAddr,
    /// `http://` + `addr`, or `https://` when serving TLS.
    pub url: String,
    /// The issuer URL put in tokens.
    pub public_url: String,
    state: Arc<AppState>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    writer: Writer,
    /// Live mode: the task following pending settlements.
    follower: Option<tokio::task::JoinHandle<()>>,
}

/// The ledger writer: SQLite's thread or PostgreSQL's task.
enum Writer {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Onboard a sandbox provider in-process (same as `POST /v1/providers`).
    pub async fn create_provider(
        &self,
        name: Option<&str>,
        token_alg: Option<&str>,
    ) -> Result<ProviderCreated> {
        self.state
            .create_provider(CreateProviderRequest {
                mode: None,
                name: name.map(str::to_string),
                token_alg: token_alg.map(str::to_string),
                payout_address: None,
            })
            .await
    }

    /// Onboard a live provider paid at `payout` in-process (a live facilitator only).
    pub async fn create_live_provider(&self, name: Option<&str>, payout: &str) -> Result<ProviderCreated> {
        self.state
            .create_provider(CreateProviderRequest {
                mode: Some("live".into()),
                name: name.map(str::to_string),
                token_alg: None,
                payout_address: Some(payout.to_string()),
            })
            .await
    }

    /// Live settlement, when running in live mode.
    pub fn live(&self) -> Option<&Arc<live::Live>> {
        self.state.live.as_ref()
    }

    /// Faucet top-up in-process (same as `POST /v1/wallets/{address}/topup`).
    pub async fn top_up(&self, address: &str, amount: &str) -> Result<TopUpReceipt> {
        let address = Address::parse(address)?;
        self.state.top_up(address, &TopUpRequest::of(amount)).await
    }

    /// A wallet's balance as a decimal string.
    pub async fn balance(&self, address: &str) -> Result<String> {
        let address = Address::parse(address)?;
        Ok(api::usd(self.state.wallet_balance(address).await?))
    }

    /// True once the HTTP server task has ended (it only ends on shutdown or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.server.is_finished()
    }

    /// Stop accepting connections, let in-flight requests finish (up to 10 s), then let the
    /// ledger commit what is queued and close the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Some(f) = &self.follower {
            f.abort();
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server ended with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
        }
        self.state.ledger.stop().await;
        match self.writer {
            Writer::Thread(t) => drop(tokio::task::spawn_blocking(move || t.join()).await),
            Writer::Task(t) => drop(t.await),
        }
        tracing::info!("facilitator stopped");
    }
}

/// What a facilitator starts from: its signing key, the retired keys' public halves, every
/// provider as stored.
type Loaded = (Ed25519Key, Vec<[u8; 32]>, Vec<providers::ProviderRow>);

/// Load (or create, once) the facilitator's Ed25519 key and every provider, sealing what is
/// stored plain when this facilitator has a master key; in one write transaction.
fn load(conn: &Connection, entropy: &dyn Entropy, at_rest: &at_rest::AtRest) -> Result<Loaded> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db::db_err)?;
    let out = load_in_tx(conn, entropy, at_rest);
    let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
    conn.execute_batch(end).map_err(db::db_err)?;
    out
}

fn load_in_tx(conn: &Connection, entropy: &dyn Entropy, at_rest: &at_rest::AtRest) -> Result<Loaded> {
    let set_meta = |key: &str, value: &[u8]| {
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![key, value],
        )
        .map_err(db::db_err)
    };
    let seed: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_ED25519_SEED], |r| r.get(0))
        .optional()
        .map_err(db::db_err)?;
    let key = match seed {
        Some(s) => {
            let key = Ed25519Key::from_seed(at_rest.open_or_plain(at_rest::SEED_AAD, &s)?)?;
            if at_rest.needs_sealing(&s) {
                set_meta(META_ED25519_SEED, &at_rest.seal(at_rest::SEED_AAD, &key.seed(), entropy))?;
            }
            key
        }
        None => {
            let key = Ed25519Key::generate(entropy);
            set_meta(META_ED25519_SEED, &at_rest.seal(at_rest::SEED_AAD, &key.seed(), entropy))?;
            key
        }
    };
    set_meta(META_ED25519_PUBLIC, &key.public_key())?;
    let retired: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_ED25519_RETIRED], |r| r.get(0))
        .optional()
        .map_err(db::db_err)?;
    let retired = retired_keys(retired.as_deref())?;
    let mut rows = conn
        .prepare(&format!("SELECT {} FROM providers", providers::COLUMNS))
        .and_then(|mut s| {
            s.query_map([], providers::ProviderRow::from_sqlite)?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db::db_err)?;
    check_sealing_policy(at_rest, &rows)?;
    for row in &mut rows {
        if row.seal_if_plain(at_rest, entropy)? {
            conn.execute(
                "UPDATE providers SET challenge_mac = ?1, token_hs256 = ?2 WHERE account = ?3",
                rusqlite::params![row.challenge_mac, row.token_hs256, row.account],
            )
            .map_err(db::db_err)?;
        }
    }
    Ok((key, retired, rows))
}

/// Keys stored plain are for the sandbox only: a database that holds a live provider needs the
/// master key.
pub(crate) fn check_sealing_policy(at_rest: &at_rest::AtRest, rows: &[providers::ProviderRow]) -> Result<()> {
    if at_rest.is_sealing() {
        return Ok(());
    }
    if rows.iter().any(|r| r.mode != Mode::Sandbox.as_str()) {
        return Err(Error::Config(
            "this database holds live providers, whose keys must be sealed at rest: set VLX_MASTER_KEY"
                .into(),
        ));
    }
    tracing::warn!(
        "VLX_MASTER_KEY is not set: provider keys and the signing key are stored unsealed (sandbox only)"
    );
    Ok(())
}

/// A new signing key: the current one's public half joins the retired keys (still in the
/// JWKS, so the tokens and checkpoints it signed keep verifying) and the new key signs from the
/// next start of each facilitator on this database. Returns (old kid, new kid).
pub fn rotate_signing_key_sqlite(
    path: &std::path::Path,
    master_key: Option<Arc<at_rest::MasterKey>>,
    entropy: &dyn Entropy,
) -> Result<(String, String)> {
    let conn = db::open_rw(path)?;
    let at_rest = at_rest::AtRest::new(master_key);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db::db_err)?;
    let out = (|| {
        let (old, retired, _) = load_in_tx(&conn, entropy, &at_rest)?;
        let new = Ed25519Key::generate(entropy);
        let set = |k: &str, v: &[u8]| {
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", rusqlite::params![k, v])
                .map_err(db::db_err)
        };
        set(META_ED25519_SEED, &at_rest.seal(at_rest::SEED_AAD, &new.seed(), entropy))?;
        set(META_ED25519_PUBLIC, &new.public_key())?;
        set(META_ED25519_RETIRED, &retire(&old, &retired))?;
        Ok((old.kid().to_string(), new.kid().to_string()))
    })();
    conn.execute_batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" }).map_err(db::db_err)?;
    out
}

/// The same on PostgreSQL (in one transaction, under the migrations' advisory lock).
pub async fn rotate_signing_key_postgres(
    url: &str,
    master_key: Option<Arc<at_rest::MasterKey>>,
    entropy: &dyn Entropy,
) -> Result<(String, String)> {
    let (_, mut client) = pg::open(url).await?;
    let at_rest = at_rest::AtRest::new(master_key);
    let (old, retired, _) = reads::load_pg(&client, entropy, &at_rest).await?;
    let new = Ed25519Key::generate(entropy);
    let tx = client.transaction().await.map_err(pg::pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&pg::LOCK_MIGRATE]).await.map_err(pg::pg_err)?;
    // Compare-and-set on the seed: a concurrent rotation makes this one fail, not interleave.
    let stored: Vec<u8> = tx
        .query_one("SELECT value FROM meta WHERE key = $1", &[&META_ED25519_SEED])
        .await
        .map_err(pg::pg_err)?
        .get(0);
    if at_rest.open_or_plain(at_rest::SEED_AAD, &stored)? != old.seed() {
        return Err(Error::Config("the signing key changed during the rotation: run it again".into()));
    }
    for (k, v) in [
        (META_ED25519_SEED, at_rest.seal(at_rest::SEED_AAD, &new.seed(), entropy)),
        (META_ED25519_PUBLIC, new.public_key().to_vec()),
        (META_ED25519_RETIRED, retire(&old, &retired)),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&k, &v],
        )
        .await
        .map_err(pg::pg_err)?;
    }
    tx.commit().await.map_err(pg::pg_err)?;
    Ok((old.kid().to_string(), new.kid().to_string()))
}

/// `meta.ed25519_retired` with `old` added first.
fn retire(old: &Ed25519Key, retired: &[[u8; 32]]) -> Vec<u8> {
    std::iter::once(old.public_key()).chain(retired.iter().copied()).flatten().collect()
}

/// The (kid, public key) pairs a facilitator on this SQLite file publishes in its JWKS: the
/// signing key's and the retired ones' (readable without the master key).
pub fn published_keys_sqlite(conn: &Connection) -> Result<Vec<(String, [u8; 32])>> {
    let get = |k: &str| {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(db::db_err)
    };
    published(get(META_ED25519_PUBLIC)?, get(META_ED25519_SEED)?, get(META_ED25519_RETIRED)?)
}

/// The same on PostgreSQL.
pub async fn published_keys_postgres(url: &str) -> Result<Vec<(String, [u8; 32])>> {
    let client = pg::connect(&pg::config(url)?).await.map_err(pg::pg_err)?;
    let mut got = Vec::new();
    for k in [META_ED25519_PUBLIC, META_ED25519_SEED, META_ED25519_RETIRED] {
        let v: Option<Vec<u8>> = client
            .query_opt("SELECT value FROM vlexivo.meta WHERE key = $1", &[&k])
            .await
            .map_err(pg::pg_err)?
            .map(|r| r.get(0));
        got.push(v);
    }
    let retired = got.pop().flatten();
    let seed = got.pop().flatten();
    published(got.pop().flatten(), seed, retired)
}

/// The JWKS keys from what `meta` holds; a database from before the public half was stored
/// has a plain seed to derive it from.
fn published(
    public: Option<Vec<u8>>,
    seed: Option<Vec<u8>>,
    retired: Option<Vec<u8>>,
) -> Result<Vec<(String, [u8; 32])>> {
    let current = match (public, seed) {
        (Some(p), _) => Some(public_key(&p)?),
        (None, Some(s)) if s.len() == 32 => {
            Some(Ed25519Key::from_seed(s.try_into().expect("32 bytes"))?.public_key())
        }
        _ => None,
    };
    let mut keys: Vec<[u8; 32]> = current.into_iter().collect();
    keys.extend(retired_keys(retired.as_deref())?);
    Ok(keys.into_iter().map(|k| (vlexivo_core::token::kid_of(&k), k)).collect())
}

fn public_key(v: &[u8]) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| Error::Config("stored Ed25519 public key is not 32 bytes".into()))
}

/// Retired signing keys' public halves, newest first (`meta.ed25519_retired`, 32 bytes each).
fn retired_keys(v: Option<&[u8]>) -> Result<Vec<[u8; 32]>> {
    let v = v.unwrap_or_default();
    if !v.len().is_multiple_of(32) {
        return Err(Error::Config("stored retired Ed25519 keys are not 32-byte keys".into()));
    }
    Ok(v.chunks(32).map(|c| c.try_into().expect("32 bytes")).collect())
}

/// Open the database, start the ledger and serve on `cfg.addr`. Returns once the socket is
/// bound and the service is ready.
pub async fn spawn(cfg: ServerConfig) -> Result<RunningServer> {
    if cfg.live.is_some() && cfg.master_key.is_none() {
        // Every provider of a live facilitator is live (at_rest's rule for their keys).
        return Err(Error::Config(
            "live mode keeps the providers' keys sealed at rest: set VLX_MASTER_KEY (--master-key)".into(),
        ));
    }
    let faucet_cap = Money::parse(&cfg.faucet_cap, Currency::Usd)
        .map_err(|e| Error::Config(format!("faucet cap: {e}")))?
        .to_atomic();
    let default_alg = TokenAlg::parse(&cfg.token_alg)
        .map_err(|_| Error::Config("token algorithm must be HS256 or EdDSA".into()))?;
    let tls = match &cfg.tls {
        None => None,
        Some(t) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key).await.map_err(|e| {
                Error::Config(format!("TLS certificate {} or key {}: {e}", t.cert.display(), t.key.display()))
            })?,
        ),
    };
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", cfg.addr)))?;
    let addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
    let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    // Challenges name the facilitator they are paid at, and this one refuses any other name:
    // its public URL must be the one providers configure (the bound URL unless told).
    let public_url = match cfg.public_url.as_deref() {
        Some(u) => vlexivo_core::base_url::normalize(u).ok_or_else(|| {
            Error::Config(
                "public URL must be an absolute http(s) URL without credentials, query or fragment".into(),
            )
        })?,
        None if addr.ip().is_unspecified() => {
            return Err(Error::Config(format!(
                "listening on {addr} needs a public URL (--public-url): challenges name the facilitator \
                 by the URL payers reach it at"
            )));
        }
        None => url.clone(),
    };

    let metrics = metrics::Metrics::default();
    let at_rest = Arc::new(at_rest::AtRest::new(cfg.master_key.clone()));
    let ((key, retired, rows), ledger, writer, reads) = match &cfg.database_url {
        None => {
            let db_path = cfg.db_path.clone();
            let entropy = cfg.entropy.clone();
            let sealing = at_rest.clone();
            let (conn, loaded, readers) = tokio::task::spawn_blocking(move || -> Result<_> {
                let conn = db::open_rw(&db_path)?;
                let loaded = load(&conn, entropy.as_ref(), &sealing)?;
                let readers = (0..READERS).map(|_| db::open_ro(&db_path)).collect::<Result<Vec<_>>>()?;
                Ok((conn, loaded, readers))
            })
            .await
            .map_err(|e| Error::Internal(format!("startup task: {e}")))??;
            let (ledger, writer) = ledger::sqlite::start(
                conn,
                &cfg.db_path,
                faucet_cap,
                public_url.clone(),
                cfg.durability,
                metrics.ledger_times.clone(),
            )?;
            (loaded, ledger, Writer::Thread(writer), Reads::Sqlite(reads::SqliteReaders::new(readers)))
        }
        Some(url) => {
            let (pg_cfg, client) = pg::open(url).await?;
            let loaded = reads::load_pg(&client, cfg.entropy.as_ref(), &at_rest).await?;
            let pool = pg::pool(&pg_cfg, PG_READERS)?;
            let errors = metrics.db_errors.clone();
            let (ledger, writer) = ledger::postgres::start(
                pg_cfg,
                client,
                faucet_cap,
                public_url.clone(),
                cfg.db_retry_for,
                errors,
            )
            .await?;
            (loaded, ledger, Writer::Task(writer), Reads::Postgres(pool))
        }
    };

    let live = match &cfg.live {
        None => None,
        Some(lc) => {
            let store = match &cfg.database_url {
                None => {
                    let path = cfg.db_path.clone();
                    let conn = tokio::task::spawn_blocking(move || db::open_rw(&path))
                        .await
                        .map_err(|e| Error::Internal(format!("startup task: {e}")))??;
                    live::store::LiveStore::Sqlite(Arc::new(parking_lot::Mutex::new(conn)))
                }
                Some(url) => live::store::LiveStore::Postgres(pg::pool(&pg::config(url)?, PG_READERS)?),
            };
            Some(live::Live::start(lc, store, cfg.clock.clone()).await?)
        }
    };
    let follower = live.as_ref().zip(cfg.live.as_ref()).map(|(l, lc)| l.spawn_follower(lc.chain.poll));
    // The signing key first, then the retired ones (their tokens and checkpoints still verify).
    let mut jwks = vlexivo_core::token::jwks(&[&key]);
    jwks.keys.extend(retired.iter().map(vlexivo_core::token::public_jwk));
    let jwks_json = serde_json::to_string(&jwks).map_err(|e| Error::Internal(e.to_string()))?;
    let eddsa = Arc::new(TokenIssuer::new(SigningKey::EdDsa(key.clone()))?);
    let mut providers = HashMap::with_capacity(rows.len());
    for r in rows {
        let p = r.into_provider(&eddsa, &at_rest)?;
        providers.insert(p.key_account.clone(), (Arc::new(p), std::time::Instant::now()));
    }
    let n_providers = providers.len();
    let state = Arc::new(AppState {
        ledger,
        providers: RwLock::new(providers),
        reads,
        metrics,
        eddsa,
        cursors: vlexivo_core::paging::CursorKey::derive(&key.seed()),
        sessions: dashboard::Sessions::default(),
        signing_key: key,
        default_alg,
        jwks_json,
        openapi_json: openapi::document(&public_url),
        public_url: public_url.clone(),
        clock: cfg.clock.clone(),
        entropy: cfg.entropy.clone(),
        at_rest,
        live,
        issuer_url: public_url.clone(),
        limit: shed::Limit::new(cfg.max_in_flight),
    });
    let app = router(state.clone(), &cfg.cors);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        }),
        // TLS handshakes run per connection (axum-server), so a slow client cannot hold up
        // the accept loop.
        Some(tls) => {
            let listener = listener.into_std().map_err(|e| Error::Internal(e.to_string()))?;
            let server =
                axum_server::from_tcp_rustls(listener, tls).map_err(|e| Error::Internal(e.to_string()))?;
            let handle = axum_server::Handle::new();
            let on_stop = handle.clone();
            tokio::spawn(async move {
                let _ = stopped.await;
                on_stop.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            tokio::spawn(async move { server.handle(handle).serve(app.into_make_service()).await })
        }
    };
    tracing::info!(
        %url,
        issuer = %public_url,
        db = %cfg.database_url.as_deref().map(vlexivo_core::store::spec::redact).unwrap_or_else(|| cfg.db_path.display().to_string()),
        providers = n_providers,
        faucet_cap = %cfg.faucet_cap,
        durability = ?cfg.durability,
        "facilitator listening"
    );
    Ok(RunningServer { addr, url, public_url, state, stop, server, writer, follower })
}
