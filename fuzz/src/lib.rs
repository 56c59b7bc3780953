//! What the fuzz targets share: the provider and payer of `tests/vectors` (so the seed corpus,
//! made from the same files, starts on inputs that pass the MAC and signature checks and the
//! fuzzer mutates from there), and a splitter that turns one input into several fields.

use serde_json::Value;
use std::sync::OnceLock;
use vlexivo_core::keys::ProviderKeys;
use vlexivo_core::token::{TokenVerifier, VerifierConfig};

/// Fields of a structured input are separated by this byte (the seed script writes them so).
pub const SEP: u8 = 0;

/// The input's fields: `data` split at [`SEP`], missing fields empty.
pub fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut parts = data.splitn(N, |&b| b == SEP);
    for slot in &mut out {
        match parts.next() {
            Some(p) => *slot = p,
            None => break,
        }
    }
    out
}

/// A field as text (lossy: the fuzzer's bytes need not be UTF-8, the parsers take `&str`).
pub fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn vectors(name: &str) -> &'static Value {
    static PAYWALL: OnceLock<Value> = OnceLock::new();
    static CLIENT: OnceLock<Value> = OnceLock::new();
    let (cell, text) = match name {
        "paywall" => (&PAYWALL, include_str!("../../tests/vectors/paywall.json")),
        "client" => (&CLIENT, include_str!("../../tests/vectors/client.json")),
        _ => unreachable!("no vector file {name}"),
    };
    cell.get_or_init(|| serde_json::from_str(text).expect("vector file is JSON"))
}

/// The provider of the paywall and challenge vectors.
pub fn api_secret() -> &'static str {
    vectors("paywall")["api_secret"].as_str().expect("api_secret")
}

pub fn provider_keys() -> &'static ProviderKeys {
    static KEYS: OnceLock<ProviderKeys> = OnceLock::new();
    KEYS.get_or_init(|| ProviderKeys::from_secret(api_secret()).expect("vector api_secret"))
}

/// The vectors' provider verifying tokens: HS256 under its key, and EdDSA under the vectors'
/// JWKS when `eddsa`.
pub fn verifier(eddsa: bool) -> TokenVerifier {
    let keys = provider_keys();
    let mut cfg = VerifierConfig::new(keys.account.clone(), keys.mode.as_str());
    cfg.hs256_key = Some(keys.token_hs256);
    cfg.jwks = eddsa.then(jwks);
    TokenVerifier::new(cfg).expect("verifier")
}

/// The facilitator's EdDSA keys of the paywall vectors.
pub fn jwks() -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(vectors("paywall")["jwks"].clone()).expect("vector JWKS")
}

pub fn paywall_str(key: &str) -> &'static str {
    vectors("paywall")[key].as_str().expect("paywall vector field")
}

/// The payer's key of the client vectors.
pub fn payer_key() -> &'static str {
    vectors("client")["private_key"].as_str().expect("private_key")
}

/// The time the vectors are made at.
pub const NOW: u64 = 1_800_000_000;

/// An HTTP header value must be visible ASCII, space or tab (RFC 9110 §5.5): anything else
/// produced from attacker input is header injection or a value the HTTP library refuses.
pub fn assert_header_value(name: &str, v: &str) {
    assert!(
        v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
        "header {name} would carry a forbidden byte: {v:?}"
    );
}
