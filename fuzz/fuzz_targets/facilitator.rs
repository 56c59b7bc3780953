//! The facilitator's `POST /v1/payments` body as it arrives: JSON into `PaymentRequest`
//! (unknown fields refused), the challenge decoded, then everything the facilitator checks
//! before it charges (MAC under the provider's key, expiry, the payer's EIP-712 signature).
//! Also a top-up's `amount` (a decimal string or a JSON number, read as the handler reads it).
//! A request that passes names the signer as its payer and the challenge's price.
#![no_main]
use vlexivo_core::payment::{self, PaymentRequest};
use vlexivo_core::wallet::Address;
use vlexivo_core::{Currency, Money};
use vlexivo_fuzz::{NOW, provider_keys};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<PaymentRequest>(data)
        && let Ok(challenge) = payment::decode(&req)
    {
        let price = challenge.price().expect("decode checked the price");
        for now in [NOW, challenge.iat, challenge.exp] {
            if let Ok(v) = payment::verify(&req, challenge.clone(), &provider_keys().challenge_mac, now) {
                assert_eq!(Some(v.payer), Address::parse(&req.payer).ok());
                assert_eq!(v.price, price);
                let c = payment::claims(&v, "0xtx", "http://127.0.0.1:4020", now);
                assert_eq!(c.amt, price.to_string());
            }
        }
    }
    #[derive(serde::Deserialize)]
    struct TopUp {
        amount: serde_json::Value,
    }
    if let Ok(t) = serde_json::from_slice::<TopUp>(data) {
        let _ = match &t.amount {
            serde_json::Value::String(s) => Money::parse(s, Currency::Usd),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) => Money::from_f64(f, Currency::Usd),
                None => return,
            },
            _ => return,
        };
    }
});
