//! A paid API on loopback, for the Kotlin end-to-end tests (tests/kotlin): the facilitator
//! crate's `PaywallLayer` in front of a few axum routes, onboarded as a fresh sandbox provider.
//!
//! ```text
//! cargo run -p vlexivo-uniffi --example paid_api -- http://127.0.0.1:PORT
//! PAID_API_URL=http://127.0.0.1:PORT2       (one line on stdout once it listens)
//! ```
//!
//! Routes: `GET /v1/quote` (0.001), `POST /api/v1/inference` (priced by the JSON body's
//! `model`: "large" 0.01, "embed" 0.0001, else 0.001), `GET /v1/expensive` (5), `GET /v1/flaky`
//! (0.002; its first paid call answers 500), `GET /free`.
//! It exits when its stdin closes, so a test runner that dies leaves nothing behind.
//! With `PAID_API_TLS_CERT` and `PAID_API_TLS_KEY` (PEM files) it serves HTTPS; `VLX_CA_FILE`
//! is a CA it trusts for an HTTPS facilitator.

use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use vlexivo_core::paywall::{PaymentFacts, Paywall, PaywallConfig};
use vlexivo_core::store::MemoryStore;
use vlexivo_tower::{PaywallLayer, Price};

fn model_price(body: &[u8]) -> &'static str {
    let model = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    if model.contains("large") {
        "0.01"
    } else if model.contains("embed") {
        "0.0001"
    } else {
        "0.001"
    }
}

async fn paid(Extension(p): Extension<PaymentFacts>) -> Json<Value> {
    Json(json!({ "ok": true, "payer": p.payer, "amount": p.amount, "tx_hash": p.tx_hash }))
}

async fn inference(Extension(p): Extension<PaymentFacts>, Json(body): Json<Value>) -> Json<Value> {
    Json(json!({ "result": format!("echo: {}", body["prompt"].as_str().unwrap_or("")),
                 "model": body["model"], "payer": p.payer, "amount": p.amount }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let facilitator = std::env::args()
        .nth(1)
        .or_else(|| vlexivo_core::envvars::FACILITATOR_URL.from_process().ok().flatten())
        .expect("usage: paid_api FACILITATOR_URL");
    let facilitator = facilitator.trim_end_matches('/').to_string();

    // Onboard a fresh sandbox provider (POST /v1/providers), as a real provider would once.
    let http = vlexivo_client::tls::TlsConfig::from_env().and_then(|t| t.client()).expect("TLS settings");
    // A provider already onboarded (VLX_SECRET_KEY: a live one, whose settlement terms the
    // paywall reads from VLX_NETWORK, VLX_ASSET, VLX_PAY_TO…), else a fresh sandbox one.
    let secret = match std::env::var("VLX_SECRET_KEY") {
        Ok(s) => s,
        Err(_) => {
            let created: Value = http
                .post(format!("{facilitator}/v1/providers"))
                .json(&json!({ "mode": "sandbox", "name": "uniffi-tests" }))
                .send()
                .await
                .expect("facilitator reachable")
                .json()
                .await
                .expect("provider JSON");
            created["api_secret"].as_str().expect("api_secret").to_string()
        }
    };

    // The origin the tests call, configured as in production: behind the TLS listener the
    // paywall could not tell the scheme from the request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("non-blocking socket");
    let addr = listener.local_addr().expect("local addr");
    let tls_files = match (std::env::var("PAID_API_TLS_CERT"), std::env::var("PAID_API_TLS_KEY")) {
        (Ok(cert), Ok(key)) => Some((cert, key)),
        _ => None,
    };
    let scheme = if tls_files.is_some() { "https" } else { "http" };
    let mut cfg = PaywallConfig::new(secret);
    cfg.facilitator_url = facilitator;
    cfg.origin = Some(format!("{scheme}://{addr}"));
    let paywall = Arc::new(Paywall::new(cfg).expect("paywall config"));
    let store = Arc::new(MemoryStore::new());
    let layer = |price: Price| PaywallLayer::new(paywall.clone(), store.clone(), price);

    let app = Router::new()
        .route("/v1/quote", get(paid).layer(layer(Price::fixed("0.001"))))
        .route("/v1/expensive", get(paid).layer(layer(Price::fixed("5"))))
        .route(
            "/api/v1/inference",
            post(inference).layer(layer(Price::dynamic_with_body(|_, body| model_price(body)))),
        )
        .route(
            "/v1/flaky",
            get({
                let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                move |p: Extension<PaymentFacts>| {
                    let failed = failed.clone();
                    async move {
                        if !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            return (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                Json(json!({ "error": "down" })),
                            );
                        }
                        (axum::http::StatusCode::OK, paid(p).await)
                    }
                }
            })
            .layer(layer(Price::fixed("0.002"))),
        )
        .route("/free", get(|| async { "free" }));

    let tls = match tls_files {
        Some((cert, key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.expect("TLS certificate"),
        ),
        None => None,
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "PAID_API_URL={scheme}://{addr}");
        let _ = writeln!(out, "PAID_API_ACCOUNT={}", paywall.account());
        let _ = out.flush();
    }
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    match tls {
        Some(tls) => axum_server::from_tcp_rustls(listener, tls)
            .expect("TLS listener")
            .serve(app.into_make_service())
            .await
            .expect("serve"),
        None => axum::serve(tokio::net::TcpListener::from_std(listener).expect("listener"), app)
            .await
            .expect("serve"),
    }
}
