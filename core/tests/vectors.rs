//! Runs the shared vectors in `tests/vectors/` against the core, the same files every
//! language's suite reads. The expectations were recorded by `examples/gen_vectors.rs`; the
//! security-critical ones are also pinned here by name, so a regenerated file cannot quietly
//! change what they expect.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::client::{
    AutoTopUp, Payer, PayerConfig, TrustedFacilitators, error_from_body, parse_payment_required,
};
use vlexivo_core::env::{FixedClock, SeededEntropy};
use vlexivo_core::keys::ProviderKeys;
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::store::MemoryStore;
use vlexivo_core::wallet::{Address, PaymentAuthorization, Wallet, recover_authorization};
use vlexivo_core::{Currency, Error, Money, payment};

fn load(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("vector file")).expect("vector JSON")
}

fn code<T>(r: Result<T, Error>) -> Result<T, Value> {
    r.map_err(|e| json!(e.code()))
}

fn cases(v: &Value) -> &Vec<Value> {
    v["cases"].as_array().expect("cases")
}

#[test]
fn money() {
    let v = load("money.json");
    for c in cases(&v) {
        let cur = c["currency"].as_str().unwrap();
        let r = Currency::parse(cur).and_then(|cur| match &c["input"] {
            Value::String(s) => Money::parse(s, cur),
            n => Money::from_f64(n.as_f64().unwrap(), cur),
        });
        let r = if c["positive"] == json!(true) { r.and_then(Money::positive) } else { r };
        let got = match r {
            Ok(m) => json!({ "amount": m.to_string(), "atomic": m.to_atomic().to_string() }),
            Err(e) => json!({ "error": e.code() }),
        };
        assert_eq!(got, c["expect"], "money case {}", c["name"]);
    }
}

#[test]
fn challenges() {
    let v = load("challenge.json");
    let keys = ProviderKeys::from_secret(v["api_secret"].as_str().unwrap()).unwrap();
    for c in cases(&v) {
        let now = c["now"].as_u64().unwrap();
        let name = &c["name"];
        match code(Challenge::decode(c["encoded"].as_str().unwrap())) {
            Err(e) => assert_eq!(e, c["expect"]["decode"], "{name}"),
            Ok(ch) => {
                assert_eq!(c["expect"]["decode"], "ok", "{name}");
                let verify = match ch.verify(&keys.challenge_mac, now, 0) {
                    Ok(()) => json!("ok"),
                    Err(e) => json!(e.code()),
                };
                assert_eq!(verify, c["expect"]["verify"], "{name}");
                assert_eq!(json!(ch.amount), c["expect"]["fields"]["amount"], "{name}");
                assert_eq!(json!(ch.path), c["expect"]["fields"]["path"], "{name}");
                assert_eq!(json!(ch.origin), c["expect"]["fields"]["origin"], "{name}");
                assert_eq!(json!(ch.payer), c["expect"]["fields"]["payer"], "{name}");
            }
        }
    }
    // Pinned: a challenge moved to another origin, or not bound to one, never verifies.
    let by_name = |n: &str| cases(&v).iter().find(|c| c["name"] == n).unwrap_or_else(|| panic!("{n}"));
    assert_eq!(by_name("relayed to another origin")["expect"]["verify"], "challenge_invalid");
    assert_eq!(by_name("origin not in normal form")["expect"]["decode"], "challenge_malformed");
    assert_eq!(by_name("no origin")["expect"]["decode"], "challenge_malformed");
    // Pinned: a payer-bound challenge names its payer under the MAC.
    assert!(by_name("priced for a payer")["expect"]["fields"]["payer"].is_string());
    assert_eq!(by_name("payer swapped for another wallet")["expect"]["verify"], "challenge_invalid");
    assert_eq!(by_name("payer removed")["expect"]["verify"], "challenge_invalid");
    assert_eq!(by_name("payer not in EIP-55 form")["expect"]["decode"], "challenge_malformed");
    // Pinned: nothing but an untouched challenge verifies.
    for c in cases(&v) {
        let ok = c["expect"]["verify"] == "ok";
        let expected_ok =
            matches!(c["name"].as_str().unwrap(), "valid" | "valid at expiry" | "priced for a payer");
        assert_eq!(ok, expected_ok, "{}", c["name"]);
    }
}

fn authorization(a: &Value) -> PaymentAuthorization {
    let h = hex::decode(a["challenge"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    PaymentAuthorization {
        challenge_hash: h.try_into().unwrap(),
        payee: a["payee"].as_str().unwrap().into(),
        amount_atomic: a["amount"].as_str().unwrap().parse().unwrap(),
        currency: a["currency"].as_str().unwrap().into(),
        deadline: a["deadline"].as_u64().unwrap(),
        chain_id: a["chain_id"].as_u64().unwrap(),
    }
}

#[test]
fn wallet() {
    let v = load("wallet.json");
    for c in cases(&v) {
        let name = &c["name"];
        let got = match c["op"].as_str().unwrap() {
            "address" => match Wallet::from_hex(c["private_key"].as_str().unwrap()) {
                Ok(w) => json!({ "address": w.address().to_checksum() }),
                Err(e) => json!({ "error": e.code() }),
            },
            "parse_address" => match Address::parse(c["input"].as_str().unwrap()) {
                Ok(a) => json!({ "address": a.to_checksum() }),
                Err(e) => json!({ "error": e.code() }),
            },
            "sign" => {
                let w = Wallet::from_hex(c["private_key"].as_str().unwrap()).unwrap();
                let a = authorization(&c["authorization"]);
                json!({ "signing_hash": format!("0x{}", hex::encode(a.signing_hash())),
                        "signature": w.sign_authorization(&a), "signer": w.address().to_checksum() })
            }
            "recover" => {
                let a = authorization(&c["authorization"]);
                match recover_authorization(&a, c["signature"].as_str().unwrap()) {
                    Ok(s) => json!({ "signer": s.to_checksum() }),
                    Err(e) => json!({ "error": e.code() }),
                }
            }
            op => panic!("unknown op {op}"),
        };
        assert_eq!(got, c["expect"], "{name}");
    }
}

#[test]
fn payments() {
    let v = load("payment.json");
    let keys = ProviderKeys::from_secret(v["api_secret"].as_str().unwrap()).unwrap();
    for c in cases(&v) {
        let req: payment::PaymentRequest = serde_json::from_value(c["request"].clone()).unwrap();
        let now = c["now"].as_u64().unwrap();
        let got =
            match payment::decode(&req).and_then(|ch| payment::verify(&req, ch, &keys.challenge_mac, now)) {
                Ok(p) => json!({ "payer": p.payer.to_checksum(), "amount": p.price.to_string() }),
                Err(e) => json!({ "error": e.code() }),
            };
        assert_eq!(got, c["expect"], "{}", c["name"]);
    }
    // Pinned: only the payer a challenge names may pay it.
    let by_name = |n: &str| cases(&v).iter().find(|c| c["name"] == n).unwrap_or_else(|| panic!("{n}"));
    assert_eq!(
        by_name("priced for another payer (a borrowed hint)")["expect"]["error"],
        "challenge_mismatch"
    );
    assert!(by_name("priced for this payer")["expect"]["payer"].is_string());
}

#[test]
fn paywall() {
    let v = load("paywall.json");
    let entropy = SeededEntropy::new(1);
    for c in cases(&v) {
        let mut cfg = PaywallConfig::new(v["api_secret"].as_str().unwrap());
        cfg.facilitator_url = v["facilitator_url"].as_str().unwrap().into();
        cfg.leeway_secs = v["leeway_secs"].as_u64().unwrap();
        cfg.origin = Some(v["origin"].as_str().unwrap().into());
        if c["jwks"] == json!(true) {
            cfg.jwks = Some(serde_json::from_value(v["jwks"].clone()).unwrap());
        }
        let pw = Paywall::new(cfg).unwrap();
        assert_eq!(pw.account(), v["account"].as_str().unwrap());
        let store = MemoryStore::new();
        let price =
            Paywall::parse_price(c["price"].as_str().unwrap(), c["currency"].as_str().unwrap()).unwrap();
        for r in c["requests"].as_array().unwrap() {
            // A Host that is not the configured origin: the configured one is what counts.
            let info = RequestInfo::new(
                r["method"].as_str().unwrap(),
                "http",
                Some("127.0.0.1:1"),
                r["path"].as_str().unwrap(),
            );
            let now = r["now"].as_u64().unwrap();
            let got = match pw.verify(r["proof"].as_str(), &info, &price, now, &store) {
                Ok(facts) => {
                    let status = r["handler_status"].as_u64().unwrap_or(200);
                    if status >= 500 {
                        pw.release(&facts, &store).unwrap();
                    }
                    json!({ "status": status, "payment": facts })
                }
                Err(e) => {
                    let rej = pw.reject(&e, &info, Some(&price), "per-call", now, &entropy);
                    let has_challenge = rej.headers.iter().any(|(k, _)| *k == "Vlexivo-Challenge");
                    let body: Value = serde_json::from_str(&rej.body).unwrap();
                    assert_eq!(body["error"], json!(rej.code));
                    json!({ "status": rej.status, "error": rej.code, "challenge": has_challenge })
                }
            };
            assert_eq!(got, r["expect"], "paywall case {}", c["name"]);
        }
    }
    // Pinned outcomes of the security-critical cases.
    let pinned: &[(&str, &[(u64, &str)])] = &[
        ("no proof", &[(402, "payment_required")]),
        ("valid HS256", &[(200, "")]),
        ("valid EdDSA", &[(200, "")]),
        ("EdDSA without JWKS configured", &[(402, "token_algorithm")]),
        ("replay", &[(200, ""), (409, "token_replayed")]),
        ("handler failure releases the nonce", &[(500, ""), (200, ""), (409, "token_replayed")]),
        ("another route", &[(402, "token_resource")]),
        ("another origin", &[(402, "token_resource")]),
        ("bound to no origin", &[(402, "token_resource")]),
        ("another method", &[(402, "token_resource")]),
        ("lower amount than the price", &[(402, "token_underpaid")]),
        ("another currency", &[(402, "token_currency")]),
        ("another mode", &[(402, "token_mode")]),
        ("EdDSA token for another provider", &[(402, "token_audience")]),
        ("HS256 token under another provider's key", &[(402, "token_invalid")]),
        ("expired", &[(402, "token_expired")]),
        ("alg none", &[(402, "token_algorithm")]),
        ("alg RS256", &[(402, "token_algorithm")]),
        ("HS256 keyed with the EdDSA public key", &[(402, "token_invalid")]),
        ("EdDSA header over an HMAC signature", &[(402, "token_invalid")]),
        ("wrong typ", &[(402, "token_type")]),
        ("payload tampered", &[(402, "token_invalid")]),
        ("oversized proof header", &[(431, "token_too_large")]),
    ];
    for (name, outcomes) in pinned {
        let c = cases(&v).iter().find(|c| c["name"] == *name).unwrap_or_else(|| panic!("case {name}"));
        let got: Vec<(u64, &str)> = c["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["expect"]["status"].as_u64().unwrap(), r["expect"]["error"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(&got[..], *outcomes, "{name}");
    }
}

/// A payer for a case's `config`, on the case's fixed clock.
fn payer_for(v: &Value, config: &Value, now: u64) -> Payer {
    let m = |k: &str| config[k].as_str().map(|s| Money::parse(s, Currency::Usd).unwrap());
    let trusted: Vec<String> =
        config["trusted"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    let auto = config.get("auto_top_up").map(|a| {
        AutoTopUp::new(a["trigger_balance"].as_str().unwrap(), a["top_up_amount"].as_str().unwrap()).unwrap()
    });
    let config = PayerConfig {
        policy: SpendingPolicy {
            max_per_call: m("max_per_call"),
            max_total: m("max_total"),
            ..Default::default()
        },
        facilitators: TrustedFacilitators::new(None, &trusted, None).unwrap(),
        auto_top_up: auto,
        payer_hint: true,
    };
    let wallet = Wallet::from_hex(v["private_key"].as_str().unwrap()).unwrap();
    Payer::new(wallet, config, Arc::new(FixedClock::new(now)))
}

#[test]
fn client() {
    let v = load("client.json");
    let (mut quotes, mut flows) = (0, 0);
    for c in cases(&v) {
        let name = &c["name"];
        match c["op"].as_str().unwrap() {
            "error_from_body" => {
                let e = error_from_body(
                    c["status"].as_u64().unwrap() as u16,
                    c["body"].as_str().unwrap().as_bytes(),
                );
                assert_eq!(json!(e.code()), c["expect"]["error"], "{name}");
                if let Error::InsufficientFunds { required, balance, .. } = e {
                    assert_eq!(json!(required), c["expect"]["required"]);
                    assert_eq!(json!(balance), c["expect"]["balance"]);
                }
            }
            "quote" => {
                quotes += 1;
                let resp = &c["response"];
                let headers: Vec<(String, String)> = resp["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
                    .collect();
                let payer = payer_for(&v, &c["config"], c["now"].as_u64().unwrap());
                let got = parse_payment_required(
                    resp["status"].as_u64().unwrap() as u16,
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    resp["body"].as_str().unwrap().as_bytes(),
                )
                .and_then(|pr| payer.quote(&pr, c["request"]["method"].as_str().unwrap(), c["request"]["url"].as_str().unwrap()))
                .map(|q| json!({ "price": q.price.to_string(), "currency": q.price.currency().code(), "nonce": q.nonce,
                    "pay_url": q.pay_url, "payment_request": serde_json::from_str::<Value>(&q.body).unwrap() }));
                let got = got.unwrap_or_else(|e| json!({ "error": e.code() }));
                assert_eq!(got, c["expect"], "{name}");
                // Nothing stays reserved after a quote.
                assert!(payer.budget().reserved_total().is_zero(), "{name}");
            }
            "flow" => {
                flows += 1;
                let payer = payer_for(&v, &c["config"], c["now"].as_u64().unwrap());
                for call_case in c["calls"].as_array().unwrap() {
                    let mut call = payer
                        .call(
                            call_case["method"].as_str().unwrap(),
                            call_case["url"].as_str().unwrap(),
                            call_case["replayable"].as_bool().unwrap(),
                        )
                        .unwrap();
                    for (i, ex) in call_case["exchanges"].as_array().unwrap().iter().enumerate() {
                        assert_eq!(
                            vlexivo_core::client::vectors::feed(&mut call, &ex["input"]),
                            ex["expect"],
                            "{name}: exchange {i}"
                        );
                    }
                }
                let budget = &c["expect_budget"];
                assert_eq!(json!(payer.spent_total().to_string()), budget["spent"], "{name}");
                assert_eq!(json!(payer.reserved_total().to_string()), budget["reserved"], "{name}");
                assert_eq!(json!(payer.in_doubt_total().to_string()), budget["in_doubt"], "{name}");
            }
            other => panic!("op {other}"),
        }
    }
    assert!(quotes >= 12 && flows >= 9, "{quotes} quote cases, {flows} flows");
    // The attack of issue 15 item 6, pinned: the in-doubt payment stays counted.
    let attack = cases(&v)
        .iter()
        .find(|c| c["name"] == "flow: a 502 after paying leaves the payment in doubt and counted")
        .unwrap();
    assert_eq!(attack["expect_budget"], json!({ "spent": "0", "reserved": "0.003", "in_doubt": "0.003" }));
}

#[test]
fn at_least_forty_cases() {
    let n: usize = ["money", "challenge", "wallet", "payment", "paywall", "client"]
        .iter()
        .map(|f| cases(&load(&format!("{f}.json"))).len())
        .sum();
    assert!(n >= 40, "{n} cases");
}
