//! `tests/vectors/live.json` against the core: the EIP-3009 transfer a live challenge is paid
//! with, and what the facilitator's off-chain checks answer. The outcomes that guard money are
//! pinned here by name, so a regenerated file cannot quietly change them.

use serde_json::{Value, json};
use std::path::PathBuf;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::eip3009::{LiveTerms, authorization_nonce};
use vlexivo_core::keys::ProviderKeys;
use vlexivo_core::payment::{self, PaymentRequest};
use vlexivo_core::wallet::{Address, Wallet};

fn load() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/live.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("live.json")).expect("JSON")
}

fn terms(v: &Value, pay_to: &str) -> LiveTerms {
    let t = &v["terms"];
    LiveTerms {
        network: t["network"].as_str().unwrap().into(),
        asset: Address::parse(t["asset"].as_str().unwrap()).unwrap(),
        asset_name: t["asset_name"].as_str().unwrap().into(),
        asset_version: t["asset_version"].as_str().unwrap().into(),
        pay_to: Address::parse(pay_to).unwrap(),
    }
}

#[test]
fn the_transfer_that_pays_a_live_challenge() {
    let v = load();
    let a = &v["authorization"];
    let enc = a["challenge"].as_str().unwrap();
    let c = Challenge::decode(enc).unwrap();
    assert_eq!(c.mode, "live");
    assert_eq!(c.live_terms().unwrap(), terms(&v, v["terms"]["pay_to"].as_str().unwrap()));
    let nonce = authorization_nonce(&c.account, &c.nonce);
    assert_eq!(a["nonce"], json!(format!("0x{}", hex::encode(nonce))));
    let payer = Wallet::from_hex(v["payer_key"].as_str().unwrap()).unwrap();
    // The payer's flow signs exactly this request (deterministic signatures).
    let signed = payment::sign(&c, enc, &payer).unwrap();
    assert_eq!(serde_json::to_value(&signed).unwrap(), a["request"]);
    let (auth, domain) = payment::transfer_authorization(&c, payer.address(), 0, c.exp).unwrap();
    assert_eq!(a["domain_separator"], json!(format!("0x{}", hex::encode(domain.separator()))));
    assert_eq!(a["signing_hash"], json!(format!("0x{}", hex::encode(auth.signing_hash(&domain)))));
    let m = &a["typed_data"]["message"];
    assert_eq!(m["to"], v["terms"]["pay_to"]);
    assert_eq!(m["from"], json!(payer.address().to_checksum()));
    assert_eq!(m["value"], json!("10000"), "0.01 usd in 6-decimal units");
    assert_eq!(m["validBefore"], json!(c.exp.to_string()), "valid until the challenge expires");
    assert_eq!(a["typed_data"]["domain"]["chainId"], json!(31337));
    auth.verify(&domain, a["signature"].as_str().unwrap()).unwrap();
}

#[test]
fn facilitator_checks() {
    let v = load();
    let keys = ProviderKeys::from_secret(v["api_secret"].as_str().unwrap()).unwrap();
    let mut seen = Vec::new();
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let req: PaymentRequest = serde_json::from_value(case["request"].clone()).unwrap();
        let expected = terms(&v, case["expected_pay_to"].as_str().unwrap());
        let now = case["now"].as_u64().unwrap();
        let got = payment::decode(&req)
            .and_then(|c| payment::verify_live(&req, c, &keys.challenge_mac, &expected, now));
        let got = match got {
            Ok(t) => json!({ "payer": t.payment.payer.to_checksum(), "amount": t.payment.price.to_string(),
                "value": t.authorization.value.to_string() }),
            Err(e) => json!({ "error": e.code() }),
        };
        assert_eq!(got, case["expect"], "{name}");
        seen.push((name.to_string(), got));
    }
    let pinned = [
        ("valid", None),
        ("not valid yet", Some("authorization_invalid")),
        ("valid beyond the challenge", Some("authorization_invalid")),
        ("expiring before it can be settled", Some("authorization_invalid")),
        ("signed for another chain id", Some("signature_invalid")),
        ("payer claims another wallet", Some("signature_invalid")),
        ("the facilitator pays another address for this provider", Some("authorization_invalid")),
        ("expired challenge", Some("challenge_expired")),
    ];
    for (name, code) in pinned {
        let (_, got) = seen.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("case {name} missing"));
        match code {
            None => assert!(got.get("error").is_none(), "{name}: {got}"),
            Some(c) => assert_eq!(got["error"], json!(c), "{name}"),
        }
    }
}

#[test]
fn modes_do_not_cross() {
    let v = load();
    let keys = ProviderKeys::from_secret(v["api_secret"].as_str().unwrap()).unwrap();
    let req: PaymentRequest = serde_json::from_value(v["authorization"]["request"].clone()).unwrap();
    let c = payment::decode(&req).unwrap();
    let now = c.iat + 1;
    // A live challenge through the sandbox check is refused, and the other way round.
    let e = payment::verify(&req, c, &keys.challenge_mac, now).unwrap_err();
    assert_eq!(e.code(), "mode_mismatch");
    let sandbox = load_sandbox_payment();
    let c = payment::decode(&sandbox.0).unwrap();
    let e = payment::verify_live(
        &sandbox.0,
        c,
        &sandbox.1,
        &terms(&v, v["terms"]["pay_to"].as_str().unwrap()),
        sandbox.2,
    )
    .unwrap_err();
    assert_eq!(e.code(), "mode_mismatch");
}

/// The first valid case of `payment.json` (sandbox): its request, MAC key and time.
fn load_sandbox_payment() -> (PaymentRequest, [u8; 32], u64) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/payment.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let keys = ProviderKeys::from_secret(v["api_secret"].as_str().unwrap()).unwrap();
    let case = &v["cases"][0];
    (
        serde_json::from_value(case["request"].clone()).unwrap(),
        keys.challenge_mac,
        case["now"].as_u64().unwrap(),
    )
}
