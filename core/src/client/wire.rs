//! Reading what the payer receives: a 402 (is it a Vlexivo challenge, and for what?) and the
//! facilitator's answers (a receipt, a clear refusal, or an answer that says nothing).

use crate::challenge::Challenge;
use crate::error::{Error, Result};
use crate::money::Money;
use crate::payment::PaymentReceipt;
use serde::Deserialize;

/// Largest 402 or facilitator body the payer reads; executors stop reading there.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// A Vlexivo 402, decoded.
#[derive(Debug, Clone)]
pub struct PaymentRequired {
    pub encoded: String,
    pub challenge: Challenge,
    pub price: Money,
}

/// The challenge header's value among a response's headers, if any.
pub fn challenge_header<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    headers.into_iter().find(|(k, _)| k.eq_ignore_ascii_case(crate::headers::CHALLENGE)).map(|(_, v)| v)
}

/// Read a response: a 402 carrying a challenge in the `Vlexivo-Challenge` header or in the
/// JSON body's `challenge` field. Anything else is `not_payment_required`.
pub fn parse_payment_required<'a>(
    status: u16,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Result<PaymentRequired> {
    if status != 402 {
        return Err(Error::NotPaymentRequired);
    }
    let encoded = match challenge_header(headers) {
        Some(v) => v.to_string(),
        None => {
            #[derive(Deserialize)]
            struct B {
                challenge: String,
            }
            if body.len() > MAX_RESPONSE_BODY {
                return Err(Error::NotPaymentRequired);
            }
            serde_json::from_slice::<B>(body).map_err(|_| Error::NotPaymentRequired)?.challenge
        }
    };
    let challenge = Challenge::decode(&encoded)?;
    let price = challenge.price()?;
    Ok(PaymentRequired { encoded, challenge, price })
}

/// Header for the paid retry.
pub fn proof_header(token: &str) -> (&'static str, String) {
    (crate::headers::PROOF, token.to_string())
}

#[derive(Deserialize)]
struct ErrorBody {
    error: serde_json::Value,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    required: Option<String>,
    #[serde(default)]
    balance: Option<String>,
    #[serde(default)]
    currency: Option<String>,
}

/// Map a Vlexivo JSON error body (`{"error": code, "message": …}`) from a facilitator or a
/// paywall back to the typed error, so callers in every language see the same codes.
pub fn error_from_body(status: u16, body: &[u8]) -> Error {
    known_error(body).unwrap_or_else(|| {
        let code = parse_error_body(body)
            .and_then(|b| b.error.as_str().map(str::to_string))
            .unwrap_or_else(|| "http_error".into());
        let message =
            parse_error_body(body).and_then(|b| b.message).unwrap_or_else(|| format!("HTTP {status}"));
        Error::FacilitatorError { status, code, message }
    })
}

fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    if body.len() > MAX_RESPONSE_BODY {
        return None;
    }
    serde_json::from_slice::<ErrorBody>(body).ok()
}

/// The typed error of a body whose `error` is a code core knows.
fn known_error(body: &[u8]) -> Option<Error> {
    let b = parse_error_body(body)?;
    let code = b.error.as_str()?;
    let message = b.message.unwrap_or_default();
    let remote = "reported by the facilitator";
    Some(match code {
        "insufficient_funds" => Error::InsufficientFunds {
            required: b.required.unwrap_or_default(),
            balance: b.balance.unwrap_or_default(),
            currency: b.currency.unwrap_or_else(|| "usd".into()),
        },
        "amount_malformed" => Error::AmountMalformed(message),
        "challenge_malformed" => Error::ChallengeMalformed(remote),
        "challenge_mismatch" => Error::ChallengeMismatch(remote),
        "request_too_large" => Error::RequestTooLarge { limit: 0 },
        "mode_mismatch" => Error::ModeMismatch { expected: String::new(), got: message },
        "facilitator_error" => return None,
        _ => Error::from_code(code, &serde_json::json!({ "reason": message }))?,
    })
}

/// What a facilitator's answer to `POST /v1/payments` says about the payment.
#[derive(Debug)]
pub enum PayAnswer {
    /// Paid (or paid before: `replayed`).
    Receipt(PaymentReceipt),
    /// A clear refusal: nothing was charged.
    Refused(Error),
    /// Says nothing about the payment's fate (5xx, a redirect, a garbled or foreign body, a
    /// receipt for another payment): it may have been charged.
    Unclear(String),
}

/// Base64url segments and dots, within the verifier's size limit: what may go in a header.
fn is_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= crate::token::MAX_TOKEN_BYTES
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Classify an answer to the payment with `nonce`. `resent`: the same signed payment was sent
/// before without a clear answer, so `challenge_expired` no longer proves it was not charged
/// (the facilitator checks expiry before it looks the payment up).
pub fn classify_pay_answer(status: u16, body: &[u8], nonce: &str, resent: bool) -> PayAnswer {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<PaymentReceipt>(body) {
            // The token goes into the paid retry's header as it is: one that is not a compact
            // JWS (a CR/LF, a control byte: header injection) is no receipt we can use.
            Ok(r) if r.nonce == nonce && !is_token(&r.token) => {
                PayAnswer::Unclear("a receipt whose token is not a token".into())
            }
            Ok(r) if r.nonce == nonce => PayAnswer::Receipt(r),
            Ok(_) => PayAnswer::Unclear("a receipt for another payment".into()),
            Err(_) => PayAnswer::Unclear(format!("HTTP {status} without a receipt")),
        };
    }
    if (400..500).contains(&status)
        && let Some(e) = known_error(body)
        && !(resent && matches!(e, Error::ChallengeExpired))
    {
        return PayAnswer::Refused(e);
    }
    // Live mode: the chain refused or reverted the transfer. The facilitator records that
    // before it answers and never relays that authorization again, so this 5xx is a clear
    // "nothing moved" (any other 5xx, facilitator_unavailable included, may hide a payment).
    if status == 502
        && let Some(e @ Error::SettlementFailed(_)) = known_error(body)
    {
        return PayAnswer::Refused(e);
    }
    // Load shed: the facilitator refused the request before reading it, so this send charged
    // nothing. An earlier send whose answer was lost may have: after one, it proves nothing.
    if status == 503
        && !resent
        && let Some(e @ Error::FacilitatorOverloaded) = known_error(body)
    {
        return PayAnswer::Refused(e);
    }
    PayAnswer::Unclear(format!("HTTP {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_their_code() {
        for code in [
            "request_too_large",
            "challenge_malformed",
            "amount_zero",
            "token_replayed",
            "price_invalid",
            "signature_invalid",
            "top_up_refused",
            "mode_mismatch",
        ] {
            let body = format!(r#"{{"error":"{code}","message":"m"}}"#);
            assert_eq!(error_from_body(400, body.as_bytes()).code(), code);
        }
        let e = error_from_body(418, br#"{"error":"brand_new_code","message":"m"}"#);
        assert_eq!(e.code(), "facilitator_error");
        assert_eq!(e.http_status(), 418);
        let e = error_from_body(502, b"<html>");
        assert_eq!(e.to_string(), "facilitator answered 502 http_error: HTTP 502");
    }

    #[test]
    fn pay_answers_are_receipts_refusals_or_unclear() {
        let receipt = |nonce: &str| {
            format!(
                r#"{{"token":"t","tx_hash":"0x1","payer":"0xa","amount":"0.01","currency":"usd","balance":"1","nonce":"{nonce}","paid_at":1,"expires_at":301}}"#
            )
        };
        assert!(matches!(
            classify_pay_answer(200, receipt("n").as_bytes(), "n", false),
            PayAnswer::Receipt(_)
        ));
        assert!(matches!(
            classify_pay_answer(200, receipt("m").as_bytes(), "n", false),
            PayAnswer::Unclear(_)
        ));
        assert!(matches!(classify_pay_answer(200, b"{}", "n", false), PayAnswer::Unclear(_)));
        // A settlement the chain refused is a clear refusal; the facilitator being unavailable
        // is not (the relay may be on its way).
        let failed = br#"{"error":"settlement_failed","message":"the transfer reverted on chain"}"#;
        match classify_pay_answer(502, failed, "n", false) {
            PayAnswer::Refused(e) => assert_eq!(e.code(), "settlement_failed"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify_pay_answer(503, failed, "n", false), PayAnswer::Unclear(_)));
        let unavailable = br#"{"error":"facilitator_unavailable","message":"m"}"#;
        assert!(matches!(classify_pay_answer(503, unavailable, "n", false), PayAnswer::Unclear(_)));
        // Shed before it was read: not charged, unless an earlier send was.
        let overloaded = br#"{"error":"facilitator_overloaded","message":"m"}"#;
        match classify_pay_answer(503, overloaded, "n", false) {
            PayAnswer::Refused(e) => assert_eq!((e.code(), e.http_status()), ("facilitator_overloaded", 503)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify_pay_answer(503, overloaded, "n", true), PayAnswer::Unclear(_)));
        assert!(matches!(classify_pay_answer(502, overloaded, "n", false), PayAnswer::Unclear(_)));
        let funds = br#"{"error":"insufficient_funds","required":"0.01","balance":"0","currency":"usd"}"#;
        match classify_pay_answer(402, funds, "n", true) {
            PayAnswer::Refused(e) => assert_eq!(e.code(), "insufficient_funds"),
            other => panic!("{other:?}"),
        }
        let expired = br#"{"error":"challenge_expired","message":"m"}"#;
        assert!(matches!(classify_pay_answer(402, expired, "n", false), PayAnswer::Refused(_)));
        assert!(matches!(classify_pay_answer(402, expired, "n", true), PayAnswer::Unclear(_)));
        for (status, body) in [
            (502, &b"bad gateway"[..]),
            (500, br#"{"error":"internal","message":"m"}"#),
            (503, br#"{"error":"facilitator_unavailable"}"#),
            (302, b""),
            (400, b"<html>"),
            (429, br#"{"error":"slow_down"}"#),
            (400, br#"{"error":"facilitator_error"}"#),
        ] {
            assert!(
                matches!(classify_pay_answer(status, body, "n", false), PayAnswer::Unclear(_)),
                "{status}"
            );
        }
    }
}
