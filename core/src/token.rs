//! The proof token: a JWT that says "this payer paid this much for this request".
//!
//! Two algorithms exist and nothing else: HS256 under a per-provider key derived from its
//! `apiSecret` (the default, fastest), and EdDSA (Ed25519) under a facilitator key published as
//! a JWKS. The verifier pins the algorithm to the keys it holds, so `none`, other algorithms and
//! HS256/EdDSA confusion are refused before any cryptography runs.
//!
//! Verification order is normative (the vectors depend on it): size → segments and header →
//! `typ` → algorithm → signature → time → `aud` → mode → resource → currency → amount.
//!
//! The header is parsed here rather than by `jsonwebtoken`, so refusals get precise error codes;
//! `jsonwebtoken` (its RustCrypto backend) signs, and signatures are checked with keys prepared
//! once: RustCrypto's HMAC and `ed25519-dalek`. All pure Rust (README, "One crypto stack").
//! Time is checked against an injected `now`: nothing here reads the system clock.

use crate::error::{Error, Result};
use crate::money::Money;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::mem::MaybeUninit;

/// The JOSE `typ` of every proof token; anything else is refused.
pub const TOKEN_TYP: &str = "vlexivo-proof+jwt";
/// Longest token accepted, checked before any decoding.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Issuers set `exp = iat + TOKEN_TTL_SECS`.
pub const TOKEN_TTL_SECS: u64 = 300;
/// Clock skew tolerated by default on `exp` and `iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest leeway a verifier may be configured with.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Fixed PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows it.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// Characters of base64url(SHA-256(public key)) that make a `kid`.
const KID_CHARS: usize = 16;
/// An attacker-chosen `alg`/`cur` echoed in an error is cut to this many characters.
const ECHO_MAX_CHARS: usize = 24;

/// The claims of a proof token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    /// The challenge nonce; consumed once by the provider.
    pub jti: String,
    /// The facilitator's URL.
    pub iss: String,
    /// The provider account id (`acct_…`).
    pub aud: String,
    /// The payer's EIP-55 address.
    pub sub: String,
    /// The payment's transaction hash (`0x…`).
    pub txh: String,
    /// Amount paid, as a decimal string.
    pub amt: String,
    /// Currency code (`usd`).
    pub cur: String,
    /// Resource binding: `"METHOD /path"`.
    pub res: String,
    /// base64url SHA-256 of the request body, when the challenge bound one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bdy: Option<String>,
    /// `sandbox` or `live`.
    pub mode: String,
    /// Settlement network.
    pub net: String,
    pub iat: u64,
    pub exp: u64,
}

/// An Ed25519 facilitator key.
#[derive(Clone)]
pub struct Ed25519Key {
    seed: [u8; 32],
    public: [u8; 32],
    kid: String,
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the seed.
        f.debug_struct("Ed25519Key").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Ed25519Key {
    /// Build from a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Result<Self> {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Ok(Self { seed, public, kid: kid_of(&public) })
    }

    /// A fresh key from injected entropy.
    pub fn generate(entropy: &dyn crate::env::Entropy) -> Self {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed);
        Self::from_seed(seed).expect("every 32-byte string is an Ed25519 seed")
    }

    /// First 16 characters of base64url(SHA-256(public key)).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as a JWK: OKP / Ed25519, `alg: EdDSA`, `use: sig`, with `kid`.
    pub fn public_jwk(&self) -> Jwk {
        public_jwk(&self.public)
    }

    /// The secret seed (for persisting the key). Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }
}

fn pkcs8_v1(seed: &[u8; 32]) -> [u8; 48] {
    let mut der = [0u8; 48];
    der[..16].copy_from_slice(&ED25519_PKCS8_V1_PREFIX);
    der[16..].copy_from_slice(seed);
    der
}

/// The JWK of an Ed25519 public key (a retired facilitator key is published from its public
/// half alone): OKP / Ed25519, `alg: EdDSA`, `use: sig`, with its `kid`.
pub fn public_jwk(public: &[u8; 32]) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(kid_of(public)),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(public),
        }),
    }
}

/// The `kid` of an Ed25519 public key.
pub fn kid_of(public: &[u8; 32]) -> String {
    let mut kid = URL_SAFE_NO_PAD.encode(Sha256::digest(public));
    kid.truncate(KID_CHARS);
    kid
}

/// The public JWKS for a set of facilitator keys (current and still-valid previous ones).
pub fn jwks(keys: &[&Ed25519Key]) -> JwkSet {
    JwkSet { keys: keys.iter().map(|k| k.public_jwk()).collect() }
}

/// The proof-token algorithm a provider chose at onboarding: HS256 under its own key, or EdDSA
/// under the facilitator's published keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlg {
    Hs256,
    EdDsa,
}

impl TokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::Hs256 => "HS256",
            TokenAlg::EdDsa => "EdDSA",
        }
    }

    /// `HS256` or `EdDSA`, in any case; anything else is `token_algorithm`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("HS256") {
            Ok(TokenAlg::Hs256)
        } else if s.eq_ignore_ascii_case("EdDSA") {
            Ok(TokenAlg::EdDsa)
        } else {
            Err(Error::TokenAlgorithm(s.chars().take(24).collect()))
        }
    }
}

/// The key a token is signed with.
pub enum SigningKey {
    /// The provider's token key (derived from its `apiSecret`).
    Hs256([u8; 32]),
    /// A facilitator key, published as a JWKS.
    EdDsa(Ed25519Key),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Hs256(_) => f.write_str("SigningKey::Hs256([redacted])"),
            SigningKey::EdDsa(k) => f.debug_tuple("SigningKey::EdDsa").field(k).finish(),
        }
    }
}

/// Signs proof tokens. Built once; `issue` is then allocation-light and thread-safe.
pub struct TokenIssuer {
    header: Header,
    key: EncodingKey,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("alg", &self.header.alg)
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

/// The JOSE header of a token signed with `alg` (and `kid`).
fn token_header(alg: Algorithm, kid: Option<String>) -> Header {
    Header { typ: Some(TOKEN_TYP.to_string()), kid, ..Header::new(alg) }
}

impl TokenIssuer {
    pub fn new(key: SigningKey) -> Result<Self> {
        let (header, key) = match key {
            SigningKey::Hs256(secret) => {
                (token_header(Algorithm::HS256, None), EncodingKey::from_secret(&secret))
            }
            SigningKey::EdDsa(k) => (
                token_header(Algorithm::EdDSA, Some(k.kid.clone())),
                EncodingKey::from_ed_der(&pkcs8_v1(&k.seed)),
            ),
        };
        Ok(Self { header, key })
    }

    /// Sign `claims` as they are; the caller sets `iat` and `exp = iat + TOKEN_TTL_SECS`.
    pub fn issue(&self, claims: &ProofClaims) -> Result<String> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
            // No detail: jsonwebtoken's errors may describe the key.
            .map_err(|_| Error::Internal("proof token signing failed".into()))
    }
}

/// What this request requires.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// `"METHOD /path"`, compared exactly with the token's `res`.
    pub resource: &'a str,
    /// When set, the token's `bdy` must equal it.
    pub body_sha256: Option<&'a str>,
    /// This request's price; the token must pay at least this, in the same currency.
    pub price: &'a Money,
}

/// How a provider verifies tokens. At least one of `hs256_key` and `jwks` is required.
#[derive(Clone)]
pub struct VerifierConfig {
    /// This provider's account id; tokens must carry it as `aud`.
    pub account: String,
    /// `sandbox` or `live`; tokens must carry the same `mode`.
    pub mode: String,
    /// Accept HS256 tokens under this key.
    pub hs256_key: Option<[u8; 32]>,
    /// Accept EdDSA tokens under these Ed25519 keys (matched by `kid`).
    pub jwks: Option<JwkSet>,
    /// Tolerated clock skew on `exp` and `iat`, at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
}

impl VerifierConfig {
    /// A config with no keys yet and the default leeway.
    pub fn new(account: impl Into<String>, mode: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            mode: mode.into(),
            hs256_key: None,
            jwks: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

impl fmt::Debug for VerifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierConfig")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .field("hs256_key", &self.hs256_key.map(|_| "[redacted]"))
            .field("jwks", &self.jwks)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

/// Verifies proof tokens. Keys are prepared once in [`TokenVerifier::new`].
pub struct TokenVerifier {
    account: String,
    mode: String,
    /// Prepared once: re-deriving the HMAC key per token costs as much as the MAC itself.
    hs256: Option<hmac::Hmac<Sha256>>,
    /// The header segment our HS256 issuer writes, byte for byte: a token that starts with it
    /// skips decoding and parsing a header whose fields are already known.
    hs256_header_b64: Option<String>,
    /// (kid, key), the point decompressed once; a handful of keys at most, so a linear scan
    /// beats a map.
    eddsa: Vec<(String, ed25519_dalek::VerifyingKey)>,
    leeway: u64,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .field("hs256", &self.hs256.is_some())
            .field("eddsa_kids", &self.eddsa.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// The header fields we act on. Borrowed: no allocation unless a value has escapes.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// Critical extensions must be understood (RFC 7515 §4.1.11); we understand none.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// A decoded token segment. Typical segments fit the stack part (nothing to allocate, nothing
/// to zero: the decoder writes only what it returns); longer ones, still within the token size
/// limit, go to the heap.
pub(crate) struct SegmentBuf {
    stack: [MaybeUninit<u8>; STACK_SEGMENT],
    heap: Vec<u8>,
}

/// Decoded bytes a segment may take on the stack: proof-token claims are ~420 bytes.
const STACK_SEGMENT: usize = 768;

/// base64url without padding, canonical (non-zero trailing bits are refused), SIMD where the
/// CPU has it: decoding was the largest single cost of a token check with the `base64` crate.
const SEGMENT_B64: base64_simd::Base64 = base64_simd::URL_SAFE_NO_PAD;

impl SegmentBuf {
    fn new() -> Self {
        Self { stack: [MaybeUninit::uninit(); STACK_SEGMENT], heap: Vec::new() }
    }

    fn decode(&mut self, segment: &str) -> Option<&[u8]> {
        let src = segment.as_bytes();
        let n = SEGMENT_B64.decoded_length(src).ok()?;
        if n <= STACK_SEGMENT {
            let out =
                SEGMENT_B64.decode(src, base64_simd::Out::from_uninit_slice(&mut self.stack[..n])).ok()?;
            Some(out)
        } else {
            self.heap = SEGMENT_B64.decode_to_vec(src).ok()?;
            Some(&self.heap)
        }
    }
}

/// The claims exactly as an issuer serializes [`ProofClaims`] (serde_json, compact, in field
/// order, no escapes), read by a fixed-layout scanner; `None` for any other text, which serde
/// then reads (and decides). Every signed token of ours takes this path: on a paid request the
/// general JSON machinery cost about as much as the rest of the token check. It accepts only
/// what serde accepts, to the same values (proptested against it).
fn canonical_claims(json: &str) -> Option<ClaimsRef<'_>> {
    // Every byte of the canonical form is a fixed key, a plain string's or a number's: one
    // branch-free (vectorised) pass over the whole text for what a plain string may not hold
    // (an escape, a control character) refuses exactly what the fields would, and leaves each
    // field only its closing quote to find.
    if json.bytes().fold(false, |e, b| e | (b == b'\\') | (b < 0x20)) {
        return None;
    }
    scan_canonical(json)
}

/// Decoded claims that are printable ASCII without a backslash (every token of ours), as text:
/// one pass that both proves them UTF-8 (ASCII is) and does [`canonical_claims`]'s check, where
/// `str::from_utf8` and that check each walked the whole payload. `None` for anything else,
/// which then takes the general path (UTF-8 check, then [`canonical_claims`] or serde).
#[allow(unsafe_code)]
fn plain_ascii(json: &[u8]) -> Option<&str> {
    // Branch-free so it vectorises: a control character, a byte of a multi-byte character, a
    // backslash. (DEL, 0x7f, is ASCII and may stand in a JSON string as it is.)
    if json.iter().fold(false, |e, &b| e | !(0x20..0x80).contains(&b) | (b == b'\\')) {
        return None;
    }
    // SAFETY: every byte is below 0x80, and ASCII text is UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(json) })
}

/// [`canonical_claims`] for text already known to hold no escape and no control character.
fn scan_canonical(json: &str) -> Option<ClaimsRef<'_>> {
    let mut c = Canonical { text: json, at: 0 };
    let jti = c.field("{\"jti\":")?;
    let iss = c.field(",\"iss\":")?;
    let aud = c.field(",\"aud\":")?;
    let sub = c.field(",\"sub\":")?;
    let txh = c.field(",\"txh\":")?;
    let amt = c.field(",\"amt\":")?;
    let cur = c.field(",\"cur\":")?;
    let res = c.field(",\"res\":")?;
    // Optional; a failed match does not move the cursor (and then `mode` cannot follow).
    let bdy = c.field(",\"bdy\":");
    let mode = c.field(",\"mode\":")?;
    let net = c.field(",\"net\":")?;
    let iat = c.number(",\"iat\":")?;
    let exp = c.number(",\"exp\":")?;
    (c.rest() == "}").then(|| ClaimsRef {
        jti: Cow::Borrowed(jti),
        iss: Cow::Borrowed(iss),
        aud: Cow::Borrowed(aud),
        sub: Cow::Borrowed(sub),
        txh: Cow::Borrowed(txh),
        amt: Cow::Borrowed(amt),
        cur: Cow::Borrowed(cur),
        res: Cow::Borrowed(res),
        bdy: bdy.map(Cow::Borrowed),
        mode: Cow::Borrowed(mode),
        net: Cow::Borrowed(net),
        iat,
        exp,
    })
}

/// Where the first `"` of `s` is, eight bytes at a time (a claim is some 10 to 70 bytes: short
/// for `memchr`, whose dispatch and vector set-up cost more code and instructions than the
/// search itself here).
fn quote_at(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        // A byte of `x` is zero where `w` has a quote; the lowest flagged byte is the first zero
        // byte (a borrow only flags bytes above a zero one).
        let x = u64::from_le_bytes(w.try_into().ok()?) ^ QUOTES;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == b'"').map(|i| at + i)
}

/// A cursor over canonical claims text.
struct Canonical<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Canonical<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    /// `key` (the literal `,"name":`) then a string (the text has no escapes or control
    /// characters: [`canonical_claims`] or [`plain_ascii`] checked it whole).
    fn field(&mut self, key: &str) -> Option<&'a str> {
        let rest = self.rest().strip_prefix(key)?.strip_prefix('"')?;
        let len = quote_at(rest.as_bytes())?;
        self.at = self.text.len() - rest.len() + len + 1;
        // Ends at an ASCII quote: a character boundary.
        Some(&rest[..len])
    }

    /// `key` then a JSON integer that fits a u64 (no sign, fraction, exponent or leading zero).
    fn number(&mut self, key: &str) -> Option<u64> {
        let rest = self.rest().strip_prefix(key)?.as_bytes();
        // Digits are read and added up in one pass; 19 always fit a u64, only a 20th can
        // overflow it (and any longer number then does).
        let (mut n, mut len) = (0u64, 0);
        while let Some(&d) = rest.get(len)
            && d.is_ascii_digit()
        {
            let d = u64::from(d - b'0');
            n = if len < 19 { n * 10 + d } else { n.checked_mul(10)?.checked_add(d)? };
            len += 1;
        }
        if len == 0 || (rest[0] == b'0' && len > 1) {
            return None;
        }
        self.at = self.text.len() - rest.len() + len;
        Some(n)
    }
}

/// [`ProofClaims`] as parsed, borrowing from the decoded payload (a string is copied only if it
/// has JSON escapes).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct ClaimsRef<'a> {
    #[serde(borrow)]
    pub jti: Cow<'a, str>,
    #[serde(borrow)]
    pub iss: Cow<'a, str>,
    #[serde(borrow)]
    pub aud: Cow<'a, str>,
    #[serde(borrow)]
    pub sub: Cow<'a, str>,
    #[serde(borrow)]
    pub txh: Cow<'a, str>,
    #[serde(borrow)]
    pub amt: Cow<'a, str>,
    #[serde(borrow)]
    pub cur: Cow<'a, str>,
    #[serde(borrow)]
    pub res: Cow<'a, str>,
    #[serde(borrow, default)]
    pub bdy: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub mode: Cow<'a, str>,
    #[serde(borrow)]
    pub net: Cow<'a, str>,
    pub iat: u64,
    pub exp: u64,
}

impl ClaimsRef<'_> {
    fn to_owned_claims(&self) -> ProofClaims {
        ProofClaims {
            jti: self.jti.to_string(),
            iss: self.iss.to_string(),
            aud: self.aud.to_string(),
            sub: self.sub.to_string(),
            txh: self.txh.to_string(),
            amt: self.amt.to_string(),
            cur: self.cur.to_string(),
            res: self.res.to_string(),
            bdy: self.bdy.as_deref().map(str::to_string),
            mode: self.mode.to_string(),
            net: self.net.to_string(),
            iat: self.iat,
            exp: self.exp,
        }
    }
}

fn parse_header<'b>(header_b64: &str, buf: &'b mut SegmentBuf) -> Result<RawHeader<'b>> {
    let json = buf.decode(header_b64).ok_or(Error::TokenMalformed("header is not base64url"))?;
    // serde would also accept a JSON array for a struct; JOSE requires an object.
    if !is_json_object(json) {
        return Err(Error::TokenMalformed("header is not a JSON object"));
    }
    serde_json::from_slice(json).map_err(|_| Error::TokenMalformed("header is not a JSON object"))
}

fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn echo(s: &str) -> String {
    s.chars().take(ECHO_MAX_CHARS).collect()
}

impl TokenVerifier {
    pub fn new(cfg: VerifierConfig) -> Result<Self> {
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(Error::Config(format!(
                "token leeway {} s is above the maximum of {MAX_LEEWAY_SECS} s",
                cfg.leeway_secs
            )));
        }
        let mut eddsa: Vec<(String, ed25519_dalek::VerifyingKey)> = Vec::new();
        for jwk in cfg.jwks.iter().flat_map(|set| set.keys.iter()) {
            let (kid, key) = import_ed25519_jwk(jwk)?;
            if eddsa.iter().any(|(k, _)| *k == kid) {
                return Err(Error::Config(format!("duplicate kid {kid:?} in the JWKS")));
            }
            eddsa.push((kid, key));
        }
        let hs256 = cfg
            .hs256_key
            .map(|k| <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&k).expect("any key length"));
        if hs256.is_none() && eddsa.is_empty() {
            return Err(Error::Config("token verifier has no HS256 key and no EdDSA key".into()));
        }
        let hs256_header_b64 = match hs256 {
            Some(_) => serde_json::to_vec(&token_header(Algorithm::HS256, None))
                .ok()
                .map(|json| URL_SAFE_NO_PAD.encode(json)),
            None => None,
        };
        Ok(Self {
            account: cfg.account,
            mode: cfg.mode,
            hs256,
            hs256_header_b64,
            eddsa,
            leeway: cfg.leeway_secs,
        })
    }

    /// Everything: signature, typ, alg, time, then that the token buys this request.
    pub fn verify(&self, token: &str, expect: &Expectation<'_>, now: u64) -> Result<ProofClaims> {
        self.verify_then(token, expect, now, |c| c.to_owned_claims())
    }

    /// [`verify`](Self::verify), handing the verified claims to `f` borrowed from the decoded
    /// token: the provider's hot path copies out only the fields it keeps.
    pub(crate) fn verify_then<T>(
        &self,
        token: &str,
        expect: &Expectation<'_>,
        now: u64,
        f: impl FnOnce(&ClaimsRef<'_>) -> T,
    ) -> Result<T> {
        let mut buf = SegmentBuf::new();
        let claims = self.check_signature_and_time(token, now, &mut buf)?;
        self.check_expectation(&claims, expect)?;
        Ok(f(&claims))
    }

    fn check_expectation(&self, claims: &ClaimsRef<'_>, expect: &Expectation<'_>) -> Result<()> {
        if claims.aud != self.account {
            return Err(Error::TokenAudience);
        }
        if claims.mode != self.mode {
            return Err(Error::TokenMode);
        }
        if claims.res != expect.resource {
            return Err(Error::TokenResource);
        }
        if let Some(body) = expect.body_sha256
            && claims.bdy.as_deref() != Some(body)
        {
            return Err(Error::TokenResource);
        }
        let currency = expect.price.currency();
        if claims.cur != currency.code() {
            return Err(Error::TokenCurrency { paid: echo(&claims.cur), price: currency.code().to_string() });
        }
        let paid = Money::parse(&claims.amt, currency)
            .map_err(|_| Error::TokenMalformed("amt is not a valid amount"))?;
        if paid.amount() < expect.price.amount() {
            return Err(Error::TokenUnderpaid {
                paid: paid.amount().to_string(),
                price: expect.price.amount().to_string(),
            });
        }
        Ok(())
    }

    /// Signature + typ + alg + time only (used by tools that inspect a token): no
    /// aud/mode/resource/price checks.
    pub fn verify_signature_and_time(&self, token: &str, now: u64) -> Result<ProofClaims> {
        let mut buf = SegmentBuf::new();
        self.check_signature_and_time(token, now, &mut buf).map(|c| c.to_owned_claims())
    }

    /// The claims, borrowed from `buf` (where the payload is decoded), once the signature and
    /// the time window hold.
    fn check_signature_and_time<'b>(
        &self,
        token: &str,
        now: u64,
        buf: &'b mut SegmentBuf,
    ) -> Result<ClaimsRef<'b>> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::TokenTooLarge { limit: MAX_TOKEN_BYTES });
        }
        // memchr: `str::split` walked the ~400-byte token a byte at a time.
        let b = token.as_bytes();
        let dot = |from: usize| memchr::memchr(b'.', &b[from..]).map(|i| from + i);
        let malformed = || Error::TokenMalformed("a token has 3 dot-separated segments");
        let i = dot(0).ok_or_else(malformed)?;
        let j = dot(i + 1).ok_or_else(malformed)?;
        if dot(j + 1).is_some() {
            return Err(malformed());
        }
        // '.' is ASCII, so these are character boundaries.
        let (header_b64, payload_b64, signature_b64) = (&token[..i], &token[i + 1..j], &token[j + 1..]);

        let mut header_buf;
        let header = if self.hs256_header_b64.as_deref() == Some(header_b64) {
            RawHeader {
                alg: Some(Cow::Borrowed("HS256")),
                typ: Some(Cow::Borrowed(TOKEN_TYP)),
                kid: None,
                crit: None,
            }
        } else {
            header_buf = SegmentBuf::new();
            parse_header(header_b64, &mut header_buf)?
        };
        if header.crit.is_some() {
            return Err(Error::TokenMalformed("header has unsupported critical extensions"));
        }

        if header.typ.as_deref() != Some(TOKEN_TYP) {
            return Err(Error::TokenType);
        }

        // header.payload, exactly as received, is what was signed.
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        match header.alg.as_deref() {
            None => return Err(Error::TokenAlgorithm(String::new())),
            Some("HS256") => {
                let key = self.hs256.as_ref().ok_or_else(|| Error::TokenAlgorithm("HS256".into()))?;
                let mut sig = [0u8; 32];
                // An HS256 signature is exactly 32 bytes: 43 base64url characters.
                if signature_b64.len() != 43
                    || SEGMENT_B64
                        .decode(signature_b64.as_bytes(), base64_simd::Out::from_slice(&mut sig))
                        .is_err()
                {
                    return Err(Error::TokenMalformed("signature is not base64url"));
                }
                // RustCrypto's HMAC: constant-time comparison; the keyed state is prepared once
                // and cloned (fewer instructions and less code touched per call than aws-lc's).
                {
                    use hmac::Mac;
                    let mut mac = key.clone();
                    mac.update(signed.as_bytes());
                    mac.verify_slice(&sig).map_err(|_| Error::TokenInvalid)?;
                }
            }
            Some("EdDSA") => {
                if self.eddsa.is_empty() {
                    return Err(Error::TokenAlgorithm("EdDSA".into()));
                }
                // An unknown or missing kid is indistinguishable from a bad signature.
                let kid = header.kid.as_deref().ok_or(Error::TokenInvalid)?;
                let (_, key) = self.eddsa.iter().find(|(k, _)| k == kid).ok_or(Error::TokenInvalid)?;
                let mut sig_buf = SegmentBuf::new();
                let sig = sig_buf
                    .decode(signature_b64)
                    .ok_or(Error::TokenMalformed("signature is not base64url"))?;
                // Any other length than an Ed25519 signature's 64 bytes is a bad signature.
                let sig: &[u8; 64] = sig.try_into().map_err(|_| Error::TokenInvalid)?;
                // Strict: also refuses small-order keys and R points (signature malleability).
                key.verify_strict(signed.as_bytes(), &ed25519_dalek::Signature::from_bytes(sig))
                    .map_err(|_| Error::TokenInvalid)?;
            }
            Some(other) => return Err(Error::TokenAlgorithm(echo(other))),
        }

        let payload_json =
            buf.decode(payload_b64).ok_or(Error::TokenMalformed("payload is not base64url"))?;
        if !is_json_object(payload_json) {
            return Err(Error::TokenMalformed("claims are not a JSON object"));
        }
        // One bulk UTF-8 check, then the `&str` parser, which does not re-check every string.
        // JSON text is UTF-8 (RFC 8259 §8.1): invalid UTF-8 anywhere is refused, even in a claim
        // no one reads, which serde's byte parser would skip unchecked.
        let malformed = || Error::TokenMalformed("claims are missing or of the wrong type");
        let (payload_text, canonical) = match plain_ascii(payload_json) {
            Some(text) => (text, scan_canonical(text)),
            None => {
                let text = std::str::from_utf8(payload_json).map_err(|_| malformed())?;
                (text, canonical_claims(text))
            }
        };
        let claims: ClaimsRef<'_> = match canonical {
            Some(c) => c,
            None => serde_json::from_str(payload_text).map_err(|_| malformed())?,
        };

        // Whoever signed it (a leaked key, a misconfigured issuer), a proof lives at most
        // TOKEN_TTL_SECS after its `iat`: with the checks below it is never good past
        // iat + TTL + leeway, and the nonce store never has to hold its nonce longer.
        if claims.exp < claims.iat || claims.exp - claims.iat > TOKEN_TTL_SECS {
            return Err(Error::TokenMalformed("exp must be at most 300 s after iat"));
        }
        if now > claims.exp.saturating_add(self.leeway) {
            return Err(Error::TokenExpired);
        }
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(Error::TokenNotYetValid);
        }
        Ok(claims)
    }
}

/// Accept only OKP/Ed25519 keys with a `kid`, usable for EdDSA signatures.
fn import_ed25519_jwk(jwk: &Jwk) -> Result<(String, ed25519_dalek::VerifyingKey)> {
    let kid = match jwk.common.key_id.as_deref() {
        Some(kid) if !kid.is_empty() => kid.to_string(),
        _ => return Err(Error::Config("a JWK has no kid".into())),
    };
    let not_ed25519 = || Error::Config(format!("JWK {kid:?} is not an Ed25519 signing key"));
    let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
        return Err(not_ed25519());
    };
    if params.curve != EllipticCurve::Ed25519 {
        return Err(not_ed25519());
    }
    if !matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::EdDSA)) {
        return Err(not_ed25519());
    }
    if !matches!(jwk.common.public_key_use, None | Some(PublicKeyUse::Signature)) {
        return Err(not_ed25519());
    }
    let x: [u8; 32] =
        URL_SAFE_NO_PAD.decode(&params.x).ok().and_then(|x| x.try_into().ok()).ok_or_else(not_ed25519)?;
    // Not a point on the curve: refused here, not at every token.
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| not_ed25519())?;
    Ok((kid, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    const NOW: u64 = 1_700_000_000;
    const HS_KEY: [u8; 32] = [7u8; 32];
    const ACCT: &str = "acct_123";

    fn claims() -> ProofClaims {
        ProofClaims {
            jti: "nonce-abc".into(),
            iss: "https://facilitator.example".into(),
            aud: ACCT.into(),
            sub: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
            txh: "0xabc123".into(),
            amt: "0.001".into(),
            cur: "usd".into(),
            res: "POST /api/v1/inference".into(),
            bdy: Some("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".into()),
            mode: "sandbox".into(),
            net: "sandbox".into(),
            iat: NOW,
            exp: NOW + TOKEN_TTL_SECS,
        }
    }

    fn price(s: &str) -> Money {
        Money::parse(s, Currency::Usd).unwrap()
    }

    fn hs_verifier() -> TokenVerifier {
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.hs256_key = Some(HS_KEY);
        TokenVerifier::new(cfg).unwrap()
    }

    fn ed_key() -> Ed25519Key {
        Ed25519Key::from_seed([9u8; 32]).unwrap()
    }

    fn ed_verifier(key: &Ed25519Key) -> TokenVerifier {
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.jwks = Some(jwks(&[key]));
        TokenVerifier::new(cfg).unwrap()
    }

    fn hs_token(c: &ProofClaims) -> String {
        TokenIssuer::new(SigningKey::Hs256(HS_KEY)).unwrap().issue(c).unwrap()
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// A token with arbitrary header/payload JSON, HS256-signed under HS_KEY.
    fn forge(header: &str, payload: &str) -> String {
        forge_bytes(header, payload.as_bytes())
    }

    fn forge_bytes(header: &str, payload: &[u8]) -> String {
        let msg = format!("{}.{}", b64(header), URL_SAFE_NO_PAD.encode(payload));
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&HS_KEY, msg.as_bytes()));
        format!("{msg}.{sig}")
    }

    fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    fn payload_json() -> String {
        serde_json::to_string(&claims()).unwrap()
    }

    fn code(r: Result<ProofClaims>) -> &'static str {
        r.expect_err("should fail").code()
    }

    fn verify_code(v: &TokenVerifier, token: &str) -> &'static str {
        let p = price("0.001");
        let e = Expectation { resource: "POST /api/v1/inference", body_sha256: None, price: &p };
        code(v.verify(token, &e, NOW))
    }

    fn ok(v: &TokenVerifier, token: &str) -> ProofClaims {
        let p = price("0.001");
        let e = Expectation { resource: "POST /api/v1/inference", body_sha256: None, price: &p };
        v.verify(token, &e, NOW).unwrap()
    }

    /// Found by the fuzz target token_claims_diff (fuzz/regressions/token_claims_diff): an
    /// unknown claim holding invalid UTF-8, which serde's byte parser skips without a check.
    #[test]
    fn claims_are_utf8_even_in_a_claim_not_read() {
        let mut payload = payload_json().into_bytes();
        payload.pop();
        payload.extend_from_slice(b",\"x\":\"\xff\"}");
        assert!(serde_json::from_slice::<ProofClaims>(&payload).is_ok(), "serde's byte parser takes it");
        let header = format!(r#"{{"alg":"HS256","typ":"{TOKEN_TYP}"}}"#);
        assert_eq!(verify_code(&hs_verifier(), &forge_bytes(&header, &payload)), "token_malformed");
    }

    #[test]
    fn hs256_round_trip() {
        let t = hs_token(&claims());
        assert_eq!(ok(&hs_verifier(), &t), claims());
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], TOKEN_TYP);
        assert!(header.get("kid").is_none());
    }

    #[test]
    fn bdy_is_omitted_when_absent() {
        let mut c = claims();
        c.bdy = None;
        let t = hs_token(&c);
        let payload = URL_SAFE_NO_PAD.decode(t.split('.').nth(1).unwrap()).unwrap();
        assert!(!String::from_utf8(payload).unwrap().contains("bdy"));
        assert_eq!(ok(&hs_verifier(), &t), c);
    }

    #[test]
    fn eddsa_round_trip_and_jwks_import() {
        let key = ed_key();
        assert_eq!(key.kid().len(), 16);
        let t = TokenIssuer::new(SigningKey::EdDsa(key.clone())).unwrap().issue(&claims()).unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], key.kid());

        // Export → JSON → import → verify, as a provider fetching the facilitator's JWKS.
        let json = serde_json::to_string(&jwks(&[&key])).unwrap();
        assert!(json.contains("\"kty\":\"OKP\"") && json.contains("\"crv\":\"Ed25519\""));
        assert!(json.contains("\"use\":\"sig\"") && json.contains("\"alg\":\"EdDSA\""));
        let imported: JwkSet = serde_json::from_str(&json).unwrap();
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.jwks = Some(imported);
        assert_eq!(ok(&TokenVerifier::new(cfg).unwrap(), &t), claims());

        // Key rotation: the verifier picks the key by kid.
        let other = Ed25519Key::from_seed([1u8; 32]).unwrap();
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.jwks = Some(jwks(&[&other, &key]));
        assert_eq!(ok(&TokenVerifier::new(cfg).unwrap(), &t), claims());
    }

    #[test]
    fn ed25519_rfc8032_test_1() {
        let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let key = Ed25519Key::from_seed(seed).unwrap();
        assert_eq!(
            hex::encode(key.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn ed25519_key_from_seed_is_deterministic() {
        let a = ed_key();
        let b = Ed25519Key::from_seed(a.seed()).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.public_key(), b.public_key());
        let g = Ed25519Key::generate(&crate::env::SeededEntropy::new(1));
        assert_eq!(g.kid(), Ed25519Key::generate(&crate::env::SeededEntropy::new(1)).kid());
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.seed())));
        assert!(!format!("{:?}", SigningKey::Hs256(HS_KEY)).contains('7'));
    }

    #[test]
    fn wrong_key_is_opaque() {
        let t = TokenIssuer::new(SigningKey::Hs256([8u8; 32])).unwrap().issue(&claims()).unwrap();
        assert_eq!(verify_code(&hs_verifier(), &t), "token_invalid");
        let other = Ed25519Key::from_seed([2u8; 32]).unwrap();
        let t = TokenIssuer::new(SigningKey::EdDsa(other)).unwrap().issue(&claims()).unwrap();
        // Unknown kid.
        assert_eq!(verify_code(&ed_verifier(&ed_key()), &t), "token_invalid");
    }

    #[test]
    fn eddsa_signature_under_a_known_kid_by_another_key() {
        let key = ed_key();
        let t = TokenIssuer::new(SigningKey::EdDsa(key.clone())).unwrap().issue(&claims()).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let sig = URL_SAFE_NO_PAD.encode(sig);
        parts[2] = &sig;
        assert_eq!(verify_code(&ed_verifier(&key), &parts.join(".")), "token_invalid");
    }

    #[test]
    fn tampered_payload() {
        let t = hs_token(&claims());
        let mut tampered = claims();
        tampered.amt = "100".into();
        let forged_payload = b64(&serde_json::to_string(&tampered).unwrap());
        let parts: Vec<&str> = t.split('.').collect();
        let t2 = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verify_code(&hs_verifier(), &t2), "token_invalid");
    }

    #[test]
    fn alg_none_is_refused() {
        let h = format!(r#"{{"alg":"none","typ":"{TOKEN_TYP}"}}"#);
        let t = format!("{}.{}.", b64(&h), b64(&payload_json()));
        let e = hs_verifier().verify_signature_and_time(&t, NOW).unwrap_err();
        assert_eq!(e, Error::TokenAlgorithm("none".into()));
        assert_eq!(code(ed_verifier(&ed_key()).verify_signature_and_time(&t, NOW)), "token_algorithm");
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let key = ed_key();
        let hs = hs_token(&claims());
        assert_eq!(
            ed_verifier(&key).verify_signature_and_time(&hs, NOW).unwrap_err(),
            Error::TokenAlgorithm("HS256".into())
        );
        let ed = TokenIssuer::new(SigningKey::EdDsa(key)).unwrap().issue(&claims()).unwrap();
        assert_eq!(
            hs_verifier().verify_signature_and_time(&ed, NOW).unwrap_err(),
            Error::TokenAlgorithm("EdDSA".into())
        );
        // An HS256 token "signed" with the public key as HMAC secret (the classic confusion).
        let pk = ed_key().public_key();
        let h = format!(r#"{{"alg":"HS256","typ":"{TOKEN_TYP}","kid":"{}"}}"#, ed_key().kid());
        let msg = format!("{}.{}", b64(&h), b64(&payload_json()));
        let t = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(hmac_sha256(&pk, msg.as_bytes())));
        assert_eq!(verify_code(&ed_verifier(&ed_key()), &t), "token_algorithm");
    }

    #[test]
    fn a_jwk_that_is_not_a_curve_point_is_refused_when_the_verifier_is_built() {
        // Compressed points whose y has no x on the curve (ed25519-dalek as the oracle).
        let bad = (2u8..=255)
            .map(|y| {
                let mut b = [0u8; 32];
                b[0] = y;
                b
            })
            .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
            .expect("some y is off the curve");
        let mut set = jwks(&[&ed_key()]);
        let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) = &mut set.keys[0].algorithm else {
            panic!("OKP")
        };
        p.x = URL_SAFE_NO_PAD.encode(bad);
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.jwks = Some(set);
        assert_eq!(TokenVerifier::new(cfg).unwrap_err().code(), "config_invalid");
    }

    #[test]
    fn other_algorithms_are_refused() {
        for alg in ["RS256", "ES256", "HS512", "HS384", "PS256", "EdDSA2", ""] {
            let h = format!(r#"{{"alg":"{alg}","typ":"{TOKEN_TYP}"}}"#);
            let t = forge(&h, &payload_json());
            assert_eq!(
                hs_verifier().verify_signature_and_time(&t, NOW).unwrap_err(),
                Error::TokenAlgorithm(alg.into()),
                "{alg}"
            );
        }
        let t = forge(&format!(r#"{{"typ":"{TOKEN_TYP}"}}"#), &payload_json());
        assert_eq!(verify_code(&hs_verifier(), &t), "token_algorithm");
        // A huge alg is not echoed in full.
        let long = "X".repeat(1000);
        let t = forge(&format!(r#"{{"alg":"{long}","typ":"{TOKEN_TYP}"}}"#), &payload_json());
        let e = hs_verifier().verify_signature_and_time(&t, NOW).unwrap_err();
        assert!(e.to_string().len() < 100);
    }

    #[test]
    fn typ_must_match_exactly() {
        for h in [
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"HS256","typ":"VLEXIVO-PROOF+JWT"}"#,
            r#"{"alg":"HS256","typ":null}"#,
            // typ is checked before alg.
            r#"{"alg":"none","typ":"JWT"}"#,
        ] {
            assert_eq!(verify_code(&hs_verifier(), &forge(h, &payload_json())), "token_type", "{h}");
        }
        let h = format!(r#"{{"alg":"HS256","typ":"{TOKEN_TYP}","crit":["exp"]}}"#);
        assert_eq!(verify_code(&hs_verifier(), &forge(&h, &payload_json())), "token_malformed");
    }

    #[test]
    fn expiry_with_leeway() {
        let v = hs_verifier();
        let t = hs_token(&claims());
        let exp = claims().exp;
        assert!(v.verify_signature_and_time(&t, exp + DEFAULT_LEEWAY_SECS).is_ok());
        assert_eq!(
            v.verify_signature_and_time(&t, exp + DEFAULT_LEEWAY_SECS + 1).unwrap_err(),
            Error::TokenExpired
        );
        // Zero leeway: exactly at exp is fine, one second later is not.
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.hs256_key = Some(HS_KEY);
        cfg.leeway_secs = 0;
        let v0 = TokenVerifier::new(cfg).unwrap();
        assert!(v0.verify_signature_and_time(&t, exp).is_ok());
        assert_eq!(code(v0.verify_signature_and_time(&t, exp + 1)), "token_expired");
    }

    #[test]
    fn lifetime_is_capped_whoever_signed() {
        let v = hs_verifier();
        let mut c = claims();
        c.exp = c.iat + TOKEN_TTL_SECS;
        assert!(v.verify_signature_and_time(&hs_token(&c), NOW).is_ok());
        // Ten years ahead, properly signed by the provider's key: refused now and forever.
        for exp in [c.iat + TOKEN_TTL_SECS + 1, c.iat + 10 * 365 * 86_400, u64::MAX, c.iat - 1] {
            let mut long = c.clone();
            long.exp = exp;
            let t = hs_token(&long);
            for now in [NOW, c.iat, c.iat + 1000] {
                let e = v.verify_signature_and_time(&t, now).unwrap_err();
                assert_eq!(e, Error::TokenMalformed("exp must be at most 300 s after iat"), "exp {exp}");
            }
        }
    }

    #[test]
    fn iat_in_the_future() {
        let v = hs_verifier();
        let mut c = claims();
        c.iat = NOW + DEFAULT_LEEWAY_SECS;
        c.exp = c.iat + TOKEN_TTL_SECS;
        assert!(v.verify_signature_and_time(&hs_token(&c), NOW).is_ok());
        c.iat += 1;
        c.exp += 1;
        assert_eq!(code(v.verify_signature_and_time(&hs_token(&c), NOW)), "token_not_yet_valid");
    }

    #[test]
    fn request_binding_failures() {
        let v = hs_verifier();
        let t = hs_token(&claims());
        let p = price("0.001");
        let body = claims().bdy.unwrap();
        let good = Expectation { resource: "POST /api/v1/inference", body_sha256: Some(&body), price: &p };
        assert!(v.verify(&t, &good, NOW).is_ok());

        let e = Expectation { resource: "GET /api/v1/inference", ..good };
        assert_eq!(code(v.verify(&t, &e, NOW)), "token_resource");
        let e = Expectation { body_sha256: Some("AAAA"), ..good };
        assert_eq!(code(v.verify(&t, &e, NOW)), "token_resource");
        // A body bound by the request but absent from the token.
        let mut c = claims();
        c.bdy = None;
        assert_eq!(code(v.verify(&hs_token(&c), &good, NOW)), "token_resource");

        let mut c = claims();
        c.aud = "acct_other".into();
        assert_eq!(code(v.verify(&hs_token(&c), &good, NOW)), "token_audience");
        let mut c = claims();
        c.mode = "live".into();
        assert_eq!(code(v.verify(&hs_token(&c), &good, NOW)), "token_mode");
    }

    #[test]
    fn price_failures() {
        let v = hs_verifier();
        let t = hs_token(&claims());
        let more = price("0.002");
        let e = Expectation { resource: "POST /api/v1/inference", body_sha256: None, price: &more };
        assert_eq!(
            v.verify(&t, &e, NOW).unwrap_err(),
            Error::TokenUnderpaid { paid: "0.001".into(), price: "0.002".into() }
        );
        // Overpaying is fine, and equal amounts in another spelling are equal.
        let less = price("0.0005");
        assert!(v.verify(&t, &Expectation { price: &less, ..e }, NOW).is_ok());
        let mut c = claims();
        c.amt = "0.00100".into();
        assert!(v.verify(&hs_token(&c), &Expectation { price: &price("0.001"), ..e }, NOW).is_ok());

        let mut c = claims();
        c.cur = "eur".into();
        assert_eq!(
            v.verify(&hs_token(&c), &Expectation { price: &price("0.001"), ..e }, NOW).unwrap_err(),
            Error::TokenCurrency { paid: "eur".into(), price: "usd".into() }
        );
        let mut c = claims();
        c.amt = "lots".into();
        assert_eq!(verify_code(&v, &hs_token(&c)), "token_malformed");
    }

    #[test]
    fn size_and_syntax() {
        let v = hs_verifier();
        let big = format!("{}.{}.x", "a".repeat(MAX_TOKEN_BYTES), "b");
        assert_eq!(
            v.verify_signature_and_time(&big, NOW).unwrap_err(),
            Error::TokenTooLarge { limit: MAX_TOKEN_BYTES }
        );
        // A valid token with a huge claim is refused on size alone.
        let mut c = claims();
        c.iss = "x".repeat(MAX_TOKEN_BYTES);
        assert_eq!(verify_code(&v, &hs_token(&c)), "token_too_large");

        // Our issuer's header takes the known-header path; the same header spelled otherwise
        // (other key order) is parsed and verifies the same.
        let t = hs_token(&claims());
        assert_eq!(t.split('.').next(), v.hs256_header_b64.as_deref());
        let other = URL_SAFE_NO_PAD.encode(br#"{"typ":"vlexivo-proof+jwt","alg":"HS256"}"#);
        let (_, rest) = t.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let signing_input = format!("{other}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&HS_KEY, signing_input.as_bytes()));
        assert_eq!(v.verify_signature_and_time(&format!("{signing_input}.{sig}"), NOW).unwrap(), claims());

        // A signed payload that is not UTF-8 (inside a string, or outside) is malformed.
        let header = v.hs256_header_b64.clone().unwrap();
        for raw in [&b"{\"jti\":\"a\xff\"}"[..], &b"{\xff}"[..]] {
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(raw));
            let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&HS_KEY, input.as_bytes()));
            assert_eq!(code(v.verify_signature_and_time(&format!("{input}.{sig}"), NOW)), "token_malformed");
        }

        // Claims with JSON escapes are read through the borrowed parser's copying path.
        let mut c = claims();
        c.iss = "http://x/\"quoted\"\n\u{e9}".into();
        c.sub = "tab\there".into();
        assert_eq!(v.verify_signature_and_time(&hs_token(&c), NOW).unwrap(), c);

        // The largest token under the limit still verifies (decode buffers are big enough).
        let mut c = claims();
        let mut biggest = None;
        for len in 2500..2800 {
            c.iss = "x".repeat(len);
            let t = hs_token(&c);
            if t.len() <= MAX_TOKEN_BYTES {
                biggest = Some(t);
            }
        }
        let biggest = biggest.unwrap();
        assert!(biggest.len() > MAX_TOKEN_BYTES - 4, "{}", biggest.len());
        assert!(v.verify_signature_and_time(&biggest, NOW).is_ok());

        let t = hs_token(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        for bad in [
            String::new(),
            "garbage".to_string(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{t}.{}", parts[2]),
            format!("!!!.{}.{}", parts[1], parts[2]),
            format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
            format!("{}.{}.{}", b64("[1,2]"), parts[1], parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
        ] {
            assert_eq!(verify_code(&v, &bad), "token_malformed", "{bad}");
        }
        // Correctly signed but the payload is not the claims.
        let h = format!(r#"{{"alg":"HS256","typ":"{TOKEN_TYP}"}}"#);
        for payload in ["not json", "{}", r#"{"jti":"x"}"#] {
            assert_eq!(verify_code(&v, &forge(&h, payload)), "token_malformed", "{payload}");
        }
        let mut no_exp: serde_json::Value = serde_json::to_value(claims()).unwrap();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(verify_code(&v, &forge(&h, &no_exp.to_string())), "token_malformed");
        // Unsigned garbage payload fails on the signature first.
        let t2 = format!("{}.{}.{}", parts[0], b64("not json"), parts[2]);
        assert_eq!(verify_code(&v, &t2), "token_invalid");
    }

    #[test]
    fn errors_never_contain_the_token_or_key() {
        let v = hs_verifier();
        let t = hs_token(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        let bad_tokens = [
            format!("{}.{}.{}", parts[0], parts[1], "AAAA"),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}.{}.{}", b64("{"), parts[1], parts[2]),
        ];
        for bad in &bad_tokens {
            let e = v.verify_signature_and_time(bad, NOW).unwrap_err();
            let msg = format!("{e} {e:?}");
            for p in &parts {
                assert!(!msg.contains(p), "{msg}");
            }
            assert!(!msg.contains(&URL_SAFE_NO_PAD.encode(HS_KEY)));
        }
        assert!(!format!("{v:?}").contains("7, 7"));
    }

    #[test]
    fn config_errors() {
        let cfg = VerifierConfig::new(ACCT, "sandbox");
        assert_eq!(TokenVerifier::new(cfg.clone()).unwrap_err().code(), "config_invalid");
        let mut c = cfg.clone();
        c.hs256_key = Some(HS_KEY);
        c.leeway_secs = MAX_LEEWAY_SECS + 1;
        assert_eq!(TokenVerifier::new(c.clone()).unwrap_err().code(), "config_invalid");
        c.leeway_secs = MAX_LEEWAY_SECS;
        assert!(TokenVerifier::new(c).is_ok());

        // Non-Ed25519 JWKs are refused.
        let bad_jwks = [
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a"}]}"#,
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"a"}]}"#,
            r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"a"}]}"#,
        ];
        for j in bad_jwks {
            let mut c = cfg.clone();
            c.jwks = Some(serde_json::from_str(j).unwrap());
            assert_eq!(TokenVerifier::new(c).unwrap_err().code(), "config_invalid", "{j}");
        }
        let key = ed_key();
        let mut jwk = key.public_jwk();
        jwk.common.key_id = None;
        let mut c = cfg.clone();
        c.jwks = Some(JwkSet { keys: vec![jwk] });
        assert_eq!(TokenVerifier::new(c).unwrap_err().code(), "config_invalid");
        let mut jwk = key.public_jwk();
        jwk.common.key_algorithm = Some(KeyAlgorithm::HS256);
        let mut c = cfg.clone();
        c.jwks = Some(JwkSet { keys: vec![jwk] });
        assert_eq!(TokenVerifier::new(c).unwrap_err().code(), "config_invalid");
        let mut c = cfg.clone();
        c.jwks = Some(jwks(&[&key, &key]));
        assert_eq!(TokenVerifier::new(c).unwrap_err().code(), "config_invalid");
        // An empty JWKS is no key at all.
        let mut c = cfg;
        c.jwks = Some(JwkSet::default());
        assert_eq!(TokenVerifier::new(c).unwrap_err().code(), "config_invalid");
    }

    #[test]
    fn both_algorithms_when_both_keys_are_held() {
        let key = ed_key();
        let mut cfg = VerifierConfig::new(ACCT, "sandbox");
        cfg.hs256_key = Some(HS_KEY);
        cfg.jwks = Some(jwks(&[&key]));
        let v = TokenVerifier::new(cfg).unwrap();
        ok(&v, &hs_token(&claims()));
        ok(&v, &TokenIssuer::new(SigningKey::EdDsa(key)).unwrap().issue(&claims()).unwrap());
    }

    /// The SIMD segment decoder against the `base64` crate's strict URL_SAFE_NO_PAD (the
    /// decoder used before): same bytes, same refusals (bad characters, padding, a dangling
    /// character, non-zero trailing bits), on both sides of the stack buffer's size.
    fn decodes_like_base64_crate(s: &str) -> Result<(), String> {
        let ours = SegmentBuf::new().decode(s).map(<[u8]>::to_vec);
        let reference = URL_SAFE_NO_PAD.decode(s).ok();
        if ours == reference { Ok(()) } else { Err(format!("{s:?}: ours {ours:?}, base64 {reference:?}")) }
    }

    #[test]
    fn segment_decoding_edge_cases() {
        for s in [
            "", "A", "AA", "AB", "AAA", "AAB", "AAAA", "AA==", "AAA=", "A=AA", "-_-_", "+/+/", "AA AA",
            "AAAA\n", "QQ", "QR", "QUE", "QUF",
        ] {
            decodes_like_base64_crate(s).unwrap();
        }
        // Around the stack buffer's edge (768 decoded bytes = 1024 characters).
        for n in [1020, 1022, 1023, 1024, 1026, 1027, 1028, 1030, 4000] {
            decodes_like_base64_crate(&"AbC-_9".repeat(n).chars().take(n).collect::<String>()).unwrap();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn segment_decoding_matches_base64_crate(s in "[A-Za-z0-9_-]{0,1100}") {
            proptest::prop_assert!(decodes_like_base64_crate(&s).is_ok(), "{}", decodes_like_base64_crate(&s).unwrap_err());
        }

        #[test]
        fn segment_decoding_matches_base64_crate_on_any_text(s in "[A-Za-z0-9_=+/ .-]{0,80}|\\PC{0,40}") {
            proptest::prop_assert!(decodes_like_base64_crate(&s).is_ok(), "{}", decodes_like_base64_crate(&s).unwrap_err());
        }
    }

    /// What serde makes of `json`, the reference for the canonical-form scanner.
    fn serde_claims(json: &str) -> Option<ClaimsRef<'_>> {
        serde_json::from_str(json).ok()
    }

    /// The scanner accepts only what serde accepts, to the same claims.
    fn scanner_agrees(json: &str) -> Result<(), String> {
        match canonical_claims(json) {
            None => Ok(()),
            Some(c) if serde_claims(json).as_ref() == Some(&c) => Ok(()),
            Some(c) => Err(format!("{json:?}: scanner {c:?}, serde {:?}", serde_claims(json))),
        }
    }

    fn arb_claims() -> impl proptest::strategy::Strategy<Value = ProofClaims> {
        use proptest::prelude::*;
        let text =
            || prop_oneof![4 => "[ -~]{0,24}", 1 => "\\PC{0,12}", 1 => "[\"\\\\\\x00-\\x1f\\x7f a]{0,6}"];
        (
            (text(), text(), text(), text(), text(), text()),
            (text(), text(), proptest::option::of(text()), text(), text()),
            (any::<u64>(), any::<u64>()),
        )
            .prop_map(|((jti, iss, aud, sub, txh, amt), (cur, res, bdy, mode, net), (iat, exp))| {
                ProofClaims { jti, iss, aud, sub, txh, amt, cur, res, bdy, mode, net, iat, exp }
            })
    }

    /// [`plain_ascii`] is the check it replaces: UTF-8 (ASCII), and nothing [`canonical_claims`]
    /// refuses.
    fn plain_ascii_is_exact(bytes: &[u8]) -> Result<(), String> {
        let want = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| t.is_ascii() && !t.bytes().any(|b| b == b'\\' || b < 0x20));
        (plain_ascii(bytes) == want).then_some(()).ok_or_else(|| format!("{bytes:?}"))
    }

    /// [`quote_at`] finds what a byte-by-byte search finds.
    fn quote_at_is_exact(bytes: &[u8]) -> Result<(), String> {
        let want = bytes.iter().position(|&b| b == b'"');
        (quote_at(bytes) == want).then_some(()).ok_or_else(|| format!("{bytes:?}"))
    }

    #[test]
    fn plain_ascii_and_quote_at_edges() {
        for b in 0..=255u8 {
            for at in 0..18 {
                let mut text = vec![b'a'; 17];
                text[at.min(16)] = b;
                plain_ascii_is_exact(&text[..at.max(1)]).unwrap();
                quote_at_is_exact(&text).unwrap();
                quote_at_is_exact(&text[..at]).unwrap();
            }
        }
        // A quote after a byte whose borrow could flag the next (0x01, 0x00, 0x80, 0xa2).
        for pre in [0x00u8, 0x01, 0x21, 0x23, 0x80, 0xa2, 0xff] {
            quote_at_is_exact(&[pre, b'"', b'"', 0, 0, 0, 0, 0, b'"']).unwrap();
            quote_at_is_exact(&[b'x', b'x', b'x', b'x', b'x', b'x', b'x', pre, b'"']).unwrap();
        }
        assert_eq!(plain_ascii(b""), Some(""));
        assert_eq!(quote_at(b""), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn plain_ascii_agrees_with_utf8_and_escape_checks(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            text in "[ -~]{0,120}|\\PC{0,40}",
        ) {
            proptest::prop_assert!(plain_ascii_is_exact(&bytes).is_ok());
            proptest::prop_assert!(plain_ascii_is_exact(text.as_bytes()).is_ok());
            proptest::prop_assert!(quote_at_is_exact(&bytes).is_ok());
            proptest::prop_assert!(quote_at_is_exact(text.as_bytes()).is_ok());
        }
    }

    #[test]
    fn canonical_claims_edge_cases() {
        let json = serde_json::to_string(&claims()).unwrap();
        assert_eq!(canonical_claims(&json), serde_claims(&json));
        assert!(canonical_claims(&json).is_some());
        let with = |from: &str, to: &str| json.replacen(from, to, 1);
        let exp = format!("\"exp\":{}", claims().exp);
        // (text, serde reads it, the scanner reads it)
        for (variant, serde_ok, scanned) in [
            (with(&exp, "\"exp\":18446744073709551615"), true, true),
            (with(&exp, "\"exp\":18446744073709551616"), false, false),
            (with(&exp, "\"exp\":0"), true, true),
            (with(&exp, "\"exp\":01"), false, false),
            (with(&exp, "\"exp\":1.0"), false, false),
            (with(&exp, "\"exp\":-1"), false, false),
            (with(&exp, "\"exp\":1e3"), false, false),
            (with(&exp, "\"exp\":\"1\""), false, false),
            (with("{", "{ "), true, false),
            (with(",\"iss\"", ", \"iss\""), true, false),
            (with("}", ",\"zzz\":1}"), true, false),
            (with("}", "} "), true, false),
            (with("}", "}}"), false, false),
            (with("\"jti\":\"", "\"jti\":\"\\u0041"), true, false),
            (with("\"jti\":\"", "\"jti\":\"\\\""), true, false),
            (with("\"jti\":\"", "\"jti\":\"\t"), false, false),
            (with("{\"jti\":\"nonce-abc\",", "{"), false, false),
            (with("{\"jti\":\"nonce-abc\",", "{").replacen('}', ",\"jti\":\"nonce-abc\"}", 1), true, false),
            (with("\"iss\"", "\"jti\":\"x\",\"iss\""), false, false),
        ] {
            assert_eq!(serde_claims(&variant).is_some(), serde_ok, "{variant}");
            assert_eq!(canonical_claims(&variant).is_some(), scanned, "{variant}");
            scanner_agrees(&variant).unwrap();
        }
        // The optional body hash, present.
        let bound = serde_json::to_string(&ProofClaims { bdy: Some("q80xL8Gq".into()), ..claims() }).unwrap();
        assert_eq!(canonical_claims(&bound).unwrap().bdy.as_deref(), Some("q80xL8Gq"));
        scanner_agrees(&bound).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn canonical_claims_read_what_serde_reads(c in arb_claims()) {
            let json = serde_json::to_string(&c).unwrap();
            proptest::prop_assert!(scanner_agrees(&json).is_ok(), "{}", scanner_agrees(&json).unwrap_err());
            // Without anything serde_json escapes, the issuer's form always takes the scanner.
            let plain = |t: &str| !t.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
            let texts = [&c.jti, &c.iss, &c.aud, &c.sub, &c.txh, &c.amt, &c.cur, &c.res, &c.mode, &c.net];
            if texts.iter().all(|t| plain(t)) && c.bdy.as_deref().is_none_or(plain) {
                proptest::prop_assert!(canonical_claims(&json).is_some(), "{}", json);
            }
        }

        #[test]
        fn canonical_claims_agree_with_serde_on_damaged_text(
            c in arb_claims(),
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 0u8..3, "[ -~]|\\PC"), 1..4),
        ) {
            let mut json = serde_json::to_string(&c).unwrap();
            for (at, kind, ch) in edits {
                let mut cut = at.index(json.len() + 1);
                while !json.is_char_boundary(cut) { cut -= 1; }
                match kind {
                    0 => json.insert_str(cut, &ch),
                    1 => if cut < json.len() { let end = (cut + 1..=json.len()).find(|&e| json.is_char_boundary(e)).unwrap(); json.replace_range(cut..end, ""); },
                    _ => if cut < json.len() { let end = (cut + 1..=json.len()).find(|&e| json.is_char_boundary(e)).unwrap(); json.replace_range(cut..end, &ch); },
                }
            }
            proptest::prop_assert!(scanner_agrees(&json).is_ok(), "{}", scanner_agrees(&json).unwrap_err());
        }
    }
}
