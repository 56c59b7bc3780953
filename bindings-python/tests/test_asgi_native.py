"""The ASGI paywall middleware's native entry (`_native.AsgiMiddleware.__call__`): a request on a
route its cache knows runs without the Python `_call`, with the same outcomes (the receipt, a
refusal, the nonce given back when the handler fails, raises or is cancelled); anything else goes
to `_call`. The payment is in `scope["vlexivo.payment"]` as well as `request.state.vlx_payment`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette._utils import is_async_callable
from starlette.routing import Host
from vlexivo import VlexivoServer, _native
from vlexivo._asgi import PaywallMiddleware

from .tokens import mint_token

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
ORIGIN = "http://api.test"
_n = iter(range(10**6))


def proof(path: str) -> bytes:
    nonce = f"native-{next(_n)}".ljust(24, "x")
    return mint_token(SECRET, nonce, "GET", path, "0.001", _native.now(), origin=ORIGIN).encode()


def scope(path: str, token: bytes | None, method: str = "GET", **more: Any) -> dict[str, Any]:
    headers = [(b"host", b"api.test"), *([(b"vlexivo-proof", token)] if token is not None else [])]
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers + more.pop("extra", []),
        "state": {},
        **more,
    }


class Served:
    """The middleware around a FastAPI app, called as an ASGI server calls it; counts the
    requests that went to the Python `_call`."""

    def __init__(self) -> None:
        self.vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
        app = self.app = FastAPI()
        self.seen: list[Any] = []
        self.started = asyncio.Event()

        @app.get("/hello")
        async def hello(request: Request) -> dict[str, str]:
            payment = request.scope["vlexivo.payment"]
            assert payment is request.state.vlx_payment
            self.seen.append(payment)
            return {"paid": payment.amount}

        @app.get("/free")
        async def free() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/fails")
        async def fails() -> JSONResponse:
            return JSONResponse({"down": True}, status_code=503)

        @app.get("/raises")
        async def raises() -> None:
            raise RuntimeError("the handler failed")

        @app.get("/slow")
        async def slow() -> None:
            self.started.set()
            await asyncio.sleep(30)

        price = self.vlx.price("0.001")
        self.mw = PaywallMiddleware(
            app,
            server=self.vlx,
            routes={"GET /hello": price, "GET /fails": price, "GET /raises": price, "GET /slow": price},
        )
        self.python_calls = 0
        python_call = self.mw._call

        async def counted(s: Any, receive: Any, send: Any) -> None:
            self.python_calls += 1
            await python_call(s, receive, send)

        self.mw._call = counted  # type: ignore[method-assign]

    async def call(self, s: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            await asyncio.sleep(0)  # a send that suspends, as a server's may
            if msg["type"] == "http.response.start":
                out["status"], out["headers"] = msg["status"], dict(msg["headers"])
            else:
                out["body"] += msg.get("body", b"")

        await self.mw(s, receive, send)
        return out["status"], out["headers"], out["body"]


def test_a_known_route_runs_natively_with_the_python_paths_outcomes() -> None:
    served = Served()

    async def run() -> None:
        # The first request of a route goes to _call (which learns the router and the route).
        status, headers, _ = await served.call(scope("/hello", proof("/hello")))
        assert status == 200 and headers[b"vlexivo-receipt"].startswith(b"tx=")
        assert served.python_calls == 1
        for _ in range(3):
            t = proof("/hello")
            status, headers, body = await served.call(scope("/hello", t))
            assert (status, body) == (200, b'{"paid":"0.001"}')
            assert headers[b"vlexivo-receipt"] == served.seen[-1].receipt.encode()
            assert b"access-control-expose-headers" not in headers
        assert served.python_calls == 1, "a known route took the Python path"
        # Refusals on the native path: a replay, a missing proof, a proof for another route.
        status, _, body = await served.call(scope("/hello", t))
        assert status == 409 and b"token_replayed" in body
        status, headers, _ = await served.call(scope("/hello", None))
        assert status == 402 and b"vlexivo-challenge" in headers
        status, _, _ = await served.call(scope("/hello", proof("/other")))
        assert status == 402
        # A cross-origin request: the receipt exposed to CORS.
        extra = [(b"origin", b"https://app.test")]
        status, headers, _ = await served.call(scope("/hello", proof("/hello"), extra=extra))
        assert status == 200 and b"Vlexivo-Receipt" in headers[b"access-control-expose-headers"]
        # An unpriced route: nothing asked.
        await served.call(scope("/free", None))
        status, _, body = await served.call(scope("/free", None))
        assert (status, body) == (200, b'{"ok":true}')
        calls = served.python_calls
        # Anything the cache does not know, a preflight, a non-HTTP scope: the Python path.
        await served.call(scope("/nowhere", None))
        extra = [(b"access-control-request-method", b"GET"), (b"origin", b"https://app.test")]
        await served.call(scope("/hello", None, method="OPTIONS", extra=extra))
        assert served.python_calls == calls + 2

    asyncio.run(run())


@pytest.mark.parametrize("path", ["/fails", "/raises", "/slow"])
def test_a_failed_handler_gives_the_nonce_back_on_the_native_path(path: str) -> None:
    """A 5xx, an exception and a cancelled request release the nonce: the same proof pays
    again (on the native path, once the route is known)."""
    served = Served()

    async def attempt(t: bytes) -> int | None:
        if path == "/slow":
            served.started.clear()
            task = asyncio.ensure_future(served.call(scope(path, t)))
            await asyncio.wait_for(served.started.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return None
        if path == "/raises":
            with pytest.raises(RuntimeError, match="the handler failed"):
                await served.call(scope(path, t))
            return None
        status, headers, _ = await served.call(scope(path, t))
        assert b"vlexivo-receipt" not in headers
        return status

    async def run() -> None:
        await attempt(proof(path))  # the route learnt
        calls = served.python_calls
        t = proof(path)
        for _ in range(3):  # released every time: the same proof is taken again
            assert await attempt(t) in (None, 503)
        assert served.python_calls == calls
        # Had it been kept, the proof would now be a replay; it is still good.
        assert served.vlx.native.verify(t.decode(), "GET", path, "0.001", host="api.test") is not None

    asyncio.run(run())


def test_a_changed_router_takes_the_python_path_under_the_one_rule() -> None:
    """Both entries read the route cache under one rule (`AsgiMiddleware._cache_current`): the
    request after the router changed goes to `_call`, which surveys the router again; while a
    route in it looks at more than the path (a `Host`), nothing is cached and every request goes
    to `_call`; once that route is gone, known routes run natively again."""
    served = Served()

    async def pay(python_calls: int) -> None:
        status, headers, _ = await served.call(scope("/hello", proof("/hello")))
        assert status == 200 and headers[b"vlexivo-receipt"] == served.seen[-1].receipt.encode()
        assert served.python_calls == python_calls

    async def run() -> None:
        await pay(1)  # the route learnt
        await pay(1)

        @served.app.get("/added")
        async def added() -> None:
            pass

        await pay(2)  # the router changed: surveyed again, the cache renewed
        await pay(2)
        served.app.router.routes.append(Host("other.test", app=JSONResponse({"other": True})))
        for n in range(3, 6):
            await pay(n)
        assert ("GET", "", "/free") not in served.mw._recent
        await served.call(scope("/free", None))
        assert ("GET", "", "/free") not in served.mw._recent, "cached beside a Host route"
        served.app.router.routes.pop()
        await pay(7)
        await pay(7)

    asyncio.run(run())


def test_servers_see_an_asgi3_app() -> None:
    """ASGI servers tell ASGI 3 from 2 by whether ``__call__`` is a coroutine function."""
    mw = Served().mw
    assert asyncio.iscoroutinefunction(mw.__call__) and is_async_callable(mw)
    assert isinstance(mw, _native.AsgiMiddleware)
