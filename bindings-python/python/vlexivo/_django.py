"""Django adapters: a middleware (its route keys name the URL patterns Django's resolver matches)
and a view decorator, for sync and async views under WSGI or ASGI. The payment is
``request.vlx_payment``.

Like every adapter, these only move bytes: the price, the proof's verdict, the refusal's shape and
whether a nonce is released are asked of the gate (``_gate``) and through it of the native core."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from . import _native
from ._asgi import binding_path as asgi_path
from ._asgi import request_origin as asgi_origin
from ._gate import (
    PAYER_HEADER,
    PROOF_HEADER,
    RECEIPT_HEADER,
    Answer,
    Gate,
    Origin,
    Paid,
    PricingRequest,
    Provider,
    Reject,
    admit,
    admit_async,
    effective,
    expose_value,
    fixed_prices,
    is_free_request,
    needs_body,
    require,
    sends_receipt,
    together,
)
from ._routes import RouteTable, build_table, config_message, template_form
from ._wsgi import _answer_headers, browser_answer, cross_origin
from ._wsgi import binding_path as wsgi_path
from ._wsgi import request_origin as wsgi_origin

logger = logging.getLogger("vlexivo")

# The request's paid record (a `Paid`), in ``request.META``: under WSGI that is the environ, so a
# `WsgiPaywall` around Django's WSGI app and these adapters share it.
PAID_KEY = "vlexivo.paid"
_RECENT_MAX = 4096


# --- the request as the protocol reads it ------------------------------------------------------


def _binding(request: Any) -> tuple[str, Origin]:
    """The path as the client's URL spells it and the request's (scheme, Host): from the ASGI
    scope under ASGI, from the environ under WSGI (never Django's proxy-aware readings)."""
    scope = getattr(request, "scope", None)
    if scope is not None:
        return asgi_path(scope), asgi_origin(scope)
    return wsgi_path(request.META), wsgi_origin(request.META)


def _preflight(request: Any) -> bool:
    return is_free_request(request.method, "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META)


def _answer(answer: Answer, method: str, request: Any, page: bool = True) -> Any:
    """A refusal as a Django response to ``request`` (a HEAD one without its body), as its client
    should get it: with ``page``, core's HTML page for a browser that asked without a proof."""
    from django.http import HttpResponse  # type: ignore[import-untyped]

    if page:
        answer = browser_answer(answer, request.META)

    status, _headers, body = answer
    resp = HttpResponse(b"" if method == "HEAD" else body.encode(), status=status)
    for k, v in _answer_headers(answer, request.META):
        resp[k] = v
    return resp


class _Call:
    """One request on its way through a paywall: what the gate needs of it."""

    __slots__ = ("body", "method", "now", "origin", "path", "request")

    def __init__(self, request: Any, now: int | None) -> None:
        self.request = request
        self.method: str = request.method
        self.path, self.origin = _binding(request)
        self.now = now
        self.body: bytes | None = None

    def read_body(self, gates: Sequence[Gate]) -> None:
        """The body, when a gate reads it; over the provider's limit: 413, before reading it."""
        if self.body is not None or not needs_body(gates):
            return
        limit = gates[0].provider.max_body_bytes
        try:
            declared = int(self.request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise Reject(gates[0].too_large(self.method, self.path, self.now))
        body: bytes = self.request.body
        if len(body) > limit:
            raise Reject(gates[0].too_large(self.method, self.path, self.now))
        self.body = body

    def pricing(self) -> PricingRequest:
        r = self.request
        return PricingRequest(
            self.method, self.path, r.META.get("QUERY_STRING", ""), r.headers.items(), self.body, r
        )

    def earlier(self, gates: Sequence[Gate]) -> tuple[Paid | None, list[Gate]]:
        """A payment an outer paywall of the same provider took, and the gates it does not cover."""
        paid: Paid | None = self.request.META.get(PAID_KEY)
        if paid is None or paid.native is not gates[0].native:
            return None, []
        return paid, [g for g in gates if not paid.covers(g)]

    def admit(self, gates: Sequence[Gate], price: _native.Price) -> Paid:
        return admit(
            gates, self.proof(), self.method, self.path, self.origin, price, self.body, self.now, self.hint()
        )

    async def admit_async(self, gates: Sequence[Gate], price: _native.Price) -> Paid:
        from asgiref.sync import sync_to_async

        return await admit_async(
            gates,
            self.proof(),
            self.method,
            self.path,
            self.origin,
            price,
            self.body,
            self.now,
            to_thread=lambda f, *a: sync_to_async(f, thread_sensitive=False)(*a),
            hint=self.hint(),
        )

    def proof(self) -> str | None:
        v: str | None = self.request.META.get("HTTP_" + PROOF_HEADER.upper().replace("-", "_"))
        return v

    def hint(self) -> str | None:
        """The ``Vlexivo-Payer`` header: a challenge for a resolver's price names that payer."""
        v: str | None = self.request.META.get("HTTP_" + PAYER_HEADER.upper().replace("-", "_"))
        return v

    def combine(self, gates: Sequence[Gate], prices: Sequence[_native.Price]) -> _native.Price:
        return prices[0] if len(prices) == 1 else effective(gates, prices, self.method, self.path, self.now)

    def price_sync(self, gates: Sequence[Gate]) -> _native.Price:
        prices = fixed_prices(gates)
        if prices is None:
            req = self.pricing()
            prices = [g.price_sync(req, self.now) for g in gates]
        return self.combine(gates, prices)

    async def price_async(self, gates: Sequence[Gate]) -> _native.Price:
        prices = fixed_prices(gates)
        if prices is None:
            req = self.pricing()
            prices = [await g.price_async(req, self.now) for g in gates]
        return self.combine(gates, prices)

    def paid(self, paid: Paid, owner: bool) -> Paid | None:
        """Record the request as paid; the owner's record (it settles the payment) or None."""
        self.request.vlx_payment = paid.payment
        if owner:
            self.request.META[PAID_KEY] = paid
            return paid
        return None


def take(call: _Call, gates: Sequence[Gate]) -> Paid | None:
    """Verify and consume the request's proof for ``gates`` (or, under an outer paywall that took
    it, check its amount): the record to settle when this paywall owns the payment, else None.
    Raises :class:`Reject` with the answer to send."""
    earlier, missing = call.earlier(gates)
    if earlier is not None:
        if missing:
            call.read_body(missing)
            price = call.price_sync(missing)
            require(earlier, missing[0], price, call.method, call.path, call.origin, call.now, call.body)
        return call.paid(earlier, False)
    call.read_body(gates)
    return call.paid(call.admit(gates, call.price_sync(gates)), True)


async def take_async(call: _Call, gates: Sequence[Gate]) -> Paid | None:
    """:func:`take` on an event loop (an async resolver awaited, a networked store off the loop)."""
    earlier, missing = call.earlier(gates)
    if earlier is not None:
        if missing:
            call.read_body(missing)
            price = await call.price_async(missing)
            require(earlier, missing[0], price, call.method, call.path, call.origin, call.now, call.body)
        return call.paid(earlier, False)
    call.read_body(gates)
    return call.paid(await call.admit_async(gates, await call.price_async(gates)), True)


# --- the outcome -------------------------------------------------------------------------------


def _exception_status(exc: BaseException) -> int:
    """The status Django answers an exception a view raised with (0: none, a 500)."""
    from django.core.exceptions import (  # type: ignore[import-untyped]
        BadRequest,
        PermissionDenied,
        SuspiciousOperation,
    )
    from django.http import Http404

    if isinstance(exc, Http404):
        return 404
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, (BadRequest, SuspiciousOperation)):
        return 400
    return 0


def failed(paid: Paid, exc: BaseException) -> None:
    """The view raised: an exception Django answers in full with a 4xx keeps the payment (core's
    rule, as for any 4xx), anything else is a failure."""
    status = _exception_status(exc)
    paid.settle(status, True, status != 0)


def finish(paid: Paid, response: Any, request: Any) -> Any:
    """The view answered: release on a failure, else add the receipt (exposed to CORS for a
    cross-origin ``request``); a streamed body that fails before its end releases then."""
    status = response.status_code
    if not sends_receipt(status):
        paid.settle(status, False, True)
        return response
    if getattr(response, "streaming", False):
        if getattr(response, "is_async", False):
            response.streaming_content = _release_if_async_stream_fails(
                response.streaming_content, paid, status
            )
        else:
            response.streaming_content = _release_if_stream_fails(response.streaming_content, paid, status)
    response[RECEIPT_HEADER] = paid.payment.receipt
    if cross_origin(request.META):
        merged = expose_value(response.get("Access-Control-Expose-Headers"))
        if merged is not None:
            response["Access-Control-Expose-Headers"] = merged
    return response


def _release_if_stream_fails(body: Any, paid: Paid, status: int) -> Iterator[Any]:
    try:
        yield from body
    except GeneratorExit:
        raise
    except BaseException:
        paid.settle(status, True, False)
        raise


async def _release_if_async_stream_fails(body: Any, paid: Paid, status: int) -> Any:
    try:
        async for chunk in body:
            yield chunk
    except GeneratorExit:
        raise
    except BaseException:
        paid.settle(status, True, False)
        raise


# --- the view decorator ------------------------------------------------------------------------


def view_gates(view: Any) -> tuple[Gate, ...]:
    gates: tuple[Gate, ...] = getattr(view, "__vlexivo_gates__", ())
    return gates


def django_view(gate: Gate, view: Callable[..., Any]) -> Callable[..., Any]:
    """``@vlx.django_paywall(...)`` on a Django view (a function, or ``SomeView.as_view()``),
    sync or async. Stacked decorators make one paywall: one proof, asked once at the highest
    price; under the paywall middleware the view's price is asked together with the route's."""
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction

    inner = view_gates(view)
    target: Callable[..., Any] = getattr(view, "__vlexivo_view__", view) if inner else view
    gates = (gate, *(g for g in inner if g is not gate))

    if iscoroutinefunction(target):

        async def paid_view_async(request: Any, *args: Any, **kwargs: Any) -> Any:
            if _preflight(request):
                return await target(request, *args, **kwargs)
            call = _Call(request, gate.provider.now())
            try:
                paid = await take_async(call, gates)
            except Reject as r:
                return _answer(r.answer, call.method, request)
            if paid is None:
                return await target(request, *args, **kwargs)
            try:
                response = await target(request, *args, **kwargs)
            except BaseException as exc:
                failed(paid, exc)
                raise
            return finish(paid, response, request)

        wrapped: Callable[..., Any] = functools.wraps(target)(paid_view_async)
        markcoroutinefunction(wrapped)
    else:

        def paid_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            if _preflight(request):
                return target(request, *args, **kwargs)
            call = _Call(request, gate.provider.now())
            try:
                paid = take(call, gates)
            except Reject as r:
                return _answer(r.answer, call.method, request)
            if paid is None:
                return target(request, *args, **kwargs)
            try:
                response = target(request, *args, **kwargs)
            except BaseException as exc:
                failed(paid, exc)
                raise
            return finish(paid, response, request)

        wrapped = functools.wraps(target)(paid_view)
    wrapped.__vlexivo_gates__ = gates  # type: ignore[attr-defined]
    wrapped.__vlexivo_view__ = target  # type: ignore[attr-defined]
    return wrapped


# --- the middleware ----------------------------------------------------------------------------


def _declared(patterns: Sequence[Any], prefix: str = "") -> Iterator[str]:
    """Every URL pattern's full route, joined as Django joins them in ``ResolverMatch.route``."""
    for p in patterns:
        route = str(p.pattern)
        full = prefix + (route[1:] if prefix and route.startswith("^") else route)
        sub = getattr(p, "url_patterns", None)
        if sub is not None:
            yield from _declared(sub, full)
        else:
            yield full


class DjangoPaywall:
    """Django middleware (sync and async): the paywalls of the route Django's resolver matches for
    a request, its own key's and the view's ``@vlx.django_paywall`` decorators', asked for once.

    Made by :meth:`VlexivoServer.django_middleware`; list the class it returns in
    ``settings.MIDDLEWARE``. Route keys name URL patterns as written in ``urls.py``, with a
    leading slash (``"POST /api/v1/inference"``, ``"GET /items/<int:pk>"``; converters may be
    left out; ``"/prefix/*"`` for every route under a prefix)."""

    sync_capable = True
    async_capable = True
    server: Provider
    table: RouteTable

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._checked: dict[Any, str | None] = {}
        self._forms: dict[str, str] = {}
        # (URLconf, method, path) -> the route's gates: Django's resolver matches on the path
        # alone, so its answer is remembered (not for a 404: a flood of them cannot fill it).
        self._recent: dict[tuple[Any, str, str], Sequence[Gate]] = {}

    def _check(self, urlconf: Any, resolver: Any) -> str | None:
        """Once per URLconf: every key names a route (else every paid request fails closed)."""
        if urlconf not in self._checked:
            declared = ["/" + r for r in _declared(resolver.url_patterns)]
            unmatched = self.table.unmatched((d, None) for d in declared)
            message = config_message(unmatched, declared) if unmatched else None
            if message is not None:
                logger.error("vlexivo: %s; answering 500 config_invalid", message)
            self._checked[urlconf] = message
        return self._checked[urlconf]

    def _gates(self, request: Any) -> Sequence[Gate] | None:
        """The paywalls on the request's route (None: the table names no route of the app)."""
        from django.conf import settings  # type: ignore[import-untyped]
        from django.urls import Resolver404, get_resolver  # type: ignore[import-untyped]

        urlconf = getattr(request, "urlconf", None)
        key = (urlconf if urlconf is not None else settings.ROOT_URLCONF, request.method, request.path_info)
        hit = self._recent.get(key)
        if hit is not None:
            return hit
        resolver = get_resolver(urlconf)
        if self._check(urlconf, resolver) is not None:
            return None
        try:
            match = resolver.resolve(request.path_info)
        except Resolver404:
            return ()  # no view runs
        route = match.route
        form = self._forms.get(route)
        if form is None:
            form = self._forms[route] = template_form("/" + route)
        own = self.table.match(request.method, form)
        gates = () if own is None else together(own, view_gates(match.func))
        if len(self._recent) >= _RECENT_MAX:
            self._recent.clear()
        self._recent[key] = gates
        return gates

    def _config_answer(self, request: Any) -> Any:
        err = _native.error_for("config_invalid", "paywall route table")
        path, _origin = _binding(request)
        answer = self.server.native.reject(err, request.method, path, None)
        return _answer(answer, request.method, request, page=False)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        if _preflight(request):
            return self.get_response(request)
        gates = self._gates(request)
        if gates is None:
            return self._config_answer(request)
        if not gates:
            return self.get_response(request)
        call = _Call(request, self.server.now())
        try:
            paid = take(call, gates)
        except Reject as r:
            return _answer(r.answer, call.method, request)
        if paid is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            failed(paid, exc)
            raise
        return finish(paid, response, request)

    async def __acall__(self, request: Any) -> Any:
        if _preflight(request):
            return await self.get_response(request)
        gates = self._gates(request)
        if gates is None:
            return self._config_answer(request)
        if not gates:
            return await self.get_response(request)
        call = _Call(request, self.server.now())
        try:
            paid = await take_async(call, gates)
        except Reject as r:
            return _answer(r.answer, call.method, request)
        if paid is None:
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            failed(paid, exc)
            raise
        return finish(paid, response, request)


def middleware_class(server: Provider, routes: Mapping[str, Any]) -> type[DjangoPaywall]:
    """A :class:`DjangoPaywall` subclass bound to ``server`` and ``routes``."""
    table = build_table(server, routes)
    return type("VlexivoDjangoPaywall", (DjangoPaywall,), {"server": server, "table": table})


__all__ = ["PAID_KEY", "DjangoPaywall", "django_view", "middleware_class"]
