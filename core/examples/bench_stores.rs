//! verify + consume latency with each nonce store, the blocking path a WSGI worker or a
//! tokio task awaiting the store takes: memory vs Redis vs PostgreSQL (throwaway servers on
//! loopback, started by scripts/test-services.sh). Rounds interleave the stores so machine load
//! hits them alike; prints p50/p99 per store and the ratio to memory.
//!
//! `cargo run --release -p vlexivo-core --features redis,postgres --example bench_stores -- [N] [ROUNDS]`

use std::time::Instant;
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::store::NonceStore;
use vlexivo_core::token::{ProofClaims, SigningKey, TokenIssuer};
use vlexivo_core::{Currency, Money};
use vlexivo_testkit::Server;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(5000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let now = 1_900_000_000u64;
    let secret = generate_secret(Mode::Sandbox, &SeededEntropy::new(3));
    let keys = ProviderKeys::from_secret(&secret).unwrap();
    let issuer = TokenIssuer::new(SigningKey::Hs256(keys.token_hs256)).unwrap();
    let mut cfg = PaywallConfig::new(secret);
    cfg.origin = Some("http://api.test".into());
    let pw = Paywall::new(cfg).unwrap();
    let price = Money::parse("0.001", Currency::Usd).unwrap();
    let req = RequestInfo { method: "GET", path: "/r", scheme: "http", host: None, body: None, payer: None };
    let tokens = |round: usize, tag: &str| -> Vec<String> {
        (0..n)
            .map(|i| {
                issuer
                    .issue(&ProofClaims {
                        jti: format!("{tag}{round:02}{i:020}"),
                        iss: "http://127.0.0.1:4020".into(),
                        aud: keys.account.clone(),
                        sub: "0x0000000000000000000000000000000000000001".into(),
                        txh: format!("0x{}", "ab".repeat(32)),
                        amt: "0.001".into(),
                        cur: "usd".into(),
                        res: "GET http://api.test/r".into(),
                        bdy: None,
                        mode: "sandbox".into(),
                        net: "sandbox".into(),
                        iat: now,
                        exp: now + 300,
                    })
                    .unwrap()
            })
            .collect()
    };
    let redis = Server::redis();
    let pg = Server::postgres();
    let stores: Vec<(&str, std::sync::Arc<dyn NonceStore>)> = vec![
        ("memory", vlexivo_core::store::open("memory", &[]).unwrap()),
        ("redis", vlexivo_core::store::open(&redis.url, &[]).unwrap()),
        ("postgres", vlexivo_core::store::open(&pg.url, &[]).unwrap()),
    ];
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    for round in 0..rounds {
        for (s, (name, store)) in stores.iter().enumerate() {
            let toks = tokens(round, &name[..1]);
            let mut lat = Vec::with_capacity(n);
            for t in &toks {
                let start = Instant::now();
                pw.verify(Some(t), &req, &price, now, &**store).expect("fresh");
                lat.push(start.elapsed().as_secs_f64() * 1e6);
            }
            all[s].extend(lat);
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() as f64 - 1.0) * p) as usize]
    };
    let mem_p50 = pct(&mut all[0].clone(), 0.5);
    for (s, (name, _)) in stores.iter().enumerate() {
        let (p50, p99) = (pct(&mut all[s], 0.5), pct(&mut all[s], 0.99));
        println!("{name:>9}: p50 {p50:8.1} us  p99 {p99:8.1} us  ({:.0}x memory p50)", p50 / mem_p50);
    }
}
