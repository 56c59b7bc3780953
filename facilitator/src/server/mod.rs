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
pub mod checkpoint;
pub mod db;
// Test only, and the one place this crate needs unsafe: a SQLite VFS shim.
#[cfg(test)]
#[allow(unsafe_code)]
mod failing_fsync;
pub mod ledger;
pub mod metrics;
mod openapi;
pub mod pg;
mod providers;
mod reads;
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
use types::{CreateProviderRequest, ProviderCreated, TopUpReceipt};
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
        }
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    ledger: Ledger,
    providers: RwLock<HashMap<String, Arc<Provider>>>,
    reads: Reads,
    metrics: metrics::Metrics,
    eddsa: Arc<TokenIssuer>,
    /// Signs ledger checkpoints (the key behind `eddsa`).
    signing_key: Ed25519Key,
    public_url: String,
    default_alg: TokenAlg,
    jwks_json: String,
    openapi_json: String,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl AppState {
    /// A provider: from the cache, else from the database (another facilitator sharing it
    /// may have onboarded the provider since this one started).
    async fn provider(&self, account: &str) -> Result<Option<Arc<Provider>>> {
        if let Some(p) = self.providers.read().get(account).cloned() {
            return Ok(Some(p));
        }
        let Some(row) = self.reads.provider(account.to_string()).await? else { return Ok(None) };
        let p = Arc::new(row.into_provider(&self.eddsa)?);
        self.providers.write().insert(p.account.clone(), p.clone());
        Ok(Some(p))
    }

    async fn wallet_balance(&self, address: Address) -> Result<i64> {
        self.reads.balance(ledger::wallet_id(&address)).await
    }

    async fn create_provider(&self, req: CreateProviderRequest) -> Result<ProviderCreated> {
        let mode = match req.mode.as_deref() {
            None => Mode::Sandbox,
            Some(m) => {
                m.parse::<Mode>().map_err(|_| Error::RequestMalformed("mode must be \"sandbox\"".into()))?
            }
        };
        if mode != Mode::Sandbox {
            return Err(Error::ModeMismatch { expected: "sandbox".into(), got: mode.as_str().into() });
        }
        let token_alg = match req.token_alg.as_deref() {
            None => self.default_alg,
            Some(a) => TokenAlg::parse(a)
                .map_err(|_| Error::RequestMalformed("token_alg must be \"HS256\" or \"EdDSA\"".into()))?,
        };
        let name = req.name.map(|n| n.chars().take(200).collect::<String>());
        let secret = generate_secret(mode, self.entropy.as_ref());
        let keys = ProviderKeys::from_secret(&secret)?;
        let issuer = match token_alg {
            TokenAlg::Hs256 => Arc::new(TokenIssuer::new(SigningKey::Hs256(keys.token_hs256))?),
            TokenAlg::EdDsa => self.eddsa.clone(),
        };
        let p = Arc::new(Provider {
            account: keys.account.clone(),
            mode,
            token_alg,
            name,
            challenge_mac: keys.challenge_mac,
            token_hs256: keys.token_hs256,
            auth_digest: keys.auth_digest,
            created_at: self.clock.now(),
            issuer,
        });
        self.ledger.create_provider(p.clone()).await?;
        self.providers.write().insert(p.account.clone(), p);
        self.metrics.providers_created.inc();
        tracing::info!(account = %keys.account, token_alg = token_alg.as_str(), "provider created");
        Ok(ProviderCreated {
            account: keys.account.clone(),
            publishable_key: keys.publishable_key(),
            api_secret: secret,
            mode: mode.as_str().into(),
            token_alg: token_alg.as_str().into(),
        })
    }

    async fn top_up(&self, address: Address, amount: Money) -> Result<TopUpReceipt> {
        let amount = amount.positive()?;
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
    Router::new()
        .route("/v1/providers", post(api::create_provider))
        .route("/v1/providers/me", get(api::provider_me))
        .route("/v1/providers/me/payments", get(api::provider_payments))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .merge(browser)
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
            })
            .await
    }

    /// Faucet top-up in-process (same as `POST /v1/wallets/{address}/topup`).
    pub async fn top_up(&self, address: &str, amount: &str) -> Result<TopUpReceipt> {
        let address = Address::parse(address)?;
        self.state.top_up(address, Money::parse(amount, Currency::Usd)?).await
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

/// Load (or create, once) the facilitator's Ed25519 key and every provider.
fn load(conn: &Connection, entropy: &dyn Entropy) -> Result<(Ed25519Key, Vec<providers::ProviderRow>)> {
    let seed: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_ED25519_SEED], |r| r.get(0))
        .optional()
        .map_err(db::db_err)?;
    let key = match seed {
        Some(s) => {
            let seed: [u8; 32] =
                s.try_into().map_err(|_| Error::Config("stored Ed25519 seed is not 32 bytes".into()))?;
            Ed25519Key::from_seed(seed)?
        }
        None => {
            let key = Ed25519Key::generate(entropy);
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                rusqlite::params![META_ED25519_SEED, &key.seed()[..]],
            )
            .map_err(db::db_err)?;
            key
        }
    };
    let rows = conn
        .prepare(&format!("SELECT {} FROM providers", providers::COLUMNS))
        .and_then(|mut s| {
            s.query_map([], providers::ProviderRow::from_sqlite)?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db::db_err)?;
    Ok((key, rows))
}

/// The (kid, public key) pairs a facilitator on this SQLite file publishes in its JWKS.
pub fn published_keys_sqlite(conn: &Connection) -> Result<Vec<(String, [u8; 32])>> {
    let seed: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_ED25519_SEED], |r| r.get(0))
        .optional()
        .map_err(db::db_err)?;
    seed.map(|s| published(&s)).transpose().map(Option::unwrap_or_default)
}

/// The same on PostgreSQL.
pub async fn published_keys_postgres(url: &str) -> Result<Vec<(String, [u8; 32])>> {
    let client = pg::connect(&pg::config(url)?).await.map_err(pg::pg_err)?;
    let seed: Option<Vec<u8>> = client
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&META_ED25519_SEED])
        .await
        .map_err(pg::pg_err)?
        .map(|r| r.get(0));
    seed.map(|s| published(&s)).transpose().map(Option::unwrap_or_default)
}

fn published(seed: &[u8]) -> Result<Vec<(String, [u8; 32])>> {
    let seed: [u8; 32] =
        seed.try_into().map_err(|_| Error::Config("stored Ed25519 seed is not 32 bytes".into()))?;
    let key = Ed25519Key::from_seed(seed)?;
    Ok(vec![(key.kid().to_string(), key.public_key())])
}

/// Open the database, start the ledger and serve on `cfg.addr`. Returns once the socket is
/// bound and the service is ready.
pub async fn spawn(cfg: ServerConfig) -> Result<RunningServer> {
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
    let public_url =
        cfg.public_url.as_deref().map(|u| u.trim_end_matches('/').to_string()).unwrap_or_else(|| url.clone());

    let metrics = metrics::Metrics::default();
    let (key, rows, ledger, writer, reads) = match &cfg.database_url {
        None => {
            let db_path = cfg.db_path.clone();
            let entropy = cfg.entropy.clone();
            let (conn, key, rows, readers) = tokio::task::spawn_blocking(move || -> Result<_> {
                let conn = db::open_rw(&db_path)?;
                let (key, rows) = load(&conn, entropy.as_ref())?;
                let readers = (0..READERS).map(|_| db::open_ro(&db_path)).collect::<Result<Vec<_>>>()?;
                Ok((conn, key, rows, readers))
            })
            .await
            .map_err(|e| Error::Internal(format!("startup task: {e}")))??;
            let (ledger, writer) =
                ledger::sqlite::start(conn, &cfg.db_path, faucet_cap, public_url.clone(), cfg.durability)?;
            (key, rows, ledger, Writer::Thread(writer), Reads::Sqlite(reads::SqliteReaders::new(readers)))
        }
        Some(url) => {
            let (pg_cfg, client) = pg::open(url).await?;
            let (seed, rows) =
                reads::load_pg(&client, Ed25519Key::generate(cfg.entropy.as_ref()).seed()).await?;
            let key = Ed25519Key::from_seed(seed)?;
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
            (key, rows, ledger, Writer::Task(writer), Reads::Postgres(pool))
        }
    };

    let jwks_json = serde_json::to_string(&vlexivo_core::token::jwks(&[&key]))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let eddsa = Arc::new(TokenIssuer::new(SigningKey::EdDsa(key.clone()))?);
    let mut providers = HashMap::with_capacity(rows.len());
    for r in rows {
        let p = r.into_provider(&eddsa)?;
        providers.insert(p.account.clone(), Arc::new(p));
    }
    let n_providers = providers.len();
    let state = Arc::new(AppState {
        ledger,
        providers: RwLock::new(providers),
        reads,
        metrics,
        eddsa,
        signing_key: key,
        public_url: public_url.clone(),
        default_alg,
        jwks_json,
        openapi_json: openapi::document(&public_url),
        clock: cfg.clock.clone(),
        entropy: cfg.entropy.clone(),
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
    Ok(RunningServer { addr, url, public_url, state, stop, server, writer })
}
