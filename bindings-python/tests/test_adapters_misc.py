"""Adapter details over real HTTP, with tokens minted by the tests' spec-based issuer (no
facilitator needed): the FastAPI dependency together with the middleware, the guard wrapping a
whole WSGI app, body limits, body binding and what a resolver sees."""

from __future__ import annotations

import json
from typing import Any

import flask
import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from vlexivo import PricingRequest, VlexivoServer, _native

from .tokens import mint_token

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
# The test servers listen on random ports: the origin is configured, and tokens bound to it.
ORIGIN = "http://api.test"


def token(nonce: str, method: str, path: str, amount: str = "0.001", body: bytes | None = None) -> str:
    return mint_token(SECRET, nonce.ljust(24, "x"), method, path, amount, _native.now(), body=body)


def test_dependency_with_middleware_releases_on_returned_5xx(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    app = FastAPI()
    # No routes: the middleware only sees the real responses of dependency-paid requests.
    app.add_middleware(vlx.asgi_paywall)
    state = {"fail": True}

    @app.get("/dep")
    async def dep(payment: Any = Depends(vlx.paywall(price="0.001"))) -> Any:
        if state["fail"]:
            return JSONResponse({"error": "down"}, status_code=503)
        return {"paid": payment.amount}

    url = serve("uvicorn", app)
    t = token("dep1", "GET", "/dep")
    with httpx.Client(base_url=url) as http:
        r = http.get("/dep", headers={"Vlexivo-Proof": t})
        # A failure keeps nothing: released, and no receipt.
        assert r.status_code == 503 and "vlexivo-receipt" not in r.headers
        state["fail"] = False
        r = http.get("/dep", headers={"Vlexivo-Proof": t})
        assert r.status_code == 200 and r.json() == {"paid": "0.001"}
        assert r.headers["vlexivo-receipt"].count("tx=") == 1
        r = http.get("/dep", headers={"Vlexivo-Proof": t})
        assert (r.status_code, r.json()["error"]) == (409, "token_replayed")
        # The 402 from a dependency is the protocol's JSON, not FastAPI's {"detail": …}.
        r = http.get("/dep")
        assert (
            r.status_code == 402 and r.json()["error"] == "payment_required" and r.json()["price"] == "0.001"
        )
        assert "vlexivo-challenge" in r.headers


def test_guard_wraps_a_wsgi_app_and_binds_bodies(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN, bind_body=True, max_body_bytes=1000)
    seen: list[bytes] = []

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    url = serve("werkzeug", vlx.paywall(price="0.002").wsgi(inner))
    with httpx.Client(base_url=url) as http:
        body = b'{"a":1}'
        r = http.post("/anything", content=body)
        assert r.status_code == 402
        # A token bound to another body does not buy this one.
        r = http.post(
            "/anything",
            content=body,
            headers={"Vlexivo-Proof": token("b1", "POST", "/anything", "0.002", b"x")},
        )
        assert (r.status_code, r.json()["error"]) == (402, "token_resource")
        r = http.post(
            "/anything",
            content=body,
            headers={"Vlexivo-Proof": token("b2", "POST", "/anything", "0.002", body)},
        )
        assert r.status_code == 200 and r.text == "ok"
        assert seen == [body]  # the app still reads the body the paywall read
        r = http.post("/anything", content=b"x" * 2000)
        assert (r.status_code, r.json()["error"]) == (413, "request_too_large")


def test_resolver_sees_the_request(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    seen: list[PricingRequest] = []

    async def resolver(req: PricingRequest) -> str:
        seen.append(req)
        return "0.001"

    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"/api/*": vlx.price(resolver=resolver)})

    @app.post("/api/x")
    async def x() -> dict[str, bool]:
        return {"ok": True}

    fapp = flask.Flask("seen")

    @fapp.post("/api/x")
    @vlx.paywall(price_resolver=resolver)
    def fx() -> Any:
        return {"ok": True}

    for kind, a in (("uvicorn", app), ("waitress", fapp)):
        url = serve(kind, a)
        r = httpx.post(url + "/api/x?days=3&days=4&g=tick", json={"model": "m"}, headers={"X-Tier": "gold"})
        assert r.status_code == 402
        req = seen[-1]
        assert (req.method, req.path, req.query) == ("POST", "/api/x", {"days": "3", "g": "tick"})
        assert req.headers["x-tier"] == "gold" and req.json() == {"model": "m"}
        assert json.loads(req.body or b"") == {"model": "m"}


def test_a_5xx_frees_the_nonce_before_its_body_is_sent(serve: Any) -> None:
    """A client may retry as soon as it sees a 5xx status: the nonce must already be free while
    the failing response is still streaming (it used to be released only once the body was
    closed, which raced a quick retry)."""
    import asyncio
    import threading

    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    gate_open = threading.Event()

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_X_FAIL"):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])

            def body() -> Any:
                yield b"partial "
                gate_open.wait(10)
                yield b"end"

            return body()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        fail = any(k == b"x-fail" for k, _ in scope["headers"])
        await send(
            {
                "type": "http.response.start",
                "status": 503 if fail else 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        if fail:
            await send({"type": "http.response.body", "body": b"partial ", "more_body": True})
            await asyncio.get_running_loop().run_in_executor(None, gate_open.wait, 10)
            await send({"type": "http.response.body", "body": b"end"})
        else:
            await send({"type": "http.response.body", "body": b"ok"})

    servers = [
        ("werkzeug", vlx.wsgi_paywall(wsgi_app, routes={"GET /slow": vlx.price("0.001")})),
        ("uvicorn", vlx.asgi_paywall(asgi_app, routes={"GET /slow": vlx.price("0.001")})),
    ]
    for i, (kind, app) in enumerate(servers):
        gate_open.clear()
        url = serve(kind, app)
        t = token(f"slow{i}", "GET", "/slow")
        with httpx.Client(base_url=url, timeout=10) as first, httpx.Client(base_url=url, timeout=10) as retry:
            with first.stream("GET", "/slow", headers={"Vlexivo-Proof": t, "X-Fail": "1"}) as failing:
                assert failing.status_code == 503, kind
                # The failing body has not finished; the same proof is already usable.
                r = retry.get("/slow", headers={"Vlexivo-Proof": t})
                assert (kind, r.status_code, r.text) == (kind, 200, "ok")
                gate_open.set()
                assert failing.read() == b"partial end"
            r = retry.get("/slow", headers={"Vlexivo-Proof": t})
            assert (kind, r.status_code, r.json()["error"]) == (kind, 409, "token_replayed")


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_the_html_paywall_page_and_clients_keep_json(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    fast = FastAPI()
    fast.add_middleware(vlx.asgi_paywall, routes={"GET /mw": vlx.price("0.25")})

    @fast.get("/mw")
    async def mw() -> Any:
        return {"ok": True}

    @fast.get("/dep")
    async def dep(payment: Any = Depends(vlx.paywall(price="0.25"))) -> Any:
        return {"ok": True}

    fl = flask.Flask("paywall_page")

    @fl.get("/view")
    @vlx.paywall(price="0.25")
    def view() -> Any:
        return {"ok": True}

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    urls = [
        (serve("uvicorn", fast), "/mw"),
        (serve("uvicorn", fast), "/dep"),
        (serve("werkzeug", fl), "/view"),
        (serve("werkzeug", vlx.paywall(price="0.25").wsgi(inner)), "/guarded"),
    ]
    for base, path in urls:
        with httpx.Client(base_url=base) as http:
            r = http.get(path, headers={"Accept": BROWSER})
            assert r.status_code == 402, (base, path)
            assert r.headers["content-type"] == "text/html; charset=utf-8", (path, r.headers)
            assert "vlexivo-challenge" in r.headers
            assert "unsafe-inline" not in r.headers["content-security-policy"]
            assert '<p class="price" id="price">0.25 <abbr title="usd">USD</abbr></p>' in r.text
            assert f"GET {ORIGIN}{path}" in r.text
            for accept in ("*/*", "application/json"):
                r = http.get(path, headers={"Accept": accept})
                assert r.status_code == 402 and r.headers["content-type"].startswith("application/json")
                assert r.json()["price"] == "0.25"
            # A proof that fails is answered in JSON even to a browser.
            r = http.get(path, headers={"Accept": BROWSER, "Vlexivo-Proof": "x.y.z"})
            assert r.status_code == 402 and r.headers["content-type"].startswith("application/json"), path
