"""The payer flow's security rules through the sync and async clients, against real servers: a
real `vlexivo` facilitator process, a real FastAPI paid API under uvicorn, and a real relay
facilitator in between that forwards each request to the real one (which charges) and answers
payments 502 (issue 15 items 6, 7, 9 and 13); and servers sending endless bodies (issue 18
item 7)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from vlexivo import AsyncVlexivoClient, VlexivoClient, VlexivoError, VlexivoServer, Wallet

from .conftest import Facilitator, start_facilitator, stop_facilitator


class Server:
    """A ``http.server`` handler class served on 127.0.0.1:0 in a thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Relay:
    """Forwards everything to ``upstream``; while ``lie`` is set, answers payments 502 after
    the real facilitator has charged them. Counts what it saw."""

    def __init__(self) -> None:
        self.upstream = ""
        self.lie = True
        self.seen: list[str] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else None
                relay.seen.append(f"{self.command} {self.path}")
                up = httpx.request(
                    self.command,
                    relay.upstream + self.path,
                    content=body,
                    headers={"content-type": "application/json"},
                )
                if self.path == "/v1/payments" and relay.lie:
                    status, out = 502, b"<html>bad gateway</html>"
                else:
                    status, out = up.status_code, up.content
                self.send_response(status)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _forward

        self.server = Server(Handler)
        self.url = self.server.url

    def payments(self) -> int:
        return sum(1 for s in self.seen if s == "POST /v1/payments")


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Relay, Facilitator]]:
    r = Relay()
    # The real facilitator is told it is reached at the relay's URL, so it accepts challenges
    # naming the relay.
    fac = start_facilitator(tmp_path_factory.mktemp("relayed") / "f.db", public_url=r.url)
    r.upstream = fac.url
    try:
        yield r, fac
    finally:
        r.server.stop()
        stop_facilitator(fac)


@pytest.fixture(autouse=True)
def _no_trust_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLX_FACILITATOR_URL", raising=False)
    monkeypatch.delenv("VLEXIVO_FACILITATOR_URL", raising=False)


@pytest.fixture
def api(relay: tuple[Relay, Facilitator], serve: Any) -> str:
    r, fac = relay
    vlx = VlexivoServer(api_secret=fac.provider()["api_secret"], facilitator_url=r.url)
    app = FastAPI()
    failed = {"once": False}

    @app.get("/a")
    async def a(payment: Any = Depends(vlx.paywall(price="0.001"))) -> dict[str, str]:
        return {"paid": payment.amount}

    @app.get("/b")
    async def b(payment: Any = Depends(vlx.paywall(price="0.001"))) -> dict[str, str]:
        return {"paid": payment.amount}

    @app.get("/flaky")
    async def flaky(payment: Any = Depends(vlx.paywall(price="0.002"))) -> Any:
        if not failed["once"]:
            failed["once"] = True
            raise HTTPException(status_code=500, detail="backend down")
        return {"paid": payment.amount}

    return str(serve("uvicorn", app))


def funded(fac: Facilitator, amount: str = "1") -> Wallet:
    w = Wallet.generate()
    fac.top_up(w.address, amount)
    return w


def code_of(e: pytest.ExceptionInfo[VlexivoError]) -> str:
    return e.value.code


def test_item_6_unconfigured_client_does_not_pay_the_facilitator_a_402_names(
    relay: tuple[Relay, Facilitator], api: str
) -> None:
    r, fac = relay
    r.lie = True
    before = len(r.seen)
    w = funded(fac)
    with VlexivoClient(wallet_key=w.private_key_hex(), max_total="0.001") as client:
        for _ in range(2):
            with pytest.raises(VlexivoError) as e:
                client.get(api + "/a")
            assert code_of(e) == "facilitator_untrusted" and e.value.status == 403
            assert e.value.details["facilitator"] == r.url
    assert len(r.seen) == before, "nothing signed, queried or sent"
    assert fac.balance(w.address) == "1"


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_item_7_pinned_with_auto_top_up_never_queries_another_facilitator(
    relay: tuple[Relay, Facilitator], api: str, flavour: str
) -> None:
    r, fac = relay
    before = len(r.seen)
    w = Wallet.generate()
    kw: dict[str, Any] = dict(
        wallet_key=w.private_key_hex(),
        facilitator_url=fac.url,
        auto_top_up=dict(trigger_balance="1.00", top_up_amount="10.00"),
    )
    with pytest.raises(VlexivoError) as e:
        if flavour == "sync":
            with VlexivoClient(**kw) as client:
                client.get(api + "/a")
        else:
            async with AsyncVlexivoClient(**kw) as aclient:
                await aclient.get(api + "/a")
    assert code_of(e) == "facilitator_untrusted"
    assert r.seen[before:] == [], "no balance query, no top-up at the challenge's facilitator"
    assert fac.balance(w.address) == "0"


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_item_13_a_payment_answered_502_stays_counted(
    relay: tuple[Relay, Facilitator], api: str, flavour: str
) -> None:
    r, fac = relay
    r.lie = True
    w = funded(fac)
    events: list[Any] = []
    kw: dict[str, Any] = dict(
        wallet_key=w.private_key_hex(), facilitator_url=r.url, max_total="0.001", on_payment=events.append
    )

    async def get(client: Any, path: str) -> httpx.Response:
        res = client.get(api + path)
        return await res if flavour == "async" else res  # type: ignore[no-any-return]

    client: Any = VlexivoClient(**kw) if flavour == "sync" else AsyncVlexivoClient(**kw)
    try:
        with pytest.raises(VlexivoError) as e:
            await get(client, "/a")
        assert code_of(e) == "payment_in_doubt" and e.value.details["amount"] == "0.001"
        assert fac.balance(w.address) == "0.999", "charged once: the resend was the same payment"
        p = client.payer
        assert (p.spent_total(), p.reserved_total(), p.in_doubt_total()) == ("0", "0.001", "0.001")
        # The in-doubt payment is re-sent first (502 again), then the cap refuses.
        with pytest.raises(VlexivoError) as e:
            await get(client, "/b")
        assert code_of(e) == "budget_exceeded"
        assert fac.balance(w.address) == "0.999", "never more than max_total"
        # The relay tells the truth: the payment is settled and its proof serves /a.
        r.lie = False
        res = await get(client, "/a")
        assert res.status_code == 200 and res.json() == {"paid": "0.001"}
        assert fac.balance(w.address) == "0.999", "paid once in all"
        assert (p.spent_total(), p.reserved_total(), p.in_doubt_total()) == ("0.001", "0", "0")
        assert [ev.reconciled for ev in events] == [True]
    finally:
        r.lie = True
        if flavour == "sync":
            client.close()
        else:
            await client.aclose()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_item_9_a_proof_is_reused_after_the_api_fails(
    relay: tuple[Relay, Facilitator], api: str, flavour: str
) -> None:
    r, fac = relay
    r.lie = False
    try:
        w = funded(fac)
        before = r.payments()
        kw: dict[str, Any] = dict(wallet_key=w.private_key_hex(), facilitator_url=r.url)
        if flavour == "sync":
            with VlexivoClient(**kw) as client:
                assert client.get(api + "/flaky").status_code == 500
                assert client.get(api + "/flaky").json() == {"paid": "0.002"}
        else:
            async with AsyncVlexivoClient(**kw) as aclient:
                assert (await aclient.get(api + "/flaky")).status_code == 500
                assert (await aclient.get(api + "/flaky")).json() == {"paid": "0.002"}
        assert fac.balance(w.address) == "0.998", "not paid again"
        assert r.payments() - before == 1
    finally:
        r.lie = True


class Endless:
    """Answers every request with ``status`` and 16 KiB chunks until the client goes away."""

    def __init__(self, status: int) -> None:
        self.written = 0
        endless = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                if n:
                    self.rfile.read(n)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                chunk = b"x" * 16384
                try:
                    while endless.written < 512 * 1024 * 1024:
                        self.wfile.write(chunk)
                        endless.written += len(chunk)
                except OSError:
                    pass

            do_GET = do_POST = _answer

        self.server = Server(Handler)
        self.url = self.server.url


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_18_7_an_endless_402_body_is_not_read_past_the_limit(flavour: str) -> None:
    srv = Endless(402)
    try:
        kw: dict[str, Any] = dict(wallet_key=Wallet.generate().private_key_hex())
        if flavour == "sync":
            with VlexivoClient(**kw) as client, client.stream("GET", srv.url + "/x") as res:
                assert res.status_code == 402
                assert len(next(res.iter_bytes())) > 0
        else:
            async with AsyncVlexivoClient(**kw) as aclient, aclient.stream("GET", srv.url + "/x") as ares:
                assert ares.status_code == 402
                assert len(await ares.aiter_bytes().__anext__()) > 0
        assert srv.written < 64 * 1024 * 1024, srv.written
    finally:
        srv.server.stop()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_18_7_an_endless_facilitator_answer_is_cut_and_the_payment_in_doubt(
    facilitator: Facilitator, serve: Any, flavour: str
) -> None:
    srv = Endless(200)
    try:
        vlx = VlexivoServer(api_secret=facilitator.provider()["api_secret"], facilitator_url=srv.url)
        app = FastAPI()

        @app.get("/x")
        async def x(payment: Any = Depends(vlx.paywall(price="0.001"))) -> dict[str, str]:
            return {}

        url = str(serve("uvicorn", app))
        kw: dict[str, Any] = dict(
            wallet_key=Wallet.generate().private_key_hex(), facilitator_url=srv.url, facilitator_timeout=120.0
        )
        started = time.monotonic()
        with pytest.raises(VlexivoError) as e:
            if flavour == "sync":
                with VlexivoClient(**kw) as client:
                    client.get(url + "/x")
            else:
                async with AsyncVlexivoClient(**kw) as aclient:
                    await aclient.get(url + "/x")
        assert code_of(e) == "payment_in_doubt"
        assert "larger than 65536" in e.value.details["reason"]
        assert time.monotonic() - started < 60, "stopped reading instead of waiting for the timeout"
        assert srv.written < 64 * 1024 * 1024, srv.written
    finally:
        srv.server.stop()


def test_trust_from_environment(monkeypatch: pytest.MonkeyPatch, relay: tuple[Relay, Facilitator]) -> None:
    r, _ = relay
    monkeypatch.setenv("VLX_FACILITATOR_URL", r.url + "/")
    with VlexivoClient(wallet_key=Wallet.generate().private_key_hex()) as client:
        assert client.payer.facilitators == [r.url]
    monkeypatch.setenv("VLX_FACILITATOR_URL", "ftp://nope")
    with pytest.raises(VlexivoError) as e:
        VlexivoClient(wallet_key=Wallet.generate().private_key_hex())
    assert code_of(e) == "config_invalid"
