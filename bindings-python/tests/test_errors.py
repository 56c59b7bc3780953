"""The error mapping is exhaustive over core's ALL_CODES, and agrees with core on bad input."""

from __future__ import annotations

import pytest
import vlexivo
from vlexivo import _native
from vlexivo.errors import _BY_CODE, VlexivoError, error_class, from_native, make_error

from .conftest import vectors


def test_all_codes_are_mapped() -> None:
    assert set(_native.ALL_CODES) == set(_BY_CODE), "a code without a class, or a class for no code"
    assert len(_native.ALL_CODES) == len(set(_native.ALL_CODES))


@pytest.mark.parametrize("code", _native.ALL_CODES)
def test_each_code(code: str) -> None:
    native = _native.error_for(code, "detail")
    assert native.code == code
    err = from_native(native)
    assert type(err) is error_class(code)
    assert type(err) is not VlexivoError, "every code has a specific class"
    assert err.code == code and err.status == native.status
    # Core's is_bad_input() is exactly "also a ValueError".
    assert isinstance(err, ValueError) == native.bad_input, code
    assert isinstance(err, vlexivo.InvalidInputError) == native.bad_input
    with pytest.raises(VlexivoError):
        raise err


def test_typed_fields() -> None:
    e = from_native(
        _native.error_from_body(
            402, b'{"error":"insufficient_funds","required":"0.01","balance":"0.004","currency":"usd"}'
        )
    )
    assert isinstance(e, vlexivo.InsufficientFundsError)
    assert (e.required_amount, e.balance, e.currency) == ("0.01", "0.004", "usd")
    b = make_error("budget_exceeded")
    assert isinstance(b, vlexivo.BudgetExceededError) and b.limit == "per_call"  # core's default limit
    assert isinstance(make_error("body_not_replayable"), vlexivo.BodyNotReplayableError)
    assert isinstance(make_error("body_not_replayable"), ValueError)
    with pytest.raises(ValueError):
        _native.error_for("no_such_code")


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
