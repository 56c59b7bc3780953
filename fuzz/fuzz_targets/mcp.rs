//! Paid MCP tools' metadata, both ways: the proof and payer hint a server reads from a call's
//! `_meta`, the receipt a payer reads from a result's, the JSON-RPC error a server makes of a
//! paywall's refusal, and the HTTP answer a payer makes of such an error (then read by core's
//! payer flow as a 402). A refusal survives the round trip: same status, same body.
#![no_main]
use serde_json::Value;
use vlexivo_core::client::parse_payment_required;
use vlexivo_core::mcp::{
    INTERNAL_ERROR, PAYER_META, PAYMENT_REQUIRED, PROOF_META, call_meta, meta_key, payment_required_answer,
    rejection_error, request_meta, result_receipt,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [meta, status, body, code, headers] = vlexivo_fuzz::fields::<5>(data);
    let meta: Value = serde_json::from_slice(meta).unwrap_or(Value::Null);
    let m = call_meta(&meta);
    assert_eq!(m.proof.as_deref(), meta.get(PROOF_META).and_then(Value::as_str));
    assert_eq!(m.payer.as_deref(), meta.get(PAYER_META).and_then(Value::as_str));
    let _ = result_receipt(&meta);

    // A server's refusal, as the JSON-RPC error and back.
    let status =
        std::str::from_utf8(status).ok().and_then(|s| s.parse::<u16>().ok()).unwrap_or_else(|| {
            status.iter().fold(0u16, |s, &b| s.wrapping_mul(31).wrapping_add(u16::from(b)))
        }) % 600;
    let body = vlexivo_fuzz::text(body);
    let e = rejection_error(status, &body);
    assert!(e.data.is_object());
    if status >= 500 {
        assert_eq!(e.code, INTERNAL_ERROR);
        assert_eq!(e.data.as_object().map(|d| d.len()), Some(2), "a fault tells only its code: {}", e.data);
        assert_eq!(payment_required_answer(e.code, &e.data), None);
    } else {
        assert_eq!(e.code, PAYMENT_REQUIRED);
        let a = payment_required_answer(e.code, &e.data).expect("a refusal reads back");
        assert_eq!(a.status, if (400..500).contains(&status) { status } else { 402 });
        let mut sent: Value = serde_json::from_str(&body).ok().filter(Value::is_object).unwrap_or_default();
        if let Some(o) = sent.as_object_mut() {
            o.remove("status");
        }
        let got: Value = serde_json::from_str(&a.body).expect("JSON");
        // Compared as both went through JSON text once more: serde_json's default float parser
        // does not always read back its own output (1.3333333333333333e25 -> ...333e25), a
        // drift of its own that no body of core's meets (they hold no floats).
        let sent = if sent.is_null() { Value::Object(Default::default()) } else { sent };
        let sent: Value = serde_json::from_str(&sent.to_string()).expect("JSON");
        assert_eq!(got, sent, "the body changed");
    }

    // Whatever error a payer is handed: read it, then let the payer flow read the answer.
    let code = i64::from_le_bytes(
        code.iter().copied().chain([0; 8]).take(8).collect::<Vec<_>>().try_into().expect("8"),
    );
    for (code, data) in [(code, &meta), (PAYMENT_REQUIRED, &meta)] {
        if let Some(a) = payment_required_answer(code, data) {
            assert!((400..500).contains(&a.status));
            let hs: Vec<(&str, &str)> = a.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let _ = parse_payment_required(a.status, hs, a.body.as_bytes());
        }
    }

    // A payer's request headers as `_meta`.
    let headers = vlexivo_fuzz::text(headers);
    let pairs: Vec<(&str, &str)> = headers.split('\n').filter_map(|l| l.split_once(':')).collect();
    let meta = request_meta(pairs.iter().copied());
    for (k, v) in &pairs {
        assert!(meta.contains_key(&meta_key(k)));
        assert!(meta[&meta_key(k)].is_string(), "{v:?}");
    }
    assert!(meta.keys().all(|k| k.starts_with("vlexivo/")));
});
