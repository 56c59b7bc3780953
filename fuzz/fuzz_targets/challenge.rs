//! A `Vlexivo-Challenge` value as a payer or the facilitator receives it: decode (size limit,
//! base64url, JSON shape), then the MAC and expiry under the vectors' provider key. A decoded
//! challenge re-encodes to one that decodes to the same fields, and one whose MAC holds under
//! the provider's key must have been made by it (the seeds hold the only such ones).
#![no_main]
use vlexivo_core::challenge::Challenge;
use vlexivo_core::payment;
use vlexivo_fuzz::{NOW, provider_keys};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = vlexivo_fuzz::text(data);
    let Ok(c) = Challenge::decode(&s) else { return };
    let key = &provider_keys().challenge_mac;
    let mac = c.verify_mac(key);
    let _ = c.verify(key, NOW, 0);
    let _ = c.verify(key, u64::MAX, u64::MAX);
    let again = Challenge::decode(&c.encode()).expect("a decoded challenge re-encodes to a valid one");
    assert_eq!(again, c);
    assert_eq!(again.verify_mac(key).is_ok(), mac.is_ok());
    let price = c.price().expect("decode checked the price");
    assert!(!price.is_zero());
    let _ = c.resource();
    // The payer's and the facilitator's next steps on it.
    let _ = payment::authorization(&c, &s);
    let _ = payment::chain_id(&c.network);
});
