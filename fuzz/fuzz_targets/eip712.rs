//! EIP-712 payment signatures and the strings around them, as the facilitator receives them:
//! the `0x` + 65-byte signature (low-s only, v in 0/1/27/28), the payer's address, a wallet
//! key. A signature that recovers to an address verifies for that address and no other.
#![no_main]
use vlexivo_core::wallet::{
    Address, PaymentAuthorization, Wallet, keccak256, recover_authorization, verify_authorization,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [sig, addr, key, payee] = vlexivo_fuzz::fields::<4>(data);
    let auth = PaymentAuthorization {
        challenge_hash: keccak256(payee),
        payee: vlexivo_fuzz::text(payee).into_owned(),
        amount_atomic: payee.len() as u64 * 1000,
        currency: "usd".into(),
        deadline: vlexivo_fuzz::NOW + 300,
        chain_id: payee.first().copied().map_or(0, u64::from),
    };
    let sig = vlexivo_fuzz::text(sig);
    if let Ok(signer) = recover_authorization(&auth, &sig) {
        verify_authorization(&auth, &sig, &signer).expect("the recovered signer verifies");
        let mut other = signer.0;
        other[0] ^= 1;
        assert!(verify_authorization(&auth, &sig, &Address(other)).is_err());
    }
    if let Ok(a) = Address::parse(&vlexivo_fuzz::text(addr)) {
        let again = Address::parse(&a.to_checksum()).expect("a checksummed address parses");
        assert_eq!(again, a);
    }
    if let Ok(w) = Wallet::from_hex(&vlexivo_fuzz::text(key)) {
        let s = w.sign_authorization(&auth);
        assert_eq!(recover_authorization(&auth, &s).expect("own signature"), w.address());
    }
});
