//! The provider's response policy: the rules around a paid handler that every adapter (Express,
//! Fastify, Hapi, tower, ASGI, WSGI) follows by calling these functions instead of keeping its
//! own copy. Sans-I/O: an adapter observes its framework (method, headers, the handler's end)
//! and acts on the answer (run unpaid, price, release the nonce, send a receipt).
//!
//! | question | answer |
//! |---|---|
//! | is this request free? | [`admission`]: only a CORS preflight (`OPTIONS` carrying `Access-Control-Request-Method`); a plain `OPTIONS` pays like any method |
//! | which price applies? | [`priced_method`]: `HEAD` costs what `GET` costs |
//! | several paywalls cover the request? | [`effective_price`]: the highest of their prices (one proof satisfies them all), asked once; a paywall that runs after the one that consumed the proof checks the amount with [`check_stacked`] and never consumes a second nonce |
//! | keep or release the nonce? | [`Outcome::settlement`]: from the handler's outcome, never from the connection |
//! | send `Vlexivo-Receipt`? | [`sends_receipt`]: on a paid response that keeps the payment |
//! | expose our headers to CORS? | [`exposes_headers`]: on a refusal or a receipt-carrying paid response to a request carrying `Origin`; [`expose_value`] merges them into the response's own `Access-Control-Expose-Headers` |
//!
//! The handler's outcome decides the nonce's fate: it is released when the handler failed —
//! answered 5xx, or raised before its response was complete, or ended without any response — so
//! the payer may present the same proof again; it is kept when the handler completed a 2xx, 3xx
//! or 4xx response, whether or not the client was still connected, and when it raised only after
//! its response was complete. A client that disconnects never releases anything by itself: the
//! adapter waits for the handler's end (or keeps the nonce if it never learns it).

use crate::error::{Error, Result};
use crate::money::Money;

/// How a request meets a paywall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A CORS preflight: it passes unpaid (a browser sends it without credentials and expects
    /// only CORS headers back).
    Free,
    /// Everything else pays, at the price of [`priced_method`].
    Priced,
}

/// Whether a request pays. `preflight_header` is whether it carries
/// `Access-Control-Request-Method` (any value). Method names are compared as HTTP does:
/// case-sensitively, so only `OPTIONS` qualifies.
pub fn admission(method: &str, preflight_header: bool) -> Admission {
    if preflight_header && method == "OPTIONS" { Admission::Free } else { Admission::Priced }
}

/// The method whose price applies to `method`: `HEAD` costs what `GET` costs (frameworks
/// answer `HEAD` with the `GET` handler). The proof is still bound to the method the request
/// was made with.
pub fn priced_method(method: &str) -> &str {
    if method.eq_ignore_ascii_case("HEAD") { "GET" } else { method }
}

/// What becomes of a consumed nonce once the handler has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The handler delivered: the proof is spent.
    Keep,
    /// The handler failed: forget the nonce, so the same proof may be presented again until it
    /// expires.
    Release,
}

/// How a paid handler ended, as the adapter observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The status of the response the handler started, if it started one.
    pub status: Option<u16>,
    /// The handler raised (threw, panicked, rejected).
    pub raised: bool,
    /// The response was complete (its last byte handed to the server) when the handler ended
    /// or raised.
    pub complete: bool,
}

impl Outcome {
    /// A response completed with `status` (an exception after it changes nothing).
    pub fn completed(status: u16) -> Self {
        Self { status: Some(status), raised: false, complete: true }
    }

    /// The handler raised before completing a response.
    pub fn raised() -> Self {
        Self { status: None, raised: true, complete: false }
    }

    /// Release when the handler failed: a 5xx, a raise before the response was complete, or an
    /// end without any response; keep otherwise.
    pub fn settlement(&self) -> Settlement {
        match self.status {
            Some(s) if is_failure(s) => Settlement::Release,
            _ if self.complete => Settlement::Keep,
            None => Settlement::Release,
            Some(_) if self.raised => Settlement::Release,
            // Started, not raised, cut short: the client went away mid-body.
            Some(_) => Settlement::Keep,
        }
    }
}

/// A response status that means the handler failed to deliver.
fn is_failure(status: u16) -> bool {
    status >= 500
}

/// Whether a paid response with this status carries `Vlexivo-Receipt`: it does when the
/// payment is kept (not a 5xx, whose nonce is released and whose proof stays good).
pub fn sends_receipt(status: u16) -> bool {
    !is_failure(status)
}

/// Whether the paywall's answers to a request list Vlexivo's headers in
/// `Access-Control-Expose-Headers` (protocol §2): its refusals and, when paid, the response
/// that carries the receipt do when the request carries `Origin` (`origin_header`), so that a
/// browser payer's script can read the challenge and the receipt; answers to any other request
/// are left without it (no script reads them).
pub fn exposes_headers(origin_header: bool) -> bool {
    origin_header
}

/// The `Access-Control-Expose-Headers` value of a response that exposes our headers, given the
/// value the application set (`existing`): its own list, then ours that it lacks. `None` when
/// the value needs no change: it already names both, or is the wildcard `*`.
pub fn expose_value(existing: Option<&str>) -> Option<String> {
    let existing = existing.map(str::trim).filter(|e| !e.is_empty());
    let Some(existing) = existing else { return Some(crate::headers::EXPOSE.to_string()) };
    let listed =
        |name: &str| existing.split(',').any(|t| t.trim().eq_ignore_ascii_case(name) || t.trim() == "*");
    let missing: Vec<&str> =
        [crate::headers::CHALLENGE, crate::headers::RECEIPT].into_iter().filter(|h| !listed(h)).collect();
    if missing.is_empty() { None } else { Some(format!("{existing}, {}", missing.join(", "))) }
}

/// The price a request owes when several paywalls cover it: each must be satisfied by the one
/// proof, so the highest of their prices, asked for once. Paywalls in different currencies (or
/// none at all) are the provider's mistake: `price_invalid`.
pub fn effective_price<'a>(prices: impl IntoIterator<Item = &'a Money>) -> Result<Money> {
    let mut best: Option<Money> = None;
    for p in prices {
        best = Some(match best {
            None => *p,
            Some(b) if b.currency() != p.currency() => {
                return Err(Error::PriceInvalid(format!(
                    "paywalls on one route charge in {} and {}",
                    b.currency(),
                    p.currency()
                )));
            }
            Some(b) => {
                if p.amount() > b.amount() {
                    *p
                } else {
                    b
                }
            }
        });
    }
    best.ok_or_else(|| Error::PriceInvalid("no paywall price".into()))
}

/// What a paywall does when an earlier paywall on the same request already consumed a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stacked {
    /// The payment covers this paywall too: run on, consuming nothing.
    Covered,
    /// It does not (this paywall's price was not known when the proof was checked): release
    /// the consumed nonce and answer `token_underpaid` with a challenge for `ask` — the
    /// effective price of both paywalls, which is this one's, since the payment covered the
    /// first.
    Underpaid { ask: Money },
}

/// A paywall after the one that consumed the proof: `paid` is what the proof paid (its amount),
/// `price` this paywall's price. A payment in another currency never covers it.
pub fn check_stacked(paid: &Money, price: &Money) -> Stacked {
    if paid.currency() == price.currency() && paid.amount() >= price.amount() {
        Stacked::Covered
    } else {
        Stacked::Underpaid { ask: *price }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::Usd).unwrap()
    }

    #[test]
    fn only_a_cors_preflight_is_free() {
        assert_eq!(admission("OPTIONS", true), Admission::Free);
        assert_eq!(admission("OPTIONS", false), Admission::Priced);
        for m in ["GET", "HEAD", "POST", "options", "PUT", "DELETE", "PATCH"] {
            assert_eq!(admission(m, true), Admission::Priced, "{m}");
            assert_eq!(admission(m, false), Admission::Priced, "{m}");
        }
    }

    #[test]
    fn head_is_priced_as_get() {
        assert_eq!(priced_method("HEAD"), "GET");
        assert_eq!(priced_method("head"), "GET");
        for m in ["GET", "POST", "OPTIONS", "DELETE"] {
            assert_eq!(priced_method(m), m);
        }
    }

    #[test]
    fn the_handlers_outcome_decides_release() {
        use Settlement::{Keep, Release};
        let o = |status, raised, complete| Outcome { status, raised, complete }.settlement();
        // Completed: the status decides, a later exception changes nothing.
        for s in [200, 201, 204, 301, 304, 400, 402, 404, 409, 499] {
            assert_eq!(Outcome::completed(s).settlement(), Keep, "{s}");
            assert_eq!(o(Some(s), true, true), Keep, "{s} then raised");
        }
        for s in [500, 502, 503, 599] {
            assert_eq!(Outcome::completed(s).settlement(), Release, "{s}");
            assert_eq!(o(Some(s), false, false), Release, "{s} started");
            assert_eq!(o(Some(s), true, false), Release, "{s} then raised");
        }
        // Raised before completing: released, whatever was started.
        assert_eq!(Outcome::raised().settlement(), Release);
        assert_eq!(o(Some(200), true, false), Release);
        // Ended without any response.
        assert_eq!(o(None, false, false), Release);
        assert_eq!(o(None, false, true), Keep, "complete with no status is not a state adapters report");
        // A 200 cut short without a raise: the client left mid-body; the handler delivered.
        assert_eq!(o(Some(200), false, false), Keep);
    }

    #[test]
    fn receipts_follow_the_settlement() {
        for s in [200u16, 204, 302, 400, 404, 409, 499, 500, 503, 599] {
            assert_eq!(sends_receipt(s), Outcome::completed(s).settlement() == Settlement::Keep, "{s}");
        }
    }

    #[test]
    fn cross_origin_responses_expose_our_headers_merged_with_the_apps() {
        assert!(exposes_headers(true));
        assert!(!exposes_headers(false));
        let ours = crate::headers::EXPOSE;
        assert_eq!(expose_value(None).as_deref(), Some(ours));
        assert_eq!(expose_value(Some(" ")).as_deref(), Some(ours));
        assert_eq!(expose_value(Some("X-Id")).unwrap(), format!("X-Id, {ours}"));
        assert_eq!(
            expose_value(Some("X-Id, vlexivo-receipt")).unwrap(),
            "X-Id, vlexivo-receipt, Vlexivo-Challenge"
        );
        assert_eq!(expose_value(Some("Vlexivo-Receipt,Vlexivo-Challenge")), None);
        assert_eq!(expose_value(Some("*")), None);
    }

    #[test]
    fn stacked_paywalls_ask_the_highest_price_once() {
        assert_eq!(effective_price([&usd("0.001"), &usd("0.05"), &usd("0.01")]).unwrap(), usd("0.05"));
        assert_eq!(effective_price([&usd("0.05")]).unwrap(), usd("0.05"));
        assert_eq!(effective_price([]).unwrap_err().code(), "price_invalid");
    }

    #[test]
    fn a_later_paywall_checks_the_amount_only() {
        // A proof that paid 0.05 (whatever the first paywall asked) covers 0.05, not 0.06.
        assert_eq!(check_stacked(&usd("0.05"), &usd("0.05")), Stacked::Covered);
        assert_eq!(check_stacked(&usd("0.05"), &usd("0.001")), Stacked::Covered);
        assert_eq!(check_stacked(&usd("0.05"), &usd("0.06")), Stacked::Underpaid { ask: usd("0.06") });
        assert_eq!(check_stacked(&usd("0.001"), &usd("0.05")), Stacked::Underpaid { ask: usd("0.05") });
    }
}
