//! Payment lists (`GET /v1/providers/me/payments`, the dashboard's table): the filters a list
//! is asked with, its page size, and opaque cursors. A cursor is the position of the last row
//! served, sealed with an HMAC over the account and the filters, so it cannot be edited, forged,
//! or carried over to another provider or another filter; any such cursor is refused as
//! `request_malformed` (400).

use crate::error::{Error, Result};
use crate::wallet::Address;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Tag bytes kept in a cursor: 128 bits, beyond guessing.
const TAG_LEN: usize = 16;
const VERSION: u8 = 1;
/// The longest route filter accepted (routes are stored as the paywall named them).
const MAX_ROUTE_LEN: usize = 2048;
/// `limit`: the page size when none is asked for, and the largest.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// The `limit` query parameter: absent is [`DEFAULT_LIMIT`]; else an integer in
/// `1..=`[`MAX_LIMIT`] (`request_malformed` otherwise).
pub fn parse_limit(value: Option<&str>) -> Result<u32> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => {
            l.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                Error::RequestMalformed(format!("limit must be an integer in 1..={MAX_LIMIT}"))
            })
        }
    }
}

/// Which payments a list holds: every filter is optional; `from` is inclusive and `to` exclusive
/// (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    /// The resource (route) exactly as recorded.
    pub route: Option<String>,
    /// The payer's address in EIP-55 form.
    pub payer: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl PaymentFilter {
    /// From query parameters (`route`, `payer`, `from`, `to`); empty values mean no filter.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let some = |k: &str| get(k).filter(|v| !v.is_empty());
        let route = some("route");
        if route.as_ref().is_some_and(|r| r.len() > MAX_ROUTE_LEN) {
            return Err(Error::RequestMalformed(format!("route is at most {MAX_ROUTE_LEN} bytes")));
        }
        let payer = some("payer")
            .map(|p| {
                Address::parse(p.trim()).map(|a| a.to_checksum()).map_err(|_| {
                    Error::RequestMalformed("payer must be an address (0x + 40 hex digits)".into())
                })
            })
            .transpose()?;
        let secs = |k: &str| {
            some(k)
                .map(|v| {
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| Error::RequestMalformed(format!("{k} must be a time in Unix seconds")))
                })
                .transpose()
        };
        Ok(Self { route, payer, from: secs("from")?, to: secs("to")? })
    }

    /// Whether a record passes (for lists filtered in memory).
    pub fn admits(&self, resource: &str, payer: &str, paid_at: i64) -> bool {
        self.route.as_deref().is_none_or(|r| r == resource)
            && self.payer.as_deref().is_none_or(|p| p == payer)
            && self.from.is_none_or(|f| paid_at >= f)
            && self.to.is_none_or(|t| paid_at < t)
    }
}

/// Seals and opens cursors (the key derives from the facilitator's signing key, so every
/// facilitator sharing a database accepts the others' cursors).
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey([redacted])")
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(message);
    m.finalize().into_bytes().into()
}

impl CursorKey {
    pub fn derive(seed: &[u8; 32]) -> Self {
        Self(hmac_sha256(seed, b"vlexivo/payments-cursor/v1"))
    }

    fn message(account: &str, f: &PaymentFilter, position: i64) -> Vec<u8> {
        let mut m = Vec::with_capacity(96);
        let mut field = |b: Option<&[u8]>| match b {
            None => m.push(0),
            Some(b) => {
                m.push(1);
                m.extend_from_slice(&(b.len() as u64).to_be_bytes());
                m.extend_from_slice(b);
            }
        };
        field(Some(account.as_bytes()));
        field(f.route.as_deref().map(str::as_bytes));
        field(f.payer.as_deref().map(str::as_bytes));
        field(f.from.map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
        field(f.to.map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
        m.extend_from_slice(&position.to_be_bytes());
        m
    }

    /// The cursor that continues after `position` under these filters.
    pub fn seal(&self, account: &str, f: &PaymentFilter, position: i64) -> String {
        let tag = hmac_sha256(&self.0, &Self::message(account, f, position));
        let mut out = Vec::with_capacity(1 + 8 + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&position.to_be_bytes());
        out.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The position a cursor continues after; refused unless this facilitator sealed it for this
    /// account and these filters.
    pub fn open(&self, account: &str, f: &PaymentFilter, cursor: &str) -> Result<i64> {
        let refused =
            || Error::RequestMalformed("cursor is not one this facilitator issued for this list".into());
        let raw = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| refused())?;
        if raw.len() != 1 + 8 + TAG_LEN || raw[0] != VERSION {
            return Err(refused());
        }
        let position = i64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
        let tag = hmac_sha256(&self.0, &Self::message(account, f, position));
        let same: bool = subtle::ConstantTimeEq::ct_eq(&tag[..TAG_LEN], &raw[9..]).into();
        if !same {
            return Err(refused());
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        CursorKey::derive(&[7; 32])
    }

    #[test]
    fn a_cursor_opens_only_for_its_account_filters_and_key() {
        let f = PaymentFilter { route: Some("GET /a".into()), ..Default::default() };
        let c = key().seal("acct_1", &f, 42);
        // The wire form is stable (facilitators of different versions share a database): this
        // value is computed independently with Python's hmac module.
        assert_eq!(c, "AQAAAAAAAAAqhCp4XXYggOYJO9BJ7p0lpA");
        assert_eq!(key().open("acct_1", &f, &c).unwrap(), 42);
        assert!(key().open("acct_2", &f, &c).is_err(), "another account");
        assert!(key().open("acct_1", &PaymentFilter::default(), &c).is_err(), "other filters");
        let other = CursorKey::derive(&[8; 32]);
        assert!(other.open("acct_1", &f, &c).is_err(), "another facilitator key");
        // Every single-bit change of the decoded cursor is refused.
        let raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        for i in 0..raw.len() * 8 {
            let mut t = raw.clone();
            t[i / 8] ^= 1 << (i % 8);
            let e = key().open("acct_1", &f, &URL_SAFE_NO_PAD.encode(&t)).unwrap_err();
            assert_eq!(e.code(), "request_malformed");
        }
        for junk in ["", "x", "!!!!", &c[..c.len() - 1]] {
            assert!(key().open("acct_1", &f, junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn filters_parse_and_refuse_bad_values() {
        let q = |k: &str| match k {
            "payer" => Some("0x52908400098527886e0f7030069857d2e4169ee7".to_string()),
            "from" => Some("10".into()),
            "route" => Some(String::new()),
            _ => None,
        };
        let f = PaymentFilter::parse(q).unwrap();
        assert_eq!(f.payer.as_deref(), Some("0x52908400098527886E0F7030069857D2E4169EE7"));
        assert_eq!((f.route.as_deref(), f.from, f.to), (None, Some(10), None));
        assert!(f.admits("x", "0x52908400098527886E0F7030069857D2E4169EE7", 10));
        assert!(!f.admits("x", "0x52908400098527886E0F7030069857D2E4169EE7", 9));
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("1000")).unwrap(), MAX_LIMIT);
        for bad in ["0", "1001", "-1", "", "ten"] {
            assert_eq!(parse_limit(Some(bad)).unwrap_err().code(), "request_malformed", "{bad:?}");
        }
        for (k, v) in [("payer", "bob"), ("from", "-1"), ("to", "soon")] {
            let e = PaymentFilter::parse(|q| (q == k).then(|| v.to_string())).unwrap_err();
            assert_eq!(e.code(), "request_malformed", "{k}={v}");
        }
    }
}
