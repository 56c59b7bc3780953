//! Several `vlexivo serve` processes on one real PostgreSQL (a throwaway server on a loopback
//! port): concurrency between facilitators, idempotent payments across them, the database
//! restarting under load, a facilitator SIGKILLed while the others serve, migrations, bad URLs,
//! and `vlexivo ledger verify` on the result every time.

mod service_support;

use parking_lot::Mutex;
use serde_json::{Value, json};
use service_support::*;
use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use vlexivo_core::payment::PaymentRequest;
use vlexivo_testkit::Server;

/// The URL every facilitator puts in tokens: they stand behind one load balancer.
const PUBLIC: &str = "http://127.0.0.1:4020";

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn verify(url: &str) -> (bool, Value, String) {
    let out = Command::new(BIN).args(["ledger", "verify", "--json", "--db", url]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v, String::from_utf8_lossy(&out.stderr).to_string())
}

fn start(url: &str, dir: &std::path::Path, n: usize) -> Vec<Facilitator> {
    (0..n)
        .map(|_| Facilitator::start_pg(url, dir, &["--public-url", PUBLIC, "--faucet-cap", "1000"]))
        .collect()
}

/// Send every request with `workers` in flight; `route(i)` picks the facilitator of request i.
/// Returns (status, body) per request, in request order.
async fn pay_all(
    reqs: Vec<PaymentRequest>,
    workers: usize,
    route: impl Fn(usize) -> String + Send + Sync + 'static,
    acked: Arc<AtomicUsize>,
) -> Vec<(u16, Value)> {
    let n = reqs.len();
    let queue = Arc::new(Mutex::new(reqs.into_iter().enumerate().collect::<Vec<_>>()));
    let results = Arc::new(Mutex::new(vec![(0u16, Value::Null); n]));
    let route = Arc::new(route);
    let c = http();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (q, res, route, c, acked) =
                (queue.clone(), results.clone(), route.clone(), c.clone(), acked.clone());
            tokio::spawn(async move {
                loop {
                    let Some((i, r)) = q.lock().pop() else { return };
                    let url = format!("{}/v1/payments", route(i));
                    let out = match c.post(url).json(&r).send().await {
                        Ok(resp) => {
                            let s = resp.status().as_u16();
                            (s, resp.json().await.unwrap_or(Value::Null))
                        }
                        // The facilitator is gone (killed): status 0.
                        Err(_) => (0, Value::Null),
                    };
                    if out.0 == 200 {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    res.lock()[i] = out;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_facilitators_share_one_ledger() {
    let pg = Server::postgres();
    let url = pg.database("ledger");
    let dir = tempfile::tempdir().unwrap();
    let fs = start(&url, dir.path(), 3);
    let urls: Vec<String> = fs.iter().map(|f| f.url.clone()).collect();
    let c = http();
    // Onboarded on one facilitator, known to the others through the database.
    let p = create_provider(&c, &urls[0], json!({})).await;
    let pw = paywall(&p.api_secret, PUBLIC);
    let w = wallet();
    assert_eq!(top_up(&c, &urls[1], &w, "0.6").await.0, 200);

    // 1,000 payments of 0.001 from a wallet funded for 600, spread over the three.
    let reqs: Vec<_> = (0..1000).map(|_| sign(&challenge(&pw, "/r", "0.001"), &w)).collect();
    let u = urls.clone();
    let out = pay_all(reqs, 96, move |i| u[i % 3].clone(), Arc::new(AtomicUsize::new(0))).await;
    let ok: Vec<_> = out.iter().filter(|(s, _)| *s == 200).collect();
    let poor = out.iter().filter(|(s, v)| *s == 402 && v["error"] == "insufficient_funds").count();
    assert_eq!((ok.len(), poor), (600, 400), "{:?}", out.iter().find(|(s, _)| *s != 200 && *s != 402));
    let hashes: HashSet<_> = ok.iter().map(|(_, v)| v["tx_hash"].as_str().unwrap().to_string()).collect();
    assert_eq!(hashes.len(), 600, "no duplicated transaction");
    for u in &urls {
        assert_eq!(balance(&c, u, &w).await, "0");
    }

    // The same challenge paid through two facilitators at once debits once.
    let w2 = wallet();
    assert_eq!(top_up(&c, &urls[2], &w2, "1").await.0, 200);
    let twice: Vec<_> = (0..20).map(|_| sign(&challenge(&pw, "/twice", "0.001"), &w2)).collect();
    let doubled: Vec<_> = twice.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
    let u = urls.clone();
    let out = pay_all(doubled, 40, move |i| u[i % 2].clone(), Arc::new(AtomicUsize::new(0))).await;
    for pair in out.chunks(2) {
        assert_eq!((pair[0].0, pair[1].0), (200, 200), "{pair:?}");
        assert_eq!(pair[0].1["tx_hash"], pair[1].1["tx_hash"]);
        assert_eq!(pair[0].1["token"], pair[1].1["token"]);
        let replays = pair.iter().filter(|(_, v)| v["replayed"] == true).count();
        assert_eq!(replays, 1, "{pair:?}");
    }
    assert_eq!(balance(&c, &urls[0], &w2).await, "0.98");

    // Revenue read through another facilitator than the one that onboarded the provider.
    let (s, me) = get_authed(&c, &format!("{}/v1/providers/me", urls[2]), &p.api_secret).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!((me["revenue"]["total"].as_str(), me["revenue"]["count"].as_u64()), (Some("0.62"), Some(620)));

    let (ok, v, err) = verify(&url);
    assert!(ok, "{v} {err}");
    assert_eq!(v["summary"]["payments"], 620);
    assert_eq!(v["summary"]["topups"], 2);
    let streams = v["summary"]["streams"].as_array().unwrap().len();
    assert!(streams <= 3, "{v}");
    assert_eq!(psql(&url, "SELECT min(balance) >= 0 FROM vlexivo.accounts WHERE kind <> 'faucet'"), "t");
    // The provider was credited on the shards of the writers' streams, never on its own row
    // (which every payment would otherwise lock): one shard per facilitator that wrote.
    assert_eq!(psql(&url, "SELECT balance FROM vlexivo.accounts WHERE kind = 'provider'"), "0");
    assert_eq!(
        psql(&url, "SELECT count(*) || ' ' || sum(balance) FROM vlexivo.credit_shards"),
        format!("{streams} 620000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_payment_load() {
    let pg = Server::postgres();
    let url = pg.database("ledger");
    let dir = tempfile::tempdir().unwrap();
    // Writes wait at most 1 s for the database, so an outage of 3 s is seen by clients.
    let fs: Vec<_> = (0..2)
        .map(|_| Facilitator::start_pg(&url, dir.path(), &["--public-url", PUBLIC, "--db-retry-secs", "1"]))
        .collect();
    let urls: Vec<String> = fs.iter().map(|f| f.url.clone()).collect();
    let c = http();
    let p = create_provider(&c, &urls[0], json!({})).await;
    let pw = paywall(&p.api_secret, PUBLIC);
    let w = wallet();
    assert_eq!(top_up(&c, &urls[0], &w, "10").await.0, 200);
    let reqs: Vec<_> = (0..800).map(|_| sign(&challenge(&pw, "/r", "0.001"), &w)).collect();

    let acked = Arc::new(AtomicUsize::new(0));
    let u = urls.clone();
    let load = tokio::spawn(pay_all(reqs.clone(), 32, move |i| u[i % 2].clone(), acked.clone()));
    // Crash the database a little into the load, bring it back a second later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < 150 {
        assert!(
            !load.is_finished() && std::time::Instant::now() < deadline,
            "the load never reached 150 payments"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    pg.kill();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    pg.restart();
    let out = load.await.unwrap();

    // Every answer is a payment or facilitator_unavailable: never a wrong balance or a 500.
    let mut acked_hashes = Vec::new();
    let mut unavailable = Vec::new();
    for (i, (s, v)) in out.iter().enumerate() {
        match s {
            200 => acked_hashes.push(v["tx_hash"].as_str().unwrap().to_string()),
            503 => {
                assert_eq!(v["error"], "facilitator_unavailable", "{v}");
                unavailable.push(i);
            }
            other => panic!("unexpected answer {other}: {v}"),
        }
    }
    eprintln!(
        "during the restart: {} acknowledged, {} facilitator_unavailable",
        acked_hashes.len(),
        unavailable.len()
    );
    assert!(!unavailable.is_empty(), "the outage outlasted the retry window: some writes were refused");
    // The operator sees it: database failures by event on each facilitator's /metrics.
    let mut metrics = String::new();
    for u in &urls {
        metrics += &c.get(format!("{u}/metrics")).send().await.unwrap().text().await.unwrap();
    }
    let count = |event: &str| -> u64 {
        let line = format!("vlexivo_ledger_db_errors_total{{event=\"{event}\"}} ");
        metrics.lines().filter_map(|l| l.strip_prefix(line.as_str())).map(|n| n.parse::<u64>().unwrap()).sum()
    };
    assert!(count("connection_lost") >= 2 && count("gave_up") >= 1, "{metrics}");
    // Every acknowledged payment is stored, once.
    let list = acked_hashes.iter().map(|h| format!("'{h}'")).collect::<Vec<_>>().join(",");
    let stored = psql(&url, &format!("SELECT count(*) FROM vlexivo.payments WHERE tx_hash IN ({list})"));
    assert_eq!(stored, acked_hashes.len().to_string());
    // The refused ones, sent again, are paid now (or answered as the payment they already were).
    for i in unavailable {
        let (s, v) = pay(&c, &urls[i % 2], &reqs[i]).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(psql(&url, "SELECT count(*) FROM vlexivo.payments"), "800");
    assert_eq!(balance(&c, &urls[1], &w).await, "9.2");
    let (ok, v, err) = verify(&url);
    assert!(ok, "{v} {err}");
    assert_eq!(v["summary"]["payments"], 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_facilitator_killed_while_two_serve() {
    let pg = Server::postgres();
    let url = pg.database("ledger");
    let dir = tempfile::tempdir().unwrap();
    let mut fs = start(&url, dir.path(), 3);
    let urls: Vec<String> = fs.iter().map(|f| f.url.clone()).collect();
    let c = http();
    let p = create_provider(&c, &urls[1], json!({})).await;
    let pw = paywall(&p.api_secret, PUBLIC);
    let w = wallet();
    assert_eq!(top_up(&c, &urls[2], &w, "1").await.0, 200);
    let reqs: Vec<_> = (0..500).map(|_| sign(&challenge(&pw, "/r", "0.001"), &w)).collect();

    let acked = Arc::new(AtomicUsize::new(0));
    let u = urls.clone();
    let load = tokio::spawn(pay_all(reqs.clone(), 32, move |i| u[i % 3].clone(), acked.clone()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < 100 {
        assert!(
            !load.is_finished() && std::time::Instant::now() < deadline,
            "the load never reached 100 payments"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    fs[2].kill9();
    let out = load.await.unwrap();
    // What the dead one did not answer goes to the survivors (as a load balancer would).
    let mut retried = 0;
    for (i, (s, v)) in out.iter().enumerate() {
        match s {
            200 => {}
            0 | 503 => {
                let (s, v) = pay(&c, &urls[i % 2], &reqs[i]).await;
                assert_eq!(s, 200, "{v}");
                retried += 1;
            }
            other => panic!("unexpected answer {other}: {v}"),
        }
    }
    assert!(retried > 0, "the kill happened during the load");
    assert_eq!(psql(&url, "SELECT count(*) FROM vlexivo.payments"), "500");
    assert_eq!(balance(&c, &urls[0], &w).await, "0.5");
    let (ok, v, err) = verify(&url);
    assert!(ok, "{v} {err}");

    // A new facilitator takes the dead one's stream (its lock went with its connection) and
    // continues that chain.
    let streams_before = psql(&url, "SELECT count(*) FROM vlexivo.streams");
    let f4 = Facilitator::start_pg(&url, dir.path(), &["--public-url", PUBLIC]);
    let (s, v) = pay(&c, &f4.url, &sign(&challenge(&pw, "/after", "0.001"), &w)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(psql(&url, "SELECT count(*) FROM vlexivo.streams"), streams_before);
    let (ok, v, err) = verify(&url);
    assert!(ok, "{v} {err}");
    assert_eq!(v["summary"]["payments"], 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_tampering_and_bad_urls() {
    let pg = Server::postgres();
    let url = pg.database("ledger");
    let dir = tempfile::tempdir().unwrap();
    let c = http();
    {
        let mut fs = start(&url, dir.path(), 1);
        let p = create_provider(&c, &fs[0].url, json!({})).await;
        let pw = paywall(&p.api_secret, PUBLIC);
        let w = wallet();
        top_up(&c, &fs[0].url, &w, "1").await;
        for _ in 0..3 {
            assert_eq!(pay(&c, &fs[0].url, &sign(&challenge(&pw, "/r", "0.01"), &w)).await.0, 200);
        }
        assert_eq!(fs[0].terminate(), Some(0));
    }
    // Versioned: each applied once, in order, not again on the next start.
    let all =
        (1..=vlexivo_facilitator::server::pg::SCHEMA_VERSION).map(|v| v.to_string()).collect::<Vec<_>>();
    assert_eq!(
        psql(&url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM vlexivo.schema_migrations"),
        all.join(",")
    );
    drop(start(&url, dir.path(), 1));
    assert_eq!(psql(&url, "SELECT count(*) FROM vlexivo.schema_migrations"), all.len().to_string());

    let (ok, v, _) = verify(&url);
    assert!(ok, "{v}");
    assert_eq!(
        (v["summary"]["transactions"].as_u64(), v["summary"]["streams"].as_array().unwrap().len()),
        (Some(4), 1)
    );
    // A record edited (even re-hashed): the chain breaks there.
    let (stream, rec): (String, String) = {
        let row = psql(&url, "SELECT stream || '|' || record FROM vlexivo.transactions WHERE seq = 2");
        let (s, r) = row.split_once('|').unwrap();
        (s.to_string(), r.to_string())
    };
    let forged = rec.replace("\"amount\":10000", "\"amount\":1");
    assert_ne!(rec, forged);
    psql(&url, &format!("UPDATE vlexivo.transactions SET record = '{forged}' WHERE seq = 2"));
    let (ok, v, err) = verify(&url);
    assert!(!ok);
    assert!(err.contains(&format!("stream {stream} transaction 2:")), "{v} {err}");
    psql(&url, &format!("UPDATE vlexivo.transactions SET record = '{rec}' WHERE seq = 2"));
    assert!(verify(&url).0);
    // A balance edited behind the ledger's back: the provider's row, or one of its credit shards.
    psql(&url, "UPDATE vlexivo.accounts SET balance = balance + 1 WHERE kind = 'provider'");
    let (ok, _, err) = verify(&url);
    assert!(!ok && err.contains("balance"), "{err}");
    psql(&url, "UPDATE vlexivo.accounts SET balance = balance - 1 WHERE kind = 'provider'");
    assert!(verify(&url).0);
    psql(&url, "UPDATE vlexivo.credit_shards SET balance = balance + 1");
    let (ok, _, err) = verify(&url);
    assert!(!ok && err.contains("balance"), "{err}");
    psql(&url, "UPDATE vlexivo.credit_shards SET balance = balance - 1");
    assert!(verify(&url).0);
    // Money moved from the provider's row to a shard keeps the sum: still consistent.
    let shard = psql(&url, "SELECT shard FROM vlexivo.credit_shards");
    psql(&url, &format!("UPDATE vlexivo.credit_shards SET balance = balance - 5 WHERE shard = {shard}"));
    psql(&url, "UPDATE vlexivo.accounts SET balance = balance + 5 WHERE kind = 'provider'");
    assert!(verify(&url).0);
    // A shard of no provider holds money nobody has.
    psql(
        &url,
        "INSERT INTO vlexivo.credit_shards (account, shard, balance) VALUES ('wallet:0xnobody', 0, 0)",
    );
    let (ok, _, err) = verify(&url);
    assert!(!ok && err.contains("credit shards of wallet:0xnobody"), "{err}");
    psql(&url, "DELETE FROM vlexivo.credit_shards WHERE account = 'wallet:0xnobody'");
    // The database refuses a negative shard by itself.
    let out = Command::new("psql")
        .args([&url, "-At", "-c", "UPDATE vlexivo.credit_shards SET balance = -1"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("check"));
    // The database refuses a negative wallet balance by itself.
    let out = Command::new("psql")
        .args([&url, "-At", "-c", "UPDATE vlexivo.accounts SET balance = -1 WHERE kind = 'wallet'"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("check"));

    // A URL that points nowhere is a clear config error at startup (exit 2), password hidden.
    let out = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--db", "postgres://app:hunter2@127.0.0.1:1/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config_invalid") && err.contains("cannot connect"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let out = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--db", "postgres://h/x?sslmod=x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // Verify on a database with no ledger says so.
    let empty = pg.database("empty");
    let (ok, _, err) = verify(&empty);
    assert!(!ok && err.contains("no vlexivo ledger"), "{err}");
}

/// Payments/s with 1, 2 and 3 facilitators on PostgreSQL against one on SQLite, the same load
/// (a benchmark, not a check: run in release, on a quiet machine,
/// `cargo test --release -p vlexivo-facilitator --test scale_postgres payments_per_second -- --ignored --nocapture`;
/// VLX_BENCH_N payments, VLX_BENCH_CONC in flight). Load generator and servers share the cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly in release mode"]
async fn payments_per_second() {
    let n: usize = std::env::var("VLX_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(6000);
    let conc: usize = std::env::var("VLX_BENCH_CONC").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    let pg = Server::postgres();
    let dir = tempfile::tempdir().unwrap();
    let c = http();
    let mut report = Vec::new();
    for (label, k) in [("sqlite x1", 0usize), ("postgres x1", 1), ("postgres x2", 2), ("postgres x3", 3)] {
        let fs: Vec<Facilitator> = if k == 0 {
            vec![Facilitator::start(
                &dir.path().join(format!("bench-{}.db", report.len())),
                &["--public-url", PUBLIC, "--faucet-cap", "1000000"],
            )]
        } else {
            let url = pg.database(&format!("bench{k}"));
            (0..k)
                .map(|_| {
                    Facilitator::start_pg(
                        &url,
                        dir.path(),
                        &["--public-url", PUBLIC, "--faucet-cap", "1000000"],
                    )
                })
                .collect()
        };
        let urls: Vec<String> = fs.iter().map(|f| f.url.clone()).collect();
        let p = create_provider(&c, &urls[0], json!({})).await;
        let pw = paywall(&p.api_secret, PUBLIC);
        let wallets: Vec<_> = (0..16).map(|_| wallet()).collect();
        for w in &wallets {
            assert_eq!(top_up(&c, &urls[0], w, "1000").await.0, 200);
        }
        let reqs: Vec<_> =
            (0..n).map(|i| sign(&challenge(&pw, "/r", "0.001"), &wallets[i % wallets.len()])).collect();
        let u = urls.clone();
        let start = std::time::Instant::now();
        let out = pay_all(reqs, conc, move |i| u[i % u.len()].clone(), Arc::new(AtomicUsize::new(0))).await;
        let secs = start.elapsed().as_secs_f64();
        assert!(out.iter().all(|(s, _)| *s == 200));
        // The payment's own latency, one at a time (what a paying client waits for).
        let mut one = Vec::with_capacity(200);
        for i in 0..200 {
            let r = sign(&challenge(&pw, "/r", "0.001"), &wallets[i % wallets.len()]);
            let started = std::time::Instant::now();
            assert_eq!(pay(&c, &urls[i % urls.len()], &r).await.0, 200);
            one.push(started.elapsed());
        }
        one.sort();
        report.push(format!(
            "{label}: {:.0} payments/s ({n} payments, {conc} in flight, {secs:.2} s); one at a time p50 {:.2} ms",
            n as f64 / secs,
            one[100].as_secs_f64() * 1e3
        ));
    }
    for r in report {
        eprintln!("{r}");
    }
}

// ---------------------------------------------------------------------------------------------
// How cost grows (benchmarks, never assertions; run one at a time on a quiet machine):
//   cargo test --release -p vlexivo-facilitator --test scale_postgres growth_ -- --ignored --nocapture --test-threads 1
// Sizes: VLX_GROWTH_NONCES (1,000,000), VLX_GROWTH_ROWS (10,000,000), VLX_GROWTH_PAYMENTS (1,000,000).
// ---------------------------------------------------------------------------------------------

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

fn percentile(sorted: &[std::time::Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

/// Keys as a paywall makes them: the provider account, ":", a challenge nonce (18 random bytes).
fn nonce_keys(n: usize) -> Vec<String> {
    let secret =
        vlexivo_core::keys::generate_secret(vlexivo_core::keys::Mode::Sandbox, &vlexivo_core::env::OsEntropy);
    let account = vlexivo_core::keys::ProviderKeys::from_secret(&secret).unwrap().account;
    (0..n)
        .map(|_| {
            let nonce = vlexivo_core::env::random_b64(&vlexivo_core::env::OsEntropy, 18);
            vlexivo_core::store::nonce_key(&account, &nonce)
        })
        .collect()
}

#[test]
#[ignore = "benchmark: memory store bytes per live nonce"]
fn growth_memory_store_bytes_per_nonce() {
    use vlexivo_core::store::{MemoryStore, NonceStore};
    let n = env_n("VLX_GROWTH_NONCES", 1_000_000);
    let keys = nonce_keys(n);
    let t = now();
    let before = rss_bytes();
    let store = MemoryStore::with_capacity(n + 1);
    for k in &keys {
        assert!(store.consume(k, t + 330, t).unwrap().is_fresh());
    }
    let after = rss_bytes();
    eprintln!(
        "memory store: {} live nonces (keys of {} bytes) take {:.0} MB: {} bytes per nonce",
        n,
        keys[0].len(),
        (after - before) as f64 / 1e6,
        (after - before) / n as u64
    );
    drop(store);
}

#[test]
#[ignore = "benchmark: PostgreSQL nonce store consume latency at 10M rows"]
fn growth_postgres_store_at_10m_rows() {
    let rows = env_n("VLX_GROWTH_ROWS", 10_000_000);
    let pg = Server::postgres();
    let url = pg.database("growth");
    let store = vlexivo_core::store::open(&url, &[]).unwrap();
    let measure_once = |label: &str| {
        let keys = nonce_keys(2000);
        let t = now();
        let mut took: Vec<_> = keys
            .iter()
            .map(|k| {
                let started = std::time::Instant::now();
                assert!(store.consume(k, t + 330, t).unwrap().is_fresh());
                started.elapsed()
            })
            .collect();
        took.sort();
        eprintln!(
            "postgres store, {label}: consume p50 {:.0} µs, p99 {:.0} µs (2000 consumes)",
            percentile(&took, 0.5),
            percentile(&took, 0.99)
        );
    };
    let measure = |label: &str| (0..3).for_each(|_| measure_once(label));
    measure("empty table");
    let started = std::time::Instant::now();
    // Live rows (expiring in an hour), keys shaped like the store's.
    psql(
        &url,
        &format!(
            "INSERT INTO vlexivo_nonces (key, lease, expires_at) \
             SELECT 'acct_' || md5(g::text) || ':' || md5((g * 7)::text), g, {} \
             FROM generate_series(1, {rows}) g; ANALYZE vlexivo_nonces",
            now() + 3600
        ),
    );
    eprintln!("({rows} rows inserted in {:.0} s)", started.elapsed().as_secs_f64());
    measure(&format!("{rows} rows"));
    eprintln!(
        "table + index: {}",
        psql(&url, "SELECT pg_size_pretty(pg_total_relation_size('vlexivo_nonces'))")
    );
}

/// Sixteen funded wallets paying one provider 0.001 a call: how the growth and recovery
/// benchmarks fill a ledger.
struct Payers {
    pw: Arc<vlexivo_core::paywall::Paywall>,
    wallets: Arc<Vec<vlexivo_core::wallet::Wallet>>,
}

impl Payers {
    async fn new(c: &reqwest::Client, url: &str, api_secret: &str) -> Self {
        let wallets: Arc<Vec<_>> = Arc::new((0..16).map(|_| wallet()).collect());
        for w in wallets.iter() {
            assert_eq!(top_up(c, url, w, "100000").await.0, 200);
        }
        Self { pw: Arc::new(paywall(api_secret, PUBLIC)), wallets }
    }

    /// `k` payments signed on two threads (challenges live 5 minutes: signed per burst, just
    /// before paying), then paid with 96 in flight; returns payments per second.
    async fn burst(&self, url: &str, k: usize) -> f64 {
        let half = |from: usize, to: usize| {
            let (pw, wallets) = (self.pw.clone(), self.wallets.clone());
            tokio::task::spawn_blocking(move || {
                (from..to).map(|i| sign(&challenge(&pw, "/r", "0.001"), &wallets[i % 16])).collect::<Vec<_>>()
            })
        };
        let (a, b) = (half(0, k / 2), half(k / 2, k));
        let mut reqs = a.await.unwrap();
        reqs.extend(b.await.unwrap());
        let started = std::time::Instant::now();
        let url = url.to_string();
        let out = pay_all(reqs, 96, move |_| url.clone(), Arc::new(AtomicUsize::new(0))).await;
        assert!(out.iter().all(|(s, _)| *s == 200));
        k as f64 / started.elapsed().as_secs_f64()
    }

    /// One signed payment, to be sent later.
    fn one(&self) -> PaymentRequest {
        sign(&challenge(&self.pw, "/r", "0.001"), &self.wallets[0])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: payments/s with a ledger holding 1M payments, ledger verify time"]
async fn growth_ledger_of_a_million_payments() {
    let n = env_n("VLX_GROWTH_PAYMENTS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("growth.db");
    let f = Facilitator::start(&db, &["--public-url", PUBLIC, "--faucet-cap", "1000000"]);
    let c = http();
    let p = create_provider(&c, &f.url, json!({})).await;
    let payers = Payers::new(&c, &f.url, &p.api_secret).await;
    let burst = |k: usize| payers.burst(&f.url, k);
    let fresh = burst(6000).await;
    let mut done = 6000;
    let fill = std::time::Instant::now();
    while done < n {
        let k = (n - done).min(20_000);
        burst(k).await;
        done += k;
    }
    eprintln!("({done} payments in the ledger; filled in {:.0} s)", fill.elapsed().as_secs_f64());
    let full = burst(6000).await;
    done += 6000;
    let started = std::time::Instant::now();
    let out = Command::new(BIN).args(["ledger", "verify", "--db"]).arg(&db).output().unwrap();
    let verify_secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = std::fs::metadata(&db).unwrap().len();
    eprintln!(
        "ledger (SQLite): {fresh:.0} payments/s on a fresh ledger, {full:.0} payments/s with {} payments; \
         ledger verify of {done} payments: {verify_secs:.1} s ({:.1} s per 1M); database {:.0} MB",
        done - 6000,
        verify_secs * 1e6 / done as f64,
        size as f64 / 1e6
    );
}

/// Recovery: a facilitator stopped (SIGTERM) or killed (SIGKILL) on a ledger of
/// `VLX_RECOVERY_PAYMENTS` payments (1M) is started again; the time from its start to its ready
/// line and to its first payment answered (signed before the stop). SQLite, or PostgreSQL with
/// `VLX_RECOVERY_DB=postgres` (a throwaway server). The ledger is filled with
/// `--synchronous normal` (it only needs to exist) and restarted with the default `full`.
/// `VLX_RECOVERY_RUNS` (3) rounds of each kind of stop; `ledger verify` at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: facilitator restart on a ledger of 1M payments, time to its first payment"]
async fn recovery_restart_on_a_million_payments() {
    let n = env_n("VLX_RECOVERY_PAYMENTS", 1_000_000);
    let runs = env_n("VLX_RECOVERY_RUNS", 3);
    let dir = tempfile::tempdir().unwrap();
    let pg = (std::env::var("VLX_RECOVERY_DB").as_deref() == Ok("postgres")).then(Server::postgres);
    let db = match &pg {
        Some(s) => s.url.clone(),
        None => dir.path().join("recovery.db").to_str().unwrap().to_string(),
    };
    let start = |extra: &[&str]| {
        let mut args = vec!["--public-url", PUBLIC, "--faucet-cap", "1000000"];
        args.extend_from_slice(extra);
        match &pg {
            Some(_) => Facilitator::start_pg(&db, dir.path(), &args),
            None => Facilitator::start(std::path::Path::new(&db), &args),
        }
    };
    let mut f = start(&["--synchronous", "normal"]);
    let c = http();
    let p = create_provider(&c, &f.url, json!({})).await;
    let payers = Payers::new(&c, &f.url, &p.api_secret).await;
    let fill = std::time::Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(20_000);
        payers.burst(&f.url, k).await;
        done += k;
        if done % 100_000 == 0 {
            eprintln!("({done} payments after {:.0} s)", fill.elapsed().as_secs_f64());
        }
    }
    eprintln!("({done} payments in the ledger; filled in {:.0} s)", fill.elapsed().as_secs_f64());
    f.terminate();
    let kind = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    for round in 0..runs {
        for kill in [false, true] {
            let req = payers.one();
            f = start(&[]);
            assert_eq!(pay(&c, &f.url, &payers.one()).await.0, 200, "warm-up payment");
            if kill {
                f.kill9();
            } else {
                f.terminate();
            }
            let t = std::time::Instant::now();
            f = start(&[]);
            let ready = t.elapsed();
            let (s, v) = pay(&c, &f.url, &req).await;
            let first = t.elapsed();
            assert_eq!(s, 200, "{v}");
            done += 2;
            eprintln!(
                "recovery ({kind}, {done} payments, round {}): after {}: ready in {:.0} ms, first payment answered in {:.0} ms",
                round + 1,
                if kill { "SIGKILL" } else { "SIGTERM" },
                ready.as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3
            );
            f.terminate();
        }
    }
    let (ok, v, err) = verify(&db);
    assert!(ok, "ledger verify: {v} {err}");
}
