"""Every shared paywall vector and every money input (as a resolver's price) through each
adapter, over real HTTP: FastAPI + ASGI middleware and FastAPI + dependency under uvicorn, Flask +
decorator under waitress, and the generic WSGI middleware under werkzeug's threaded server.

One server per adapter; each case gets its own app (own VlexivoServer, so its own nonce store)
behind a tiny dispatcher keyed by an ``x-case`` header."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import flask
import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from vlexivo import VlexivoServer, _native

from .conftest import vectors

PAYWALL = vectors("paywall")
MONEY = vectors("money")
CASES = PAYWALL["cases"]
ADAPTERS = ["asgi_middleware", "fastapi_dependency", "flask_decorator", "wsgi_middleware"]


class Clock:
    """The injected clock: each vector request runs at its own ``now``."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make_server(case: dict[str, Any], clock: Clock) -> VlexivoServer:
    return VlexivoServer(
        api_secret=PAYWALL["api_secret"],
        facilitator_url=PAYWALL["facilitator_url"],
        origin=PAYWALL["origin"],
        leeway=PAYWALL["leeway_secs"],
        jwks=PAYWALL["jwks"] if case["jwks"] else None,
        clock=clock,
    )


def route_keys(case: dict[str, Any]) -> set[str]:
    return {f"{r['method']} {r['path'].split('?')[0]}" for r in case["requests"]}


# --- app builders: (server, case) -> app --------------------------------------------------


def asgi_middleware_app(vlx: VlexivoServer, case: dict[str, Any]) -> Any:

    app = FastAPI()
    price = vlx.price(case["price"], currency=case["currency"])
    # The table names routes the app declares (keys are matched through its router).
    app.add_middleware(vlx.asgi_paywall, routes={k: price for k in route_keys(case)})

    async def handler(request: Request) -> Any:
        status = int(request.headers.get("x-handler-status", "200"))
        return JSONResponse(request.state.vlx_payment.to_dict(camel=True), status_code=status)

    for key in route_keys(case):
        method, path = key.split(" ", 1)
        app.add_api_route(path, handler, methods=[method])
    return app


def fastapi_dependency_app(vlx: VlexivoServer, case: dict[str, Any]) -> Any:

    app = FastAPI()
    guard = vlx.paywall(price=case["price"], currency=case["currency"])

    @app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def handler(request: Request, payment: Any = Depends(guard)) -> Any:
        status = int(request.headers.get("x-handler-status", "200"))
        if status >= 500:
            raise HTTPException(status_code=status, detail="handler failed")
        assert request.state.vlx_payment is payment
        return payment.to_dict(camel=True)

    return app


def flask_decorator_app(vlx: VlexivoServer, case: dict[str, Any]) -> Any:

    app = flask.Flask(f"case{id(case)}")

    @app.route("/<path:rest>", methods=["GET", "POST", "PUT", "DELETE"])
    @vlx.paywall(price=case["price"], currency=case["currency"])
    def view(rest: str) -> Any:
        status = int(flask.request.headers.get("x-handler-status", "200"))
        return flask.jsonify(flask.g.vlx_payment.to_dict(camel=True)), status

    return app


def wsgi_middleware_app(vlx: VlexivoServer, case: dict[str, Any]) -> Any:
    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        status = int(environ.get("HTTP_X_HANDLER_STATUS", "200"))
        body = json.dumps(environ["vlexivo.payment"].to_dict(camel=True)).encode()
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [body]

    price = vlx.price(case["price"], currency=case["currency"])
    return vlx.wsgi_paywall(inner, routes={k: price for k in route_keys(case)})


BUILDERS = {
    "asgi_middleware": asgi_middleware_app,
    "fastapi_dependency": fastapi_dependency_app,
    "flask_decorator": flask_decorator_app,
    "wsgi_middleware": wsgi_middleware_app,
}
SERVER_KIND = {
    "asgi_middleware": "uvicorn",
    "fastapi_dependency": "uvicorn",
    "flask_decorator": "waitress",
    "wsgi_middleware": "werkzeug",
}


def asgi_dispatcher(apps: dict[str, Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        case = dict(scope["headers"])[b"x-case"].decode()
        await apps[case](scope, receive, send)

    return app


def wsgi_dispatcher(apps: dict[str, Any]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return apps[environ["HTTP_X_CASE"]](environ, start_response)

    return app


def check_cases(url: str, clock: Clock) -> list[str]:
    """Every vector request against ``url`` (a dispatcher on ``x-case``): the failures. Every
    other request comes from a browser page on another origin (it carries ``Origin``): core's
    CORS rule has its refusals and receipts expose our headers, and no other's."""
    failures = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for i, case in enumerate(CASES):
            for n, req in enumerate(case["requests"]):
                clock.now = req["now"]
                headers = {"x-case": str(i)}
                cors = n % 2 == 1
                if cors:
                    headers["Origin"] = "https://app.example"
                if req["proof"] is not None:
                    headers["Vlexivo-Proof"] = req["proof"]
                if req.get("handler_status"):
                    headers["x-handler-status"] = str(req["handler_status"])
                r = http.request(req["method"], req["path"], headers=headers, content=b"")
                expect = req["expect"]
                got: dict[str, Any] = {"status": r.status_code}
                exposed = r.headers.get("access-control-expose-headers")
                if "error" in expect:
                    got["error"] = r.json().get("error")
                    got["challenge"] = "vlexivo-challenge" in r.headers
                    got["exposed"] = exposed
                    want = {k: expect[k] for k in ("status", "error", "challenge")}
                    want["exposed"] = _native.EXPOSE_HEADERS if cors else None
                elif r.status_code == 200:
                    got["payment"] = r.json()
                    assert r.headers["vlexivo-receipt"].startswith("tx=")
                    got["exposed"] = exposed
                    want = {**expect, "exposed": _native.EXPOSE_HEADERS if cors else None}
                else:
                    want = {"status": expect["status"]}
                if got != want:
                    failures.append(f"{case['name']} #{n}: got {got}, want {want}")
    return failures


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_paywall_vectors(adapter: str, serve: Any) -> None:
    clock = Clock()
    apps = {str(i): BUILDERS[adapter](make_server(c, clock), c) for i, c in enumerate(CASES)}
    kind = SERVER_KIND[adapter]
    url = serve(kind, asgi_dispatcher(apps) if kind == "uvicorn" else wsgi_dispatcher(apps))
    failures = check_cases(url, clock)
    assert not failures, "\n".join(failures)


def money_app(adapter: str, vlx: VlexivoServer) -> Any:
    """A route priced by a resolver that returns money.json's input for the case in the
    ``x-money`` header (``/eur`` prices in eur)."""

    def resolver(req: Any) -> Any:
        return MONEY["cases"][int(req.headers["x-money"])]["input"]

    usd = vlx.price(resolver=resolver)
    eur = vlx.price(resolver=resolver, currency="eur")
    if adapter == "asgi_middleware":
        app = FastAPI()
        app.add_middleware(vlx.asgi_paywall, routes={"POST /usd": usd, "POST /eur": eur})

        @app.post("/usd")
        async def ok_usd() -> dict[str, str]:
            return {"ok": "usd"}

        @app.post("/eur")
        async def ok_eur() -> dict[str, str]:
            return {"ok": "eur"}

        return app
    if adapter == "fastapi_dependency":
        app = FastAPI()

        @app.post("/usd")
        async def u(p: Any = Depends(vlx.paywall(price_resolver=resolver))) -> dict[str, str]:
            return {"ok": "usd"}

        @app.post("/eur")
        async def e(p: Any = Depends(vlx.paywall(price_resolver=resolver, currency="eur"))) -> dict[str, str]:
            return {"ok": "eur"}

        return app
    if adapter == "flask_decorator":
        app = flask.Flask("money")

        @app.post("/usd")
        @vlx.paywall(price_resolver=resolver)
        def fu() -> Any:
            return {"ok": "usd"}

        @app.post("/eur")
        @vlx.paywall(price_resolver=resolver, currency="eur")
        def fe() -> Any:
            return {"ok": "eur"}

        return app

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    return vlx.wsgi_paywall(inner, routes={"POST /usd": usd, "POST /eur": eur})


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_resolver_prices(adapter: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Each money input returned by a resolver: a valid positive price gives a 402 at exactly that
    price; anything else (malformed, NaN, negative, zero, over-precise, too large, unknown
    currency) is a 500 price_invalid with a log line, never a free or wrong charge."""
    vlx = VlexivoServer(api_secret=PAYWALL["api_secret"], facilitator_url=PAYWALL["facilitator_url"])
    url = serve(SERVER_KIND[adapter], money_app(adapter, vlx))
    check_money(url, caplog)


def check_money(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """``POST /usd`` and ``/eur`` at ``url``, priced by money.json's input named in ``x-money``."""
    caplog.set_level(logging.ERROR, logger="vlexivo")
    with httpx.Client(base_url=url, timeout=10) as http:
        for i, case in enumerate(MONEY["cases"]):
            caplog.clear()
            r = http.post(
                "/usd" if case["currency"].lower() == "usd" else "/eur",
                headers={"x-money": str(i)},
                content=b"{}",
            )
            expect = case["expect"]
            if "error" in expect or expect["atomic"] == "0":
                assert (r.status_code, r.json()["error"]) == (500, "price_invalid"), case["name"]
                assert "vlexivo-challenge" not in r.headers
                assert any("price_invalid" in m for m in caplog.messages), case["name"]
            else:
                assert r.status_code == 402, case["name"]
                assert r.json()["price"] == expect["amount"], case["name"]
