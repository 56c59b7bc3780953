//! `docs/protocol.md` §9 lists every error code with its HTTP status and category; this keeps it
//! true.

use vlexivo_core::{BudgetLimit, Error};

/// One instance of every variant (compared with `Error::ALL_CODES` below).
fn samples() -> Vec<Error> {
    use Error::*;
    let s = || String::from("x");
    vec![
        AmountMalformed(s()),
        AmountNegative,
        AmountNotFinite,
        AmountPrecision { max_decimals: 6 },
        AmountTooLarge { max: s() },
        AmountZero,
        CurrencyUnsupported(s()),
        CurrencyMismatch { expected: s(), got: s() },
        ChallengeMalformed("x"),
        ChallengeTooLarge { limit: 1 },
        ChallengeInvalid,
        ChallengeExpired,
        ChallengeMismatch("x"),
        WalletKeyInvalid,
        AddressInvalid,
        SignatureInvalid,
        TokenMissing,
        TokenMalformed("x"),
        TokenTooLarge { limit: 1 },
        TokenAlgorithm(s()),
        TokenType,
        TokenInvalid,
        TokenExpired,
        TokenNotYetValid,
        TokenAudience,
        TokenMode,
        TokenResource,
        TokenUnderpaid { paid: s(), price: s() },
        TokenCurrency { paid: s(), price: s() },
        TokenReplayed,
        NonceStoreFull,
        NonceStoreUnavailable(s()),
        BudgetExceeded { limit: BudgetLimit::Total, requested: s(), remaining: s() },
        InsufficientFunds { required: s(), balance: s(), currency: s() },
        ProviderUnknown,
        Unauthorized,
        PaymentConflict,
        TopUpRefused(s()),
        RequestTooLarge { limit: 1 },
        RequestMalformed(s()),
        FacilitatorUnavailable(s()),
        FacilitatorOverloaded,
        FacilitatorUntrusted { facilitator: s() },
        PaymentInDoubt { facilitator: s(), nonce: s(), amount: s(), reason: s() },
        FacilitatorError { status: 502, code: s(), message: s() },
        AuthorizationInvalid("x"),
        AuthorizationUsed,
        SettlementFailed(s()),
        TransactionNotFound,
        TransferMismatch { field: s(), expected: s(), got: s() },
        ConfirmationsPending { confirmations: 0, required: 1 },
        ChainUnavailable(s()),
        FundingInsufficient { address: s(), required: s(), balance: s(), currency: s() },
        NotPaymentRequired,
        BodyNotReplayable,
        PriceInvalid(s()),
        Config(s()),
        ModeMismatch { expected: s(), got: s() },
        Internal(s()),
    ]
}

#[test]
fn every_code_has_a_sample_and_the_spec_lists_it_with_its_status_and_category() {
    let samples = samples();
    let mut codes: Vec<&str> = samples.iter().map(|e| e.code()).collect();
    codes.sort();
    let mut all = Error::ALL_CODES.to_vec();
    all.sort();
    assert_eq!(codes, all, "ALL_CODES and the variants disagree");
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    for e in &samples {
        let status = if e.code() == "facilitator_error" {
            "upstream".to_string()
        } else {
            e.http_status().to_string()
        };
        let row = format!("| `{}` | {status} | {} |", e.code(), e.category().as_str());
        assert!(spec.contains(&row), "docs/protocol.md §9 lacks the row {row}");
        assert_eq!(vlexivo_core::Error::category_of(e.code()), Some(e.category()));
    }
}

#[test]
fn categories_are_stable_snake_case_and_each_is_used() {
    use vlexivo_core::ErrorCategory;
    let names: Vec<&str> = ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate category name");
    for n in &names {
        assert!(n.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'), "{n}");
    }
    for c in ErrorCategory::ALL {
        assert!(samples().iter().any(|e| e.category() == *c), "no code in category {}", c.as_str());
    }
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    let listed = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    assert!(
        spec.replace('\n', " ").contains(&listed),
        "docs/protocol.md §9 lists the categories as {listed}"
    );
}
