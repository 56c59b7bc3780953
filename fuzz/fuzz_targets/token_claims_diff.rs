//! Differential: the fast fixed-layout reader of HS256 claims against serde. Any claims text,
//! signed with the provider's HS256 key under the issuer's exact header (the fast path's
//! header), must verify to exactly what serde reads from it, or fail where serde fails.
#![no_main]
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use std::sync::OnceLock;
use vlexivo_core::Error;
use vlexivo_core::token::{ProofClaims, SigningKey, TOKEN_TTL_SECS, TokenIssuer, TokenVerifier};
use vlexivo_fuzz::provider_keys;

struct Keys {
    verifier: TokenVerifier,
    /// The header segment the issuer writes on every HS256 token.
    header: String,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let verifier = vlexivo_fuzz::verifier(false);
        let issuer = TokenIssuer::new(SigningKey::Hs256(provider_keys().token_hs256)).expect("issuer");
        let claims = ProofClaims {
            jti: "j".into(),
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            txh: "t".into(),
            amt: "1".into(),
            cur: "usd".into(),
            res: "r".into(),
            bdy: None,
            mode: "sandbox".into(),
            net: "sandbox".into(),
            iat: 0,
            exp: 1,
        };
        let token = issuer.issue(&claims).expect("issue");
        let header = token.split('.').next().expect("header").to_string();
        Keys { verifier, header }
    })
}

libfuzzer_sys::fuzz_target!(|payload: &[u8]| {
    let k = keys();
    let signed = format!("{}.{}", k.header, URL_SAFE_NO_PAD.encode(payload));
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&provider_keys().token_hs256).expect("key");
    mac.update(signed.as_bytes());
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    if token.len() > vlexivo_core::token::MAX_TOKEN_BYTES {
        return;
    }
    // serde's reading of the claims as JSON text: UTF-8 (RFC 8259 §8.1) and an object. Its byte
    // parser alone would take invalid UTF-8 inside a value it skips (an unknown claim), which
    // the verifier refuses: the long run found that one.
    let object = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let text = std::str::from_utf8(payload).ok().filter(|_| object);
    let serde = text.and_then(|t| serde_json::from_str::<ProofClaims>(t).ok());
    let now = serde.as_ref().map_or(0, |c| c.iat);
    let got = k.verifier.verify_signature_and_time(&token, now);
    match serde {
        // A proof lives at most TOKEN_TTL_SECS after its iat whoever signed it (checked before
        // expiry; with now = iat nothing else can be expired).
        Some(c) if c.exp < c.iat || c.exp - c.iat > TOKEN_TTL_SECS => {
            assert!(matches!(got, Err(Error::TokenMalformed(_))), "{got:?}")
        }
        Some(c) => assert_eq!(got.expect("serde reads these claims: the verifier must too"), c),
        None => {
            assert!(matches!(got, Err(Error::TokenMalformed(_))), "serde refuses, the verifier says {got:?}")
        }
    }
});
