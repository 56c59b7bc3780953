"""Proof tokens for the tests and benchmarks, minted from the spec (docs/protocol.md §4 keys, §7
token) with the standard library rather than by the native module: the published module has no
way to mint tokens, and this independent HS256 issuer checks core's key derivation and token
format every time the paywall accepts one of its tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 (one block is enough for 32 bytes)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    assert length <= 32
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def provider_keys(api_secret: str) -> dict[str, Any]:
    """The keys core derives from an ``api_secret`` (HKDF-SHA256, salt ``vlexivo/v1``)."""
    m = re.fullmatch(r"sk_(test|live)_([A-Za-z0-9_-]{43})", api_secret)
    if not m:
        raise ValueError("not a Vlexivo api_secret")
    ikm = base64.urlsafe_b64decode(m.group(2) + "=")

    def derive(info: str) -> bytes:
        return _hkdf_sha256(ikm, b"vlexivo/v1", info.encode())

    return {
        "mode": "sandbox" if m.group(1) == "test" else "live",
        "account": "acct_" + derive("account-id")[:10].hex(),
        "token_key": derive("proof-token-hs256"),
    }


_HEADER = _b64url(b'{"typ":"vlexivo-proof+jwt","alg":"HS256"}')


def mint_token(
    api_secret: str,
    nonce: str,
    method: str,
    path: str,
    amount: str,
    now: int,
    payer: str = "0x0000000000000000000000000000000000000001",
    facilitator_url: str = "http://127.0.0.1:4020",
    body: bytes | None = None,
    exp: int | None = None,
    origin: str = "http://api.test",
) -> str:
    """An HS256 proof token for ``METHOD origin/path`` under the provider's key, as the
    facilitator issues it (claims in its order; ``amount`` and ``origin`` as given, so pass them
    in normal form)."""
    k = provider_keys(api_secret)
    claims: dict[str, Any] = {
        "jti": nonce,
        "iss": facilitator_url,
        "aud": k["account"],
        "sub": payer,
        "txh": "0x" + "00" * 32,
        "amt": amount,
        "cur": "usd",
        "res": f"{method.upper()} {origin}{path.split('?', 1)[0]}",
    }
    if body is not None:
        claims["bdy"] = _b64url(hashlib.sha256(body).digest())
    claims.update({"mode": k["mode"], "net": "sandbox", "iat": now, "exp": now + 300 if exp is None else exp})
    signing_input = f"{_HEADER}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    sig = hmac.new(k["token_key"], signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"
