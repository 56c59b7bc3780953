//! Keys at rest: what the database holds that would let its reader sign — each provider's
//! challenge-MAC and HS256 token keys (derived from its `apiSecret`) and the facilitator's
//! Ed25519 seed — is sealed under a master key from the environment (`VLX_MASTER_KEY`), so a
//! copy of the database (a backup, a replica, a stolen disk) mints no proof token, forges no
//! challenge and signs no checkpoint.
//!
//! Sealed value: `0x01 ‖ nonce (12) ‖ AES-256-GCM(key) (32 + 16 tag)`, 61 bytes, with the row it
//! belongs to (`provider:<account>:challenge_mac`, `meta:ed25519_seed`) as associated data, so
//! a sealed key copied to another row does not open. A 32-byte value is a key stored plain: what
//! a sandbox facilitator without a master key writes, and what databases written before sealing
//! hold; a facilitator started with a master key seals those on start.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use vlexivo_core::env::Entropy;
use vlexivo_core::{Error, Result};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// Length of a sealed 32-byte key.
pub const SEALED_LEN: usize = 1 + NONCE_LEN + 32 + 16;

/// The master key (`VLX_MASTER_KEY`: 64 hex digits, or 32 bytes in base64/base64url).
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Parse the environment's form. The error never echoes the value.
    pub fn parse(text: &str) -> Result<Self> {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let t = text.trim();
        let raw = hex::decode(t.strip_prefix("0x").unwrap_or(t))
            .ok()
            .or_else(|| STANDARD.decode(t).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(t).ok())
            .filter(|r| r.len() == 32)
            .ok_or_else(|| {
                Error::Config(
                    "VLX_MASTER_KEY must be 32 bytes: 64 hex digits (`openssl rand -hex 32`) or base64"
                        .into(),
                )
            })?;
        let key =
            UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| Error::Internal("AES key rejected".into()))?;
        Ok(MasterKey(LessSafeKey::new(key)))
    }
}

/// How this facilitator stores keys: sealed under its master key, or plain (sandbox without one).
#[derive(Debug, Default)]
pub struct AtRest {
    master: Option<std::sync::Arc<MasterKey>>,
}

/// Associated data naming the row a key belongs to.
pub fn provider_aad(account: &str, column: &str) -> String {
    format!("provider:{account}:{column}")
}
pub const SEED_AAD: &str = "meta:ed25519_seed";

impl AtRest {
    pub fn new(master: Option<std::sync::Arc<MasterKey>>) -> Self {
        AtRest { master }
    }

    pub fn is_sealing(&self) -> bool {
        self.master.is_some()
    }

    /// The bytes to store for `key`: sealed with a master key, else the key itself.
    pub fn seal(&self, aad: &str, key: &[u8; 32], entropy: &dyn Entropy) -> Vec<u8> {
        let Some(m) = &self.master else { return key.to_vec() };
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce);
        let mut buf = key.to_vec();
        m.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .expect("AES-GCM seals 32 bytes");
        let mut out = Vec::with_capacity(SEALED_LEN);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    /// The key stored as `stored`. A master key opens sealed values and refuses plain ones (a
    /// facilitator with a master key sealed every plain key on start); without one, only plain
    /// values can be read.
    pub fn open(&self, aad: &str, stored: &[u8]) -> Result<[u8; 32]> {
        match (&self.master, stored.len()) {
            (None, 32) => Ok(stored.try_into().expect("32 bytes")),
            (None, SEALED_LEN) if stored[0] == VERSION => Err(Error::Config(
                "the database's keys are sealed under a master key: set VLX_MASTER_KEY".into(),
            )),
            (Some(_), 32) => Err(Error::Config(format!(
                "{aad} is stored unsealed although this facilitator seals keys: restart it to seal them"
            ))),
            (Some(m), SEALED_LEN) if stored[0] == VERSION => {
                let nonce = Nonce::try_assume_unique_for_key(&stored[1..1 + NONCE_LEN])
                    .map_err(|_| Error::Internal("nonce length".into()))?;
                let mut buf = stored[1 + NONCE_LEN..].to_vec();
                let plain = m.0.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf).map_err(|_| {
                    Error::Config(
                        "VLX_MASTER_KEY does not open the keys in the database (they were sealed under another master key)"
                            .into(),
                    )
                })?;
                Ok(<[u8; 32]>::try_from(&plain[..])
                    .map_err(|_| Error::Internal("sealed key length".into()))?)
            }
            _ => Err(Error::Config(format!("{aad}: stored key has an unknown format"))),
        }
    }

    /// Like [`AtRest::open`], but also reads a plain value while sealing: on start, before
    /// what was stored plain is sealed.
    pub fn open_or_plain(&self, aad: &str, stored: &[u8]) -> Result<[u8; 32]> {
        match <[u8; 32]>::try_from(stored) {
            Ok(plain) => Ok(plain),
            Err(_) => self.open(aad, stored),
        }
    }

    /// A stored value that must be (re)written sealed: plain while this facilitator seals.
    pub fn needs_sealing(&self, stored: &[u8]) -> bool {
        self.master.is_some() && stored.len() == 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlexivo_core::env::SeededEntropy;

    #[test]
    fn seals_opens_and_refuses_the_wrong_key_or_row() {
        let e = SeededEntropy::new(3);
        let a = AtRest::new(Some(MasterKey::parse(&"11".repeat(32)).unwrap().into()));
        let b = AtRest::new(Some(MasterKey::parse(&"22".repeat(32)).unwrap().into()));
        let key = [7u8; 32];
        let sealed = a.seal("provider:acct_1:token_hs256", &key, &e);
        assert_eq!(sealed.len(), SEALED_LEN);
        assert!(!sealed.windows(32).any(|w| w == key), "the key does not appear in what is stored");
        assert_eq!(a.open("provider:acct_1:token_hs256", &sealed).unwrap(), key);
        // Another master key, another row, no master key, a tampered byte: refused.
        assert!(
            b.open("provider:acct_1:token_hs256", &sealed)
                .unwrap_err()
                .to_string()
                .contains("another master key")
        );
        assert!(a.open("provider:acct_2:token_hs256", &sealed).is_err());
        assert!(AtRest::default().open("x", &sealed).unwrap_err().to_string().contains("set VLX_MASTER_KEY"));
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(a.open("provider:acct_1:token_hs256", &bad).is_err());
        // Plain storage without a master key; a master key refuses plain values.
        let plain = AtRest::default();
        assert_eq!(plain.seal("x", &key, &e), key.to_vec());
        assert_eq!(plain.open("x", &key).unwrap(), key);
        assert!(a.needs_sealing(&key) && !plain.needs_sealing(&key) && !a.needs_sealing(&sealed));
        assert!(a.open("x", &key).is_err());
    }

    #[test]
    fn master_key_forms_and_errors() {
        use base64::Engine;
        let raw = [9u8; 32];
        for text in [
            hex::encode(raw),
            format!("0x{}", hex::encode(raw)),
            base64::engine::general_purpose::STANDARD.encode(raw),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
        ] {
            assert!(MasterKey::parse(&text).is_ok(), "{text}");
        }
        let err = MasterKey::parse("secret-but-short").unwrap_err().to_string();
        assert!(err.contains("64 hex digits") && !err.contains("secret-but-short"), "{err}");
    }
}
