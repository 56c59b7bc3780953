//! Pricing by payer, paywall and facilitator sides together: the resolver is handed the hinted
//! payer on the unpaid request and the proven payer on the paid retry; a challenge priced for a
//! payer names it and only that wallet may pay it; a proof is priced again for the payer it
//! proves, so a wallet that borrowed another's discount is refused, never served cheaper.

use vlexivo_core::challenge::Challenge;
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::payer_pricing::PricedPayer;
use vlexivo_core::payment;
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::store::MemoryStore;
use vlexivo_core::token::{ProofClaims, SigningKey, TokenIssuer};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Money};

const NOW: u64 = 1_700_000_000;
const FAC: &str = "http://127.0.0.1:4020";

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::Usd).unwrap()
}

struct World {
    paywall: Paywall,
    keys: ProviderKeys,
    loyal: Wallet,
    fresh: Wallet,
}

impl World {
    fn new() -> Self {
        let rng = SeededEntropy::new(11);
        let secret = generate_secret(Mode::Sandbox, &rng);
        let keys = ProviderKeys::from_secret(&secret).unwrap();
        let mut cfg = PaywallConfig::new(secret);
        cfg.facilitator_url = FAC.into();
        cfg.origin = Some("https://api.example.com".into());
        Self {
            paywall: Paywall::new(cfg).unwrap(),
            keys,
            loyal: Wallet::generate(&rng),
            fresh: Wallet::generate(&rng),
        }
    }

    /// The article's resolver: half price for the loyal wallet, full price for anyone else.
    fn price_for(&self, payer: Option<&PricedPayer>) -> Money {
        match payer {
            Some(p) if p.address == self.loyal.address().to_checksum() => usd("0.0005"),
            _ => usd("0.001"),
        }
    }

    /// What the facilitator would issue for a payment of `amount` by `payer`.
    fn token(&self, payer: &Wallet, amount: &str, nonce: &str) -> String {
        TokenIssuer::new(SigningKey::Hs256(self.keys.token_hs256))
            .unwrap()
            .issue(&ProofClaims {
                jti: nonce.into(),
                iss: FAC.into(),
                aud: self.keys.account.clone(),
                sub: payer.address().to_checksum(),
                txh: format!("0x{}", "ab".repeat(32)),
                amt: amount.into(),
                cur: "usd".into(),
                res: "GET https://api.example.com/data".into(),
                bdy: None,
                mode: "sandbox".into(),
                net: "sandbox".into(),
                iat: NOW,
                exp: NOW + 300,
            })
            .unwrap()
    }
}

fn req<'a>(hint: Option<&'a str>) -> RequestInfo<'a> {
    let mut r = RequestInfo::new("GET", "https", Some("api.example.com"), "/data");
    r.payer = hint;
    r
}

#[test]
fn the_resolver_sees_the_hint_then_the_proof() {
    let w = World::new();
    let loyal = w.loyal.address().to_checksum();
    let hinted = w.paywall.priced_payer(None, Some(&loyal.to_ascii_lowercase()), NOW).unwrap();
    assert_eq!((hinted.address.as_str(), hinted.proven), (loyal.as_str(), false));
    // A missing or malformed hint: nobody, so the full price, and no error.
    for bad in [None, Some(""), Some("0xnope"), Some("loyal customer")] {
        assert_eq!(w.paywall.priced_payer(None, bad, NOW), None, "{bad:?}");
    }
    // The proof's payer wins over any hint.
    let token = w.token(&w.fresh, "0.001", "AAAAAAAAAAAAAAAAAAAAAAAA");
    let proven = w.paywall.priced_payer(Some(&token), Some(&loyal), NOW).unwrap();
    assert_eq!((proven.address, proven.proven), (w.fresh.address().to_checksum(), true));
    // A proof that does not verify proves nothing (the hint, if any, is used).
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(w.paywall.priced_payer(Some(&forged), None, NOW), None);
    assert_eq!(w.paywall.priced_payer(Some(&token), None, NOW + 3600), None, "expired");
}

#[test]
fn a_challenge_priced_for_a_payer_names_it_and_the_facilitator_refuses_another_wallet() {
    let w = World::new();
    let loyal = w.loyal.address().to_checksum();
    let priced = w.paywall.priced_payer(None, Some(&loyal), NOW);
    let price = w.price_for(priced.as_ref());
    let rej =
        w.paywall.challenge(&req(Some(&loyal)), &price, "per-call", NOW, &SeededEntropy::new(1)).unwrap();
    let encoded = &rej.headers[0].1;
    let c = Challenge::decode(encoded).unwrap();
    assert_eq!((c.payer.as_deref(), c.amount.as_str()), (Some(loyal.as_str()), "0.0005"));

    // The fresh wallet, which sent the loyal wallet's address, signs and pays: refused before
    // its signature is checked, nothing charged.
    let lying = payment::sign(&c, encoded, &w.fresh).unwrap();
    let e =
        payment::verify(&lying, payment::decode(&lying).unwrap(), &w.keys.challenge_mac, NOW).unwrap_err();
    assert_eq!(e.code(), "challenge_mismatch");
    assert!(e.to_string().contains("payer"), "{e}");
    // The loyal wallet pays its own challenge.
    let honest = payment::sign(&c, encoded, &w.loyal).unwrap();
    let ok = payment::verify(&honest, payment::decode(&honest).unwrap(), &w.keys.challenge_mac, NOW).unwrap();
    assert_eq!((ok.payer, ok.price), (w.loyal.address(), usd("0.0005")));

    // No hint, or a malformed one: a challenge anyone may pay, at the full price.
    for hint in [None, Some("0x123")] {
        let price = w.price_for(w.paywall.priced_payer(None, hint, NOW).as_ref());
        let rej = w.paywall.challenge(&req(hint), &price, "per-call", NOW, &SeededEntropy::new(2)).unwrap();
        let c = Challenge::decode(&rej.headers[0].1).unwrap();
        assert_eq!((c.payer, c.amount.as_str()), (None, "0.001"));
    }
}

#[test]
fn a_proof_is_priced_again_for_the_payer_it_proves() {
    let w = World::new();
    let store = MemoryStore::new();
    // A token at the loyal wallet's price, paid by the fresh wallet (however it got one).
    let cheap = w.token(&w.fresh, "0.0005", "BBBBBBBBBBBBBBBBBBBBBBBB");
    let loyal = w.loyal.address().to_checksum();
    let payer = w.paywall.priced_payer(Some(&cheap), Some(&loyal), NOW);
    let price = w.price_for(payer.as_ref());
    assert_eq!(price, usd("0.001"), "priced for the proven payer, not the hint");
    let e = w.paywall.verify(Some(&cheap), &req(Some(&loyal)), &price, NOW, &store).unwrap_err();
    assert_eq!(e.code(), "token_underpaid");
    let rej = w.paywall.reject(&e, &req(None), Some(&price), "per-call", NOW, &SeededEntropy::new(3));
    assert_eq!((rej.status, rej.code), (402, "token_underpaid"));

    // The loyal wallet's own half-price proof buys the request once.
    let own = w.token(&w.loyal, "0.0005", "CCCCCCCCCCCCCCCCCCCCCCCC");
    let price = w.price_for(w.paywall.priced_payer(Some(&own), None, NOW).as_ref());
    let facts = w.paywall.verify(Some(&own), &req(None), &price, NOW, &store).unwrap();
    assert_eq!((facts.payer, facts.amount.as_str()), (loyal, "0.0005"));
    assert_eq!(
        w.paywall.verify(Some(&own), &req(None), &price, NOW, &store).unwrap_err().code(),
        "token_replayed"
    );
}
