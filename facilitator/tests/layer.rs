//! The tower paywall layer and the Rust client, end to end: a real axum app on 127.0.0.1 in
//! front of a real facilitator (in-process, SQLite in a temporary directory).

mod service_support;

use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::request::Parts;
use serde_json::{Value, json};
use service_support::get_authed;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use vlexivo_client::{AutoTopUpDone, VlexivoClient, receipt_of};
use vlexivo_core::client::AutoTopUp;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{PaymentFacts, Paywall, PaywallConfig};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::store::{MemoryStore, NonceStore, SqliteStore};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Error, Money};
use vlexivo_facilitator::server::{self, RunningServer, ServerConfig};
use vlexivo_tower::{PaywallLayer, Price};

struct Env {
    srv: RunningServer,
    api: String,
    secret: String,
    fail_count: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::Usd).unwrap()
}

async fn facilitator(dir: &std::path::Path) -> RunningServer {
    server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.join("facilitator.db"),
        ..ServerConfig::default()
    })
    .await
    .expect("facilitator starts")
}

fn app(paywall: Arc<Paywall>, store: Arc<dyn NonceStore>, fail_count: Arc<AtomicUsize>) -> Router {
    let layer = |price: Price| PaywallLayer::new(paywall.clone(), store.clone(), price);
    let by_model = Price::dynamic_with_body(|_: &Parts, body: &[u8]| {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match v["model"].as_str() {
            Some(m) if m.contains("large") => "0.01",
            Some(m) if m.contains("embed") => "0.0001",
            _ => "0.001",
        }
    });
    let by_query_async = Price::dynamic_async(|parts: Parts| async move {
        tokio::task::yield_now().await;
        let n: u32 =
            parts.uri.query().and_then(|q| q.strip_prefix("n=")).and_then(|n| n.parse().ok()).unwrap_or(1);
        usd("0.0001").checked_mul(n.into())
    });
    let nested =
        Router::new().route("/deep", get(|| async { "nested ok" }).layer(layer(Price::fixed("0.001"))));
    Router::new()
        .route(
            "/hello",
            get(|Extension(paid): Extension<PaymentFacts>| async move {
                Json(json!({ "payer": paid.payer, "amount": paid.amount, "resource": paid.resource, "tx": paid.tx_hash }))
            })
            .layer(layer(Price::fixed("0.001"))),
        )
        .route("/old-hello", get(|| async { axum::response::Redirect::temporary("/hello") }))
        .route("/other", get(|| async { "other" }).layer(layer(Price::fixed("0.001"))))
        .route(
            "/inference",
            post(|Extension(paid): Extension<PaymentFacts>, Json(v): Json<Value>| async move {
                Json(json!({ "model": v["model"], "paid": paid.amount }))
            })
            .layer(layer(by_model)),
        )
        .route(
            "/fail",
            get(move || {
                let fail_count = fail_count.clone();
                async move {
                    if fail_count.fetch_add(1, Ordering::SeqCst) == 0 {
                        (http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
                    } else {
                        (http::StatusCode::OK, "worked")
                    }
                }
            })
            .layer(layer(Price::fixed("0.002"))),
        )
        .route("/bad-price", get(|| async { "free?" }).layer(layer(Price::dynamic(|_: &Parts| "abc"))))
        .route(
            "/bad-currency",
            get(|| async { "free?" }).layer(layer(Price::fixed("0.001")).currency("eur")),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "never"
            })
            .layer(layer(Price::fixed("0.001"))),
        )
        .route("/async", get(|| async { "async priced" }).layer(layer(by_query_async)))
        .nest("/v2", nested)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn setup_with(cfg: impl FnOnce(&mut PaywallConfig), store: Option<Arc<dyn NonceStore>>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let srv = facilitator(dir.path()).await;
    let provider = srv.create_provider(Some("test"), None).await.unwrap();
    let mut pc = PaywallConfig::new(provider.api_secret.clone());
    pc.facilitator_url = srv.url.clone();
    cfg(&mut pc);
    let paywall = Arc::new(Paywall::new(pc).unwrap());
    let store = store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
    let fail_count = Arc::new(AtomicUsize::new(0));
    let api = serve(app(paywall, store, fail_count.clone())).await;
    Env { srv, api, secret: provider.api_secret, fail_count, _dir: dir }
}

async fn setup() -> Env {
    setup_with(|_| {}, None).await
}

impl Env {
    /// A client with a fresh wallet holding `balance`.
    async fn client(&self, balance: &str) -> VlexivoClient {
        self.client_with(balance, |b| b).await
    }

    async fn client_with(
        &self,
        balance: &str,
        f: impl FnOnce(vlexivo_client::VlexivoClientBuilder) -> vlexivo_client::VlexivoClientBuilder,
    ) -> VlexivoClient {
        let wallet = Wallet::generate(&OsEntropy);
        if balance != "0" {
            self.srv.top_up(&wallet.address().to_checksum(), balance).await.unwrap();
        }
        f(VlexivoClient::builder().wallet(wallet).facilitator_url(Some(self.srv.url.clone())))
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    async fn revenue(&self) -> (String, u64) {
        let me_url = format!("{}/v1/providers/me", self.srv.url);
        let (s, me) = get_authed(&reqwest::Client::new(), &me_url, &self.secret).await;
        assert_eq!(s, 200, "{me}");
        (me["revenue"]["total"].as_str().unwrap().to_string(), me["revenue"]["count"].as_u64().unwrap())
    }
}

async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn paid_call_end_to_end() {
    let env = setup().await;
    let paid = Arc::new(AtomicUsize::new(0));
    let seen = paid.clone();
    let client = env
        .client_with("1", |b| {
            b.on_payment(move |r| {
                assert!(r.amount == "0.001" || r.amount == "0.01", "{}", r.amount);
                seen.fetch_add(1, Ordering::SeqCst);
            })
        })
        .await;
    let res = client.get(&env.url("/hello")).await.unwrap();
    assert_eq!(res.status(), 200);
    let receipt = receipt_of(&res).cloned().expect("receipt attached");
    let header = res.headers().get("vlexivo-receipt").unwrap().to_str().unwrap().to_string();
    // Not a cross-origin request (no Origin): nothing to expose (core's response policy).
    let exposed = res.headers().get("access-control-expose-headers").is_some();
    let body: Value = res.json().await.unwrap();

    // The handler saw the verified payment.
    assert_eq!(body["payer"], client.address());
    assert_eq!(body["amount"], "0.001");
    assert_eq!(body["resource"], format!("GET {}", env.url("/hello")));
    assert_eq!(body["tx"], receipt.tx_hash.as_str());
    assert!(header.contains(&format!("tx={}", receipt.tx_hash)) && header.contains("amount=0.001"));
    assert!(!exposed, "a same-origin paid response exposes no headers");
    assert_eq!(receipt.balance, "0.999");
    assert_eq!(client.balance().await.unwrap(), usd("0.999"));
    assert_eq!(client.budget().spent_total(), usd("0.001"));
    assert_eq!(paid.load(Ordering::SeqCst), 1);
    assert_eq!(env.revenue().await, ("0.001".to_string(), 1));

    // A POST body survives the retry; the dynamic price read it.
    let res = client.post_json(&env.url("/inference"), &json!({ "model": "large-v2" })).await.unwrap();
    assert_eq!(receipt_of(&res).unwrap().amount, "0.01");
    let (status, body) = json_of(res).await;
    assert_eq!(
        (status, body["model"].as_str(), body["paid"].as_str()),
        (200, Some("large-v2"), Some("0.01"))
    );
    assert_eq!(paid.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_proof_gets_a_402_challenge() {
    let env = setup().await;
    let res = reqwest::get(env.url("/hello?x=1")).await.unwrap();
    assert_eq!(res.status(), 402);
    let challenge =
        res.headers().get("vlexivo-challenge").expect("challenge header").to_str().unwrap().to_string();
    assert!(res.headers().get("access-control-expose-headers").is_none(), "no Origin: nothing exposed");
    let (_, body) = json_of(res).await;
    assert_eq!(body["error"], "payment_required");
    assert_eq!(body["price"], "0.001");
    assert_eq!(body["currency"], "usd");
    assert_eq!(body["scope"], "per-call");
    assert_eq!(body["resource"], format!("GET {}", env.url("/hello")));
    assert_eq!(body["facilitator"], env.srv.url.as_str());
    assert_eq!(body["challenge"], challenge.as_str());
    // The decoded challenge names this route and price.
    let pr =
        vlexivo_core::client::parse_payment_required(402, [("Vlexivo-Challenge", challenge.as_str())], b"")
            .unwrap();
    assert_eq!((pr.challenge.method.as_str(), pr.challenge.path.as_str()), ("GET", "/hello"));
    assert_eq!(pr.price, usd("0.001"));

    // From a web page of another origin: the challenge is exposed to its script.
    let res = reqwest::Client::new()
        .get(env.url("/hello"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 402);
    let expose = res.headers().get("access-control-expose-headers").expect("exposed").to_str().unwrap();
    assert!(expose.contains("Vlexivo-Challenge"), "{expose}");

    // A garbage proof: a 402 with that proof's error and a fresh challenge.
    let res = reqwest::Client::new()
        .get(env.url("/hello"))
        .header("Vlexivo-Proof", "not-a-jwt")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("vlexivo-challenge").is_some());
    let (status, body) = json_of(res).await;
    assert_eq!((status, body["error"].as_str()), (402, Some("token_malformed")));
}

#[tokio::test]
async fn replayed_token_is_409() {
    let env = setup().await;
    let client = env.client("1").await;
    let res = client.get(&env.url("/hello")).await.unwrap();
    let token = receipt_of(&res).unwrap().token.clone();
    let again =
        reqwest::Client::new().get(env.url("/hello")).header("Vlexivo-Proof", &token).send().await.unwrap();
    let (status, body) = json_of(again).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("token_replayed")));
    assert_eq!(env.revenue().await.1, 1);
}

#[tokio::test]
async fn token_for_another_route_is_refused() {
    let env = setup().await;
    let client = env.client("1").await;
    let res = client.get(&env.url("/hello")).await.unwrap();
    let token = receipt_of(&res).unwrap().token.clone();
    let other =
        reqwest::Client::new().get(env.url("/other")).header("Vlexivo-Proof", &token).send().await.unwrap();
    assert!(other.headers().get("vlexivo-challenge").is_some(), "a fresh challenge to pay properly");
    let (status, body) = json_of(other).await;
    assert_eq!((status, body["error"].as_str()), (402, Some("token_resource")));
}

#[tokio::test]
async fn token_for_the_cheap_model_does_not_buy_the_large_one() {
    let env = setup().await;
    let client = env.client("1").await;
    // Pay for the embed model ($0.0001) without using the token.
    let http = reqwest::Client::new();
    let res = http.post(env.url("/inference")).json(&json!({ "model": "embed-1" })).send().await.unwrap();
    assert_eq!(res.status(), 402);
    let headers = res.headers().clone();
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap()));
    let pr = vlexivo_core::client::parse_payment_required(402, pairs, b"").unwrap();
    assert_eq!(pr.price, usd("0.0001"));
    let receipt = client.pay_challenge(&pr, "POST", &env.url("/inference")).await.unwrap();
    // Present it for the large model ($0.01).
    let res = http
        .post(env.url("/inference"))
        .header("Vlexivo-Proof", &receipt.token)
        .json(&json!({ "model": "large-v2" }))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(res).await;
    assert_eq!(
        (status, body["error"].as_str(), body["price"].as_str()),
        (402, Some("token_underpaid"), Some("0.01"))
    );
    // The token was not consumed by the refusal: it still buys the embed call.
    let res = http
        .post(env.url("/inference"))
        .header("Vlexivo-Proof", &receipt.token)
        .json(&json!({ "model": "embed-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn failed_handler_releases_the_nonce_and_charges_once() {
    let env = setup().await;
    let client = env.client("1").await;
    let res = client.get(&env.url("/fail")).await.unwrap();
    assert_eq!(res.status(), 500);
    let receipt = receipt_of(&res).cloned().expect("paid before the handler failed");
    assert!(res.headers().get("vlexivo-receipt").is_none(), "no receipt for failed work");
    // The same token again: the handler runs and succeeds.
    let http = reqwest::Client::new();
    let res = http.get(env.url("/fail")).header("Vlexivo-Proof", &receipt.token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("vlexivo-receipt").is_some());
    assert_eq!(res.text().await.unwrap(), "worked");
    // And then it is used up.
    let res = http.get(env.url("/fail")).header("Vlexivo-Proof", &receipt.token).send().await.unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(env.fail_count.load(Ordering::SeqCst), 2);
    assert_eq!(env.revenue().await, ("0.002".to_string(), 1));
    assert_eq!(client.balance().await.unwrap(), usd("0.998"));
}

#[tokio::test]
async fn panicking_handler_releases_the_nonce() {
    let env = setup().await;
    let client = env.client("1").await;
    // axum turns a panic into a dropped connection; the client sees a transport error.
    let http = reqwest::Client::new();
    let res = http.get(env.url("/panic")).send().await.unwrap();
    let headers = res.headers().clone();
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap()));
    let pr = vlexivo_core::client::parse_payment_required(402, pairs, b"").unwrap();
    let receipt = client.pay_challenge(&pr, "GET", &env.url("/panic")).await.unwrap();
    for _ in 0..2 {
        let r = http.get(env.url("/panic")).header("Vlexivo-Proof", &receipt.token).send().await;
        // Not a 409: the nonce came back both times.
        if let Ok(r) = r {
            assert_ne!(r.status(), 409);
        }
    }
}

#[tokio::test]
async fn bad_price_is_a_500_never_free() {
    let env = setup().await;
    for path in ["/bad-price", "/bad-currency"] {
        let res = reqwest::get(env.url(path)).await.unwrap();
        assert!(res.headers().get("vlexivo-challenge").is_none());
        let (status, body) = json_of(res).await;
        assert_eq!((status, body["error"].as_str()), (500, Some("price_invalid")), "{path}");
        // No details of the provider's bug leak to the caller.
        assert!(!body["message"].as_str().unwrap().contains("abc"));
    }
    let client = env.client("1").await;
    let err = client.get(&env.url("/bad-price")).await.map(|r| r.status().as_u16()).unwrap();
    assert_eq!(err, 500);
    assert_eq!(client.balance().await.unwrap(), usd("1"));
}

#[tokio::test]
async fn budget_refusal_pays_nothing() {
    let env = setup().await;
    let client = env
        .client_with("1", |b| {
            b.spending(SpendingPolicy { max_per_call: Some(usd("0.0005")), ..SpendingPolicy::default() })
        })
        .await;
    match client.get(&env.url("/hello")).await {
        Err(Error::BudgetExceeded { requested, remaining, .. }) => {
            assert_eq!((requested.as_str(), remaining.as_str()), ("0.001", "0.0005"));
        }
        other => panic!("expected budget_exceeded, got {other:?}"),
    }
    assert_eq!(client.balance().await.unwrap(), usd("1"));
    assert_eq!(client.budget().reserved_total(), usd("0"));
    assert_eq!(env.revenue().await.1, 0);
    // A cheaper call within the cap goes through.
    let res = client.get(&env.url("/async?n=3")).await.unwrap();
    assert_eq!(receipt_of(&res).unwrap().amount, "0.0003");
}

#[tokio::test]
async fn insufficient_funds_carries_required_and_balance() {
    let env = setup().await;
    let client = env.client("0.0005").await;
    let err = client.get(&env.url("/hello")).await.unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("insufficient_funds", 402));
    match err {
        Error::InsufficientFunds { required, balance, currency } => {
            assert_eq!((required.as_str(), balance.as_str(), currency.as_str()), ("0.001", "0.0005", "usd"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.budget().reserved_total(), usd("0"));
    assert_eq!(client.budget().spent_total(), usd("0"));
}

#[tokio::test]
async fn facilitator_down_is_facilitator_unavailable() {
    // A paywall whose challenges name a facilitator that is not listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let env = setup_with(|c| c.facilitator_url = dead.clone(), None).await;
    let client = VlexivoClient::builder()
        .wallet(Wallet::generate(&OsEntropy))
        .facilitator_url(Some(&dead))
        .build()
        .unwrap();
    let err = client.get(&env.url("/hello")).await.unwrap_err();
    assert_eq!(err.code(), "facilitator_unavailable", "{err}");
    assert_eq!(client.budget().reserved_total(), usd("0"), "nothing was sent: reservation released");
    assert_eq!(client.budget().spent_total(), usd("0"));
    // A client that trusts another facilitator refuses the challenge before paying.
    let pinned = env.client("1").await;
    assert_eq!(pinned.get(&env.url("/hello")).await.unwrap_err().code(), "facilitator_untrusted");
}

#[tokio::test]
async fn auto_top_up_fills_an_empty_wallet() {
    let env = setup().await;
    let client = env.client_with("0", |b| b.auto_top_up(AutoTopUp::new("1.00", "10.00").unwrap())).await;
    let res = client.get(&env.url("/hello")).await.unwrap();
    assert_eq!(res.status(), 200);
    let top = res.extensions().get::<AutoTopUpDone>().expect("topped up").0.clone();
    assert_eq!((top.amount.as_str(), top.balance.as_str()), ("10", "10"));
    assert_eq!(receipt_of(&res).unwrap().balance, "9.999");
    // Above the trigger now: no second top-up.
    let res = client.get(&env.url("/hello")).await.unwrap();
    assert!(res.extensions().get::<AutoTopUpDone>().is_none());
    assert_eq!(client.balance().await.unwrap(), usd("9.998"));
}

#[tokio::test]
async fn async_price_and_nested_routes() {
    let env = setup().await;
    let client = env.client("1").await;
    let res = client.get(&env.url("/async?n=7")).await.unwrap();
    assert_eq!(receipt_of(&res).unwrap().amount, "0.0007");
    assert_eq!(res.text().await.unwrap(), "async priced");
    // Under `nest`, the challenge binds the full path the client called.
    let res = reqwest::get(env.url("/v2/deep")).await.unwrap();
    let (_, body) = json_of(res).await;
    assert_eq!(body["resource"], format!("GET {}", env.url("/v2/deep")));
    let res = client.get(&env.url("/v2/deep")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "nested ok");
}

#[tokio::test]
async fn body_bound_challenges() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn NonceStore> = Arc::new(SqliteStore::open(dir.path().join("nonces.db")).unwrap());
    let env = setup_with(|c| c.bind_body = true, Some(store)).await;
    let client = env.client("1").await;
    let res = client.post_json(&env.url("/inference"), &json!({ "model": "embed-x" })).await.unwrap();
    assert_eq!(res.status(), 200);
    let token = receipt_of(&res).unwrap().token.clone();
    // The token is bound to that body: another body (even at the same price) is refused.
    let res = reqwest::Client::new()
        .post(env.url("/inference"))
        .header("Vlexivo-Proof", &token)
        .json(&json!({ "model": "embed-y" }))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(res).await;
    assert_eq!((status, body["error"].as_str()), (402, Some("token_resource")));
}

#[tokio::test]
async fn concurrent_calls_pay_once_each() {
    let env = setup().await;
    let client = env.client_with("0", |b| b.auto_top_up(AutoTopUp::new("1.00", "10.00").unwrap())).await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let c = client.clone();
        let url = env.url("/hello");
        tasks.push(tokio::spawn(async move { c.get(&url).await.map(|r| r.status().as_u16()) }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(env.revenue().await, ("0.024".to_string(), 24));
    // One top-up for all of them, not 24.
    assert_eq!(client.balance().await.unwrap(), usd("9.976"));
    assert_eq!(client.budget().spent_total(), usd("0.024"));
}

#[tokio::test]
async fn redirected_calls_pay_for_where_they_land() {
    let env = setup().await;
    let client = env.client("1").await;
    let res = client.get(&env.url("/old-hello")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(receipt_of(&res).unwrap().amount, "0.001");
    let (_, body) = json_of(res).await;
    assert_eq!(body["resource"], format!("GET {}", env.url("/hello")));
}
