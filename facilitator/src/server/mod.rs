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
//! Writes go through one ledger thread with group commit (`ledger`); reads (balances, payment
//! lists) use a small pool of read-only connections, which WAL lets run beside the writer.

mod api;
pub mod db;
// Test only, and the one place this crate needs unsafe: a SQLite VFS shim.
#[cfg(test)]
#[allow(unsafe_code)]
mod failing_fsync;
pub mod ledger;
pub mod metrics;
pub mod types;

use axum::Router;
use axum::routing::{get, post};
use ledger::{Ledger, Provider, TokenAlg};
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
pub use ledger::{Durability, VerifyError, VerifySummary, verify_ledger};

/// Default listen address of `vlexivo serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4020";
/// Default faucet cap: the most a sandbox wallet may receive from the faucet, in total.
pub const DEFAULT_FAUCET_CAP: &str = "1000";
/// Read-only connections for GET endpoints.
const READERS: usize = 4;
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
            faucet_cap: DEFAULT_FAUCET_CAP.into(),
            public_url: None,
            token_alg: "HS256".into(),
            durability: Durability::Full,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            tls: None,
        }
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    ledger: Ledger,
    providers: RwLock<HashMap<String, Arc<Provider>>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    metrics: metrics::Metrics,
    eddsa: Arc<TokenIssuer>,
    default_alg: TokenAlg,
    jwks_json: String,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl AppState {
    fn provider(&self, account: &str) -> Option<Arc<Provider>> {
        self.providers.read().get(account).cloned()
    }

    /// Run a read on a pooled read-only connection, off the async workers.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || {
            let start = st.next_reader.fetch_add(1, Ordering::Relaxed);
            // Take a free connection if there is one; otherwise wait on our turn's.
            let n = st.readers.len();
            let guard = (0..n)
                .find_map(|i| st.readers[(start + i) % n].try_lock())
                .unwrap_or_else(|| st.readers[start % n].lock());
            f(&guard).map_err(db::db_err)
        })
        .await
        .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }

    async fn wallet_balance(self: &Arc<Self>, address: Address) -> Result<i64> {
        let id = ledger::wallet_id(&address);
        self.read(move |c| {
            c.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()
                .map(|b| b.unwrap_or(0))
        })
        .await
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
        self.metrics.providers_created.fetch_add(1, Ordering::Relaxed);
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
        self.metrics.topups.fetch_add(1, Ordering::Relaxed);
        self.metrics.amount_topped_up_atomic.fetch_add(done.amount, Ordering::Relaxed);
        Ok(TopUpReceipt {
            address: done.address,
            amount: amount.to_string(),
            balance: api::usd(done.balance as i64),
            currency: "usd".into(),
            tx_hash: done.tx_hash,
        })
    }
}

fn router(st: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/providers", post(api::create_provider))
        .route("/v1/providers/me", get(api::provider_me))
        .route("/v1/providers/me/payments", get(api::provider_payments))
        .route("/v1/payments", post(api::pay))
        .route("/v1/wallets/{address}", get(api::wallet_balance))
        .route("/v1/wallets/{address}/topup", post(api::top_up))
        .route("/.well-known/jwks.json", get(api::jwks))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route_layer(axum::middleware::from_fn_with_state(st.clone(), api::track))
        .fallback(api::not_found)
        .with_state(st)
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
    writer: std::thread::JoinHandle<()>,
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
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        tracing::info!("facilitator stopped");
    }
}

/// Load (or create, once) the facilitator's Ed25519 key and every provider.
fn load(conn: &Connection, entropy: &dyn Entropy) -> Result<(Ed25519Key, Vec<ProviderRow>)> {
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
    let mut s = conn
        .prepare(
            "SELECT account, mode, token_alg, name, challenge_mac, token_hs256, auth_digest, created_at FROM providers",
        )
        .map_err(db::db_err)?;
    let rows = s
        .query_map([], |r| {
            Ok(ProviderRow {
                account: r.get(0)?,
                mode: r.get(1)?,
                token_alg: r.get(2)?,
                name: r.get(3)?,
                challenge_mac: r.get(4)?,
                token_hs256: r.get(5)?,
                auth_digest: r.get(6)?,
                created_at: r.get(7)?,
            })
        })
        .map_err(db::db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db::db_err)?;
    Ok((key, rows))
}

struct ProviderRow {
    account: String,
    mode: String,
    token_alg: String,
    name: Option<String>,
    challenge_mac: Vec<u8>,
    token_hs256: Vec<u8>,
    auth_digest: Vec<u8>,
    created_at: i64,
}

fn key32(v: Vec<u8>) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| Error::Config("stored provider key is not 32 bytes".into()))
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
                Error::Config(format!(
                    "TLS certificate {} or key {}: {e}",
                    t.cert.display(),
                    t.key.display()
                ))
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

    let db_path = cfg.db_path.clone();
    let entropy = cfg.entropy.clone();
    let (conn, key, rows, readers) = tokio::task::spawn_blocking(move || -> Result<_> {
        let conn = db::open_rw(&db_path)?;
        let (key, rows) = load(&conn, entropy.as_ref())?;
        let readers =
            (0..READERS).map(|_| db::open_ro(&db_path).map(Mutex::new)).collect::<Result<Vec<_>>>()?;
        Ok((conn, key, rows, readers))
    })
    .await
    .map_err(|e| Error::Internal(format!("startup task: {e}")))??;

    let jwks_json = serde_json::to_string(&vlexivo_core::token::jwks(&[&key]))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let eddsa = Arc::new(TokenIssuer::new(SigningKey::EdDsa(key))?);
    let mut providers = HashMap::with_capacity(rows.len());
    for r in rows {
        let token_alg = TokenAlg::parse(&r.token_alg)?;
        let token_hs256 = key32(r.token_hs256)?;
        let issuer = match token_alg {
            TokenAlg::Hs256 => Arc::new(TokenIssuer::new(SigningKey::Hs256(token_hs256))?),
            TokenAlg::EdDsa => eddsa.clone(),
        };
        let p = Provider {
            account: r.account.clone(),
            mode: r.mode.parse()?,
            token_alg,
            name: r.name,
            challenge_mac: key32(r.challenge_mac)?,
            token_hs256,
            auth_digest: key32(r.auth_digest)?,
            created_at: r.created_at as u64,
            issuer,
        };
        providers.insert(r.account, Arc::new(p));
    }
    let n_providers = providers.len();
    let (ledger, writer) = Ledger::start(conn, &cfg.db_path, faucet_cap, public_url.clone(), cfg.durability)?;
    let state = Arc::new(AppState {
        ledger,
        providers: RwLock::new(providers),
        readers,
        next_reader: AtomicUsize::new(0),
        metrics: metrics::Metrics::default(),
        eddsa,
        default_alg,
        jwks_json,
        clock: cfg.clock.clone(),
        entropy: cfg.entropy.clone(),
    });
    let app = router(state.clone());
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
            let server = axum_server::from_tcp_rustls(listener, tls).map_err(|e| Error::Internal(e.to_string()))?;
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
        db = %cfg.db_path.display(),
        providers = n_providers,
        faucet_cap = %cfg.faucet_cap,
        durability = ?cfg.durability,
        "facilitator listening"
    );
    Ok(RunningServer { addr, url, public_url, state, stop, server, writer })
}
