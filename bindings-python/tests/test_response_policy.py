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


def test_the_adapters_remembered_answers_are_cores() -> None:
    """The gate remembers core's answers per status (a native call per paid response costs more
    than a look-up): every remembered answer is the one core gives, asked twice."""
    from vlexivo import _gate

    for status in (0, 100, 200, 204, 302, 404, 499, 500, 503, 599, 999, 1000):
        for _ in range(2):
            if status > 0:
                assert _gate.sends_receipt(status) == _native.sends_receipt(status)
            for raised in (False, True):
                for complete in (False, True):
                    assert _gate.releases(status, raised, complete) == _native.releases(
                        status or None, raised, complete
                    )
    assert _gate.SENDS_RECEIPT[200] is True and _gate.SENDS_RECEIPT[503] is False
    assert _gate.RELEASES[(200, False, True)] is False and _gate.RELEASES[(0, False, False)] is True
    # Only statuses a response can have are remembered.
    assert 1000 not in _gate.SENDS_RECEIPT and (1000, False, False) not in _gate.RELEASES
