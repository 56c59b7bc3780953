//! Proof-token hot paths: the provider middleware verifies on every paid call.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::token::{
    Ed25519Key, Expectation, ProofClaims, SigningKey, TOKEN_TTL_SECS, TokenIssuer, TokenVerifier,
    VerifierConfig, jwks,
};

const NOW: u64 = 1_700_000_000;
const ACCT: &str = "acct_bench";
const HS_KEY: [u8; 32] = [7u8; 32];

fn claims() -> ProofClaims {
    ProofClaims {
        jti: "Zk3q9x2LwR8mN4vT1bYc0A".into(),
        iss: "https://facilitator.vlexivo.example".into(),
        aud: ACCT.into(),
        sub: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
        txh: "0x9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b7d9f1e".into(),
        amt: "0.001".into(),
        cur: "usd".into(),
        res: "POST /api/v1/inference".into(),
        bdy: Some("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".into()),
        mode: "sandbox".into(),
        net: "sandbox".into(),
        iat: NOW,
        exp: NOW + TOKEN_TTL_SECS,
    }
}

fn bench(c: &mut Criterion) {
    let price = Money::parse("0.001", Currency::Usd).unwrap();
    let expect = Expectation {
        resource: "POST /api/v1/inference",
        body_sha256: Some("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"),
        price: &price,
    };

    let hs_issuer = TokenIssuer::new(SigningKey::Hs256(HS_KEY)).unwrap();
    let mut cfg = VerifierConfig::new(ACCT, "sandbox");
    cfg.hs256_key = Some(HS_KEY);
    let hs_verifier = TokenVerifier::new(cfg).unwrap();
    let hs_token = hs_issuer.issue(&claims()).unwrap();
    c.bench_function("token_verify_hs256", |b| {
        b.iter(|| hs_verifier.verify(black_box(&hs_token), &expect, NOW).unwrap())
    });

    let key = Ed25519Key::from_seed([9u8; 32]).unwrap();
    let mut cfg = VerifierConfig::new(ACCT, "sandbox");
    cfg.jwks = Some(jwks(&[&key]));
    let ed_verifier = TokenVerifier::new(cfg).unwrap();
    let ed_issuer = TokenIssuer::new(SigningKey::EdDsa(key)).unwrap();
    let ed_token = ed_issuer.issue(&claims()).unwrap();
    c.bench_function("token_verify_eddsa", |b| {
        b.iter(|| ed_verifier.verify(black_box(&ed_token), &expect, NOW).unwrap())
    });

    let claims = claims();
    c.bench_function("token_issue_hs256", |b| b.iter(|| hs_issuer.issue(black_box(&claims)).unwrap()));
    c.bench_function("token_issue_eddsa", |b| b.iter(|| ed_issuer.issue(black_box(&claims)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
