//! Throughput smoke check (ignored by default; run with
//! `cargo test --release -p vlexivo-facilitator --test service_load -- --ignored --nocapture`).
//! The real benchmark lives with the benches; this only guards the order of magnitude.

mod service_support;

use parking_lot::Mutex;
use serde_json::json;
use service_support::*;
use std::sync::Arc;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test; run explicitly in release mode"]
async fn payments_per_second() {
    let n: usize = std::env::var("VLEXIVO_LOAD_N").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let conc: usize = std::env::var("VLEXIVO_LOAD_CONC").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let sync = std::env::var("VLEXIVO_LOAD_SYNC").unwrap_or_else(|_| "full".into());
    let f =
        Facilitator::start(&dir.path().join("f.db"), &["--faucet-cap", "1000000", "--synchronous", &sync]);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    // Several wallets so the load is not one hot row (it would still be correct).
    let wallets: Vec<_> = (0..8).map(|_| wallet()).collect();
    for w in &wallets {
        top_up(&c, &u, w, "1000").await;
    }
    let reqs: Vec<_> =
        (0..n).map(|i| sign(&challenge(&pw, "/r", "0.001"), &wallets[i % wallets.len()])).collect();
    let queue = Arc::new(Mutex::new(reqs));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let (c, u, q) = (c.clone(), u.clone(), queue.clone());
            tokio::spawn(async move {
                let mut ok = 0usize;
                loop {
                    let Some(r) = q.lock().pop() else { return ok };
                    let resp = c.post(format!("{u}/v1/payments")).json(&r).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                    let _ = resp.bytes().await;
                    ok += 1;
                }
            })
        })
        .collect();
    let pid = f.pid();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{ok} payments in {secs:.2} s: {:.0}/s (concurrency {conc}, synchronous {sync}; client and server share the cores)",
        ok as f64 / secs
    );
    // Server CPU per thread (Linux), to see where the time goes.
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let name = stat.split('(').nth(1).and_then(|s| s.split(')').next()).unwrap_or("?").to_string();
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            if ticks > 0 {
                eprintln!("  server thread {name}: {} ms CPU", ticks * 10);
            }
        }
    }
    assert_eq!(ok, n);
}
