//! The facilitator API's JSON request bodies (`docs/protocol.md` §8) and every check made on
//! them before anything is written: onboarding a provider, rotating its secret, a faucet top-up.
//! `POST /v1/payments` is [`crate::payment::PaymentRequest`]. The facilitator only reads the
//! bytes and acts on the typed values returned here; the fuzz targets reach the same rules
//! without building the service.

use crate::error::{Error, Result};
use crate::keys::Mode;
use crate::money::{Currency, Money};
use crate::token::TokenAlg;
use crate::wallet::Address;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A provider's name is kept to this many characters (it is shown in the dashboard).
pub const MAX_NAME_CHARS: usize = 200;
/// How long a rotation keeps the previous secrets working unless told otherwise: a day.
pub const DEFAULT_ROTATION_OVERLAP_SECS: u64 = 24 * 3600;
/// The longest overlap a rotation may give the secrets it supersedes: 30 days.
pub const MAX_ROTATION_OVERLAP_SECS: u64 = 30 * 24 * 3600;

/// A JSON body as `T`; a syntax error names its line and column, a wrong shape the field
/// (`request_malformed`, 400). Every body of the API is an object: serde would also fill a
/// struct from an array (`[]` as every field's default), which no client means.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let value = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::RequestMalformed("body must be a JSON object".into()));
    }
    Ok(value)
}

/// A body that may be empty (or only whitespace): then every field takes its default.
pub fn from_optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { from_json(bytes) }
}

fn json_error(e: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let msg = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("body is not valid JSON (line {}, column {})", e.line(), e.column())
        }
        Category::Data => {
            let mut s = e.to_string();
            // On a character boundary: the echoed field may be any UTF-8.
            let mut end = s.len().min(200);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            format!("body does not have the expected fields: {s}")
        }
    };
    Error::RequestMalformed(msg)
}

/// `POST /v1/providers` request. Every field is optional; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateProviderRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_alg: Option<String>,
    /// Live providers: where their payments are paid to (`0x…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
}

/// A provider to onboard, checked: what the facilitator creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProvider {
    pub mode: Mode,
    pub token_alg: TokenAlg,
    /// At most [`MAX_NAME_CHARS`] characters.
    pub name: Option<String>,
    /// Live providers only (and always for them).
    pub payout: Option<Address>,
}

impl CreateProviderRequest {
    /// Checked against the facilitator it is sent to (its mode, and the token algorithm it gives
    /// providers that do not choose): a mode other than the facilitator's is `mode_mismatch`; a
    /// live provider without a payout address, a sandbox one with one, or an unknown mode or
    /// algorithm is `request_malformed`; a payout address that is not one is `address_invalid`.
    pub fn check(self, facilitator: Mode, default_alg: TokenAlg) -> Result<NewProvider> {
        let mode = match self.mode.as_deref() {
            None => facilitator,
            Some(m) => m
                .parse::<Mode>()
                .map_err(|_| Error::RequestMalformed("mode must be \"sandbox\" or \"live\"".into()))?,
        };
        if mode != facilitator {
            return Err(Error::ModeMismatch {
                expected: facilitator.as_str().into(),
                got: mode.as_str().into(),
            });
        }
        let payout = match (facilitator, self.payout_address.as_deref()) {
            (Mode::Live, Some(a)) => Some(Address::parse(a)?),
            (Mode::Live, None) => {
                return Err(Error::RequestMalformed("a live provider needs a payout_address (0x…)".into()));
            }
            (Mode::Sandbox, Some(_)) => {
                return Err(Error::RequestMalformed("payout_address is for live providers".into()));
            }
            (Mode::Sandbox, None) => None,
        };
        let token_alg = match self.token_alg.as_deref() {
            None => default_alg,
            Some(a) => TokenAlg::parse(a)
                .map_err(|_| Error::RequestMalformed("token_alg must be \"HS256\" or \"EdDSA\"".into()))?,
        };
        let name = self.name.map(|n| n.chars().take(MAX_NAME_CHARS).collect());
        Ok(NewProvider { mode, token_alg, name, payout })
    }
}

/// `POST /v1/providers/me/rotate` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotateRequest {
    /// How long the account's current secrets keep working (default 86400, at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_secs: Option<u64>,
}

impl RotateRequest {
    /// The overlap in seconds: the default when absent, `request_malformed` beyond
    /// [`MAX_ROTATION_OVERLAP_SECS`].
    pub fn overlap_secs(&self) -> Result<u64> {
        match self.overlap_secs {
            None => Ok(DEFAULT_ROTATION_OVERLAP_SECS),
            Some(s) if s <= MAX_ROTATION_OVERLAP_SECS => Ok(s),
            Some(_) => Err(Error::RequestMalformed(format!(
                "overlap_secs is at most {MAX_ROTATION_OVERLAP_SECS} (30 days)"
            ))),
        }
    }
}

/// `POST /v1/wallets/{address}/topup` request; `amount` is a decimal string (a JSON number is
/// accepted too).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpRequest {
    /// The value as sent: a number is read from its own text, never through a float.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10.00"))]
    pub amount: Box<RawValue>,
}

impl TopUpRequest {
    /// A top-up of a decimal string (`"10.00"`).
    pub fn of(amount: &str) -> Self {
        let text = serde_json::to_string(amount).expect("a string serializes");
        Self { amount: RawValue::from_string(text).expect("a JSON string is a JSON value") }
    }

    /// The amount, in dollars and strictly positive. A JSON number is read from its exact text
    /// under the same rules as a string (`0.00001300000000000000000001` is over-precise, not
    /// 0.000013), so anything the money rules refuse keeps its code (`amount_malformed`,
    /// `amount_precision`, `amount_too_large`, …); neither a string nor a number is
    /// `request_malformed`.
    pub fn amount(&self) -> Result<Money> {
        let raw = self.amount.get();
        let amount = match raw.as_bytes().first() {
            Some(b'"') => {
                let s: String = serde_json::from_str(raw).map_err(|e| json_error(&e))?;
                Money::parse(&s, Currency::Usd)?
            }
            // serde_json checked the number's grammar, which money's parser also accepts.
            Some(b'-' | b'0'..=b'9') => Money::parse(raw, Currency::Usd)?,
            _ => return Err(Error::RequestMalformed("amount must be a decimal string".into())),
        };
        amount.positive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYOUT: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    fn create(json: &str, facilitator: Mode) -> Result<NewProvider> {
        from_optional_json::<CreateProviderRequest>(json.as_bytes())?.check(facilitator, TokenAlg::Hs256)
    }

    #[test]
    fn an_empty_body_takes_the_facilitators_defaults() {
        for body in ["", "  \n", "{}"] {
            let p = create(body, Mode::Sandbox).unwrap();
            assert_eq!(
                p,
                NewProvider { mode: Mode::Sandbox, token_alg: TokenAlg::Hs256, name: None, payout: None }
            );
        }
        let p = create(r#"{"token_alg":"eddsa","name":"Acme","extra":1}"#, Mode::Sandbox).unwrap();
        assert_eq!((p.token_alg, p.name.as_deref()), (TokenAlg::EdDsa, Some("Acme")));
    }

    #[test]
    fn a_body_is_an_object_never_an_array_filling_the_fields() {
        for body in ["[]", " [null]", "[\"live\"]", "null", "1"] {
            let e = create(body, Mode::Sandbox).unwrap_err();
            assert_eq!(e.code(), "request_malformed", "{body}");
        }
        assert_eq!(
            from_json::<RotateRequest>(b"[]").unwrap_err().to_string(),
            from_json::<RotateRequest>(b" [] ").unwrap_err().to_string()
        );
    }

    #[test]
    fn a_live_provider_needs_a_payout_address_and_only_it_may_give_one() {
        let p = create(&format!(r#"{{"mode":"live","payout_address":"{PAYOUT}"}}"#), Mode::Live).unwrap();
        assert_eq!(p.payout.unwrap().to_checksum(), PAYOUT);
        let cases = [
            (r#"{"mode":"live"}"#, Mode::Live, "request_malformed"),
            (r#"{"payout_address":"0x12"}"#, Mode::Live, "address_invalid"),
            (&format!(r#"{{"payout_address":"{PAYOUT}"}}"#)[..], Mode::Sandbox, "request_malformed"),
            (r#"{"mode":"live"}"#, Mode::Sandbox, "mode_mismatch"),
            (r#"{"mode":"sandbox"}"#, Mode::Live, "mode_mismatch"),
            (r#"{"mode":"mainnet"}"#, Mode::Sandbox, "request_malformed"),
            (r#"{"token_alg":"none"}"#, Mode::Sandbox, "request_malformed"),
            (r#"{"name":7}"#, Mode::Sandbox, "request_malformed"),
            ("{", Mode::Sandbox, "request_malformed"),
        ];
        for (body, mode, code) in cases {
            assert_eq!(create(body, mode).unwrap_err().code(), code, "{body} on {mode:?}");
        }
    }

    #[test]
    fn names_are_cut_to_200_characters_on_a_character_boundary() {
        let long = "é".repeat(300);
        let p = create(&format!(r#"{{"name":"{long}"}}"#), Mode::Sandbox).unwrap();
        assert_eq!(p.name.unwrap().chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn a_shape_error_echoes_at_most_200_bytes_and_never_splits_a_character() {
        // serde echoes the offending string or field name; one of the two paddings puts the
        // 200th byte inside a two-byte character (String::truncate there panicked).
        for pad in ["", "a"] {
            let echoed = format!("{pad}{}", "é".repeat(150));
            let e = from_json::<RotateRequest>(format!(r#"{{"overlap_secs":"{echoed}"}}"#).as_bytes())
                .unwrap_err();
            assert_eq!(e.code(), "request_malformed");
            let body = format!(r#"{{"{echoed}":1,"challenge":"","payer":"","signature":""}}"#);
            let e = from_json::<crate::payment::PaymentRequest>(body.as_bytes()).unwrap_err();
            assert!(e.to_string().len() < 300, "{e}");
        }
    }

    #[test]
    fn rotation_overlap_defaults_to_a_day_and_stops_at_thirty_days() {
        let r = |s: &str| from_optional_json::<RotateRequest>(s.as_bytes()).and_then(|r| r.overlap_secs());
        assert_eq!(r("").unwrap(), DEFAULT_ROTATION_OVERLAP_SECS);
        assert_eq!(r(r#"{"overlap_secs":0}"#).unwrap(), 0);
        assert_eq!(
            r(&format!(r#"{{"overlap_secs":{MAX_ROTATION_OVERLAP_SECS}}}"#)).unwrap(),
            MAX_ROTATION_OVERLAP_SECS
        );
        for bad in [
            format!(r#"{{"overlap_secs":{}}}"#, MAX_ROTATION_OVERLAP_SECS + 1),
            r#"{"overlap_secs":-1}"#.into(),
            r#"{"overlap_secs":"60"}"#.into(),
        ] {
            assert_eq!(r(&bad).unwrap_err().code(), "request_malformed", "{bad}");
        }
    }

    #[test]
    fn top_ups_are_positive_dollars_from_a_string_or_a_number() {
        let amount = |s: &str| from_json::<TopUpRequest>(s.as_bytes()).and_then(|t| t.amount());
        assert_eq!(amount(r#"{"amount":"10.00"}"#).unwrap().to_string(), "10");
        assert_eq!(amount(r#"{"amount":0.1}"#).unwrap().to_string(), "0.1");
        assert_eq!(amount(r#"{ "amount" : 2.5e1 }"#).unwrap().to_string(), "25");
        assert_eq!(amount(r#"{"amount":"\u0031"}"#).unwrap().to_string(), "1");
        assert_eq!(TopUpRequest::of("0.25").amount().unwrap().to_atomic(), 250_000);
        for (body, code) in [
            (r#"{"amount":"0"}"#, "amount_zero"),
            (r#"{"amount":0}"#, "amount_zero"),
            (r#"{"amount":"-1"}"#, "amount_negative"),
            (r#"{"amount":-1}"#, "amount_negative"),
            (r#"{"amount":"ten"}"#, "amount_malformed"),
            (r#"{"amount":0.0000001}"#, "amount_precision"),
            // A float would read this as 0.000013 and accept it.
            (r#"{"amount":0.00001300000000000000000001}"#, "amount_precision"),
            (r#"{"amount":1e400}"#, "amount_too_large"),
            (r#"{"amount":1e-400}"#, "amount_precision"),
            (r#"{"amount":true}"#, "request_malformed"),
            (r#"{"amount":null}"#, "request_malformed"),
            (r#"{"amount":["1"]}"#, "request_malformed"),
            (r#"{}"#, "request_malformed"),
            (r#"[]"#, "request_malformed"),
        ] {
            assert_eq!(amount(body).unwrap_err().code(), code, "{body}");
        }
    }
}
