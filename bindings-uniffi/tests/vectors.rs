//! The payer's shared vectors (tests/vectors/client.json) through this crate's exported API,
//! as Kotlin and Swift call it: `quote` for the 402 cases, `PaymentFlow` for the flows, and the
//! error conversion for the facilitator error bodies.

use serde_json::{Value, json};
use std::path::PathBuf;
use vlexivo_uniffi::{
    AutoTopUp, FlowStep, HttpHeader, PaymentFlow, SpendingPolicy, VlexivoError, VlexivoPayments, Wallet,
    proof_header_name,
};

fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors present")).expect("JSON")
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn payments_for(key: &str, config: &Value, now: u64) -> std::sync::Arc<VlexivoPayments> {
    let auto = config.get("auto_top_up").map(|a| AutoTopUp {
        enabled: true,
        trigger_balance: s(&a["trigger_balance"]).unwrap(),
        top_up_amount: s(&a["top_up_amount"]).unwrap(),
        max_total: s(&a["max_total"]),
        funding_wallet_key: None,
        rpc_url: None,
    });
    let trusted: Vec<String> = config["trusted"].as_array().unwrap().iter().map(|u| s(u).unwrap()).collect();
    VlexivoPayments::new(
        Wallet::from_key(key.to_string()).unwrap(),
        SpendingPolicy {
            max_per_call: s(&config["max_per_call"]),
            max_total: s(&config["max_total"]),
            ..Default::default()
        },
        auto,
        None,
        None,
        Some(trusted),
        Some(now),
        None,
    )
    .unwrap()
}

fn headers_of(v: &Value) -> Vec<HttpHeader> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| HttpHeader { name: s(&h[0]).unwrap(), value: s(&h[1]).unwrap() })
        .collect()
}

#[test]
fn client_402_cases() {
    let file = vectors("client.json");
    let key = file["private_key"].as_str().unwrap().to_string();
    let mut ran = 0;
    for case in file["cases"].as_array().unwrap().iter().filter(|c| c["op"] == "quote") {
        let name = case["name"].as_str().unwrap();
        let resp = &case["response"];
        let payments = payments_for(&key, &case["config"], case["now"].as_u64().unwrap());
        let got = payments.quote(
            resp["status"].as_u64().unwrap() as u16,
            headers_of(&resp["headers"]),
            resp["body"].as_str().unwrap().as_bytes().to_vec(),
            s(&case["request"]["method"]).unwrap(),
            s(&case["request"]["url"]).unwrap(),
            None,
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
                assert_eq!(payments.reserved_total(), "0", "{name}: a quote reserves nothing");
            }
            Err(e) => assert_eq!(e.code(), expect["error"], "{name}: {e}"),
        }
        ran += 1;
    }
    assert!(ran >= 12, "only {ran} cases");
}

/// One recorded input through `PaymentFlow`; the step in the vectors' form.
fn feed(flow: &PaymentFlow, input: &Value) -> Value {
    let (kind, v) = input.as_object().unwrap().iter().next().unwrap();
    let step = match kind.as_str() {
        "start" => flow.start(),
        "response" => flow.response(
            v["status"].as_u64().unwrap() as u16,
            headers_of(&v["headers"]),
            v["body"].as_str().map(|b| b.as_bytes().to_vec()),
            s(&v["url"]),
        ),
        "answer" => {
            flow.answer(v["status"].as_u64().unwrap() as u16, v["body"].as_str().unwrap().as_bytes().to_vec())
        }
        "transport_error" => flow.transport_error(v["sent"].as_bool().unwrap(), "vector".into()),
        "resume" => flow.resume(),
        other => panic!("input {other}"),
    };
    match step {
        Err(e) => json!({ "error": e.code() }),
        Ok(FlowStep::Send { url, headers }) => {
            let proof = headers.iter().find(|h| h.name == proof_header_name()).map(|h| h.value.clone());
            json!({ "send": { "url": url, "proof": proof } })
        }
        Ok(FlowStep::ReadBody { limit }) => json!({ "read_body": { "limit": limit } }),
        Ok(FlowStep::Facilitator { call }) => {
            json!({ "facilitator": { "method": call.method, "url": call.url, "body": call.body } })
        }
        Ok(FlowStep::Paid { event }) => json!({ "paid": { "price": event.price, "nonce": event.nonce,
            "replayed": event.replayed, "topped_up": event.topped_up, "reconciled": event.reconciled } }),
        Ok(FlowStep::Wait { .. }) => json!({ "wait": {} }),
        Ok(FlowStep::Return) => json!({ "return": {} }),
    }
}

#[test]
fn client_flows() {
    let file = vectors("client.json");
    let key = file["private_key"].as_str().unwrap().to_string();
    let mut ran = 0;
    for case in file["cases"].as_array().unwrap().iter().filter(|c| c["op"] == "flow") {
        let name = case["name"].as_str().unwrap();
        let payments = payments_for(&key, &case["config"], case["now"].as_u64().unwrap());
        for c in case["calls"].as_array().unwrap() {
            let flow = payments
                .clone()
                .flow(s(&c["method"]).unwrap(), s(&c["url"]).unwrap(), c["replayable"].as_bool().unwrap())
                .unwrap();
            for (i, ex) in c["exchanges"].as_array().unwrap().iter().enumerate() {
                assert_eq!(feed(&flow, &ex["input"]), ex["expect"], "{name}: exchange {i}");
            }
        }
        let b = &case["expect_budget"];
        assert_eq!(payments.spent_total(), b["spent"], "{name}");
        assert_eq!(payments.reserved_total(), b["reserved"], "{name}");
        assert_eq!(payments.in_doubt_total(), b["in_doubt"], "{name}");
        ran += 1;
    }
    assert!(ran >= 9, "only {ran} flows");
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
