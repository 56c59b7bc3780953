//! Live mode's payment authorization: an EIP-3009 `TransferWithAuthorization` under the token's
//! own EIP-712 domain, which the token contract itself checks when the facilitator relays it.
//!
//! The payer signs `TransferWithAuthorization(from, to, value, validAfter, validBefore, nonce)`:
//! `from` = the payer, `to` = the provider's payout address, `value` = the price in atomic
//! units, `validBefore` ≤ the challenge's expiry and `nonce` derived from the challenge
//! ([`authorization_nonce`]), so the chain itself refuses a second use of one challenge. The
//! domain is the token's: `{name, version, chainId, verifyingContract}` (USDC: "USD Coin", "2").
//! x402's `exact` EVM scheme signs this same struct, so its payloads verify here unchanged.

use crate::error::{Error, Result};
use crate::wallet::{Address, Wallet, keccak256};
use alloy_sol_types::SolStruct;

mod typed {
    alloy_sol_types::sol! {
        struct TransferWithAuthorization {
            address from;
            address to;
            uint256 value;
            uint256 validAfter;
            uint256 validBefore;
            bytes32 nonce;
        }
    }
}

/// The EIP-712 type string the token contract hashes.
pub const TYPE_STRING: &str = "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";
/// Domain separation of [`authorization_nonce`].
const NONCE_DOMAIN: &[u8] = b"vlexivo-eip3009-nonce-v1\n";

/// The settlement terms of a live paywall: where the payer's money goes, in which token, on
/// which chain. Carried in a live challenge (MAC'd with it) and checked by the facilitator
/// against the provider's payout address and the token it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTerms {
    /// CAIP-2 network, `eip155:<chainId>`.
    pub network: String,
    /// The EIP-3009 token contract (the EIP-712 `verifyingContract`).
    pub asset: Address,
    /// The token's EIP-712 domain name and version ("USD Coin", "2" for USDC).
    pub asset_name: String,
    pub asset_version: String,
    /// The provider's payout address, set at onboarding.
    pub pay_to: Address,
}

/// The domain name and version of Circle's USDC (FiatTokenV2_2), the default token.
pub const USDC_NAME: &str = "USD Coin";
pub const USDC_VERSION: &str = "2";

impl LiveTerms {
    /// The chain id of `network` (`eip155:<N>`, N ≥ 1).
    pub fn chain_id(&self) -> Result<u64> {
        evm_chain_id(&self.network)
    }

    /// The token's EIP-712 domain.
    pub fn domain(&self) -> Result<TokenDomain> {
        Ok(TokenDomain {
            name: self.asset_name.clone(),
            version: self.asset_version.clone(),
            chain_id: self.chain_id()?,
            verifying_contract: self.asset,
        })
    }

    /// Read from the environment (`VLX_NETWORK`, `VLX_ASSET`, `VLX_PAY_TO`, and optionally
    /// `VLX_ASSET_NAME`, `VLX_ASSET_VERSION`, USDC's by default). `get` is the host's view of
    /// the environment. `Ok(None)` when none of the required three is set.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        use crate::envvars::{ASSET, ASSET_NAME, ASSET_VERSION, NETWORK, PAY_TO};
        let read = |v: &crate::envvars::EnvVar| v.read(&get);
        let (network, asset, pay_to) = (read(&NETWORK)?, read(&ASSET)?, read(&PAY_TO)?);
        if network.is_none() && asset.is_none() && pay_to.is_none() {
            return Ok(None);
        }
        let need = |v: Option<String>, name: &str| {
            v.ok_or_else(|| Error::Config(format!("live mode needs {name} as well")))
        };
        let terms = LiveTerms {
            network: need(network, NETWORK.name)?,
            asset: Address::parse(&need(asset, ASSET.name)?)
                .map_err(|_| Error::Config(format!("{} is not an address", ASSET.name)))?,
            asset_name: read(&ASSET_NAME)?.unwrap_or_else(|| USDC_NAME.into()),
            asset_version: read(&ASSET_VERSION)?.unwrap_or_else(|| USDC_VERSION.into()),
            pay_to: Address::parse(&need(pay_to, PAY_TO.name)?)
                .map_err(|_| Error::Config(format!("{} is not an address", PAY_TO.name)))?,
        };
        terms.check().map_err(|e| Error::Config(e.to_string()))?;
        Ok(Some(terms))
    }

    /// Shape checks: an `eip155` network and a non-empty domain name and version.
    pub fn check(&self) -> Result<()> {
        self.chain_id()?;
        if self.asset_name.is_empty() || self.asset_version.is_empty() {
            return Err(Error::ChallengeMalformed("asset domain"));
        }
        Ok(())
    }
}

/// `eip155:<N>` → N (N ≥ 1). Anything else is `challenge_malformed`.
pub fn evm_chain_id(network: &str) -> Result<u64> {
    network
        .strip_prefix("eip155:")
        .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .ok_or(Error::ChallengeMalformed("network"))
}

/// A token's EIP-712 domain: `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomain {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
    pub verifying_contract: Address,
}

impl TokenDomain {
    fn eip712(&self) -> alloy_sol_types::Eip712Domain {
        alloy_sol_types::eip712_domain! {
            name: self.name.clone(),
            version: self.version.clone(),
            chain_id: self.chain_id,
            verifying_contract: alloy_primitives::Address::from(self.verifying_contract.0),
        }
    }

    /// The domain separator (what the token's `DOMAIN_SEPARATOR()` returns).
    pub fn separator(&self) -> [u8; 32] {
        self.eip712().hash_struct().0
    }
}

/// An EIP-3009 transfer authorization. `value` is in the token's atomic units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAuthorization {
    pub from: Address,
    pub to: Address,
    pub value: u64,
    pub valid_after: u64,
    pub valid_before: u64,
    pub nonce: [u8; 32],
}

impl TransferAuthorization {
    /// The EIP-712 digest: keccak(0x1901 ‖ domainSeparator ‖ hashStruct(message)).
    pub fn signing_hash(&self, domain: &TokenDomain) -> [u8; 32] {
        let msg = typed::TransferWithAuthorization {
            from: self.from.0.into(),
            to: self.to.0.into(),
            value: alloy_primitives::U256::from(self.value),
            validAfter: alloy_primitives::U256::from(self.valid_after),
            validBefore: alloy_primitives::U256::from(self.valid_before),
            nonce: self.nonce.into(),
        };
        msg.eip712_signing_hash(&domain.eip712()).0
    }

    /// `0x` + hex(r ‖ s ‖ v), low-s, v ∈ {27, 28}: the form the token's `bytes signature`
    /// overload and x402 payloads take.
    pub fn sign(&self, domain: &TokenDomain, wallet: &Wallet) -> Result<String> {
        if wallet.address() != self.from {
            return Err(Error::SignatureInvalid);
        }
        Ok(wallet.sign_hash(&self.signing_hash(domain)))
    }

    /// The authorization as `eth_signTypedData_v4` typed data (EIP-712 JSON, what an EIP-1193
    /// wallet signs): uint256 values as decimal strings, the nonce as 0x hex.
    pub fn typed_data(&self, domain: &TokenDomain) -> serde_json::Value {
        let field = |name: &str, ty: &str| serde_json::json!({ "name": name, "type": ty });
        serde_json::json!({
            "types": {
                "EIP712Domain": [field("name", "string"), field("version", "string"),
                    field("chainId", "uint256"), field("verifyingContract", "address")],
                "TransferWithAuthorization": [field("from", "address"), field("to", "address"),
                    field("value", "uint256"), field("validAfter", "uint256"),
                    field("validBefore", "uint256"), field("nonce", "bytes32")],
            },
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": domain.name, "version": domain.version, "chainId": domain.chain_id,
                "verifyingContract": domain.verifying_contract.to_checksum(),
            },
            "message": {
                "from": self.from.to_checksum(), "to": self.to.to_checksum(),
                "value": self.value.to_string(), "validAfter": self.valid_after.to_string(),
                "validBefore": self.valid_before.to_string(),
                "nonce": format!("0x{}", hex::encode(self.nonce)),
            },
        })
    }

    /// The signer of `signature`, which must be `from` (`signature_invalid`, opaque, otherwise).
    pub fn verify(&self, domain: &TokenDomain, signature: &str) -> Result<()> {
        if crate::wallet::recover_hash(&self.signing_hash(domain), signature)? == self.from {
            Ok(())
        } else {
            Err(Error::SignatureInvalid)
        }
    }
}

/// The authorization nonce of a challenge: keccak256("vlexivo-eip3009-nonce-v1\n" ‖ account ‖
/// "\n" ‖ challenge nonce). The challenge nonce is random and single-use, so one challenge has
/// exactly one authorization nonce, and the token contract refuses it a second time.
pub fn authorization_nonce(account: &str, challenge_nonce: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(NONCE_DOMAIN.len() + account.len() + 1 + challenge_nonce.len());
    input.extend_from_slice(NONCE_DOMAIN);
    input.extend_from_slice(account.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(challenge_nonce.as_bytes());
    keccak256(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> TokenDomain {
        TokenDomain {
            name: USDC_NAME.into(),
            version: USDC_VERSION.into(),
            chain_id: 31337,
            verifying_contract: Address::parse("0x5FbDB2315678afecb367f032d93F642f64180aa3").unwrap(),
        }
    }

    fn u256_be(x: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[24..].copy_from_slice(&x.to_be_bytes());
        out
    }

    fn word(a: &Address) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[12..].copy_from_slice(&a.0);
        out
    }

    /// EIP-712 encoded by hand from EIP-3009's text, independently of `sol!`.
    #[test]
    fn signing_hash_matches_hand_encoding() {
        let w =
            Wallet::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let d = domain();
        let a = TransferAuthorization {
            from: w.address(),
            to: Address::parse("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap(),
            value: 1_000,
            valid_after: 0,
            valid_before: 1_700_000_300,
            nonce: authorization_nonce("acct_0123456789abcdef0123", "AAAAAAAAAAAAAAAAAAAAAAAA"),
        };
        let mut enc =
            keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
                .to_vec();
        enc.extend(keccak256(b"USD Coin"));
        enc.extend(keccak256(b"2"));
        enc.extend(u256_be(31337));
        enc.extend(word(&d.verifying_contract));
        let separator = keccak256(&enc);
        assert_eq!(d.separator(), separator);
        let mut enc = keccak256(TYPE_STRING.as_bytes()).to_vec();
        enc.extend(word(&a.from));
        enc.extend(word(&a.to));
        enc.extend(u256_be(a.value));
        enc.extend(u256_be(a.valid_after));
        enc.extend(u256_be(a.valid_before));
        enc.extend(a.nonce);
        let struct_hash = keccak256(&enc);
        let mut msg = vec![0x19, 0x01];
        msg.extend(separator);
        msg.extend(struct_hash);
        assert_eq!(a.signing_hash(&d), keccak256(&msg));

        let sig = a.sign(&d, &w).unwrap();
        a.verify(&d, &sig).unwrap();
        // Any other domain (chain, contract, name, version) or field recovers someone else.
        let mut other = d.clone();
        other.chain_id = 1;
        assert_eq!(a.verify(&other, &sig), Err(Error::SignatureInvalid));
        let mut other = d.clone();
        other.version = "1".into();
        assert_eq!(a.verify(&other, &sig), Err(Error::SignatureInvalid));
        let mut t = a.clone();
        t.valid_before += 1;
        assert_eq!(t.verify(&d, &sig), Err(Error::SignatureInvalid));
        // Only the `from` wallet signs.
        let mut t = a.clone();
        t.from = t.to;
        assert_eq!(t.sign(&d, &w), Err(Error::SignatureInvalid));
    }

    #[test]
    fn nonce_is_bound_to_account_and_challenge() {
        let n = authorization_nonce("acct_a", "n1");
        assert_eq!(n, authorization_nonce("acct_a", "n1"));
        assert_ne!(n, authorization_nonce("acct_b", "n1"));
        assert_ne!(n, authorization_nonce("acct_a", "n2"));
        // The separator keeps ("acct_a\nn", "1") from meeting ("acct_a", "n\n1")-like splits.
        assert_ne!(authorization_nonce("acct_", "an1"), authorization_nonce("acct_a", "n1"));
    }

    #[test]
    fn networks() {
        assert_eq!(evm_chain_id("eip155:8453").unwrap(), 8453);
        for bad in ["sandbox", "eip155:", "eip155:0", "eip155:01", "eip155:-1", "eip155:1x", "solana:1"] {
            assert_eq!(evm_chain_id(bad).unwrap_err().code(), "challenge_malformed", "{bad}");
        }
    }

    #[test]
    fn terms_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(LiveTerms::from_env(env(&[])).unwrap(), None);
        let t = LiveTerms::from_env(env(&[
            ("VLX_NETWORK", "eip155:31337"),
            ("VLX_ASSET", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            ("VLX_PAY_TO", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((t.asset_name.as_str(), t.asset_version.as_str()), (USDC_NAME, USDC_VERSION));
        assert_eq!(t.domain().unwrap().chain_id, 31337);
        let e = LiveTerms::from_env(env(&[("VLX_NETWORK", "eip155:1")])).unwrap_err();
        assert_eq!(e.code(), "config_invalid");
        assert!(e.to_string().contains("VLX_ASSET"), "{e}");
        let e = LiveTerms::from_env(env(&[
            ("VLX_NETWORK", "eip155:1"),
            ("VLX_ASSET", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            ("VLX_PAY_TO", "nope"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("VLX_PAY_TO"), "{e}");
    }

    #[test]
    fn the_typed_data_a_browser_wallet_signs_hashes_to_the_signing_hash() {
        let (auth, domain) = (
            TransferAuthorization {
                from: Address([0x11; 20]),
                to: Address([0x22; 20]),
                value: 1_000,
                valid_after: 0,
                valid_before: 1_800_000_300,
                nonce: authorization_nonce("acct_1", "n"),
            },
            TokenDomain {
                name: "USD Coin".into(),
                version: "2".into(),
                chain_id: 31337,
                verifying_contract: Address([0x33; 20]),
            },
        );
        let typed: alloy_dyn_abi::TypedData = serde_json::from_value(auth.typed_data(&domain)).unwrap();
        assert_eq!(typed.eip712_signing_hash().unwrap().0, auth.signing_hash(&domain));
    }
}
