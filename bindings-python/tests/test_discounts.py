"""The article's usage-based discount end to end (issue 14), in FastAPI (uvicorn) and Flask
(waitress) against a real facilitator: a resolver that halves the price after a wallet's 10th
call this month, through ``vlx.usage``; the payer hint, payer-bound challenges and the retry
priced again for the proven payer, so a wallet that borrows another's address is refused and
never charged twice, and a missing or malformed hint is simply the full price."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import flask
import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from fastapi import FastAPI, Request
from vlexivo import PricingRequest, VlexivoClient, VlexivoError, VlexivoServer, Wallet

from .conftest import Facilitator
from .tokens import mint_token

FULL = "0.001"
HALF = "0.0005"
PAYER = "Vlexivo-Payer"
PROOF = "Vlexivo-Proof"
CHALLENGE = "Vlexivo-Challenge"


def month_start() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def decode(encoded: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))))


class Runs:
    def __init__(self) -> None:
        self.n = 0
        self.payers: list[Any] = []
        self.lock = threading.Lock()

    def add(self, payer: Any) -> None:
        with self.lock:
            self.n += 1
            self.payers.append(payer)


def fastapi_app(vlx: VlexivoServer, runs: Runs) -> Any:
    async def discount(req: PricingRequest) -> str:
        if req.payer is None:
            return FULL
        used = await vlx.usage(req.payer, since=month_start())
        return HALF if used.count >= 10 else FULL

    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"GET /api/v1/data": vlx.price(resolver=discount)})

    @app.get("/api/v1/data")
    def data(request: Request) -> dict[str, Any]:
        runs.add(request.state.vlx_payment.payer)
        return {"paid": request.state.vlx_payment.amount}

    return app


def flask_app(vlx: VlexivoServer, runs: Runs) -> Any:
    def discount(req: PricingRequest) -> str:
        if req.payer is None:
            return FULL
        used = vlx.usage_sync(req.payer, since=month_start())
        return HALF if used.count >= 10 else FULL

    app = flask.Flask(__name__)

    @app.get("/api/v1/data")
    @vlx.paywall(price_resolver=discount)
    def data() -> Any:
        runs.add(flask.g.vlx_payment.payer)
        return {"paid": flask.g.vlx_payment.amount}

    return app


APPS = {"fastapi": (fastapi_app, "uvicorn"), "flask": (flask_app, "waitress")}


@pytest.fixture(params=sorted(APPS))
def api(request: Any, facilitator: Facilitator, serve: Any) -> Any:
    provider = facilitator.provider()
    vlx = VlexivoServer(api_secret=provider["api_secret"], facilitator_url=facilitator.url)
    runs = Runs()
    make, server = APPS[request.param]
    url = serve(server, make(vlx, runs))
    return {"url": url, "vlx": vlx, "runs": runs, "secret": provider["api_secret"], "fac": facilitator}


def funded(fac: Facilitator) -> Wallet:
    w = Wallet.generate()
    fac.top_up(w.address, "1")
    return w


def client(fac: Facilitator, w: Wallet, **kw: Any) -> VlexivoClient:
    return VlexivoClient(w.private_key_hex(), facilitator_url=fac.url, **kw)


def test_the_eleventh_call_costs_half_and_the_records_agree(api: Any) -> None:
    fac: Facilitator = api["fac"]
    loyal, fresh = funded(fac), funded(fac)
    paid: list[str] = []
    with client(fac, loyal, on_payment=lambda e: paid.append(e.receipt.amount)) as c:
        for i in range(12):
            r = c.get(f"{api['url']}/api/v1/data")
            assert r.status_code == 200, r.text
            assert r.json()["paid"] == (FULL if i < 10 else HALF), f"call {i + 1}"
    assert paid == [FULL] * 10 + [HALF] * 2
    with client(fac, fresh) as c:
        assert c.get(f"{api['url']}/api/v1/data").json()["paid"] == FULL
    assert api["runs"].n == 13

    records = fac.payments(api["secret"])
    mine = [r["amount"] for r in reversed(records) if r["payer"] == loyal.address]
    assert mine == [FULL] * 10 + [HALF] * 2
    assert [r["amount"] for r in records if r["payer"] == fresh.address] == [FULL]
    assert fac.balance(loyal.address) == "0.989"
    used = api["vlx"].usage_sync(loyal.address, since=month_start())
    assert (used.count, used.total, used.payer) == (12, "0.011", loyal.address)


def test_a_borrowed_hint_is_refused_and_nothing_is_charged_twice(api: Any) -> None:
    fac: Facilitator = api["fac"]
    loyal = funded(fac)
    with client(fac, loyal) as c:
        for _ in range(10):
            assert c.get(f"{api['url']}/api/v1/data").status_code == 200
    runs = api["runs"].n
    liar = Account.create()
    fac.top_up(liar.address, "1")

    # The liar's first request names the loyal wallet: half price, a challenge for that wallet.
    first = httpx.get(f"{api['url']}/api/v1/data", headers={PAYER: loyal.address})
    assert first.status_code == 402
    encoded = first.headers[CHALLENGE]
    c = decode(encoded)
    assert (c["amount"], c["payer"]) == (HALF, loyal.address)
    # Paid with the liar's own key (eth-account, not the SDK): refused, nothing moves.
    td = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "PaymentAuthorization": [
                {"name": "challenge", "type": "bytes32"},
                {"name": "payee", "type": "string"},
                {"name": "amount", "type": "uint256"},
                {"name": "currency", "type": "string"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "PaymentAuthorization",
        "domain": {"name": "Vlexivo", "version": "1", "chainId": 0},
        "message": {
            "challenge": keccak(text=encoded),
            "payee": c["account"],
            "amount": 500,
            "currency": c["currency"],
            "deadline": c["exp"],
        },
    }
    sig = "0x" + Account.sign_message(
        encode_typed_data(full_message=td), private_key=liar.key
    ).signature.hex().removeprefix("0x")
    r = fac.http.post("/v1/payments", json={"challenge": encoded, "payer": liar.address, "signature": sig})
    assert (r.status_code, r.json()["error"]) == (400, "challenge_mismatch")
    assert fac.balance(liar.address) == "1"

    # A half-price proof the liar holds is priced again for the payer it proves: refused with a
    # full-price challenge, the handler does not run.
    host = api["url"].removeprefix("http://")
    now = int(time.time())
    cheap = mint_token(
        api["secret"],
        "L" * 24,
        "GET",
        "/api/v1/data",
        HALF,
        now,
        payer=liar.address,
        facilitator_url=fac.url,
        origin=f"http://{host}",
    )
    r = httpx.get(f"{api['url']}/api/v1/data", headers={PROOF: cheap, PAYER: loyal.address})
    assert (r.status_code, r.json()["error"], r.json()["price"]) == (402, "token_underpaid", FULL)
    assert api["runs"].n == runs
    # The loyal wallet's own half-price proof buys one call.
    own = mint_token(
        api["secret"],
        "O" * 24,
        "GET",
        "/api/v1/data",
        HALF,
        now,
        payer=loyal.address,
        facilitator_url=fac.url,
        origin=f"http://{host}",
    )
    assert httpx.get(f"{api['url']}/api/v1/data", headers={PROOF: own}).status_code == 200
    assert httpx.get(f"{api['url']}/api/v1/data", headers={PROOF: own}).status_code == 409
    assert api["runs"].n == runs + 1


def test_a_missing_or_malformed_hint_is_the_full_price(api: Any) -> None:
    for headers in ({}, {PAYER: "0xnope"}, {PAYER: "a" * 500}):
        r = httpx.get(f"{api['url']}/api/v1/data", headers=headers)
        assert r.status_code == 402
        c = decode(r.headers[CHALLENGE])
        assert (c["amount"], c.get("payer")) == (FULL, None)
    # A loyal wallet that keeps its address to itself pays the full price.
    fac: Facilitator = api["fac"]
    quiet = funded(fac)
    with client(fac, quiet) as c:
        for _ in range(10):
            assert c.get(f"{api['url']}/api/v1/data").status_code == 200
    paid: list[str] = []
    with client(fac, quiet, payer_hint=False, on_payment=lambda e: paid.append(e.receipt.amount)) as c:
        assert c.get(f"{api['url']}/api/v1/data").status_code == 200
    assert paid == [FULL]


async def test_usage_bad_input_and_isolation(facilitator: Facilitator) -> None:
    provider = facilitator.provider()
    vlx = VlexivoServer(api_secret=provider["api_secret"], facilitator_url=facilitator.url)
    w = Wallet.generate()
    u = await vlx.usage(w.address, since=0)
    assert (u.payer, u.since, u.count, u.total, u.currency) == (w.address, 0, 0, "0", "usd")
    for bad, code in (("0x1234", "address_invalid"),):
        with pytest.raises(VlexivoError) as e:
            await vlx.usage(bad)
        assert e.value.code == code
    with pytest.raises(VlexivoError) as e:
        await vlx.usage(w.address, since=-1)
    assert (e.value.code, e.value.status) == ("request_malformed", 400)
    other = VlexivoServer(api_secret=facilitator.provider()["api_secret"], facilitator_url=facilitator.url)
    assert (await other.usage(w.address)).count == 0
    down = VlexivoServer(api_secret=provider["api_secret"], facilitator_url="http://127.0.0.1:9")
    with pytest.raises(VlexivoError) as e:
        down.usage_sync(w.address)
    assert e.value.code == "facilitator_unavailable"
