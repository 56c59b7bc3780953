//! The payment step: what the payer sends the facilitator, and what the facilitator checks
//! before it charges. The facilitator's HTTP and ledger live in the `vlexivo-facilitator` crate;
//! the rules live here so every party agrees on them.

use crate::challenge::Challenge;
use crate::error::{Error, Result};
use crate::money::Money;
use crate::token::{ProofClaims, TOKEN_TTL_SECS};
use crate::wallet::{Address, PaymentAuthorization, Wallet};
use serde::{Deserialize, Serialize};

/// Leeway on the challenge's expiry when the facilitator checks it.
pub const CHALLENGE_LEEWAY_SECS: u64 = 5;

/// Body of `POST /v1/payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// The challenge exactly as received (base64url).
    pub challenge: String,
    /// The payer's address (EIP-55).
    pub payer: String,
    /// EIP-712 signature over [`authorization`] of the challenge, "0x" + 65 bytes hex.
    pub signature: String,
}

/// `POST /v1/wallets/{address}/topup` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpReceipt {
    pub address: String,
    pub amount: String,
    pub balance: String,
    pub currency: String,
    pub tx_hash: String,
}

/// Body of a successful `POST /v1/payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentReceipt {
    pub token: String,
    pub tx_hash: String,
    pub payer: String,
    pub amount: String,
    pub currency: String,
    /// The payer's balance after this payment.
    pub balance: String,
    pub nonce: String,
    pub paid_at: u64,
    pub expires_at: u64,
    /// True when this challenge had already been paid: same token, nothing debited.
    #[serde(default)]
    pub replayed: bool,
}

/// EIP-712 chain id for a network: "sandbox" → 0, "eip155:N" → N.
pub fn chain_id(network: &str) -> Result<u64> {
    if network == "sandbox" {
        return Ok(0);
    }
    network.strip_prefix("eip155:").and_then(|n| n.parse().ok()).ok_or(Error::ChallengeMalformed("network"))
}

/// The authorization a payer signs for a challenge: its digest, the payee account, the amount
/// in atomic units, the currency and the challenge's expiry as the deadline.
pub fn authorization(challenge: &Challenge, encoded: &str) -> Result<PaymentAuthorization> {
    let price = challenge.price()?;
    Ok(PaymentAuthorization {
        challenge_hash: Challenge::digest(encoded),
        payee: challenge.account.clone(),
        amount_atomic: price.to_atomic(),
        currency: challenge.currency.clone(),
        deadline: challenge.exp,
        chain_id: chain_id(&challenge.network)?,
    })
}

/// Payer side: sign a challenge.
pub fn sign(challenge: &Challenge, encoded: &str, wallet: &Wallet) -> Result<PaymentRequest> {
    let auth = authorization(challenge, encoded)?;
    Ok(PaymentRequest {
        challenge: encoded.to_string(),
        payer: wallet.address().to_checksum(),
        signature: wallet.sign_authorization(&auth),
    })
}

/// A payment request that passed every check: charge `price` to `payer`.
#[derive(Debug, Clone)]
pub struct VerifiedPayment {
    pub challenge: Challenge,
    pub payer: Address,
    pub price: Money,
}

/// Decode a payment request's challenge without trusting it yet: the facilitator reads the
/// account from it to find the provider's MAC key, then calls [`verify`].
pub fn decode(req: &PaymentRequest) -> Result<Challenge> {
    Challenge::decode(&req.challenge)
}

/// Facilitator side: MAC under the provider's key, expiry, and the payer's signature.
/// A wallet cannot pay with a signature made by another wallet (`signature_invalid`).
pub fn verify(
    req: &PaymentRequest,
    challenge: Challenge,
    mac_key: &[u8; 32],
    now: u64,
) -> Result<VerifiedPayment> {
    challenge.verify(mac_key, now, CHALLENGE_LEEWAY_SECS)?;
    let payer = Address::parse(&req.payer)?;
    let auth = authorization(&challenge, &req.challenge)?;
    crate::wallet::verify_authorization(&auth, &req.signature, &payer)?;
    let price = challenge.price()?;
    Ok(VerifiedPayment { challenge, payer, price })
}

/// The proof token's claims for a settled payment.
pub fn claims(p: &VerifiedPayment, tx_hash: &str, issuer: &str, now: u64) -> ProofClaims {
    let c = &p.challenge;
    ProofClaims {
        jti: c.nonce.clone(),
        iss: issuer.to_string(),
        aud: c.account.clone(),
        sub: p.payer.to_checksum(),
        txh: tx_hash.to_string(),
        amt: c.amount.clone(),
        cur: c.currency.clone(),
        res: c.resource(),
        bdy: c.body_sha256.clone(),
        mode: c.mode.clone(),
        net: c.network.clone(),
        iat: now,
        exp: now + TOKEN_TTL_SECS,
    }
}
