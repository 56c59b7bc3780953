//! The payer flow's security rules through the Rust client, against real servers: a real
//! facilitator, a real paid API, and a real relay facilitator in between that forwards each
//! payment to the real one (which charges) and then answers the client 502 (issue 15 items 6,
//! 9 and 13).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use vlexivo_client::VlexivoClient;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{Paywall, PaywallConfig};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::store::MemoryStore;
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Money};
use vlexivo_facilitator::demo::paid_api;
use vlexivo_facilitator::server::{self, RunningServer, ServerConfig};

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::Usd).unwrap()
}

/// Forwards everything to the real facilitator; while `lie` is set, answers 502 to payments
/// after forwarding them (the real facilitator has charged).
#[derive(Clone)]
struct Relay {
    upstream: String,
    lie: Arc<AtomicBool>,
    payments: Arc<AtomicUsize>,
    http: reqwest::Client,
}

async fn forward(
    State(r): State<Relay>,
    method: axum::http::Method,
    uri: Uri,
    body: Bytes,
) -> impl IntoResponse {
    let url = format!("{}{}", r.upstream, uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let res = r
        .http
        .request(method, url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("upstream facilitator");
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
    let body = res.bytes().await.unwrap();
    if uri.path() == "/v1/payments" {
        r.payments.fetch_add(1, Ordering::SeqCst);
        if r.lie.load(Ordering::SeqCst) {
            return (StatusCode::BAD_GATEWAY, Bytes::from_static(b"<html>bad gateway</html>"));
        }
    }
    (status, body)
}

struct Env {
    srv: RunningServer,
    relay_url: String,
    relay: Relay,
    /// A paid API whose challenges name the relay.
    api: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", relay_listener.local_addr().unwrap());
    // The real facilitator believes it is reached at the relay's URL (the relay is a proxy in
    // front of it), so it accepts challenges naming the relay.
    let srv = server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.path().join("f.db"),
        public_url: Some(relay_url.clone()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let relay = Relay {
        upstream: srv.url.clone(),
        lie: Arc::new(AtomicBool::new(true)),
        payments: Arc::new(AtomicUsize::new(0)),
        http: reqwest::Client::new(),
    };
    let r = Router::new().fallback(any(forward)).with_state(relay.clone());
    tokio::spawn(async move { axum::serve(relay_listener, r).await });

    let p = srv.create_provider(None, None).await.unwrap();
    let mut cfg = PaywallConfig::new(p.api_secret);
    cfg.facilitator_url = relay_url.clone();
    let app = paid_api(Arc::new(Paywall::new(cfg).unwrap()), Arc::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Env { srv, relay_url, relay, api, _dir: dir }
}

impl Env {
    async fn wallet(&self, balance: &str) -> Wallet {
        let w = Wallet::generate(&OsEntropy);
        self.srv.top_up(&w.address().to_checksum(), balance).await.unwrap();
        w
    }

    async fn balance(&self, w: &Wallet) -> String {
        self.srv.balance(&w.address().to_checksum()).await.unwrap()
    }
}

/// Item 6: a client without a configured facilitator, given a 402 naming a facilitator it
/// does not trust, pays nothing (before: it paid the relay twice, 0.002 past a 0.001 cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_client_does_not_pay_a_facilitator_named_by_the_challenge() {
    let env = setup().await;
    let w = env.wallet("1").await;
    let client = VlexivoClient::builder()
        .wallet(w.clone())
        .spending(SpendingPolicy { max_total: Some(usd("0.001")), ..Default::default() })
        .build()
        .unwrap();
    for _ in 0..2 {
        let e = client.get(&format!("{}/api/v1/hello", env.api)).await.unwrap_err();
        assert_eq!(e.code(), "facilitator_untrusted", "{e}");
    }
    assert_eq!(env.relay.payments.load(Ordering::SeqCst), 0, "nothing signed or sent");
    assert_eq!(env.balance(&w).await, "1");
}

/// Item 13: a trusted facilitator that charges and answers 502. The payment stays counted
/// (in doubt), so the cap holds; once the relay tells the truth, re-sending the same signed
/// payment settles it and its proof serves the call it was bought for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_answered_502_stays_counted_until_its_fate_is_known() {
    let env = setup().await;
    let w = env.wallet("1").await;
    let client = VlexivoClient::builder()
        .wallet(w.clone())
        .facilitator_url(Some(&env.relay_url))
        .spending(SpendingPolicy { max_total: Some(usd("0.001")), ..Default::default() })
        .build()
        .unwrap();
    let hello = format!("{}/api/v1/hello", env.api);
    let e = client.get(&hello).await.unwrap_err();
    assert_eq!(e.code(), "payment_in_doubt", "{e}");
    // Charged once (the resend was the same payment: replayed, not charged again).
    assert_eq!(env.balance(&w).await, "0.999");
    assert_eq!(env.relay.payments.load(Ordering::SeqCst), 2);
    assert_eq!((client.budget().spent_total(), client.budget().reserved_total()), (usd("0"), usd("0.001")));
    // Another call: the in-doubt payment is re-sent first (502 again), then the cap refuses.
    let e = client.get(&format!("{}/api/v1/hello?again", env.api)).await.unwrap_err();
    assert_eq!(e.code(), "budget_exceeded", "{e}");
    assert_eq!(env.balance(&w).await, "0.999", "never more than the cap");
    // The relay stops lying: the next call learns the payment's fate and uses its proof.
    env.relay.lie.store(false, Ordering::SeqCst);
    let res = client.get(&hello).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(env.balance(&w).await, "0.999", "paid once in all");
    assert_eq!((client.budget().spent_total(), client.budget().reserved_total()), (usd("0.001"), usd("0")));
    assert_eq!(client.payer().in_doubt_total(), usd("0"));
}

/// Item 9: after the API's 5xx, the proof bought for that call buys the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_is_reused_after_the_api_fails() {
    let env = setup().await;
    env.relay.lie.store(false, Ordering::SeqCst);
    let w = env.wallet("1").await;
    let client =
        VlexivoClient::builder().wallet(w.clone()).facilitator_url(Some(&env.relay_url)).build().unwrap();
    let flaky = format!("{}/api/v1/report", env.api);
    let first = client.get(&flaky).await.unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(env.balance(&w).await, "0.998");
    let second = client.get(&flaky).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(env.balance(&w).await, "0.998", "not paid again");
    assert_eq!(env.relay.payments.load(Ordering::SeqCst), 1);
}
