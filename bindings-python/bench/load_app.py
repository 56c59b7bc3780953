"""Apps for bench_load.py: the same FastAPI route bare and behind the Vlexivo ASGI paywall."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from vlexivo import VlexivoServer

bare = FastAPI()


@bare.get("/hello")
async def hello_bare() -> dict[str, bool]:
    return {"ok": True}


paid = FastAPI()
# The load generator presents tokens bound to this origin (the port is random).
vlx = VlexivoServer(
    api_secret=os.environ.get("VLX_SECRET_KEY", "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"),
    origin="http://api.test",
    # Any store URL (VLX_BENCH_STORE=redis://…) for the paywall-with-each-store ratios.
    nonce_store=os.environ.get("VLX_BENCH_STORE") or "memory",
)
paid.add_middleware(vlx.asgi_paywall, routes={"GET /hello": vlx.price("0.001")})


@paid.get("/hello")
async def hello_paid(request: Request) -> dict[str, bool]:
    assert request.scope["vlexivo.payment"].amount == "0.001"
    return {"ok": True}
