//! One crypto stack, decided by measurement: the primitives of the paid path in pure Rust
//! (RustCrypto `hmac`/`sha2`, `ed25519-dalek`, what core uses) against aws-lc (C, what core used
//! before, through `aws-lc-rs`), on the same inputs in the same run; and the two base64url
//! decoders (`base64` and `base64-simd`) on a proof token's claims segment.
//! `cargo bench -p vlexivo-core --bench crypto`
//!
//! The paid path itself (token verify, verify + consume) is in the `token` and `paywall`
//! benches: this one says how much of it the primitive is, and what aws-lc would change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use std::hint::black_box;
use vlexivo_core::token::{Ed25519Key, ProofClaims, SigningKey, TokenIssuer};

const KEY: [u8; 32] = [7u8; 32];
const SEED: [u8; 32] = [9u8; 32];

fn claims() -> ProofClaims {
    ProofClaims {
        jti: "Zk3q9x2LwR8mN4vT1bYc0Aab".into(),
        iss: "https://facilitator.vlexivo.example".into(),
        aud: "acct_3f9c2a71d04e8b65a1c7".into(),
        sub: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
        txh: "0x9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b7d9f1e".into(),
        amt: "0.001".into(),
        cur: "usd".into(),
        res: "POST https://api.example.com/api/v1/inference".into(),
        bdy: None,
        mode: "sandbox".into(),
        net: "sandbox".into(),
        iat: 1_700_000_000,
        exp: 1_700_000_300,
    }
}

/// The signing input (`header.payload`) and the signature segment of a real token.
fn parts(token: &str) -> (&str, &str) {
    token.rsplit_once('.').unwrap()
}

fn bench(c: &mut Criterion) {
    // HS256: the facilitator signs one token per payment, the provider checks one per paid call.
    let hs = TokenIssuer::new(SigningKey::Hs256(KEY)).unwrap().issue(&claims()).unwrap();
    let (input, _) = parts(&hs);
    let input = input.as_bytes();
    let rc_key = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&KEY).unwrap();
    let lc_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &KEY);
    let tag: [u8; 32] = aws_lc_rs::hmac::sign(&lc_key, input).as_ref().try_into().unwrap();
    let mut g = c.benchmark_group("hs256_verify");
    g.bench_function("rustcrypto", |b| {
        b.iter(|| {
            let mut m = rc_key.clone();
            m.update(black_box(input));
            m.verify_slice(&tag).unwrap()
        })
    });
    g.bench_function("aws-lc", |b| {
        b.iter(|| aws_lc_rs::hmac::verify(&lc_key, black_box(input), &tag).unwrap())
    });
    g.finish();
    let mut g = c.benchmark_group("hs256_sign");
    g.bench_function("rustcrypto", |b| {
        b.iter(|| {
            let mut m = rc_key.clone();
            m.update(black_box(input));
            m.finalize().into_bytes()
        })
    });
    g.bench_function("aws-lc", |b| b.iter(|| aws_lc_rs::hmac::sign(&lc_key, black_box(input))));
    g.finish();

    // EdDSA: facilitator-signed tokens that anyone holding the JWKS can check.
    let key = Ed25519Key::from_seed(SEED).unwrap();
    let ed = TokenIssuer::new(SigningKey::EdDsa(key.clone())).unwrap().issue(&claims()).unwrap();
    let (input, sig_b64) = parts(&ed);
    let input = input.as_bytes();
    let sig: [u8; 64] = URL_SAFE_NO_PAD.decode(sig_b64).unwrap().try_into().unwrap();
    let dalek_pub = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key()).unwrap();
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
    let lc_pub =
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key.public_key());
    let mut g = c.benchmark_group("ed25519_verify");
    g.bench_function("dalek", |b| b.iter(|| dalek_pub.verify_strict(black_box(input), &dalek_sig).unwrap()));
    g.bench_function("aws-lc", |b| b.iter(|| lc_pub.verify(black_box(input), &sig).unwrap()));
    g.finish();
    let dalek_key = ed25519_dalek::SigningKey::from_bytes(&SEED);
    let lc_pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap();
    let mut g = c.benchmark_group("ed25519_sign");
    g.bench_function("dalek", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&dalek_key, black_box(input)).to_bytes())
    });
    g.bench_function("aws-lc", |b| b.iter(|| lc_pair.sign(black_box(input))));
    g.finish();

    // The claims segment of a proof token, decoded on every paid call.
    let payload = hs.split('.').nth(1).unwrap();
    let mut g = c.benchmark_group("claims_b64_decode");
    g.bench_function("base64", |b| {
        let mut out = Vec::with_capacity(payload.len());
        b.iter(|| {
            out.clear();
            URL_SAFE_NO_PAD.decode_vec(black_box(payload), &mut out).unwrap();
            out.len()
        })
    });
    g.bench_function("base64-simd", |b| {
        let mut out = vec![0u8; payload.len()];
        b.iter(|| {
            base64_simd::URL_SAFE_NO_PAD
                .decode(black_box(payload.as_bytes()), base64_simd::Out::from_slice(&mut out))
                .unwrap()
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
