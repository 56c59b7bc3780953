"""A panic inside a native call is an ``internal`` error, never a crash.

Run by ci.sh against a test-only build of the native module (cargo feature ``test-panic``: a
price in the currency "test-panic" panics inside the binding), put ahead of the installed
package on ``PYTHONPATH``. Not collected with the other tests: the normal build cannot panic on
purpose.
"""

from __future__ import annotations

import os

import pytest
from vlexivo import InternalError, VlexivoError, VlexivoServer

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"


def test_the_test_panic_build_is_loaded() -> None:
    assert os.environ.get("VLX_TEST_PANIC_BUILD") == "1", "run by ci.sh with the test-panic build"


def test_a_panic_in_a_function_is_an_internal_error() -> None:
    vlx = VlexivoServer(api_secret=SECRET)
    for _ in range(3):
        with pytest.raises(InternalError) as caught:
            vlx.price("0.01", currency="test-panic")
        assert caught.value.code == "internal"
        assert caught.value.status == 500
        assert "forced by the test-panic feature" in str(caught.value)
        # The module still works after the panic.
        assert vlx.price("0.01") is not None


def test_a_panic_in_a_method_is_an_internal_error() -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin="https://api.example.com")
    vlx.currency = "test-panic"
    with pytest.raises(InternalError):
        vlx.verify(None, "GET", "/x", "0.01")
    vlx.currency = "usd"
    with pytest.raises(VlexivoError) as caught:
        vlx.verify(None, "GET", "/x", "0.01")
    assert caught.value.code == "payment_required"
