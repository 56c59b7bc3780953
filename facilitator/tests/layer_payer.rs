//! Pricing by payer through the tower layer and the Rust client, against a real facilitator:
//! the article's discount (half price after a wallet's 10th call), the resolver reading the
//! payer from the request's extensions and the count from the facilitator's usage endpoint; the
//! Rust client's payer hint (on by default, off on request); a borrowed hint's challenge.

mod service_support;

use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use http::request::Parts;
use serde_json::Value;
use service_support::get_authed;
use std::sync::Arc;
use vlexivo_client::{VlexivoClient, receipt_of};
use vlexivo_core::env::OsEntropy;
use vlexivo_core::payer_pricing::PricedPayer;
use vlexivo_core::paywall::{PaymentFacts, Paywall, PaywallConfig};
use vlexivo_core::store::MemoryStore;
use vlexivo_core::wallet::Wallet;
use vlexivo_facilitator::server::{self, ServerConfig};
use vlexivo_tower::{PaywallLayer, Price};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_call_costs_half_through_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.path().join("f.db"),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let provider = srv.create_provider(Some("discounts"), None).await.unwrap();
    let mut pc = PaywallConfig::new(provider.api_secret.clone());
    pc.facilitator_url = srv.url.clone();
    let paywall = Arc::new(Paywall::new(pc).unwrap());

    // The article's resolver: the payer from the extensions, its count from the facilitator.
    let (fac, secret) = (srv.url.clone(), provider.api_secret.clone());
    let http = reqwest::Client::new();
    let discount = Price::dynamic_async(move |parts: Parts| {
        let (fac, secret, http) = (fac.clone(), secret.clone(), http.clone());
        async move {
            let Some(payer) = parts.extensions.get::<PricedPayer>() else { return "0.001" };
            let usage_url = format!("{fac}/v1/providers/me/payers/{}/usage?since=0", payer.address);
            let (s, usage) = get_authed(&http, &usage_url, &secret).await;
            assert_eq!(s, 200, "{usage}");
            if usage["count"].as_u64().unwrap() >= 10 { "0.0005" } else { "0.001" }
        }
    });
    let app = Router::new().route(
        "/data",
        get(
            |Extension(paid): Extension<PaymentFacts>, Extension(payer): Extension<PricedPayer>| async move {
                assert!(payer.proven && payer.address == paid.payer, "the handler sees the proven payer");
                paid.amount
            },
        )
        .layer(PaywallLayer::new(paywall, Arc::new(MemoryStore::new()), discount)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/data", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = |wallet: Wallet, hint: bool| {
        VlexivoClient::builder()
            .wallet(wallet)
            .facilitator_url(Some(srv.url.clone()))
            .payer_hint(hint)
            .build()
            .unwrap()
    };
    let loyal = Wallet::generate(&OsEntropy);
    let loyal_address = loyal.address().to_checksum();
    srv.top_up(&loyal_address, "1").await.unwrap();
    let c = client(loyal.clone(), true);
    let mut paid = vec![];
    for _ in 0..11 {
        let res = c.get(&api).await.unwrap();
        assert_eq!(res.status(), 200);
        paid.push(receipt_of(&res).unwrap().amount.clone());
    }
    assert_eq!(paid, [&["0.001"; 10][..], &["0.0005"]].concat());

    // Without the hint the 402 quotes the full price (the proof's payer is priced on the retry).
    let quiet = client(loyal.clone(), false);
    let res = quiet.get(&api).await.unwrap();
    assert_eq!(receipt_of(&res).unwrap().amount, "0.001");

    // Another wallet sending the loyal wallet's address gets a challenge only that wallet may
    // pay (the facilitator and the payer flow refuse any other: core's and usage.rs's tests).
    let raw = reqwest::Client::new().get(&api).header("Vlexivo-Payer", &loyal_address).send().await.unwrap();
    assert_eq!(raw.status(), 402);
    let encoded = raw.headers()["vlexivo-challenge"].to_str().unwrap().to_string();
    let c: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&encoded).unwrap())
            .unwrap();
    assert_eq!((c["amount"].as_str(), c["payer"].as_str()), (Some("0.0005"), Some(loyal_address.as_str())));
    let fresh = Wallet::generate(&OsEntropy);
    srv.top_up(&fresh.address().to_checksum(), "1").await.unwrap();
    let res = client(fresh.clone(), true).get(&api).await.unwrap();
    assert_eq!(receipt_of(&res).unwrap().amount, "0.001", "a fresh wallet pays full");
    assert_eq!(srv.balance(&fresh.address().to_checksum()).await.unwrap(), "0.999");
}
