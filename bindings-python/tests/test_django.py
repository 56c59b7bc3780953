"""Django: the paywall middleware and the view decorator, sync views under a real WSGI server
(waitress) and async views under a real ASGI server (uvicorn), through Django's own handlers.

Every shared paywall vector and every money input (as a resolver's price), the article's two
pricing examples paid by the client through a real facilitator, and the bad inputs: an oversized
body, a resolver that raises, a route table naming no route, a view that fails."""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import django
import httpx
import pytest
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[f"{__name__}.CaseMiddleware"],
        INSTALLED_APPS=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import path
from vlexivo import PricingRequest, VlexivoClient, VlexivoServer, Wallet

from .conftest import Facilitator
from .test_adapter_vectors import CASES, MONEY, PAYWALL, Clock, check_cases, check_money, make_server

# The default URLconf; each site below gives every request one of its own (request.urlconf).
urlpatterns: list[Any] = []


class URLConf:
    def __init__(self, patterns: list[Any]) -> None:
        self.urlpatterns = patterns


class Site:
    """What the next Django handler built serves: per ``x-case`` header, a URLconf and the
    paywall middleware class (or none) in front of it."""

    urlconfs: dict[str, URLConf] = {}  # noqa: RUF012
    middlewares: dict[str, Any] = {}  # noqa: RUF012


class CaseMiddleware:
    """The only middleware in ``settings.MIDDLEWARE``: the case's URLconf, then the case's own
    paywall middleware instance (built by Django's handler like any middleware)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.inner = {
            k: (mw(get_response) if mw is not None else get_response) for k, mw in Site.middlewares.items()
        }
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        case = request.headers.get("x-case", "")
        request.urlconf = Site.urlconfs[case]
        return self.inner[case](request)


def serve_site(serve: Any, kind: str, sites: dict[str, tuple[list[Any], Any]]) -> str:
    """``sites``: case -> (URL patterns, paywall middleware class or None); ``kind``: wsgi or asgi."""
    Site.urlconfs = {k: URLConf(p) for k, (p, _) in sites.items()}
    Site.middlewares = {k: mw for k, (_, mw) in sites.items()}
    if kind == "wsgi":
        return str(serve("waitress", WSGIHandler()))
    return str(serve("uvicorn", ASGIHandler()))


def _payment_view(request: Any) -> Any:
    status = int(request.headers.get("x-handler-status", "200"))
    return JsonResponse(request.vlx_payment.to_dict(camel=True), status=status)


def sync_view(request: Any, **kwargs: Any) -> Any:
    return _payment_view(request)


async def async_view(request: Any, **kwargs: Any) -> Any:
    return _payment_view(request)


VIEWS = {"wsgi": sync_view, "asgi": async_view}
ADAPTERS = [("middleware", "wsgi"), ("middleware", "asgi"), ("decorator", "wsgi"), ("decorator", "asgi")]


def django_path(p: str) -> str:
    return p.split("?")[0].lstrip("/")


def vector_site(vlx: VlexivoServer, case: dict[str, Any], adapter: str, kind: str) -> tuple[list[Any], Any]:
    view = VIEWS[kind]
    keys = {f"{r['method']} {r['path'].split('?')[0]}" for r in case["requests"]}
    if adapter == "middleware":
        price = vlx.price(case["price"], currency=case["currency"])
        patterns = [path(django_path(p), view) for p in {k.split(" ", 1)[1] for k in keys}]
        return patterns, vlx.django_middleware(routes={k: price for k in keys})
    paid = vlx.django_paywall(price=case["price"], currency=case["currency"])(view)
    return [path("<path:rest>", paid)], None


@pytest.mark.parametrize(("adapter", "kind"), ADAPTERS)
def test_paywall_vectors(adapter: str, kind: str, serve: Any) -> None:
    clock = Clock()
    sites = {str(i): vector_site(make_server(c, clock), c, adapter, kind) for i, c in enumerate(CASES)}
    url = serve_site(serve, kind, sites)
    failures = check_cases(url, clock)
    assert not failures, "\n".join(failures)


def money_resolver(req: PricingRequest) -> Any:
    return MONEY["cases"][int(req.headers["x-money"])]["input"]


@pytest.mark.parametrize(("adapter", "kind"), ADAPTERS)
def test_resolver_prices(adapter: str, kind: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A resolver returning each money input: a valid price is asked exactly, anything else is a
    500 price_invalid with a log line, never free."""
    vlx = VlexivoServer(api_secret=PAYWALL["api_secret"], facilitator_url=PAYWALL["facilitator_url"])
    view = VIEWS[kind]
    if adapter == "middleware":
        patterns = [path("usd", view), path("eur", view)]
        mw = vlx.django_middleware(
            routes={
                "POST /usd": vlx.price(resolver=money_resolver),
                "POST /eur": vlx.price(resolver=money_resolver, currency="eur"),
            }
        )
    else:
        patterns = [
            path("usd", vlx.django_paywall(price_resolver=money_resolver)(view)),
            path("eur", vlx.django_paywall(price_resolver=money_resolver, currency="eur")(view)),
        ]
        mw = None
    url = serve_site(serve, kind, {"": (patterns, mw)})
    check_money(url, caplog)


# --- the article's pricing, paid through a real facilitator ----------------------------------


def by_model(req: PricingRequest) -> str:
    """The article's priceResolver: by the model named in the JSON body."""
    model = str((req.json() or {}).get("model") or "")
    if "large" in model:
        return "0.01"
    if "embed" in model:
        return "0.0001"
    return "0.001"


def days_between(date_range: str) -> int:
    """``"2024-01-01..2024-03-31"`` -> days; a single year (``"2021"``) -> 365."""
    start, _, end = date_range.partition("..")
    if not end:
        return 365
    d = datetime.date.fromisoformat(end) - datetime.date.fromisoformat(start)
    return max(1, d.days)


async def by_data(req: PricingRequest) -> str:
    """The article's async data pricing, from the query string."""
    q = req.query
    date_range = q.get("dateRange", "")
    day_count = days_between(date_range)
    is_real_time = q.get("granularity") == "tick"
    is_historical = datetime.date.today().year - int(date_range[:4] or 0) > 2
    price = 0.001
    price += day_count * 0.00001
    if is_real_time:
        price *= 10
    if is_historical:
        price *= 0.5
    return f"{price:.6f}"


def article_site(vlx: VlexivoServer, adapter: str, kind: str, runs: list[str]) -> tuple[list[Any], Any]:
    is_async = kind == "asgi"

    def answer(request: Any, what: str) -> Any:
        runs.append(what)
        p = request.vlx_payment
        return JsonResponse({"result": what, "paid": p.amount, "payer": p.payer})

    def inference(request: Any) -> Any:
        return answer(request, "ran " + json.loads(request.body)["model"])

    def data(request: Any) -> Any:
        return answer(request, "rows " + request.GET["granularity"])

    async def inference_async(request: Any) -> Any:
        return inference(request)

    async def data_async(request: Any) -> Any:
        return data(request)

    views = (inference_async, data_async) if is_async else (inference, data)
    if adapter == "middleware":
        routes = {
            "POST /api/v1/inference": vlx.price(resolver=by_model),
            "/api/v1/data": vlx.price(resolver=by_data),
        }
        return [path("api/v1/inference", views[0]), path("api/v1/data", views[1])], vlx.django_middleware(
            routes
        )
    return [
        path("api/v1/inference", vlx.django_paywall(price_resolver=by_model)(views[0])),
        path("api/v1/data", vlx.django_paywall(price_resolver=by_data)(views[1])),
    ], None


@pytest.fixture
def trusted(facilitator: Facilitator, monkeypatch: pytest.MonkeyPatch) -> Facilitator:
    monkeypatch.delenv("VLEXIVO_FACILITATOR_URL", raising=False)
    monkeypatch.setenv("VLX_FACILITATOR_URL", facilitator.url)
    return facilitator


@pytest.mark.parametrize(("adapter", "kind"), ADAPTERS)
def test_article_pricing_paid(adapter: str, kind: str, trusted: Facilitator, serve: Any) -> None:
    fac = trusted
    provider = fac.provider()
    vlx = VlexivoServer(api_secret=provider["api_secret"], facilitator_url=fac.url)
    runs: list[str] = []
    url = serve_site(serve, kind, {"": article_site(vlx, adapter, kind, runs)})
    wallet = Wallet.generate()
    fac.top_up(wallet.address, "1")
    year = datetime.date.today().year
    old = f"{year - 5}-01-01..{year - 5}-01-02"  # one day, historical: (0.001 + 0.00001) * 0.5
    recent = f"{year}-01-01..{year}-03-31"  # 89 days, tick: (0.001 + 0.00089) * 10
    with VlexivoClient(wallet_key=wallet.private_key_hex(), base_url=url, timeout=10) as client:
        r = client.post("/api/v1/inference", json={"model": "large-v2", "prompt": "hi"})
        assert r.status_code == 200, r.text
        assert r.json() == {"result": "ran large-v2", "paid": "0.01", "payer": wallet.address}
        assert r.headers["vlexivo-receipt"].startswith("tx=0x")
        assert client.post("/api/v1/inference", json={"model": "embed-3"}).json()["paid"] == "0.0001"
        r = client.get("/api/v1/data", params={"dateRange": old, "granularity": "day"})
        assert r.status_code == 200 and r.json()["paid"] == "0.000505"
        r = client.get("/api/v1/data", params={"dateRange": recent, "granularity": "tick"})
        assert r.status_code == 200 and r.json()["paid"] == "0.0189"
        assert client.payer.spent_total() == "0.029505"
    assert runs == ["ran large-v2", "ran embed-3", "rows day", "rows tick"]
    assert len(fac.payments(provider["api_secret"])) == 4
    # No proof: the 402 an agent reads, at the body's price.
    r = httpx.post(url + "/api/v1/inference", json={"model": "large"})
    assert r.status_code == 402 and r.json()["price"] == "0.01" and "vlexivo-challenge" in r.headers


# --- bad input and failures --------------------------------------------------------------------


def _boom(req: PricingRequest) -> str:
    raise RuntimeError("pricing backend down")


async def _boom_async(req: PricingRequest) -> str:
    raise RuntimeError("pricing backend down")


@pytest.mark.parametrize(("adapter", "kind"), ADAPTERS)
def test_bad_input(adapter: str, kind: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A resolver that raises is a 500 price_invalid (the view never runs); a body over the limit
    is a 413 before it is read; malformed and oversized proofs are refused as in the vectors."""
    vlx = VlexivoServer(
        api_secret=PAYWALL["api_secret"], facilitator_url=PAYWALL["facilitator_url"], max_body_bytes=1024
    )
    ran: list[str] = []

    def view(request: Any) -> Any:
        ran.append(request.path)
        return HttpResponse("ran")

    async def aview(request: Any) -> Any:
        return view(request)

    v = aview if kind == "asgi" else view
    boom = _boom_async if kind == "asgi" else _boom
    if adapter == "middleware":
        patterns = [path("boom", v), path("body", v), path("fixed", v)]
        mw = vlx.django_middleware(
            {"/boom": vlx.price(resolver=boom), "/body": vlx.price(resolver=by_model), "/fixed": "0.001"}
        )
    else:
        patterns = [
            path("boom", vlx.django_paywall(price_resolver=boom)(v)),
            path("body", vlx.django_paywall(price_resolver=by_model)(v)),
            path("fixed", vlx.django_paywall("0.001")(v)),
        ]
        mw = None
    url = serve_site(serve, kind, {"": (patterns, mw)})
    caplog.set_level(logging.ERROR, logger="vlexivo")
    with httpx.Client(base_url=url, timeout=10) as http:
        r = http.post("/boom", content=b"{}")
        assert (r.status_code, r.json()["error"]) == (500, "price_invalid")
        assert "vlexivo-challenge" not in r.headers
        assert any("raised" in m for m in caplog.messages)
        r = http.post("/body", content=b"x" * 2048)
        assert (r.status_code, r.json()["error"]) == (413, "request_too_large")
        r = http.post("/body", json={"model": "large"})
        assert (r.status_code, r.json()["price"]) == (402, "0.01")
        r = http.post("/fixed", headers={"Vlexivo-Proof": "not.a.token"})
        assert (r.status_code, r.json()["error"]) == (402, "token_malformed")
        r = http.post("/fixed", headers={"Vlexivo-Proof": "e" * 5000})
        assert (r.status_code, r.json()["error"]) == (431, "token_too_large")
        # A CORS preflight passes unpaid; a plain OPTIONS pays.
        r = http.options("/fixed", headers={"Access-Control-Request-Method": "POST", "Origin": "http://x"})
        assert r.status_code == 200 and r.text == "ran"
        assert http.options("/fixed").status_code == 402
        # HEAD costs what GET costs, and its answer has no body.
        r = http.head("/fixed")
        assert r.status_code == 402 and r.content == b"" and "vlexivo-challenge" in r.headers
    assert ran == ["/fixed"]


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_table_naming_no_route_fails_closed(
    kind: str, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    vlx = VlexivoServer(api_secret=PAYWALL["api_secret"], facilitator_url=PAYWALL["facilitator_url"])
    patterns = [path("api/v1/inference", VIEWS[kind])]
    mw = vlx.django_middleware({"POST /api/v1/inferense": "0.001"})
    url = serve_site(serve, kind, {"": (patterns, mw)})
    caplog.set_level(logging.ERROR, logger="vlexivo")
    r = httpx.post(url + "/api/v1/inference")
    assert (r.status_code, r.json()["error"]) == (500, "config_invalid")
    assert any("inferense" in m for m in caplog.messages)


# --- the nonce follows the view's outcome, paid through a real facilitator ---------------------


@pytest.mark.parametrize(("adapter", "kind"), ADAPTERS)
def test_failed_view_releases_the_nonce(adapter: str, kind: str, trusted: Facilitator, serve: Any) -> None:
    """A view that raises (Django answers 500) releases the nonce: the
    same proof buys the retry, once. One that raises Http404 keeps it (a 4xx, answered in full).
    Stacked decorators and a middleware key on one route ask one price, the highest."""
    fac = trusted
    provider = fac.provider()
    vlx = VlexivoServer(api_secret=provider["api_secret"], facilitator_url=fac.url)
    fail = threading.Event()
    runs: list[str] = []

    def flaky(request: Any) -> Any:
        runs.append("flaky")
        if fail.is_set():
            raise RuntimeError("view crashed")
        return JsonResponse({"ok": True})

    def missing(request: Any) -> Any:
        runs.append("missing")
        raise Http404("no such thing")

    async def flaky_async(request: Any) -> Any:
        return flaky(request)

    async def missing_async(request: Any) -> Any:
        return missing(request)

    f, m = (flaky_async, missing_async) if kind == "asgi" else (flaky, missing)
    if adapter == "middleware":
        stacked = vlx.django_paywall("0.002")(f)
        patterns = [path("flaky", stacked), path("missing", m)]
        mw = vlx.django_middleware({"/flaky": "0.001", "/missing": "0.001"})
    else:
        stacked = vlx.django_paywall("0.001")(vlx.django_paywall("0.002")(f))
        patterns = [path("flaky", stacked), path("missing", vlx.django_paywall("0.001")(m))]
        mw = None
    url = serve_site(serve, kind, {"": (patterns, mw)})
    wallet = Wallet.generate()
    fac.top_up(wallet.address, "1")
    events: list[Any] = []
    with VlexivoClient(
        wallet_key=wallet.private_key_hex(), base_url=url, timeout=10, on_payment=events.append
    ) as client:
        fail.set()
        r = client.post("/flaky")
        assert r.status_code == 500 and len(events) == 1 and events[0].amount == "0.002"
        fail.clear()
        r = client.get("/missing")
        assert r.status_code == 404 and len(events) == 2
    with httpx.Client(base_url=url, timeout=10) as http:
        proof = {"Vlexivo-Proof": events[0].receipt.token}
        r = http.post("/flaky", headers=proof)
        assert r.status_code == 200 and r.json() == {"ok": True} and r.headers["vlexivo-receipt"]
        assert (http.post("/flaky", headers=proof).json()["error"]) == "token_replayed"
        kept = {"Vlexivo-Proof": events[1].receipt.token}
        assert http.get("/missing", headers=kept).json()["error"] == "token_replayed"
    assert runs == ["flaky", "missing", "flaky"]
    assert fac.balance(wallet.address) == "0.997"


# --- pricing by payer: the payer hint ----------------------------------------------------------

LOYAL = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def loyal_half_price(req: PricingRequest) -> str:
    return "0.0005" if req.payer is not None and req.payer.address == LOYAL else "0.001"


@pytest.mark.parametrize(("adapter", "kind"), ADAPTERS)
def test_a_hinted_payer_is_priced_and_named_in_the_challenge(adapter: str, kind: str, serve: Any) -> None:
    """The resolver sees the hinted payer; the challenge for its price names that payer (only
    that wallet may pay it); no hint or a malformed one is the full price, anyone's."""
    import base64
    import json

    import httpx

    vlx = VlexivoServer(api_secret=PAYWALL["api_secret"], facilitator_url=PAYWALL["facilitator_url"])
    view = VIEWS[kind]
    if adapter == "middleware":
        patterns = [path("data", view)]
        mw = vlx.django_middleware(routes={"GET /data": vlx.price(resolver=loyal_half_price)})
    else:
        patterns = [path("data", vlx.django_paywall(price_resolver=loyal_half_price)(view))]
        mw = None
    url = serve_site(serve, kind, {"": (patterns, mw)})

    def challenge(headers: dict[str, str]) -> dict[str, Any]:
        r = httpx.get(f"{url}/data", headers=headers)
        assert r.status_code == 402, r.text
        enc = r.headers["vlexivo-challenge"]
        return dict(json.loads(base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4))))

    c = challenge({"Vlexivo-Payer": LOYAL.lower()})
    assert (c["amount"], c["payer"]) == ("0.0005", LOYAL)
    for headers in ({}, {"Vlexivo-Payer": "0xnope"}):
        c = challenge(headers)
        assert (c["amount"], c.get("payer")) == ("0.001", None)
