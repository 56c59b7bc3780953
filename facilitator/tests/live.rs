//! The facilitator in live mode against a real anvil with Circle's FiatTokenV2_2: the same
//! paid API and Rust client as sandbox, paying on chain payer → provider's payout address,
//! with the settlement records the provider reads, across restarts and under load.

mod service_support;

use service_support::get_authed;
use std::sync::Arc;
use std::time::Duration;
use vlexivo_client::VlexivoClient;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{Paywall, PaywallConfig};
use vlexivo_core::store::MemoryStore;
use vlexivo_core::wallet::{Address, Wallet};
use vlexivo_facilitator::demo::paid_api;
use vlexivo_facilitator::server::at_rest::MasterKey;
use vlexivo_facilitator::server::live::{BatchConfig, LiveConfig};
use vlexivo_facilitator::server::types::ProviderCreated;
use vlexivo_facilitator::server::{self, RunningServer, ServerConfig};
use vlexivo_live::ChainConfig;
use vlexivo_live::devnet::Devnet;
use vlexivo_live::verify::{Expected, verify_payment};

struct Env {
    net: Devnet,
    srv: Option<RunningServer>,
    provider: ProviderCreated,
    payout: Address,
    api: String,
    dir: tempfile::TempDir,
    confirmations: u64,
    batch: Option<BatchConfig>,
    /// The facilitator's PostgreSQL database (its SQLite file in `dir` otherwise).
    database_url: Option<String>,
}

fn live_config(net: &Devnet, confirmations: u64) -> LiveConfig {
    live_config_via(net, &net.rpc_url, confirmations)
}

fn live_config_via(net: &Devnet, rpc_url: &str, confirmations: u64) -> LiveConfig {
    LiveConfig {
        chain: ChainConfig {
            rpc_url: rpc_url.to_string(),
            token: net.token,
            relayer_key: net.dev_key(1),
            poll: Duration::from_millis(20),
        },
        confirmations,
        confirm_timeout: Duration::from_secs(30),
        batch: None,
    }
}

fn master_key() -> Option<Arc<MasterKey>> {
    Some(Arc::new(MasterKey::parse(&"42".repeat(32)).unwrap()))
}

async fn facilitator(
    net: &Devnet,
    rpc_url: &str,
    dir: &std::path::Path,
    confirmations: u64,
    batch: Option<BatchConfig>,
    database_url: Option<String>,
) -> RunningServer {
    server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.join("f.db"),
        database_url,
        live: Some(LiveConfig { batch, ..live_config_via(net, rpc_url, confirmations) }),
        master_key: master_key(),
        ..ServerConfig::default()
    })
    .await
    .expect("live facilitator")
}

/// A sandbox facilitator with its database in `dir`.
async fn sandbox_facilitator(dir: &std::path::Path) -> RunningServer {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.join("s.db"),
        ..ServerConfig::default()
    };
    server::spawn(cfg).await.unwrap()
}

/// A provider's payment records at the facilitator `url`, newest first.
async fn payments_at(url: &str, api_secret: &str) -> Vec<serde_json::Value> {
    let (s, v) = provider_get(url, api_secret, "/v1/providers/me/payments").await;
    assert_eq!(s, 200, "{v}");
    v["payments"].as_array().unwrap().clone()
}

/// `GET {url}{path}` with the provider's secret: status and JSON.
async fn provider_get(url: &str, api_secret: &str, path: &str) -> (u16, serde_json::Value) {
    get_authed(&reqwest::Client::new(), &format!("{url}{path}"), api_secret).await
}

/// The payments list read in pages of `page` (following `next_cursor`) and under each filter
/// agrees with the whole list, and revenue and each payer's usage with its records.
async fn paging_agrees(env: &Env, page: usize) {
    let (url, secret) = (&env.srv().url, &env.provider.api_secret);
    let all = payments_at(url, secret).await;
    assert!(all.len() > page, "more records than a page: {}", all.len());
    let key = |r: &serde_json::Value| r["nonce"].as_str().unwrap().to_string();
    let pages = |query: String| async move {
        let (mut got, mut cursor, mut n) = (Vec::new(), String::new(), 0);
        loop {
            let (s, v) =
                provider_get(url, secret, &format!("/v1/providers/me/payments?limit={page}{query}{cursor}"))
                    .await;
            assert_eq!(s, 200, "{v}");
            let rows = v["payments"].as_array().unwrap();
            assert!(rows.len() <= page);
            got.extend(rows.iter().cloned());
            n += 1;
            assert!(n <= 1_000, "the cursor ends");
            match v["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return got,
            }
        }
    };
    let paged = pages(String::new()).await;
    assert_eq!(paged.iter().map(key).collect::<Vec<_>>(), all.iter().map(key).collect::<Vec<_>>());
    let times: Vec<u64> = all.iter().map(|r| r["paid_at"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let payer = all[0]["payer"].as_str().unwrap();
    let route = all[all.len() - 1]["resource"].as_str().unwrap();
    let from = times[times.len() / 2];
    for (query, keep) in [
        (
            format!("&payer={}", payer.to_lowercase()),
            Box::new(|r: &serde_json::Value| r["payer"] == payer) as Box<dyn Fn(&serde_json::Value) -> bool>,
        ),
        (
            format!("&route={}", route.replace(' ', "%20")),
            Box::new(|r: &serde_json::Value| r["resource"] == route),
        ),
        (
            format!("&from={from}"),
            Box::new(move |r: &serde_json::Value| r["paid_at"].as_u64().unwrap() >= from),
        ),
        (format!("&to={from}"), Box::new(move |r: &serde_json::Value| r["paid_at"].as_u64().unwrap() < from)),
    ] {
        let want: Vec<_> = all.iter().filter(|r| keep(r)).map(key).collect();
        assert_eq!(pages(query.clone()).await.iter().map(key).collect::<Vec<_>>(), want, "{query}");
    }
    let paid: Vec<_> = all.iter().filter(|r| r["state"] != "failed").collect();
    let micro =
        |r: &&serde_json::Value| (r["amount"].as_str().unwrap().parse::<f64>().unwrap() * 1e6).round() as u64;
    let (s, me) = provider_get(url, secret, "/v1/providers/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["revenue"]["count"], paid.len() as u64, "{me}");
    let total = paid.iter().map(micro).sum::<u64>();
    assert_eq!(
        (me["revenue"]["total"].as_str().unwrap().parse::<f64>().unwrap() * 1e6).round() as u64,
        total,
        "{me}"
    );
    let (s, usage) =
        provider_get(url, secret, &format!("/v1/providers/me/payers/{payer}/usage?since={from}")).await;
    assert_eq!(s, 200);
    let mine = paid.iter().filter(|r| r["payer"] == payer && r["paid_at"].as_u64().unwrap() >= from).count();
    assert_eq!(usage["count"], mine as u64, "{usage}");
    // The dashboard's overview groups the same records.
    let html = dashboard_get(url, secret, "/dashboard?range=all&bucket=hour").await;
    assert!(html.contains(&format!("<dd id=\"count\">{}</dd>", paid.len())), "{html}");
    assert!(
        html.contains(&format!("<dd id=\"revenue\">${}</dd>", me["revenue"]["total"].as_str().unwrap())),
        "{html}"
    );
    let of_payer = paid.iter().filter(|r| r["payer"] == payer).count();
    assert!(html.contains(&format!(">{payer}</a></td><td class=\"num\">{of_payer}</td>")), "{html}");
    let of_route = paid.iter().filter(|r| r["resource"] == route).count();
    assert!(
        html.contains(&format!(">{}</a></td><td class=\"num\">{of_route}</td>", route.replace('&', "&amp;"))),
        "{html}"
    );
}

/// The demo's paid API behind a paywall configured by `cfg`, on a free loopback port: its URL.
async fn serve_api(cfg: PaywallConfig) -> String {
    let app = paid_api(Arc::new(Paywall::new(cfg).unwrap()), Arc::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    api
}

async fn setup(confirmations: u64) -> Env {
    let net = Devnet::start().await.expect("devnet (npm ci --prefix live/devnet)");
    setup_on(net, None, confirmations, None).await
}

/// A live facilitator that batches its relays through a Multicall3 deployed on the devnet:
/// the payments arriving within `window_ms` go out together.
async fn setup_batched(confirmations: u64, window_ms: u64) -> Env {
    let net = Devnet::start().await.expect("devnet (npm ci --prefix live/devnet)");
    let multicall = net.deploy_multicall3().await.unwrap();
    let batch = BatchConfig { multicall, window: Duration::from_millis(window_ms), max: 50 };
    setup_on(net, None, confirmations, Some(batch)).await
}

/// The facilitator reaches the chain at `rpc_url` (default: anvil's own).
async fn setup_on(net: Devnet, rpc_url: Option<&str>, confirmations: u64, batch: Option<BatchConfig>) -> Env {
    setup_in(net, rpc_url, confirmations, batch, None).await
}

async fn setup_in(
    net: Devnet,
    rpc_url: Option<&str>,
    confirmations: u64,
    batch: Option<BatchConfig>,
    database_url: Option<String>,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rpc_url = rpc_url.unwrap_or(&net.rpc_url);
    let srv =
        facilitator(&net, rpc_url, dir.path(), confirmations, batch.clone(), database_url.clone()).await;
    let payout = net.dev_address(2);
    let provider = srv.create_live_provider(Some("live api"), &payout.to_checksum()).await.unwrap();
    assert!(provider.api_secret.starts_with("sk_live_"), "{}", provider.mode);
    let terms = provider.terms.as_ref().expect("a live provider gets its terms").to_terms().unwrap();
    let mut cfg = PaywallConfig::new(provider.api_secret.clone());
    cfg.facilitator_url = srv.url.clone();
    cfg.live = Some(terms);
    let api = serve_api(cfg).await;
    Env { net, srv: Some(srv), provider, payout, api, dir, confirmations, batch, database_url }
}

impl Env {
    fn srv(&self) -> &RunningServer {
        self.srv.as_ref().unwrap()
    }

    async fn payer(&self, atomic: u64) -> Wallet {
        let w = Wallet::generate(&OsEntropy);
        if atomic > 0 {
            self.net.mint(w.address(), atomic).await.unwrap();
        }
        w
    }

    fn client(&self, w: &Wallet) -> VlexivoClient {
        VlexivoClient::builder().wallet(w.clone()).facilitator_url(Some(&self.srv().url)).build().unwrap()
    }

    /// The provider's payment records, as `GET /v1/providers/me/payments` serves them.
    async fn payments(&self) -> Vec<serde_json::Value> {
        payments_at(&self.srv().url, &self.provider.api_secret).await
    }

    /// Until every record has left `submitted` (the follower's work), or 20 s.
    async fn settled(&self) -> Vec<serde_json::Value> {
        for _ in 0..400 {
            let p = self.payments().await;
            if p.iter().all(|r| r["state"] != "submitted") {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("settlements still pending: {:?}", self.payments().await);
    }

    async fn restart(&mut self) {
        if let Some(s) = self.srv.take() {
            s.shutdown().await;
        }
        self.srv = Some(
            facilitator(
                &self.net,
                &self.net.rpc_url,
                self.dir.path(),
                self.confirmations,
                self.batch.clone(),
                self.database_url.clone(),
            )
            .await,
        );
    }
}

async fn relayer_nonce(net: &Devnet) -> u64 {
    use alloy::providers::Provider;
    net.admin().get_transaction_count(vlexivo_live::chain::evm(&net.dev_address(1))).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_call_moves_the_price_payer_to_provider_on_chain() {
    let env = setup(0).await;
    let w = env.payer(1_000_000).await;
    let client = env.client(&w);
    let res = client.get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    let receipt = vlexivo_client::receipt_of(&res).cloned().expect("a receipt");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["paid"], "0.001");
    assert_eq!(receipt.amount, "0.001");
    assert_eq!(receipt.balance, "0.999", "on chain, less this payment in flight");

    let rows = env.settled().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "confirmed", "{rows:?}");
    assert_eq!(rows[0]["tx_hash"], receipt.tx_hash.as_str());
    assert!(rows[0]["block"].as_u64().unwrap() > 0);
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 999_000);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);

    // The provider checks the hash on chain: payer, payee, amount, token.
    let expected = Expected {
        token: env.net.token,
        payer: w.address(),
        payee: env.payout,
        amount: 1_000,
        confirmations: 1,
        authorization_nonce: None,
    };
    let hash = receipt.tx_hash.parse().unwrap();
    verify_payment(env.srv().live().unwrap().chain.provider(), hash, &expected).await.unwrap();
    // And with `vlexivo verify-payment`: the payment as it is, then each field wrong.
    let cli = |rpc: &str, amount: &str, payee: &Address| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"))
            .args(["verify-payment", &receipt.tx_hash, "--json", "--rpc-url", rpc])
            .args(["--asset", &env.net.token.to_checksum(), "--payer", &w.address().to_checksum()])
            .args(["--payee", &payee.to_checksum(), "--amount", amount])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let rpc = env.net.rpc_url.as_str();
    let (code, v, _) = cli(rpc, "0.001", &env.payout);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["block"], rows[0]["block"]);
    assert_eq!((v["transfers"].as_u64(), v["amount"].as_str()), (Some(1), Some("0.001")), "{v}");
    let (code, v, _) = cli(rpc, "0.002", &env.payout);
    assert_eq!(code, 1, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("transfer_mismatch"), "{v}");
    let (code, _, _) = cli(rpc, "0.001", &w.address());
    assert_eq!(code, 1, "another payee");
    // The RPC down: exit 5, chain_unavailable, and the URL's API key is printed nowhere.
    // Bound and never listening: refused, and no other process can take the port meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = reserved.local_addr().unwrap().port();
    let (code, v, stderr) = cli(&format!("http://127.0.0.1:{closed}/v3/key-s3cr3t"), "0.001", &env.payout);
    assert_eq!(code, 5, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("chain_unavailable"), "{v}");
    assert!(!v.to_string().contains("s3cr3t") && !stderr.contains("s3cr3t"), "{v} {stderr}");

    // Revenue and the wallet balance read the chain.
    assert_eq!(client.balance().await.unwrap().to_string(), "0.999");
    let (s, me) = provider_get(&env.srv().url, &env.provider.api_secret, "/v1/providers/me").await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["revenue"]["total"], "0.001");
    assert_eq!(me["terms"]["pay_to"], env.payout.to_checksum().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_confirmation_the_proof_waits_for_the_block() {
    let env = setup(1).await;
    let w = env.payer(10_000).await;
    let res = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    // Answered after the block: the record is already confirmed, no follower needed.
    let rows = env.payments().await;
    assert_eq!(rows[0]["state"], "confirmed", "{rows:?}");
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfunded_payer_gets_insufficient_funds_and_nothing_moves() {
    let env = setup(0).await;
    let w = env.payer(500).await;
    let e = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap_err();
    assert_eq!(e.code(), "insufficient_funds", "{e}");
    let detail = e.to_string();
    assert!(detail.contains("0.001"), "names the amount: {detail}");
    assert!(env.payments().await.is_empty());
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 500);
    assert_eq!(relayer_nonce(&env.net).await, 0, "nothing relayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_and_live_refuse_each_other() {
    let env = setup(0).await;
    // Live providers' keys are sealed at rest: no live facilitator without a master key.
    let dir = tempfile::tempdir().unwrap();
    let e = server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.path().join("nokey.db"),
        live: Some(live_config(&env.net, 0)),
        ..ServerConfig::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), "config_invalid", "{e}");
    // A sandbox provider cannot onboard on a live facilitator, nor a live one without a payout.
    let http = reqwest::Client::new();
    let onboard =
        |body: serde_json::Value| http.post(format!("{}/v1/providers", env.srv().url)).json(&body).send();
    let res = onboard(serde_json::json!({ "mode": "sandbox" })).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "mode_mismatch");
    let res = onboard(serde_json::json!({ "mode": "live" })).await.unwrap();
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "request_malformed");
    let res = onboard(serde_json::json!({ "mode": "live", "payout_address": "0x12" })).await.unwrap();
    assert_eq!(res.status(), 400);
    // A sandbox facilitator refuses live providers.
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox_facilitator(dir.path()).await;
    let e = sandbox.create_live_provider(None, &env.payout.to_checksum()).await.unwrap_err();
    assert_eq!(e.code(), "mode_mismatch", "{e}");
    // A sandbox paywall's challenge, paid at the live facilitator: refused, nothing moves.
    let p = sandbox.create_provider(None, None).await.unwrap();
    let mut cfg = PaywallConfig::new(p.api_secret);
    cfg.facilitator_url = env.srv().url.clone();
    let api = serve_api(cfg).await;
    let w = env.payer(1_000_000).await;
    let e = env.client(&w).get(&format!("{api}/api/v1/hello")).await.unwrap_err();
    assert!(["provider_unknown", "mode_mismatch"].contains(&e.code()), "{e}");
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 1_000_000);
    sandbox.shutdown().await;
}

/// The facilitator stops between the broadcast and the receipt (automine off): on restart the
/// pending record is followed to `confirmed`, and the relayer sent one transaction in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_follows_pending_settlements_without_sending_twice() {
    let mut env = setup(0).await;
    let w = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let res = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200, "0 confirmations: answered once the node took it");
    assert_eq!(env.payments().await[0]["state"], "submitted");
    env.restart().await;
    env.net.mine(1).await.unwrap();
    let rows = env.settled().await;
    assert_eq!(rows[0]["state"], "confirmed", "{rows:?}");
    assert_eq!(relayer_nonce(&env.net).await, 1, "one relay in all");
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
}

/// 100 calls at once from a payer funded for 60: exactly 60 settle, 40 are refused
/// `insufficient_funds`, and the chain moved exactly 60 payments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_funded_for_sixty_settle_sixty() {
    hundred_calls_funded_for_sixty(setup(0).await).await;
}

/// The same through a batching facilitator: reservations hold while payments wait for their
/// batch, and 60 settle in few transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_a_hundred_concurrent_calls_funded_for_sixty_settle_sixty() {
    let env = setup_batched(0, 200).await;
    hundred_calls_funded_for_sixty(env).await;
}

/// 100 paid calls at once, spread over `sides` (a client and the paid API it calls): how many
/// were paid and how many refused `insufficient_funds` (anything else fails the test).
async fn hundred_calls(sides: &[(Arc<VlexivoClient>, String)]) -> (usize, usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (c, api) = sides[i % sides.len()].clone();
        let u = format!("{api}/api/v1/hello?call={i}");
        tasks.spawn(async move { c.get(&u).await.map(|r| r.status().as_u16()).map_err(|e| e.code()) });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(200) => ok += 1,
            Err("insufficient_funds") => refused += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    (ok, refused)
}

async fn hundred_calls_funded_for_sixty(env: Env) {
    let w = env.payer(60 * 1_000).await;
    assert_eq!(hundred_calls(&[(Arc::new(env.client(&w)), env.api.clone())]).await, (60, 40));
    let rows = env.settled().await;
    assert_eq!(rows.iter().filter(|r| r["state"] == "confirmed").count(), 60, "{rows:?}");
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 0);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 60_000);
    paging_agrees(&env, 7).await;
}

/// `vlexivo ledger reconcile` over the CLI: its JSON answer and exit status.
fn reconcile_cli(db: &std::path::Path, rpc_url: &str) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"))
        .args(["ledger", "reconcile", "--json", "--rpc-url", rpc_url, "--db"])
        .arg(db)
        .env_remove("VLX_ASSET")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), v)
}

/// Reconciliation: clean after paid calls. Then a reorg (anvil snapshot/revert) takes a
/// confirmed settlement out of the chain, a record says failed for a transfer that settled and
/// another record is lost: each is named, with its kind, and the command exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_names_every_difference_including_a_reorg() {
    use vlexivo_facilitator::server::live::reconcile;
    let mut env = setup(0).await;
    let w = env.payer(100_000).await;
    let client = env.client(&w);
    let mut hashes = Vec::new();
    for i in 0..3 {
        let res = client.get(&format!("{}/api/v1/hello?call={i}", env.api)).await.unwrap();
        assert_eq!(res.status(), 200);
        hashes.push(vlexivo_client::receipt_of(&res).unwrap().tx_hash.clone());
    }
    env.settled().await;
    let db = env.dir.path().join("f.db");
    let store = reconcile::open_store(db.to_str().unwrap()).unwrap();
    let r = reconcile::run(&store, &env.net.rpc_url, None, None).await.unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!((r.records, r.confirmed, r.transfers), (3, 3, 3), "{r:?}");
    let (code, v) = reconcile_cli(&db, &env.net.rpc_url);
    assert_eq!((code, &v["ok"]), (0, &serde_json::json!(true)), "{v}");

    // A fourth payment confirmed, then reorged out while the facilitator is stopped (running,
    // its follower would notice and follow the record again: see the reorg test below).
    let snap = env.net.snapshot().await.unwrap();
    let res = client.get(&format!("{}/api/v1/hello?call=3", env.api)).await.unwrap();
    hashes.push(vlexivo_client::receipt_of(&res).unwrap().tx_hash.clone());
    assert_eq!(env.settled().await[0]["state"], "confirmed");
    if let Some(s) = env.srv.take() {
        s.shutdown().await;
    }
    env.net.revert(snap).await.unwrap();
    env.net.mine(2).await.unwrap();
    // The first record says failed, the second is lost.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE settlements SET state = 'failed', failure = 'x' WHERE tx_hash = ?1", [&hashes[0]])
        .unwrap();
    conn.execute("DELETE FROM settlements WHERE tx_hash = ?1", [&hashes[1]]).unwrap();
    drop(conn);

    let (code, v) = reconcile_cli(&db, &env.net.rpc_url);
    assert_eq!(code, 1, "{v}");
    let mut found: Vec<(String, String)> = v["reconciliation"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap().to_string(), d["tx_hash"].as_str().unwrap().to_string()))
        .collect();
    found.sort();
    let mut want = vec![
        ("missing_on_chain".to_string(), hashes[3].clone()),
        ("settled_but_recorded_failed".to_string(), hashes[0].clone()),
        ("unrecorded_transfer".to_string(), hashes[1].clone()),
    ];
    want.sort();
    assert_eq!(found, want, "{v}");
}

/// A fresh challenge from the paid API (its 402 answer).
async fn challenge(env: &Env) -> String {
    let res = reqwest::get(format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 402);
    res.json::<serde_json::Value>().await.unwrap()["challenge"].as_str().unwrap().to_string()
}

/// `POST /v1/payments` of `challenge` by `w`, its authorization valid in `[after, before)` and
/// signed under `domain` (the challenge's own when `None`): the status and the answer.
async fn pay_raw(
    env: &Env,
    w: &Wallet,
    challenge: &str,
    window: Option<(u64, u64)>,
    domain: impl FnOnce(&mut vlexivo_core::eip3009::TokenDomain),
) -> (u16, serde_json::Value) {
    let c = vlexivo_core::challenge::Challenge::decode(challenge).unwrap();
    let (after, before) = window.unwrap_or((0, c.exp));
    let (auth, mut d) =
        vlexivo_core::payment::transfer_authorization(&c, w.address(), after, before).unwrap();
    domain(&mut d);
    let body = vlexivo_core::payment::PaymentRequest {
        challenge: challenge.to_string(),
        payer: w.address().to_checksum(),
        signature: auth.sign(&d, w).unwrap(),
        valid_after: Some(after),
        valid_before: Some(before),
    };
    let res = reqwest::Client::new()
        .post(format!("{}/v1/payments", env.srv().url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Authorizations that cannot settle are refused before anything is relayed: expired, not yet
/// valid, signed under another chain id or token name. The same authorization paid twice is one
/// transfer (the chain's authorization nonce comes from the challenge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_authorizations_are_refused_and_nothing_moves() {
    let env = setup(0).await;
    let w = env.payer(10_000).await;
    let now = unix_now();
    let c = challenge(&env).await;
    let (status, v) = pay_raw(&env, &w, &c, Some((0, now - 1)), |_| {}).await;
    assert_eq!((status, v["error"].as_str().unwrap()), (400, "authorization_invalid"), "expired: {v}");
    let (status, v) = pay_raw(&env, &w, &c, Some((now + 60, now + 200)), |_| {}).await;
    assert_eq!((status, v["error"].as_str().unwrap()), (400, "authorization_invalid"), "not yet valid: {v}");
    let (status, v) = pay_raw(&env, &w, &c, None, |d| d.chain_id += 1).await;
    assert_eq!((status, v["error"].as_str().unwrap()), (401, "signature_invalid"), "another chain id: {v}");
    let (status, v) = pay_raw(&env, &w, &c, None, |d| d.name = "USDC".into()).await;
    assert_eq!((status, v["error"].as_str().unwrap()), (401, "signature_invalid"), "another domain: {v}");
    assert_eq!(relayer_nonce(&env.net).await, 0, "nothing relayed");
    assert!(env.payments().await.is_empty());

    // The harness pays when the authorization is right; paid again, the same answer, one transfer.
    let (status, first) = pay_raw(&env, &w, &c, None, |_| {}).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = pay_raw(&env, &w, &c, None, |_| {}).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!((&again["tx_hash"], &again["replayed"]), (&first["tx_hash"], &serde_json::json!(true)));
    env.settled().await;
    assert_eq!(relayer_nonce(&env.net).await, 1, "one relay");
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 9_000);
}

/// The payer sends its whole balance away, with a higher tip, while the relay waits for a block
/// (automine off): the relay reverts.
async fn drain(env: &Env, w: &Wallet) {
    use alloy::primitives::U256;
    use vlexivo_live::contracts::IEip3009Token;
    env.net.set_gas_balance(w.address(), U256::from(10u128.pow(18))).await.unwrap();
    let p = env.net.signer(&w.secret_hex()).unwrap();
    let all = env.net.balance(w.address()).await.unwrap();
    let sink = vlexivo_live::chain::evm(&env.net.dev_address(5));
    let _pending = IEip3009Token::new(vlexivo_live::chain::evm(&env.net.token), &p)
        .transfer(sink, U256::from(all))
        .gas(100_000)
        .max_priority_fee_per_gas(100_000_000_000)
        .max_fee_per_gas(1_000_000_000_000)
        .send()
        .await
        .unwrap();
}

/// Until the provider's records hold `n` rows, or 20 s.
async fn records(env: &Env, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let p = env.payments().await;
        if p.len() >= n {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} records: {:?}", env.payments().await);
}

/// With 0 confirmations the proof is issued once the node took the relay; the payer drains its
/// balance before the block: the settlement fails on chain and the provider sees it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_draining_after_a_zero_confirmation_proof_is_a_recorded_failure() {
    let env = setup(0).await;
    let w = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let res = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    drain(&env, &w).await;
    env.net.mine(1).await.unwrap();
    let rows = env.settled().await;
    assert_eq!(rows[0]["state"], "failed", "{rows:?}");
    assert!(rows[0]["failure"].as_str().unwrap().contains("reverted"), "{rows:?}");
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 0, "nothing reached the provider");
}

/// With 1 confirmation the proof waits for the block: the payer drains before it, so there is
/// no proof (settlement_failed, 502) and the record says failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_draining_before_the_confirmation_gets_no_proof() {
    let env = Arc::new(setup(1).await);
    let w = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let c = challenge(&env).await;
    let call = {
        let (env, w) = (env.clone(), w.clone());
        tokio::spawn(async move { pay_raw(&env, &w, &c, None, |_| {}).await })
    };
    assert_eq!(records(&env, 1).await[0]["state"], "submitted");
    drain(&env, &w).await;
    env.net.mine(1).await.unwrap();
    let (status, v) = call.await.unwrap();
    assert_eq!((status, v["error"].as_str()), (502, Some("settlement_failed")), "{v}");
    assert!(v.get("token").is_none());
    assert_eq!(env.payments().await[0]["state"], "failed");
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 0);
}

/// The same through the Rust client: settlement_failed is a clear refusal (nothing moved), not a
/// payment left in doubt, and the client's budget gets the amount back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reports_a_failed_settlement_as_a_refusal() {
    let env = Arc::new(setup(1).await);
    let w = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let client = Arc::new(env.client(&w));
    let call = {
        let (env, client) = (env.clone(), client.clone());
        tokio::spawn(async move { client.get(&format!("{}/api/v1/hello", env.api)).await })
    };
    records(&env, 1).await;
    drain(&env, &w).await;
    env.net.mine(1).await.unwrap();
    let e = call.await.unwrap().unwrap_err();
    assert_eq!(e.code(), "settlement_failed", "{e}");
    assert_eq!(client.budget().spent_total().to_string(), "0", "nothing counted as spent");
}

/// An authorization valid when relayed but expired by the time its block comes (the chain's
/// clock moved past validBefore): the token reverts it and the record says failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_expiring_before_its_block_is_a_recorded_failure() {
    use alloy::providers::ext::AnvilApi;
    let env = setup(0).await;
    let w = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let res = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    env.net.admin().anvil_set_next_block_timestamp(unix_now() + 3_600).await.unwrap();
    env.net.mine(1).await.unwrap();
    let rows = env.settled().await;
    assert_eq!(rows[0]["state"], "failed", "{rows:?}");
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 10_000);
}

/// The relayer has no gas: the payment is answered facilitator_unavailable (503), nothing is
/// relayed and nothing moves; with gas again, the next call pays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayer_out_of_gas_is_facilitator_unavailable_and_nothing_moves() {
    use alloy::primitives::U256;
    let env = setup(0).await;
    let w = env.payer(10_000).await;
    let relayer = env.net.dev_address(1);
    env.net.set_gas_balance(relayer, U256::ZERO).await.unwrap();
    let (status, v) = pay_raw(&env, &w, &challenge(&env).await, None, |_| {}).await;
    assert_eq!((status, v["error"].as_str()), (503, Some("facilitator_unavailable")), "{v}");
    // The client: answered 503 (unclear), it re-sends the same payment and learns that the
    // relay was refused and recorded failed: a clear refusal, nothing counted as spent.
    let client = env.client(&w);
    let e = client.get(&format!("{}/api/v1/hello", env.api)).await.unwrap_err();
    assert_eq!(e.code(), "settlement_failed", "{e}");
    assert_eq!(client.budget().spent_total().to_string(), "0");
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 10_000);
    assert_eq!(relayer_nonce(&env.net).await, 0, "nothing relayed");
    env.net.set_gas_balance(relayer, U256::from(10u128.pow(18))).await.unwrap();
    let res = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    env.settled().await;
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 9_000);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
}

/// `vlexivo demo --live` (0 and 1 confirmations): every call settles on chain and checks there,
/// the balances move exactly, and the records reconcile.
#[test]
fn the_live_demo_runs_and_every_step_behaves() {
    for confirmations in ["0", "1"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"))
            .args(["demo", "--live", "--confirmations", confirmations])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for needle in [
            "$0.019",
            "409 token_replayed",
            "insufficient_funds, needs $0.01",
            "7 paid calls, $0.032905 paid: agent $10 → $9.967095 on chain, provider $0.032905 on chain",
            "7 records (7 confirmed), 7 transfers on chain: the records and the chain agree",
            "✓ live demo complete",
        ] {
            assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
        }
        assert!(!stdout.contains("sk_live_") || stdout.contains("(hidden)"));
    }
}

/// A TCP relay to anvil that can be cut: while cut it closes every connection, those open too.
struct Cuttable {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
}

async fn cuttable(rpc_url: &str) -> Cuttable {
    let port = reqwest::Url::parse(rpc_url).unwrap().port().unwrap();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (up, rx) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut rx = rx.clone();
            if !*rx.borrow() {
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = rx.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    Cuttable { url, up }
}

/// The chain's RPC is down: the payment is answered facilitator_unavailable (503), nothing is
/// recorded, relayed or moved. Back up, the same signed payment settles exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_down_is_facilitator_unavailable_and_nothing_is_lost() {
    let net = Devnet::start().await.unwrap();
    let relay = cuttable(&net.rpc_url).await;
    let env = setup_on(net, Some(&relay.url), 0, None).await;
    let w = env.payer(10_000).await;
    let c = challenge(&env).await;
    relay.up.send_replace(false);
    let (status, v) = pay_raw(&env, &w, &c, None, |_| {}).await;
    assert_eq!((status, v["error"].as_str()), (503, Some("facilitator_unavailable")), "{v}");
    assert!(!v["message"].as_str().unwrap().contains(&relay.url), "the RPC URL is not disclosed: {v}");
    assert!(env.payments().await.is_empty());
    assert_eq!(relayer_nonce(&env.net).await, 0);
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 10_000);
    relay.up.send_replace(true);
    let (status, v) = pay_raw(&env, &w, &c, None, |_| {}).await;
    assert_eq!(status, 200, "{v}");
    env.settled().await;
    assert_eq!(relayer_nonce(&env.net).await, 1);
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 9_000);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The provider's dashboard payments page (signed in with `api_secret`), as HTML.
async fn dashboard_payments(url: &str, api_secret: &str) -> String {
    dashboard_get(url, api_secret, "/dashboard/payments").await
}

/// A dashboard page, signed in with the provider's secret.
async fn dashboard_get(url: &str, api_secret: &str, path: &str) -> String {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = |r: &reqwest::Response, name: &str| {
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
            v.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap().to_string())
        })
    };
    let page = c.get(format!("{url}/dashboard/login")).send().await.unwrap();
    let login = cookie(&page, "vlx_login").unwrap();
    let r = c
        .post(format!("{url}/dashboard/login"))
        .header("cookie", format!("vlx_login={login}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={login}&secret={api_secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = format!("vlx_session={}", cookie(&r, "vlx_session").unwrap());
    c.get(format!("{url}{path}")).header("cookie", session).send().await.unwrap().text().await.unwrap()
}

/// Until the node knows the transaction `tx` (pending or mined), or 10 s: whether it does.
async fn node_knows(net: &Devnet, tx: alloy::primitives::B256) -> bool {
    use alloy::providers::Provider;
    for _ in 0..400 {
        if net.admin().get_transaction_by_hash(tx).await.unwrap().is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A live provider paid at `payout`, onboarded over HTTP at the facilitator `url`.
async fn onboard_live(url: &str, payout: Address) -> ProviderCreated {
    reqwest::Client::new()
        .post(format!("{url}/v1/providers"))
        .json(&serde_json::json!({ "mode": "live", "payout_address": payout.to_checksum() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The demo's paid API behind `provider`'s live paywall, paying at the facilitator `url`.
async fn live_api(provider: &ProviderCreated, url: &str) -> String {
    let mut cfg = PaywallConfig::new(provider.api_secret.clone());
    cfg.facilitator_url = url.to_string();
    cfg.live = Some(provider.terms.clone().unwrap().to_terms().unwrap());
    serve_api(cfg).await
}

/// `vlexivo serve --mode live` as a process, with `extra` arguments.
fn serve(net: &Devnet, db: &std::path::Path, extra: &[&str]) -> (Killed, String) {
    serve_as(net, db, 1, extra)
}

/// The same on the database `db` (a file or a PostgreSQL URL), relaying with devnet key `relayer`.
fn serve_as(
    net: &Devnet,
    db: impl AsRef<std::ffi::OsStr>,
    relayer: usize,
    extra: &[&str],
) -> (Killed, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"))
        .args(["serve", "--mode", "live", "--addr", "127.0.0.1:0", "--poll-ms", "20", "--db"])
        .arg(db)
        .args(["--rpc-url", &net.rpc_url, "--asset", &net.token.to_checksum()])
        .args(extra)
        .env("VLX_RELAYER_KEY", net.dev_key(relayer))
        .env("VLX_MASTER_KEY", "42".repeat(32))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .find_map(|l| l.ok()?.strip_prefix("VLEXIVO_URL=").map(str::to_string))
        .expect("the facilitator prints its URL");
    (Killed(child), url)
}

/// The facilitator is SIGKILLed after the relay was broadcast and the proof issued, before any
/// block; the node loses the transaction too. Restarted on the same database, it re-broadcasts
/// the same signed bytes (the same hash), follows them to confirmed, and the relayer sent one
/// transaction in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_submit_and_receipt_is_followed_on_restart_never_sent_twice() {
    use alloy::providers::Provider;
    use alloy::providers::ext::AnvilApi;
    let net = Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let (child, url) = serve(&net, &db, &[]);
    let payout = net.dev_address(2);
    let created = onboard_live(&url, payout).await;
    let api = live_api(&created, &url).await;

    let w = Wallet::generate(&OsEntropy);
    net.mint(w.address(), 10_000).await.unwrap();
    net.set_automine(false).await.unwrap();
    let client = VlexivoClient::builder().wallet(w.clone()).facilitator_url(Some(&url)).build().unwrap();
    let res = client.get(&format!("{api}/api/v1/hello")).await.unwrap();
    assert_eq!(res.status(), 200);
    let tx: alloy::primitives::B256 = vlexivo_client::receipt_of(&res).unwrap().tx_hash.parse().unwrap();
    drop(child);
    assert_eq!(net.admin().anvil_drop_transaction(tx).await.unwrap(), Some(tx), "the node loses it too");
    assert!(net.admin().get_transaction_by_hash(tx).await.unwrap().is_none());

    let (child, url) = serve(&net, &db, &[]);
    assert!(node_knows(&net, tx).await, "the restarted facilitator re-broadcast the recorded relay");
    net.mine(1).await.unwrap();
    let mut state = String::new();
    for _ in 0..400 {
        let rows = payments_at(&url, &created.api_secret).await;
        state = rows.first().and_then(|r| r["state"].as_str()).unwrap_or_default().to_string();
        if state == "confirmed" {
            assert_eq!(rows[0]["tx_hash"], format!("{tx:#x}").as_str());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(child);
    assert_eq!(state, "confirmed");
    assert_eq!(relayer_nonce(&net).await, 1, "one relay in all");
    assert_eq!(net.balance(payout).await.unwrap(), 1_000);
    assert_eq!(net.balance(w.address()).await.unwrap(), 9_000);
}

/// p50 and p99 of `samples` (milliseconds).
fn p50_p99(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Figures (closing note / README): one paid call (402, pay, retry) end to end, live at 0 and 1
/// confirmations on anvil (automine) against sandbox, interleaved in rounds in one run; then
/// live payments/s with 8 payers calling at once.
/// `cargo test -p vlexivo-facilitator --test live paid_call_latency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn paid_call_latency_live_vs_sandbox() {
    const ROUNDS: usize = 5;
    const CALLS: usize = 40;
    let live0 = setup(0).await;
    let live1 = setup(1).await;
    let w0 = live0.payer(100_000_000).await;
    let w1 = live1.payer(100_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox_facilitator(dir.path()).await;
    let p = sandbox.create_provider(None, None).await.unwrap();
    let mut cfg = PaywallConfig::new(p.api_secret);
    cfg.facilitator_url = sandbox.url.clone();
    let sandbox_api = serve_api(cfg).await;
    let ws = Wallet::generate(&OsEntropy);
    sandbox.top_up(&ws.address().to_checksum(), "100").await.unwrap();
    let clients = [
        (
            "sandbox",
            VlexivoClient::builder().wallet(ws).facilitator_url(Some(&sandbox.url)).build().unwrap(),
            sandbox_api,
        ),
        ("live, 0 confirmations", live0.client(&w0), live0.api.clone()),
        ("live, 1 confirmation", live1.client(&w1), live1.api.clone()),
    ];
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for round in 0..ROUNDS {
        for (i, (name, client, api)) in clients.iter().enumerate() {
            let mut ms = Vec::new();
            for c in 0..CALLS {
                let t = std::time::Instant::now();
                let res = client.get(&format!("{api}/api/v1/hello?r={round}&c={c}")).await.unwrap();
                assert_eq!(res.status(), 200);
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let (p50, p99) = p50_p99(ms.clone());
            println!("BENCH round {round} {name}: p50 {p50:.2} ms p99 {p99:.2} ms ({CALLS} calls)");
            all[i].extend(ms);
        }
    }
    for (i, (name, ..)) in clients.iter().enumerate() {
        let (p50, p99) = p50_p99(all[i].clone());
        println!("BENCH all rounds {name}: p50 {p50:.2} ms p99 {p99:.2} ms ({} calls)", all[i].len());
    }
    // Throughput: 8 payers, 25 calls each, at once, live at 0 confirmations.
    let mut payers = Vec::new();
    for _ in 0..8 {
        payers.push(Arc::new(live0.client(&live0.payer(1_000_000).await)));
    }
    let t = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in payers.into_iter().enumerate() {
        let api = live0.api.clone();
        tasks.spawn(async move {
            for n in 0..25 {
                assert_eq!(c.get(&format!("{api}/api/v1/hello?p={i}&n={n}")).await.unwrap().status(), 200);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("BENCH live payments/s, 0 confirmations, 8 payers x 25 calls: {:.1}", 200.0 / secs);
    sandbox.shutdown().await;
}

/// Until `f` holds for the provider's records, or 20 s (mining a block now and then, for relays
/// waiting in the mempool).
async fn records_until(env: &Env, f: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    for i in 0..400 {
        let p = env.payments().await;
        if f(&p) {
            return p;
        }
        if i % 20 == 19 {
            env.net.mine(1).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the records never got there: {:?}", env.payments().await);
}

/// Distinct transaction hashes of `rows`.
fn relays(rows: &[serde_json::Value]) -> std::collections::BTreeSet<String> {
    rows.iter().map(|r| r["tx_hash"].as_str().unwrap().to_string()).collect()
}

/// Batched relays: 20 payments from 4 payers arriving at once go out in a few Multicall3
/// transactions (not 20); each record names its batch's hash and its call; balances move
/// exactly; `verify-payment` and `ledger reconcile` accept the batched transfers (one
/// transaction, many Transfer logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_relays_carry_many_payments_per_transaction_exactly() {
    let env = setup_batched(0, 1_000).await;
    let mut payers = Vec::new();
    for _ in 0..4 {
        payers.push(env.payer(10_000).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (p, w) in payers.iter().enumerate() {
        let client = Arc::new(env.client(w));
        for n in 0..5 {
            let (c, url) = (client.clone(), format!("{}/api/v1/hello?p={p}&n={n}", env.api));
            tasks.spawn(
                async move { c.get(&url).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string()) },
            );
        }
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), Ok(200));
    }
    let rows = env.settled().await;
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r["state"] == "confirmed"), "{rows:?}");
    let txs = relays(&rows);
    let sent = relayer_nonce(&env.net).await;
    println!("20 payments in {} relays", txs.len());
    assert_eq!(sent as usize, txs.len(), "one transaction per batch");
    assert!(txs.len() <= 8, "batched: {} transactions for 20 payments", txs.len());
    // Each batch's records name distinct calls 0..n.
    for tx in &txs {
        let mut calls: Vec<u64> = rows
            .iter()
            .filter(|r| r["tx_hash"] == tx.as_str())
            .filter_map(|r| r["call_index"].as_u64())
            .collect();
        calls.sort();
        let n = rows.iter().filter(|r| r["tx_hash"] == tx.as_str()).count();
        if n > 1 {
            assert_eq!(calls, (0..n as u64).collect::<Vec<_>>(), "{tx}");
        }
    }
    for w in &payers {
        assert_eq!(env.net.balance(w.address()).await.unwrap(), 5_000);
    }
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 20_000);
    // The provider's own check of a batched payment: its Transfer among the batch's, counted,
    // and pinned to its own log by its authorization nonce (account + challenge nonce).
    let chain = &env.srv().live().unwrap().chain;
    let mut pinned_logs = std::collections::BTreeSet::new();
    for r in &rows {
        let payer = Address::parse(r["payer"].as_str().unwrap()).unwrap();
        let expected = Expected {
            token: env.net.token,
            payer,
            payee: env.payout,
            amount: 1_000,
            confirmations: 1,
            authorization_nonce: None,
        };
        let hash = r["tx_hash"].as_str().unwrap().parse().unwrap();
        let v = verify_payment(chain.provider(), hash, &expected).await.unwrap();
        // A payer with several equal payments in one batch: the hash alone matches each of them.
        let in_tx = rows.iter().filter(|o| o["tx_hash"] == r["tx_hash"]);
        let same = in_tx.clone().filter(|o| o["payer"] == r["payer"]).count();
        assert_eq!((v.transfers, v.matching), (in_tx.count(), same), "{r}");
        let nonce =
            vlexivo_core::eip3009::authorization_nonce(&env.provider.account, r["nonce"].as_str().unwrap());
        let pinned = Expected { authorization_nonce: Some(nonce), ..expected };
        let p = verify_payment(chain.provider(), hash, &pinned).await.unwrap();
        assert!(p.authorization_checked, "{r}");
        pinned_logs.insert((r["tx_hash"].to_string(), p.log_index));
    }
    assert_eq!(pinned_logs.len(), rows.len(), "each payment pinned to a log of its own");
    let (code, v) = reconcile_cli(&env.dir.path().join("f.db"), &env.net.rpc_url);
    assert_eq!((code, &v["reconciliation"]["confirmed"]), (0, &serde_json::json!(20)), "{v}");
}

/// One authorization of a batch cannot be carried out (its payer drained its balance after the
/// proof, before the block): that payment alone is recorded failed, the rest of the batch
/// settles, and reconcile agrees with the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_authorization_in_a_batch_fails_alone() {
    let env = setup_batched(0, 3_000).await;
    let good = [env.payer(10_000).await, env.payer(10_000).await, env.payer(10_000).await];
    let bad = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in good.iter().chain([&bad]).enumerate() {
        let (c, url) = (env.client(w), format!("{}/api/v1/hello?w={i}", env.api));
        tasks.spawn(async move { c.get(&url).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string()) });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), Ok(200), "0 confirmations: answered once the node took the batch");
    }
    let rows = env.payments().await;
    assert_eq!(relays(&rows).len(), 1, "one batch: {rows:?}");
    drain(&env, &bad).await;
    env.net.mine(1).await.unwrap();
    let rows = env.settled().await;
    let of =
        |w: &Wallet| rows.iter().find(|r| r["payer"] == w.address().to_checksum().as_str()).unwrap().clone();
    let failed = of(&bad);
    assert_eq!(failed["state"], "failed", "{rows:?}");
    assert!(failed["failure"].as_str().unwrap().contains("batched relay failed"), "{failed}");
    assert!(failed["call_index"].is_u64());
    for w in &good {
        assert_eq!(of(w)["state"], "confirmed", "{rows:?}");
        assert_eq!(env.net.balance(w.address()).await.unwrap(), 9_000);
    }
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 3_000);
    assert_eq!(env.net.balance(bad.address()).await.unwrap(), 0, "drained");
    assert_eq!(env.net.balance(env.net.dev_address(5)).await.unwrap(), 10_000, "all of it to the sink");
    assert_eq!(relayer_nonce(&env.net).await, 1);
    let chain = &env.srv().live().unwrap().chain;
    let hash = failed["tx_hash"].as_str().unwrap().parse().unwrap();
    let expected = Expected {
        token: env.net.token,
        payer: bad.address(),
        payee: env.payout,
        amount: 1_000,
        confirmations: 1,
        authorization_nonce: None,
    };
    // The batch succeeded; the failed call left no Transfer from that payer in it.
    let e = verify_payment(chain.provider(), hash, &expected).await.unwrap_err();
    assert_eq!((e.code(), e.details()["field"].as_str()), ("transfer_mismatch", Some("payer")), "{e}");
    let (code, v) = reconcile_cli(&env.dir.path().join("f.db"), &env.net.rpc_url);
    assert_eq!(code, 0, "{v}");
    assert_eq!((&v["reconciliation"]["confirmed"], &v["reconciliation"]["failed"]), (&3.into(), &1.into()));
}

/// With 1 confirmation a batch's payments are answered once the batch is in a block: the payer
/// who drained its balance before the block gets no proof (`settlement_failed`, recorded
/// failed), the others of the same batch get theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_confirmation_a_failing_call_gets_no_proof_and_the_rest_of_the_batch_does() {
    let env = setup_batched(1, 2_500).await;
    let good = [env.payer(10_000).await, env.payer(10_000).await];
    let bad = env.payer(10_000).await;
    env.net.set_automine(false).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in good.iter().chain([&bad]).enumerate() {
        let (c, url, who) = (env.client(w), format!("{}/api/v1/hello?w={i}", env.api), w.address());
        tasks.spawn(
            async move { (who, c.get(&url).await.map(|r| r.status().as_u16()).map_err(|e| e.code())) },
        );
    }
    // The batch is recorded and broadcast; the payer drains its balance before the block.
    let rows = records(&env, 3).await;
    assert_eq!(relays(&rows).len(), 1, "one batch: {rows:?}");
    assert!(node_knows(&env.net, rows[0]["tx_hash"].as_str().unwrap().parse().unwrap()).await);
    drain(&env, &bad).await;
    env.net.mine(1).await.unwrap();
    while let Some(r) = tasks.join_next().await {
        let (who, outcome) = r.unwrap();
        if who == bad.address() {
            assert_eq!(outcome, Err("settlement_failed"), "no proof for the call that failed");
        } else {
            assert_eq!(outcome, Ok(200));
        }
    }
    let rows = env.payments().await;
    for r in &rows {
        let want = if r["payer"] == bad.address().to_checksum().as_str() { "failed" } else { "confirmed" };
        assert_eq!(r["state"], want, "{rows:?}");
    }
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 2_000);
}

/// A batching facilitator (`--batch-window-ms`, `--multicall`) SIGKILLed after the batch was
/// broadcast and the proofs issued, before any block, the node losing the batch too: restarted,
/// it re-broadcasts the recorded bytes, each payment of the batch is confirmed, and the relayer
/// sent one transaction in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_before_its_receipt_is_followed_on_restart_never_sent_twice() {
    use alloy::providers::ext::AnvilApi;
    let net = Devnet::start().await.unwrap();
    let multicall = net.deploy_multicall3().await.unwrap().to_checksum();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let batched = ["--batch-window-ms", "2500", "--multicall", multicall.as_str()];
    let (child, url) = serve(&net, &db, &batched);
    let payout = net.dev_address(2);
    let created = onboard_live(&url, payout).await;
    let api = live_api(&created, &url).await;

    let payers = [Wallet::generate(&OsEntropy), Wallet::generate(&OsEntropy)];
    for w in &payers {
        net.mint(w.address(), 10_000).await.unwrap();
    }
    let relays_before = relayer_nonce(&net).await;
    net.set_automine(false).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in &payers {
        let client = VlexivoClient::builder().wallet(w.clone()).facilitator_url(Some(&url)).build().unwrap();
        let u = format!("{api}/api/v1/hello");
        tasks.spawn(async move {
            let res = client.get(&u).await.unwrap();
            assert_eq!(res.status(), 200);
            vlexivo_client::receipt_of(&res).unwrap().tx_hash.clone()
        });
    }
    let mut hashes = Vec::new();
    while let Some(h) = tasks.join_next().await {
        hashes.push(h.unwrap());
    }
    assert_eq!(hashes[0], hashes[1], "one batch");
    let tx: alloy::primitives::B256 = hashes[0].parse().unwrap();
    drop(child);
    assert_eq!(net.admin().anvil_drop_transaction(tx).await.unwrap(), Some(tx), "the node loses it too");

    let (child, url) = serve(&net, &db, &batched);
    assert!(node_knows(&net, tx).await, "the restarted facilitator re-broadcast the recorded batch");
    net.mine(1).await.unwrap();
    let mut rows = Vec::new();
    for _ in 0..400 {
        rows = payments_at(&url, &created.api_secret).await;
        if rows.len() == 2 && rows.iter().all(|r| r["state"] == "confirmed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(child);
    assert!(rows.iter().all(|r| r["state"] == "confirmed" && r["tx_hash"] == hashes[0].as_str()), "{rows:?}");
    assert_eq!(relayer_nonce(&net).await, relays_before + 1, "one relay in all");
    assert_eq!(net.balance(payout).await.unwrap(), 2_000);
    for w in &payers {
        assert_eq!(net.balance(w.address()).await.unwrap(), 9_000);
    }
}

/// A reorg (anvil snapshot/revert) takes a confirmed settlement out of its block while the
/// facilitator runs: the follower marks the record (back to submitted, `reorgs` 1, visible to
/// the provider), follows it again, re-broadcasts the same signed bytes, and it is confirmed in
/// its new block; the chain moved the payment once and reconcile is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorged_confirmation_is_marked_and_followed_again() {
    let env = setup(0).await;
    let w = env.payer(10_000).await;
    let snap = env.net.snapshot().await.unwrap();
    let res = env.client(&w).get(&format!("{}/api/v1/hello", env.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    let tx = vlexivo_client::receipt_of(&res).unwrap().tx_hash.clone();
    let before = env.settled().await[0].clone();
    assert_eq!(before["state"], "confirmed");
    assert!(before.get("reorgs").is_none(), "{before}");
    let block = before["block"].as_u64().unwrap();
    // The chain forgets the block, then grows past it with other blocks.
    env.net.revert(snap).await.unwrap();
    env.net.mine(2).await.unwrap();
    let rows = records_until(&env, |p| p[0]["reorgs"] == 1 && p[0]["state"] == "confirmed").await;
    let after = &rows[0];
    assert_eq!(after["tx_hash"], tx.as_str(), "the same signed relay, never a second one");
    // The follower may see the reorg before `mine(2)` runs; automine then puts the re-broadcast
    // into a new block of the same height. Either way the record names the block the chain has
    // it in now.
    let again = after["block"].as_u64().unwrap();
    assert!(again >= block, "confirmed again, not earlier: {after}");
    let receipt = {
        use alloy::providers::Provider;
        env.net.admin().get_transaction_receipt(tx.parse().unwrap()).await.unwrap().expect("mined again")
    };
    assert_eq!(receipt.block_number, Some(again), "the record follows the chain: {after}");
    assert_eq!(relayer_nonce(&env.net).await, 1);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
    assert_eq!(env.net.balance(w.address()).await.unwrap(), 9_000);
    let (code, v) = reconcile_cli(&env.dir.path().join("f.db"), &env.net.rpc_url);
    assert_eq!(code, 0, "{v}");
}

/// Figures: gas per payment, payments/s and this process's CPU per payment (client, paid API
/// and facilitator; not anvil), batched (Multicall3, 50 ms window) vs one relay per payment,
/// interleaved in rounds in one run on two devnets (automine): 16 payers calling at once, 10
/// calls each, per round.
/// `cargo test -p vlexivo-facilitator --test live batched_vs_single -- --ignored --nocapture`
/// (`scripts/bench.sh --only live-batch` runs it in release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn batched_vs_single_relays_gas_and_throughput() {
    const ROUNDS: usize = 3;
    const PAYERS: usize = 16;
    const CALLS: usize = 10;
    let single = setup(0).await;
    let batched = setup_batched(0, 50).await;
    let mut out = serde_json::Map::new();
    for round in 0..ROUNDS {
        for (name, env) in [("single", &single), ("batched", &batched)] {
            let mut clients = Vec::new();
            for _ in 0..PAYERS {
                clients.push(Arc::new(env.client(&env.payer(1_000_000).await)));
            }
            let store = &env.srv().live().unwrap().store;
            let seen: std::collections::BTreeSet<String> =
                store.all().await.unwrap().into_iter().map(|s| s.tx_hash).collect();
            let cpu = cpu_seconds();
            let t = std::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, c) in clients.into_iter().enumerate() {
                let api = env.api.clone();
                tasks.spawn(async move {
                    for n in 0..CALLS {
                        let res = c.get(&format!("{api}/api/v1/hello?r={round}&p={i}&n={n}")).await.unwrap();
                        assert_eq!(res.status(), 200);
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu;
            // Every record (the API pages), once the follower is done with them.
            let mut all = store.all().await.unwrap();
            for _ in 0..400 {
                if all.iter().all(|s| s.state == "confirmed") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                all = store.all().await.unwrap();
            }
            assert!(all.iter().all(|s| s.state == "confirmed"), "every payment settles");
            let now: std::collections::BTreeSet<String> = all.into_iter().map(|s| s.tx_hash).collect();
            let chain = &env.srv().live().unwrap().chain;
            let (mut gas, mut txs) = (0u64, 0usize);
            for tx in now.difference(&seen) {
                gas += chain.mined(tx.parse().unwrap()).await.unwrap().unwrap().gas_used;
                txs += 1;
            }
            let n = (PAYERS * CALLS) as f64;
            let line = serde_json::json!({
                "round": round, "relay": name, "payments": n, "transactions": txs,
                "payments_per_s": n / secs, "gas_per_payment": gas as f64 / n,
                "cpu_us_per_payment": cpu * 1e6 / n,
            });
            println!("BENCH round {line}");
            let per = [
                ("payments_per_s", n / secs),
                ("gas_per_payment", gas as f64 / n),
                ("cpu_us_per_payment", cpu * 1e6 / n),
            ];
            for (k, v) in per {
                let e = out.entry(format!("{name}_{k}")).or_insert(serde_json::json!(0.0));
                *e = serde_json::json!(e.as_f64().unwrap() + v / ROUNDS as f64);
            }
        }
    }
    let g = |k: &str| out[k].as_f64().unwrap();
    let ratios = [
        ("gas_ratio", g("single_gas_per_payment") / g("batched_gas_per_payment")),
        ("tput_ratio", g("batched_payments_per_s") / g("single_payments_per_s")),
        ("cpu_ratio", g("single_cpu_us_per_payment") / g("batched_cpu_us_per_payment")),
    ];
    for (k, v) in ratios {
        out.insert(k.into(), serde_json::json!(v));
    }
    out.insert("bench".into(), "live-batch".into());
    println!("BENCH {}", serde_json::Value::Object(out));
}

/// This process's user + system CPU time, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Live records on PostgreSQL: a batch of payments recorded in one transaction, confirmed call
/// by call, then a reorg marks them and they are confirmed again, as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_records_on_postgres_batch_and_follow_a_reorg() {
    let pg = vlexivo_testkit::Server::postgres();
    let net = Devnet::start().await.expect("devnet");
    let multicall = net.deploy_multicall3().await.unwrap();
    let batch = BatchConfig { multicall, window: Duration::from_millis(2_500), max: 50 };
    let env = setup_in(net, None, 0, Some(batch), Some(pg.database("live"))).await;
    let payers = [env.payer(10_000).await, env.payer(10_000).await, env.payer(10_000).await];
    let snap = env.net.snapshot().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in payers.iter().enumerate() {
        let (c, url) = (env.client(w), format!("{}/api/v1/hello?w={i}", env.api));
        tasks.spawn(async move { c.get(&url).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string()) });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), Ok(200));
    }
    let rows = env.settled().await;
    assert!(rows.iter().all(|r| r["state"] == "confirmed" && r["call_index"].is_u64()), "{rows:?}");
    assert_eq!(relays(&rows).len(), 1, "{rows:?}");
    env.net.revert(snap).await.unwrap();
    env.net.mine(2).await.unwrap();
    let rows = records_until(&env, |p| p.iter().all(|r| r["reorgs"] == 1 && r["state"] == "confirmed")).await;
    assert_eq!(relays(&rows).len(), 1, "the same batch, re-broadcast: {rows:?}");
    // The provider's dashboard says so too.
    let html = dashboard_payments(&env.srv().url, &env.provider.api_secret).await;
    for i in 0..3 {
        assert!(html.contains(&format!("call {i} of a batch")), "{html}");
    }
    assert_eq!(html.matches("reorged 1×").count(), 3, "{html}");
    paging_agrees(&env, 2).await;
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 3_000);
    for w in &payers {
        assert_eq!(env.net.balance(w.address()).await.unwrap(), 9_000);
    }
}

/// Two `vlexivo serve --mode live` processes on one PostgreSQL (each with its own relayer), a
/// payer funded for 60 payments, 100 concurrent paid calls split across them: the reservations
/// are the ledger's, so exactly 60 are admitted and settle, 40 are refused `insufficient_funds`,
/// and no payment is admitted that the chain then refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_facilitators_on_one_postgres_admit_no_more_than_the_balance() {
    let pg = vlexivo_testkit::Server::postgres();
    let db = pg.database("shared");
    let net = Devnet::start().await.unwrap();
    let (fa, url_a) = serve_as(&net, &db, 1, &[]);
    let (fb, url_b) = serve_as(&net, &db, 3, &[]);
    let payout = net.dev_address(2);
    let created = onboard_live(&url_a, payout).await;
    let w = Wallet::generate(&OsEntropy);
    net.mint(w.address(), 60 * 1_000).await.unwrap();
    let mut sides = Vec::new();
    for url in [&url_a, &url_b] {
        let api = live_api(&created, url).await;
        let client = VlexivoClient::builder().wallet(w.clone()).facilitator_url(Some(url)).build().unwrap();
        sides.push((Arc::new(client), api));
    }
    assert_eq!(hundred_calls(&sides).await, (60, 40));
    let mut rows = Vec::new();
    for _ in 0..400 {
        rows = payments_at(&url_b, &created.api_secret).await;
        if rows.len() == 60 && rows.iter().all(|r| r["state"] != "submitted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((fa, fb));
    assert_eq!(rows.iter().filter(|r| r["state"] == "confirmed").count(), 60, "{rows:?}");
    assert_eq!(net.balance(w.address()).await.unwrap(), 0);
    assert_eq!(net.balance(payout).await.unwrap(), 60_000);
}

/// Live auto top-up: a payer short of funds is topped up on chain from the funding wallet it
/// configured (one ERC-20 transfer the funding wallet signs and pays gas for, mined before the
/// payment), then pays; the next call needs no top-up. A top-up over the cap is refused with
/// `top_up_refused` and a funding wallet without the tokens with `funding_insufficient`: in both
/// nothing moves and nothing is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_auto_top_up_moves_tokens_from_the_funding_wallet_then_pays() {
    use alloy::primitives::U256;
    use vlexivo_client::AutoTopUpDone;
    use vlexivo_core::client::{AutoTopUp, Funding};
    let env = setup(0).await;
    let hello = format!("{}/api/v1/hello", env.api);
    let gas = |w: &Wallet| {
        let net = &env.net;
        let a = w.address();
        async move { net.set_gas_balance(a, U256::from(10u128.pow(18))).await.unwrap() }
    };
    let funding = env.payer(1_000_000).await;
    gas(&funding).await;
    let client = |payer: &Wallet, rule: AutoTopUp| {
        VlexivoClient::builder()
            .wallet(payer.clone())
            .facilitator_url(Some(&env.srv().url))
            .auto_top_up(rule)
            .build()
            .unwrap()
    };
    let from = |w: &Wallet| Funding::new(&w.secret_hex(), &env.net.rpc_url).unwrap();

    // Short of funds: one top-up of 0.01 from the funding wallet, then the payment.
    let payer = env.payer(0).await;
    let c = client(&payer, AutoTopUp::new("0", "0.01").unwrap().with_funding(from(&funding)));
    let res = c.get(&hello).await.unwrap();
    assert_eq!(res.status(), 200);
    let top_up = res.extensions().get::<AutoTopUpDone>().cloned().expect("a top-up").0;
    assert_eq!(
        (top_up.amount.as_str(), top_up.address.as_str()),
        ("0.01", payer.address().to_checksum().as_str())
    );
    // The top-up's transaction pays exactly that, funding wallet → payer, as a provider would check.
    let check = Expected {
        token: env.net.token,
        payer: funding.address(),
        payee: payer.address(),
        amount: 10_000,
        confirmations: 1,
        authorization_nonce: None,
    };
    verify_payment(env.srv().live().unwrap().chain.provider(), top_up.tx_hash.parse().unwrap(), &check)
        .await
        .unwrap();
    assert_eq!(env.net.balance(funding.address()).await.unwrap(), 990_000);
    assert_eq!(env.net.balance(payer.address()).await.unwrap(), 9_000);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 1_000);
    // The balance now covers the next call: no second top-up.
    let res = c.get(&hello).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.extensions().get::<AutoTopUpDone>().is_none());
    assert_eq!(env.net.balance(funding.address()).await.unwrap(), 990_000);
    assert_eq!(env.net.balance(payer.address()).await.unwrap(), 8_000);

    // Over the cap: refused before anything is sent; nothing paid.
    let capped = env.payer(0).await;
    let rule =
        AutoTopUp::new("0", "0.01").unwrap().with_max_total("0.0005").unwrap().with_funding(from(&funding));
    let e = client(&capped, rule).get(&hello).await.unwrap_err();
    assert_eq!(e.code(), "top_up_refused", "{e}");
    assert!(e.to_string().contains("capped at 0.0005"), "{e}");
    // A funding wallet without the tokens: a clear error, nothing sent, nothing paid.
    let empty = env.payer(0).await;
    gas(&empty).await;
    let broke = env.payer(0).await;
    let e = client(&broke, AutoTopUp::new("0", "0.01").unwrap().with_funding(from(&empty)))
        .get(&hello)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "funding_insufficient", "{e}");
    assert_eq!(e.details()["required"], "0.01");
    assert_eq!(e.details()["balance"], "0");
    assert_eq!(e.details()["address"], empty.address().to_checksum().as_str());
    assert!(!e.to_string().contains(&empty.secret_hex()[2..]), "the key never shows");
    assert_eq!(env.net.balance(funding.address()).await.unwrap(), 990_000);
    assert_eq!(env.net.balance(env.payout).await.unwrap(), 2_000, "the two paid calls only");
    assert_eq!(env.settled().await.len(), 2);
}

/// A provider's live records page newest first by payment time, then by row, on SQLite and on
/// PostgreSQL alike, whatever order they were recorded in: a batch records its calls in call
/// order, not by their tokens' times. PostgreSQL paged by row id alone, so under concurrent
/// payments a page could list an older payment above a newer one (`paging_agrees` saw it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_page_by_payment_time_on_sqlite_and_postgres() {
    use vlexivo_facilitator::server::live::store::{LiveStore, Settlement};
    use vlexivo_facilitator::server::{db, pg};
    let pg_server = vlexivo_testkit::Server::postgres();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = db::open_rw(&dir.path().join("live.db")).unwrap();
    let sqlite = LiveStore::Sqlite(Arc::new(parking_lot::Mutex::new(sqlite)));
    let (cfg, _migrated) = pg::open(&pg_server.database("order")).await.unwrap();
    let postgres = LiveStore::Postgres(pg::pool(&cfg, 2).unwrap());
    // Recorded in this order, paid at these times.
    let paid = [100, 102, 101, 102, 99];
    let record = |i: usize| Settlement {
        account: "acct_order".into(),
        nonce: format!("n{i}"),
        scheme: "exact".into(),
        network: "eip155:31337".into(),
        asset: "0x0000000000000000000000000000000000000001".into(),
        payer: "0x0000000000000000000000000000000000000002".into(),
        pay_to: "0x0000000000000000000000000000000000000003".into(),
        amount: 1_000,
        currency: "USD".into(),
        resource: "GET /x".into(),
        auth_nonce: format!("0x{i:064x}"),
        valid_before: 1_000,
        tx_hash: format!("0x{:064x}", i + 1),
        raw_tx: vec![1],
        relayer: "0x0000000000000000000000000000000000000004".into(),
        relayer_nonce: i as i64,
        state: "confirmed".into(),
        block_number: Some(1),
        block_hash: Some(format!("0x{:064x}", 7)),
        gas_used: Some(21_000),
        failure: None,
        token: "t".into(),
        paid_at: paid[i],
        expires_at: paid[i] + 300,
        updated_at: paid[i],
        call_index: Some(i as i64),
        reorgs: 0,
    };
    // Newest first; of two paid in the same second, the one recorded later first.
    let expected = ["n3", "n1", "n2", "n0", "n4"];
    for (name, store) in [("sqlite", sqlite), ("postgres", postgres)] {
        store.insert((0..paid.len()).map(record).collect()).await.unwrap();
        let filter = vlexivo_core::paging::PaymentFilter { route: None, payer: None, from: None, to: None };
        for limit in [1, 2, 10] {
            let (mut got, mut before) = (Vec::new(), None);
            loop {
                let page = store.page("acct_order", &filter, before, limit).await.unwrap();
                assert!(page.len() <= limit as usize);
                got.extend(page.iter().map(|(_, s)| s.nonce.clone()));
                match page.last() {
                    Some((at, _)) if page.len() == limit as usize => before = Some(*at),
                    _ => break,
                }
            }
            assert_eq!(got, expected, "{name}, pages of {limit}");
        }
    }
}
