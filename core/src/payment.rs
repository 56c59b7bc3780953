//! The payment step: what the payer sends the facilitator, and what the facilitator checks
//! before it charges. The facilitator's HTTP and ledger live in the `vlexivo-facilitator` crate;
//! the rules live here so every party agrees on them.

use crate::challenge::Challenge;
use crate::eip3009::{LiveTerms, TokenDomain, TransferAuthorization, authorization_nonce};
use crate::error::{Error, Result};
use crate::keys::Mode;
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
    /// EIP-712 signature, "0x" + 65 bytes hex: over [`authorization`] of the challenge in
    /// sandbox, over the EIP-3009 transfer of [`transfer_authorization`] in live mode.
    pub signature: String,
    /// Live mode: the authorization's validity window, unix seconds (`validAfter`, `validBefore`);
    /// 0 and the challenge's `exp` when absent. `validBefore` may not exceed the challenge's `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<u64>,
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

/// The EIP-3009 transfer a live challenge is paid with, by `payer`, valid from `valid_after`
/// until `valid_before`: to the challenge's `pay_to`, the price in atomic units, the nonce
/// derived from the challenge.
pub fn transfer_authorization(
    challenge: &Challenge,
    payer: Address,
    valid_after: u64,
    valid_before: u64,
) -> Result<(TransferAuthorization, TokenDomain)> {
    let terms = challenge.live_terms()?;
    let auth = TransferAuthorization {
        from: payer,
        to: terms.pay_to,
        value: challenge.price()?.to_atomic(),
        valid_after,
        valid_before,
        nonce: authorization_nonce(&challenge.account, &challenge.nonce),
    };
    Ok((auth, terms.domain()?))
}

/// Payer side: sign a challenge. A live challenge is paid with an EIP-3009 transfer valid
/// until the challenge's expiry; a sandbox one with the Vlexivo authorization.
pub fn sign(challenge: &Challenge, encoded: &str, wallet: &Wallet) -> Result<PaymentRequest> {
    if challenge.mode == Mode::Live.as_str() {
        let (auth, domain) = transfer_authorization(challenge, wallet.address(), 0, challenge.exp)?;
        return Ok(PaymentRequest {
            challenge: encoded.to_string(),
            payer: wallet.address().to_checksum(),
            signature: auth.sign(&domain, wallet)?,
            valid_after: Some(auth.valid_after),
            valid_before: Some(auth.valid_before),
        });
    }
    let auth = authorization(challenge, encoded)?;
    Ok(PaymentRequest {
        challenge: encoded.to_string(),
        payer: wallet.address().to_checksum(),
        signature: wallet.sign_authorization(&auth),
        valid_after: None,
        valid_before: None,
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

/// Facilitator side, first of all: the challenge must name this facilitator, whose public base
/// URL is `own` (both compared in [`crate::base_url`]'s normal form). A challenge naming another
/// one is refused (`challenge_mismatch`, nothing charged): a facilitator is never the back end
/// of a payment addressed to someone else, such as a relay that would keep the payer in doubt.
pub fn check_facilitator(challenge: &Challenge, own: &str) -> Result<()> {
    if crate::base_url::same(&challenge.facilitator, own) {
        Ok(())
    } else {
        Err(Error::ChallengeMismatch("facilitator"))
    }
}

/// Facilitator side: MAC under the provider's key, expiry, the payer the challenge names (if
/// any: `challenge_mismatch` for another wallet), and the payer's signature.
/// A wallet cannot pay with a signature made by another wallet (`signature_invalid`).
/// Sandbox only: a live challenge is checked by [`verify_live`].
pub fn verify(
    req: &PaymentRequest,
    challenge: Challenge,
    mac_key: &[u8; 32],
    now: u64,
) -> Result<VerifiedPayment> {
    challenge.verify(mac_key, now, CHALLENGE_LEEWAY_SECS)?;
    if challenge.mode != Mode::Sandbox.as_str() || req.valid_after.is_some() || req.valid_before.is_some() {
        return Err(Error::ModeMismatch { expected: "sandbox".into(), got: challenge.mode.clone() });
    }
    let payer = Address::parse(&req.payer)?;
    crate::payer_pricing::check_payer(challenge.payer.as_deref(), &payer)?;
    let auth = authorization(&challenge, &req.challenge)?;
    crate::wallet::verify_authorization(&auth, &req.signature, &payer)?;
    let price = challenge.price()?;
    Ok(VerifiedPayment { challenge, payer, price })
}

/// Least time an authorization must still be valid for when the facilitator relays it: a
/// transfer that can expire before it is mined is not worth sending.
pub const MIN_VALIDITY_SECS: u64 = 10;

/// A live payment request that passed every check the facilitator can make off chain: the
/// transfer to relay, its token domain and the payer's signature.
#[derive(Debug, Clone)]
pub struct VerifiedTransfer {
    pub payment: VerifiedPayment,
    pub authorization: TransferAuthorization,
    pub domain: TokenDomain,
    /// `0x` + 65 bytes hex, as the payer sent it (low-s, checked).
    pub signature: String,
}

/// Facilitator side, live mode: the MAC and expiry, the challenge's terms against the ones the
/// facilitator settles for this provider (`expected`: its token, network and the provider's
/// payout address), the authorization's window (`authorization_invalid`: not yet valid, valid
/// beyond the challenge, or too close to its end to be mined), and the payer's EIP-3009
/// signature under the token's domain (`signature_invalid`, opaque: a wrong chain id or
/// contract recovers another address). What only the chain knows (balance, nonce state) is the
/// settlement backend's to check.
pub fn verify_live(
    req: &PaymentRequest,
    challenge: Challenge,
    mac_key: &[u8; 32],
    expected: &LiveTerms,
    now: u64,
) -> Result<VerifiedTransfer> {
    challenge.verify(mac_key, now, CHALLENGE_LEEWAY_SECS)?;
    if challenge.mode != Mode::Live.as_str() {
        return Err(Error::ModeMismatch { expected: "live".into(), got: challenge.mode.clone() });
    }
    let terms = challenge.live_terms()?;
    if terms.network != expected.network {
        return Err(Error::AuthorizationInvalid("the challenge's network is not this facilitator's"));
    }
    if terms.asset != expected.asset
        || terms.asset_name != expected.asset_name
        || terms.asset_version != expected.asset_version
    {
        return Err(Error::AuthorizationInvalid(
            "the challenge's token is not the one this facilitator settles",
        ));
    }
    if terms.pay_to != expected.pay_to {
        return Err(Error::AuthorizationInvalid("pay_to is not the provider's payout address"));
    }
    let payer = Address::parse(&req.payer)?;
    crate::payer_pricing::check_payer(challenge.payer.as_deref(), &payer)?;
    let valid_after = req.valid_after.unwrap_or(0);
    let valid_before = req.valid_before.unwrap_or(challenge.exp);
    if valid_after > now {
        return Err(Error::AuthorizationInvalid("not valid yet (valid_after is in the future)"));
    }
    if valid_before > challenge.exp {
        return Err(Error::AuthorizationInvalid("valid_before is later than the challenge's expiry"));
    }
    if valid_before < now.saturating_add(MIN_VALIDITY_SECS) {
        return Err(Error::AuthorizationInvalid("expired, or expiring before it can be settled"));
    }
    let (auth, domain) = transfer_authorization(&challenge, payer, valid_after, valid_before)?;
    auth.verify(&domain, &req.signature)?;
    let price = challenge.price()?;
    Ok(VerifiedTransfer {
        payment: VerifiedPayment { challenge, payer, price },
        authorization: auth,
        domain,
        signature: req.signature.clone(),
    })
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
