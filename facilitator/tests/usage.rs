//! Pricing by payer at the facilitator, on SQLite and on a real PostgreSQL: the usage endpoint
//! (`GET /v1/providers/me/payers/{address}/usage?since=`) counts exactly what a payer paid the
//! authenticated provider, another provider's secret sees none of it, a bad `since` is a 400 with
//! a stable code; and a challenge priced for a payer cannot be paid by another wallet.

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{Paywall, RequestInfo};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Money};
use vlexivo_testkit::Server;

/// A challenge for `GET path` at `price` whose request hinted `hint` as its payer.
fn hinted_challenge(pw: &Paywall, path: &str, price: &str, hint: &str) -> String {
    let mut info = RequestInfo::new("GET", "http", Some("127.0.0.1:8080"), path);
    info.payer = Some(hint);
    let price = Money::parse(price, Currency::Usd).unwrap();
    let r = pw.challenge(&info, &price, "per-call", now(), &OsEntropy).unwrap();
    r.headers.iter().find(|(k, _)| *k == vlexivo_core::headers::CHALLENGE).unwrap().1.clone()
}

async fn usage(
    c: &reqwest::Client,
    base: &str,
    secret: &str,
    payer: &str,
    since: Option<&str>,
) -> (u16, Value) {
    let mut url = format!("{base}/v1/providers/me/payers/{payer}/usage");
    if let Some(s) = since {
        url = format!("{url}?since={s}");
    }
    get_authed(c, &url, secret).await
}

fn addr(w: &Wallet) -> String {
    w.address().to_checksum()
}

async fn scenario(base: &str) {
    let c = http();
    let a = create_provider(&c, base, json!({})).await;
    let b = create_provider(&c, base, json!({})).await;
    let nobody = create_provider(&c, base, json!({})).await;
    let (pa, pb) = (paywall(&a.api_secret, base), paywall(&b.api_secret, base));
    let (loyal, fresh) = (wallet(), wallet());
    for w in [&loyal, &fresh] {
        assert_eq!(top_up(&c, base, w, "1").await.0, 200);
    }

    // The loyal wallet: three full-price calls, then one priced for it (half price); the fresh
    // wallet one call; the loyal wallet one call at the other provider.
    let mut first_paid_at = 0;
    for i in 0..3 {
        let (s, v) = pay(&c, base, &sign(&challenge(&pa, "/data", "0.001"), &loyal)).await;
        assert_eq!(s, 200, "{v}");
        if i == 1 {
            first_paid_at = v["paid_at"].as_u64().unwrap();
        }
    }
    let bound = hinted_challenge(&pa, "/data", "0.0005", &addr(&loyal));
    let (s, v) = pay(&c, base, &sign(&bound, &loyal)).await;
    assert_eq!((s, v["amount"].as_str()), (200, Some("0.0005")), "{v}");
    assert_eq!(pay(&c, base, &sign(&challenge(&pa, "/data", "0.001"), &fresh)).await.0, 200);
    assert_eq!(pay(&c, base, &sign(&challenge(&pb, "/data", "0.002"), &loyal)).await.0, 200);

    let (s, u) = usage(&c, base, &a.api_secret, &addr(&loyal), None).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(
        u,
        json!({"payer": addr(&loyal), "since": 0, "count": 4, "total": "0.0035", "currency": "usd"})
    );
    // The address in lower case is the same payer; `since` is inclusive.
    let lower = addr(&loyal).to_ascii_lowercase();
    let (_, u) = usage(&c, base, &a.api_secret, &lower, Some(&first_paid_at.to_string())).await;
    assert!(u["count"].as_u64().unwrap() >= 3 && u["payer"] == addr(&loyal), "{u}");
    let (_, u) = usage(&c, base, &a.api_secret, &addr(&loyal), Some(&(now() + 3600).to_string())).await;
    assert_eq!((u["count"].as_u64(), u["total"].as_str()), (Some(0), Some("0")));
    let (_, u) = usage(&c, base, &a.api_secret, &addr(&fresh), Some("0")).await;
    assert_eq!((u["count"].as_u64(), u["total"].as_str()), (Some(1), Some("0.001")));

    // Another provider's secret sees only its own payments of that payer, or none.
    let (_, u) = usage(&c, base, &b.api_secret, &addr(&loyal), None).await;
    assert_eq!((u["count"].as_u64(), u["total"].as_str()), (Some(1), Some("0.002")));
    let (_, u) = usage(&c, base, &nobody.api_secret, &addr(&loyal), None).await;
    assert_eq!((u["count"].as_u64(), u["total"].as_str()), (Some(0), Some("0")));

    // Bad input: stable codes.
    for bad in ["abc", "-1", "1.5", "", "2026-11-01T00:00:00Z", "99999999999999"] {
        let (s, v) = usage(&c, base, &a.api_secret, &addr(&loyal), Some(bad)).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("request_malformed")), "since={bad:?}: {v}");
    }
    let (s, v) = usage(&c, base, &a.api_secret, "0x1234", None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("address_invalid")));
    let (s, v) = usage(&c, base, "sk_test_nope", &addr(&loyal), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    let r = c.get(format!("{base}/v1/providers/me/payers/{}/usage", addr(&loyal))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The fresh wallet pays a challenge priced for the loyal wallet (it sent the loyal wallet's
    // address as its hint): refused, nothing charged, nothing counted.
    let borrowed = hinted_challenge(&pa, "/data", "0.0005", &addr(&loyal));
    let before = balance(&c, base, &fresh).await;
    let (s, v) = pay(&c, base, &sign(&borrowed, &fresh)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("challenge_mismatch")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("payer"), "{v}");
    assert_eq!(balance(&c, base, &fresh).await, before);
    let (_, u) = usage(&c, base, &a.api_secret, &addr(&fresh), None).await;
    assert_eq!(u["count"].as_u64(), Some(1));
    // The wallet it names pays it.
    assert_eq!(pay(&c, base, &sign(&borrowed, &loyal)).await.0, 200);
    let (_, u) = usage(&c, base, &a.api_secret, &addr(&loyal), None).await;
    assert_eq!((u["count"].as_u64(), u["total"].as_str()), (Some(5), Some("0.004")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let f = Facilitator::start(&dir.path().join("v.db"), &[]);
    scenario(&f.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_on_postgres() {
    let pg = Server::postgres();
    let url = pg.database("usage");
    let dir = tempfile::tempdir().unwrap();
    let f = Facilitator::start_pg(&url, dir.path(), &[]);
    scenario(&f.url).await;
}
