//! Provider key storage, in one place for both engines: the row a provider is stored as (keys
//! derived from its secret; the secret itself is never stored) and the conversions between that
//! row and the in-memory [`Provider`] the payment path uses.

use super::at_rest::{AtRest, provider_aad};
use super::ledger::{Provider, TokenAlg};
use std::sync::Arc;
use vlexivo_core::token::{SigningKey, TokenIssuer};
use vlexivo_core::{Error, Result};

/// A provider as stored (`providers` table, same columns on SQLite and PostgreSQL).
#[derive(Clone)]
pub(crate) struct ProviderRow {
    pub account: String,
    pub mode: String,
    pub token_alg: String,
    pub name: Option<String>,
    pub challenge_mac: Vec<u8>,
    pub token_hs256: Vec<u8>,
    pub auth_digest: Vec<u8>,
    pub created_at: i64,
    /// A rotated secret's row: the account it pays into (its own id is derived from the secret).
    pub canonical: Option<String>,
    /// When this secret stops being accepted (the end of a rotation's overlap window).
    pub retire_at: Option<i64>,
    /// Not a column: written with a rotation's new row, the `retire_at` of the account's other rows.
    pub retire_others_at: Option<i64>,
}

impl std::fmt::Debug for ProviderRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRow").field("account", &self.account).finish_non_exhaustive()
    }
}

/// The columns, in the order every query reads them.
pub(crate) const COLUMNS: &str = "account, mode, token_alg, name, challenge_mac, token_hs256, auth_digest, created_at, canonical, retire_at";

impl From<&Provider> for ProviderRow {
    fn from(p: &Provider) -> Self {
        ProviderRow {
            account: p.key_account.clone(),
            canonical: (p.key_account != p.account).then(|| p.account.clone()),
            retire_at: p.retire_at.map(|t| t as i64),
            retire_others_at: p.retire_others_at.map(|t| t as i64),
            mode: p.mode.as_str().into(),
            token_alg: p.token_alg.as_str().into(),
            name: p.name.clone(),
            challenge_mac: p.stored_keys[0].clone(),
            token_hs256: p.stored_keys[1].clone(),
            auth_digest: p.auth_digest.to_vec(),
            created_at: p.created_at as i64,
        }
    }
}

fn key32(v: Vec<u8>) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| Error::Config("stored provider key is not 32 bytes".into()))
}

impl ProviderRow {
    /// Seal keys stored plain (a facilitator with a master key, on a database written without
    /// one); true if the row changed and must be written back.
    pub fn seal_if_plain(
        &mut self,
        at_rest: &AtRest,
        entropy: &dyn vlexivo_core::env::Entropy,
    ) -> Result<bool> {
        if !at_rest.needs_sealing(&self.challenge_mac) && !at_rest.needs_sealing(&self.token_hs256) {
            return Ok(false);
        }
        for (column, stored) in
            [("challenge_mac", &mut self.challenge_mac), ("token_hs256", &mut self.token_hs256)]
        {
            if at_rest.needs_sealing(stored) {
                let key = key32(std::mem::take(stored))?;
                *stored = at_rest.seal(&provider_aad(&self.account, column), &key, entropy);
            }
        }
        Ok(true)
    }

    /// The in-memory provider, its keys opened; EdDSA providers share the facilitator's issuer.
    pub fn into_provider(self, eddsa: &Arc<TokenIssuer>, at_rest: &AtRest) -> Result<Provider> {
        let token_alg = TokenAlg::parse(&self.token_alg)?;
        let token_hs256 = at_rest.open(&provider_aad(&self.account, "token_hs256"), &self.token_hs256)?;
        let challenge_mac =
            at_rest.open(&provider_aad(&self.account, "challenge_mac"), &self.challenge_mac)?;
        let issuer = match token_alg {
            TokenAlg::Hs256 => Arc::new(TokenIssuer::new(SigningKey::Hs256(token_hs256))?),
            TokenAlg::EdDsa => eddsa.clone(),
        };
        Ok(Provider {
            key_account: self.account.clone(),
            account: self.canonical.unwrap_or(self.account),
            retire_at: self.retire_at.map(|t| t.max(0) as u64),
            retire_others_at: None,
            mode: self.mode.parse()?,
            token_alg,
            name: self.name,
            challenge_mac,
            token_hs256,
            auth_digest: key32(self.auth_digest)?,
            created_at: self.created_at as u64,
            stored_keys: [self.challenge_mac, self.token_hs256],
            issuer,
        })
    }

    pub fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(ProviderRow {
            account: r.get(0)?,
            mode: r.get(1)?,
            token_alg: r.get(2)?,
            name: r.get(3)?,
            challenge_mac: r.get(4)?,
            token_hs256: r.get(5)?,
            auth_digest: r.get(6)?,
            created_at: r.get(7)?,
            canonical: r.get(8)?,
            retire_at: r.get(9)?,
            retire_others_at: None,
        })
    }

    pub fn from_pg(r: &tokio_postgres::Row) -> std::result::Result<Self, tokio_postgres::Error> {
        Ok(ProviderRow {
            account: r.try_get(0)?,
            mode: r.try_get(1)?,
            token_alg: r.try_get(2)?,
            name: r.try_get(3)?,
            challenge_mac: r.try_get(4)?,
            token_hs256: r.try_get(5)?,
            auth_digest: r.try_get(6)?,
            created_at: r.try_get(7)?,
            canonical: r.try_get(8)?,
            retire_at: r.try_get(9)?,
            retire_others_at: None,
        })
    }
}
