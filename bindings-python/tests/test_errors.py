"""The exception classes follow core's error table (code, status, category, bad input), code by
code; details carry core's keys; header names come from core."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import vlexivo
from vlexivo import _native
from vlexivo.errors import (
    _OWN_CLASSES,
    CATEGORY_CLASSES,
    CODE_CLASSES,
    VlexivoError,
    error_class,
    from_native,
    make_error,
)

from .conftest import vectors

TABLE = {code: (status, category, bad_input) for code, status, category, bad_input in _native.ERROR_TABLE}


def test_the_table_is_core_s_and_every_category_has_a_class() -> None:
    assert list(TABLE) == list(_native.ALL_CODES), "ERROR_TABLE lists ALL_CODES in order"
    assert set(CATEGORY_CLASSES) == set(_native.ERROR_CATEGORIES), (
        "a category without a class, or a class for none"
    )
    assert len(set(CATEGORY_CLASSES.values())) == len(CATEGORY_CLASSES)
    for category, cls in CATEGORY_CLASSES.items():
        assert cls.category == category
    assert set(CODE_CLASSES) == set(TABLE)
    assert set(_OWN_CLASSES) <= set(TABLE), "a class of its own for a code core does not have"


@pytest.mark.parametrize("code", _native.ALL_CODES)
def test_each_code(code: str) -> None:
    status, category, bad_input = TABLE[code]
    native = _native.error_for(code, "detail")
    assert (native.code, native.status, native.category, native.bad_input) == (
        code,
        status,
        category,
        bad_input,
    )
    err = from_native(native)
    cls = error_class(code)
    assert type(err) is cls is CODE_CLASSES[code]
    assert cls is not VlexivoError, "every code has a class"
    # The class is its category's, and no other category's.
    assert isinstance(err, CATEGORY_CLASSES[category]), f"{code} is a {category} error"
    for other, other_cls in CATEGORY_CLASSES.items():
        if other != category:
            assert not isinstance(err, other_cls), f"{code} is not a {other} error"
    assert (err.code, err.status, err.category) == (code, status, category)
    # Core's is_bad_input() is exactly "also a ValueError".
    assert isinstance(err, ValueError) == bad_input, code
    assert isinstance(err, vlexivo.InvalidInputError) == bad_input
    # Details are core's, with core's keys.
    assert err.details == native.details
    with pytest.raises(VlexivoError):
        raise err


def test_details_use_core_keys() -> None:
    e = from_native(
        _native.error_from_body(
            402, b'{"error":"insufficient_funds","required":"0.01","balance":"0.004","currency":"usd"}'
        )
    )
    assert isinstance(e, vlexivo.InsufficientFundsError) and isinstance(e, vlexivo.PaymentError)
    assert e.details == {"required": "0.01", "balance": "0.004", "currency": "usd"}
    assert (e.required_amount, e.balance, e.currency) == ("0.01", "0.004", "usd")
    up = from_native(_native.error_from_body(418, b'{"error":"teapot","message":"short and stout"}'))
    assert isinstance(up, vlexivo.FacilitatorError) and up.code == "facilitator_error"
    assert up.details == {
        "facilitatorStatus": 418,
        "facilitatorCode": "teapot",
        "facilitatorMessage": "short and stout",
    }
    assert (up.facilitator_status, up.facilitator_code) == (418, "teapot")
    with pytest.raises(_native.NativeError) as ei:
        _native.parse_amount("0.0000001", "usd", False)
    precision = from_native(ei.value)
    assert isinstance(precision, vlexivo.AmountError) and precision.details == {"maxDecimals": 6}


def test_typed_fields() -> None:
    b = make_error("budget_exceeded")
    assert isinstance(b, vlexivo.BudgetExceededError) and b.limit == "per_call"  # core's default limit
    u = make_error("token_underpaid")
    assert isinstance(u, vlexivo.UnderpaidError) and isinstance(u, vlexivo.ProofError) and u.status == 402
    assert isinstance(make_error("token_replayed"), vlexivo.TokenReplayedError)
    assert make_error("token_replayed").status == 409
    assert isinstance(make_error("body_not_replayable"), vlexivo.BodyNotReplayableError)
    assert isinstance(make_error("body_not_replayable"), ValueError)
    assert isinstance(make_error("signature_invalid"), vlexivo.WalletError)
    assert not isinstance(make_error("signature_invalid"), ValueError)
    with pytest.raises(ValueError):
        _native.error_for("no_such_code")


def test_header_names_come_from_core() -> None:
    assert (_native.CHALLENGE_HEADER, _native.PROOF_HEADER, _native.RECEIPT_HEADER) == (
        "Vlexivo-Challenge",
        "Vlexivo-Proof",
        "Vlexivo-Receipt",
    )
    assert _native.EXPOSE_HEADERS == "Vlexivo-Challenge, Vlexivo-Receipt"
    # No module of the package spells them (comments and docstrings may name them).
    pkg = Path(vlexivo.__file__).parent
    for f in pkg.glob("*.py"):
        code = re.sub(r'"""[\s\S]*?"""', "", f.read_text())
        code = re.sub(r"#.*", "", code)
        assert not re.search(r"vlexivo-(proof|challenge|receipt)\b", code, re.I), f.name


@pytest.mark.parametrize(
    "case",
    [c for c in vectors("client")["cases"] if c.get("op") == "error_from_body"],
    ids=lambda c: c["name"],
)
def test_error_from_body_vectors(case: dict) -> None:
    e = from_native(_native.error_from_body(case["status"], case["body"].encode()))
    expect = case["expect"]
    assert e.code == expect["error"]
    if e.code == "insufficient_funds":
        assert isinstance(e, vlexivo.InsufficientFundsError)
        assert (e.required_amount, e.balance, e.currency) == (
            expect["required"],
            expect["balance"],
            expect["currency"],
        )
