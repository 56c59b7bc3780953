//! A proof token as a provider receives it, under a verifier that takes both algorithms
//! (HS256 under the vectors' provider key, EdDSA under their JWKS): size limit, segments,
//! header, signature, claims, time, then what the token buys. Forging is out of reach, so the
//! target looks for panics and for tokens accepted in one call and refused in the other.
#![no_main]
use std::sync::OnceLock;
use vlexivo_core::token::{Expectation, TokenVerifier};
use vlexivo_core::{Currency, Money};
use vlexivo_fuzz::NOW;

fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| vlexivo_fuzz::verifier(true))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [token, now, resource, price] = vlexivo_fuzz::fields::<4>(data);
    let token = vlexivo_fuzz::text(token);
    let now = match <[u8; 8]>::try_from(now) {
        Ok(b) => u64::from_le_bytes(b),
        Err(_) => NOW + now.len() as u64,
    };
    let resource = vlexivo_fuzz::text(resource);
    let price = Money::parse(&vlexivo_fuzz::text(price), Currency::Usd)
        .unwrap_or_else(|_| Money::parse("0.001", Currency::Usd).expect("price"));
    let v = verifier();
    let bare = v.verify_signature_and_time(&token, now);
    let expect = Expectation { resource: &resource, body_sha256: None, price: &price };
    let full = v.verify(&token, &expect, now);
    if let Ok(claims) = &full {
        assert_eq!(
            bare.as_ref().ok(),
            Some(claims),
            "verify accepted what verify_signature_and_time refused"
        );
        assert_eq!(claims.res, resource);
    }
    if let Err(e) = &bare {
        assert_eq!(full.as_ref().err().map(|f| f.code()), Some(e.code()));
    }
});
