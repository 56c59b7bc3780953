//! Against a real anvil with Circle's FiatTokenV2_2: core's EIP-3009 authorization, relayed by
//! the settlement backend, moves exactly the price from payer to payee; the chain then refuses
//! the same authorization; the provider-side check accepts the hash only for what it paid.

use std::time::Duration;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::keys::{Mode, generate_secret};
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::payment;
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::wallet::Wallet;
use vlexivo_live::devnet::Devnet;
use vlexivo_live::verify::{Expected, verify_payment};
use vlexivo_live::{Broadcast, Chain, ChainConfig};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The settlement backend on `net`, relaying as anvil's dev account 1.
async fn relayer_chain(net: &Devnet) -> Chain {
    Chain::connect(&ChainConfig {
        rpc_url: net.rpc_url.clone(),
        token: net.token,
        relayer_key: net.dev_key(1),
        poll: Duration::from_millis(20),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_settles_once_and_verifies() {
    let net = Devnet::start().await.expect("devnet (npm ci --prefix live/devnet)");
    let chain = relayer_chain(&net).await;
    assert_eq!(chain.chain_id(), net.chain_id);
    let payee = net.dev_address(2);
    let payer = Wallet::generate(&OsEntropy);
    net.mint(payer.address(), 1_000_000).await.unwrap();

    // A provider's live paywall issues the challenge; the payer signs it as any client would.
    let t = authorized(&chain, payee, &payer, "0.25");

    assert!(!chain.authorization_used(payer.address(), t.authorization.nonce).await.unwrap());
    let gas = chain.simulate(&t).await.unwrap();
    assert!(gas > 21_000, "{gas}");
    let mut recorded = None;
    let (s, outcome) = chain
        .submit(&t, gas, |s| {
            recorded = Some(s.tx_hash);
            async { Ok(()) }
        })
        .await
        .unwrap();
    assert!(matches!(outcome, Broadcast::Accepted), "{outcome:?}");
    assert_eq!(recorded, Some(s.tx_hash), "recorded before the broadcast");
    let mined = chain.wait(s.tx_hash, 1, Duration::from_secs(30)).await.unwrap().expect("mined");
    assert!(mined.success);
    assert_eq!(net.balance(payer.address()).await.unwrap(), 1_000_000 - 250_000);
    assert_eq!(net.balance(payee).await.unwrap(), 250_000);
    assert!(chain.authorization_used(payer.address(), t.authorization.nonce).await.unwrap());
    // The same authorization again: the token refuses it (simulation names why).
    assert_eq!(chain.simulate(&t).await.unwrap_err().code(), "authorization_used");
    // Re-broadcasting the same bytes is the same transaction: nothing moves twice.
    let again = chain.broadcast(&s.raw).await;
    assert!(!matches!(again, Broadcast::Unknown(_)), "{again:?}");
    assert_eq!(net.balance(payee).await.unwrap(), 250_000);

    // Provider side: the hash pays exactly this, and nothing else.
    let expected = Expected {
        token: net.token,
        payer: payer.address(),
        payee,
        amount: 250_000,
        confirmations: 1,
        authorization_nonce: None,
    };
    let paid = verify_payment(chain.provider(), s.tx_hash, &expected).await.unwrap();
    assert_eq!(paid.block, mined.block);
    let more = Expected { amount: 250_001, ..expected.clone() };
    assert_eq!(
        verify_payment(chain.provider(), s.tx_hash, &more).await.unwrap_err().code(),
        "transfer_mismatch"
    );
    let other = Expected { payee: net.dev_address(3), ..expected.clone() };
    assert!(verify_payment(chain.provider(), s.tx_hash, &other).await.is_err());
    let deep = Expected { confirmations: 5, ..expected.clone() };
    assert_eq!(
        verify_payment(chain.provider(), s.tx_hash, &deep).await.unwrap_err().code(),
        "confirmations_pending"
    );
    net.mine(4).await.unwrap();
    verify_payment(chain.provider(), s.tx_hash, &deep).await.unwrap();
    let unknown = alloy::primitives::B256::repeat_byte(7);
    assert_eq!(
        verify_payment(chain.provider(), unknown, &expected).await.unwrap_err().code(),
        "transaction_not_found"
    );

    // The logs name the transfer to the payee.
    let logs = chain.transfers(0, chain.block_number().await.unwrap(), &[payee]).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!((logs[0].from, logs[0].to, logs[0].tx_hash), (payer.address(), payee, s.tx_hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_refuses_what_the_payer_cannot_pay() {
    let net = Devnet::start().await.expect("devnet");
    let chain = relayer_chain(&net).await;
    let payee = net.dev_address(2);
    let payer = Wallet::generate(&OsEntropy);
    net.mint(payer.address(), 100).await.unwrap();
    let t = authorized(&chain, payee, &payer, "0.001");
    // 100 atomic units < 1,000: the token's own check, seen by the simulation.
    assert_eq!(chain.simulate(&t).await.unwrap_err().code(), "insufficient_funds");
}

/// A live paywall's challenge for `price`, paid (signed) by `payer` and verified off chain as
/// the facilitator does.
fn authorized(
    chain: &Chain,
    payee: vlexivo_core::wallet::Address,
    payer: &Wallet,
    price: &str,
) -> payment::VerifiedTransfer {
    let secret = generate_secret(Mode::Live, &OsEntropy);
    let mut cfg = PaywallConfig::new(&secret);
    cfg.origin = Some("https://api.example.com".into());
    cfg.live = Some(chain.terms(payee));
    let wall = Paywall::new(cfg).unwrap();
    let price = Money::parse(price, Currency::Usd).unwrap();
    let req = RequestInfo::new("GET", "https", Some("api.example.com"), "/paid");
    let r = wall.challenge(&req, &price, "per-call", now(), &OsEntropy).unwrap();
    let enc = r.headers.iter().find(|(k, _)| *k == "Vlexivo-Challenge").unwrap().1.clone();
    let c = Challenge::decode(&enc).unwrap();
    let signed = payment::sign(&c, &enc, payer).unwrap();
    let keys = vlexivo_core::keys::ProviderKeys::from_secret(&secret).unwrap();
    payment::verify_live(&signed, c, &keys.challenge_mac, &chain.terms(payee), now()).unwrap()
}

/// Batched settlement through Multicall3: one transaction relays many authorizations, each
/// moving exactly its price; one that cannot pay fails alone. Prints gas per payment single vs
/// batched (the closing note's figure; gas is deterministic on anvil):
/// `cargo test -p vlexivo-live --test devnet batched -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_settlement_moves_each_payment_and_costs_less_gas_per_payment() {
    const N: usize = 10;
    let net = Devnet::start().await.expect("devnet");
    let multicall = net.deploy_multicall3().await.unwrap();
    let chain = relayer_chain(&net).await;
    let payee = net.dev_address(2);
    // Warm the payee's balance slot, so single and batched both pay a non-zero-to-non-zero write.
    net.mint(payee, 1).await.unwrap();
    let mut payers = Vec::new();
    for _ in 0..2 * N {
        let w = Wallet::generate(&OsEntropy);
        net.mint(w.address(), 1_000_000).await.unwrap();
        payers.push(w);
    }

    // Single: one relay per payment.
    let mut single_gas = 0;
    for w in &payers[..N] {
        let t = authorized(&chain, payee, w, "0.01");
        let gas = chain.simulate(&t).await.unwrap();
        let (s, _) = chain.submit(&t, gas, |_| async { Ok(()) }).await.unwrap();
        let m = chain.wait(s.tx_hash, 1, Duration::from_secs(30)).await.unwrap().unwrap();
        assert!(m.success);
        single_gas += m.gas_used;
    }

    // Batched: N payments in one transaction, plus one payer with nothing, which fails alone.
    let broke = Wallet::generate(&OsEntropy);
    let mut batch: Vec<payment::VerifiedTransfer> =
        payers[N..].iter().map(|w| authorized(&chain, payee, w, "0.01")).collect();
    batch.push(authorized(&chain, payee, &broke, "0.01"));
    let refs: Vec<&payment::VerifiedTransfer> = batch.iter().collect();
    let (s, outcome) = chain.submit_batch(multicall, &refs, |_| async { Ok(()) }).await.unwrap();
    assert!(matches!(outcome, Broadcast::Accepted), "{outcome:?}");
    let m = chain.wait(s.tx_hash, 1, Duration::from_secs(30)).await.unwrap().unwrap();
    assert!(m.success);
    for w in &payers {
        assert_eq!(net.balance(w.address()).await.unwrap(), 990_000, "each paid its price once");
    }
    assert_eq!(net.balance(payee).await.unwrap(), 1 + 2 * N as u64 * 10_000);
    // The batch's receipt carries a Transfer per payment that settled, none for the broke payer.
    // The provider's check picks each payment's own Transfer out of the batch, by its fields
    // and pinned by its authorization nonce, and says how many the transaction carries.
    for (t, w) in batch.iter().zip(payers[N..].iter()) {
        let expected = Expected {
            token: net.token,
            payer: w.address(),
            payee,
            amount: 10_000,
            confirmations: 1,
            authorization_nonce: None,
        };
        let v = verify_payment(chain.provider(), s.tx_hash, &expected).await.unwrap();
        assert_eq!((v.transfers, v.matching), (N, 1));
        let pinned = Expected { authorization_nonce: Some(t.authorization.nonce), ..expected };
        let p = verify_payment(chain.provider(), s.tx_hash, &pinned).await.unwrap();
        assert_eq!((p.log_index, p.authorization_checked), (v.log_index, true));
        assert!(chain.authorization_used(w.address(), t.authorization.nonce).await.unwrap());
    }
    let expected = Expected {
        token: net.token,
        payer: broke.address(),
        payee,
        amount: 10_000,
        confirmations: 1,
        authorization_nonce: None,
    };
    let e = verify_payment(chain.provider(), s.tx_hash, &expected).await.unwrap_err();
    assert_eq!((e.code(), e.details()["field"].as_str()), ("transfer_mismatch", Some("payer")), "{e}");

    // The broke payer's failed call still costs gas: gas per settled payment counts N.
    let (single, batched) = (single_gas / N as u64, m.gas_used / N as u64);
    println!(
        "BENCH gas per payment: single {single}, batched ({N} + 1 failing in one aggregate3) {batched} ({:.2}x)",
        single as f64 / batched as f64
    );
    assert!(batched < single, "batched {batched} vs single {single}");
}
