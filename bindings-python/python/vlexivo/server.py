"""The provider side: :class:`VlexivoServer`, its prices, and its adapters (ASGI middleware,
FastAPI dependency, Flask decorator, WSGI middleware, Django middleware and view decorator).

Adapters only move bytes: pricing rules, token checks, nonces and the shape of every refusal
are the native core's; the gate they share is in ``_gate``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from . import _native
from ._asgi import PaywallGuard, PaywallMiddleware
from ._environ import env as _env
from ._gate import (
    DEFAULT_MAX_BODY,
    Answer,
    PaidRoute,
    Payment,
    PricedPayer,
    PriceResolver,
    PriceValue,
    PricingRequest,
)
from ._usage import DEFAULT_TTL, Usage, UsageCache
from ._wsgi import WsgiPaywall
from .errors import NATIVE_ERRORS, VlexivoError, from_native, make_error

__all__ = [
    "PaidRoute",
    "Payment",
    "PriceResolver",
    "PriceValue",
    "PricedPayer",
    "PricingRequest",
    "Usage",
    "VlexivoServer",
]


class VlexivoServer:
    """A provider: one API secret, one nonce store, and the adapters that paywall routes.

    >>> vlx = VlexivoServer(api_secret=os.environ["VLX_SECRET_KEY"], mode="sandbox")
    >>> app.add_middleware(vlx.asgi_paywall, routes={"POST /api/v1/inference": vlx.price("0.001")})

    ``origin`` (``"https://api.example.com"``) is bound into every challenge and proof; without it,
    each request's own scheme and ``Host`` are, which is wrong behind a proxy.
    ``clock`` (a callable returning unix seconds) replaces the system clock: for tests.
    ``nonce_store`` is a store URL: ``"memory"`` (this process only), ``"sqlite:///path.db"``
    (this machine's processes), ``"redis://host:6379"``, ``"redis+cluster://h1:p1,h2:p2"`` or
    ``"postgres://user@host/db"`` (every instance of the API). ``nonce_store_options`` (or the
    URL's query string) sets ``prefix``, ``pool_size``, ``timeout_ms``, ``connect_timeout_ms``
    (``capacity`` and ``pages_thread`` for memory: ``False`` starts no page-making thread for the
    store). An unknown scheme or option, or a server that does not answer,
    raises ``config_invalid`` here; a store that goes down later fails paid requests closed
    (503 ``nonce_store_unavailable``, the handler does not run, the proof stays usable).
    ``usage_cache_seconds``: how long :meth:`usage` answers are reused (2 by default; 0: ask the
    facilitator every time).
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
        nonce_store_options: Mapping[str, str | int | bool] | None = None,
        jwks: Any = None,
        clock: Callable[[], float] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        origin: str | None = None,
        usage_cache_seconds: float = DEFAULT_TTL,
    ) -> None:
        secret = api_secret if api_secret is not None else _env("VLX_SECRET_KEY")
        if not secret:
            raise make_error("config_invalid", "api_secret is required (or set VLX_SECRET_KEY)")
        url = facilitator_url or _env("VLX_FACILITATOR_URL")
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
                origin,
                dict(nonce_store_options) if nonce_store_options is not None else None,
            )
        except NATIVE_ERRORS as e:
            raise from_native(e) from None
        self.currency = currency
        self.scope = scope
        self.bind_body = bind_body
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._usage = UsageCache(self._paywall.facilitator_url, secret, usage_cache_seconds)
        # Told of every accepted payment's payer by the gates: its usage answers are dropped.
        self._paid_by = self._usage.paid

    # --- usage (pricing by payer) --------------------------------------------------------

    async def usage(self, payer: str | PricedPayer, since: datetime | int | None = None) -> Usage:
        """How many payments (and how much) ``payer`` made to this provider since ``since`` (a
        ``datetime`` or unix seconds; default: ever), as the facilitator's ledger records them:
        what usage-based prices are made of. ::

            async def price(req: PricingRequest) -> str:
                if req.payer is None:
                    return "0.001"
                used = await vlx.usage(req.payer, since=start_of_month())
                return "0.0005" if used.count >= 10 else "0.001"

        Answers are reused for ``usage_cache_seconds`` (a payment this server accepts drops its
        payer's answers at once), so a resolver may call it on every request. Raises the
        facilitator's typed error (``facilitator_unavailable`` when it cannot be reached)."""
        return await self._usage.get_async(payer.address if isinstance(payer, PricedPayer) else payer, since)

    def usage_sync(self, payer: str | PricedPayer, since: datetime | int | None = None) -> Usage:
        """:meth:`usage` for synchronous resolvers (Flask, WSGI, Django)."""
        return self._usage.get(payer.address if isinstance(payer, PricedPayer) else payer, since)

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
    def origin(self) -> str | None:
        """The configured origin (``https://api.example.com``), or ``None``: each request's own
        scheme and ``Host`` are bound. Configure it in production, above all behind a proxy."""
        return self._paywall.origin

    @property
    def store_failures(self) -> int:
        """Nonce-store operations that failed on the store's side (unreachable, timed out, full)
        since this server was built; each failed request also logs a line. Export it to your
        metrics."""
        return self._paywall.store_failures

    @property
    def native(self) -> _native.Paywall:
        """The native paywall (verify/release/challenge/reject) for custom adapters."""
        return self._paywall

    def now(self) -> int | None:
        """The injected clock's time, or None for the system clock (the core reads it)."""
        clock = self._clock
        return None if clock is None else int(clock())

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
            except NATIVE_ERRORS as e:
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
        is in ``scope["vlexivo.payment"]`` (``request.scope["vlexivo.payment"]``, as WSGI's
        ``environ["vlexivo.payment"]``) and in ``request.state.vlx_payment`` (which costs a
        Starlette ``State`` per request that reads it)."""
        return PaywallMiddleware(app, server=self, routes=routes or {})

    def wsgi_paywall(self, app: Any, routes: Mapping[str, Any]) -> WsgiPaywall:
        """Generic WSGI middleware: ``app.wsgi_app = vlx.wsgi_paywall(app.wsgi_app, routes=…)``.
        The payment is in ``environ["vlexivo.payment"]``."""
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
        route = self.price(price, resolver=price_resolver, currency=currency, scope=scope)
        return PaywallGuard(self, route)

    def django_middleware(self, routes: Mapping[str, Any]) -> type[Any]:
        """A Django middleware class (sync and async) for ``settings.MIDDLEWARE``:
        ``Paywall = vlx.django_middleware(routes={"POST /api/v1/inference": vlx.price("0.001")})``
        in a module of yours, listed by its dotted path. Keys name URL patterns as written in
        ``urls.py`` with a leading slash (``"GET /items/<int:pk>"``); the payment is
        ``request.vlx_payment``."""
        from ._django import middleware_class

        return middleware_class(self, routes)

    def django_paywall(
        self,
        price: PriceValue | None = None,
        *,
        price_resolver: PriceResolver | None = None,
        currency: str | None = None,
        scope: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A Django view decorator (sync or async views): ``@vlx.django_paywall(price="0.001")``;
        the payment is ``request.vlx_payment``."""
        from ._django import django_view
        from ._gate import Gate

        gate = Gate(
            self,
            self.price(price, resolver=price_resolver, currency=currency, scope=scope),
            "django_paywall()",
        )
        return lambda view: django_view(gate, view)

    # --- low level -------------------------------------------------------------------------

    def verify(
        self,
        proof: str | None,
        method: str,
        path: str,
        price: PriceValue,
        *,
        body: bytes | None = None,
        scheme: str = "http",
        host: str | None = None,
    ) -> _native.Payment:
        """Verify and consume a proof (raises the mapped :class:`VlexivoError`). ``scheme`` and
        ``host`` are the request's, bound when the server has no configured ``origin``."""
        now = self.now()
        try:
            return self._paywall.verify(
                proof, method, path, price, self.currency, now, body, scheme=scheme, host=host
            )
        except NATIVE_ERRORS as e:
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
        scheme: str = "http",
        host: str | None = None,
    ) -> Answer:
        """``(status, headers, body)`` for a refusal."""
        native = getattr(error, "_native", None) or (error.code if isinstance(error, VlexivoError) else error)
        now = self.now()
        return self._paywall.reject(
            native, method, path, price, self.currency, self.scope, now, body, scheme=scheme, host=host
        )
