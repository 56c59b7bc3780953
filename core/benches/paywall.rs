//! The provider's hot path: issue a challenge (no proof), and verify a proof + consume its nonce
//! with the memory and the SQLite store. `cargo bench -p vlexivo-core --bench paywall`
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vlexivo_core::challenge::{Challenge, ChallengeParams};
use vlexivo_core::env::{OsEntropy, SeededEntropy};
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::store::{MemoryStore, NonceStore, SqliteStore};
use vlexivo_core::token::{ProofClaims, SigningKey, TokenIssuer};
use vlexivo_core::{Currency, Money};

const NOW: u64 = 1_800_000_000;

fn setup() -> (Paywall, TokenIssuer, String) {
    let secret = generate_secret(Mode::Sandbox, &SeededEntropy::new(1));
    let keys = ProviderKeys::from_secret(&secret).unwrap();
    let issuer = TokenIssuer::new(SigningKey::Hs256(keys.token_hs256)).unwrap();
    (Paywall::new(PaywallConfig::new(secret)).unwrap(), issuer, keys.account)
}

fn tokens(issuer: &TokenIssuer, account: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            issuer
                .issue(&ProofClaims {
                    jti: format!("nonce-{i:020}"),
                    iss: "http://127.0.0.1:4020".into(),
                    aud: account.into(),
                    sub: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23".into(),
                    txh: format!("0x{:064x}", i),
                    amt: "0.001".into(),
                    cur: "usd".into(),
                    res: "POST http://127.0.0.1:8080/api/v1/inference".into(),
                    bdy: None,
                    mode: "sandbox".into(),
                    net: "sandbox".into(),
                    iat: NOW,
                    exp: NOW + 300,
                })
                .unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (pw, issuer, account) = setup();
    let price = Money::parse("0.001", Currency::Usd).unwrap();
    let req = RequestInfo::new("POST", "http", Some("127.0.0.1:8080"), "/api/v1/inference");
    let mac_key = [7u8; 32];
    let params = ChallengeParams {
        price: &price,
        scope: "per-call",
        method: "POST",
        origin: "http://127.0.0.1:8080",
        path: "/api/v1/inference",
        body_sha256: None,
        account: &account,
        facilitator: "http://127.0.0.1:4020",
        mode: "sandbox",
        network: "sandbox",
        live: None,
        ttl_secs: 300,
    };
    c.bench_function("challenge_issue_encode", |b| {
        b.iter(|| black_box(Challenge::create(&params, &mac_key, NOW, &OsEntropy).unwrap().encode()))
    });
    // The whole 402 an adapter sends: challenge, header and JSON body.
    c.bench_function("challenge_402_response", |b| {
        b.iter(|| black_box(pw.challenge(&req, &price, "per-call", NOW, &OsEntropy).unwrap()))
    });
    // Distinct tokens, so every iteration consumes a fresh nonce (as real traffic does).
    let toks = tokens(&issuer, &account, 200_000);
    let mut run = |name: &str, store: &dyn NonceStore| {
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                let t = &toks[i % toks.len()];
                i += 1;
                // Past the first lap every nonce is a replay: still a full verify + insert attempt.
                black_box(pw.verify(Some(t), &req, &price, NOW, store).ok())
            })
        });
    };
    run("verify_consume_memory", &MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    run("verify_consume_sqlite_wal", &SqliteStore::open(dir.path().join("n.db")).unwrap());
}

criterion_group!(benches, bench);
criterion_main!(benches);
