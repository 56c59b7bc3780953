"""What the installed package publishes: no test-only entry points in the native module (the
tests mint their proofs with tests/tokens.py, which must agree with core's key derivation)."""

from __future__ import annotations

import vlexivo
from vlexivo import _native

from .tokens import mint_token, provider_keys

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"


def test_the_native_module_has_no_test_only_entry_points() -> None:
    names = set(dir(_native))
    assert len(names) > 20, names
    leaked = {
        n
        for n in names
        if "test" in n.lower() or "issue" in n.lower() or "mint" in n.lower() or "seed" in n.lower()
    }
    assert not leaked, leaked
    assert not {n for n in dir(vlexivo) if "test" in n.lower() or "mint" in n.lower()}


def test_the_tests_minter_follows_core() -> None:
    pw = _native.Paywall(SECRET, origin="http://api.test")
    assert provider_keys(SECRET)["account"] == pw.account
    now = _native.now()
    token = mint_token(SECRET, "m" * 24, "GET", "/x", "0.002", now)
    p = pw.verify(token, "GET", "/x?q=1", "0.001", "usd", now)
    assert (p.nonce, p.amount, p.resource) == ("m" * 24, "0.002", "GET http://api.test/x")
