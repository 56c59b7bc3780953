//! The `Vlexivo-Payer` header (pricing by payer) on the provider's side: the hint core reads
//! (an address in EIP-55 form, or nothing: a malformed hint is never an error), who a request
//! is priced for given a proof and a hint, the challenge made for a hinted payer (the payer it
//! names is under the MAC), and the facilitator's rule that only that payer may pay it.
#![no_main]
use std::sync::OnceLock;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::payer_pricing::{check_payer, payer_hint};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::wallet::{Address, Wallet};
use vlexivo_core::{Currency, Money};
use vlexivo_fuzz::{NOW, api_secret, assert_header_value, jwks, payer_key, paywall_str, provider_keys};

fn paywall() -> &'static Paywall {
    static P: OnceLock<Paywall> = OnceLock::new();
    P.get_or_init(|| {
        let mut cfg = PaywallConfig::new(api_secret());
        cfg.facilitator_url = paywall_str("facilitator_url").into();
        cfg.origin = Some(paywall_str("origin").into());
        cfg.jwks = Some(jwks());
        Paywall::new(cfg).expect("paywall")
    })
}

fn vector_payer() -> &'static Address {
    static A: OnceLock<Address> = OnceLock::new();
    A.get_or_init(|| Wallet::from_hex(payer_key()).expect("vector key").address())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [hint, proof, path] = vlexivo_fuzz::fields::<3>(data);
    let (hint, proof, path) = (vlexivo_fuzz::text(hint), vlexivo_fuzz::text(proof), vlexivo_fuzz::text(path));

    let read = payer_hint(Some(&hint));
    if let Some(a) = &read {
        // Only ever a well-formed EIP-55 address, and reading it again changes nothing.
        assert_eq!(a.len(), 42);
        assert_eq!(&Address::parse(a).expect("an address").to_checksum(), a);
        assert_eq!(payer_hint(Some(a)).as_ref(), Some(a));
        assert_eq!(payer_hint(Some(&a.to_ascii_lowercase())).as_ref(), Some(a));
    }

    let pw = paywall();
    let proof = (!proof.is_empty()).then_some(&*proof);
    match pw.priced_payer(proof, Some(&hint), NOW) {
        Some(p) if p.proven => assert!(proof.is_some(), "proven without a proof"),
        Some(p) => assert_eq!(Some(&p.address), read.as_ref(), "a hint read two ways"),
        None => assert!(read.is_none(), "a good hint ignored"),
    }

    let req = RequestInfo {
        method: "GET",
        path: if path.starts_with('/') { &path } else { "/api/v1/inference" },
        scheme: "https",
        host: None,
        body: None,
        payer: Some(&hint),
    };
    let price = Money::parse("0.001", Currency::Usd).expect("price");
    let Ok(r) = pw.challenge(&req, &price, "per-call", NOW, &SeededEntropy::new(1)) else { return };
    for (name, value) in &r.headers {
        assert_header_value(name, value);
    }
    let encoded =
        &r.headers.iter().find(|(n, _)| *n == vlexivo_core::headers::CHALLENGE).expect("challenge").1;
    let c = Challenge::decode(encoded).expect("our own challenge decodes");
    c.verify_mac(&provider_keys().challenge_mac).expect("our own MAC");
    assert_eq!(c.payer, read, "the challenge names the hinted payer, or nobody");
    // The facilitator lets the named payer pay it, and nobody else.
    if let Some(named) = &c.payer {
        check_payer(Some(named), &Address::parse(named).expect("address")).expect("the named payer pays");
        let other = vector_payer();
        assert_eq!(check_payer(Some(named), other).is_ok(), &other.to_checksum() == named);
    } else {
        check_payer(None, vector_payer()).expect("anyone pays an unnamed challenge");
    }
});
