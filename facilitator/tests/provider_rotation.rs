//! `apiSecret` rotation: a new secret for the same account, the old one accepted for an overlap
//! window and refused after it; payments under either credit the one account.

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::process::Command;
use vlexivo_core::keys::ProviderKeys;

const MASTER: &str = "6b1f4e0c9a1d2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4";

async fn pay_with(
    c: &reqwest::Client,
    f: &str,
    secret: &str,
    w: &vlexivo_core::wallet::Wallet,
) -> (u16, Value) {
    let pw = paywall(secret, f);
    pay(c, f, &sign(&challenge(&pw, "/r", "0.01"), w)).await
}

async fn me(c: &reqwest::Client, f: &str, secret: &str) -> (u16, Value) {
    get_authed(c, &format!("{f}/v1/providers/me"), secret).await
}

fn rotate_cli(f: &str, secret: &str, overlap: u64) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    for v in vlexivo_core::envvars::ALL {
        cmd.env_remove(v.name);
    }
    let out = cmd
        .args(["provider", "rotate", "--json", "--url", f, "--overlap-secs", &overlap.to_string()])
        .env("VLX_SECRET_KEY", secret)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_overlaps_then_retires_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let mut f = Facilitator::start(&db, &["--master-key", MASTER]);
    let c = http();
    let old = create_provider(&c, &f.url, json!({})).await;
    let w = wallet();
    assert_eq!(top_up(&c, &f.url, &w, "1").await.0, 200);
    assert_eq!(pay_with(&c, &f.url, &old.api_secret, &w).await.0, 200);

    // Too long an overlap is refused; then a short one through the CLI (long enough for the
    // calls below on a loaded machine: they must all fall inside it).
    let r = c
        .post(format!("{}/v1/providers/me/rotate", f.url))
        .bearer_auth(&old.api_secret)
        .json(&json!({"overlap_secs": 31 * 24 * 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (code, out, err) = rotate_cli(&f.url, &old.api_secret, 10);
    assert_eq!(code, Some(0), "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new_secret = rotated["api_secret"].as_str().unwrap().to_string();
    assert_eq!(rotated["account"], old.account.as_str(), "the same account");
    assert_ne!(new_secret, old.api_secret);
    let new_keys = ProviderKeys::from_secret(&new_secret).unwrap();
    assert_eq!(rotated["publishable_key"], new_keys.publishable_key().as_str());

    // During the overlap both secrets pay into the one account, and both authenticate.
    let (s, receipt) = pay_with(&c, &f.url, &new_secret, &w).await;
    assert_eq!(s, 200, "{receipt}");
    assert_eq!(pay_with(&c, &f.url, &old.api_secret, &w).await.0, 200);
    // The provider's server holding the new secret verifies the token with it alone.
    let mut vc = vlexivo_core::token::VerifierConfig::new(&new_keys.account, "sandbox");
    vc.hs256_key = Some(new_keys.token_hs256);
    vlexivo_core::token::TokenVerifier::new(vc)
        .unwrap()
        .verify_signature_and_time(receipt["token"].as_str().unwrap(), now())
        .unwrap();
    for secret in [&old.api_secret, &new_secret] {
        let (s, v) = me(&c, &f.url, secret).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["account"], old.account.as_str());
        assert_eq!(v["revenue"]["count"], 3, "{v}");
    }

    // After it, the old secret is refused everywhere; the new one goes on.
    let mut waited = 0;
    while me(&c, &f.url, &old.api_secret).await.0 == 200 {
        assert!(waited < 300, "the old secret still authenticates 30 s after a 10 s overlap");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let (s, v) = pay_with(&c, &f.url, &old.api_secret, &w).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("provider_unknown")), "{v}");
    assert_eq!(me(&c, &f.url, &old.api_secret).await.0, 401);
    assert_eq!(pay_with(&c, &f.url, &new_secret, &w).await.0, 200);
    let (_, v) = me(&c, &f.url, &new_secret).await;
    assert_eq!(v["revenue"]["count"], 4, "{v}");
    assert_eq!(v["revenue"]["total"], "0.04", "{v}");
    assert_eq!(balance(&c, &f.url, &w).await, "0.96");
    assert_eq!(f.terminate(), Some(0));

    // The same after a restart (read from the database, keys sealed), and the ledger adds up.
    let f = Facilitator::start(&db, &["--master-key", MASTER]);
    assert_eq!(pay_with(&c, &f.url, &old.api_secret, &w).await.0, 404);
    assert_eq!(pay_with(&c, &f.url, &new_secret, &w).await.0, 200);
    drop(f);
    let out = Command::new(BIN).args(["ledger", "verify", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// On PostgreSQL the rotation is written by one facilitator and honoured by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_through_one_facilitator_holds_at_another() {
    let pg = vlexivo_testkit::Server::postgres();
    let url = pg.database("rotation");
    let dir = tempfile::tempdir().unwrap();
    let a = Facilitator::start_pg(&url, dir.path(), &[]);
    let b = Facilitator::start_pg(&url, dir.path(), &[]);
    let c = http();
    let old = create_provider(&c, &a.url, json!({})).await;
    let w = wallet();
    assert_eq!(top_up(&c, &a.url, &w, "1").await.0, 200);
    let (code, out, err) = rotate_cli(&a.url, &old.api_secret, 1);
    assert_eq!(code, Some(0), "{err}");
    let new_secret = serde_json::from_str::<Value>(&out).unwrap()["api_secret"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // B never saw the old secret: it reads the rows, retired and new, from the database.
    assert_eq!(pay_with(&c, &b.url, &old.api_secret, &w).await.0, 404);
    assert_eq!(pay_with(&c, &b.url, &new_secret, &w).await.0, 200);
    let (_, v) = me(&c, &a.url, &new_secret).await;
    assert_eq!(v["account"], old.account.as_str());
    assert_eq!(v["revenue"]["count"], 1, "{v}");
}
