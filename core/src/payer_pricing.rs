//! Pricing by payer (the article's usage-based discounts): the payer hint a client sends on its
//! unpaid request, the rule that binds a challenge priced for a payer to that payer, and the
//! facilitator's per-payer usage answer.
//!
//! The hint (`Vlexivo-Payer: 0x…`) is unverified: it only lets the provider's price resolver
//! quote that wallet's price. The challenge then names the wallet (its `payer` field, under the
//! MAC), the facilitator refuses to let any other wallet pay it, and the paid retry is priced
//! again for the payer its proof proves: a wallet that hints another's address to get that
//! wallet's discount is refused (`challenge_mismatch` at the facilitator, `token_underpaid` at
//! the paywall), never served cheaper.

use crate::error::{Error, Result};
use crate::wallet::Address;
use serde::{Deserialize, Serialize};

/// Longest hint value read (an address is 42 characters; anything longer is not one).
const MAX_HINT_BYTES: usize = 64;

/// The payer a `Vlexivo-Payer` header names, in EIP-55 form; `None` when it is absent or not
/// an address (a malformed hint is ignored: the request is priced as anyone's, never refused).
pub fn payer_hint(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    if v.is_empty() || v.len() > MAX_HINT_BYTES {
        return None;
    }
    Address::parse(v).ok().map(|a| a.to_checksum())
}

/// Who a request is priced for: the payer its proof proves, else the one it hints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PricedPayer {
    /// EIP-55 address.
    pub address: String,
    /// `true`: from a proof whose signature, audience and time verified; `false`: a hint.
    pub proven: bool,
}

/// Facilitator side: a challenge that names a payer may be paid by that payer only
/// (`challenge_mismatch`, checked before the signature: nothing is charged).
pub fn check_payer(named: Option<&str>, payer: &Address) -> Result<()> {
    match named {
        Some(n) if Address::parse(n).ok().as_ref() != Some(payer) => Err(Error::ChallengeMismatch("payer")),
        _ => Ok(()),
    }
}

/// Largest `since` accepted (year 9999): beyond it a timestamp is a unit mistake (ms).
const MAX_SINCE: u64 = 253_402_300_799;

/// The `since` query parameter of the usage endpoint: unix seconds, a decimal integer; absent
/// means since the beginning. Anything else is `request_malformed`.
pub fn parse_since(value: Option<&str>) -> Result<u64> {
    let Some(v) = value else { return Ok(0) };
    let bad = || Error::RequestMalformed("since must be unix seconds (a non-negative integer)".into());
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    v.parse::<u64>().ok().filter(|s| *s <= MAX_SINCE).ok_or_else(bad)
}

/// `GET /v1/providers/me/payers/{address}/usage?since=T`: what this payer paid this provider
/// since `since` (inclusive), by payment time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// EIP-55 address.
    pub payer: String,
    /// Unix seconds.
    pub since: u64,
    /// Payments counted (live mode: not failed on chain).
    pub count: u64,
    /// Their sum, a canonical decimal.
    pub total: String,
    pub currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    #[test]
    fn hints_are_addresses_or_nothing() {
        assert_eq!(payer_hint(Some(A)).as_deref(), Some(A));
        assert_eq!(payer_hint(Some(&A.to_ascii_lowercase())).as_deref(), Some(A));
        assert_eq!(payer_hint(Some(&format!(" {A} "))).as_deref(), Some(A));
        for bad in ["", "0x", "nobody", "0x70997970c51812dc3a010c7d01b50e0d17dc79c", &A.replace('C', "c")[..]]
        {
            assert_eq!(payer_hint(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(payer_hint(Some(&"0".repeat(100))), None);
        assert_eq!(payer_hint(None), None);
    }

    #[test]
    fn a_named_payer_binds() {
        let a = Address::parse(A).unwrap();
        let b = Address::parse("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC").unwrap();
        check_payer(None, &b).unwrap();
        check_payer(Some(A), &a).unwrap();
        assert_eq!(check_payer(Some(A), &b).unwrap_err().code(), "challenge_mismatch");
    }

    #[test]
    fn since_is_unix_seconds() {
        assert_eq!(parse_since(None).unwrap(), 0);
        assert_eq!(parse_since(Some("1764547200")).unwrap(), 1_764_547_200);
        for bad in ["", "-1", "1.5", "2026-11-01", "abc", " 1", "1764547200000", "99999999999999"] {
            assert_eq!(parse_since(Some(bad)).unwrap_err().code(), "request_malformed", "{bad:?}");
        }
    }
}
