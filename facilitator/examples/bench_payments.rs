//! Throughput and latency of Vlexivo payments on loopback, against the real service (SQLite).
//!
//!     cargo run --release -p vlexivo-facilitator --example bench_payments [-- --payments 5000
//!         --concurrency 64 --calls 1000 --agents 16 --durability full|normal]
//!
//! 1. Payments per second: `--concurrency` payers POST pre-signed payments to
//!    `/v1/payments` (signing is the payers' work, done before the clock starts; the service
//!    still checks every MAC and recovers every signature, debits, credits and hash-chains each).
//! 2. Paid-call latency: one agent, sequential calls to a paid axum route (402 → pay → retry
//!    with the proof), p50/p99 per leg and in total, against an unpaid baseline on the same API.
//! 3. Paid calls per second: `--agents` concurrent agents making whole paid calls.
//!
//! Everything (load generator, facilitator, paid API) shares this process and the machine's
//! cores, so the figures are a floor for a dedicated facilitator.

use axum::Router;
use axum::routing::get;
use http::HeaderMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vlexivo_client::VlexivoClient;
use vlexivo_core::client::{PaymentRequired, parse_payment_required};
use vlexivo_core::env::{Clock, OsEntropy, SystemClock};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::store::SqliteStore;
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Money};
use vlexivo_facilitator::server::{self, ServerConfig};
use vlexivo_tower::{PaywallLayer, Price};

struct Opts {
    durability: server::Durability,
    payments: usize,
    concurrency: usize,
    calls: usize,
    agents: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        durability: server::Durability::Full,
        payments: 5000,
        concurrency: 64,
        calls: 1000,
        agents: 16,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        if args[i] == "--durability" {
            o.durability = match args[i + 1].as_str() {
                "full" => server::Durability::Full,
                "normal" => server::Durability::Normal,
                other => panic!("--durability full|normal, not {other}"),
            };
            i += 2;
            continue;
        }
        let v: usize = args[i + 1].parse().unwrap_or_else(|_| panic!("{} needs a number", args[i]));
        match args[i].as_str() {
            "--payments" => o.payments = v,
            "--concurrency" => o.concurrency = v.max(1),
            "--calls" => o.calls = v,
            "--agents" => o.agents = v.max(1),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    Stats { p50: pct(&v, 0.50), p99: pct(&v, 0.99), mean }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let o = opts();
    let dir = tempfile_dir();
    std::fs::create_dir_all(&dir)?;
    println!(
        "bench_payments: {} cores (load average {}), facilitator + paid API + load in one process, SQLite in {}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        load_average(),
        dir.display()
    );

    let srv = server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse()?,
        db_path: dir.join("facilitator.db"),
        faucet_cap: "1000000".into(),
        durability: o.durability,
        ..ServerConfig::default()
    })
    .await?;
    let provider = srv.create_provider(Some("bench"), None).await?;
    let mut cfg = PaywallConfig::new(provider.api_secret.clone());
    cfg.facilitator_url = srv.url.clone();
    let paywall = Arc::new(Paywall::new(cfg)?);
    let http = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(1024).build()?;

    // ------------------------------------------------------------------------------------
    // 1. Payments per second.
    let payers: Vec<Wallet> = (0..o.concurrency).map(|_| Wallet::generate(&OsEntropy)).collect();
    for w in &payers {
        srv.top_up(&w.address().to_checksum(), "1000").await?;
    }
    let price = Money::parse("0.001", Currency::Usd)?;
    let now = SystemClock.now();
    let t_sign = Instant::now();
    // Pre-sign: payer i makes payments i, i+c, i+2c, …
    let mut bodies: Vec<Vec<(String, String)>> = vec![Vec::new(); o.concurrency];
    for n in 0..o.payments {
        let w = &payers[n % o.concurrency];
        let path = format!("/bench/{n}");
        let info = RequestInfo::new("GET", "http", Some("127.0.0.1:8080"), &path);
        let rej = paywall.challenge(&info, &price, "per-call", now, &OsEntropy)?;
        let pr = parse_payment_required(402, rej.headers.iter().map(|(k, v)| (*k, v.as_str())), b"")?;
        let req = vlexivo_core::payment::sign(&pr.challenge, &pr.encoded, w)?;
        bodies[n % o.concurrency].push((serde_json::to_string(&req)?, pr.challenge.nonce.clone()));
    }
    let sign_rate = o.payments as f64 / t_sign.elapsed().as_secs_f64();
    let pay_url = format!("{}/v1/payments", srv.url);
    let cpu0 = cpu_time();
    let wait0 = runqueue_wait();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for mine in bodies {
        let http = http.clone();
        let pay_url = pay_url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(mine.len());
            for (body, _nonce) in mine {
                let t = Instant::now();
                let res = http
                    .post(&pay_url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("facilitator reachable");
                let status = res.status();
                let text = res.text().await.unwrap_or_default();
                assert!(status.is_success(), "payment failed: {status} {text}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await?);
    }
    let elapsed = t.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let waited = runqueue_wait().saturating_sub(wait0);
    let rate = o.payments as f64 / elapsed.as_secs_f64();
    let s = stats(lat);
    println!(
        "1. payments/s (POST /v1/payments, {} concurrent payers, SQLite ledger, durability {:?})",
        o.concurrency, o.durability
    );
    println!(
        "   {} payments in {:.2} s = {:.0} payments/s   (latency p50 {:.2} ms, p99 {:.2} ms; target ≥ 2000/s)",
        o.payments,
        elapsed.as_secs_f64(),
        rate,
        ms(s.p50),
        ms(s.p99)
    );
    println!(
        "   process CPU {:.2} s over {:.2} s wall ({:.0}% of one core) = {:.0} µs CPU per payment (service + load generator)",
        cpu.as_secs_f64(),
        elapsed.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / o.payments as f64
    );
    println!(
        "   threads waited {:.2} s for a CPU (run queue) while runnable: {}",
        waited.as_secs_f64(),
        if waited > cpu / 2 { "CPU-starved by other work on the machine" } else { "not CPU-starved" }
    );
    println!("   (payers pre-signed at {sign_rate:.0} signatures/s on this machine; not in the timing)\n");

    // ------------------------------------------------------------------------------------
    // 2. Paid-call latency vs an unpaid baseline on the same API.
    let store = Arc::new(SqliteStore::open(dir.join("nonces.db"))?);
    let layer = PaywallLayer::new(paywall.clone(), store, Price::fixed("0.001"));
    let app = Router::new()
        .route("/free", get(|| async { "ok" }))
        .route("/paid", get(|| async { "ok" }).layer(layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let agent_wallet = Wallet::generate(&OsEntropy);
    srv.top_up(&agent_wallet.address().to_checksum(), "1000").await?;
    let agent = VlexivoClient::builder()
        .wallet(agent_wallet)
        .facilitator_url(Some(srv.url.clone()))
        .http_client(http.clone())
        .spending(SpendingPolicy::default())
        .build()?;
    let free = format!("{api}/free");
    let paid = format!("{api}/paid");
    let warm = (o.calls / 10).max(20);
    for _ in 0..warm {
        http.get(&free).send().await?.bytes().await?;
        agent.get(&paid).await?.bytes().await?;
    }

    let mut base = Vec::with_capacity(o.calls);
    for _ in 0..o.calls {
        let t = Instant::now();
        let r = http.get(&free).send().await?;
        r.bytes().await?;
        base.push(t.elapsed());
    }
    // Leg by leg, as `VlexivoClient::fetch` does them.
    let (mut leg402, mut legpay, mut legretry, mut total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.calls {
        let t0 = Instant::now();
        let r = http.get(&paid).send().await?;
        let pr = read_402(r).await?;
        let t1 = Instant::now();
        let receipt = agent.pay_challenge(&pr, "GET", &paid).await?;
        let t2 = Instant::now();
        let r = http.get(&paid).header("Vlexivo-Proof", &receipt.token).send().await?;
        assert!(r.status().is_success());
        r.bytes().await?;
        let t3 = Instant::now();
        leg402.push(t1 - t0);
        legpay.push(t2 - t1);
        legretry.push(t3 - t2);
        total.push(t3 - t0);
    }
    // And through the client's one call.
    let mut fetch = Vec::with_capacity(o.calls);
    for _ in 0..o.calls {
        let t = Instant::now();
        let r = agent.fetch(http::Method::GET, &paid, HeaderMap::new(), None).await?;
        assert!(r.status().is_success());
        r.bytes().await?;
        fetch.push(t.elapsed());
    }
    let b = stats(base);
    println!("2. paid-call latency, {} sequential calls (one agent, loopback, SQLite nonce store)", o.calls);
    println!("   {:<44} {:>9} {:>9} {:>9} {:>10}", "", "p50 ms", "p99 ms", "mean ms", "p50 ×base");
    let row = |name: &str, s: &Stats| {
        println!(
            "   {:<44} {:>9.3} {:>9.3} {:>9.3} {:>9.1}×",
            name,
            ms(s.p50),
            ms(s.p99),
            ms(s.mean),
            s.p50.as_secs_f64() / b.p50.as_secs_f64()
        )
    };
    row("baseline: unpaid GET /free", &b);
    row("leg 1: GET /paid → 402 challenge", &stats(leg402));
    row("leg 2: pay (sign + POST /v1/payments)", &stats(legpay));
    row("leg 3: retry with proof → 200 (verify+insert)", &stats(legretry));
    let tot = stats(total);
    row("whole paid call (legs 1-3)", &tot);
    let f = stats(fetch);
    row("whole paid call via VlexivoClient::fetch", &f);
    println!("   target: whole paid call ≤ 3 ms p50 → {:.3} ms\n", ms(f.p50));

    // ------------------------------------------------------------------------------------
    // 3. Paid calls per second with concurrent agents.
    let n_calls = o.payments.min(o.agents * 200);
    let mut agents = Vec::new();
    for _ in 0..o.agents {
        let w = Wallet::generate(&OsEntropy);
        srv.top_up(&w.address().to_checksum(), "1000").await?;
        agents.push(
            VlexivoClient::builder()
                .wallet(w)
                .facilitator_url(Some(srv.url.clone()))
                .http_client(http.clone())
                .build()?,
        );
    }
    let per = n_calls / o.agents;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for a in agents {
        let paid = paid.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let r = a.get(&paid).await.expect("paid call");
                assert!(r.status().is_success());
                r.bytes().await.expect("body");
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let el = t.elapsed();
    println!(
        "3. whole paid calls/s, {} concurrent agents: {} calls in {:.2} s = {:.0} paid calls/s",
        o.agents,
        per * o.agents,
        el.as_secs_f64(),
        (per * o.agents) as f64 / el.as_secs_f64()
    );

    // Sanity: the provider was paid for every payment made above.
    let me: serde_json::Value = http
        .get(format!("{}/v1/providers/me", srv.url))
        .bearer_auth(&provider.api_secret)
        .send()
        .await?
        .json()
        .await?;
    let expected = o.payments + warm + 2 * o.calls + per * o.agents;
    let count = me["revenue"]["count"].as_u64().unwrap_or(0) as usize;
    println!("   (machine load average now {})", load_average());
    println!(
        "\n   provider revenue count {count} (expected {expected}) {}",
        if count == expected { "✓" } else { "✗" }
    );
    srv.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if count != expected {
        std::process::exit(1);
    }
    Ok(())
}

async fn read_402(r: reqwest::Response) -> Result<PaymentRequired, Box<dyn std::error::Error + Send + Sync>> {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await?;
    let pairs = headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    Ok(parse_payment_required(status, pairs, &body)?)
}

/// The 1-minute load average: other work on the machine skews every figure here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Time this process's threads spent runnable but waiting for a CPU (Linux schedstat).
fn runqueue_wait() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    let mut ns: u64 = 0;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`; zero elsewhere).
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on every mainstream Linux.
    Duration::from_millis(ticks * 10)
}

fn tempfile_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("vlexivo-bench-{}-{nanos}", std::process::id()))
}
