//! # vlexivo-facilitator
//!
//! The payment service (`server`), the `vlexivo` CLI's commands, a tower paywall layer for
//! Rust APIs (`layer`), a Rust client that pays 402s (`client`), and the demo (`demo`).

pub mod client;
pub mod demo;
pub mod layer;
pub mod pay;
pub mod server;
