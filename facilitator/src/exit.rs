//! The exit codes of the `vlexivo` command: one table for every subcommand and for `--help`.

pub const OK: i32 = 0;
/// Refused or failed: an HTTP error answer, a ledger that does not verify, a server error.
pub const FAILED: i32 = 1;
/// Bad arguments or configuration (clap's own usage errors exit 2 too).
pub const USAGE: i32 = 2;
/// `vlexivo pay`: the price is above `--max-price`; nothing was paid.
pub const OVER_MAX_PRICE: i32 = 3;
pub const INSUFFICIENT_FUNDS: i32 = 4;
/// The facilitator cannot be reached (connection refused, timeout, TLS); for
/// `verify-payment`, the chain's JSON-RPC node.
pub const FACILITATOR_UNAVAILABLE: i32 = 5;
/// `vlexivo pay`: the API cannot be reached (connection refused, timeout, TLS).
pub const API_UNREACHABLE: i32 = 6;

/// Every code and its meaning, as `--help` lists them.
pub const TABLE: &[(i32, &str)] = &[
    (OK, "success"),
    (FAILED, "refused or failed (an HTTP error answer, a ledger that does not verify)"),
    (USAGE, "bad arguments or configuration"),
    (OVER_MAX_PRICE, "pay: the price is above --max-price (nothing was paid)"),
    (INSUFFICIENT_FUNDS, "insufficient funds (the message says how much is needed)"),
    (
        FACILITATOR_UNAVAILABLE,
        "the facilitator (verify-payment: the chain's RPC) cannot be reached (connection, timeout, TLS)",
    ),
    (API_UNREACHABLE, "pay: the API cannot be reached (connection, timeout, TLS)"),
];

/// `TABLE` as the text after `--help` (a literal, for clap's attribute; a test keeps them equal).
pub const HELP: &str = "Exit codes:
  0  success
  1  refused or failed (an HTTP error answer, a ledger that does not verify)
  2  bad arguments or configuration
  3  pay: the price is above --max-price (nothing was paid)
  4  insufficient funds (the message says how much is needed)
  5  the facilitator (verify-payment: the chain's RPC) cannot be reached (connection, timeout, TLS)
  6  pay: the API cannot be reached (connection, timeout, TLS)";

#[cfg(test)]
mod tests {
    #[test]
    fn help_is_the_table() {
        let mut text = String::from("Exit codes:");
        for (code, what) in super::TABLE {
            text.push_str(&format!("\n  {code}  {what}"));
        }
        assert_eq!(super::HELP, text);
    }
}
