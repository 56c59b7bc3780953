//! `vlexivo demo`: the whole product on loopback in a few seconds — a facilitator, a provider's
//! paid API (flat, per-model and per-data-range prices, as in the article) and an agent with
//! auto top-up — then the refusals (replay, insufficient funds, spending cap), the totals, and
//! the ledger's own verification. Exits non-zero if any step misbehaves.

use crate::server::{self, ServerConfig};
use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::request::Parts;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vlexivo_client::{AutoTopUpDone, VlexivoClient, receipt_of};
use vlexivo_core::client::AutoTopUp;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{PaymentFacts, Paywall, PaywallConfig};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::store::{NonceStore, SqliteStore};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Error, Money};
use vlexivo_tower::{PaywallLayer, Price};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct DemoArgs {
    /// Keep the demo's SQLite files in this directory (default: a temporary one, removed after).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Less output: only the summary and the ledger check.
    #[arg(short, long)]
    pub quiet: bool,
    /// Live mode on a local devnet: anvil, Circle's FiatTokenV2_2 (USDC), a live facilitator;
    /// each call settles on chain (tx hash, block, gas). Needs `npm ci --prefix live/devnet`.
    #[arg(long)]
    pub live: bool,
    /// Live: blocks before a proof is issued (0: once the node accepted the transfer).
    #[arg(long, default_value_t = 0, requires = "live")]
    pub confirmations: u64,
    /// Live: make no calls; keep the devnet, the facilitator and a live provider running, with
    /// a payer wallet funded on chain, and print their settings as `VLX_*=…` lines (then
    /// `READY`) for your own paywall and client, until stdin closes or Ctrl-C.
    #[arg(long, requires = "live")]
    pub serve: bool,
}

/// Runs the demo; 0 when every step behaved as expected.
pub async fn run(args: DemoArgs) -> i32 {
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (temp_dir(), true),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("vlexivo demo: cannot create {}: {e}", dir.display());
        return 1;
    }
    let mut demo = Demo { quiet: args.quiet, failures: Vec::new() };
    let result = if args.live {
        demo.run_live(&dir, args.confirmations, args.serve).await
    } else {
        demo.run(&dir).await
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(()) if demo.failures.is_empty() => 0,
        Ok(()) => {
            eprintln!("\nvlexivo demo: {} step(s) misbehaved:", demo.failures.len());
            for f in &demo.failures {
                eprintln!("  ✗ {f}");
            }
            1
        }
        Err(e) => {
            eprintln!("\nvlexivo demo failed: {e}");
            1
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The provider's API: the article's three kinds of pricing.

/// `POST /api/v1/inference`: by model, as the article's `priceResolver`.
pub fn inference_price(model: Option<&str>) -> &'static str {
    match model {
        Some(m) if m.contains("large") => "0.01",
        Some(m) if m.contains("embed") => "0.0001",
        _ => "0.001",
    }
}

/// `GET /api/v1/data?type=…&from=YYYY-MM-DD&days=N&granularity=…`: $0.001 base + $0.00001 per
/// day of data, ×10 for real-time ticks, ×0.5 for data more than two years old; rounded to the
/// currency's 6 decimals like the article's `toFixed(6)`, in exact decimals (no floats).
pub fn data_price(query: Option<&str>, this_year: i64) -> Result<Money, Error> {
    let q = parse_query(query.unwrap_or(""));
    let days: u32 = match q.get("days") {
        None => 1,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=36_500).contains(d))
            .ok_or_else(|| Error::PriceInvalid(format!("days must be 1..=36500, not {d:?}")))?,
    };
    let year: i64 = match q.get("from") {
        None => this_year,
        Some(f) => f
            .get(..4)
            .and_then(|y| y.parse().ok())
            .ok_or_else(|| Error::PriceInvalid(format!("from must be YYYY-MM-DD, not {f:?}")))?,
    };
    let base = Money::parse("0.001", Currency::Usd)?;
    let per_day = Money::parse("0.00001", Currency::Usd)?;
    let mut price = base.checked_add(&per_day.checked_mul(Decimal::from(days))?)?;
    if q.get("granularity").map(String::as_str) == Some("tick") {
        price = price.checked_mul(Decimal::from(10))?;
    }
    if this_year - year > 2 {
        price = price.mul_rounded(Decimal::new(5, 1))?;
    }
    Ok(price)
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The current UTC year, from the system clock (civil-from-days, no date crate needed).
pub fn current_year() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// The demo provider's paid API: three priced routes and one that fails once (to show that
/// failed work is not charged).
pub fn paid_api(paywall: Arc<Paywall>, store: Arc<dyn NonceStore>) -> Router {
    let flat = PaywallLayer::new(paywall.clone(), store.clone(), Price::fixed("0.001"));
    let by_model = PaywallLayer::new(
        paywall.clone(),
        store.clone(),
        Price::dynamic_with_body(|_parts: &Parts, body: &[u8]| {
            let v: Option<Value> = serde_json::from_slice(body).ok();
            inference_price(v.as_ref().and_then(|v| v.get("model")).and_then(Value::as_str))
        }),
    );
    let year = current_year();
    let by_range = PaywallLayer::new(
        paywall.clone(),
        store.clone(),
        Price::dynamic(move |parts: &Parts| data_price(parts.uri.query(), year)),
    );
    let failed_once = Arc::new(AtomicBool::new(false));
    let flaky = PaywallLayer::new(paywall, store, Price::fixed("0.002"));

    Router::new()
        .route(
            "/api/v1/hello",
            get(|Extension(paid): Extension<PaymentFacts>| async move {
                Json(json!({ "message": "hello, paid world", "paid": paid.amount, "payer": paid.payer }))
            })
            .layer(flat),
        )
        .route(
            "/api/v1/inference",
            post(|Extension(paid): Extension<PaymentFacts>, Json(req): Json<Value>| async move {
                let model = req.get("model").and_then(Value::as_str).unwrap_or("base").to_string();
                let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default();
                let tokens = prompt.split_whitespace().count() * 3 + 7;
                Json(json!({
                    "result": format!("[{model}] {} tokens of insight", tokens),
                    "usage": { "tokens": tokens },
                    "paid": paid.amount,
                }))
            })
            .layer(by_model),
        )
        .route(
            "/api/v1/data",
            get(|Extension(paid): Extension<PaymentFacts>, Query(q): Query<HashMap<String, String>>| async move {
                let days: usize = q.get("days").and_then(|d| d.parse().ok()).unwrap_or(1);
                let tick = q.get("granularity").map(String::as_str) == Some("tick");
                Json(json!({
                    "type": q.get("type").cloned().unwrap_or_else(|| "ohlc".into()),
                    "points": if tick { days * 23_400 } else { days },
                    "paid": paid.amount,
                }))
            })
            .layer(by_range),
        )
        .route(
            "/api/v1/report",
            get(move || {
                let failed_once = failed_once.clone();
                async move {
                    if !failed_once.swap(true, Ordering::SeqCst) {
                        return (http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "backend busy" })));
                    }
                    (http::StatusCode::OK, Json(json!({ "report": "quarterly numbers" })))
                }
            })
            .layer(flaky),
        )
}

/// The agent's calls, in both demos: each route and price kind of the paid API, with the price
/// each must be charged.
pub(crate) fn agent_calls(year: i64) -> Vec<(Call, http::Method, String, Option<Value>)> {
    vec![
        (
            Call { label: "GET  /api/v1/hello".into(), expected: "0.001" },
            http::Method::GET,
            "/api/v1/hello".into(),
            None,
        ),
        (
            Call { label: "POST /api/v1/inference  model=large-v2".into(), expected: "0.01" },
            http::Method::POST,
            "/api/v1/inference".into(),
            Some(json!({ "model": "large-v2", "prompt": "summarize the quarterly report" })),
        ),
        (
            Call { label: "POST /api/v1/inference  model=embed-small".into(), expected: "0.0001" },
            http::Method::POST,
            "/api/v1/inference".into(),
            Some(json!({ "model": "embed-small", "prompt": "vectorize me" })),
        ),
        (
            Call { label: "POST /api/v1/inference  model=chat-base".into(), expected: "0.001" },
            http::Method::POST,
            "/api/v1/inference".into(),
            Some(json!({ "model": "chat-base", "prompt": "hello there" })),
        ),
        (
            Call { label: "GET  /api/v1/data  1 day, 2019 (historical)".into(), expected: "0.000505" },
            http::Method::GET,
            "/api/v1/data?type=ohlc&from=2019-06-03&days=1".into(),
            None,
        ),
        (
            Call { label: format!("GET  /api/v1/data  90 days tick, {year}"), expected: "0.019" },
            http::Method::GET,
            format!("/api/v1/data?type=trades&from={year}-01-01&days=90&granularity=tick"),
            None,
        ),
        (
            Call { label: format!("GET  /api/v1/data  30 days, {year}"), expected: "0.0013" },
            http::Method::GET,
            format!("/api/v1/data?type=ohlc&from={year}-01-01&days=30"),
            None,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The run

pub(crate) struct Demo {
    pub(crate) quiet: bool,
    pub(crate) failures: Vec<String>,
}

pub(crate) type DynError = Box<dyn std::error::Error + Send + Sync>;

/// One agent call as printed.
pub(crate) struct Call {
    pub(crate) label: String,
    pub(crate) expected: &'static str,
}

impl Demo {
    pub(crate) fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }

    pub(crate) fn check(&mut self, ok: bool, what: impl Into<String>) -> bool {
        if !ok {
            let what = what.into();
            println!("  ✗ {what}");
            self.failures.push(what);
        }
        ok
    }

    async fn run(&mut self, dir: &Path) -> Result<(), DynError> {
        let started = Instant::now();
        println!("Vlexivo demo: HTTP 402 per-call payments, everything on 127.0.0.1 (sandbox mode)\n");

        // 1. The facilitator.
        let db_path = dir.join("facilitator.db");
        let srv = server::spawn(ServerConfig {
            addr: "127.0.0.1:0".parse()?,
            db_path: db_path.clone(),
            ..ServerConfig::default()
        })
        .await?;
        let http = reqwest::Client::new();
        self.say(format!("  facilitator   {}   (ledger: {})", srv.url, db_path.display()));

        // 2. A provider onboards over the public API; the secret is shown once.
        let created: Value = http
            .post(format!("{}/v1/providers", srv.url))
            .json(&json!({ "mode": "sandbox", "name": "demo-provider" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let secret = created["api_secret"].as_str().ok_or("onboarding returned no api_secret")?.to_string();
        let account = created["account"].as_str().unwrap_or_default().to_string();
        self.say(format!("  provider      {account}   apiSecret {}", mask(&secret)));

        // 3. The provider's paid API, behind the tower layer.
        let mut cfg = PaywallConfig::new(secret.clone());
        cfg.facilitator_url = srv.url.clone();
        let paywall = Arc::new(Paywall::new(cfg)?);
        let store: Arc<dyn NonceStore> = Arc::new(SqliteStore::open(dir.join("nonces.db"))?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = format!("http://{}", listener.local_addr()?);
        let app = paid_api(paywall, store);
        let (stop_api, stopped) = tokio::sync::oneshot::channel::<()>();
        let api_task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        self.say(format!("  paid API      {api}"));
        self.say("                GET  /api/v1/hello       $0.001 per call");
        self.say(
            "                POST /api/v1/inference   by model: *large* $0.01, *embed* $0.0001, else $0.001",
        );
        self.say(
            "                GET  /api/v1/data        $0.001 + $0.00001/day; tick ×10; >2 years old ×0.5",
        );

        // 4. The agent: an empty wallet, auto top-up as in the article.
        let agent_wallet = Wallet::generate(&OsEntropy);
        let agent = VlexivoClient::builder()
            .wallet(agent_wallet)
            .facilitator_url(Some(srv.url.clone()))
            .auto_top_up(AutoTopUp::new("1.00", "10.00")?)
            .build()?;
        let start_balance = agent.balance().await?;
        self.say(format!(
            "  agent         {}   balance ${start_balance}   auto top-up: below $1.00 add $10.00\n",
            agent.address()
        ));

        // 5. The calls.
        let year = current_year();
        let calls = agent_calls(year);

        self.say(format!(
            "  {:<2}  {:<46} {:>9}  {:<16} {:>10}  {:>6}",
            "#", "call", "price", "tx", "balance", "ms"
        ));
        self.say(format!("  {}", "─".repeat(98)));
        let mut paid = 0u32;
        let mut spent = Money::zero(Currency::Usd);
        let mut first_token: Option<(String, String)> = None;
        for (i, (call, method, path, body)) in calls.into_iter().enumerate() {
            let t = Instant::now();
            let url = format!("{api}{path}");
            let res = match &body {
                Some(b) => agent.post_json(&url, b).await,
                None => agent.fetch(method, &url, Default::default(), None).await,
            };
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let res = match res {
                Ok(r) => r,
                Err(e) => {
                    self.check(
                        false,
                        format!("call {} ({}) failed: {} ({})", i + 1, call.label, e, e.code()),
                    );
                    continue;
                }
            };
            if let Some(AutoTopUpDone(t)) = res.extensions().get::<AutoTopUpDone>() {
                self.say(format!(
                    "  {:<2}  {:<46} {:>9}  {:<16} {:>10}",
                    "↳",
                    "auto top-up (balance below $1.00)",
                    format!("+${}", t.amount),
                    short_hash(&t.tx_hash),
                    format!("${}", t.balance)
                ));
            }
            let status = res.status();
            let receipt = receipt_of(&res).cloned();
            let header_receipt = res.headers().get("vlexivo-receipt").is_some();
            let _ = res.bytes().await;
            let Some(r) = receipt else {
                self.check(false, format!("call {} ({}) was not paid (HTTP {status})", i + 1, call.label));
                continue;
            };
            self.say(format!(
                "  {:<2}  {:<46} {:>9}  {:<16} {:>10}  {:>6.1}",
                i + 1,
                call.label,
                format!("${}", r.amount),
                short_hash(&r.tx_hash),
                format!("${}", r.balance),
                ms
            ));
            self.check(status.is_success(), format!("call {} answered HTTP {status}", i + 1));
            self.check(header_receipt, format!("call {} has no Vlexivo-Receipt header", i + 1));
            self.check(
                r.amount == call.expected,
                format!("call {} charged {} instead of {}", i + 1, r.amount, call.expected),
            );
            paid += 1;
            spent = spent.checked_add(&Money::parse(&r.amount, Currency::Usd)?)?;
            if first_token.is_none() {
                first_token = Some((url.clone(), r.token.clone()));
            }
        }

        // 6. Failed work is not charged: the handler answers 503 once; the same token retried.
        self.say("");
        let url = format!("{api}/api/v1/report");
        let res = agent.get(&url).await?;
        let status = res.status();
        let receipt = receipt_of(&res).cloned();
        drop(res);
        match receipt {
            Some(r) if status.is_server_error() => {
                let again = http.get(&url).header("Vlexivo-Proof", &r.token).send().await?;
                let ok = again.status().is_success();
                paid += 1;
                spent = spent.checked_add(&Money::parse(&r.amount, Currency::Usd)?)?;
                self.say(format!(
                    "  handler failed   GET /api/v1/report → HTTP {}; same token retried → HTTP {}  (paid once: ${})",
                    status.as_u16(),
                    again.status().as_u16(),
                    r.amount
                ));
                self.check(ok, "a retry with the token of a failed call was refused");
            }
            _ => {
                self.check(false, format!("the failing handler answered HTTP {status} (expected 503, paid)"));
            }
        }

        // 7. A used token is single-use.
        if let Some((url, token)) = &first_token {
            let res = http.get(url).header("Vlexivo-Proof", token).send().await?;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let code = body["error"].as_str().unwrap_or("?").to_string();
            self.say(format!("  replay           call 1's token sent again → HTTP {status} {code}"));
            self.check(
                status == 409 && code == "token_replayed",
                "a replayed token was not refused with 409",
            );
        }

        // 8. Insufficient funds, with the exact amount required (no auto top-up).
        let poor = VlexivoClient::builder()
            .wallet(Wallet::generate(&OsEntropy))
            .facilitator_url(Some(srv.url.clone()))
            .build()?;
        poor.top_up("0.005").await?;
        let res = poor
            .post_json(&format!("{api}/api/v1/inference"), &json!({ "model": "large-v2", "prompt": "hi" }))
            .await;
        match res {
            Err(Error::InsufficientFunds { required, balance, currency }) => {
                self.say(format!(
                    "  no funds         2nd wallet (${balance}, auto top-up off) → large model: insufficient_funds, needs ${required} {currency}"
                ));
                self.check(
                    required == "0.01" && balance == "0.005",
                    "insufficient_funds carried wrong amounts",
                );
            }
            other => {
                self.check(
                    false,
                    format!("expected insufficient_funds, got {:?}", other.map(|r| r.status())),
                );
            }
        }

        // 9. A spending cap refuses before anything is signed or paid.
        let capped = VlexivoClient::builder()
            .wallet(Wallet::generate(&OsEntropy))
            .facilitator_url(Some(srv.url.clone()))
            .spending(SpendingPolicy {
                max_per_call: Some(Money::parse("0.005", Currency::Usd)?),
                ..SpendingPolicy::default()
            })
            .build()?;
        capped.top_up("1").await?;
        let res = capped
            .post_json(&format!("{api}/api/v1/inference"), &json!({ "model": "large-v2", "prompt": "hi" }))
            .await;
        let after = capped.balance().await?;
        match res {
            Err(e @ Error::BudgetExceeded { .. }) => {
                self.say(format!("  spending cap     3rd wallet (max $0.005/call) → large model: {}; balance still ${after}", e.code()));
                self.check(after.to_string() == "1", "the capped wallet was charged");
            }
            other => {
                self.check(false, format!("expected budget_exceeded, got {:?}", other.map(|r| r.status())));
            }
        }

        // 10. Totals: the agent's view and the provider's.
        let me: Value = http
            .get(format!("{}/v1/providers/me", srv.url))
            .bearer_auth(&secret)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let revenue = me["revenue"]["total"].as_str().unwrap_or("?").to_string();
        let count = me["revenue"]["count"].as_u64().unwrap_or(0);
        let balance = agent.balance().await?;
        println!("\n  totals           {paid} paid calls, agent spent ${spent}, balance ${balance}");
        println!(
            "                   provider revenue ${revenue} over {count} payments (GET /v1/providers/me)"
        );
        self.check(
            Money::parse(&revenue, Currency::Usd).ok() == Some(spent) && count == u64::from(paid),
            format!("provider revenue {revenue} ({count}) differs from what the agent paid {spent} ({paid})"),
        );
        self.check(agent.budget().spent_total() == spent, "the agent's budget disagrees with its receipts");

        // 11. Stop everything, then verify the ledger the way `vlexivo ledger verify` does.
        let _ = stop_api.send(());
        let _ = api_task.await;
        srv.shutdown().await;
        let conn =
            rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        match server::verify_ledger(&conn) {
            Ok(s) => {
                println!(
                    "  ledger verify    ok: {} transactions ({} payments, {} top-ups), hash chain intact, head {}",
                    s.transactions,
                    s.payments,
                    s.topups,
                    short_hash(&s.head)
                );
                self.check(
                    s.payments == u64::from(paid),
                    format!("ledger holds {} payments, expected {paid}", s.payments),
                );
            }
            Err(e) => {
                self.check(false, format!("ledger verification failed: {e}"));
            }
        }
        let ok = self.failures.is_empty();
        println!(
            "\n{} in {:.2} s",
            if ok { "✓ demo complete" } else { "✗ demo finished with failures" },
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// `sk_test_AbCd…` with the rest hidden: enough to recognize it, useless to an onlooker.
pub(crate) fn mask(secret: &str) -> String {
    let keep = secret.find('_').and_then(|i| secret[i + 1..].find('_').map(|j| i + j + 2)).unwrap_or(0);
    let visible: String = secret.chars().take(keep + 4).collect();
    format!("{visible}…(hidden)")
}

pub(crate) fn short_hash(h: &str) -> String {
    if h.len() <= 14 {
        return h.to_string();
    }
    format!("{}…{}", &h[..8], &h[h.len() - 4..])
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("vlexivo-demo-{}-{nanos}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_prices() {
        assert_eq!(inference_price(Some("large-v2")), "0.01");
        assert_eq!(inference_price(Some("text-embed-3")), "0.0001");
        assert_eq!(inference_price(Some("chat")), "0.001");
        assert_eq!(inference_price(None), "0.001");
        let p = |q: &str| data_price(Some(q), 2026).map(|m| m.to_string());
        // The article's formula: 1 day of old data = (0.001 + 0.00001) × 0.5.
        assert_eq!(p("from=2019-01-01&days=1").unwrap(), "0.000505");
        assert_eq!(p("from=2026-01-01&days=90&granularity=tick").unwrap(), "0.019");
        assert_eq!(p("from=2026-01-01&days=30").unwrap(), "0.0013");
        assert_eq!(p("from=2024-01-01&days=1").unwrap(), "0.00101");
        assert_eq!(p("").unwrap(), "0.00101");
        assert_eq!(p("from=2000-01-01&days=3").unwrap(), "0.000515");
        assert_eq!(p("from=2000-01-01&days=0").unwrap_err().code(), "price_invalid");
        assert_eq!(p("days=abc").unwrap_err().code(), "price_invalid");
        assert_eq!(p("from=x").unwrap_err().code(), "price_invalid");
        assert!(current_year() >= 2025);
    }

    #[test]
    fn masks_secrets() {
        let m = mask("sk_test_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
        assert_eq!(m, "sk_test_abcd…(hidden)");
    }
}
