//! The payer's pay-and-retry flow, without HTTP: bindings and the Rust client do the I/O and
//! call these steps, so every language decides the same way.
//!
//! 1. [`parse_payment_required`]: is this response a Vlexivo 402, and for what?
//! 2. [`Payer::prepare`]: check it matches the request made, reserve budget, sign.
//! 3. POST the prepared body to the facilitator; [`Payer::finish`] reads its answer,
//!    commits or releases the reservation, and yields the proof header for the retry.

use crate::challenge::{Challenge, resource_path};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::payment::{PaymentReceipt, PaymentRequest};
use crate::policy::{Budget, Reservation, SpendingPolicy};
use crate::wallet::Wallet;
use serde::Deserialize;

/// Largest 402 or facilitator body the client reads.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// A Vlexivo 402, decoded.
#[derive(Debug, Clone)]
pub struct PaymentRequired {
    pub encoded: String,
    pub challenge: Challenge,
    pub price: Money,
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
    let from_header = headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(crate::headers::CHALLENGE))
        .map(|(_, v)| v.to_string());
    let encoded = match from_header {
        Some(v) => v,
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

/// Scheme+authority and path of an absolute URL ("http://h:1/a?b" → ("h:1", "/a")).
pub fn split_url(url: &str) -> Result<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| Error::RequestMalformed("URL must be absolute http(s)".into()))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    let host = host.rsplit('@').next().unwrap_or(host);
    if host.is_empty() {
        return Err(Error::RequestMalformed("URL has no host".into()));
    }
    let path = resource_path(&rest[end..]);
    Ok((host, if path.is_empty() { "/" } else { path }))
}

/// When and how much to top up a wallet before paying.
#[derive(Debug, Clone)]
pub struct AutoTopUp {
    pub enabled: bool,
    pub trigger_balance: Money,
    pub top_up_amount: Money,
}

impl AutoTopUp {
    pub fn new(trigger_balance: &str, top_up_amount: &str) -> Result<Self> {
        Ok(Self {
            enabled: true,
            trigger_balance: Money::parse(trigger_balance, Currency::Usd)?,
            top_up_amount: Money::parse(top_up_amount, Currency::Usd)?.positive()?,
        })
    }

    /// How much to add before paying `price` from `balance`, if anything: when the balance
    /// after this payment would fall below the trigger (or cannot cover it), add
    /// `top_up_amount`, or more if that alone would not cover the price.
    pub fn amount_before(&self, balance: &Money, price: &Money) -> Result<Option<Money>> {
        if !self.enabled {
            return Ok(None);
        }
        let after = balance.amount() - price.amount();
        if after >= self.trigger_balance.amount() {
            return Ok(None);
        }
        let shortfall = Money::new((-after).max(rust_decimal::Decimal::ZERO), price.currency())?;
        Ok(Some(if shortfall.amount() > self.top_up_amount.amount() {
            shortfall
        } else {
            self.top_up_amount
        }))
    }
}

/// A payment ready to send to the facilitator.
#[derive(Debug)]
pub struct PreparedPayment {
    /// `{facilitator}/v1/payments`.
    pub pay_url: String,
    pub facilitator: String,
    /// JSON body for the POST.
    pub body: String,
    pub price: Money,
    pub host: String,
    pub nonce: String,
    reservation: Option<Reservation>,
}

/// The payer: a wallet, a budget, and optionally the one facilitator it trusts.
#[derive(Debug)]
pub struct Payer {
    wallet: Wallet,
    budget: Budget,
    facilitator: Option<String>,
    https_only: bool,
}

impl Payer {
    pub fn new(wallet: Wallet, policy: SpendingPolicy, facilitator: Option<String>) -> Self {
        Self {
            wallet,
            budget: Budget::new(policy),
            facilitator: facilitator.map(|f| f.trim_end_matches('/').to_string()),
            https_only: false,
        }
    }

    /// Trust only facilitators reached over https: a challenge naming a plain-http one is
    /// `facilitator_untrusted`, refused before anything is signed or reserved.
    pub fn with_https_only(mut self, on: bool) -> Self {
        self.https_only = on;
        self
    }

    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The facilitator this payer uses: the configured one, else the challenge's.
    pub fn facilitator_for(&self, pr: &PaymentRequired) -> String {
        self.facilitator.clone().unwrap_or_else(|| pr.challenge.facilitator.clone())
    }

    /// Check the challenge is for the request that was made (method, path) and for the
    /// configured facilitator, reserve the price against the budget, and sign.
    pub fn prepare(
        &self,
        pr: &PaymentRequired,
        method: &str,
        url: &str,
        now: u64,
    ) -> Result<PreparedPayment> {
        let c = &pr.challenge;
        let (host, path) = split_url(url)?;
        if !c.method.eq_ignore_ascii_case(method) {
            return Err(Error::ChallengeMismatch("method"));
        }
        if c.path != path {
            return Err(Error::ChallengeMismatch("path"));
        }
        if now > c.exp {
            return Err(Error::ChallengeExpired);
        }
        let facilitator = c.facilitator.trim_end_matches('/');
        if let Some(mine) = &self.facilitator {
            if mine != facilitator {
                return Err(Error::ChallengeMismatch("facilitator"));
            }
        }
        if !(facilitator.starts_with("http://") || facilitator.starts_with("https://")) {
            return Err(Error::ChallengeMalformed("facilitator"));
        }
        if self.https_only && !facilitator.starts_with("https://") {
            return Err(Error::FacilitatorUntrusted { facilitator: facilitator.to_string() });
        }
        let reservation = self.budget.reserve(host, &pr.price, now)?;
        let req: PaymentRequest = crate::payment::sign(c, &pr.encoded, &self.wallet)?;
        Ok(PreparedPayment {
            pay_url: format!("{facilitator}/v1/payments"),
            facilitator: facilitator.to_string(),
            body: serde_json::to_string(&req).expect("serializes"),
            price: pr.price,
            host: host.to_string(),
            nonce: c.nonce.clone(),
            reservation: Some(reservation),
        })
    }

    /// Read the facilitator's answer: a receipt commits the budget reservation; anything else
    /// releases it and becomes a typed error (insufficient funds carries the amounts).
    pub fn finish(&self, mut prepared: PreparedPayment, status: u16, body: &[u8]) -> Result<PaymentReceipt> {
        let reservation = prepared.reservation.take().expect("prepared once");
        if (200..300).contains(&status) {
            match serde_json::from_slice::<PaymentReceipt>(body) {
                Ok(r) if r.nonce == prepared.nonce => {
                    self.budget.commit(reservation);
                    return Ok(r);
                }
                _ => {
                    self.budget.release(reservation);
                    return Err(Error::FacilitatorError {
                        status,
                        code: "bad_receipt".into(),
                        message: "facilitator answered with an unexpected receipt".into(),
                    });
                }
            }
        }
        self.budget.release(reservation);
        Err(error_from_body(status, body))
    }

    /// Give back a reservation when the facilitator could not be reached.
    pub fn abandon(&self, mut prepared: PreparedPayment) {
        if let Some(r) = prepared.reservation.take() {
            self.budget.release(r);
        }
    }
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
    let parsed =
        if body.len() <= MAX_RESPONSE_BODY { serde_json::from_slice::<ErrorBody>(body).ok() } else { None };
    let Some(b) = parsed else {
        return Error::FacilitatorError {
            status,
            code: "http_error".into(),
            message: format!("HTTP {status}"),
        };
    };
    let code = b.error.as_str().unwrap_or("http_error").to_string();
    let message = b.message.unwrap_or_default();
    let remote = "reported by the facilitator";
    match code.as_str() {
        "insufficient_funds" => Error::InsufficientFunds {
            required: b.required.unwrap_or_default(),
            balance: b.balance.unwrap_or_default(),
            currency: b.currency.unwrap_or_else(|| "usd".into()),
        },
        "amount_malformed" => Error::AmountMalformed(message),
        "amount_negative" => Error::AmountNegative,
        "amount_not_finite" => Error::AmountNotFinite,
        "amount_zero" => Error::AmountZero,
        "currency_unsupported" => Error::CurrencyUnsupported(message),
        "challenge_malformed" => Error::ChallengeMalformed(remote),
        "challenge_invalid" => Error::ChallengeInvalid,
        "challenge_expired" => Error::ChallengeExpired,
        "challenge_mismatch" => Error::ChallengeMismatch(remote),
        "wallet_key_invalid" => Error::WalletKeyInvalid,
        "address_invalid" => Error::AddressInvalid,
        "signature_invalid" => Error::SignatureInvalid,
        "provider_unknown" => Error::ProviderUnknown,
        "unauthorized" => Error::Unauthorized,
        "payment_conflict" => Error::PaymentConflict,
        "top_up_refused" => Error::TopUpRefused(message),
        "token_replayed" => Error::TokenReplayed,
        "request_too_large" => Error::RequestTooLarge { limit: 0 },
        "request_malformed" => Error::RequestMalformed(message),
        "mode_mismatch" => Error::ModeMismatch { expected: String::new(), got: message },
        "price_invalid" => Error::PriceInvalid(message),
        "internal" => Error::Internal(message),
        _ => Error::FacilitatorError { status, code, message },
    }
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
    }

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(split_url("http://127.0.0.1:8080/a/b?x=1").unwrap(), ("127.0.0.1:8080", "/a/b"));
        assert_eq!(split_url("https://user@api.example/").unwrap(), ("api.example", "/"));
        assert_eq!(split_url("https://api.example").unwrap(), ("api.example", "/"));
        assert_eq!(split_url("ftp://x/").unwrap_err().code(), "request_malformed");
    }

    #[test]
    fn https_only_refuses_a_plain_http_facilitator_before_signing() {
        use crate::env::SeededEntropy;
        use crate::keys::{Mode, generate_secret};
        use crate::paywall::{Paywall, PaywallConfig, RequestInfo};
        let entropy = SeededEntropy::new(7);
        let secret = generate_secret(Mode::Sandbox, &entropy);
        let now = 1_700_000_000;
        let challenge_from = |facilitator: &str| {
            let mut cfg = PaywallConfig::new(secret.clone());
            cfg.facilitator_url = facilitator.into();
            let wall = Paywall::new(cfg).unwrap();
            let price = Money::parse("0.001", Currency::Usd).unwrap();
            let req = RequestInfo::new("GET", "https", Some("api.example"), "/x");
            let r = wall.challenge(&req, &price, "per-call", now, &entropy).unwrap();
            let headers = r.headers.iter().map(|(k, v)| (*k, v.as_str()));
            parse_payment_required(402, headers, r.body.as_bytes()).unwrap()
        };
        let wallet = || Wallet::generate(&entropy);
        let strict = Payer::new(wallet(), SpendingPolicy::default(), None).with_https_only(true);
        let e = strict.prepare(&challenge_from("http://fac.example"), "GET", "https://api.example/x", now);
        let e = e.unwrap_err();
        assert_eq!(e.code(), "facilitator_untrusted");
        assert!(e.to_string().contains("http://fac.example"), "{e}");
        assert!(strict.budget().reserved_total().is_zero());
        let ok = strict.prepare(&challenge_from("https://fac.example"), "GET", "https://api.example/x", now);
        strict.abandon(ok.unwrap());
        // Without the option, plain http is still payable (loopback sandboxes).
        let lax = Payer::new(wallet(), SpendingPolicy::default(), None);
        lax.abandon(
            lax.prepare(&challenge_from("http://fac.example"), "GET", "https://api.example/x", now).unwrap(),
        );
    }

    #[test]
    fn auto_top_up_amounts() {
        let usd = |s| Money::parse(s, Currency::Usd).unwrap();
        let t = AutoTopUp::new("1.00", "10.00").unwrap();
        assert_eq!(t.amount_before(&usd("5"), &usd("0.01")).unwrap(), None);
        assert_eq!(t.amount_before(&usd("1.005"), &usd("0.01")).unwrap(), Some(usd("10")));
        assert_eq!(t.amount_before(&usd("0"), &usd("25")).unwrap(), Some(usd("25")));
    }
}
