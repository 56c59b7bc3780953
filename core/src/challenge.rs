//! The 402 challenge: what this call costs and where to pay, authenticated by the provider.
//!
//! Wire form: base64url (no padding) of a compact JSON object whose fields appear in the order
//! declared below. The MAC is HMAC-SHA256 under the `challenge-mac` key (see [`crate::keys`])
//! over `"vlexivo-challenge-v1\n"` followed by the same JSON without the `mac` field. Issuing a
//! challenge writes nothing anywhere: the MAC is what lets the facilitator trust it later.

use crate::env::Entropy;
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const MAC_DOMAIN: &[u8] = b"vlexivo-challenge-v1\n";

/// Largest encoded challenge accepted (and issued).
pub const MAX_CHALLENGE_BYTES: usize = 4096;
/// Random bytes in a nonce (144 bits; 24 base64url characters).
pub const NONCE_BYTES: usize = 18;
/// Default challenge lifetime.
pub const DEFAULT_CHALLENGE_TTL_SECS: u64 = 300;
/// Longest path bound into a challenge.
pub const MAX_PATH_BYTES: usize = 2048;

/// A decoded challenge. Field order is the canonical order on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Protocol version (1).
    pub v: u8,
    /// Single-use nonce, base64url, ≥ 128 random bits. Becomes the token's `jti`.
    pub nonce: String,
    /// Price as a canonical decimal string ("0.001").
    pub amount: String,
    pub currency: String,
    /// Pricing scope; "per-call" today.
    pub scope: String,
    /// Resource binding: HTTP method (upper case), origin (`https://api.example.com`, in the
    /// normal form of [`crate::origin`]) and path (no query string).
    pub method: String,
    pub origin: String,
    pub path: String,
    /// Optional binding to the request body: base64url SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// Provider account id (`acct_…`): the payee and the token's `aud`.
    pub account: String,
    /// Base URL of the facilitator where this challenge is paid.
    pub facilitator: String,
    /// "sandbox" or "live".
    pub mode: String,
    /// Settlement network ("sandbox", or CAIP-2 such as "eip155:31337").
    pub network: String,
    /// Live mode only (absent in sandbox): the settlement terms the payer's EIP-3009
    /// authorization is made for ([`crate::eip3009::LiveTerms`]): the token contract, its
    /// EIP-712 domain name and version, and the provider's payout address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// The payer (EIP-55) this challenge was priced for, from its request's payer hint: only
    /// that wallet may pay it ([`crate::payer_pricing`]). Absent: anyone may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    pub iat: u64,
    pub exp: u64,
    /// base64url HMAC-SHA256; empty while computing the MAC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

/// What a provider's route asks for, from which a challenge is made.
#[derive(Debug, Clone)]
pub struct ChallengeParams<'a> {
    pub price: &'a Money,
    pub scope: &'a str,
    pub method: &'a str,
    /// The provider's origin, in normal form ([`crate::origin`]).
    pub origin: &'a str,
    pub path: &'a str,
    pub body_sha256: Option<&'a str>,
    pub account: &'a str,
    pub facilitator: &'a str,
    pub mode: &'a str,
    pub network: &'a str,
    /// Live mode's settlement terms (their `network` is the one above).
    pub live: Option<&'a crate::eip3009::LiveTerms>,
    /// The payer (EIP-55) the price was computed for, if the request hinted one.
    pub payer: Option<&'a str>,
    pub ttl_secs: u64,
}

impl Challenge {
    /// Create and MAC a challenge. Pure: `now` and `entropy` are injected.
    pub fn create(
        p: &ChallengeParams<'_>,
        mac_key: &[u8; 32],
        now: u64,
        entropy: &dyn Entropy,
    ) -> Result<Self> {
        if p.path.len() > MAX_PATH_BYTES {
            return Err(Error::ChallengeTooLarge { limit: MAX_CHALLENGE_BYTES });
        }
        let mut c = Challenge {
            v: crate::PROTOCOL_VERSION,
            nonce: crate::env::random_b64(entropy, NONCE_BYTES),
            amount: p.price.to_string(),
            currency: p.price.currency().code().to_string(),
            scope: p.scope.to_string(),
            method: p.method.to_ascii_uppercase(),
            origin: p.origin.to_string(),
            path: resource_path(p.path).to_string(),
            body_sha256: p.body_sha256.map(str::to_string),
            account: p.account.to_string(),
            facilitator: p.facilitator.to_string(),
            mode: p.mode.to_string(),
            network: p.network.to_string(),
            asset: p.live.map(|t| t.asset.to_checksum()),
            asset_name: p.live.map(|t| t.asset_name.clone()),
            asset_version: p.live.map(|t| t.asset_version.clone()),
            pay_to: p.live.map(|t| t.pay_to.to_checksum()),
            payer: p.payer.map(str::to_string),
            iat: now,
            exp: now.saturating_add(p.ttl_secs),
            mac: String::new(),
        };
        c.mac = B64.encode(c.compute_mac(mac_key));
        Ok(c)
    }

    /// The exact bytes the MAC covers.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(MAC_DOMAIN);
        if self.mac.is_empty() {
            serde_json::to_writer(&mut out, self).expect("challenge serializes");
        } else {
            let mut unsigned = self.clone();
            unsigned.mac.clear();
            serde_json::to_writer(&mut out, &unsigned).expect("challenge serializes");
        }
        out
    }

    fn compute_mac(&self, key: &[u8; 32]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
        m.update(&self.mac_input());
        m.finalize().into_bytes().into()
    }

    /// Check the MAC in constant time. Opaque on failure.
    pub fn verify_mac(&self, key: &[u8; 32]) -> Result<()> {
        let given = B64.decode(&self.mac).map_err(|_| Error::ChallengeInvalid)?;
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
        m.update(&self.mac_input());
        m.verify_slice(&given).map_err(|_| Error::ChallengeInvalid)
    }

    /// Verify MAC, version and expiry (with `leeway_secs` of clock skew).
    pub fn verify(&self, key: &[u8; 32], now: u64, leeway_secs: u64) -> Result<()> {
        self.verify_mac(key)?;
        if now > self.exp.saturating_add(leeway_secs) {
            return Err(Error::ChallengeExpired);
        }
        Ok(())
    }

    /// base64url of the compact JSON: the header value.
    pub fn encode(&self) -> String {
        B64.encode(serde_json::to_vec(self).expect("challenge serializes"))
    }

    /// Decode a header value, with size limits and structural checks; does not check the MAC.
    pub fn decode(s: &str) -> Result<Self> {
        if s.len() > MAX_CHALLENGE_BYTES {
            return Err(Error::ChallengeTooLarge { limit: MAX_CHALLENGE_BYTES });
        }
        let json = B64
            .decode(s.trim().trim_end_matches('='))
            .map_err(|_| Error::ChallengeMalformed("not base64url"))?;
        let c: Challenge =
            serde_json::from_slice(&json).map_err(|_| Error::ChallengeMalformed("not challenge JSON"))?;
        c.check_shape()?;
        Ok(c)
    }

    fn check_shape(&self) -> Result<()> {
        if self.v != crate::PROTOCOL_VERSION {
            return Err(Error::ChallengeMalformed("unsupported version"));
        }
        let nonce_ok = self.nonce.len() >= 22
            && self.nonce.len() <= 64
            && self.nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !nonce_ok {
            return Err(Error::ChallengeMalformed("nonce"));
        }
        if self.mac.is_empty() {
            return Err(Error::ChallengeMalformed("missing mac"));
        }
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::ChallengeMalformed("method"));
        }
        if !crate::origin::is_normal(&self.origin) {
            return Err(Error::ChallengeMalformed("origin"));
        }
        if !self.path.starts_with('/') {
            return Err(Error::ChallengeMalformed("path"));
        }
        if self.exp < self.iat {
            return Err(Error::ChallengeMalformed("expiry before issue"));
        }
        self.price()?;
        if let Some(p) = &self.payer
            && crate::wallet::Address::parse(p).map(|a| a.to_checksum()).as_deref() != Ok(p.as_str())
        {
            return Err(Error::ChallengeMalformed("payer"));
        }
        match self.mode.as_str() {
            "live" => {
                self.live_terms()?;
            }
            "sandbox" => {
                let any = [&self.asset, &self.asset_name, &self.asset_version, &self.pay_to];
                if any.iter().any(|f| f.is_some()) {
                    return Err(Error::ChallengeMalformed("settlement terms in a sandbox challenge"));
                }
            }
            _ => return Err(Error::ChallengeMalformed("mode")),
        }
        Ok(())
    }

    /// A live challenge's settlement terms (`challenge_malformed` when one is missing or
    /// malformed, or the challenge is not live).
    pub fn live_terms(&self) -> Result<crate::eip3009::LiveTerms> {
        use crate::wallet::Address;
        if self.mode != "live" {
            return Err(Error::ChallengeMalformed("not a live challenge"));
        }
        let field = |f: &Option<String>, what: &'static str| f.clone().ok_or(Error::ChallengeMalformed(what));
        let address = |f: &Option<String>, what: &'static str| {
            Address::parse(f.as_deref().ok_or(Error::ChallengeMalformed(what))?)
                .map_err(|_| Error::ChallengeMalformed(what))
        };
        let terms = crate::eip3009::LiveTerms {
            network: self.network.clone(),
            asset: address(&self.asset, "asset")?,
            asset_name: field(&self.asset_name, "asset_name")?,
            asset_version: field(&self.asset_version, "asset_version")?,
            pay_to: address(&self.pay_to, "pay_to")?,
        };
        terms.check()?;
        Ok(terms)
    }

    /// The price as money (validated decimal and currency).
    pub fn price(&self) -> Result<Money> {
        let currency = Currency::parse(&self.currency)?;
        Money::parse(&self.amount, currency)?.positive()
    }

    /// Resource binding string, as carried in the token's `res`:
    /// `"POST https://api.example.com/api/v1/inference"`.
    pub fn resource(&self) -> String {
        resource_binding(&self.method, &self.origin, &self.path)
    }

    /// Digest of the encoded challenge: what the payer's EIP-712 authorization signs.
    pub fn digest(encoded: &str) -> [u8; 32] {
        crate::wallet::keccak256(encoded.as_bytes())
    }
}

/// `"METHOD origin/path"` (`"POST https://api.example.com/api/v1/inference"`): the method
/// upper-cased, the origin as given (already in normal form), the query string dropped.
pub fn resource_binding(method: &str, origin: &str, path: &str) -> String {
    let mut s = String::with_capacity(method.len() + 1 + origin.len() + path.len());
    for c in method.chars() {
        s.push(c.to_ascii_uppercase());
    }
    s.push(' ');
    s.push_str(origin);
    s.push_str(resource_path(path));
    s
}

/// The path part of a request target: query and fragment dropped (prices may depend on the
/// query, which the amount check covers; the route is what the token is bound to).
pub fn resource_path(target: &str) -> &str {
    // memchr2 over the bytes: `str::find` with a char set decodes the path a character at a time.
    let end = memchr::memchr2(b'?', b'#', target.as_bytes()).unwrap_or(target.len());
    // '?' and '#' are ASCII: `end` is a character boundary.
    &target[..end]
}

/// base64url SHA-256 of a request body, for body-bound challenges.
pub fn body_digest(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededEntropy;

    fn params(price: &Money) -> ChallengeParams<'_> {
        ChallengeParams {
            price,
            scope: "per-call",
            method: "post",
            origin: "https://api.example.com",
            path: "/api/v1/inference?x=1",
            body_sha256: None,
            account: "acct_00112233445566778899",
            facilitator: "http://127.0.0.1:4020",
            mode: "sandbox",
            network: "sandbox",
            live: None,
            payer: None,
            ttl_secs: 300,
        }
    }

    #[test]
    fn the_resource_path_ends_at_the_query_or_the_fragment() {
        for (target, path) in [
            ("/a/b", "/a/b"),
            ("/a?b=1#c", "/a"),
            ("/a#b?c", "/a"),
            ("/ü/ß?x=ü", "/ü/ß"),
            ("?x", ""),
            ("", ""),
        ] {
            assert_eq!(resource_path(target), path, "{target}");
        }
    }

    #[test]
    fn a_challenge_names_its_payer_under_the_mac() {
        let key = [7u8; 32];
        let price = Money::parse("0.0005", Currency::Usd).unwrap();
        let mut p = params(&price);
        p.payer = Some("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let c = Challenge::create(&p, &key, 1_700_000_000, &SeededEntropy::new(1)).unwrap();
        let d = Challenge::decode(&c.encode()).unwrap();
        assert_eq!(d.payer.as_deref(), p.payer);
        d.verify(&key, 1_700_000_100, 0).unwrap();
        let mut other = d.clone();
        other.payer = Some("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into());
        assert_eq!(other.verify(&key, 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
        let mut unbound = d.clone();
        unbound.payer = None;
        assert_eq!(unbound.verify(&key, 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
        // Only an EIP-55 address is a payer.
        let reencode = |c: &Challenge| B64.encode(serde_json::to_vec(c).unwrap());
        for bad in ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "nobody", ""] {
            let mut odd = d.clone();
            odd.payer = Some(bad.into());
            assert_eq!(
                Challenge::decode(&reencode(&odd)).unwrap_err().code(),
                "challenge_malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn live_challenges_carry_their_terms() {
        let key = [7u8; 32];
        let price = Money::parse("0.001", Currency::Usd).unwrap();
        let terms = crate::eip3009::LiveTerms {
            network: "eip155:31337".into(),
            asset: crate::wallet::Address::parse("0x5FbDB2315678afecb367f032d93F642f64180aa3").unwrap(),
            asset_name: "USD Coin".into(),
            asset_version: "2".into(),
            pay_to: crate::wallet::Address::parse("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap(),
        };
        let mut p = params(&price);
        p.mode = "live";
        p.network = "eip155:31337";
        p.live = Some(&terms);
        let c = Challenge::create(&p, &key, 1_700_000_000, &SeededEntropy::new(1)).unwrap();
        let d = Challenge::decode(&c.encode()).unwrap();
        assert_eq!(d.live_terms().unwrap(), terms);
        d.verify(&key, 1_700_000_100, 0).unwrap();
        // The terms are MAC'd: another payout address is not the provider's challenge.
        let mut moved = d.clone();
        moved.pay_to = Some("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into());
        assert_eq!(moved.verify(&key, 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
        // A live challenge without its terms, a sandbox one with them, an unknown mode.
        let reencode = |c: &Challenge| B64.encode(serde_json::to_vec(c).unwrap());
        let mut bare = d.clone();
        bare.pay_to = None;
        assert_eq!(Challenge::decode(&reencode(&bare)).unwrap_err().code(), "challenge_malformed");
        let mut bad = d.clone();
        bad.network = "sandbox".into();
        assert_eq!(Challenge::decode(&reencode(&bad)).unwrap_err().code(), "challenge_malformed");
        let mut sandbox = d.clone();
        sandbox.mode = "sandbox".into();
        assert_eq!(Challenge::decode(&reencode(&sandbox)).unwrap_err().code(), "challenge_malformed");
        let mut odd = c.clone();
        odd.mode = "both".into();
        assert_eq!(Challenge::decode(&reencode(&odd)).unwrap_err().code(), "challenge_malformed");
    }

    #[test]
    fn round_trip_and_mac() {
        let key = [7u8; 32];
        let price = Money::parse("0.001", Currency::Usd).unwrap();
        let c = Challenge::create(&params(&price), &key, 1_700_000_000, &SeededEntropy::new(1)).unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(c.path, "/api/v1/inference");
        assert_eq!(c.resource(), "POST https://api.example.com/api/v1/inference");
        let enc = c.encode();
        let d = Challenge::decode(&enc).unwrap();
        assert_eq!(d, c);
        d.verify(&key, 1_700_000_100, 0).unwrap();
        assert_eq!(d.verify(&[8u8; 32], 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
        assert_eq!(d.verify(&key, 1_700_000_301, 0).unwrap_err().code(), "challenge_expired");
        let mut cheaper = d.clone();
        cheaper.amount = "0.0001".into();
        assert_eq!(cheaper.verify(&key, 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
        let mut moved = d.clone();
        moved.path = "/api/v1/other".into();
        assert_eq!(moved.verify(&key, 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
        let mut relayed = d.clone();
        relayed.origin = "https://evil.example".into();
        assert_eq!(relayed.verify(&key, 1_700_000_100, 0).unwrap_err().code(), "challenge_invalid");
    }

    #[test]
    fn decode_requires_an_origin_in_normal_form() {
        let key = [7u8; 32];
        let price = Money::parse("0.001", Currency::Usd).unwrap();
        for origin in
            ["HTTPS://api.example.com", "https://api.example.com:443", "https://api.example.com/", ""]
        {
            let mut p = params(&price);
            p.origin = origin;
            let c = Challenge::create(&p, &key, 1_700_000_000, &SeededEntropy::new(1)).unwrap();
            assert_eq!(
                Challenge::decode(&c.encode()).unwrap_err().code(),
                "challenge_malformed",
                "{origin:?}"
            );
        }
        let mut v = serde_json::to_value(
            Challenge::create(&params(&price), &key, 1_700_000_000, &SeededEntropy::new(1)).unwrap(),
        )
        .unwrap();
        v.as_object_mut().unwrap().remove("origin");
        let unbound = B64.encode(serde_json::to_vec(&v).unwrap());
        assert_eq!(Challenge::decode(&unbound).unwrap_err().code(), "challenge_malformed");
    }

    #[test]
    fn decode_rejects_bad_input() {
        assert_eq!(Challenge::decode("!!!").unwrap_err().code(), "challenge_malformed");
        assert_eq!(Challenge::decode(&B64.encode("{}")).unwrap_err().code(), "challenge_malformed");
        assert_eq!(Challenge::decode(&"A".repeat(5000)).unwrap_err().code(), "challenge_too_large");
    }

    proptest::proptest! {
        #[test]
        fn any_valid_challenge_round_trips(units in 1u64..=1_000_000_000, seed in 0u64..1000,
                                           path in "/[a-z0-9/_-]{0,40}", now in 0u64..4_000_000_000) {
            let key = [3u8; 32];
            let price = Money::from_atomic(units, Currency::Usd).unwrap();
            let mut p = params(&price);
            p.path = &path;
            let c = Challenge::create(&p, &key, now, &SeededEntropy::new(seed)).unwrap();
            let d = Challenge::decode(&c.encode()).unwrap();
            proptest::prop_assert!(d.verify(&key, now, 0).is_ok());
            proptest::prop_assert_eq!(d.price().unwrap(), price);
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            let _ = Challenge::decode(&s);
        }
    }
}
