"""The requests client (VlexivoSession, VlexivoAdapter) against a real `vlexivo` facilitator and
a real paid FastAPI app under uvicorn: it pays, 20 concurrent calls make exactly 20 payments,
an empty wallet raises the typed error with the amount, the body is replayed byte for byte, the
caps refuse before paying, auto top-up, a 402 of another scheme is returned as is."""

# ruff: noqa: F811 (the e2e fixtures, imported, are parameters here)
from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import vlexivo
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from vlexivo import (
    BodyNotReplayableError,
    BudgetExceededError,
    InsufficientFundsError,
    VlexivoAdapter,
    VlexivoServer,
    VlexivoSession,
    Wallet,
)

from .conftest import Facilitator
from .test_e2e import (  # noqa: F401 (fixtures)
    Counter,
    _trusted,
    fastapi_app,
    funded_wallet,
    provider,
    vlx,
)


def test_session_pays(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    runs = Counter()
    url = serve("uvicorn", fastapi_app(vlx, runs))
    events: list[vlexivo.PaymentEvent] = []
    with VlexivoSession(wallet_key=funded_wallet.private_key_hex(), on_payment=events.append) as s:
        assert s.get(url + "/free").json() == {"free": True}
        r = s.post(url + "/api/v1/inference", json={"model": "large-v2", "prompt": "hi"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"result": "ran large-v2", "paid": "0.01", "payer": funded_wallet.address}
        assert r.headers["vlexivo-receipt"].startswith("tx=0x")
        r = s.get(url + "/api/v1/data", params={"days": 30})
        assert r.status_code == 200 and r.json() == {"days": 30, "paid": "0.0013"}
        assert s.payer.spent_total() == "0.0113" and s.address == funded_wallet.address
        assert s.balance() == "4.9887"
    assert [(e.amount, e.method) for e in events] == [("0.01", "POST"), ("0.0013", "GET")]
    assert runs.n == 2
    assert len(facilitator.payments(provider["api_secret"])) == 2


def test_twenty_concurrent_calls_make_twenty_payments(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    runs = Counter()
    url = serve("uvicorn", fastapi_app(vlx, runs))
    with VlexivoSession(wallet_key=funded_wallet.private_key_hex()) as s, ThreadPoolExecutor(20) as pool:
        rs = list(
            pool.map(
                lambda i: s.post(url + "/api/v1/inference", json={"model": f"m{i}"}, timeout=30), range(20)
            )
        )
        assert [r.status_code for r in rs] == [200] * 20
        assert sorted(r.json()["result"] for r in rs) == sorted(f"ran m{i}" for i in range(20))
        assert s.payer.spent_total() == "0.02"
    assert runs.n == 20
    payments = facilitator.payments(provider["api_secret"])
    assert len(payments) == 20 and len({p["nonce"] for p in payments}) == 20
    assert facilitator.balance(funded_wallet.address) == "4.98"


def test_insufficient_funds_is_typed_with_the_amount(
    facilitator: Facilitator, vlx: VlexivoServer, serve: Any
) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    poor = Wallet.generate()
    facilitator.top_up(poor.address, "0.004")
    with VlexivoSession(wallet_key=poor.private_key_hex()) as s:
        with pytest.raises(InsufficientFundsError) as ei:
            s.post(url + "/api/v1/inference", json={"model": "large"})
        assert (ei.value.required_amount, ei.value.balance, ei.value.code) == (
            "0.01",
            "0.004",
            "insufficient_funds",
        )
        assert s.payer.spent_total() == "0" and s.payer.reserved_total() == "0"
    assert facilitator.balance(poor.address) == "0.004"


def echo_app(vlx: VlexivoServer, seen: list[tuple[str, bytes]]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"POST /echo": vlx.price("0.001")})

    @app.post("/echo")
    async def echo(request: Request) -> Any:
        body = await request.body()
        seen.append((request.headers.get("content-type", ""), body))
        return JSONResponse({"sha256": hashlib.sha256(body).hexdigest()})

    return app


def test_body_replayed_byte_for_byte(
    facilitator: Facilitator,
    provider: dict[str, Any],
    vlx: VlexivoServer,
    funded_wallet: Wallet,
    serve: Any,
    tmp_path: Any,
) -> None:
    seen: list[tuple[str, bytes]] = []
    url = serve("uvicorn", echo_app(vlx, seen)) + "/echo"
    raw = bytes(range(256)) * 400 + b"\r\n\r\n\x00end"
    with VlexivoSession(wallet_key=funded_wallet.private_key_hex()) as s:
        r = s.post(url, data=raw, headers={"content-type": "application/octet-stream"}, timeout=10)
        assert r.status_code == 200 and r.json()["sha256"] == hashlib.sha256(raw).hexdigest()
        # A seekable file: rewound for the paid retry, from where it stood.
        f = tmp_path / "data.bin"
        f.write_bytes(b"skip" + raw)
        with open(f, "rb") as fh:
            fh.seek(4)
            assert s.post(url, data=fh, timeout=10).status_code == 200
        # A form and a multipart upload are encoded once, sent twice the same.
        assert s.post(url, data={"a": "1", "b": "é"}, timeout=10).status_code == 200
        assert s.post(url, files={"file": ("x.bin", io.BytesIO(raw))}, timeout=10).status_code == 200

        # A generator cannot be sent twice: refused before paying.
        def gen() -> Any:
            yield b"a" * 10
            yield b"b" * 10

        before = facilitator.balance(funded_wallet.address)
        with pytest.raises(BodyNotReplayableError) as ei:
            s.post(url, data=gen())
        assert isinstance(ei.value, ValueError) and ei.value.code == "body_not_replayable"
        assert facilitator.balance(funded_wallet.address) == before
        assert s.payer.spent_total() == "0.004"
    assert seen[0] == ("application/octet-stream", raw)
    assert seen[1][1] == raw
    assert seen[2] == ("application/x-www-form-urlencoded", b"a=1&b=%C3%A9")
    assert raw in seen[3][1] and seen[3][0].startswith("multipart/form-data; boundary=")
    assert len(seen) == 4 and len(facilitator.payments(provider["api_secret"])) == 4


def test_caps_refuse_before_paying(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    key = funded_wallet.private_key_hex()
    with VlexivoSession(wallet_key=key, max_per_call="0.005") as s:
        with pytest.raises(BudgetExceededError) as ei:
            s.post(url + "/api/v1/inference", json={"model": "large"})
        assert (ei.value.limit, ei.value.requested, ei.value.remaining) == ("per_call", "0.01", "0.005")
        assert s.post(url + "/api/v1/inference", json={"model": "small"}).status_code == 200
    with VlexivoSession(wallet_key=key, max_total="0.0015") as s:
        assert s.post(url + "/api/v1/inference", json={"model": "s"}).status_code == 200
        with pytest.raises(BudgetExceededError) as ei:
            s.post(url + "/api/v1/inference", json={"model": "s"})
        assert ei.value.limit == "total"
    assert len(facilitator.payments(provider["api_secret"])) == 2


def test_auto_top_up_and_a_mounted_adapter(facilitator: Facilitator, vlx: VlexivoServer, serve: Any) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    w = Wallet.generate()
    adapter = VlexivoAdapter(
        wallet_key=w.private_key_hex(), auto_top_up={"trigger_balance": "1.00", "top_up_amount": "10.00"}
    )
    with requests.Session() as s:
        s.mount("http://127.0.0.1", adapter)
        s.headers["authorization"] = "Bearer the-apis-own-key"
        r = s.post(url + "/api/v1/inference", json={"model": "large"})
        assert r.status_code == 200
        assert facilitator.balance(w.address) == "9.99"
        assert s.post(url + "/api/v1/inference", json={"model": "large"}).status_code == 200
        assert facilitator.balance(w.address) == "9.98"  # above the trigger: no second top-up
        assert adapter.payer.spent_total() == "0.02"


def test_another_402_is_returned_as_is(serve: Any) -> None:
    app = FastAPI()

    @app.get("/other")
    async def other() -> Any:
        return JSONResponse({"error": "pay elsewhere"}, status_code=402)

    url = serve("uvicorn", app)
    with VlexivoSession(wallet_key=Wallet.generate().private_key_hex()) as s:
        r = s.get(url + "/other")
        assert r.status_code == 402 and r.json() == {"error": "pay elsewhere"}
        # Streamed: the body read to check the 402 is still all there.
        r = s.get(url + "/other", stream=True)
        assert r.status_code == 402 and b"".join(r.iter_content(3)) == b'{"error":"pay elsewhere"}'
    with pytest.raises(vlexivo.WalletError):
        VlexivoSession(wallet_key="0x1234")
