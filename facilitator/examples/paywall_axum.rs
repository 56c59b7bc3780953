//! A provider's paid API with the tower layer: the article's flat, per-model and per-range
//! prices. Start a facilitator (`vlexivo serve`), onboard (`vlexivo provider create`), then:
//!
//!     VLX_SECRET_KEY=sk_test_… VLX_FACILITATOR_URL=http://127.0.0.1:4020 \
//!         cargo run -p vlexivo-facilitator --example paywall_axum
//!     vlexivo pay http://127.0.0.1:3000/api/v1/hello --wallet-key 0x…

use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::request::Parts;
use serde_json::{Value, json};
use std::sync::Arc;
use vlexivo_core::paywall::{PaymentFacts, Paywall, PaywallConfig};
use vlexivo_core::store::SqliteStore;
use vlexivo_tower::{PaywallLayer, Price};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = PaywallConfig::new(std::env::var("VLX_SECRET_KEY")?);
    if let Some(url) = vlexivo_core::envvars::FACILITATOR_URL.from_process()? {
        cfg.facilitator_url = url;
    }
    let paywall = Arc::new(Paywall::new(cfg)?);
    // Single-use proofs survive restarts and are shared by every process on this machine.
    let store = Arc::new(SqliteStore::open("nonces.db")?);
    let paid = |price: Price| PaywallLayer::new(paywall.clone(), store.clone(), price);

    let app = Router::new()
        .route(
            "/api/v1/hello",
            get(|Extension(p): Extension<PaymentFacts>| async move { format!("hello {}\n", p.payer) })
                .layer(paid(Price::fixed("0.001"))),
        )
        .route(
            "/api/v1/inference",
            post(
                |Json(req): Json<Value>| async move { Json(json!({ "result": "…", "model": req["model"] })) },
            )
            // The price depends on the JSON body's model, as the article's priceResolver.
            .layer(paid(Price::dynamic_with_body(|_: &Parts, body: &[u8]| {
                let model = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["model"].as_str().map(String::from));
                match model.as_deref() {
                    Some(m) if m.contains("large") => "0.01",
                    Some(m) if m.contains("embed") => "0.0001",
                    _ => "0.001",
                }
            }))),
        )
        .route(
            "/api/v1/data",
            get(|| async { Json(json!({ "points": [] })) }).layer(paid(Price::dynamic(|parts: &Parts| {
                vlexivo_facilitator::demo::data_price(
                    parts.uri.query(),
                    vlexivo_facilitator::demo::current_year(),
                )
            }))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("paid API on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
