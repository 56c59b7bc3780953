"""verify + consume through pyo3 vs PyJWT's HS256 decode, in one process.

    python bench/bench_verify.py [N]

Tokens are minted beforehand by the tests' spec-based issuer (tests/tokens.py: HS256 under the
provider's derived key), each with its own nonce, so every verify also consumes a fresh nonce in the
memory store: the whole per-request cost of the paywall's hot path. PyJWT decodes tokens of the
same shape (signature, exp/iat, aud) and does no replay check at all."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jwt
from vlexivo import _native

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tokens import mint_token

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
METHOD, PATH = "POST", "/api/v1/inference"


def per_op(label: str, n: int, fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    dt = (time.perf_counter() - t0) / n * 1e6
    print(f"{label:<52} {dt:8.2f} µs/op")
    return dt


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    now = _native.now()
    pw = _native.Paywall(SECRET, origin="http://api.test")
    tokens = [mint_token(SECRET, f"bench{i:019d}", METHOD, PATH, "0.001", now) for i in range(2 * n)]
    price = _native.parse_price("0.001")
    first, second = tokens[:n], tokens[n:]

    def vlexivo_verify(toks: list[str]) -> None:
        verify = pw.verify
        for t in toks:
            verify(t, METHOD, PATH, price, "usd", now)

    def vlexivo_verify_str_price(toks: list[str]) -> None:
        verify = pw.verify
        for t in toks:
            verify(t, METHOD, PATH, "0.001")

    key = b"k" * 32
    claims = jwt.decode(tokens[0], options={"verify_signature": False})
    jwts = [
        jwt.encode(
            {**claims, "jti": f"bench{i:019d}"}, key, algorithm="HS256", headers={"typ": "vlexivo-proof+jwt"}
        )
        for i in range(n)
    ]
    aud = claims["aud"]

    def pyjwt_decode(toks: list[str]) -> None:
        for t in toks:
            jwt.decode(t, key, algorithms=["HS256"], audience=aud)

    # Warm up (first calls allocate store shards, import caches).
    for i in range(200):
        pw.verify(
            mint_token(SECRET, f"warm{i:020d}", METHOD, PATH, "0.001", now), METHOD, PATH, price, "usd", now
        )
        jwt.decode(jwts[i], key, algorithms=["HS256"], audience=aud)

    print(f"n = {n}")
    v = per_op("vlexivo Paywall.verify (pre-parsed Price, fixed now)", n, vlexivo_verify, first)
    per_op("vlexivo Paywall.verify (str price, system clock)", n, vlexivo_verify_str_price, second)
    j = per_op("PyJWT jwt.decode HS256 (no replay check)", n, pyjwt_decode, jwts)
    print(f"ratio PyJWT / vlexivo = {j / v:.1f}x")
    import json

    print("BENCH " + json.dumps({"bench": "pyverify", "usPerOp": {"vlexivo": v, "pyjwt": j}}))
    # Every token was consumed once: a second use is a replay.
    try:
        pw.verify(first[0], METHOD, PATH, price, "usd", now)
        raise SystemExit("replay not detected")
    except _native.NativeError as e:
        assert e.code == "token_replayed"


if __name__ == "__main__":
    main()
