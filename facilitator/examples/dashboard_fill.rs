//! Fills a facilitator's SQLite ledger with many real payments, for the dashboard's figures
//! (time to first render of the payments page with 100k payments in the ledger).
//!
//!     cargo run -p vlexivo-facilitator --example dashboard_fill -- --db /tmp/vlx/f.db [--payments 100000]
//!
//! Every payment goes through `POST /v1/payments` of an in-process facilitator on 127.0.0.1
//! (challenge MAC, signature recovery, debit, credit, hash chain), from 20 sandbox wallets over
//! four routes. Prints the provider's `api_secret` first; then serve the same file with
//! `vlexivo serve --db …` and open `/dashboard`.

use std::sync::Arc;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::env::{OsEntropy, SystemClock};
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::payment;
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::wallet::Wallet;
use vlexivo_facilitator::server::{ServerConfig, spawn};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let db = arg("--db").expect("--db PATH");
    let total: usize = arg("--payments").map_or(100_000, |n| n.parse().expect("--payments N"));
    let srv = spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: db.into(),
        faucet_cap: "100000".into(),
        ..ServerConfig::default()
    })
    .await
    .expect("facilitator");
    let p = srv.create_provider(Some("Weather API"), None).await.unwrap();
    println!("{}", p.api_secret);
    let mut cfg = PaywallConfig::new(&p.api_secret);
    cfg.facilitator_url = srv.url.clone();
    let pw = Arc::new(Paywall::new(cfg).unwrap());
    let wallets: Arc<Vec<Wallet>> = Arc::new((0..20).map(|_| Wallet::generate(&OsEntropy)).collect());
    for w in wallets.iter() {
        srv.top_up(&w.address().to_checksum(), "5000").await.unwrap();
    }
    let http = reqwest::Client::new();
    let routes = [
        ("/v1/forecast", "0.002"),
        ("/v1/weather", "0.001"),
        ("/v1/history", "0.01"),
        ("/v1/alerts", "0.005"),
    ];
    let workers = 8;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|k| {
            let (pw, wallets, http, url) = (pw.clone(), wallets.clone(), http.clone(), srv.url.clone());
            tokio::spawn(async move {
                for i in (k..total).step_by(workers) {
                    let (path, price) = routes[i % routes.len()];
                    let price = Money::parse(price, Currency::Usd).unwrap();
                    let now = vlexivo_core::env::Clock::now(&SystemClock);
                    let info = RequestInfo::new("GET", "https", Some("api.example"), path);
                    let r = pw.challenge(&info, &price, "per-call", now, &OsEntropy).unwrap();
                    let enc = r
                        .headers
                        .iter()
                        .find(|(k, _)| *k == vlexivo_core::headers::CHALLENGE)
                        .unwrap()
                        .1
                        .clone();
                    let c = Challenge::decode(&enc).unwrap();
                    let req = payment::sign(&c, &enc, &wallets[i % wallets.len()]).unwrap();
                    let res = http.post(format!("{url}/v1/payments")).json(&req).send().await.unwrap();
                    assert!(res.status().is_success(), "{}", res.text().await.unwrap_or_default());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("{total} payments in {:.1} s", started.elapsed().as_secs_f64());
    srv.shutdown().await;
}
