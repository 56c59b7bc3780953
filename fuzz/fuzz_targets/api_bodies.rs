//! The facilitator's other JSON request bodies as they arrive, through the checks core makes
//! before anything is written: `POST /v1/providers` (onboarding, on a sandbox and on a live
//! facilitator, with either default token algorithm), `POST /v1/providers/me/rotate` and
//! `POST /v1/wallets/{address}/topup`. What passes must be what the rules promise; what fails
//! must fail with one of the codes the API documents for that body, as a 400.
#![no_main]
use vlexivo_core::Result;
use vlexivo_core::api_bodies::{
    CreateProviderRequest, MAX_NAME_CHARS, MAX_ROTATION_OVERLAP_SECS, RotateRequest, TopUpRequest, from_json,
    from_optional_json,
};
use vlexivo_core::keys::Mode;
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::token::TokenAlg;

fn refused<T>(r: &Result<T>, codes: &[&str]) {
    if let Err(e) = r {
        assert!(codes.contains(&e.code()), "unexpected {:?}: {e}", e.code());
        assert_eq!(e.http_status(), 400, "{e}");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let create = from_optional_json::<CreateProviderRequest>(data);
    refused(&create, &["request_malformed"]);
    if let Ok(req) = create {
        for facilitator in [Mode::Sandbox, Mode::Live] {
            for default_alg in [TokenAlg::Hs256, TokenAlg::EdDsa] {
                let checked = req.clone().check(facilitator, default_alg);
                refused(&checked, &["request_malformed", "mode_mismatch", "address_invalid"]);
                let Ok(p) = checked else { continue };
                assert_eq!(p.mode, facilitator);
                assert_eq!(p.payout.is_some(), facilitator == Mode::Live);
                match req.token_alg.as_deref() {
                    None => assert_eq!(p.token_alg, default_alg),
                    Some(a) => assert!(a.eq_ignore_ascii_case(p.token_alg.as_str()), "{a:?}"),
                }
                if let (Some(kept), Some(given)) = (&p.name, &req.name) {
                    assert!(kept.chars().count() <= MAX_NAME_CHARS && given.starts_with(kept.as_str()));
                }
            }
        }
    }

    let rotate = from_optional_json::<RotateRequest>(data);
    refused(&rotate, &["request_malformed"]);
    if let Ok(r) = rotate {
        let overlap = r.overlap_secs();
        refused(&overlap, &["request_malformed"]);
        if let Ok(s) = overlap {
            assert!(s <= MAX_ROTATION_OVERLAP_SECS);
        }
    }

    if let Ok(t) = from_json::<TopUpRequest>(data) {
        let amount = t.amount();
        refused(
            &amount,
            &[
                "request_malformed",
                "amount_malformed",
                "amount_negative",
                "amount_zero",
                "amount_precision",
                "amount_too_large",
                "amount_not_finite",
            ],
        );
        if let Ok(m) = amount {
            assert!(!m.is_zero());
            // What is credited is what the receipt says: the canonical form reads back the same.
            assert_eq!(Money::parse(&m.to_string(), Currency::Usd).expect("canonical"), m);
            assert_eq!(Money::from_atomic(m.to_atomic(), Currency::Usd).expect("atomic"), m);
        }
    }
});
