//! # vlexivo-facilitator
//!
//! The payment service (`server`), the `vlexivo` CLI's commands and the demo (`demo`). The tower
//! paywall layer is the `vlexivo-tower` crate and the Rust payer client `vlexivo-client`.

pub mod demo;
mod demo_live;
pub mod exit;
pub mod pay;
pub mod server;
