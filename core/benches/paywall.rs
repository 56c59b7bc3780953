//! The provider's hot path: issue a challenge (no proof), and verify a proof + consume its nonce
//! with the memory and the SQLite store. `cargo bench -p vlexivo-core --bench paywall`
//!
//! `verify_consume_*` time fresh proofs only, as real traffic sends them: every timed call
//! consumes a nonce never seen before (tokens are minted in chunks outside the timing, and the
//! simulated clock advances 1 s per 1,000 consumes, so about 300,000 nonces are live and the
//! stores expire old ones as they would in service). `verify_replay_memory` times refused
//! replays (a full verify whose consume finds the nonce), labelled apart.
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
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

/// Tokens for nonces `from..from + n`, issued at `now`.
fn tokens(issuer: &TokenIssuer, account: &str, from: u64, n: u64, now: u64) -> Vec<String> {
    (from..from + n)
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
                    iat: now,
                    exp: now + 300,
                })
                .unwrap()
        })
        .collect()
}

/// Fresh consumes per simulated second.
const RATE: u64 = 1_000;
/// Tokens minted per untimed chunk.
const CHUNK: u64 = 1_000;

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
        payer: None,
        ttl_secs: 300,
    };
    c.bench_function("challenge_issue_encode", |b| {
        b.iter(|| black_box(Challenge::create(&params, &mac_key, NOW, &OsEntropy).unwrap().encode()))
    });
    // The whole 402 an adapter sends: challenge, header and JSON body.
    c.bench_function("challenge_402_response", |b| {
        b.iter(|| black_box(pw.challenge(&req, &price, "per-call", NOW, &OsEntropy).unwrap()))
    });
    let mut run = |name: &str, store: &dyn NonceStore| {
        // Nonce numbers continue across criterion's calls, so no nonce is ever offered twice.
        let mut next = 0u64;
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let now = NOW + next / RATE;
                    let toks = tokens(&issuer, &account, next, n, now);
                    next += n;
                    let t = Instant::now();
                    for tok in &toks {
                        let paid = pw.verify(Some(tok), &req, &price, now, store);
                        debug_assert!(paid.is_ok());
                        black_box(paid.ok());
                    }
                    timed += t.elapsed();
                    left -= n;
                }
                timed
            })
        });
    };
    run("verify_consume_memory", &MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    run("verify_consume_sqlite_wal", &SqliteStore::open(dir.path().join("n.db")).unwrap());

    // Replays: tokens consumed once before timing, then offered again and refused.
    let store = MemoryStore::new();
    let replays = tokens(&issuer, &account, 1 << 40, 10_000, NOW);
    for t in &replays {
        assert!(pw.verify(Some(t), &req, &price, NOW, &store).is_ok());
    }
    let mut i = 0usize;
    c.bench_function("verify_replay_memory", |b| {
        b.iter(|| {
            let t = &replays[i % replays.len()];
            i += 1;
            let refused = pw.verify(Some(t), &req, &price, NOW, &store);
            debug_assert_eq!(refused.as_ref().map_err(|e| e.code()).unwrap_err(), "token_replayed");
            black_box(refused.is_err())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
