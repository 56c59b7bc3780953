//! # vlexivo-live
//!
//! Live mode's settlement on an EVM chain, in an EIP-3009 token (USDC): the rules (what a payer
//! signs, what the facilitator checks off chain) are `vlexivo-core`'s ([`vlexivo_core::eip3009`],
//! [`vlexivo_core::payment::verify_live`]); this crate does the chain I/O, with alloy.
//!
//! | module | holds |
//! |---|---|
//! | [`contracts`] | the `sol!` interfaces: EIP-3009 token, FiatToken set-up, Multicall3 |
//! | [`chain`] | the facilitator's settlement backend: reads, simulation, signed relays, receipts, logs |
//! | [`verify`] | provider-side verification of a payment's transaction hash |
//! | [`reconcile`] | settlement records against the chain's receipts and logs, every difference named |
//! | [`devnet`] | anvil with a deployed FiatTokenV2_2, for tests and `vlexivo demo --live` |

pub mod chain;
pub mod contracts;
pub mod devnet;
pub mod reconcile;
pub mod verify;

pub use chain::{Broadcast, Chain, ChainConfig, Mined, Signed, TransferLog};
