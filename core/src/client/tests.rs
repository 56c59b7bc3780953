//! The payer flow's decisions, step by step: the 402s come from core's own paywall, the
//! facilitator's answers are the protocol's (receipts, refusals) or the failures the flow must
//! survive (a 502 relay, a dropped connection, a garbled body).

use super::*;
use crate::env::{FixedClock, SeededEntropy};
use crate::keys::{Mode, generate_secret};
use crate::paywall::{Paywall, PaywallConfig, RequestInfo};

const NOW: u64 = 1_800_000_000;
const FAC: &str = "http://127.0.0.1:4020";
const API: &str = "http://127.0.0.1:8080";

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::Usd).unwrap()
}

struct World {
    paywall: Paywall,
    rng: SeededEntropy,
    clock: Arc<FixedClock>,
}

impl World {
    fn new() -> Self {
        Self::with_facilitator(FAC)
    }

    fn with_facilitator(f: &str) -> Self {
        let rng = SeededEntropy::new(7);
        let mut cfg = PaywallConfig::new(generate_secret(Mode::Sandbox, &rng));
        cfg.facilitator_url = f.to_string();
        Self { paywall: Paywall::new(cfg).unwrap(), rng, clock: Arc::new(FixedClock::new(NOW)) }
    }

    fn payer(&self, policy: SpendingPolicy, trusted: &[&str], auto: Option<AutoTopUp>) -> Payer {
        let list: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        let config = PayerConfig {
            policy,
            facilitators: TrustedFacilitators::new(None, &list, None).unwrap(),
            auto_top_up: auto,
            payer_hint: true,
        };
        Payer::new(Wallet::generate(&self.rng), config, self.clock.clone())
    }

    /// The paywall's 402 for `method path` at `price`: (headers, body).
    fn challenge(&self, method: &str, path: &str, price: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let info = RequestInfo::new(method, "http", Some("127.0.0.1:8080"), path);
        let rej =
            self.paywall.challenge(&info, &usd(price), "per-call", self.clock.now(), &self.rng).unwrap();
        let headers = rej.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (headers, rej.body.into_bytes())
    }
}

fn receipt_for(body: &str, balance: &str, replayed: bool) -> Vec<u8> {
    let req: crate::payment::PaymentRequest = serde_json::from_str(body).unwrap();
    let c = crate::challenge::Challenge::decode(&req.challenge).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "token": format!("tok-{}", c.nonce), "tx_hash": "0x01", "payer": req.payer, "amount": c.amount,
        "currency": c.currency, "balance": balance, "nonce": c.nonce, "paid_at": NOW, "expires_at": NOW + 300,
        "replayed": replayed,
    }))
    .unwrap()
}

fn pairs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn fac(step: Step) -> FacilitatorRequest {
    match step {
        Step::Facilitator(r) => r,
        other => panic!("expected a facilitator request, got {other:?}"),
    }
}

fn proof_of(step: &Step) -> Option<String> {
    match step {
        Step::Send { headers, .. } => {
            headers.iter().find(|(k, _)| *k == crate::headers::PROOF).map(|(_, v)| v.clone())
        }
        other => panic!("expected a send, got {other:?}"),
    }
}

/// A call up to its payment request: start, 402.
fn to_payment(w: &World, payer: &Payer, path: &str, price: &str) -> (Call, FacilitatorRequest) {
    let mut call = payer.call("GET", &format!("{API}{path}"), true).unwrap();
    assert!(matches!(call.start(), Step::Send { .. }));
    let (h, b) = w.challenge("GET", path, price);
    let req = fac(call.response(402, pairs(&h), Some(&b), None).unwrap());
    (call, req)
}

/// Pay with a receipt and retry: returns the proof sent.
fn pay_ok(call: &mut Call, req: &FacilitatorRequest, balance: &str) -> String {
    assert_eq!((req.method, req.url.as_str()), ("POST", &*format!("{FAC}/v1/payments")));
    let paid = call.answer(200, &receipt_for(req.body.as_ref().unwrap(), balance, false)).unwrap();
    assert!(matches!(paid, Step::Paid(_)), "{paid:?}");
    let retry = call.resume().unwrap();
    proof_of(&retry).expect("the retry carries the proof")
}

#[test]
fn a_paid_call_step_by_step() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let mut call = payer.call("get", &format!("{API}/a?q=1"), true).unwrap();
    match call.start() {
        Step::Send { url, headers } => {
            assert_eq!(url.as_str(), "http://127.0.0.1:8080/a?q=1");
            assert_eq!(headers, vec![(crate::headers::PAYER, payer.address().to_string())], "the payer hint")
        }
        other => panic!("{other:?}"),
    }
    let (h, b) = w.challenge("GET", "/a", "0.01");
    let req = fac(call.response(402, pairs(&h), None, None).unwrap());
    assert_eq!(payer.reserved_total(), usd("0.01"), "counted from the moment it is signed");
    let proof = pay_ok(&mut call, &req, "0.99");
    assert!(proof.starts_with("tok-"));
    assert!(matches!(call.response(200, [], None, None).unwrap(), Step::Return));
    assert_eq!((payer.spent_total(), payer.reserved_total()), (usd("0.01"), usd("0")));
    assert_eq!(call.receipt().unwrap().balance, "0.99");
    drop(b);
}

#[test]
fn responses_that_are_not_vlexivo_402s_are_returned() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let mut call = payer.call("GET", &format!("{API}/free"), true).unwrap();
    call.start();
    assert!(matches!(call.response(200, [], None, None).unwrap(), Step::Return));
    let mut call = payer.call("GET", &format!("{API}/other"), true).unwrap();
    call.start();
    // No challenge header: the body is needed, and it is another scheme's.
    assert!(matches!(
        call.response(402, [], None, None).unwrap(),
        Step::ReadBody { limit: MAX_RESPONSE_BODY }
    ));
    assert!(matches!(call.response(402, [], Some(b"{\"x402Version\":2}"), None).unwrap(), Step::Return));
    // A challenge in the body only.
    let (_, b) = w.challenge("GET", "/other", "0.01");
    let mut call = payer.call("GET", &format!("{API}/other"), true).unwrap();
    call.start();
    assert!(matches!(call.response(402, [], None, None).unwrap(), Step::ReadBody { .. }));
    assert!(matches!(call.response(402, [], Some(&b), None).unwrap(), Step::Facilitator(_)));
}

#[test]
fn challenges_for_another_request_or_expired_are_refused() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (h, _) = w.challenge("GET", "/a", "0.01");
    for (method, url, code) in [
        ("POST", format!("{API}/a"), "challenge_mismatch"),
        ("GET", format!("{API}/b"), "challenge_mismatch"),
    ] {
        let mut call = payer.call(method, &url, true).unwrap();
        call.start();
        assert_eq!(call.response(402, pairs(&h), None, None).unwrap_err().code(), code, "{method} {url}");
    }
    w.clock.advance(301);
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    assert_eq!(call.response(402, pairs(&h), None, None).unwrap_err().code(), "challenge_expired");
    let mut call = payer.call("POST", &format!("{API}/a"), false).unwrap();
    call.start();
    assert_eq!(call.response(402, pairs(&h), None, None).unwrap_err().code(), "body_not_replayable");
    assert_eq!(payer.reserved_total(), usd("0"));
    assert_eq!(payer.call("GET", "/relative", true).unwrap_err().code(), "request_malformed");
}

/// Issue 15 item 8, payer side: a 402 relayed from another origin is refused.
#[test]
fn a_challenge_for_another_origin_is_refused() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (h, _) = w.challenge("GET", "/a", "0.01");
    for url in ["http://evil.example:8080/a", "https://127.0.0.1:8080/a", "http://127.0.0.1:8081/a"] {
        let mut call = payer.call("GET", url, true).unwrap();
        call.start();
        let e = call.response(402, pairs(&h), None, None).unwrap_err();
        assert_eq!(
            (e.code(), e.details()["reason"].as_str()),
            ("challenge_mismatch", Some("origin")),
            "{url}"
        );
    }
    // Same origin written differently: accepted.
    let mut call = payer.call("GET", "HTTP://127.0.0.1:8080/a", true).unwrap();
    call.start();
    assert!(matches!(call.response(402, pairs(&h), None, None).unwrap(), Step::Facilitator(_)));
    assert_eq!(payer.reserved_total(), usd("0.01"));
}

#[test]
fn a_redirect_moves_the_binding_to_where_the_request_ended() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let mut call = payer.call("GET", &format!("{API}/old"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/new", "0.01");
    let req = fac(call.response(402, pairs(&h), None, Some(&format!("{API}/new"))).unwrap());
    call.answer(200, &receipt_for(req.body.as_ref().unwrap(), "1", false)).unwrap();
    match call.resume().unwrap() {
        Step::Send { url, .. } => assert_eq!(url, format!("{API}/new")),
        other => panic!("{other:?}"),
    }
}

/// Issue 15 item 6, payer side: a challenge naming a facilitator the payer does not trust is
/// refused before anything is signed or sent.
#[test]
fn an_untrusted_facilitator_is_refused_before_anything_happens() {
    let w = World::with_facilitator("http://127.0.0.1:6666");
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/a", "0.003");
    let e = call.response(402, pairs(&h), None, None).unwrap_err();
    assert_eq!((e.code(), e.http_status()), ("facilitator_untrusted", 403));
    assert_eq!(e.details()["facilitator"], "http://127.0.0.1:6666");
    assert_eq!(payer.reserved_total(), usd("0"));
}

/// Issue 15 item 7: pinned, with auto top-up, a challenge naming another facilitator: no
/// balance query, no top-up there.
#[test]
fn auto_top_up_never_queries_an_untrusted_facilitator() {
    let w = World::with_facilitator("http://127.0.0.1:6666");
    let payer = w.payer(SpendingPolicy::default(), &[FAC], Some(AutoTopUp::new("1", "10").unwrap()));
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/a", "0.003");
    assert_eq!(call.response(402, pairs(&h), None, None).unwrap_err().code(), "facilitator_untrusted");
}

/// Issue 15 item 6/13, the attack: a facilitator that charges and answers 502. The payment
/// stays counted (in doubt), so a `maxTotal` of one price stops the second payment.
#[test]
fn a_payment_without_a_clear_answer_stays_counted() {
    let w = World::new();
    let policy = SpendingPolicy { max_total: Some(usd("0.003")), ..Default::default() };
    let payer = w.payer(policy, &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/a", "0.003");
    // 502: send the same signed payment once more.
    let again = fac(call.answer(502, b"bad gateway").unwrap());
    assert_eq!(again, req, "the very same signed payment");
    let e = call.answer(502, b"bad gateway").unwrap_err();
    assert_eq!((e.code(), e.http_status()), ("payment_in_doubt", 502));
    assert_eq!(e.details()["amount"], "0.003");
    drop(call);
    assert_eq!((payer.reserved_total(), payer.in_doubt_total()), (usd("0.003"), usd("0.003")));
    // The next call: the in-doubt payment is re-sent first (still unclear), then the budget
    // refuses: nothing more is paid.
    let mut call = payer.call("GET", &format!("{API}/b"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/b", "0.003");
    w.clock.advance(1);
    let resend = fac(call.response(402, pairs(&h), None, None).unwrap());
    assert_eq!(resend, req);
    let e = call.answer(502, b"bad gateway").unwrap_err();
    assert_eq!((e.code(), e.details()["limit"].as_str()), ("budget_exceeded", Some("total")));
    assert_eq!(payer.spent_total(), usd("0"));
    assert_eq!(payer.in_doubt_total(), usd("0.003"));
}

#[test]
fn every_kind_of_unclear_answer_is_in_doubt() {
    let w = World::new();
    let fresh = || w.payer(SpendingPolicy::default(), &[FAC], None);
    let unclear: [(u16, &[u8]); 6] = [
        (500, br#"{"error":"internal","message":"m"}"#),
        (504, b""),
        (302, b""),
        (200, b"{\"token\":1}"),
        (400, b"<html>"),
        (429, br#"{"error":"slow_down"}"#),
    ];
    for (status, body) in unclear {
        let payer = fresh();
        let (mut call, _) = to_payment(&w, &payer, "/u", "0.001");
        call.answer(status, body).unwrap();
        assert_eq!(call.answer(status, body).unwrap_err().code(), "payment_in_doubt", "{status}");
        assert_eq!(payer.in_doubt_total(), usd("0.001"));
    }
    // A connection lost after sending: in doubt too.
    let payer = fresh();
    let (mut call, _) = to_payment(&w, &payer, "/t", "0.001");
    call.transport_error(true, "timed out").unwrap();
    assert_eq!(call.transport_error(true, "reset").unwrap_err().code(), "payment_in_doubt");
    // The first send may have charged: a refused connection on the resend proves nothing.
    let payer = fresh();
    let (mut call, _) = to_payment(&w, &payer, "/t", "0.001");
    call.transport_error(true, "reset").unwrap();
    assert_eq!(call.transport_error(false, "refused").unwrap_err().code(), "payment_in_doubt");
    assert_eq!(payer.in_doubt_total(), usd("0.001"));
    // Refused at connect, never sent before: not charged.
    let payer = fresh();
    let (mut call, _) = to_payment(&w, &payer, "/t", "0.001");
    let e = call.transport_error(false, "connection refused").unwrap_err();
    assert_eq!(e.code(), "facilitator_unavailable");
    assert_eq!(payer.reserved_total(), usd("0"));
}

#[test]
fn clear_refusals_release_the_reservation() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, _) = to_payment(&w, &payer, "/a", "0.01");
    let body = br#"{"error":"insufficient_funds","message":"m","required":"0.01","balance":"0.004","currency":"usd"}"#;
    let e = call.answer(402, body).unwrap_err();
    assert_eq!(e.details()["required"], "0.01");
    let (mut call, _) = to_payment(&w, &payer, "/b", "0.01");
    assert_eq!(
        call.answer(401, br#"{"error":"signature_invalid"}"#).unwrap_err().code(),
        "signature_invalid"
    );
    assert_eq!(payer.reserved_total(), usd("0"));
}

/// Found by the fuzz target payer (fuzz/regressions/payer): a receipt whose token holds a byte
/// no header may carry went into the paid retry's `Vlexivo-Proof` header as it was.
#[test]
fn a_receipt_token_that_is_not_a_token_is_never_sent() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/a", "0.01");
    let mut receipt: serde_json::Value =
        serde_json::from_slice(&receipt_for(req.body.as_ref().unwrap(), "0.99", false)).unwrap();
    receipt["token"] = "tok\r\nX-Injected: 1".into();
    // Not a usable receipt: the payment stays in doubt (it may have been charged), nothing is sent.
    if let Ok(Step::Send { headers, .. }) = call.answer(200, &serde_json::to_vec(&receipt).unwrap()) {
        panic!("sent {headers:?}");
    }
    drop(call);
    assert_eq!(payer.in_doubt_total(), usd("0.01"));
}

#[test]
fn an_unclear_answer_then_a_receipt_pays_once() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/a", "0.01");
    let again = fac(call.transport_error(true, "timed out").unwrap());
    let proof = pay_ok(&mut call, &again, "0.99");
    assert!(!proof.is_empty());
    assert_eq!(again.body, req.body);
    assert_eq!((payer.spent_total(), payer.in_doubt_total()), (usd("0.01"), usd("0")));
}

/// A later call settles the in-doubt payment by re-sending it; a receipt means the proof was
/// bought and never served: the call for that resource uses it instead of paying again.
#[test]
fn in_doubt_payments_are_settled_by_the_next_call() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/a", "0.01");
    call.answer(502, b"").unwrap();
    call.answer(502, b"").unwrap_err();
    drop(call);
    w.clock.advance(1);
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/a", "0.01");
    let resend = fac(call.response(402, pairs(&h), None, None).unwrap());
    assert_eq!(resend, req);
    match call.answer(200, &receipt_for(req.body.as_ref().unwrap(), "0.99", true)).unwrap() {
        Step::Paid(e) => assert!(e.reconciled && e.receipt.replayed),
        other => panic!("{other:?}"),
    }
    // The proof that payment bought is this call's.
    let retry = call.resume().unwrap();
    assert!(proof_of(&retry).unwrap().starts_with("tok-"));
    assert!(matches!(call.response(200, [], None, None).unwrap(), Step::Return));
    assert_eq!((payer.spent_total(), payer.in_doubt_total()), (usd("0.01"), usd("0")));

    // Settled as not paid (a clear refusal): released, and this call pays.
    let (mut call, _) = to_payment(&w, &payer, "/b", "0.01");
    call.answer(502, b"").unwrap();
    call.answer(502, b"").unwrap_err();
    drop(call);
    w.clock.advance(1);
    let mut call = payer.call("GET", &format!("{API}/c"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/c", "0.01");
    fac(call.response(402, pairs(&h), None, None).unwrap());
    let body = br#"{"error":"insufficient_funds","required":"0.01","balance":"0","currency":"usd"}"#;
    let own = fac(call.answer(402, body).unwrap());
    assert_eq!(payer.in_doubt_total(), usd("0"));
    pay_ok(&mut call, &own, "1");
    assert_eq!(payer.spent_total(), usd("0.02"));
}

#[test]
fn in_doubt_payments_past_their_challenge_are_not_resent() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, _) = to_payment(&w, &payer, "/a", "0.01");
    call.answer(502, b"").unwrap();
    call.answer(502, b"").unwrap_err();
    drop(call);
    w.clock.advance(400);
    let (_call, req) = to_payment(&w, &payer, "/b", "0.01");
    assert!(req.body.as_ref().unwrap().contains(&payer.address().to_string()));
    assert_eq!(payer.in_doubt_total(), usd("0.01"), "still counted: its fate is unknown");
}

/// Issue 15 item 9: after a provider 5xx the proof is reused, in every client alike.
#[test]
fn a_proof_is_reused_after_a_5xx_instead_of_paying_again() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/flaky", "0.01");
    let proof = pay_ok(&mut call, &req, "0.99");
    assert!(matches!(call.response(500, [], None, None).unwrap(), Step::Return));
    // The next call to the same resource: the 402's challenge is answered with that proof.
    let mut call = payer.call("GET", &format!("{API}/flaky"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/flaky", "0.01");
    let retry = call.response(402, pairs(&h), None, None).unwrap();
    assert_eq!(proof_of(&retry).unwrap(), proof);
    assert!(matches!(call.response(200, [], None, None).unwrap(), Step::Return));
    assert_eq!(payer.spent_total(), usd("0.01"), "paid once");
    // It is gone now: the next call pays.
    let (_call, req) = to_payment(&w, &payer, "/flaky", "0.01");
    assert_eq!(req.url, format!("{FAC}/v1/payments"));

    // A reused proof the API refuses (already spent) is replaced by a payment.
    let (mut call, req) = to_payment(&w, &payer, "/spent", "0.01");
    pay_ok(&mut call, &req, "0.98");
    call.response(503, [], None, None).unwrap();
    let mut call = payer.call("GET", &format!("{API}/spent"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/spent", "0.01");
    assert!(proof_of(&call.response(402, pairs(&h), None, None).unwrap()).is_some());
    let (h2, b2) = w.challenge("GET", "/spent", "0.01");
    let _ = b2;
    let pay = fac(call.response(402, pairs(&h2), None, None).unwrap());
    pay_ok(&mut call, &pay, "0.97");

    // A reused proof answered 409 (spent meanwhile): asked again unpaid, then paid.
    let (mut call, req) = to_payment(&w, &payer, "/spent", "0.01");
    pay_ok(&mut call, &req, "0.97");
    call.response(502, [], None, None).unwrap();
    let mut call = payer.call("GET", &format!("{API}/spent"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/spent", "0.01");
    assert!(proof_of(&call.response(402, pairs(&h), None, None).unwrap()).is_some());
    let unpaid = call.response(409, [], None, None).unwrap();
    assert_eq!(proof_of(&unpaid), None);
    let (h, _) = w.challenge("GET", "/spent", "0.01");
    let pay = fac(call.response(402, pairs(&h), None, None).unwrap());
    pay_ok(&mut call, &pay, "0.965");

    // Not reused: a higher price, another path, or too close to its expiry.
    let (mut call, req) = to_payment(&w, &payer, "/x", "0.01");
    pay_ok(&mut call, &req, "0.96");
    call.response(500, [], None, None).unwrap();
    let (_c, req) = to_payment(&w, &payer, "/x", "0.02");
    assert!(req.body.is_some(), "a dearer call pays");
    let (mut call, req) = to_payment(&w, &payer, "/y", "0.01");
    pay_ok(&mut call, &req, "0.95");
    call.response(500, [], None, None).unwrap();
    w.clock.advance(296);
    let (_c, req) = to_payment(&w, &payer, "/y", "0.01");
    assert!(req.body.is_some(), "a proof about to expire is not reused");
}

#[test]
fn a_failed_retry_keeps_its_proof() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/a", "0.01");
    let proof = pay_ok(&mut call, &req, "0.99");
    call.request_failed();
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/a", "0.01");
    assert_eq!(proof_of(&call.response(402, pairs(&h), None, None).unwrap()).unwrap(), proof);
}

#[test]
fn auto_top_up_queries_tops_up_once_and_pays() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], Some(AutoTopUp::new("1.00", "10.00").unwrap()));
    let mut a = payer.call("GET", &format!("{API}/a"), true).unwrap();
    let mut b = payer.call("GET", &format!("{API}/b"), true).unwrap();
    a.start();
    b.start();
    let (ha, _) = w.challenge("GET", "/a", "0.001");
    let (hb, _) = w.challenge("GET", "/b", "0.001");
    let q = fac(a.response(402, pairs(&ha), None, None).unwrap());
    assert_eq!((q.method, q.url.clone()), ("GET", format!("{FAC}/v1/wallets/{}", payer.address())));
    // b waits while a holds the top-up lease.
    assert!(matches!(b.response(402, pairs(&hb), None, None).unwrap(), Step::Wait { .. }));
    let top = fac(a.answer(200, br#"{"address":"x","balance":"0","currency":"usd"}"#).unwrap());
    assert_eq!(top.url, format!("{FAC}/v1/wallets/{}/topup", payer.address()));
    assert_eq!(top.body.as_deref(), Some(r#"{"amount":"10"}"#));
    assert!(matches!(b.resume().unwrap(), Step::Wait { .. }));
    let receipt = br#"{"address":"x","amount":"10","balance":"10","currency":"usd","tx_hash":"0x2"}"#;
    let pay_a = fac(a.answer(200, receipt).unwrap());
    assert_eq!(a.topped_up(), Some(usd("10")));
    // b now knows the balance: no query, no top-up, straight to paying.
    let pay_b = fac(b.resume().unwrap());
    assert!(pay_a.url.ends_with("/v1/payments") && pay_b.url.ends_with("/v1/payments"));
    match a.answer(200, &receipt_for(pay_a.body.as_ref().unwrap(), "9.999", false)).unwrap() {
        Step::Paid(e) => assert_eq!(e.topped_up, Some(usd("10"))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn auto_top_up_is_capped_by_what_the_budget_could_spend() {
    let w = World::new();
    let policy = SpendingPolicy { max_total: Some(usd("0.5")), ..Default::default() };
    let payer = w.payer(policy, &[FAC], Some(AutoTopUp::new("1.00", "10.00").unwrap()));
    let (mut call, q) = to_payment(&w, &payer, "/a", "0.01");
    assert_eq!(q.method, "GET");
    let top = fac(call.answer(200, br#"{"balance":"0"}"#).unwrap());
    assert_eq!(top.body.as_deref(), Some(r#"{"amount":"0.5"}"#));
    // And a call the budget refuses moves no money at all.
    let policy = SpendingPolicy { max_per_call: Some(usd("0.001")), ..Default::default() };
    let payer = w.payer(policy, &[FAC], Some(AutoTopUp::new("1.00", "10.00").unwrap()));
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let (h, _) = w.challenge("GET", "/a", "0.01");
    assert_eq!(call.response(402, pairs(&h), None, None).unwrap_err().code(), "budget_exceeded");
}

#[test]
fn insufficient_funds_with_auto_top_up_tops_up_and_pays_the_same_payment_once_more() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], Some(AutoTopUp::new("1.00", "10.00").unwrap()));
    let (mut call, _) = to_payment(&w, &payer, "/a", "0.01");
    let pay = fac(call.answer(200, br#"{"balance":"5"}"#).unwrap());
    let funds = br#"{"error":"insufficient_funds","required":"0.01","balance":"0","currency":"usd"}"#;
    let top = fac(call.answer(402, funds).unwrap());
    assert!(top.url.ends_with("/topup"));
    let again = fac(call
        .answer(200, br#"{"address":"x","amount":"10","balance":"10","currency":"usd","tx_hash":"0x2"}"#)
        .unwrap());
    assert_eq!(again.body, pay.body);
    // Refused again: no third attempt.
    assert_eq!(call.answer(402, funds).unwrap_err().code(), "insufficient_funds");
    assert_eq!(payer.reserved_total(), usd("0"));
}

#[test]
fn a_refused_top_up_is_fatal_only_when_the_balance_cannot_pay() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], Some(AutoTopUp::new("1.00", "10.00").unwrap()));
    let (mut call, _) = to_payment(&w, &payer, "/a", "0.01");
    fac(call.answer(200, br#"{"balance":"0.5"}"#).unwrap());
    let capped = br#"{"error":"top_up_refused","message":"faucet cap"}"#;
    assert!(fac(call.answer(403, capped).unwrap()).url.ends_with("/v1/payments"));
    let (mut call, _) = to_payment(&w, &payer, "/b", "0.01");
    fac(call.answer(200, br#"{"balance":"0"}"#).unwrap());
    assert_eq!(call.answer(403, capped).unwrap_err().code(), "top_up_refused");
    assert_eq!(payer.reserved_total(), usd("0.01"), "only the first call's payment, in flight");
}

#[test]
fn a_call_dropped_mid_payment_leaves_it_in_doubt() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (call, _) = to_payment(&w, &payer, "/a", "0.01");
    drop(call);
    assert_eq!(payer.in_doubt_total(), usd("0.01"));
    // Dropped before signing: nothing held.
    let w2 = World::new();
    let payer = w2.payer(SpendingPolicy::default(), &[FAC], Some(AutoTopUp::new("1", "10").unwrap()));
    let (call, q) = to_payment(&w2, &payer, "/a", "0.01");
    assert_eq!(q.method, "GET");
    drop(call);
    assert_eq!((payer.reserved_total(), payer.in_doubt_total()), (usd("0"), usd("0")));
    // ... and the lease it held is free again.
    let (_call, q) = to_payment(&w2, &payer, "/b", "0.01");
    assert_eq!(q.method, "GET");
}

#[test]
fn a_parsed_challenge_enters_the_flow() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (h, b) = w.challenge("GET", "/a", "0.01");
    let pr = parse_payment_required(402, pairs(&h), &b).unwrap();
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    let req = fac(call.challenge(pr).unwrap());
    pay_ok(&mut call, &req, "1");
}

#[test]
fn quotes_sign_and_reserve_nothing() {
    let w = World::new();
    let payer =
        w.payer(SpendingPolicy { max_per_call: Some(usd("0.01")), ..Default::default() }, &[FAC], None);
    let (h, b) = w.challenge("GET", "/a", "0.01");
    let pr = parse_payment_required(402, pairs(&h), &b).unwrap();
    let q = payer.quote(&pr, "GET", &format!("{API}/a")).unwrap();
    assert_eq!(
        (q.pay_url.as_str(), q.host.as_str()),
        ("http://127.0.0.1:4020/v1/payments", "127.0.0.1:8080")
    );
    assert_eq!(payer.reserved_total(), usd("0"));
    let other = w.payer(SpendingPolicy::default(), &["http://127.0.0.1:9"], None);
    assert_eq!(other.quote(&pr, "GET", &format!("{API}/a")).unwrap_err().code(), "facilitator_untrusted");
}

#[test]
fn wallet_operations_go_to_the_primary_facilitator() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &["http://127.0.0.1:4021/", FAC], None);
    let r = payer.balance_request(None).unwrap();
    assert_eq!(r.url, format!("http://127.0.0.1:4021/v1/wallets/{}", payer.address()));
    assert_eq!(payer.read_balance(&r, 200, br#"{"balance":"1.5","currency":"usd"}"#).unwrap(), usd("1.5"));
    assert_eq!(payer.read_balance(&r, 502, b"").unwrap_err().code(), "facilitator_unavailable");
    assert_eq!(payer.read_balance(&r, 200, b"[]").unwrap_err().code(), "facilitator_error");
    let t = payer.top_up_request(&usd("2"), Some("http://other:1/")).unwrap();
    assert_eq!(
        (t.url.as_str(), t.body.as_deref()),
        (&*format!("http://other:1/v1/wallets/{}/topup", payer.address()), Some(r#"{"amount":"2"}"#))
    );
    assert_eq!(payer.top_up_request(&usd("0"), None).unwrap_err().code(), "amount_zero");
    let e = payer.read_top_up(&t, 403, br#"{"error":"top_up_refused","message":"cap"}"#).unwrap_err();
    assert_eq!(e.code(), "top_up_refused");
}

#[test]
fn the_payer_hint_is_sent_unless_turned_off_and_only_on_the_unpaid_request() {
    let w = World::new();
    let mut quiet = w.payer(SpendingPolicy::default(), &[FAC], None);
    let mut config = PayerConfig::new(TrustedFacilitators::new(None, &[FAC.to_string()], None).unwrap());
    config.payer_hint = false;
    quiet = Payer::new(quiet.wallet().clone(), config, w.clock.clone());
    let mut call = quiet.call("GET", &format!("{API}/a"), true).unwrap();
    assert!(matches!(call.start(), Step::Send { headers, .. } if headers.is_empty()));

    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let (mut call, req) = to_payment(&w, &payer, "/a", "0.01");
    let _ = pay_ok(&mut call, &req, "0.99");
    // The retry carries the proof alone (checked by pay_ok's proof_of); the hint went first.
}

#[test]
fn a_challenge_priced_for_another_wallet_is_refused_before_anything_is_signed() {
    let w = World::new();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], None);
    let other = crate::wallet::Wallet::generate(&SeededEntropy::new(99)).address().to_checksum();
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let mut info = RequestInfo::new("GET", "http", Some("127.0.0.1:8080"), "/a");
    info.payer = Some(&other);
    let rej = w.paywall.challenge(&info, &usd("0.005"), "per-call", NOW, &w.rng).unwrap();
    let h: Vec<(String, String)> = rej.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let e = call.response(402, pairs(&h), Some(rej.body.as_bytes()), None).unwrap_err();
    assert_eq!((e.code(), e.to_string().contains("payer")), ("challenge_mismatch", true), "{e}");
    assert_eq!((payer.reserved_total(), payer.spent_total()), (usd("0"), usd("0")));

    // Its own address: paid as usual.
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let own = payer.address().to_string();
    info.payer = Some(&own);
    let rej = w.paywall.challenge(&info, &usd("0.005"), "per-call", NOW, &w.rng).unwrap();
    let h: Vec<(String, String)> = rej.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let req = fac(call.response(402, pairs(&h), Some(rej.body.as_bytes()), None).unwrap());
    let _ = pay_ok(&mut call, &req, "0.99");
}

/// A live top-up handed to the node but not mined by its deadline may still move the tokens:
/// the top-up cap counts it, so the next call cannot add more than `max_total` in all.
#[test]
fn a_live_top_up_in_doubt_counts_against_the_top_up_cap() {
    use crate::eip3009::LiveTerms;
    use crate::wallet::Address;
    let rng = SeededEntropy::new(11);
    let mut cfg = PaywallConfig::new(generate_secret(Mode::Live, &rng));
    cfg.facilitator_url = FAC.to_string();
    cfg.live = Some(LiveTerms {
        network: "eip155:31337".into(),
        asset: Address::parse("0x5FbDB2315678afecb367f032d93F642f64180aa3").unwrap(),
        asset_name: "USD Coin".into(),
        asset_version: "2".into(),
        pay_to: Address::parse("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap(),
    });
    let w = World { paywall: Paywall::new(cfg).unwrap(), rng, clock: Arc::new(FixedClock::new(NOW)) };
    let funding = Funding::new(&format!("0x{}", "11".repeat(32)), "http://127.0.0.1:8545").unwrap();
    let auto = AutoTopUp::new("0", "1").unwrap().with_funding(funding).with_max_total("1.5").unwrap();
    let payer = w.payer(SpendingPolicy::default(), &[FAC], Some(auto));
    let rpc_ok = |id: u64, result: &str| serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
    let prepared = serde_json::to_vec(&serde_json::json!([
        rpc_ok(1, "0x7a69"),
        rpc_ok(2, "0x0"),
        rpc_ok(3, "0x3b9aca00"),
        rpc_ok(4, "0xde0b6b3a7640000"),
        rpc_ok(5, "0x5f5e100"),
        rpc_ok(6, "0xc350"),
    ]))
    .unwrap();
    let no_receipt = serde_json::to_vec(&serde_json::json!([
        {"jsonrpc": "2.0", "id": 1, "result": null},
        rpc_ok(2, "0x10"),
    ]))
    .unwrap();
    // The first call: balance 0 → a top-up of 1 is sent and never mined by the deadline.
    let mut call = payer.call("GET", &format!("{API}/a"), true).unwrap();
    call.start();
    let (h, b) = w.challenge("GET", "/a", "0.01");
    let mut step = call.response(402, pairs(&h), Some(&b), None).unwrap();
    if fac(step.clone()).url.contains("/v1/wallets/") {
        step = call.answer(200, br#"{"balance":"0","currency":"usd"}"#).unwrap();
    }
    assert!(fac(step).url.starts_with("http://127.0.0.1:8545"), "the funding wallet's node");
    let sent = fac(call.answer(200, &prepared).unwrap());
    assert!(sent.body.unwrap().contains("eth_sendRawTransaction"));
    let mut step =
        call.answer(200, br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"already known"}}"#);
    let mut polls = 0;
    let e = loop {
        match step {
            Ok(Step::Wait { .. }) => {
                w.clock.advance(30);
                polls += 1;
                assert!(polls < 10, "the deadline never came");
                let poll = fac(call.resume().unwrap());
                assert!(poll.body.unwrap().contains("eth_getTransactionReceipt"));
                step = call.answer(200, &no_receipt);
            }
            Ok(other) => panic!("expected a wait, got {other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), "top_up_refused", "{e}");
    assert_eq!(payer.topped_up_total(), usd("1"), "the transfer in doubt counts");
    // The second call may add only what is left under the cap: 0.5, not another 1.
    let mut call = payer.call("GET", &format!("{API}/b"), true).unwrap();
    call.start();
    let (h, b) = w.challenge("GET", "/b", "0.01");
    let mut step = call.response(402, pairs(&h), Some(&b), None).unwrap();
    if fac(step.clone()).url.contains("/v1/wallets/") {
        step = call.answer(200, br#"{"balance":"0","currency":"usd"}"#).unwrap();
    }
    assert!(fac(step).url.starts_with("http://127.0.0.1:8545"));
    let sent = fac(call.answer(200, &prepared).unwrap());
    let raw = sent.body.unwrap();
    // transfer(payer, 0.5 USDC = 500000 = 0x7a120) in the signed transaction's data.
    assert!(raw.contains("000000000000000000000000000000000000000000000000000000000007a120"), "{raw}");
}
