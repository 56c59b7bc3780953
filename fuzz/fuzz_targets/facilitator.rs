//! The facilitator's `POST /v1/payments` body as it arrives: JSON into `PaymentRequest`
//! (unknown fields refused), the challenge decoded, then everything the facilitator checks
//! before it charges (MAC under the provider's key, expiry, the payer's EIP-712 signature).
//! (The facilitator's other bodies are the `api_bodies` target.)
//! A request that passes names the signer as its payer and the challenge's price.
#![no_main]
use vlexivo_core::api_bodies::from_json;
use vlexivo_core::payment::{self, PaymentRequest};
use vlexivo_core::wallet::Address;
use vlexivo_fuzz::{NOW, provider_keys};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(req) = from_json::<PaymentRequest>(data)
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
});
