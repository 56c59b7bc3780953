"""The provider side: :class:`VlexivoServer`, its routes and prices, and the gate every adapter
(ASGI middleware, FastAPI dependency, Flask decorator, WSGI middleware) goes through.

Adapters only move bytes: pricing rules, token checks, nonces and the shape of every refusal
are the native core's."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import parse_qsl

from . import _native
from .errors import VlexivoError, from_native, make_error

if TYPE_CHECKING:
    from ._asgi import PaywallGuard, PaywallMiddleware
    from ._wsgi import WsgiPaywall

__all__ = ["VlexivoServer", "PaidRoute", "PricingRequest", "Payment", "PriceValue", "PriceResolver"]

logger = logging.getLogger("vlexivo")

Payment = _native.Payment
PriceValue = Union[str, Decimal, int, float, _native.Price]
PriceResolver = Callable[["PricingRequest"], Union[PriceValue, Awaitable[PriceValue]]]
# (status, headers, body) as the native module shapes it.
Answer = tuple[int, list[tuple[str, str]], str]

PROOF_HEADER = "vlexivo-proof"
RECEIPT_HEADER = "Vlexivo-Receipt"
EXPOSE_HEADERS = "Vlexivo-Challenge, Vlexivo-Receipt"
DEFAULT_MAX_BODY = 1 << 20


class PricingRequest:
    """What a price resolver sees, the same in every framework: ``method``, ``path``,
    ``query`` (first value per name), ``headers`` (lower-case names), ``body`` (bytes, when
    the route reads it), ``json()`` and ``raw`` (the framework's own request object, or the
    ASGI scope / WSGI environ)."""

    __slots__ = ("method", "path", "query_string", "body", "raw", "_header_pairs", "_headers", "_json")

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        header_pairs: Iterable[tuple[str, str]],
        body: bytes | None,
        raw: Any,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.body = body
        self.raw = raw
        self._header_pairs = header_pairs
        self._headers: dict[str, str] | None = None
        self._json: Any = _UNSET

    @property
    def query(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in parse_qsl(self.query_string, keep_blank_values=True):
            out.setdefault(k, v)
        return out

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k.lower(): v for k, v in self._header_pairs}
        return self._headers

    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is absent or not JSON."""
        if self._json is _UNSET:
            try:
                self._json = json.loads(self.body) if self.body else None
            except ValueError:
                self._json = None
        return self._json

    def __repr__(self) -> str:
        return f"PricingRequest({self.method} {self.path})"


_UNSET: Any = object()


@dataclass(frozen=True)
class PaidRoute:
    """A route's price: fixed (``price``) or computed per request (``resolver``, sync or async,
    returning ``str``, ``Decimal``, ``int`` or ``float``)."""

    price: _native.Price | None = None
    resolver: PriceResolver | None = None
    currency: str = "usd"
    scope: str = "per-call"


class _Reject(Exception):
    """Internal: answer with this instead of running the handler."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer


class Gate:
    """One paywalled route: price it, then verify and consume the proof."""

    __slots__ = ("server", "route", "native", "needs_body", "label", "currency", "scope")

    def __init__(self, server: VlexivoServer, route: PaidRoute, label: str) -> None:
        self.server = server
        self.route = route
        self.native = server._paywall
        self.needs_body = route.resolver is not None or server.bind_body
        self.label = label
        self.currency = route.currency
        self.scope = route.scope

    def _now(self) -> int | None:
        clock = self.server._clock
        return None if clock is None else int(clock())

    def _bad_price(self, method: str, path: str, value: Any, why: str, now: int | None) -> Answer:
        # A provider bug: never serve the request for free or at a wrong price.
        logger.error(
            "vlexivo: price for %s (%s %s) is invalid: %r (%s); answering 500 price_invalid",
            self.label,
            method,
            path,
            value,
            why,
        )
        return self.native.reject("price_invalid", method, path, None, self.currency, self.scope, now)

    def _to_price(self, value: Any, method: str, path: str, now: int | None) -> _native.Price:
        try:
            return _native.parse_price(value, self.currency)
        except _native.NativeError as e:
            raise _Reject(self._bad_price(method, path, value, getattr(e, "message", str(e)), now)) from None

    def price_sync(self, req: PricingRequest, now: int | None) -> _native.Price:
        route = self.route
        if route.price is not None:
            return route.price
        assert route.resolver is not None
        try:
            value = route.resolver(req)
            if inspect.isawaitable(value):
                value = _run_awaitable(value)
        except _Reject:
            raise
        except Exception as e:
            logger.exception("vlexivo: price resolver for %s raised", self.label)
            raise _Reject(self._bad_price(req.method, req.path, "<raised>", repr(e), now)) from None
        return self._to_price(value, req.method, req.path, now)

    async def price_async(self, req: PricingRequest, now: int | None) -> _native.Price:
        route = self.route
        if route.price is not None:
            return route.price
        assert route.resolver is not None
        try:
            value = route.resolver(req)
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:
            logger.exception("vlexivo: price resolver for %s raised", self.label)
            raise _Reject(self._bad_price(req.method, req.path, "<raised>", repr(e), now)) from None
        return self._to_price(value, req.method, req.path, now)

    def admit(
        self,
        proof: str | None,
        method: str,
        path: str,
        price: _native.Price,
        body: bytes | None,
        now: int | None,
    ) -> _native.Payment:
        """Verify and consume the proof, or raise :class:`_Reject` with the answer to send."""
        try:
            return self.native.verify(proof, method, path, price, self.currency, now, body)
        except _native.NativeError as e:
            if e.status >= 500:
                logger.error("vlexivo: %s %s: %s (%s)", method, path, e.code, e.message)
            raise _Reject(self.native.reject(e, method, path, price, self.currency, self.scope, now, body)) from None

    def too_large(self, method: str, path: str, now: int | None) -> Answer:
        return self.native.reject("request_too_large", method, path, None, self.currency, self.scope, now)

    def release(self, payment: _native.Payment) -> None:
        try:
            self.native.release(payment.store_key)
        except _native.NativeError as e:
            logger.error("vlexivo: could not release nonce %s: %s", payment.nonce, e.message)


def _run_awaitable(aw: Awaitable[Any]) -> Any:
    """An async resolver used from a sync framework (Flask/WSGI): run it to completion."""
    import asyncio

    async def run() -> Any:
        return await aw

    return asyncio.run(run())


def _route_key(key: str) -> tuple[str | None, str]:
    """``"POST /api/v1/x"`` → ("POST", "/api/v1/x"); ``"/x"`` → (None, "/x") for any method."""
    key = key.strip()
    if key == "*":
        return None, "/*"
    if " " in key:
        method, path = key.split(None, 1)
        return method.upper(), path.strip()
    return None, key


class RouteTable:
    """Exact ``METHOD /path`` (or ``/path`` for any method) and ``/prefix/*`` matches."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, server: VlexivoServer, routes: Mapping[str, Any]) -> None:
        self.exact: dict[tuple[str | None, str], Gate] = {}
        self.prefixes: list[tuple[str | None, str, Gate]] = []
        for key, spec in routes.items():
            method, path = _route_key(key)
            gate = Gate(server, server._as_route(spec), key)
            if path.endswith("*"):
                self.prefixes.append((method, path[:-1], gate))
            else:
                self.exact[(method, path)] = gate
        # Longest prefix first.
        self.prefixes.sort(key=lambda t: len(t[1]), reverse=True)

    def match(self, method: str, path: str) -> Gate | None:
        exact = self.exact
        if exact:
            g = exact.get((method, path)) or exact.get((None, path))
            if g is not None:
                return g
        for m, prefix, gate in self.prefixes:
            if (m is None or m == method) and path.startswith(prefix):
                return gate
        return None


class VlexivoServer:
    """A provider: one API secret, one nonce store, and the adapters that paywall routes.

    >>> vlx = VlexivoServer(api_secret=os.environ["VLX_SECRET_KEY"], mode="sandbox")
    >>> app.add_middleware(vlx.asgi_paywall, routes={"POST /api/v1/inference": vlx.price("0.001")})

    ``clock`` (a callable returning unix seconds) replaces the system clock: for tests.
    ``nonce_store`` is ``"memory"`` or the path of a SQLite file shared by this API's processes.
    """

    def __init__(
        self,
        api_secret: str | None = None,
        *,
        mode: str | None = None,
        facilitator_url: str | None = None,
        network: str | None = None,
        currency: str = "usd",
        scope: str = "per-call",
        challenge_ttl: int = 300,
        leeway: int = 30,
        bind_body: bool = False,
        nonce_store: str = "memory",
        jwks: Any = None,
        clock: Callable[[], float] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        secret = api_secret if api_secret is not None else os.environ.get("VLX_SECRET_KEY")
        if not secret:
            raise make_error("config_invalid", "api_secret is required (or set VLX_SECRET_KEY)")
        url = facilitator_url or os.environ.get("VLEXIVO_FACILITATOR_URL") or None
        try:
            self._paywall = _native.Paywall(
                secret,
                mode,
                url,
                network,
                challenge_ttl,
                leeway,
                bind_body,
                nonce_store,
                jwks,
            )
        except _native.NativeError as e:
            raise from_native(e) from None
        self.currency = currency
        self.scope = scope
        self.bind_body = bind_body
        self.max_body_bytes = max_body_bytes
        self._clock = clock

    # --- facts -------------------------------------------------------------------------

    @property
    def account(self) -> str:
        return self._paywall.account

    @property
    def mode(self) -> str:
        return self._paywall.mode

    @property
    def facilitator_url(self) -> str:
        return self._paywall.facilitator_url

    @property
    def native(self) -> _native.Paywall:
        """The native paywall (verify/release/challenge/reject) for custom adapters."""
        return self._paywall

    # --- prices and routes ---------------------------------------------------------------

    def price(
        self,
        price: PriceValue | None = None,
        *,
        resolver: PriceResolver | None = None,
        currency: str | None = None,
        scope: str | None = None,
    ) -> PaidRoute:
        """A route's price: fixed, or from ``resolver(PricingRequest)`` (sync or async). A fixed
        price is checked now (an invalid one raises :class:`PriceInvalidError`); a resolver's
        result is checked per request (an invalid one answers 500 ``price_invalid``)."""
        cur = currency or self.currency
        if (price is None) == (resolver is None):
            raise make_error("config_invalid", "give exactly one of price and resolver")
        fixed = None
        if price is not None:
            try:
                fixed = _native.parse_price(price, cur)
            except _native.NativeError as e:
                raise from_native(e) from None
        return PaidRoute(price=fixed, resolver=resolver, currency=cur, scope=scope or self.scope)

    def _as_route(self, spec: Any) -> PaidRoute:
        if isinstance(spec, PaidRoute):
            return spec
        if callable(spec) and not isinstance(spec, _native.Price):
            return self.price(resolver=spec)
        return self.price(spec)

    # --- adapters ------------------------------------------------------------------------

    def asgi_paywall(self, app: Any, routes: Mapping[str, Any] | None = None) -> PaywallMiddleware:
        """Pure ASGI middleware (Starlette, FastAPI, any ASGI app):
        ``app.add_middleware(vlx.asgi_paywall, routes={"POST /x": vlx.price("0.001")})``.
        Route keys: ``"METHOD /path"``, ``"/path"`` (any method), ``"/prefix/*"``. The payment
        is in ``scope["state"]["vlx_payment"]`` (``request.state.vlx_payment``)."""
        from ._asgi import PaywallMiddleware

        return PaywallMiddleware(app, server=self, routes=routes or {})

    def wsgi_paywall(self, app: Any, routes: Mapping[str, Any]) -> WsgiPaywall:
        """Generic WSGI middleware: ``app.wsgi_app = vlx.wsgi_paywall(app.wsgi_app, routes=…)``.
        The payment is in ``environ["vlexivo.payment"]``."""
        from ._wsgi import WsgiPaywall

        return WsgiPaywall(app, server=self, routes=routes)

    def paywall(
        self,
        price: PriceValue | None = None,
        *,
        price_resolver: PriceResolver | None = None,
        currency: str | None = None,
        scope: str | None = None,
    ) -> PaywallGuard:
        """One route's paywall, usable as a FastAPI dependency
        (``payment = Depends(vlx.paywall(price="0.001"))``) and as a Flask view decorator
        (``@vlx.paywall(price="0.001")``, payment in ``flask.g.vlx_payment``)."""
        from ._asgi import PaywallGuard

        route = self.price(price, resolver=price_resolver, currency=currency, scope=scope)
        return PaywallGuard(self, route)

    # --- low level -------------------------------------------------------------------------

    def verify(
        self,
        proof: str | None,
        method: str,
        path: str,
        price: PriceValue,
        *,
        body: bytes | None = None,
    ) -> _native.Payment:
        """Verify and consume a proof (raises the mapped :class:`VlexivoError`)."""
        now = None if self._clock is None else int(self._clock())
        try:
            return self._paywall.verify(proof, method, path, price, self.currency, now, body)
        except _native.NativeError as e:
            raise from_native(e) from None

    def release(self, payment: _native.Payment) -> None:
        """The handler failed: let the same token be used again."""
        self._paywall.release(payment.store_key)

    def reject(
        self,
        error: VlexivoError | str,
        method: str,
        path: str,
        price: PriceValue | None = None,
        *,
        body: bytes | None = None,
    ) -> Answer:
        """``(status, headers, body)`` for a refusal."""
        native = getattr(error, "_native", None) or (error.code if isinstance(error, VlexivoError) else error)
        now = None if self._clock is None else int(self._clock())
        return self._paywall.reject(native, method, path, price, self.currency, self.scope, now, body)
