//! The payer's shared vectors (tests/vectors/client.json) through this crate's exported API,
//! as Kotlin and Swift call it: `quote` for the 402 cases, and the error conversion for the
//! facilitator error bodies (which the Kotlin suite meets only through a live facilitator).

use serde_json::Value;
use std::path::PathBuf;
use vlexivo_uniffi::{HttpHeader, SpendingPolicy, VlexivoError, VlexivoPayments, Wallet};

fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors present")).expect("JSON")
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[test]
fn client_402_cases() {
    let file = vectors("client.json");
    let key = file["private_key"].as_str().unwrap().to_string();
    let mut ran = 0;
    for case in file["cases"].as_array().unwrap().iter().filter(|c| c.get("op").is_none()) {
        let name = case["name"].as_str().unwrap();
        let resp = &case["response"];
        let headers: Vec<HttpHeader> = resp["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| HttpHeader { name: s(&h[0]).unwrap(), value: s(&h[1]).unwrap() })
            .collect();
        let policy = &case["policy"];
        let payments = VlexivoPayments::new(
            Wallet::from_key(key.clone()).unwrap(),
            SpendingPolicy {
                max_per_call: s(&policy["max_per_call"]),
                max_total: s(&policy["max_total"]),
                ..Default::default()
            },
            None,
            s(&policy["facilitator_url"]),
            None,
        )
        .unwrap();
        let got = payments.quote(
            resp["status"].as_u64().unwrap() as u16,
            headers,
            resp["body"].as_str().unwrap().as_bytes().to_vec(),
            s(&case["request"]["method"]).unwrap(),
            s(&case["request"]["url"]).unwrap(),
            case["now"].as_u64(),
        );
        let expect = &case["expect"];
        match got {
            Ok(q) => {
                assert!(expect.get("error").is_none(), "{name}: quoted, expected {expect}");
                assert_eq!(q.price, expect["price"], "{name}");
                assert_eq!(q.currency, expect["currency"], "{name}");
                assert_eq!(q.nonce, expect["nonce"], "{name}");
                assert_eq!(q.pay_url, expect["pay_url"], "{name}");
                let body: Value = serde_json::from_str(&q.payment_request).unwrap();
                assert_eq!(body, expect["payment_request"], "{name}");
                assert_eq!(payments.spent_total(), "0", "{name}: a quote spends nothing");
            }
            Err(e) => assert_eq!(e.code(), expect["error"], "{name}: {e}"),
        }
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} cases");
}

#[test]
fn facilitator_error_bodies() {
    let file = vectors("client.json");
    let mut ran = 0;
    for case in file["cases"].as_array().unwrap().iter().filter(|c| c["op"] == "error_from_body") {
        let name = case["name"].as_str().unwrap();
        let core = vlexivo_core::client::error_from_body(
            case["status"].as_u64().unwrap() as u16,
            case["body"].as_str().unwrap().as_bytes(),
        );
        let e = VlexivoError::from(core);
        let expect = &case["expect"];
        assert_eq!(e.code(), expect["error"], "{name}");
        if let VlexivoError::InsufficientFunds { required, balance, currency, .. } = &e {
            assert_eq!(required, &expect["required"], "{name}");
            assert_eq!(balance, &expect["balance"], "{name}");
            assert_eq!(currency, &expect["currency"], "{name}");
        } else {
            assert!(expect.get("required").is_none(), "{name}: expected insufficient funds, got {e:?}");
        }
        ran += 1;
    }
    assert!(ran >= 3, "only {ran} cases");
}
