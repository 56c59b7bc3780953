"""The soak benchmark's FastAPI API (scripts/soak.sh runs it under uvicorn on 127.0.0.1): one
paid route behind the ASGI paywall on the nonce store named by SOAK_STORE, and an unpaid /stats
route that says how many times the paid handler ran (the soak compares it with the ledger)."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from vlexivo import VlexivoServer

prefix = os.environ.get("SOAK_STORE_PREFIX")
vlx = VlexivoServer(
    api_secret=os.environ["VLX_SECRET_KEY"],
    facilitator_url=os.environ["VLX_FACILITATOR_URL"],
    mode="sandbox",
    challenge_ttl=int(os.environ.get("SOAK_CHALLENGE_TTL", "30")),
    leeway=0,
    nonce_store=os.environ.get("SOAK_STORE") or "memory",
    nonce_store_options={"prefix": prefix} if prefix else None,
)
app = FastAPI()
app.add_middleware(vlx.asgi_paywall, routes={"GET /paid": vlx.price("0.001")})
handled = 0


@app.get("/paid")
async def paid(request: Request, n: str = "") -> dict[str, str]:
    global handled
    handled += 1
    return {"n": n, "paidBy": request.state.vlx_payment.payer}


@app.get("/stats")
async def stats() -> dict[str, int]:
    return {"handled": handled, "storeFailures": vlx.store_failures}
