//! Wallet signature costs: the facilitator recovers one address per payment (hot path),
//! the payer signs one authorization per paid call.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::wallet::{PaymentAuthorization, Wallet, keccak256, recover_authorization};

fn auth() -> PaymentAuthorization {
    PaymentAuthorization {
        challenge_hash: keccak256(b"bench challenge"),
        payee: "acct_provider_123".into(),
        amount_atomic: 1_000,
        currency: "usd".into(),
        deadline: 1_700_000_300,
        chain_id: 84532,
    }
}

fn bench(c: &mut Criterion) {
    let wallet = Wallet::generate(&SeededEntropy::new(42));
    let auth = auth();
    let sig = wallet.sign_authorization(&auth);
    assert_eq!(recover_authorization(&auth, &sig).unwrap(), wallet.address());

    c.bench_function("eip712_recover", |b| {
        b.iter(|| recover_authorization(black_box(&auth), black_box(&sig)).unwrap())
    });
    c.bench_function("eip712_sign", |b| b.iter(|| wallet.sign_authorization(black_box(&auth))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
