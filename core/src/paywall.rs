//! The provider middleware's decisions, shared by every adapter (tower, Express, Fastify, Hapi,
//! ASGI, WSGI): issue a challenge, verify a proof and consume its nonce, release it when the
//! handler fails, and shape every refusal the same way. Adapters only move bytes.

use crate::challenge::{Challenge, ChallengeParams, body_digest, resource_path};
use crate::env::Entropy;
use crate::error::{Error, Result};
use crate::keys::{Mode, ProviderKeys};
use crate::money::{Currency, Money};
use crate::origin::{Origin, push_request_origin};
use crate::payer_pricing::{PricedPayer, payer_hint};
use crate::store::{Consume, NonceStore, nonce_key, parse_handle, push_lease};
use crate::token::{Expectation, TokenVerifier, VerifierConfig};
use serde::Serialize;

/// Default facilitator when neither an option nor `VLX_FACILITATOR_URL` names one.
pub const DEFAULT_FACILITATOR_URL: &str = "http://127.0.0.1:4020";
/// Default clock-skew leeway on token times.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone)]
pub struct PaywallConfig {
    pub api_secret: String,
    /// Must agree with the secret's prefix when given.
    pub mode: Option<Mode>,
    pub facilitator_url: String,
    /// "sandbox" by default in sandbox mode; live needs a CAIP-2 network ("eip155:8453").
    pub network: Option<String>,
    pub challenge_ttl_secs: u64,
    pub leeway_secs: u64,
    /// Facilitator EdDSA keys: accept EdDSA tokens verifiable by anyone downstream.
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
    /// Bind challenges to the request body's digest (for non-idempotent POSTs).
    pub bind_body: bool,
    /// The origin clients call this API at (`https://api.example.com`), bound into every
    /// challenge and token. `None`: each request's own scheme and `Host` header, which is right
    /// on a directly exposed server but not behind a proxy that rewrites either; and a server
    /// that answers any `Host` lets a relaying site name itself. Configure it in production.
    pub origin: Option<String>,
    /// Live mode's settlement terms (token, its EIP-712 domain, payout address, network). When
    /// `None` in live mode they are read from `VLX_NETWORK`, `VLX_ASSET`, `VLX_PAY_TO` (and
    /// `VLX_ASSET_NAME`, `VLX_ASSET_VERSION`), which `vlexivo provider create --mode live` prints.
    pub live: Option<crate::eip3009::LiveTerms>,
}

impl PaywallConfig {
    pub fn new(api_secret: impl Into<String>) -> Self {
        Self {
            api_secret: api_secret.into(),
            mode: None,
            facilitator_url: DEFAULT_FACILITATOR_URL.into(),
            network: None,
            challenge_ttl_secs: crate::challenge::DEFAULT_CHALLENGE_TTL_SECS,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            jwks: None,
            bind_body: false,
            origin: None,
            live: None,
        }
    }
}

/// The request being paywalled, as the adapter sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// Path with or without query string (the query is dropped from the binding).
    pub path: &'a str,
    /// `http` or `https`: how the server received the request (not a forwarded header).
    /// Used with `host` only when the paywall has no configured origin.
    pub scheme: &'a str,
    /// The `Host` header (HTTP/2: `:authority`).
    pub host: Option<&'a str>,
    /// Raw body, when the paywall binds bodies.
    pub body: Option<&'a [u8]>,
    /// The `Vlexivo-Payer` header, as received (a hint: [`crate::payer_pricing`]). A challenge
    /// for this request names the payer it hints, when it is an address.
    pub payer: Option<&'a str>,
}

impl<'a> RequestInfo<'a> {
    /// A request without a body, received over `scheme` for `host`.
    pub fn new(method: &'a str, scheme: &'a str, host: Option<&'a str>, path: &'a str) -> Self {
        Self { method, path, scheme, host, body: None, payer: None }
    }
}

/// The token a proof header carries: the header value trimmed of white space (as `str::trim`
/// does), `None` when nothing is left. A value that starts and ends with a visible ASCII
/// character (every token) is its own trim, and is not decoded character by character.
pub fn proof_token(proof: Option<&str>) -> Option<&str> {
    let p = proof?;
    let token = match (p.as_bytes().first(), p.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => p,
        _ => p.trim(),
    };
    (!token.is_empty()).then_some(token)
}

/// Verified payment facts, handed to the route handler (`req.vlxPayment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFacts {
    pub payer: String,
    pub amount: String,
    pub currency: String,
    pub tx_hash: String,
    pub nonce: String,
    pub paid_at: u64,
    pub expires_at: u64,
    pub resource: String,
    /// Release handle: the nonce-store key and this consume's lease (`key~lease`), kept so the
    /// adapter can release the nonce if the handler fails ([`Paywall::release`]).
    #[serde(skip)]
    pub store_key: String,
}

/// [`PaymentFacts`] borrowed from the token being verified ([`Paywall::verify_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaidRef<'a> {
    pub payer: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub tx_hash: &'a str,
    pub nonce: &'a str,
    pub paid_at: u64,
    pub expires_at: u64,
    pub resource: &'a str,
    pub store_key: &'a str,
}

impl<'a> From<&'a PaymentFacts> for PaidRef<'a> {
    fn from(f: &'a PaymentFacts) -> Self {
        Self {
            payer: &f.payer,
            amount: &f.amount,
            currency: &f.currency,
            tx_hash: &f.tx_hash,
            nonce: &f.nonce,
            paid_at: f.paid_at,
            expires_at: f.expires_at,
            resource: &f.resource,
            store_key: &f.store_key,
        }
    }
}

impl PaidRef<'_> {
    pub fn to_facts(&self) -> PaymentFacts {
        PaymentFacts {
            payer: self.payer.to_string(),
            amount: self.amount.to_string(),
            currency: self.currency.to_string(),
            tx_hash: self.tx_hash.to_string(),
            nonce: self.nonce.to_string(),
            paid_at: self.paid_at,
            expires_at: self.expires_at,
            resource: self.resource.to_string(),
            store_key: self.store_key.to_string(),
        }
    }

    /// The `Vlexivo-Receipt` value, `tx=…; amount=…; currency=…; payer=…; nonce=…`, appended to
    /// `out`. Built by hand: it runs on every paid request and `format!` costs several times more.
    pub fn write_receipt(&self, out: &mut String) {
        let parts: [(&str, &str); 5] = [
            ("tx=", self.tx_hash),
            ("; amount=", self.amount),
            ("; currency=", self.currency),
            ("; payer=", self.payer),
            ("; nonce=", self.nonce),
        ];
        out.reserve(parts.iter().map(|(k, v)| k.len() + v.len()).sum());
        for (k, v) in parts {
            out.push_str(k);
            out.push_str(v);
        }
    }
}

/// A verified proof whose nonce is still to be consumed ([`Paywall::check`]).
#[derive(Debug, Clone)]
pub struct PendingPayment {
    key: String,
    consume_until: u64,
    now: u64,
    facts: PaymentFacts,
}

impl PendingPayment {
    /// The nonce-store key to consume.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Until when the nonce must be held (the token's expiry plus the leeway).
    pub fn consume_until(&self) -> u64 {
        self.consume_until
    }

    /// The `now` the proof was checked at (the store compares expiries with it).
    pub fn now(&self) -> u64 {
        self.now
    }
}

/// A response the adapter sends instead of running the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
    pub code: &'static str,
}

/// The 402 body: everything an agent needs to decide (and a human to read).
#[derive(Serialize)]
struct ChallengeBody<'a> {
    error: &'a str,
    message: String,
    price: String,
    currency: &'a str,
    scope: &'a str,
    resource: String,
    facilitator: &'a str,
    expires_at: u64,
    challenge: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

#[derive(Debug)]
pub struct Paywall {
    keys: ProviderKeys,
    verifier: TokenVerifier,
    facilitator: String,
    network: String,
    ttl: u64,
    leeway: u64,
    bind_body: bool,
    origin: Option<Origin>,
    live: Option<crate::eip3009::LiveTerms>,
}

impl Paywall {
    pub fn new(cfg: PaywallConfig) -> Result<Self> {
        let keys = ProviderKeys::from_secret(&cfg.api_secret)?;
        if let Some(mode) = cfg.mode
            && mode != keys.mode
        {
            return Err(Error::ModeMismatch {
                expected: mode.as_str().into(),
                got: format!("an apiSecret for {}", keys.mode),
            });
        }
        let live = match keys.mode {
            Mode::Sandbox if cfg.live.is_some() => {
                return Err(Error::Config("settlement terms are for live mode only".into()));
            }
            Mode::Sandbox => None,
            Mode::Live => {
                let terms = match cfg.live {
                    Some(t) => t,
                    None => {
                        crate::eip3009::LiveTerms::from_env(|n| std::env::var(n).ok())?.ok_or_else(|| {
                            Error::Config(
                            "live mode needs its settlement terms: the network, the token and the payout \
                             address (VLX_NETWORK, VLX_ASSET, VLX_PAY_TO)"
                                .into(),
                        )
                        })?
                    }
                };
                terms.check().map_err(|e| Error::Config(format!("settlement terms: {e}")))?;
                Some(terms)
            }
        };
        let network = match (cfg.network, &live) {
            (Some(n), Some(t)) if n != t.network => {
                return Err(Error::Config(format!("network {n:?} is not the terms' {:?}", t.network)));
            }
            (Some(n), _) => {
                crate::payment::chain_id(&n).map_err(|_| Error::Config(format!("network {n:?}")))?;
                n
            }
            (None, Some(t)) => t.network.clone(),
            (None, None) => "sandbox".to_string(),
        };
        let url = cfg.facilitator_url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config("facilitator URL must be http(s)".into()));
        }
        if cfg.challenge_ttl_secs == 0 || cfg.challenge_ttl_secs > 3600 {
            return Err(Error::Config("challenge TTL must be 1..=3600 seconds".into()));
        }
        let origin = cfg.origin.as_deref().map(Origin::parse).transpose()?;
        let verifier = TokenVerifier::new(VerifierConfig {
            account: keys.account.clone(),
            mode: keys.mode.as_str().into(),
            hs256_key: Some(keys.token_hs256),
            jwks: cfg.jwks,
            leeway_secs: cfg.leeway_secs,
        })?;
        Ok(Self {
            keys,
            verifier,
            facilitator: url,
            network,
            ttl: cfg.challenge_ttl_secs,
            leeway: cfg.leeway_secs,
            bind_body: cfg.bind_body,
            origin,
            live,
        })
    }

    pub fn account(&self) -> &str {
        &self.keys.account
    }

    pub fn mode(&self) -> Mode {
        self.keys.mode
    }

    pub fn facilitator_url(&self) -> &str {
        &self.facilitator
    }

    pub fn binds_body(&self) -> bool {
        self.bind_body
    }

    /// The configured origin, if any (else each request's own is bound).
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// The origin this request is bound to: the configured one, else the request's scheme and
    /// `Host` in normal form (`request_malformed` when the `Host` is missing or malformed).
    pub fn origin_of(&self, req: &RequestInfo<'_>) -> Result<Origin> {
        match &self.origin {
            Some(o) => Ok(o.clone()),
            None => Origin::of_request(req.scheme, req.host),
        }
    }

    /// The resource a proof for this request must be bound to, as the token's `res` carries
    /// it: `"METHOD origin/path"` (`"GET https://api.example.com/api/v1/data"`).
    pub fn binding(&self, req: &RequestInfo<'_>) -> Result<String> {
        let path = resource_path(req.path);
        let origin_len = self.origin.as_ref().map_or(32, |o| o.as_str().len());
        let mut s = String::with_capacity(req.method.len() + 1 + origin_len + path.len());
        s.push_str(req.method);
        s.make_ascii_uppercase();
        s.push(' ');
        match &self.origin {
            Some(o) => s.push_str(o.as_str()),
            None => push_request_origin(&mut s, req.scheme, req.host)?,
        }
        s.push_str(path);
        Ok(s)
    }

    /// Parse a provider's price (a string from config or a resolver).
    pub fn parse_price(price: &str, currency: &str) -> Result<Money> {
        Self::price_with(currency, |c| Money::parse(price, c))
    }

    /// A provider's price read by `read` (a float, a host-language decimal, …) in `currency`:
    /// every defect — unknown currency, malformed, zero, negative, over-precise — is
    /// `price_invalid` (the provider's fault, a 500), never the caller's.
    pub fn price_with(currency: &str, read: impl FnOnce(Currency) -> Result<Money>) -> Result<Money> {
        let as_price = |e: Error| match e {
            Error::PriceInvalid(_) => e,
            other => Error::PriceInvalid(other.to_string()),
        };
        let currency = Currency::parse(currency).map_err(as_price)?;
        read(currency).and_then(Money::positive).map_err(as_price)
    }

    /// Who this request is priced for: the payer of its proof when the proof's signature,
    /// audience, mode and time verify (whatever it bought: the full check follows at the price
    /// computed for that payer), else the payer its hint names, else nobody.
    pub fn priced_payer(&self, proof: Option<&str>, hint: Option<&str>, now: u64) -> Option<PricedPayer> {
        let proven = proof_token(proof).and_then(|t| {
            self.verifier
                .verify_signature_and_time(t, now)
                .ok()
                .filter(|c| c.aud == self.keys.account && c.mode == self.keys.mode.as_str())
        });
        match proven {
            Some(c) => Some(PricedPayer { address: c.sub, proven: true }),
            None => payer_hint(hint).map(|address| PricedPayer { address, proven: false }),
        }
    }

    /// Verify a proof for this request at `price` and consume its nonce. On success the handler
    /// may run; the caller releases the nonce if the handler fails.
    pub fn verify(
        &self,
        proof: Option<&str>,
        req: &RequestInfo<'_>,
        price: &Money,
        now: u64,
        store: &dyn NonceStore,
    ) -> Result<PaymentFacts> {
        self.verify_with(proof, req, price, now, store, |p| p.to_facts())
    }

    /// [`verify`](Self::verify), handing the facts to `f` borrowed from the token (nothing is
    /// copied unless `f` copies it): for bindings that convert the facts once, straight into
    /// their own form. `f` runs only for a fresh, consumed nonce.
    pub fn verify_with<T>(
        &self,
        proof: Option<&str>,
        req: &RequestInfo<'_>,
        price: &Money,
        now: u64,
        store: &dyn NonceStore,
        f: impl FnOnce(&PaidRef<'_>) -> T,
    ) -> Result<T> {
        self.verified(proof, req, price, now, |paid, mut handle, consume_until| {
            match store.consume(&handle, consume_until, now)? {
                Consume::Fresh(lease) => push_lease(&mut handle, lease),
                Consume::Replayed => return Err(Error::TokenReplayed),
            }
            Ok(f(&PaidRef { store_key: &handle, ..paid }))
        })
    }

    /// The first half of [`verify`](Self::verify) for a store that answers asynchronously: check
    /// the proof and say which nonce to consume, owning everything so the caller may await the
    /// store. [`settle`](Self::settle) finishes with the store's answer.
    pub fn check(
        &self,
        proof: Option<&str>,
        req: &RequestInfo<'_>,
        price: &Money,
        now: u64,
    ) -> Result<PendingPayment> {
        self.verified(proof, req, price, now, |paid, key, consume_until| {
            Ok(PendingPayment { key, consume_until, now, facts: paid.to_facts() })
        })
    }

    /// Check the proof for this request and hand `f` the payment facts (without a store key
    /// yet), the nonce's store key and until when the nonce must be held.
    fn verified<T>(
        &self,
        proof: Option<&str>,
        req: &RequestInfo<'_>,
        price: &Money,
        now: u64,
        f: impl FnOnce(PaidRef<'_>, String, u64) -> Result<T>,
    ) -> Result<T> {
        let resource = self.binding(req)?;
        let token = proof_token(proof).ok_or(Error::TokenMissing)?;
        let digest = match (self.bind_body, req.body) {
            (true, Some(b)) => Some(body_digest(b)),
            (true, None) => Some(body_digest(b"")),
            _ => None,
        };
        let expect = Expectation { resource: &resource, body_sha256: digest.as_deref(), price };
        self.verifier.verify_then(token, &expect, now, |c| {
            let paid = PaidRef {
                payer: &c.sub,
                amount: &c.amt,
                currency: &c.cur,
                tx_hash: &c.txh,
                nonce: &c.jti,
                paid_at: c.iat,
                expires_at: c.exp,
                resource: &resource,
                store_key: "",
            };
            // The nonce lives as long as the token can be presented.
            f(paid, nonce_key(&c.aud, &c.jti), c.exp.saturating_add(self.leeway))
        })?
    }

    /// The second half: the store's answer for a [`PendingPayment`] (a store error, such as
    /// `nonce_store_unavailable`, passes through: fail closed).
    pub fn settle(&self, pending: PendingPayment, consumed: Result<Consume>) -> Result<PaymentFacts> {
        match consumed? {
            Consume::Fresh(lease) => {
                let PendingPayment { mut key, mut facts, .. } = pending;
                push_lease(&mut key, lease);
                facts.store_key = key;
                Ok(facts)
            }
            Consume::Replayed => Err(Error::TokenReplayed),
        }
    }

    /// [`verify`](Self::verify) without blocking the caller's thread on the store: the path for
    /// adapters on an event loop when [`NonceStore::blocks`].
    pub async fn verify_async(
        &self,
        proof: Option<&str>,
        req: &RequestInfo<'_>,
        price: &Money,
        now: u64,
        store: &dyn NonceStore,
    ) -> Result<PaymentFacts> {
        let pending = self.check(proof, req, price, now)?;
        let consumed = store.consume_async(pending.key.clone(), pending.consume_until, pending.now).await;
        self.settle(pending, consumed)
    }

    /// The handler failed (5xx or threw): the token may be presented again until it expires.
    pub fn release(&self, facts: &PaymentFacts, store: &dyn NonceStore) -> Result<()> {
        Self::release_handle(&facts.store_key, store)
    }

    /// [`release`](Self::release) by the handle a binding kept (`PaymentFacts::store_key`). Only
    /// the consume that handed out the handle is undone: a stale or repeated release frees
    /// nothing another request has consumed since.
    pub fn release_handle(handle: &str, store: &dyn NonceStore) -> Result<()> {
        let (key, lease) = parse_handle(handle)?;
        store.release(key, lease)
    }

    /// [`release_handle`](Self::release_handle) without blocking the caller's thread.
    pub async fn release_handle_async(handle: &str, store: &dyn NonceStore) -> Result<()> {
        let (key, lease) = parse_handle(handle)?;
        store.release_async(key.to_string(), lease).await
    }

    /// `Vlexivo-Receipt` header value for a paid response.
    pub fn receipt(facts: &PaymentFacts) -> String {
        let mut out = String::new();
        PaidRef::from(facts).write_receipt(&mut out);
        out
    }

    /// A fresh 402 for this request and price.
    pub fn challenge(
        &self,
        req: &RequestInfo<'_>,
        price: &Money,
        scope: &str,
        now: u64,
        entropy: &dyn Entropy,
    ) -> Result<Rejection> {
        self.challenge_for(&Error::TokenMissing, req, price, scope, now, entropy)
    }

    fn challenge_for(
        &self,
        why: &Error,
        req: &RequestInfo<'_>,
        price: &Money,
        scope: &str,
        now: u64,
        entropy: &dyn Entropy,
    ) -> Result<Rejection> {
        let digest = match (self.bind_body, req.body) {
            (true, b) => Some(body_digest(b.unwrap_or_default())),
            _ => None,
        };
        let mode = self.keys.mode.as_str();
        let origin = self.origin_of(req)?;
        let payer = payer_hint(req.payer);
        let c = Challenge::create(
            &ChallengeParams {
                price,
                scope,
                method: req.method,
                origin: origin.as_str(),
                path: req.path,
                body_sha256: digest.as_deref(),
                account: &self.keys.account,
                facilitator: &self.facilitator,
                mode,
                network: &self.network,
                live: self.live.as_ref(),
                payer: payer.as_deref(),
                ttl_secs: self.ttl,
            },
            &self.keys.challenge_mac,
            now,
            entropy,
        )?;
        let encoded = c.encode();
        // A path that JSON escapes (control bytes are six characters each; ASGI hands paths
        // percent-decoded) can make a challenge no payer or facilitator would decode: refuse it
        // here, as for an over-long path, rather than issue it.
        if encoded.len() > crate::challenge::MAX_CHALLENGE_BYTES {
            return Err(Error::ChallengeTooLarge { limit: crate::challenge::MAX_CHALLENGE_BYTES });
        }
        let message = match why {
            Error::TokenMissing => format!("Payment required: {price} {} {scope}", price.currency()),
            other => format!("{other}; pay {price} {} to retry", price.currency()),
        };
        let body = serde_json::to_string(&ChallengeBody {
            error: why.code(),
            message,
            price: price.to_string(),
            currency: price.currency().code(),
            scope,
            resource: c.resource(),
            facilitator: &self.facilitator,
            expires_at: c.exp,
            challenge: &encoded,
        })
        .expect("serializes");
        Ok(Rejection {
            status: 402,
            headers: vec![(crate::headers::CHALLENGE, encoded), ("Cache-Control", "no-store".into())],
            body,
            code: why.code(),
        })
    }

    /// Shape any refusal. Proof problems get a 402 with a fresh challenge so an honest client
    /// can pay again; a replay is a 409; a provider-side fault (bad price, store down) is a
    /// 5xx whose body names the code but not the details (those go to the provider's log).
    pub fn reject(
        &self,
        err: &Error,
        req: &RequestInfo<'_>,
        price: Option<&Money>,
        scope: &str,
        now: u64,
        entropy: &dyn Entropy,
    ) -> Rejection {
        if err.http_status() == 402
            && let Some(price) = price
        {
            return match self.challenge_for(err, req, price, scope, now, entropy) {
                Ok(r) => r,
                // No challenge can be made for this request (no usable Host): say why.
                Err(e) => Self::plain(&e),
            };
        }
        Self::plain(err)
    }

    /// A refusal without a challenge.
    fn plain(err: &Error) -> Rejection {
        let message = match err {
            Error::PriceInvalid(_) | Error::Internal(_) | Error::NonceStoreUnavailable(_) => {
                "the provider could not price or record this request".to_string()
            }
            other => other.to_string(),
        };
        Rejection {
            status: err.http_status(),
            headers: vec![("Cache-Control", "no-store".into())],
            body: serde_json::to_string(&ErrorBody { error: err.code(), message }).expect("serializes"),
            code: err.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::proof_token;

    /// What `proof_token` must equal: the header trimmed, nothing when empty.
    fn reference(proof: Option<&str>) -> Option<&str> {
        proof.map(str::trim).filter(|t| !t.is_empty())
    }

    #[test]
    fn proof_token_trims_as_str_trim() {
        let cases = "|| |a| a|a |\ta.b.c\r\n|\u{b}a\u{b}|\u{a0}a\u{a0}|\u{2003}a|a\u{85}|\u{1680}|a.b|\u{0}a\u{0}|~a~|\u{7f}a\u{7f}|é|aé|éa";
        for p in cases.split('|') {
            assert_eq!(proof_token(Some(p)), reference(Some(p)), "{p:?}");
        }
        assert_eq!(proof_token(None), None);
    }

    proptest::proptest! {
        #[test]
        fn proof_token_agrees_with_trim(p in "\\PC{0,12}|[ \t\n\r\u{b}\u{c}a.]{0,8}|\\s{0,3}[!-~]{0,6}\\s{0,3}") {
            proptest::prop_assert_eq!(proof_token(Some(&p)), reference(Some(&p)));
        }
    }
}
