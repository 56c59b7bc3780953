//! # vlexivo-core
//!
//! Every rule of the Vlexivo protocol (HTTP 402 per-call payments), free of any FFI and of I/O
//! except in the clearly named store modules. Time and randomness are injected ([`env`]), so
//! the vectors in `tests/vectors/` are reproducible. `docs/protocol.md` is the normative spec.
//!
//! | module | holds |
//! |---|---|
//! | [`money`] | decimal amounts and currencies |
//! | [`keys`] | `apiSecret` format and the keys derived from it (HKDF) |
//! | [`origin`] | the origin (scheme, host, port) challenges and proofs are bound to |
//! | [`challenge`] | the 402 challenge: create, encode, decode, MAC |
//! | [`wallet`] | secp256k1 wallets, EIP-55 addresses, EIP-712 payment authorizations |
//! | [`eip3009`] | live mode's authorization: EIP-3009 transfers under the token's domain, settlement terms |
//! | [`token`] | the proof token (JWT, HS256 or EdDSA) |
//! | [`store`] | nonce stores by URL: memory, SQLite, Redis, PostgreSQL |
//! | [`policy`] | the payer's spending policy |
//! | [`paywall`] | the provider middleware's decisions: challenge, verify, consume, release, refuse |
//! | [`response_policy`] | the rules around a paid handler: free requests, HEAD, stacked paywalls, release or keep, receipt |
//! | [`client`] | the payer's pay-and-retry flow, without HTTP |
//! | [`payment`] | what the facilitator checks before it charges |
//! | [`api_bodies`] | the facilitator API's other request bodies (onboarding, rotation, top-ups), checked |
//! | [`paging`] | payment lists: filters and sealed cursors |
//! | [`mcp`] | paid MCP tools: `_meta` keys and the JSON-RPC shape of a refusal |
//! | [`onchain`] | a live payment checked on chain from its receipt (provider side, sans I/O) |
//! | [`payer_pricing`] | the payer hint, payer-bound challenges, per-payer usage |
//! | [`envvars`] | the environment variables every binding and the CLI read |
//! | [`base_url`] | base URLs (facilitators) in one normal form |

pub mod api_bodies;
pub mod base_url;
pub mod challenge;
pub mod client;
pub mod eip3009;
pub mod env;
pub mod envvars;
pub mod error;
pub mod keys;
pub mod mcp;
pub mod money;
pub mod onchain;
pub mod origin;
pub mod paging;
pub mod payer_pricing;
pub mod payment;
pub mod paywall;
pub mod paywall_page;
pub mod policy;
pub mod response_policy;
pub mod store;
pub mod token;
pub mod wallet;

pub use error::{BudgetLimit, Error, ErrorCategory, Result};
pub use money::{Currency, Money};

/// Protocol version carried in challenges and tokens.
pub const PROTOCOL_VERSION: u8 = 1;

/// Header names (case-insensitive on the wire).
pub mod headers {
    /// On a 402: the base64url challenge.
    pub const CHALLENGE: &str = "Vlexivo-Challenge";
    /// On the paid retry: the proof token.
    pub const PROOF: &str = "Vlexivo-Proof";
    /// On the paid response: the receipt.
    pub const RECEIPT: &str = "Vlexivo-Receipt";
    /// On the unpaid request: the payer's wallet address, a hint for pricing by payer
    /// ([`crate::payer_pricing`]).
    pub const PAYER: &str = "Vlexivo-Payer";
    /// `Access-Control-Expose-Headers` value for cross-origin responses: what a browser payer
    /// must be able to read.
    pub const EXPOSE: &str = "Vlexivo-Challenge, Vlexivo-Receipt";

    #[cfg(test)]
    mod tests {
        #[test]
        fn expose_lists_the_response_headers() {
            assert_eq!(super::EXPOSE, format!("{}, {}", super::CHALLENGE, super::RECEIPT));
        }
    }
}
