//! Every challenge a paywall issues is one its payers and the facilitator decode: a request
//! whose challenge would be larger than `MAX_CHALLENGE_BYTES` is refused (431
//! `challenge_too_large`), not sent a challenge nobody can pay. Found by the `payer_hint` fuzz
//! target: a path well under `MAX_PATH_BYTES` whose bytes JSON escapes (a control byte is six
//! characters; ASGI hands paths percent-decoded, so `%00` arrives as one).

use vlexivo_core::challenge::{Challenge, MAX_CHALLENGE_BYTES, MAX_PATH_BYTES};
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::error::Error;
use vlexivo_core::keys::{Mode, generate_secret};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::{Currency, Money};

const NOW: u64 = 1_700_000_000;

fn request(path: &str) -> RequestInfo<'_> {
    RequestInfo { method: "GET", path, scheme: "https", host: Some("api.test"), body: None, payer: None }
}

#[test]
fn a_challenge_too_large_to_decode_is_never_issued() {
    let pw =
        Paywall::new(PaywallConfig::new(generate_secret(Mode::Sandbox, &SeededEntropy::new(3)))).unwrap();
    let price = Money::parse("0.001", Currency::Usd).unwrap();
    let entropy = SeededEntropy::new(1);
    let escaped = format!("/a{}", "\u{0}".repeat(600));
    let quoted = format!("/a{}", "\"".repeat(MAX_PATH_BYTES - 2));
    for path in [escaped.as_str(), quoted.as_str()] {
        assert!(path.len() <= MAX_PATH_BYTES);
        let e = pw.challenge(&request(path), &price, "per-call", NOW, &entropy).unwrap_err();
        assert_eq!(e, Error::ChallengeTooLarge { limit: MAX_CHALLENGE_BYTES });
        let r = pw.reject(&Error::TokenMissing, &request(path), Some(&price), "per-call", NOW, &entropy);
        assert_eq!((r.status, r.code), (431, "challenge_too_large"));
    }
    // Up to the limit, what is issued decodes.
    for n in [1, 100, 400, 1000, MAX_PATH_BYTES - 2] {
        let path = format!("/a{}", "b".repeat(n));
        let r = pw.challenge(&request(&path), &price, "per-call", NOW, &entropy).unwrap();
        let encoded = &r.headers.iter().find(|(k, _)| *k == vlexivo_core::headers::CHALLENGE).unwrap().1;
        assert_eq!(Challenge::decode(encoded).unwrap().path, path);
    }
}
