//! Releasing a consumed nonce undoes exactly that consume: a late or repeated release (an error
//! handler and a close listener both firing, say) never frees a nonce that a retry has
//! consumed since, whichever store holds it and whichever path (blocking or async) is taken.

use std::sync::Arc;
use vlexivo_core::env::SeededEntropy;
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::store::{MemoryStore, NonceStore};
use vlexivo_core::token::{ProofClaims, SigningKey, TokenIssuer};
use vlexivo_core::{Currency, Money};

const NOW: u64 = 1_700_000_000;

fn setup() -> (Paywall, String, Money) {
    let secret = generate_secret(Mode::Sandbox, &SeededEntropy::new(7));
    let keys = ProviderKeys::from_secret(&secret).unwrap();
    let issuer = TokenIssuer::new(SigningKey::Hs256(keys.token_hs256)).unwrap();
    let token = issuer
        .issue(&ProofClaims {
            jti: "AAAAAAAAAAAAAAAAAAAAAAAA".into(),
            iss: "http://127.0.0.1:4020".into(),
            aud: keys.account.clone(),
            sub: "0x0000000000000000000000000000000000000001".into(),
            txh: format!("0x{}", "ab".repeat(32)),
            amt: "0.001".into(),
            cur: "usd".into(),
            res: "GET http://api.test/paid".into(),
            bdy: None,
            mode: "sandbox".into(),
            net: "sandbox".into(),
            iat: NOW,
            exp: NOW + 300,
        })
        .unwrap();
    let pw = Paywall::new(PaywallConfig::new(secret)).unwrap();
    (pw, token, Money::parse("0.001", Currency::Usd).unwrap())
}

const REQ: RequestInfo<'static> = RequestInfo {
    method: "GET",
    path: "/paid",
    scheme: "http",
    host: Some("api.test"),
    body: None,
    payer: None,
};

fn stores() -> Vec<Arc<dyn NonceStore>> {
    let mut v: Vec<Arc<dyn NonceStore>> = vec![Arc::new(MemoryStore::new())];
    #[cfg(feature = "sqlite")]
    v.push(Arc::new(vlexivo_core::store::SqliteStore::in_memory().unwrap()));
    v
}

#[test]
fn a_repeated_release_cannot_free_a_retry() {
    let (pw, token, price) = setup();
    for store in stores() {
        let first = pw.verify(Some(&token), &REQ, &price, NOW, &*store).unwrap();
        // The handler failed: released, and the payer retries with the same proof.
        pw.release(&first, &*store).unwrap();
        let retry = pw.verify(Some(&token), &REQ, &price, NOW + 1, &*store).unwrap();
        assert_ne!(first.store_key, retry.store_key, "{}: each consume has its own handle", store.kind());
        // The first request's release fires again while the retry's handler runs.
        pw.release(&first, &*store).unwrap();
        let third = pw.verify(Some(&token), &REQ, &price, NOW + 2, &*store);
        assert_eq!(third.unwrap_err().code(), "token_replayed", "{}", store.kind());
        // The retry's own release does free it.
        Paywall::release_handle(&retry.store_key, &*store).unwrap();
        assert!(pw.verify(Some(&token), &REQ, &price, NOW + 3, &*store).is_ok(), "{}", store.kind());
    }
}

#[tokio::test]
async fn the_async_path_keeps_the_same_contract() {
    let (pw, token, price) = setup();
    for store in stores() {
        let first = pw.verify_async(Some(&token), &REQ, &price, NOW, &*store).await.unwrap();
        let again = pw.verify_async(Some(&token), &REQ, &price, NOW, &*store).await;
        assert_eq!(again.unwrap_err().code(), "token_replayed");
        Paywall::release_handle_async(&first.store_key, &*store).await.unwrap();
        let retry = pw.verify(Some(&token), &REQ, &price, NOW + 1, &*store).unwrap();
        Paywall::release_handle_async(&first.store_key, &*store).await.unwrap();
        let third = pw.verify_async(Some(&token), &REQ, &price, NOW + 2, &*store).await;
        assert_eq!(third.unwrap_err().code(), "token_replayed", "{}", store.kind());
        // The facts match the blocking path's (apart from the handle).
        let blocking = pw.verify(Some(&token), &REQ, &price, NOW, &MemoryStore::new()).unwrap();
        assert_eq!(
            (&retry.payer, &retry.nonce, retry.expires_at),
            (&blocking.payer, &blocking.nonce, blocking.expires_at)
        );
        // A bad handle is refused, not ignored.
        assert!(Paywall::release_handle("acct:nonce", &*store).is_err());
        assert_eq!(pw.check(None, &REQ, &price, NOW).unwrap_err().code(), "payment_required");
    }
}
