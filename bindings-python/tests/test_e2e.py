"""End to end: a real `vlexivo` facilitator process, real uvicorn / waitress servers, and the
httpx clients paying through the facilitator."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import flask
import httpx
import pytest
import vlexivo
from fastapi import Depends, FastAPI, HTTPException, Request
from vlexivo import (
    AsyncVlexivoClient,
    BodyNotReplayableError,
    BudgetExceededError,
    InsufficientFundsError,
    VlexivoClient,
    VlexivoServer,
    Wallet,
)

from .conftest import Facilitator
from .tokens import mint_token


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def inc(self) -> None:
        with self.lock:
            self.n += 1


def by_model(req: vlexivo.PricingRequest) -> str:
    model = (req.json() or {}).get("model", "")
    if "large" in model:
        return "0.01"
    if "embed" in model:
        return "0.0001"
    return "0.001"


async def by_days(req: vlexivo.PricingRequest) -> Decimal:
    days = int(req.query.get("days", "1"))
    return Decimal("0.001") + days * Decimal("0.00001")


def fastapi_app(vlx: VlexivoServer, runs: Counter) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        vlx.asgi_paywall,
        routes={
            "POST /api/v1/inference": vlx.price(resolver=by_model),
            "POST /api/v1/flaky": vlx.price("0.002"),
            "POST /api/v1/upload": vlx.price(0.003),
        },
    )

    @app.post("/api/v1/inference")
    async def inference(request: Request) -> dict[str, Any]:
        runs.inc()
        body = await request.json()
        payment = request.state.vlx_payment
        return {"result": f"ran {body['model']}", "paid": payment.amount, "payer": payment.payer}

    @app.post("/api/v1/flaky")
    async def flaky(request: Request) -> Any:
        runs.inc()
        if request.headers.get("x-fail") == "raise":
            raise RuntimeError("handler crashed")
        if request.headers.get("x-fail"):
            from fastapi.responses import JSONResponse

            return JSONResponse({"error": "backend down"}, status_code=503)
        return {"ok": True}

    @app.post("/api/v1/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/api/v1/data")
    async def data(
        days: int = 1, payment: Any = Depends(vlx.paywall(price_resolver=by_days))
    ) -> dict[str, Any]:
        runs.inc()
        return {"days": days, "paid": payment.amount}

    @app.get("/api/v1/dep-fail")
    async def dep_fail(payment: Any = Depends(vlx.paywall(price="0.001"))) -> dict[str, Any]:
        raise HTTPException(status_code=500, detail="down")

    @app.get("/free")
    async def free() -> dict[str, bool]:
        return {"free": True}

    return app


@pytest.fixture(autouse=True)
def _trusted(facilitator: Facilitator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The clients here trust the test facilitator the way a deployment would: by environment.
    monkeypatch.delenv("VLEXIVO_FACILITATOR_URL", raising=False)
    monkeypatch.setenv("VLX_FACILITATOR_URL", facilitator.url)


@pytest.fixture
def provider(facilitator: Facilitator) -> dict[str, Any]:
    return facilitator.provider()


@pytest.fixture
def vlx(facilitator: Facilitator, provider: dict[str, Any]) -> VlexivoServer:
    return VlexivoServer(api_secret=provider["api_secret"], mode="sandbox", facilitator_url=facilitator.url)


@pytest.fixture
def funded_wallet(facilitator: Facilitator) -> Wallet:
    w = Wallet.generate()
    facilitator.top_up(w.address, "5")
    return w


def test_fastapi_sync_client_pays(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    runs = Counter()
    url = serve("uvicorn", fastapi_app(vlx, runs))
    events: list[vlexivo.PaymentEvent] = []
    with VlexivoClient(
        wallet_key=funded_wallet.private_key_hex(), base_url=url, on_payment=events.append
    ) as client:
        assert client.get("/free").json() == {"free": True}
        r = client.post("/api/v1/inference", json={"model": "large-v2", "prompt": "hi"})
        assert r.status_code == 200, r.text
        assert r.json() == {"result": "ran large-v2", "paid": "0.01", "payer": funded_wallet.address}
        assert r.headers["vlexivo-receipt"].startswith("tx=0x")
        r = client.post("/api/v1/inference", json={"model": "embed-small"})
        assert r.json()["paid"] == "0.0001"
        r = client.get("/api/v1/data", params={"days": 30})
        assert r.status_code == 200 and r.json() == {"days": 30, "paid": "0.0013"}
        assert r.headers["vlexivo-receipt"].startswith("tx=0x")
        assert client.payer.spent_total() == "0.0114"
    assert [e.amount for e in events] == ["0.01", "0.0001", "0.0013"]
    assert runs.n == 3
    assert facilitator.balance(funded_wallet.address) == "4.9886"
    assert len(facilitator.payments(provider["api_secret"])) == 3
    # Without a client: a plain 402 with the challenge for agents.
    r = httpx.post(url + "/api/v1/inference", json={"model": "x"})
    assert r.status_code == 402 and r.json()["price"] == "0.001" and "vlexivo-challenge" in r.headers


async def test_twenty_concurrent_async_calls(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    runs = Counter()
    url = serve("uvicorn", fastapi_app(vlx, runs))
    async with AsyncVlexivoClient(wallet_key=funded_wallet.private_key_hex(), base_url=url) as client:
        rs = await asyncio.gather(
            *(client.post("/api/v1/inference", json={"model": f"m{i}"}) for i in range(20))
        )
        assert [r.status_code for r in rs] == [200] * 20
        assert sorted(r.json()["result"] for r in rs) == sorted(f"ran m{i}" for i in range(20))
        assert client.payer.spent_total() == "0.02"
    assert runs.n == 20
    payments = facilitator.payments(provider["api_secret"])
    assert len(payments) == 20 and len({p["nonce"] for p in payments}) == 20
    assert facilitator.balance(funded_wallet.address) == "4.98"


@pytest.mark.parametrize("fail", ["status", "raise"])
def test_failed_handler_releases_the_nonce(
    facilitator: Facilitator,
    provider: dict[str, Any],
    vlx: VlexivoServer,
    funded_wallet: Wallet,
    serve: Any,
    fail: str,
) -> None:
    runs = Counter()
    url = serve("uvicorn", fastapi_app(vlx, runs))
    events: list[vlexivo.PaymentEvent] = []
    with VlexivoClient(
        wallet_key=funded_wallet.private_key_hex(), base_url=url, on_payment=events.append
    ) as client:
        r = client.post("/api/v1/flaky", json={}, headers={"x-fail": fail})
        assert r.status_code in (500, 503)
        assert len(events) == 1
    token = events[0].receipt.token
    with httpx.Client(base_url=url) as http:
        # The same token buys the retry: no second payment.
        r = http.post("/api/v1/flaky", json={}, headers={"Vlexivo-Proof": token})
        assert r.status_code == 200 and r.json() == {"ok": True}
        # And only once.
        r = http.post("/api/v1/flaky", json={}, headers={"Vlexivo-Proof": token})
        assert (r.status_code, r.json()["error"]) == (409, "token_replayed")
    assert runs.n == 2
    assert len(facilitator.payments(provider["api_secret"])) == 1
    assert facilitator.balance(funded_wallet.address) == "4.998"


def test_dependency_releases_on_handler_error(
    facilitator: Facilitator, vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    events: list[vlexivo.PaymentEvent] = []
    with VlexivoClient(
        wallet_key=funded_wallet.private_key_hex(), base_url=url, on_payment=events.append
    ) as client:
        assert client.get("/api/v1/dep-fail").status_code == 500
    with httpx.Client(base_url=url) as http:
        # Released: the token verifies again (the handler fails again, still no replay error).
        r = http.get("/api/v1/dep-fail", headers={"Vlexivo-Proof": events[0].receipt.token})
        assert r.status_code == 500


def test_insufficient_funds(facilitator: Facilitator, vlx: VlexivoServer, serve: Any) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    poor = Wallet.generate()
    facilitator.top_up(poor.address, "0.004")
    with VlexivoClient(wallet_key=poor.private_key_hex(), base_url=url) as client:
        with pytest.raises(InsufficientFundsError) as ei:
            client.post("/api/v1/inference", json={"model": "large"})
        assert (ei.value.required_amount, ei.value.balance, ei.value.code) == (
            "0.01",
            "0.004",
            "insufficient_funds",
        )
        assert client.payer.spent_total() == "0" and client.payer.reserved_total() == "0"


def test_auto_top_up(facilitator: Facilitator, vlx: VlexivoServer, serve: Any) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    w = Wallet.generate()
    with VlexivoClient(
        wallet_key=w.private_key_hex(),
        base_url=url,
        auto_top_up=dict(enabled=True, trigger_balance="1.00", top_up_amount="10.00"),
    ) as client:
        r = client.post("/api/v1/inference", json={"model": "large"})
        assert r.status_code == 200
        assert facilitator.balance(w.address) == "9.99"
        r = client.post("/api/v1/inference", json={"model": "large"})
        assert facilitator.balance(w.address) == "9.98"  # above the trigger: no second top-up


async def test_auto_top_up_async_concurrent(facilitator: Facilitator, vlx: VlexivoServer, serve: Any) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    w = Wallet.generate()
    events: list[vlexivo.PaymentEvent] = []

    async def on_payment(e: vlexivo.PaymentEvent) -> None:  # async hooks are awaited
        await asyncio.sleep(0)
        events.append(e)

    async with AsyncVlexivoClient(
        wallet_key=w.private_key_hex(),
        base_url=url,
        on_payment=on_payment,
        auto_top_up=vlexivo.AutoTopUp(trigger_balance="0.02", top_up_amount="0.05"),
    ) as client:
        rs = await asyncio.gather(
            *(client.post("/api/v1/inference", json={"model": "large"}) for _ in range(8))
        )
        assert [r.status_code for r in rs] == [200] * 8
    assert client.payer.spent_total() == "0.08"
    assert len(events) == 8 and {e.amount for e in events} == {"0.01"} and len({e.nonce for e in events}) == 8
    assert all(e.url.endswith("/api/v1/inference") and e.method == "POST" for e in events)


def test_budget_caps(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    key = funded_wallet.private_key_hex()
    with VlexivoClient(wallet_key=key, base_url=url, max_per_call="0.005") as client:
        with pytest.raises(BudgetExceededError) as ei:
            client.post("/api/v1/inference", json={"model": "large"})
        assert (ei.value.limit, ei.value.requested, ei.value.remaining) == ("per_call", "0.01", "0.005")
        assert client.post("/api/v1/inference", json={"model": "small"}).status_code == 200
    with VlexivoClient(wallet_key=key, base_url=url, max_total="0.0025") as client:
        assert client.post("/api/v1/inference", json={"model": "s"}).status_code == 200
        assert client.post("/api/v1/inference", json={"model": "s"}).status_code == 200
        with pytest.raises(BudgetExceededError) as ei:
            client.post("/api/v1/inference", json={"model": "s"})
        assert ei.value.limit == "total"
    host = url.split("//")[1]
    with VlexivoClient(wallet_key=key, base_url=url, max_per_host="0.001", window=(60, "1")) as client:
        assert client.post("/api/v1/inference", json={"model": "s"}).status_code == 200
        with pytest.raises(BudgetExceededError) as ei:
            client.post("/api/v1/inference", json={"model": "s"})
        assert ei.value.limit == "per_host"
        assert client.payer.spent_for_host(host) == "0.001"
    with VlexivoClient(wallet_key=key, base_url=url, window=(3600, "0.001")) as client:
        assert client.post("/api/v1/inference", json={"model": "s"}).status_code == 200
        with pytest.raises(BudgetExceededError) as ei:
            client.post("/api/v1/inference", json={"model": "s"})
        assert ei.value.limit == "window"
    # 1 + 2 + 1 + 1 paid; refusals never reached the facilitator.
    assert len(facilitator.payments(provider["api_secret"])) == 5


def test_body_replay(
    facilitator: Facilitator,
    provider: dict[str, Any],
    vlx: VlexivoServer,
    funded_wallet: Wallet,
    serve: Any,
    tmp_path: Any,
) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))
    with VlexivoClient(wallet_key=funded_wallet.private_key_hex(), base_url=url) as client:
        # Bytes and JSON bodies are replayed byte for byte.
        assert client.post("/api/v1/upload", content=b"x" * 100_000).json() == {"size": 100_000}
        # Multipart with a seekable file is replayed too.
        f = tmp_path / "data.bin"
        f.write_bytes(b"y" * 5000)
        with open(f, "rb") as fh:
            r = client.post("/api/v1/upload", files={"file": ("data.bin", fh)})
        assert r.status_code == 200 and r.json()["size"] > 5000

        # A generator body cannot be sent twice: refused before paying.
        def gen() -> Any:
            yield b"a" * 10
            yield b"b" * 10

        before = facilitator.balance(funded_wallet.address)
        with pytest.raises(BodyNotReplayableError) as ei:
            client.post("/api/v1/upload", content=gen())
        assert isinstance(ei.value, ValueError) and ei.value.code == "body_not_replayable"
        assert facilitator.balance(funded_wallet.address) == before
        assert client.payer.spent_total() == "0.006"
    assert len(facilitator.payments(provider["api_secret"])) == 2


async def test_async_body_not_replayable(
    facilitator: Facilitator, vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    url = serve("uvicorn", fastapi_app(vlx, Counter()))

    async def agen() -> Any:
        yield b"abc"

    async with AsyncVlexivoClient(wallet_key=funded_wallet.private_key_hex(), base_url=url) as client:
        with pytest.raises(BodyNotReplayableError):
            await client.post("/api/v1/upload", content=agen())
        assert client.payer.spent_total() == "0"


def test_other_402_and_bad_wallet(vlx: VlexivoServer, serve: Any) -> None:
    app = FastAPI()

    @app.get("/other")
    async def other() -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": "pay elsewhere"}, status_code=402)

    url = serve("uvicorn", app)
    with VlexivoClient(wallet_key=Wallet.generate().private_key_hex(), base_url=url) as client:
        assert client.get("/other").status_code == 402  # not ours: returned as is
    with pytest.raises(vlexivo.WalletError) as ei:
        VlexivoClient(wallet_key="0x1234")
    assert isinstance(ei.value, ValueError)
    with pytest.raises(vlexivo.AmountError):
        VlexivoClient(wallet_key=Wallet.generate().private_key_hex(), max_per_call="abc")


def test_server_config_errors() -> None:
    with pytest.raises(vlexivo.ConfigError):
        VlexivoServer(api_secret="sk_nope")
    with pytest.raises(vlexivo.ModeMismatchError):
        VlexivoServer(api_secret="sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM", mode="live")
    vlx = VlexivoServer(api_secret="sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM")
    with pytest.raises(vlexivo.PriceInvalidError):
        vlx.price("0.0000001")
    with pytest.raises(vlexivo.PriceInvalidError):
        vlx.paywall(price=True)  # type: ignore[arg-type]


def test_sqlite_nonce_store_shared(tmp_path: Any) -> None:
    """Two servers (as two processes would) sharing one SQLite nonce store refuse a replay."""
    from vlexivo import _native

    secret = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
    db = str(tmp_path / "nonces.db")
    a = VlexivoServer(api_secret=secret, nonce_store=f"sqlite://{db}", origin="http://api.test")
    b = VlexivoServer(api_secret=secret, nonce_store=f"sqlite:{db}", origin="http://api.test")
    token = mint_token(secret, "n" * 24, "GET", "/x", "0.001", _native.now())
    assert a.verify(token, "GET", "/x", "0.001").nonce == "n" * 24
    with pytest.raises(vlexivo.TokenReplayedError):
        b.verify(token, "GET", "/x", "0.001")


def flask_app(vlx: VlexivoServer, runs: Counter) -> flask.Flask:
    app = flask.Flask("paid")

    @app.post("/api/v1/inference")
    @vlx.paywall(price_resolver=by_model)
    def inference() -> Any:
        runs.inc()
        payment = flask.g.vlx_payment
        return {"result": f"ran {flask.request.get_json()['model']}", "paid": payment.amount}

    @app.get("/api/v1/data")
    @vlx.paywall(price_resolver=by_days)  # an async resolver under a sync framework
    def data() -> Any:
        runs.inc()
        return {"paid": flask.g.vlx_payment.amount}

    @app.post("/api/v1/flaky")
    @vlx.paywall(price="0.002")
    def flaky() -> Any:
        runs.inc()
        if flask.request.headers.get("x-fail") == "raise":
            raise RuntimeError("crash")
        return {"ok": not flask.request.headers.get("x-fail")}, (
            500 if flask.request.headers.get("x-fail") else 200
        )

    return app


def test_flask_waitress(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    runs = Counter()
    url = serve("waitress", flask_app(vlx, runs))
    events: list[vlexivo.PaymentEvent] = []
    with VlexivoClient(
        wallet_key=funded_wallet.private_key_hex(), base_url=url, on_payment=events.append
    ) as client:
        r = client.post("/api/v1/inference", json={"model": "large-v2"})
        assert r.status_code == 200 and r.json() == {"result": "ran large-v2", "paid": "0.01"}
        assert r.headers["vlexivo-receipt"].startswith("tx=0x")
        assert client.get("/api/v1/data", params={"days": 90}).json() == {"paid": "0.0019"}
        for fail in ("status", "raise"):
            assert client.post("/api/v1/flaky", json={}, headers={"x-fail": fail}).status_code == 500
            with httpx.Client(base_url=url) as http:
                r = http.post("/api/v1/flaky", json={}, headers={"Vlexivo-Proof": events[-1].receipt.token})
                assert r.status_code == 200
                r = http.post("/api/v1/flaky", json={}, headers={"Vlexivo-Proof": events[-1].receipt.token})
                assert r.status_code == 409
    assert runs.n == 2 + 4
    assert len(facilitator.payments(provider["api_secret"])) == 4


async def test_flask_concurrent_async_client(
    facilitator: Facilitator, provider: dict[str, Any], vlx: VlexivoServer, funded_wallet: Wallet, serve: Any
) -> None:
    runs = Counter()
    url = serve("waitress", flask_app(vlx, runs))
    async with AsyncVlexivoClient(wallet_key=funded_wallet.private_key_hex(), base_url=url) as client:
        rs = await asyncio.gather(
            *(client.post("/api/v1/inference", json={"model": f"m{i}"}) for i in range(20))
        )
    assert [r.status_code for r in rs] == [200] * 20
    assert runs.n == 20
    assert len(facilitator.payments(provider["api_secret"])) == 20
