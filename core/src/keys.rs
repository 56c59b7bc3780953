//! The provider's `apiSecret` and the keys derived from it.
//!
//! A secret reads `sk_test_<43 base64url chars>` (sandbox) or `sk_live_…` (live): 32 random
//! bytes. Everything else is derived with HKDF-SHA256 (salt `vlexivo/v1`), each under its own
//! `info` label so no key can stand in for another:
//! - `account-id`: the public account id, `acct_` + 20 hex chars;
//! - `challenge-mac`: the HMAC key that authenticates challenges;
//! - `proof-token-hs256`: the HS256 key for proof tokens;
//! - `provider-auth`: what the facilitator stores (hashed) to authenticate the provider.
//!
//! The facilitator shows the secret once and keeps only the derived keys.

use crate::env::Entropy;
use crate::error::{Error, Result};
use base64::Engine;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

const SALT: &[u8] = b"vlexivo/v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Sandbox (simulated ledger) or live (on-chain settlement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Sandbox,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sandbox => "sandbox",
            Mode::Live => "live",
        }
    }

    fn secret_prefix(self) -> &'static str {
        match self {
            Mode::Sandbox => "sk_test_",
            Mode::Live => "sk_live_",
        }
    }

    fn publishable_prefix(self) -> &'static str {
        match self {
            Mode::Sandbox => "pk_test_",
            Mode::Live => "pk_live_",
        }
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sandbox" | "test" => Ok(Mode::Sandbox),
            "live" => Ok(Mode::Live),
            _ => Err(Error::Config(format!("mode must be \"sandbox\" or \"live\", not {s:?}"))),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys derived from one `apiSecret`. Debug never prints key material.
#[derive(Clone)]
pub struct ProviderKeys {
    pub account: String,
    pub mode: Mode,
    pub challenge_mac: [u8; 32],
    pub token_hs256: [u8; 32],
    /// SHA-256 of the derived `provider-auth` key: what the facilitator stores and compares.
    pub auth_digest: [u8; 32],
}

impl fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ProviderKeys {
    /// Derive every key from an `apiSecret`. The error never echoes the secret.
    pub fn from_secret(secret: &str) -> Result<Self> {
        let (mode, body) = if let Some(b) = secret.strip_prefix(Mode::Sandbox.secret_prefix()) {
            (Mode::Sandbox, b)
        } else if let Some(b) = secret.strip_prefix(Mode::Live.secret_prefix()) {
            (Mode::Live, b)
        } else {
            return Err(Error::Config("apiSecret must start with sk_test_ or sk_live_".into()));
        };
        let raw = B64
            .decode(body)
            .ok()
            .filter(|r| r.len() == 32)
            .ok_or_else(|| Error::Config("apiSecret is not a Vlexivo secret key".into()))?;
        let hk = Hkdf::<Sha256>::new(Some(SALT), &raw);
        let derive = |info: &[u8]| {
            let mut out = [0u8; 32];
            hk.expand(info, &mut out).expect("32 bytes is a valid HKDF length");
            out
        };
        let id = derive(b"account-id");
        let auth = derive(b"provider-auth");
        Ok(Self {
            account: format!("acct_{}", hex::encode(&id[..10])),
            mode,
            challenge_mac: derive(b"challenge-mac"),
            token_hs256: derive(b"proof-token-hs256"),
            auth_digest: Sha256::digest(auth).into(),
        })
    }

    /// The publishable key: safe in client code, names the account and mode only.
    pub fn publishable_key(&self) -> String {
        format!("{}{}", self.mode.publishable_prefix(), &self.account["acct_".len()..])
    }
}

/// A fresh `apiSecret` for `mode`.
pub fn generate_secret(mode: Mode, entropy: &dyn Entropy) -> String {
    let mut raw = [0u8; 32];
    entropy.fill(&mut raw);
    format!("{}{}", mode.secret_prefix(), B64.encode(raw))
}

/// Parse a publishable key back to (mode, account id).
pub fn parse_publishable_key(pk: &str) -> Result<(Mode, String)> {
    let (mode, rest) = if let Some(r) = pk.strip_prefix(Mode::Sandbox.publishable_prefix()) {
        (Mode::Sandbox, r)
    } else if let Some(r) = pk.strip_prefix(Mode::Live.publishable_prefix()) {
        (Mode::Live, r)
    } else {
        return Err(Error::Config("publishable key must start with pk_test_ or pk_live_".into()));
    };
    if rest.len() != 20 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Config("publishable key is malformed".into()));
    }
    Ok((mode, format!("acct_{rest}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededEntropy;

    #[test]
    fn derives_distinct_keys_deterministically() {
        let s = generate_secret(Mode::Sandbox, &SeededEntropy::new(7));
        assert!(s.starts_with("sk_test_") && s.len() == 8 + 43);
        let a = ProviderKeys::from_secret(&s).unwrap();
        let b = ProviderKeys::from_secret(&s).unwrap();
        assert_eq!(a.account, b.account);
        assert_eq!(a.challenge_mac, b.challenge_mac);
        assert_ne!(a.challenge_mac, a.token_hs256);
        assert!(a.account.starts_with("acct_") && a.account.len() == 25);
        assert_eq!(a.mode, Mode::Sandbox);
        assert_eq!(parse_publishable_key(&a.publishable_key()).unwrap(), (Mode::Sandbox, a.account.clone()));
        assert!(!format!("{a:?}").contains(&hex::encode(a.challenge_mac)));
    }

    #[test]
    fn rejects_bad_secrets_without_echoing_them() {
        for bad in ["", "sk_test_", "pk_test_abc", "sk_test_!!!!", "sk_prod_AAAA"] {
            let e = ProviderKeys::from_secret(bad).unwrap_err();
            assert_eq!(e.code(), "config_invalid");
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad));
            }
        }
    }
}
