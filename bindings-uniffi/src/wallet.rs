//! The payer's wallet: a secp256k1 key that signs payment authorizations. The key never leaves
//! the device; balances and top-ups go through [`crate::VlexivoPayments`], which knows the
//! facilitator.

use crate::VlexivoError;
use std::sync::Arc;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::wallet::Wallet as CoreWallet;

#[derive(Debug, uniffi::Object)]
pub struct Wallet {
    pub(crate) inner: CoreWallet,
}

#[uniffi::export]
impl Wallet {
    /// A wallet from a private key: 64 hex digits, `0x` optional. Errors never echo the key.
    #[uniffi::constructor]
    pub fn from_key(hex: String) -> Result<Arc<Self>, VlexivoError> {
        Ok(Arc::new(Self { inner: CoreWallet::from_hex(&hex)? }))
    }

    /// A fresh wallet from the OS random number generator. Store [`Wallet::secret_key_hex`]
    /// in the platform keystore (Android Keystore-wrapped storage, iOS Keychain) to keep it.
    #[uniffi::constructor]
    pub fn generate() -> Arc<Self> {
        Arc::new(Self { inner: CoreWallet::generate(&OsEntropy) })
    }

    /// The EIP-55 checksummed address (`0x…`): what the facilitator credits and debits.
    pub fn address(&self) -> String {
        self.inner.address().to_checksum()
    }

    /// The private key (`0x` + 64 hex), for secure storage only. Never log it.
    pub fn secret_key_hex(&self) -> String {
        self.inner.secret_hex()
    }
}
