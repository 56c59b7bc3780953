"""The response policy, adapter by adapter, over real servers (uvicorn; waitress): free methods
(CORS preflights only), HEAD priced as GET and answered without a body, release or keep from the
handler's outcome (not the connection), one effective price for stacked paywalls, and route
matching through the framework's own router. Tokens come from the test-only native signer."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import flask
import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from vlexivo import VlexivoServer, _native

from .tokens import mint_token

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
# The test servers listen on random ports: the origin is configured, and tokens bound to it.
ORIGIN = "http://api.test"
_seq = iter(range(1_000_000))


def token(method: str, path: str, amount: str = "0.001") -> str:
    nonce = f"policy{next(_seq):06d}".ljust(24, "x")
    return mint_token(SECRET, nonce, method, path, amount, _native.now(), origin=ORIGIN)


def proof(t: str) -> dict[str, str]:
    return {"Vlexivo-Proof": t}


class Runs:
    """Counts handler runs; `done` is set when the whole server-side exchange has finished."""

    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.done = threading.Event()
        #: Set by a handler when it starts (the request is read and paid for).
        self.started = threading.Event()

    def inc(self) -> None:
        with self.lock:
            self.n += 1


def asgi_done(app: Any, runs: Runs) -> Any:
    """Outermost ASGI wrapper: marks the exchange finished once everything inside returned."""

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                runs.done.set()

    return outer


def wsgi_done(app: Any, runs: Runs) -> Any:
    """Outermost WSGI wrapper: marks the exchange finished once the server closed the body."""

    class Body:
        def __init__(self, it: Any) -> None:
            self.it = it

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.it)

        def close(self) -> None:
            try:
                if hasattr(self.it, "close"):
                    self.it.close()
            finally:
                runs.done.set()

    def outer(environ: Any, start_response: Any) -> Any:
        try:
            return Body(app(environ, start_response))
        except BaseException:
            runs.done.set()
            raise

    return outer


def send_and_hang_up(
    url: str, method: str, path: str, headers: dict[str, str], started: threading.Event
) -> None:
    """Send a request and close the connection without reading the answer, once the handler
    has started (``started``)."""
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=5)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {u.netloc}", "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        assert started.wait(10), "the handler did not start within 10 s"
    finally:
        s.close()


def head_then_get(
    url: str, head_path: str, get_path: str, head_headers: dict[str, str] | None = None
) -> tuple[int, bytes, int, bytes]:
    """A HEAD then a GET on one keep-alive connection (http.client reads no body after HEAD, so a
    body sent with the HEAD answer would be parsed as the next status line)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=5)
    try:
        conn.request("HEAD", head_path, headers=head_headers or {})
        r1 = conn.getresponse()
        b1 = r1.read()
        conn.request("GET", get_path)
        r2 = conn.getresponse()
        return r1.status, b1, r2.status, r2.read()
    finally:
        conn.close()


def reuse(url: str, method: str, path: str, t: str) -> httpx.Response:
    return httpx.request(method, url + path, headers=proof(t), timeout=10)


# --- item 1: an exception after a complete response does not release ------------------------


def test_asgi_background_task_raising_after_the_response_keeps_the_nonce(serve: Any) -> None:
    """FastAPI: a BackgroundTask that raises after the 200 went out (issue 15 item 1: the
    middleware released on any exception, so one payment bought many complete 200s)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"GET /report": vlx.price("0.001")})

    def explode() -> None:
        raise RuntimeError("background task failed")

    @app.get("/report")
    async def report(tasks: BackgroundTasks) -> dict[str, int]:
        runs.inc()
        tasks.add_task(explode)
        return {"run": runs.n}

    url = serve("uvicorn", asgi_done(app, runs))
    t = token("GET", "/report")
    r = reuse(url, "GET", "/report", t)
    assert r.status_code == 200 and r.json() == {"run": 1}
    assert runs.done.wait(5)
    r = reuse(url, "GET", "/report", t)
    assert (r.status_code, r.json()["error"]) == (409, "token_replayed")
    assert runs.n == 1


def test_dependency_background_task_raising_after_the_response_keeps_the_nonce(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    app = FastAPI()

    def explode() -> None:
        raise RuntimeError("background task failed")

    @app.get("/report")
    async def report(
        tasks: BackgroundTasks, payment: Any = Depends(vlx.paywall(price="0.001"))
    ) -> dict[str, int]:
        runs.inc()
        tasks.add_task(explode)
        return {"run": runs.n}

    url = serve("uvicorn", asgi_done(app, runs))
    t = token("GET", "/report")
    assert reuse(url, "GET", "/report", t).status_code == 200
    assert runs.done.wait(5)
    r = reuse(url, "GET", "/report", t)
    assert (r.status_code, r.json()["error"]) == (409, "token_replayed")
    assert runs.n == 1


def test_wsgi_close_raising_after_the_body_keeps_the_nonce(serve: Any) -> None:
    """The WSGI twin: the app's iterable raises in close(), after the whole body was sent."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"done"

        def close(self) -> None:
            raise RuntimeError("cleanup failed")

    def app(environ: Any, start_response: Any) -> Any:
        runs.inc()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return Body()

    url = serve("waitress", wsgi_done(vlx.wsgi_paywall(app, routes={"GET /job": vlx.price("0.001")}), runs))
    t = token("GET", "/job")
    assert reuse(url, "GET", "/job", t).text == "done"
    assert runs.done.wait(5)
    r = reuse(url, "GET", "/job", t)
    assert (r.status_code, r.json()["error"]) == (409, "token_replayed")


def test_flask_call_on_close_raising_keeps_the_nonce(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    app = flask.Flask("onclose")

    @app.get("/job")
    @vlx.paywall(price="0.001")
    def job() -> Any:
        runs.inc()
        resp = flask.make_response("done")

        @resp.call_on_close
        def fail() -> None:
            raise RuntimeError("cleanup failed")

        return resp

    url = serve("waitress", wsgi_done(app, runs))
    t = token("GET", "/job")
    assert reuse(url, "GET", "/job", t).text == "done"
    assert runs.done.wait(5)
    assert reuse(url, "GET", "/job", t).status_code == 409
    assert runs.n == 1


# --- item 2: the handler's outcome decides, not the connection ---------------------------


def _fastapi_slow(vlx: VlexivoServer, runs: Runs, fail: bool, dependency: bool) -> Any:
    app = FastAPI()
    if not dependency:
        app.add_middleware(vlx.asgi_paywall, routes={"GET /slow": vlx.price("0.001")})
        guard: Any = None
    else:
        guard = vlx.paywall(price="0.001")

    async def work() -> dict[str, bool]:
        runs.started.set()
        await asyncio.get_running_loop().run_in_executor(None, runs.release.wait, 10)
        runs.inc()
        if fail:
            raise RuntimeError("handler failed after the client left")
        return {"ok": True}

    if dependency:

        @app.get("/slow")
        async def slow_dep(payment: Any = Depends(guard)) -> dict[str, bool]:
            return await work()

    else:

        @app.get("/slow")
        async def slow() -> dict[str, bool]:
            return await work()

    return app


def _flask_slow(vlx: VlexivoServer, runs: Runs, fail: bool, middleware: bool) -> Any:
    app = flask.Flask("slow")

    def work() -> Any:
        runs.started.set()
        runs.release.wait(10)
        runs.inc()
        if fail:
            raise RuntimeError("handler failed after the client left")
        return {"ok": True}

    if middleware:
        app.get("/slow")(work)
        app.wsgi_app = vlx.wsgi_paywall(app.wsgi_app, routes={"GET /slow": vlx.price("0.001")})  # type: ignore[method-assign]
    else:
        app.get("/slow")(vlx.paywall(price="0.001")(work))
    return app


SLOW_APPS: dict[str, tuple[str, Callable[[VlexivoServer, Runs, bool], Any]]] = {
    "asgi_middleware": ("uvicorn", lambda v, r, f: asgi_done(_fastapi_slow(v, r, f, False), r)),
    "fastapi_dependency": ("uvicorn", lambda v, r, f: asgi_done(_fastapi_slow(v, r, f, True), r)),
    "flask_decorator": ("waitress", lambda v, r, f: wsgi_done(_flask_slow(v, r, f, False), r)),
    "wsgi_middleware": ("waitress", lambda v, r, f: wsgi_done(_flask_slow(v, r, f, True), r)),
}


@pytest.mark.parametrize("adapter", list(SLOW_APPS))
def test_client_gone_handler_completed_keeps_the_nonce(adapter: str, serve: Any) -> None:
    """A client that hangs up while the paid handler runs does not get its proof back: the
    handler completed (one payment, one run; issue 15 item 2)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    kind, build = SLOW_APPS[adapter]
    url = serve(kind, build(vlx, runs, False))
    t = token("GET", "/slow")
    send_and_hang_up(url, "GET", "/slow", proof(t), runs.started)
    runs.release.set()
    assert runs.done.wait(10)
    r = reuse(url, "GET", "/slow", t)
    assert (r.status_code, r.json()["error"]) == (409, "token_replayed")
    assert runs.n == 1


@pytest.mark.parametrize("adapter", list(SLOW_APPS))
def test_client_gone_handler_failed_releases_the_nonce(
    adapter: str, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The same hang-up, but the handler then fails: the work was not done, the proof is good."""
    caplog.set_level(logging.CRITICAL)
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    kind, build = SLOW_APPS[adapter]
    url = serve(kind, build(vlx, runs, True))
    t = token("GET", "/slow")
    send_and_hang_up(url, "GET", "/slow", proof(t), runs.started)
    runs.release.set()
    assert runs.done.wait(10)
    # Released: the proof verifies again (and the handler fails again: a 5xx, not a 409).
    assert reuse(url, "GET", "/slow", t).status_code == 500
    assert runs.n == 2


def test_asgi_stream_cut_by_the_client_keeps_the_nonce(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"GET /stream": vlx.price("0.001")})

    @app.get("/stream")
    async def stream() -> Any:
        runs.inc()

        async def chunks() -> Any:
            for i in range(50):
                yield f"chunk {i}\n".encode()
                runs.started.set()  # a chunk went out: the client hangs up mid-stream
                await asyncio.sleep(0.02)

        return StreamingResponse(chunks())

    url = serve("uvicorn", asgi_done(app, runs))
    t = token("GET", "/stream")
    send_and_hang_up(url, "GET", "/stream", proof(t), runs.started)
    assert runs.done.wait(10)
    assert reuse(url, "GET", "/stream", t).status_code == 409
    assert runs.n == 1


def test_flask_stream_failing_midway_releases_the_nonce(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()
    app = flask.Flask("stream")
    state = {"fail": True}

    @app.get("/stream")
    @vlx.paywall(price="0.001")
    def stream() -> Any:
        runs.inc()

        def chunks() -> Iterator[bytes]:
            yield b"part one\n"
            if state["fail"]:
                raise RuntimeError("backend went away mid-stream")
            yield b"part two\n"

        return flask.Response(chunks())

    url = serve("waitress", wsgi_done(app, runs))
    t = token("GET", "/stream")
    with pytest.raises(httpx.HTTPError):
        reuse(url, "GET", "/stream", t).read()
    assert runs.done.wait(5)
    state["fail"] = False
    r = reuse(url, "GET", "/stream", t)
    assert r.status_code == 200 and r.text == "part one\npart two\n"
    assert reuse(url, "GET", "/stream", t).status_code == 409


# --- item 4 and 10: HEAD costs what GET costs, and its answer has no body ------------------


def test_asgi_head_on_a_get_route_is_paid(serve: Any) -> None:
    """Starlette serves HEAD on a GET route: a table keyed "GET /x" prices it (issue 15 item 4)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()

    async def doc(request: Any) -> PlainTextResponse:
        runs.inc()
        return PlainTextResponse("paid document")

    async def free(request: Any) -> PlainTextResponse:
        return PlainTextResponse("free")

    app = Starlette(routes=[Route("/doc", doc), Route("/free", free)])
    app.add_middleware(vlx.asgi_paywall, routes={"GET /doc": vlx.price("0.001")})
    url = serve("uvicorn", app)
    s1, b1, s2, b2 = head_then_get(url, "/doc", "/free")
    assert (s1, b1, s2, b2) == (402, b"", 200, b"free")
    assert runs.n == 0
    r = httpx.head(url + "/doc")
    assert r.status_code == 402 and "vlexivo-challenge" in r.headers
    t = token("HEAD", "/doc")
    s1, b1, s2, b2 = head_then_get(url, "/doc", "/free", proof(t))
    assert (s1, s2, b2) == (200, 200, b"free") and runs.n == 1


def test_wsgi_head_on_a_get_route_is_paid_and_answered_without_a_body(serve: Any) -> None:
    """Generic wsgi_paywall under waitress: HEAD was let through unpaid, and its 402 carried a
    body that the next response on the keep-alive connection was read from (issue 15 item 10)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/doc":
            runs.inc()
        body = b"paid document" if environ["PATH_INFO"] == "/doc" else b"free"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    url = serve("waitress", vlx.wsgi_paywall(app, routes={"GET /doc": vlx.price("0.001")}))
    s1, b1, s2, b2 = head_then_get(url, "/doc", "/free")
    assert (s1, b1, s2, b2) == (402, b"", 200, b"free")
    assert runs.n == 0
    t = token("HEAD", "/doc")
    s1, b1, s2, b2 = head_then_get(url, "/doc", "/free", proof(t))
    assert (s1, s2, b2) == (200, 200, b"free") and runs.n == 1


def test_flask_head_on_a_get_view_is_paid(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = flask.Flask("head")

    @app.get("/doc")
    @vlx.paywall(price="0.001")
    def doc() -> str:
        return "paid document"

    @app.get("/free")
    def free() -> str:
        return "free"

    url = serve("waitress", app)
    s1, b1, s2, b2 = head_then_get(url, "/doc", "/free")
    assert (s1, b1, s2, b2) == (402, b"", 200, b"free")


# --- free methods: CORS preflights only ---------------------------------------------------


def test_only_cors_preflights_are_free(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}

    async def any_method(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"{request.method} content")

    star = Starlette(routes=[Route("/proxy", any_method, methods=["GET", "POST", "OPTIONS"])])
    star.add_middleware(vlx.asgi_paywall, routes={"/proxy": vlx.price("0.001")})

    fapp = flask.Flask("cors")

    @fapp.route("/proxy", methods=["GET", "POST", "OPTIONS"])
    @vlx.paywall(price="0.001")
    def proxy() -> str:
        return f"{flask.request.method} content"

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REQUEST_METHOD']} content".encode()]

    dep = FastAPI()

    @dep.api_route("/proxy", methods=["GET", "POST", "OPTIONS"])
    async def dep_proxy(
        request: Request, payment: Any = Depends(vlx.paywall(price="0.001"))
    ) -> PlainTextResponse:
        return PlainTextResponse(f"{request.method} content")

    routed = flask.Flask("cors-routed")
    routed.route("/proxy", methods=["GET", "POST", "OPTIONS"])(lambda: f"{flask.request.method} content")
    routed.wsgi_app = vlx.wsgi_paywall(routed.wsgi_app, routes={"/proxy": vlx.price("0.001")})  # type: ignore[method-assign]

    apps = [
        ("uvicorn", star),
        ("uvicorn", dep),
        ("waitress", fapp),
        ("waitress", routed),
        ("waitress", vlx.wsgi_paywall(wsgi_app, routes={"/proxy": vlx.price("0.001")})),
    ]
    for kind, app in apps:
        url = serve(kind, app)
        r = httpx.options(url + "/proxy", headers=preflight)
        assert (kind, r.status_code, r.text) == (kind, 200, "OPTIONS content")
        # An OPTIONS that is not a preflight is a request like any other.
        r = httpx.options(url + "/proxy", headers={"Origin": "https://app.example"})
        assert (kind, r.status_code, r.json()["error"]) == (kind, 402, "payment_required")
        assert httpx.post(url + "/proxy").status_code == 402


# --- item 11: stacked paywalls, one price asked once ---------------------------------------


def _two_step(url: str, path: str, method: str = "GET") -> list[tuple[int, str]]:
    """An honest payer: ask, pay what the 402 says, retry; returns what each step saw."""
    seen: list[tuple[int, str]] = []
    r = httpx.request(method, url + path)
    for _ in range(3):
        if r.status_code != 402:
            seen.append((r.status_code, r.text))
            return seen
        price = r.json()["price"]
        seen.append((402, price))
        r = httpx.request(method, url + path, headers=proof(token(method, path, price)))
    seen.append((r.status_code, r.text))
    return seen


def test_flask_stacked_decorators_ask_one_price_once(serve: Any) -> None:
    """Two stacked decorators asked 0.001, then 0.05, then answered 409: the payer was charged
    0.051 and never served (issue 15 item 11)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = flask.Flask("stacked")

    @app.get("/premium")
    @vlx.paywall(price="0.001")
    @vlx.paywall(price="0.05")
    def premium() -> Any:
        return {"paid": flask.g.vlx_payment.amount}

    url = serve("waitress", app)
    assert _two_step(url, "/premium") == [(402, "0.05"), (200, '{"paid":"0.05"}\n')]
    # A proof that satisfies only the outer paywall does not buy the view.
    r = httpx.get(url + "/premium", headers=proof(token("GET", "/premium", "0.001")))
    assert (r.status_code, r.json()["error"], r.json()["price"]) == (402, "token_underpaid", "0.05")


def test_fastapi_dependencies_on_one_route_ask_one_price_once(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    router = APIRouter(dependencies=[Depends(vlx.paywall(price="0.001"))])

    @router.get("/premium")
    async def premium(request: Request, payment: Any = Depends(vlx.paywall(price="0.05"))) -> dict[str, str]:
        return {"paid": payment.amount}

    app = FastAPI()
    app.include_router(router, prefix="/zone")
    url = serve("uvicorn", app)
    assert _two_step(url, "/zone/premium") == [(402, "0.05"), (200, '{"paid":"0.05"}')]


def test_middleware_and_dependency_on_one_route_ask_one_price_once(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"/zone/*": vlx.price("0.001")})

    @app.get("/zone/premium")
    async def premium(payment: Any = Depends(vlx.paywall(price="0.05"))) -> dict[str, str]:
        return {"paid": payment.amount}

    @app.get("/zone/basic")
    async def basic(request: Request) -> dict[str, str]:
        return {"paid": request.state.vlx_payment.amount}

    # A router's own dependencies, included under the prefix the middleware prices.
    gold = APIRouter(dependencies=[Depends(vlx.paywall(price="0.02"))])

    @gold.get("/report")
    async def report(request: Request) -> dict[str, str]:
        return {"paid": request.state.vlx_payment.amount}

    app.include_router(gold, prefix="/zone/gold")
    url = serve("uvicorn", app)
    assert _two_step(url, "/zone/premium") == [(402, "0.05"), (200, '{"paid":"0.05"}')]
    assert _two_step(url, "/zone/basic") == [(402, "0.001"), (200, '{"paid":"0.001"}')]
    assert _two_step(url, "/zone/gold/report") == [(402, "0.02"), (200, '{"paid":"0.02"}')]


def test_wsgi_middleware_and_flask_decorator_ask_one_price_once(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = flask.Flask("zone")

    @app.get("/zone/premium")
    @vlx.paywall(price="0.05")
    def premium() -> Any:
        return {"paid": flask.g.vlx_payment.amount, "env": flask.request.environ["vlexivo.payment"].amount}

    app.wsgi_app = vlx.wsgi_paywall(app.wsgi_app, routes={"/zone/*": vlx.price("0.001")})  # type: ignore[method-assign]
    url = serve("waitress", app)
    assert _two_step(url, "/zone/premium") == [(402, "0.05"), (200, '{"env":"0.05","paid":"0.05"}\n')]


# --- routes matched through the framework's router ------------------------------------------


def test_asgi_table_names_routes_of_the_router(serve: Any) -> None:
    """Path parameters, include prefixes, mounts, trailing slashes and case follow the router:
    the paywall prices exactly the route whose handler runs."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    sub = FastAPI()

    @sub.get("/report")
    async def sub_report() -> str:
        return "sub report"

    items = APIRouter()

    @items.get("/items/{item_id:int}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    app = FastAPI()
    app.include_router(items, prefix="/api")
    app.mount("/sub", sub)

    @app.get("/slash/")
    async def slash() -> str:
        return "slash"

    @app.get("/free")
    async def free() -> str:
        return "free"

    app.add_middleware(
        vlx.asgi_paywall,
        routes={
            "GET /api/items/{item_id}": vlx.price("0.002"),
            "GET /sub/report": vlx.price("0.003"),
            "GET /slash/": vlx.price("0.004"),
        },
    )
    url = serve("uvicorn", app)
    with httpx.Client(base_url=url) as http:
        cases = {"/api/items/7": "0.002", "/sub/report": "0.003", "/slash/": "0.004"}
        for path, price in cases.items():
            r = http.get(path)
            assert (path, r.status_code, r.json()["price"]) == (path, 402, price)
            r = http.get(path, headers=proof(token("GET", path, price)))
            assert (path, r.status_code) == (path, 200)
        assert http.get("/free").text == '"free"'
        # No route runs for these: the router answers them, nothing is charged.
        assert http.get("/api/items/seven").status_code == 404
        assert http.get("/API/items/7").status_code == 404
        r = http.get("/slash")
        assert r.status_code == 307 and r.headers["location"].endswith("/slash/")
        assert http.post("/api/items/7").status_code == 405


def test_asgi_table_key_naming_no_route_fails_closed(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = FastAPI()

    @app.get("/reports/")
    async def reports() -> str:
        return "paid reports"

    # "/reports" (no slash) is not the declared route: a typo that would leave it unpaid.
    app.add_middleware(vlx.asgi_paywall, routes={"GET /reports": vlx.price("0.001")})
    url = serve("uvicorn", app)
    caplog.set_level(logging.ERROR, logger="vlexivo")
    r = httpx.get(url + "/reports/")
    assert (r.status_code, r.json()["error"]) == (500, "config_invalid")
    assert any("GET /reports" in m and "/reports/" in m for m in caplog.messages)


def test_asgi_route_mismatch_never_serves_paid_content_unpaid(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """If the router runs another route than the one the paywall priced (here a route class
    that hands its requests to the paid route), the paid content is not delivered."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    runs = Runs()

    async def paid(request: Any) -> PlainTextResponse:
        runs.inc()
        return PlainTextResponse("paid content")

    target = Route("/paid", paid)

    class Alias(Route):
        async def handle(self, scope: Any, receive: Any, send: Any) -> None:
            scope["route"] = target
            await target.handle(scope, receive, send)

    app = Starlette(routes=[target, Alias("/alias", paid)])
    app.add_middleware(vlx.asgi_paywall, routes={"GET /paid": vlx.price("0.001")})
    url = serve("uvicorn", app)
    caplog.set_level(logging.ERROR, logger="vlexivo")
    assert httpx.get(url + "/paid").status_code == 402
    r = httpx.get(url + "/alias")
    assert (r.status_code, r.json()["error"]) == (500, "internal") and "paid content" not in r.text
    assert any("not" in m and "/paid" in m for m in caplog.messages)


def test_wsgi_table_names_flask_rules(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = flask.Flask("rules")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return {"item": item_id, "paid": flask.request.environ["vlexivo.payment"].amount}

    @app.get("/docs/")
    def docs() -> str:
        return "docs"

    app.wsgi_app = vlx.wsgi_paywall(  # type: ignore[method-assign]
        app.wsgi_app, routes={"GET /items/<item_id>": vlx.price("0.002"), "GET /docs/": vlx.price("0.003")}
    )
    url = serve("waitress", app)
    with httpx.Client(base_url=url) as http:
        assert _two_step(url, "/items/7") == [(402, "0.002"), (200, '{"item":7,"paid":"0.002"}\n')]
        assert _two_step(url, "/docs/") == [(402, "0.003"), (200, "docs")]
        assert http.get("/items/seven").status_code == 404
        assert http.get("/docs").status_code == 308  # Flask's redirect: no view ran, no charge
        assert http.post("/items/7").status_code == 405
        # HEAD is priced as GET through the rule too.
        assert http.head("/items/7").status_code == 402

    bad = flask.Flask("bad")
    bad.get("/docs/")(lambda: "docs")
    bad.wsgi_app = vlx.wsgi_paywall(bad.wsgi_app, routes={"GET /docs": vlx.price("0.001")})  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="vlexivo")
    r = httpx.get(serve("waitress", bad) + "/docs/")
    assert (r.status_code, r.json()["error"]) == (500, "config_invalid")


def test_wsgi_path_holding_a_url_binds_the_whole_path(serve: Any) -> None:
    """`/api/v1/scrape/https://example.com/api/v1/fixed` was bound as `/api/v1/fixed`: an honest
    payer could not buy it and a proof for `/api/v1/fixed` was accepted (issue 15 item 10)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    url = serve("waitress", vlx.wsgi_paywall(app, routes={"GET /api/v1/scrape/*": vlx.price("0.001")}))
    path = "/api/v1/scrape/https://example.com/api/v1/fixed"
    r = httpx.get(url + path)
    assert r.status_code == 402 and r.json()["resource"] == f"GET {ORIGIN}{path}"
    r = httpx.get(url + path, headers=proof(token("GET", "/api/v1/fixed")))
    assert (r.status_code, r.json()["error"]) == (402, "token_resource")
    assert _two_step(url, path) == [(402, "0.001"), (200, path)]


def test_nested_asgi_paywalls_ask_one_price_once(serve: Any) -> None:
    """A paywall middleware on the app and another on a mounted sub-app (and a second one in the
    app's own stack): every paywall on the path is satisfied by one proof, asked for once."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    sub = FastAPI()

    @sub.get("/premium")
    async def premium(request: Request) -> dict[str, str]:
        return {"paid": request.state.vlx_payment.amount}

    @sub.get("/basic")
    async def basic(request: Request) -> dict[str, str]:
        return {"paid": request.state.vlx_payment.amount}

    sub.add_middleware(vlx.asgi_paywall, routes={"GET /premium": vlx.price("0.05")})
    app = FastAPI()
    app.mount("/zone", sub)

    @app.get("/report")
    async def report(request: Request) -> dict[str, str]:
        return {"paid": request.state.vlx_payment.amount}

    app.add_middleware(vlx.asgi_paywall, routes={"GET /report": vlx.price("0.02")})
    app.add_middleware(
        vlx.asgi_paywall, routes={"/zone/*": vlx.price("0.001"), "GET /report": vlx.price("0.003")}
    )
    url = serve("uvicorn", app)
    assert _two_step(url, "/zone/premium") == [(402, "0.05"), (200, '{"paid":"0.05"}')]
    assert _two_step(url, "/zone/basic") == [(402, "0.001"), (200, '{"paid":"0.001"}')]
    assert _two_step(url, "/report") == [(402, "0.02"), (200, '{"paid":"0.02"}')]


def test_nested_wsgi_paywalls_ask_one_price_once(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = flask.Flask("nested")

    @app.get("/zone/premium")
    def premium() -> Any:
        return {"paid": flask.request.environ["vlexivo.payment"].amount}

    @app.get("/zone/basic")
    def basic() -> Any:
        return {"paid": flask.request.environ["vlexivo.payment"].amount}

    inner = vlx.wsgi_paywall(app.wsgi_app, routes={"GET /zone/premium": vlx.price("0.05")})
    app.wsgi_app = vlx.wsgi_paywall(inner, routes={"/zone/*": vlx.price("0.001")})  # type: ignore[method-assign]
    url = serve("waitress", app)
    assert _two_step(url, "/zone/premium") == [(402, "0.05"), (200, '{"paid":"0.05"}\n')]
    assert _two_step(url, "/zone/basic") == [(402, "0.001"), (200, '{"paid":"0.001"}\n')]


def test_receipt_only_on_a_response_that_keeps_the_payment(serve: Any) -> None:
    """Core's rule: a paid 2xx/3xx/4xx carries Vlexivo-Receipt (the payment is kept); a 5xx does
    not (its nonce is released and the same proof stays good)."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)

    mw = FastAPI()
    mw.add_middleware(vlx.asgi_paywall, routes={"GET /r": vlx.price("0.001")})

    @mw.get("/r")
    async def mw_r(status: int) -> Any:
        return PlainTextResponse("r", status_code=status)

    dep = FastAPI()
    dep.add_middleware(vlx.asgi_paywall)  # observes the dependency's payments

    @dep.get("/r")
    async def dep_r(status: int, payment: Any = Depends(vlx.paywall(price="0.001"))) -> Any:
        return PlainTextResponse("r", status_code=status)

    fl = flask.Flask("receipts")

    @fl.get("/r")
    @vlx.paywall(price="0.001")
    def fl_r() -> Any:
        return "r", int(flask.request.args["status"])

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        status = int(environ["QUERY_STRING"].split("=")[1])
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b"r"]

    apps = [
        ("uvicorn", mw),
        ("uvicorn", dep),
        ("waitress", fl),
        ("waitress", vlx.wsgi_paywall(wsgi_app, routes={"GET /r": vlx.price("0.001")})),
    ]
    for kind, app in apps:
        url = serve(kind, app)
        for status, receipt in ((200, True), (302, True), (404, True), (503, False)):
            r = httpx.get(url + f"/r?status={status}", headers=proof(token("GET", "/r")))
            assert (kind, r.status_code, "vlexivo-receipt" in r.headers) == (kind, status, receipt)


def test_http_errors_raised_by_the_handler_settle_by_their_status(serve: Any) -> None:
    """An HTTP error the handler raises is a complete answer: a 4xx keeps the payment (a second
    use is a replay), a 5xx releases it (the proof buys the retry)."""
    from fastapi import HTTPException as FastAPIHTTPException

    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    dep = FastAPI()

    @dep.get("/e")
    async def dep_e(status: int, payment: Any = Depends(vlx.paywall(price="0.001"))) -> Any:
        if status == 200:
            return "ok"
        raise FastAPIHTTPException(status_code=status, detail="no")

    fl = flask.Flask("aborts")

    @fl.get("/e")
    @vlx.paywall(price="0.001")
    def fl_e() -> Any:
        status = int(flask.request.args["status"])
        if status != 200:
            flask.abort(status)
        return "ok"

    for kind, app in (("uvicorn", dep), ("waitress", fl)):
        url = serve(kind, app)
        kept, released = token("GET", "/e"), token("GET", "/e")
        assert httpx.get(url + "/e?status=404", headers=proof(kept)).status_code == 404
        r = httpx.get(url + "/e?status=200", headers=proof(kept))
        assert (kind, r.status_code, r.json()["error"]) == (kind, 409, "token_replayed")
        assert httpx.get(url + "/e?status=503", headers=proof(released)).status_code == 503
        assert (kind, httpx.get(url + "/e?status=200", headers=proof(released)).status_code) == (kind, 200)


# --- CORS: core decides which answers expose our headers, merged with the app's own ------------


def _own_expose_apps(vlx: VlexivoServer) -> dict[str, tuple[str, Any]]:
    """``GET /own`` paid at 0.001, its handler exposing ``X-Request-Id`` itself, per adapter."""
    own = {"Access-Control-Expose-Headers": "X-Request-Id"}

    decorated = flask.Flask("own_decorated")

    @decorated.get("/own")
    @vlx.paywall(price="0.001")
    def flask_own() -> Any:
        return flask.Response("paid", headers=own)

    wrapped = flask.Flask("own_wrapped")

    @wrapped.get("/own")
    def wsgi_own() -> Any:
        return flask.Response("paid", headers=own)

    wrapped.wsgi_app = vlx.wsgi_paywall(wrapped.wsgi_app, routes={"GET /own": vlx.price("0.001")})  # type: ignore[method-assign]

    fast = FastAPI()
    fast.add_middleware(vlx.asgi_paywall, routes={"GET /own": vlx.price("0.001")})

    @fast.get("/own")
    async def asgi_own() -> Any:
        return PlainTextResponse("paid", headers=own)

    return {
        "flask_decorator": ("waitress", decorated),
        "wsgi_middleware": ("waitress", wrapped),
        "asgi_middleware": ("uvicorn", fast),
    }


@pytest.mark.parametrize("adapter", ["flask_decorator", "wsgi_middleware", "asgi_middleware"])
def test_a_cross_origin_receipt_joins_the_apps_own_exposed_headers(adapter: str, serve: Any) -> None:
    """A paid answer to a request carrying ``Origin`` lists our headers after the application's
    own; without ``Origin`` the application's header is left as it made it."""
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    kind, app = _own_expose_apps(vlx)[adapter]
    url = serve(kind, app)
    cors = {"Origin": "https://app.example"}
    r = httpx.get(url + "/own", headers={**cors, **proof(token("GET", "/own"))}, timeout=10)
    assert r.status_code == 200 and r.headers["vlexivo-receipt"].startswith("tx=")
    assert r.headers["access-control-expose-headers"] == f"X-Request-Id, {_native.EXPOSE_HEADERS}"
    r = httpx.get(url + "/own", headers=proof(token("GET", "/own")), timeout=10)
    assert r.status_code == 200 and r.headers["vlexivo-receipt"].startswith("tx=")
    assert r.headers["access-control-expose-headers"] == "X-Request-Id"
    # Refused: only a cross-origin caller gets our headers exposed.
    r = httpx.get(url + "/own", headers=cors, timeout=10)
    assert (r.status_code, r.headers.get("access-control-expose-headers")) == (402, _native.EXPOSE_HEADERS)
    r = httpx.get(url + "/own", timeout=10)
    assert (r.status_code, r.headers.get("access-control-expose-headers")) == (402, None)
