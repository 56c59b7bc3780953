//! What a payer reads from the network: a 402 (challenge header or JSON body), the error
//! bodies of paywalls and facilitators, the facilitator's answer to a payment, and the whole
//! payer flow fed an attacker's responses. The flow must never pay more than the challenge
//! asked or more than its budget, and must end.
#![no_main]
use std::sync::{Arc, OnceLock};
use vlexivo_core::client::{
    Payer, PayerConfig, Step, TrustedFacilitators, classify_pay_answer, error_from_body,
    parse_payment_required,
};
use vlexivo_core::env::FixedClock;
use vlexivo_core::wallet::Wallet;
use vlexivo_fuzz::{NOW, payer_key};

const API: &str = "http://127.0.0.1:8080/api/v1/inference";

fn headers(raw: &str) -> Vec<(&str, &str)> {
    raw.split('\n').filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect()
}

fn wallet() -> &'static Wallet {
    static W: OnceLock<Wallet> = OnceLock::new();
    W.get_or_init(|| Wallet::from_hex(payer_key()).expect("vector key"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [status, head, body, answers] = vlexivo_fuzz::fields::<4>(data);
    let status = status.iter().fold(0u16, |s, &b| s.wrapping_mul(10).wrapping_add(u16::from(b))) % 600;
    let head = vlexivo_fuzz::text(head);
    let hs = headers(&head);
    let _ = parse_payment_required(402, hs.iter().copied(), body);
    let _ = parse_payment_required(status, hs.iter().copied(), body);
    let _ = error_from_body(status, body);
    let _ = classify_pay_answer(status, body, "nonce", status & 1 == 0);

    // The flow: the unpaid request gets this 402; every facilitator request gets the next
    // answer from `answers` (split at 0x01), then 500s.
    let trusted = TrustedFacilitators::new(Some("http://127.0.0.1:4020"), &[], None).expect("trusted");
    let payer = Payer::new(wallet().clone(), PayerConfig::new(trusted), Arc::new(FixedClock::new(NOW)));
    let Ok(mut call) = payer.call("POST", API, true) else { return };
    let mut replies = answers.split(|&b| b == 1);
    let mut step = call.start();
    for _ in 0..32 {
        step = match step {
            Step::Send { headers, .. } => {
                for (name, value) in &headers {
                    vlexivo_fuzz::assert_header_value(name, value);
                }
                match call.response(402, hs.iter().copied(), Some(body), None) {
                    Ok(s) => s,
                    Err(_) => break,
                }
            }
            Step::ReadBody { .. } => match call.response(402, hs.iter().copied(), Some(body), None) {
                Ok(s) => s,
                Err(_) => break,
            },
            Step::Facilitator(_) => {
                let reply = replies.next().unwrap_or(b"{}");
                let (code, reply) = match reply.split_first() {
                    Some((&c, rest)) => (200 + u16::from(c) % 4 * 100, rest),
                    None => (500, reply),
                };
                match call.answer(code, reply) {
                    Ok(s) => s,
                    Err(_) => break,
                }
            }
            Step::Paid(_) | Step::Wait { .. } => match call.resume() {
                Ok(s) => s,
                Err(_) => break,
            },
            Step::Return => break,
        };
    }
    drop(call);
    // Whatever happened, the budget accounts for no more than one payment of this 402's price.
    if let Ok(pr) = parse_payment_required(402, hs.iter().copied(), body) {
        let spent = payer.spent_total().checked_add(&payer.in_doubt_total()).expect("sum");
        assert!(spent.amount() <= pr.price.amount(), "spent {spent:?} for one call priced {:?}", pr.price);
    }
});
