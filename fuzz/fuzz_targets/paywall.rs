//! The provider's side of a request, every header an attacker sends: method, path, `Host`,
//! `Vlexivo-Proof` and body, through `Paywall::verify` (with and without a configured origin,
//! binding bodies or not), then what the provider answers: a receipt, or a refusal with a fresh
//! challenge. Every header value written back must be a legal one (no CR/LF or control bytes),
//! every body JSON, and `check` must agree with `verify`.
#![no_main]
use std::sync::OnceLock;
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::store::memory::MemoryStore;
use vlexivo_core::{Currency, Money};
use vlexivo_fuzz::{NOW, api_secret, assert_header_value, jwks, paywall_str};

fn paywalls() -> &'static [Paywall; 2] {
    static P: OnceLock<[Paywall; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let mut fixed = PaywallConfig::new(api_secret());
        fixed.facilitator_url = paywall_str("facilitator_url").into();
        fixed.origin = Some(paywall_str("origin").into());
        fixed.jwks = Some(jwks());
        let mut open = fixed.clone();
        open.origin = None;
        open.bind_body = true;
        [Paywall::new(fixed).expect("paywall"), Paywall::new(open).expect("paywall")]
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [flags, method, path, host, proof, price, body, now] = vlexivo_fuzz::fields::<8>(data);
    let flags = flags.first().copied().unwrap_or(0);
    let pw = &paywalls()[usize::from(flags & 1)];
    let (method, path, host, proof) = (
        vlexivo_fuzz::text(method),
        vlexivo_fuzz::text(path),
        vlexivo_fuzz::text(host),
        vlexivo_fuzz::text(proof),
    );
    let scheme = if flags & 2 == 0 { "https" } else { "http" };
    let req = RequestInfo {
        method: &method,
        path: &path,
        scheme,
        host: (flags & 4 == 0).then_some(&*host),
        body: (flags & 8 == 0).then_some(body),
        payer: None,
    };
    let price = Money::parse(&vlexivo_fuzz::text(price), Currency::Usd)
        .ok()
        .filter(|p| !p.is_zero())
        .unwrap_or_else(|| Money::parse("0.001", Currency::Usd).expect("price"));
    let now = NOW + now.iter().map(|&b| u64::from(b)).sum::<u64>();
    let proof = (flags & 16 == 0).then_some(&*proof);
    let entropy = SeededEntropy::new(u64::from(flags));

    let store = MemoryStore::new();
    let checked = pw.check(proof, &req, &price, now);
    match pw.verify(proof, &req, &price, now, &store) {
        Ok(facts) => {
            assert!(checked.is_ok(), "verify accepted what check refused: {checked:?}");
            assert_header_value("Vlexivo-Receipt", &Paywall::receipt(&facts));
            Paywall::release_handle(&facts.store_key, &store).expect("a fresh lease releases");
        }
        Err(e) => {
            assert_eq!(checked.err().map(|c| c.code()), Some(e.code()), "check and verify disagree");
            let r = pw.reject(&e, &req, Some(&price), "per-call", now, &entropy);
            for (name, value) in &r.headers {
                assert_header_value(name, value);
            }
            serde_json::from_str::<serde_json::Value>(&r.body).expect("a refusal's body is JSON");
            assert!(r.status >= 400, "{}", r.status);
        }
    }
    if let Ok(r) = pw.challenge(&req, &price, "per-call", now, &entropy) {
        for (name, value) in &r.headers {
            assert_header_value(name, value);
        }
        assert_eq!(r.status, 402);
    }
});
