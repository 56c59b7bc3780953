//! The facilitator HTTP API against the real `vlexivo serve` binary (docs/protocol.md §8).

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::collections::HashSet;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::token::{TokenVerifier, VerifierConfig};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn err_code(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn onboarding_and_bearer_auth() {
    let dir = tmp();
    let mut f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let c = http();
    let u = &f.url;

    let (s, health) = get(&c, &format!("{u}/healthz")).await;
    assert_eq!((s, health["status"].as_str()), (200, Some("ok")));

    let p = create_provider(&c, u, json!({"mode": "sandbox", "name": "weather api"})).await;
    assert!(p.api_secret.starts_with("sk_test_"));
    assert!(p.account.starts_with("acct_"));
    assert_eq!(p.publishable_key, format!("pk_test_{}", &p.account[5..]));
    assert_eq!((p.mode.as_str(), p.token_alg.as_str()), ("sandbox", "HS256"));
    assert_eq!(ProviderKeys::from_secret(&p.api_secret).unwrap().account, p.account);

    // An empty body is all defaults; EdDSA on request; bad choices are refused.
    let r = c.post(format!("{u}/v1/providers")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let ed = create_provider(&c, u, json!({"token_alg": "EdDSA"})).await;
    assert_eq!(ed.token_alg, "EdDSA");
    let (s, v) = post(&c, &format!("{u}/v1/providers"), &json!({"token_alg": "none"})).await;
    assert_eq!((s, err_code(&v)), (400, "request_malformed"));
    let (s, v) = post(&c, &format!("{u}/v1/providers"), &json!({"mode": "live"})).await;
    assert_eq!((s, err_code(&v)), (400, "mode_mismatch"));
    // An array is not a body of defaults: nothing is created.
    let (s, v) = post(&c, &format!("{u}/v1/providers"), &json!([])).await;
    assert_eq!((s, err_code(&v)), (400, "request_malformed"));

    let me = format!("{u}/v1/providers/me");
    let (s, v) = get_authed(&c, &me, &p.api_secret).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["account"], p.account);
    assert_eq!(v["mode"], "sandbox");
    assert_eq!(v["token_alg"], "HS256");
    assert_eq!(v["revenue"], json!({"currency": "usd", "total": "0", "count": 0}));

    // Missing, malformed, unknown and another provider's secrets are all the same 401.
    let unknown = generate_secret(Mode::Sandbox, &OsEntropy);
    let mut tampered = p.api_secret.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for auth in [
        None,
        Some("Bearer"),
        Some("Bearer sk_test_nope"),
        Some("Basic abc"),
        Some(&*format!("Bearer {unknown}")),
        Some(&*format!("Bearer {tampered}")),
    ] {
        let mut rq = c.get(&me);
        if let Some(a) = auth {
            rq = rq.header("authorization", a);
        }
        let r = rq.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(err_code(&v), "unauthorized");
    }
    let r = c.get(format!("{me}/payments")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Providers survive a restart; the secret itself is stored nowhere.
    assert_eq!(f.terminate(), Some(0));
    let f2 = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (s, v) = get_authed(&c, &format!("{}/v1/providers/me", f2.url), &p.api_secret).await;
    assert_eq!(s, 200, "{v}");
    drop(f2);
    let body = &p.api_secret["sk_test_".len()..];
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(body.len()).any(|w| w == body.as_bytes()),
            "secret found in {}",
            path.display()
        );
    }
}

#[tokio::test]
async fn top_up_and_faucet_cap() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &["--faucet-cap", "100"]);
    let (c, u) = (http(), f.url.clone());
    let w = wallet();
    assert_eq!(balance(&c, &u, &w).await, "0");

    let (s, v) = top_up(&c, &u, &w, "60").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["address"], w.address().to_checksum());
    assert_eq!(
        (v["amount"].as_str(), v["balance"].as_str(), v["currency"].as_str()),
        (Some("60"), Some("60"), Some("usd"))
    );
    let tx1 = v["tx_hash"].as_str().unwrap().to_string();
    assert!(tx1.starts_with("0x") && tx1.len() == 66);

    let (s, v) = top_up(&c, &u, &w, "50.5").await;
    assert_eq!((s, err_code(&v)), (403, "top_up_refused"), "{v}");
    let (s, v) = top_up(&c, &u, &w, "40").await;
    assert_eq!((s, v["balance"].as_str()), (200, Some("100")));
    assert_ne!(v["tx_hash"].as_str().unwrap(), tx1);
    let (s, v) = top_up(&c, &u, &w, "0.000001").await;
    assert_eq!((s, err_code(&v)), (403, "top_up_refused"));
    assert_eq!(balance(&c, &u, &w).await, "100");

    // The address is accepted in any valid case and reported checksummed.
    let lower = w.address().to_checksum().to_lowercase();
    let (s, v) = get(&c, &format!("{u}/v1/wallets/{lower}")).await;
    assert_eq!((s, v["address"].as_str()), (200, Some(&*w.address().to_checksum())));

    let other = wallet();
    for (amount, code) in [
        ("abc", "amount_malformed"),
        ("0", "amount_zero"),
        ("-1", "amount_negative"),
        ("0.0000001", "amount_precision"),
        ("NaN", "amount_not_finite"),
    ] {
        let (s, v) = top_up(&c, &u, &other, amount).await;
        assert_eq!((s, err_code(&v)), (400, code), "{amount}");
    }
    let (s, v) = post(&c, &format!("{u}/v1/wallets/0x1234/topup"), &json!({"amount": "1"})).await;
    assert_eq!((s, err_code(&v)), (400, "address_invalid"));
    let (s, v) = get(&c, &format!("{u}/v1/wallets/not-an-address")).await;
    assert_eq!((s, err_code(&v)), (400, "address_invalid"));
    let (s, v) =
        post(&c, &format!("{u}/v1/wallets/{}/topup", other.address()), &json!({"amount": true})).await;
    assert_eq!((s, err_code(&v)), (400, "request_malformed"));
    // A JSON number is read from its text: through a float this was 0.000013 and credited.
    let raw = c
        .post(format!("{u}/v1/wallets/{}/topup", other.address()))
        .header("content-type", "application/json")
        .body(r#"{"amount":0.00001300000000000000000001}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(err_code(&raw.json().await.unwrap()), "amount_precision");
    assert_eq!(balance(&c, &u, &other).await, "0");
}

#[tokio::test]
async fn payment_happy_path_replay_and_listing() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    let w = wallet();
    top_up(&c, &u, &w, "1").await;

    let enc = challenge(&pw, "/api/v1/inference?q=1", "0.001");
    let req = sign(&enc, &w);
    let (s, r) = pay(&c, &u, &req).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["payer"], w.address().to_checksum());
    assert_eq!(
        (r["amount"].as_str(), r["currency"].as_str(), r["balance"].as_str()),
        (Some("0.001"), Some("usd"), Some("0.999"))
    );
    assert_eq!(r["replayed"], false);
    let nonce = Challenge::decode(&enc).unwrap().nonce;
    assert_eq!(r["nonce"], nonce);
    let paid_at = r["paid_at"].as_u64().unwrap();
    assert_eq!(r["expires_at"].as_u64().unwrap(), paid_at + 300);
    let token = r["token"].as_str().unwrap().to_string();

    // The token is good for this provider under its HS256 key.
    let keys = ProviderKeys::from_secret(&p.api_secret).unwrap();
    let mut vc = VerifierConfig::new(&p.account, "sandbox");
    vc.hs256_key = Some(keys.token_hs256);
    let claims = TokenVerifier::new(vc).unwrap().verify_signature_and_time(&token, now()).unwrap();
    assert_eq!(claims.jti, nonce);
    assert_eq!(claims.sub, w.address().to_checksum());
    assert_eq!(claims.aud, p.account);
    assert_eq!(claims.iss, u);
    assert_eq!(claims.txh, r["tx_hash"].as_str().unwrap());
    assert_eq!(claims.res, "GET http://127.0.0.1:8080/api/v1/inference");
    assert_eq!(claims.amt, "0.001");

    // Paying the same challenge again: same receipt, replayed, nothing debited.
    let (s, r2) = pay(&c, &u, &req).await;
    assert_eq!(s, 200);
    assert_eq!(r2["replayed"], true);
    assert_eq!(r2["token"], r["token"]);
    assert_eq!(r2["tx_hash"], r["tx_hash"]);
    assert_eq!(r2["balance"], "0.999");
    assert_eq!(balance(&c, &u, &w).await, "0.999");
    // …but never to another wallet that signs the same challenge.
    let thief = wallet();
    top_up(&c, &u, &thief, "1").await;
    let (s, v) = pay(&c, &u, &sign(&enc, &thief)).await;
    assert_eq!((s, err_code(&v)), (409, "payment_conflict"));
    assert_eq!(balance(&c, &u, &thief).await, "1");

    // A second, different payment.
    let (s, r3) = pay(&c, &u, &sign(&challenge(&pw, "/api/v1/other", "0.25"), &w)).await;
    assert_eq!((s, r3["balance"].as_str()), (200, Some("0.749")));
    assert_ne!(r3["tx_hash"], r["tx_hash"]);

    let (s, me) = get_authed(&c, &format!("{u}/v1/providers/me"), &p.api_secret).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["revenue"], json!({"currency": "usd", "total": "0.251", "count": 2}));
    let (s, list) = get_authed(&c, &format!("{u}/v1/providers/me/payments?limit=10"), &p.api_secret).await;
    assert_eq!(s, 200, "{list}");
    let rows = list["payments"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Newest first.
    assert_eq!(rows[0]["amount"], "0.25");
    assert_eq!(rows[1]["nonce"], nonce);
    assert_eq!(rows[1]["payer"], w.address().to_checksum());
    assert_eq!(rows[1]["tx_hash"], r["tx_hash"]);
    assert_eq!(rows[1]["resource"], "GET http://127.0.0.1:8080/api/v1/inference");
    assert_eq!(rows[1]["currency"], "usd");
    assert_eq!(rows[1]["paid_at"].as_u64(), Some(paid_at));
    let (s, v) = get_authed(&c, &format!("{u}/v1/providers/me/payments?limit=0"), &p.api_secret).await;
    assert_eq!(s, 400, "{v}");

    let metrics = c.get(format!("{u}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vlexivo_payments_total 2"), "{metrics}");
    assert!(metrics.contains("vlexivo_amount_paid_atomic_total 251000"));
    assert!(metrics.contains("vlexivo_errors_total{code=\"payment_conflict\"} 1"));
    assert!(metrics.contains(
        "vlexivo_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/v1/payments\",method=\"POST\"} 4"
    ));
}

#[tokio::test]
async fn eddsa_tokens_verify_against_the_jwks() {
    let dir = tmp();
    let f = Facilitator::start(
        &dir.path().join("f.db"),
        &["--token-alg", "EdDSA", "--public-url", "https://pay.example.test/"],
    );
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    assert_eq!(p.token_alg, "EdDSA");
    let w = wallet();
    top_up(&c, &u, &w, "5").await;
    // Providers name the facilitator by its public URL.
    let pw = paywall(&p.api_secret, "https://pay.example.test");
    let (s, r) = pay(&c, &u, &sign(&challenge(&pw, "/x", "1"), &w)).await;
    assert_eq!(s, 200, "{r}");
    let (s, jwks) = get(&c, &format!("{u}/.well-known/jwks.json")).await;
    assert_eq!(s, 200);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    let mut vc = VerifierConfig::new(&p.account, "sandbox");
    vc.jwks = Some(serde_json::from_value(jwks.clone()).unwrap());
    let claims = TokenVerifier::new(vc)
        .unwrap()
        .verify_signature_and_time(r["token"].as_str().unwrap(), now())
        .unwrap();
    assert_eq!(claims.iss, "https://pay.example.test");

    // The key is generated once and kept in the database.
    drop(f);
    let f2 = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (_, again) = get(&c, &format!("{}/.well-known/jwks.json", f2.url)).await;
    assert_eq!(again, jwks);
}

#[tokio::test]
async fn payment_refusals() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (c, u) = (http(), f.url.clone());
    let pay_url = format!("{u}/v1/payments");
    let p = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    let w = wallet();
    top_up(&c, &u, &w, "1").await;

    // Malformed, incomplete, over-long and oversized bodies.
    let (s, v) = post_raw(&c, &pay_url, b"{not json".to_vec()).await;
    assert_eq!((s, err_code(&v)), (400, "request_malformed"));
    let (s, v) = post(&c, &pay_url, &json!({"challenge": "x"})).await;
    assert_eq!((s, err_code(&v)), (400, "request_malformed"));
    let mut extra = serde_json::to_value(sign(&challenge(&pw, "/a", "0.1"), &w)).unwrap();
    extra["tip"] = json!("1");
    let (s, v) = post(&c, &pay_url, &extra).await;
    assert_eq!((s, err_code(&v)), (400, "request_malformed"));
    // A field name serde echoes in its message, cut at 200 bytes: inside a two-byte character
    // for one of the two paddings (the handler used to panic there and drop the connection).
    for pad in ["", "a"] {
        let field = format!("{pad}{}", "é".repeat(150));
        let body = format!(r#"{{"{field}":1,"challenge":"x","payer":"0x","signature":"0x"}}"#);
        let (s, v) = post_raw(&c, &pay_url, body.into_bytes()).await;
        assert_eq!((s, err_code(&v)), (400, "request_malformed"), "{v}");
    }
    let huge = format!(r#"{{"challenge":"{}","payer":"0x","signature":"0x"}}"#, "A".repeat(70 * 1024));
    let (s, v) = post_raw(&c, &pay_url, huge.into_bytes()).await;
    assert_eq!((s, err_code(&v)), (413, "request_too_large"));
    // Chunked (no Content-Length) is cut at the limit too.
    assert_eq!(chunked_post_status(&f.url, "/v1/payments", 160 * 1024).await, 413);
    let (s, v) =
        post(&c, &pay_url, &json!({"challenge": "!!!", "payer": w.address(), "signature": "0x00"})).await;
    assert_eq!((s, err_code(&v)), (400, "challenge_malformed"));

    // A challenge from a provider this facilitator never onboarded.
    let stranger = paywall(&generate_secret(Mode::Sandbox, &OsEntropy), &u);
    let (s, v) = pay(&c, &u, &sign(&challenge(&stranger, "/a", "0.1"), &w)).await;
    assert_eq!((s, err_code(&v)), (404, "provider_unknown"));

    // Tampered: a lower price under the original MAC, re-signed by the payer.
    let mut cheap = Challenge::decode(&challenge(&pw, "/a", "0.5")).unwrap();
    cheap.amount = "0.0001".into();
    let (s, v) = pay(&c, &u, &sign(&cheap.encode(), &w)).await;
    assert_eq!((s, err_code(&v)), (401, "challenge_invalid"));
    let mut moved = Challenge::decode(&challenge(&pw, "/a", "0.5")).unwrap();
    moved.path = "/b".into();
    let (s, v) = pay(&c, &u, &sign(&moved.encode(), &w)).await;
    assert_eq!((s, err_code(&v)), (401, "challenge_invalid"));

    // Expired.
    let old = challenge_at(&pw, "/a", "0.1", now() - 1000);
    let (s, v) = pay(&c, &u, &sign(&old, &w)).await;
    assert_eq!((s, err_code(&v)), (402, "challenge_expired"));

    // Signatures: garbage; made by another wallet; someone else's signature with my address.
    let enc = challenge(&pw, "/a", "0.1");
    let mut req = sign(&enc, &w);
    req.signature = format!("0x{}", "11".repeat(65));
    let (s, v) = pay(&c, &u, &req).await;
    assert_eq!((s, err_code(&v)), (401, "signature_invalid"));
    let other = wallet();
    let mut req = sign(&enc, &other);
    req.payer = w.address().to_checksum();
    let (s, v) = pay(&c, &u, &req).await;
    assert_eq!(
        (s, err_code(&v)),
        (401, "signature_invalid"),
        "a wallet paying with someone else's signature"
    );
    let mut req = sign(&enc, &w);
    req.payer = other.address().to_checksum();
    let (s, v) = pay(&c, &u, &req).await;
    assert_eq!((s, err_code(&v)), (401, "signature_invalid"));
    // A signature over another challenge.
    let mut req = sign(&enc, &w);
    req.signature = sign(&challenge(&pw, "/a", "0.1"), &w).signature;
    let (s, v) = pay(&c, &u, &req).await;
    assert_eq!((s, err_code(&v)), (401, "signature_invalid"));

    // Not enough money: the exact amounts, for agents.
    let (s, v) = pay(&c, &u, &sign(&challenge(&pw, "/a", "2.5"), &w)).await;
    assert_eq!(s, 402, "{v}");
    assert_eq!(
        v,
        json!({
            "error": "insufficient_funds",
            "message": v["message"],
            "required": "2.5",
            "balance": "1",
            "currency": "usd"
        })
    );
    let (s, v) = pay(&c, &u, &sign(&challenge(&pw, "/a", "0.1"), &wallet())).await;
    assert_eq!((s, v["balance"].as_str()), (402, Some("0")));

    // Nothing above moved any money.
    assert_eq!(balance(&c, &u, &w).await, "1");
    let (s, v) = get(&c, &format!("{u}/no/such/route")).await;
    assert_eq!((s, err_code(&v)), (404, "not_found"));
}

#[tokio::test]
async fn a_challenge_naming_another_facilitator_is_refused() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let w = wallet();
    top_up(&c, &u, &w, "1").await;

    // A provider's genuine challenge (valid MAC) that names another facilitator, as one a
    // relaying facilitator would forward here, is refused before anything is charged.
    let port = f.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    for other in [
        "http://127.0.0.1:9".to_string(),
        "https://pay.evil.test".to_string(),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}"),
        format!("{u}/relay"),
        format!("http://localhost:{port}"),
    ] {
        let req = sign(&challenge(&paywall(&p.api_secret, &other), "/a", "0.1"), &w);
        let (s, v) = pay(&c, &u, &req).await;
        assert_eq!((s, err_code(&v)), (400, "challenge_mismatch"), "{other}: {v}");
    }
    assert_eq!(balance(&c, &u, &w).await, "1");
    let own = paywall(&p.api_secret, &u);
    let (s, v) = pay(&c, &u, &sign(&challenge(&own, "/a", "0.1"), &w)).await;
    assert_eq!(s, 200, "{v}");

    // With a public URL, that URL is the facilitator's name, whichever address reached it, in
    // any spelling of it.
    let g = Facilitator::start(&dir.path().join("g.db"), &["--public-url", "https://Pay.Example.test:443/"]);
    let q = create_provider(&c, &g.url, json!({})).await;
    top_up(&c, &g.url, &w, "1").await;
    for name in ["https://pay.example.test", "https://PAY.example.TEST:443/"] {
        let named = paywall(&q.api_secret, name);
        let (s, v) = pay(&c, &g.url, &sign(&challenge(&named, "/a", "0.2"), &w)).await;
        assert_eq!(s, 200, "{name}: {v}");
    }
    let bound = paywall(&q.api_secret, &g.url);
    let (s, v) = pay(&c, &g.url, &sign(&challenge(&bound, "/a", "0.2"), &w)).await;
    assert_eq!((s, err_code(&v)), (400, "challenge_mismatch"), "{v}");
    assert_eq!(balance(&c, &g.url, &w).await, "0.6");
}

#[tokio::test]
async fn listening_on_every_interface_needs_a_public_url() {
    let dir = tmp();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--addr", "0.0.0.0:0", "--db"])
        .arg(dir.path().join("f.db"))
        .env_remove("VLEXIVO_ADDR")
        .env_remove("VLEXIVO_DB")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a public URL"), "{err}");
}

#[tokio::test]
async fn the_same_challenge_paid_concurrently_debits_once() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let w = wallet();
    top_up(&c, &u, &w, "1").await;
    let req = sign(&challenge(&paywall(&p.api_secret, &u), "/a", "0.4"), &w);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, u, req) = (c.clone(), u.clone(), req.clone());
            tokio::spawn(async move { pay(&c, &u, &req).await })
        })
        .collect();
    let mut fresh = 0;
    let mut tokens = HashSet::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
        if v["replayed"] == false {
            fresh += 1;
        }
        tokens.insert(v["token"].as_str().unwrap().to_string());
    }
    assert_eq!(fresh, 1);
    assert_eq!(tokens.len(), 1);
    assert_eq!(balance(&c, &u, &w).await, "0.6");
}

#[tokio::test]
async fn hundred_concurrent_payments_from_a_wallet_funded_for_sixty() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    let w = wallet();
    top_up(&c, &u, &w, "0.6").await;
    let reqs: Vec<_> = (0..100).map(|i| sign(&challenge(&pw, &format!("/item/{i}"), "0.01"), &w)).collect();
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let (c, u) = (c.clone(), u.clone());
            tokio::spawn(async move { pay(&c, &u, &req).await })
        })
        .collect();
    let (mut ok, mut poor) = (0, 0);
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match (s, err_code(&v)) {
            (200, _) => {
                assert_eq!(v["replayed"], false);
                ok += 1;
            }
            (402, "insufficient_funds") => {
                assert_eq!(v["required"], "0.01");
                poor += 1;
            }
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert_eq!((ok, poor), (60, 40));
    assert_eq!(balance(&c, &u, &w).await, "0");
    let (s, me) = get_authed(&c, &format!("{u}/v1/providers/me"), &p.api_secret).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["revenue"], json!({"currency": "usd", "total": "0.6", "count": 60}));
}

/// POST `len` bytes with Transfer-Encoding: chunked over a raw socket; returns the status.
async fn chunked_post_status(base: &str, path: &str, len: usize) -> u16 {
    let (addr, path) = (base.strip_prefix("http://").unwrap().to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b' '; 8192];
        for _ in 0..len / chunk.len() {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            // The server may answer and close before reading everything.
            if s.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn payment_lists_page_with_sealed_cursors_and_filters() {
    let dir = tmp();
    paging(&Facilitator::start(&dir.path().join("f.db"), &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_lists_page_with_sealed_cursors_and_filters_on_postgres() {
    let pg = vlexivo_testkit::Server::postgres();
    let dir = tmp();
    paging(&Facilitator::start_pg(&pg.database("paging"), dir.path(), &[])).await;
}

async fn paging(f: &Facilitator) {
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let other = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    let (alice, bob) = (wallet(), wallet());
    top_up(&c, &u, &alice, "10").await;
    top_up(&c, &u, &bob, "10").await;
    for i in 0..23 {
        let (path, w) = if i % 3 == 0 { ("/b", &bob) } else { ("/a", &alice) };
        let (s, r) = pay(&c, &u, &sign(&challenge(&pw, path, "0.01"), w)).await;
        assert_eq!(s, 200, "{r}");
    }
    let list = |secret: String, q: String| {
        let c = c.clone();
        let u = u.clone();
        async move { get_authed(&c, &format!("{u}/v1/providers/me/payments?{q}"), &secret).await }
    };
    let (_, all) = list(p.api_secret.clone(), "limit=1000".into()).await;
    let all = all["payments"].as_array().unwrap().clone();
    assert_eq!(all.len(), 23);
    // Paging by 5 yields the same rows in the same order, each once; the last page has no cursor.
    let walk = |q: &'static str| {
        let list = &list;
        let secret = p.api_secret.clone();
        async move {
            let (mut rows, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
            loop {
                let cq = cursor.as_deref().map(|c| format!("&cursor={c}")).unwrap_or_default();
                let (s, page) = list(secret.clone(), format!("limit=5{q}{cq}")).await;
                assert_eq!(s, 200, "{page}");
                rows.extend(page["payments"].as_array().unwrap().iter().cloned());
                pages += 1;
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break (rows, pages),
                }
            }
        }
    };
    let (rows, pages) = walk("").await;
    assert_eq!((rows, pages), (all.clone(), 5));
    let route_b = all.iter().find(|r| r["payer"] == bob.address().to_checksum()).unwrap()["resource"].clone();
    let b = route_b.as_str().unwrap().replace(' ', "%20").replace(':', "%3A").replace('/', "%2F");
    let q: &'static str = Box::leak(format!("&route={b}").into_boxed_str());
    let (rows, _) = walk(q).await;
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["resource"] == route_b && r["payer"] == bob.address().to_checksum()));
    let qp: &'static str =
        Box::leak(format!("&payer={}", alice.address().to_checksum().to_lowercase()).into_boxed_str());
    assert_eq!(walk(qp).await.0.len(), 15);
    let t0 = all[22]["paid_at"].as_i64().unwrap();
    let qt: &'static str = Box::leak(format!("&from={}&to={}", t0, t0 + 3600).into_boxed_str());
    assert_eq!(walk(qt).await.0.len(), 23);
    let qt: &'static str = Box::leak(format!("&to={t0}").into_boxed_str());
    assert_eq!(walk(qt).await.0.len(), 0);

    // A cursor is refused when edited, used under other filters or by another provider.
    let (_, first) = list(p.api_secret.clone(), "limit=5".into()).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (secret, q) in [
        (p.api_secret.clone(), format!("limit=5&cursor={tampered}")),
        (p.api_secret.clone(), format!("limit=5&cursor={cursor}{q}")),
        (other.api_secret.clone(), format!("limit=5&cursor={cursor}")),
        (p.api_secret.clone(), "limit=5&cursor=not-a-cursor".into()),
        (p.api_secret.clone(), "payer=bob".into()),
        (p.api_secret.clone(), "from=yesterday".into()),
    ] {
        let (s, v) = list(secret, q.clone()).await;
        assert_eq!((s, err_code(&v)), (400, "request_malformed"), "{q}: {v}");
    }
}

/// The dashboard's sessions without a browser (tests/browser drives the pages in Chromium):
/// the secret is exchanged for a cookie only with the sign-in page's own token, forms need the
/// session's CSRF token, sign-out ends the session.
#[tokio::test]
async fn dashboard_sign_in_csrf_and_sign_out() {
    let dir = tmp();
    let f = Facilitator::start(&dir.path().join("f.db"), &[]);
    let u = f.url.clone();
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let p = create_provider(&c, &u, json!({"name": "<b>Acme</b>"})).await;
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
            v.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap().to_string())
        })
    };
    let form = |c: &reqwest::Client, path: &str, cookie: &str, body: String| {
        c.post(format!("{u}{path}"))
            .header("cookie", cookie.to_string())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Not signed in: pages send the browser to sign in.
    let r = c.get(format!("{u}/dashboard")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/dashboard/login"));
    let page = c.get(format!("{u}/dashboard/login")).send().await.unwrap();
    assert!(!page.headers()["content-security-policy"].to_str().unwrap().contains("unsafe-inline"));
    let login = cookie_of(&page, "vlx_login").unwrap();
    // The sign-in form's token must match its cookie.
    let r = form(&c, "/dashboard/login", "", format!("csrf={login}&secret={}", p.api_secret)).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = form(
        &c,
        "/dashboard/login",
        &format!("vlx_login={login}"),
        format!("csrf=forged&secret={}", p.api_secret),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let wrong = format!("{}x", &p.api_secret[..p.api_secret.len() - 1]);
    let r =
        form(&c, "/dashboard/login", &format!("vlx_login={login}"), format!("csrf={login}&secret={wrong}"))
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(cookie_of(&r, "vlx_session").is_none());
    let r = form(
        &c,
        "/dashboard/login",
        &format!("vlx_login={login}"),
        format!("csrf={login}&secret={}", p.api_secret),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let set =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(
        set.iter().any(|s| s.starts_with("vlx_session=")
            && s.contains("HttpOnly")
            && s.contains("SameSite=Strict"))
    );
    let session = format!("vlx_session={}", cookie_of(&r, "vlx_session").unwrap());
    assert!(!session.contains(&p.api_secret[8..]));
    let html = c
        .get(format!("{u}/dashboard"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("&lt;b&gt;Acme&lt;/b&gt;") && !html.contains("<b>Acme"), "the name is escaped");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    // Forms need the session's token; the CSV needs the session.
    let wl = wallet();
    let w = wl.address().to_checksum();
    let r = form(&c, "/dashboard/wallets/topup", &session, format!("csrf=forged&address={w}&amount=5"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(balance(&c, &u, &wl).await, "0");
    let r = form(&c, "/dashboard/wallets/topup", &session, format!("csrf={csrf}&address={w}&amount=5"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(balance(&c, &u, &wl).await, "5");
    assert_eq!(c.get(format!("{u}/dashboard/payments.csv")).send().await.unwrap().status().as_u16(), 401);
    let csv = c.get(format!("{u}/dashboard/payments.csv")).header("cookie", &session).send().await.unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    // Sign-out ends the session for good.
    let r = form(&c, "/dashboard/logout", &session, format!("csrf={csrf}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let r = c.get(format!("{u}/dashboard/payments.csv")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
