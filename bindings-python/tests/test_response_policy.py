"""Core's response policy as the native module exposes it: the adapters ask, core decides."""

from __future__ import annotations

import pytest
from vlexivo import _native


def test_only_a_cors_preflight_is_free() -> None:
    assert _native.is_free_request("OPTIONS", True)
    assert not _native.is_free_request("OPTIONS", False)
    for m in ("GET", "HEAD", "POST", "options"):
        assert not _native.is_free_request(m, True)


def test_head_costs_what_get_costs() -> None:
    assert _native.priced_method("HEAD") == "GET"
    assert _native.priced_method("POST") == "POST"


@pytest.mark.parametrize(
    ("status", "raised", "complete", "release"),
    [
        (200, False, True, False),
        (404, False, True, False),
        (200, True, True, False),  # raised after a complete response
        (500, False, True, True),
        (503, False, False, True),
        (200, True, False, True),  # raised mid-response
        (None, True, False, True),
        (0, False, False, True),  # ended without a response
        (200, False, False, False),  # the client left mid-body
    ],
)
def test_release_follows_the_handlers_outcome(
    status: int | None, raised: bool, complete: bool, release: bool
) -> None:
    assert _native.releases(status, raised, complete) is release


def test_receipt_and_stacked_prices() -> None:
    assert _native.sends_receipt(200) and _native.sends_receipt(404) and not _native.sends_receipt(500)
    low, high = _native.parse_price("0.001"), _native.parse_price("0.05")
    assert _native.effective_price([low, high, low]) == high
    assert _native.check_stacked("0.05", "usd", high) is None
    assert _native.check_stacked("0.05", "usd", low) is None
    assert _native.check_stacked("0.001", "usd", high) == high
