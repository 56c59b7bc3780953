//! The environment variables every part of Vlexivo reads: one table for the CLI, the SDKs and the
//! docs. Names start with `VLX_` (the article's `VLX_SECRET_KEY` and `VLX_WALLET_KEY` set the
//! pattern); the names earlier releases read are kept as aliases.
//!
//! Reading is injected (`get`), like time and randomness: bindings pass their host's view of
//! the environment, tests pass a map.

use crate::{Error, Result};

/// One environment variable: its name, the older names still read, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    /// Read when `name` is unset; setting both to different values is an error.
    pub aliases: &'static [&'static str],
    pub what: &'static str,
}

const fn var(name: &'static str, aliases: &'static [&'static str], what: &'static str) -> EnvVar {
    EnvVar { name, aliases, what }
}

// --- SDKs and the CLI's client commands ---
pub const SECRET_KEY: EnvVar =
    var("VLX_SECRET_KEY", &["VLEXIVO_API_SECRET"], "the provider's apiSecret (sk_test_… or sk_live_…)");
pub const WALLET_KEY: EnvVar =
    var("VLX_WALLET_KEY", &["VLEXIVO_WALLET_KEY"], "the payer's wallet key (0x + 64 hex digits)");
pub const FACILITATOR_URL: EnvVar =
    var("VLX_FACILITATOR_URL", &["VLEXIVO_FACILITATOR_URL"], "the facilitator's base URL");
pub const CA_FILE: EnvVar =
    var("VLX_CA_FILE", &[], "PEM file of extra certificate authorities the Rust clients trust");
pub const TLS_ROOTS: EnvVar =
    var("VLX_TLS_ROOTS", &[], "which roots the Rust clients trust: auto, webpki or platform");
pub const HTTPS_ONLY: EnvVar =
    var("VLX_HTTPS_ONLY", &[], "1/true: the Rust clients refuse plain-http APIs and facilitators");

// --- live mode: a paywall's settlement terms (the facilitator's token and network too) ---
pub const NETWORK: EnvVar = var("VLX_NETWORK", &[], "live mode: the CAIP-2 network, eip155:<chainId>");
pub const ASSET: EnvVar = var("VLX_ASSET", &[], "live mode: the EIP-3009 token contract (0x…)");
pub const ASSET_NAME: EnvVar =
    var("VLX_ASSET_NAME", &[], "live mode: the token's EIP-712 domain name (USD Coin by default)");
pub const ASSET_VERSION: EnvVar =
    var("VLX_ASSET_VERSION", &[], "live mode: the token's EIP-712 domain version (2 by default)");
pub const PAY_TO: EnvVar = var("VLX_PAY_TO", &[], "live mode: the provider's payout address (0x…)");
pub const MODE: EnvVar = var("VLX_MODE", &[], "vlexivo serve: sandbox (simulated ledger) or live (on chain)");
pub const RPC_URL: EnvVar = var("VLX_RPC_URL", &[], "live mode: the chain's JSON-RPC URL");
pub const RELAYER_KEY: EnvVar =
    var("VLX_RELAYER_KEY", &[], "live mode: the facilitator's relayer key (pays gas, holds no payments)");
pub const CONFIRMATIONS: EnvVar = var(
    "VLX_CONFIRMATIONS",
    &[],
    "live mode: blocks before a proof is issued (0: once the node accepted it)",
);
pub const FUNDING_KEY: EnvVar = var(
    "VLX_FUNDING_KEY",
    &[],
    "live mode: the funding wallet's key (0x + 64 hex digits) a payer's auto top-up transfers from",
);
pub const POLL_MS: EnvVar =
    var("VLX_POLL_MS", &[], "live mode: how often receipts and blocks are polled, in milliseconds");
pub const BATCH_WINDOW_MS: EnvVar = var(
    "VLX_BATCH_WINDOW_MS",
    &[],
    "live mode: relay the payments arriving within this many milliseconds in one Multicall3 transaction (0: off)",
);
pub const BATCH_MAX: EnvVar = var("VLX_BATCH_MAX", &[], "live mode: most payments in one batched relay");
pub const MULTICALL: EnvVar =
    var("VLX_MULTICALL", &[], "live mode: the Multicall3 contract batched relays go through");

// --- the facilitator service (`vlexivo serve`) ---
pub const ADDR: EnvVar = var("VLX_ADDR", &["VLEXIVO_ADDR"], "the facilitator's listen address");
pub const DB: EnvVar = var("VLX_DB", &["VLEXIVO_DB"], "the facilitator's SQLite file");
pub const DB_RETRY_SECS: EnvVar =
    var("VLX_DB_RETRY_SECS", &[], "PostgreSQL: seconds a write retries an unreachable database");
pub const FAUCET_CAP: EnvVar =
    var("VLX_FAUCET_CAP", &[], "most a sandbox wallet may receive from the faucet in total");
pub const TOKEN_ALG: EnvVar =
    var("VLX_TOKEN_ALG", &[], "proof-token algorithm for providers that choose none: HS256 or EdDSA");
pub const PUBLIC_URL: EnvVar = var("VLX_PUBLIC_URL", &[], "the facilitator's public URL (token issuer)");
pub const SYNCHRONOUS: EnvVar =
    var("VLX_SYNCHRONOUS", &[], "when a payment is acknowledged: full (after fsync) or normal");
pub const LOG_FORMAT: EnvVar = var("VLX_LOG_FORMAT", &[], "log format on stderr: text or json");
pub const TLS_CERT: EnvVar =
    var("VLX_TLS_CERT", &[], "PEM certificate chain: the facilitator serves HTTPS with it");
pub const TLS_KEY: EnvVar = var("VLX_TLS_KEY", &[], "PEM private key of VLX_TLS_CERT");
pub const CORS_ORIGINS: EnvVar =
    var("VLX_CORS_ORIGINS", &[], "origins browsers may call the facilitator from (comma-separated, or *)");
pub const MASTER_KEY: EnvVar =
    var("VLX_MASTER_KEY", &[], "32 bytes (hex or base64) sealing the facilitator's keys at rest");
pub const MAX_IN_FLIGHT: EnvVar = var(
    "VLX_MAX_IN_FLIGHT",
    &[],
    "most requests the facilitator serves at once (0: no limit); more are answered 503 facilitator_overloaded",
);

/// Every variable, in the order the docs list them.
pub const ALL: &[EnvVar] = &[
    SECRET_KEY,
    WALLET_KEY,
    FACILITATOR_URL,
    CA_FILE,
    TLS_ROOTS,
    HTTPS_ONLY,
    ADDR,
    DB,
    DB_RETRY_SECS,
    FAUCET_CAP,
    TOKEN_ALG,
    PUBLIC_URL,
    SYNCHRONOUS,
    LOG_FORMAT,
    TLS_CERT,
    TLS_KEY,
    CORS_ORIGINS,
    MASTER_KEY,
    MAX_IN_FLIGHT,
    NETWORK,
    ASSET,
    ASSET_NAME,
    ASSET_VERSION,
    PAY_TO,
    MODE,
    RPC_URL,
    RELAYER_KEY,
    CONFIRMATIONS,
    POLL_MS,
    BATCH_WINDOW_MS,
    BATCH_MAX,
    MULTICALL,
    FUNDING_KEY,
];

/// The variable called `name` or having it as an alias.
pub fn by_name(name: &str) -> Option<&'static EnvVar> {
    ALL.iter().find(|v| v.name == name || v.aliases.contains(&name))
}

impl EnvVar {
    /// The value and the name it was read from: `name` first, then the aliases. Empty values
    /// count as unset. Two names set to different values is `config_invalid` (which one was
    /// meant cannot be guessed; the message names both, never the values).
    pub fn lookup(&self, get: impl Fn(&str) -> Option<String>) -> Result<Option<(&'static str, String)>> {
        let mut found: Option<(&'static str, String)> = None;
        for n in std::iter::once(&self.name).chain(self.aliases.iter()) {
            let Some(v) = get(n).filter(|v| !v.is_empty()) else { continue };
            match &found {
                None => found = Some((n, v)),
                Some((first, seen)) if *seen != v => {
                    return Err(Error::Config(format!(
                        "{first} and {n} are both set, to different values: unset {n} ({first} is its new name)"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(found)
    }

    /// [`EnvVar::lookup`] without the name.
    pub fn read(&self, get: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
        Ok(self.lookup(get)?.map(|(_, v)| v))
    }

    /// [`EnvVar::read`] from the process environment.
    pub fn from_process(&self) -> Result<Option<String>> {
        self.read(|n| std::env::var(n).ok())
    }
}

/// A yes/no variable: `1`, `true`, `yes`, `on` and `0`, `false`, `no`, `off` (any case).
pub fn parse_flag(var: &EnvVar, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Config(format!("{} must be 1/true or 0/false", var.name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn name_then_alias_and_conflicts() {
        assert_eq!(WALLET_KEY.lookup(env(&[])).unwrap(), None);
        assert_eq!(
            WALLET_KEY.lookup(env(&[("VLEXIVO_WALLET_KEY", "0xab")])).unwrap(),
            Some(("VLEXIVO_WALLET_KEY", "0xab".into()))
        );
        assert_eq!(
            WALLET_KEY.lookup(env(&[("VLX_WALLET_KEY", "0xab"), ("VLEXIVO_WALLET_KEY", "0xab")])).unwrap(),
            Some(("VLX_WALLET_KEY", "0xab".into()))
        );
        // Empty is unset.
        assert_eq!(
            SECRET_KEY.read(env(&[("VLX_SECRET_KEY", ""), ("VLEXIVO_API_SECRET", "sk")])).unwrap(),
            Some("sk".into())
        );
        let e =
            SECRET_KEY.read(env(&[("VLX_SECRET_KEY", "sk_a"), ("VLEXIVO_API_SECRET", "sk_b")])).unwrap_err();
        assert_eq!(e.code(), "config_invalid");
        let msg = e.to_string();
        assert!(msg.contains("VLX_SECRET_KEY") && msg.contains("VLEXIVO_API_SECRET"), "{msg}");
        assert!(!msg.contains("sk_a") && !msg.contains("sk_b"), "values leak: {msg}");
    }

    #[test]
    fn table_is_consistent() {
        let mut names: Vec<&str> =
            ALL.iter().flat_map(|v| std::iter::once(v.name).chain(v.aliases.iter().copied())).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name appears twice");
        for v in ALL {
            assert!(v.name.starts_with("VLX_"), "{}", v.name);
            assert_eq!(by_name(v.name), Some(v));
            for a in v.aliases {
                assert_eq!(by_name(a), Some(v));
            }
        }
        assert!(by_name("VLX_NOPE").is_none());
    }

    #[test]
    fn flags() {
        for t in ["1", "true", "YES", " on "] {
            assert!(parse_flag(&HTTPS_ONLY, t).unwrap());
        }
        for f in ["0", "false", "No", "off"] {
            assert!(!parse_flag(&HTTPS_ONLY, f).unwrap());
        }
        assert_eq!(parse_flag(&HTTPS_ONLY, "maybe").unwrap_err().code(), "config_invalid");
    }
}
