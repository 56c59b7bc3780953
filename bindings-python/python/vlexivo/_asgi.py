"""ASGI adapters: a pure ASGI middleware (Starlette, FastAPI, any ASGI app) and the
:class:`PaywallGuard`, which is both a FastAPI dependency and a Flask view decorator."""

from __future__ import annotations

import inspect
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import Any
from urllib.parse import quote

from . import _native
from ._gate import (
    NO_PLAN,
    PAYER_HEADER,
    PROOF_HEADER,
    RECEIPT_HEADER,
    Answer,
    Gate,
    Paid,
    PaidRoute,
    Plan,
    PricingRequest,
    Provider,
    Reject,
    admit,
    admit_async,
    effective,
    expose_value,
    exposes_headers,
    fixed_prices,
    for_browser,
    is_free_request,
    needs_body,
    refused,
    require,
    together,
)
from ._routes import RouteTable, build_table, config_message
from .errors import NATIVE_ERRORS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("vlexivo")

_PROOF = PROOF_HEADER.encode()
_PAYER = PAYER_HEADER.encode()
_ACRM = b"access-control-request-method"
_EXPOSE = (b"access-control-expose-headers", (expose_value(None) or "").encode())
# The paid request's record (a `Paid`), shared by every paywall on the request.
PAID_KEY = "vlexivo.paid"
# The paid request's payment, for the app: ``request.scope["vlexivo.payment"]`` (as WSGI's
# ``environ["vlexivo.payment"]``). It is also ``request.state.vlx_payment``, which costs the
# app about a microsecond more per read (Starlette builds a ``State`` and fails an attribute
# lookup first).
PAYMENT_KEY = "vlexivo.payment"
# Set by the middleware in every HTTP scope: a FastAPI dependency then leaves the receipt header
# and the release decision to it (it sees the real response; a dependency cannot).
_MIDDLEWARE_KEY = "vlexivo.middleware"
_UNRESOLVED: Any = object()
# The (route leaf, plan) of a request no table prices.
_UNPRICED: tuple[Any, Plan] = (None, NO_PLAN)
_RECENT_MAX = 4096


# The middleware's hold on the request's payment, whoever takes it: ``paid`` (a :class:`Paid`, or
# None) and ``cross_origin`` (whether the request carries ``Origin``; None: not looked at yet). A
# mutable object in the scope, so that a middleware in between that copies the scope still
# shares it; native, so that the native entry and the response watch read it directly.
_Box = _native.PaymentBox


def binding_path(scope: Scope) -> str:
    """The request path as the client's URL spells it (what the challenge and token bind)."""
    raw: bytes | None = scope.get("raw_path")
    if raw:
        # ASGI's raw_path has no query string; some servers' did once, so cut it if present.
        return raw.decode("latin-1") if b"?" not in raw else raw.decode("latin-1").split("?", 1)[0]
    return quote(scope.get("root_path", "") + scope["path"], safe="/:@!$&'()*+,;=-._~%")


def request_origin(scope: Scope) -> tuple[str, str | None]:
    """The scheme and ``Host`` the request came with (core binds them when no origin is
    configured); the server's address when a client sent no ``Host``."""
    for k, v in scope["headers"]:
        if k == b"host":
            return scope.get("scheme", "http"), v.decode("latin-1")
    server = scope.get("server")
    host = f"{server[0]}:{server[1]}" if server and server[1] is not None else None
    return scope.get("scheme", "http"), host


def proof_of(scope: Scope) -> str | None:
    k: bytes
    v: bytes
    for k, v in scope["headers"]:
        if k == _PROOF:
            return v.decode("latin-1")
    return None


def payer_hint_of(scope: Scope) -> str | None:
    """The request's ``Vlexivo-Payer`` header (a hint for pricing by payer)."""
    k: bytes
    v: bytes
    for k, v in scope["headers"]:
        if k == _PAYER:
            return v.decode("latin-1")
    return None


def cross_origin(scope: Scope) -> bool:
    """Whether the request carries ``Origin``: core's ``exposes_headers`` says whether its
    answers, paid or refused, expose our headers to CORS (protocol §2)."""
    return any(k == b"origin" for k, _ in scope["headers"])


def preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and is_free_request(
        "OPTIONS", any(k == _ACRM for k, _ in scope["headers"])
    )


def _pricing_request(scope: Scope, body: bytes | None, raw: Any) -> PricingRequest:
    return PricingRequest(
        scope["method"],
        binding_path(scope),
        scope.get("query_string", b"").decode("latin-1"),
        ((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]),
        body,
        raw,
    )


def browser_answer(answer: Answer, scope: Scope) -> Answer:
    """The refusal as this request's client should get it (core's page for a browser)."""
    accept = None
    for k, v in scope["headers"]:
        if k == b"accept":
            accept = v.decode("latin-1") if accept is None else f"{accept},{v.decode('latin-1')}"
    return for_browser(answer, accept, proof_of(scope) is not None)


async def send_answer(send: Send, answer: Answer, scope: Scope) -> None:
    method = scope["method"]
    status, headers, body = answer
    raw = [_EXPOSE] if exposes_headers(cross_origin(scope)) else []
    if not any(k.lower() == "content-type" for k, _ in headers):
        raw.append((b"content-type", b"application/json"))
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    data = body.encode()
    raw.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    # A HEAD answer has the headers of the GET one and no body.
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})


class _Done:
    """An awaitable that is already done (what a send that sends nothing returns)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_DONE = _Done()


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """The app reads the body the middleware already read; later calls go to the server
    (so the app still sees a disconnect)."""
    sent = False

    async def receive2() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive2


async def _price_all(
    gates: Sequence[Gate], scope: Scope, body: bytes | None, raw: Any, now: int | None
) -> _native.Price:
    if len(gates) == 1 and gates[0].route.price is not None:
        return gates[0].route.price
    prices = fixed_prices(gates)
    if prices is None:
        req = _pricing_request(scope, body, raw)
        prices = [await g.price_async(req, now) for g in gates]
    return (
        prices[0] if len(prices) == 1 else effective(gates, prices, scope["method"], binding_path(scope), now)
    )


class PaywallMiddleware(_native.AsgiMiddleware):
    """Pure ASGI paywall. It prices the route the app's router will run (its ``routes`` table),
    adding the prices of the paywalls inside it on the way (middlewares, mounted apps', the
    route's dependencies), and asks for that one price once. For every request it also executes
    the outcome rule (release or keep the nonce, the receipt header) for payments that a
    dependency took.

    Calling it is native (``_native.AsgiMiddleware``): a request the outermost paywall takes on
    a route its cache knows, at a fixed price or unpriced, runs as :meth:`_call` would run it
    without a Python frame of the middleware's; any other request goes to :meth:`_call`."""

    def __init__(self, app: ASGIApp, *, server: Provider, routes: Mapping[str, Any]) -> None:
        self.app = app
        self.server = server
        self.table: RouteTable = build_table(server, routes)
        self._tabled = bool(self.table)
        self._map: Any = _UNRESOLVED
        self._config_error: str | None = None
        self._literal: dict[int, Plan] = {}
        # (method, root_path, path) -> (route, plan), while the router's routes match on these alone.
        self._recent: dict[tuple[str, str, str], tuple[Any, Plan]] = {}
        self._generation = 0
        # The provider's hook for an accepted payment (its usage answers change), looked up once,
        # and what it caches (called only when it holds something: the hook's frame is skipped).
        self._paid_by: Callable[[_native.Payment], None] | None = getattr(server, "_paid_by", None)
        usage = getattr(server, "_usage", None)
        self._usage_entries: Any = getattr(usage, "_entries", True)
        # A provider on the system clock (``now()`` is None) is not asked per request.
        self._clocked = getattr(server, "_clock", True) is not None
        # What the response watch calls when the router ran another route than the priced one:
        # set once the router is known (a plain ASGI app has none to check).
        self._check: Callable[..., Awaitable[None] | None] | None = None
        # What introspection finds (an ASGI server asks whether ``__call__`` is a coroutine
        # function to tell ASGI 3 from 2); calling the middleware still goes to the native entry.
        self.__call__ = self._call  # type: ignore[method-assign]

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The outermost paywall middleware observes the response; one inside another only adds
        # its price to the request's.
        box: _Box | None = scope.get(_MIDDLEWARE_KEY)
        outer = box is None
        if box is None:
            box = scope[_MIDDLEWARE_KEY] = _Box()
        route = _UNPRICED
        if self._tabled and (scope["method"] != "OPTIONS" or not preflight(scope)):
            found = self._plan(scope)
            if found is None:  # a table that names no route of the app: fail closed
                await self._config_answer(scope, send)
                return
            route = found
        plan = route[1]
        if plan.gates:
            try:
                if plan.inline and box.paid is None:
                    self._take_inline(plan, box, scope)
                else:
                    receive = await self._admit(plan, box, scope, receive)
            except Reject as r:
                await send_answer(send, browser_answer(r.answer, scope), scope)
                return
            except _Disconnected:
                return
        if not outer:
            await self.app(scope, receive, send)
            return

        # The outermost one runs the app and watches its response (natively: no frame per
        # message): the receipt on a response that keeps the payment, the nonce's fate from the
        # handler's outcome (core decides), and that the router ran the route it priced.
        watch = _native.ResponseWatch(send, box, scope, self._check, route)
        try:
            await self.app(scope, receive, watch)
        except BaseException:
            watch.ended(True)
            raise
        watch.ended(False)

    async def _refusal(
        self, plan: Plan, scope: Scope, send: Send, caught: BaseException, now: int | None
    ) -> None:
        """The native entry's proof was refused: the answer, as :meth:`_call` sends it."""
        await send_answer(send, browser_answer(self._refused(plan, scope, caught, now).answer, scope), scope)

    def _other_route(
        self, scope: Scope, leaf: Any, plan: Plan, box: _Box, send: Send
    ) -> Awaitable[None] | None:
        """The router ran another route than ``leaf``'s: ``None`` when it is paywalled alike,
        else the 500 to send instead (the nonce released)."""
        if self._same_route(scope, leaf, plan):
            return None
        if box.paid is not None:
            box.paid.release()
        return self._mismatch_answer(scope, send)

    def _take_inline(self, plan: Plan, box: _Box, scope: Scope) -> None:
        """:meth:`_take` for a :attr:`Plan.inline` plan, without a coroutine: the header scan,
        verify and consume in one native call."""
        price = plan.price
        assert price is not None
        gates = plan.gates
        now = self.server.now() if self._clocked else None
        try:
            found = gates[0].native.verify_scope(scope, price, now)
        except NATIVE_ERRORS as caught:
            raise self._refused(plan, scope, caught, now) from None
        if found is None:  # a scope without raw_path or Host: the helpers read it
            method, path, origin = scope["method"], binding_path(scope), request_origin(scope)
            paid = admit(gates, proof_of(scope), method, path, origin, price, None, now)
        else:
            payment, box.cross_origin = found
            # accepted(), inline: the provider told of the payment (when its usage cache holds
            # anything), the nonce's fate kept.
            if self._usage_entries and self._paid_by is not None:
                self._paid_by(payment)
            paid = Paid(payment, gates[0].native, price, gates)
        scope[PAID_KEY] = box.paid = paid
        scope[PAYMENT_KEY] = paid.payment
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["vlx_payment"] = paid.payment

    @staticmethod
    def _refused(plan: Plan, scope: Scope, caught: BaseException, now: int | None) -> Reject:
        """The refusal of an inline plan's proof (core shapes it from the error)."""
        price = plan.price
        assert price is not None
        method, path, origin = scope["method"], binding_path(scope), request_origin(scope)
        return refused(plan.gates, caught, method, path, origin, price, None, now, None)

    async def _admit(self, plan: Plan, box: _Box, scope: Scope, receive: Receive) -> Receive:
        """Verify the proof at the plan's price (or, under an outer paywall that took it, check
        its amount); returns the ``receive`` the app reads the body from."""
        gates = plan.gates
        method = scope["method"]
        path = binding_path(scope)
        now = self.server.now()
        body: bytes | None = None
        if plan.needs_body:
            try:
                body = await read_body(receive, self.server.max_body_bytes)
            except _BodyTooLarge:
                raise Reject(gates[0].too_large(method, path, now)) from None
            receive = replay_receive(body, receive)
        earlier = box.paid
        if earlier is not None and earlier.native is gates[0].native:
            # An outer paywall took the proof: this one checks the amount only.
            missing = [g for g in gates if not earlier.covers(g)]
            if missing:
                price = await _price_all(missing, scope, body, scope, now)
                require(earlier, missing[0], price, method, path, request_origin(scope), now, body)
            return receive
        fixed = plan.price
        price = fixed if fixed is not None else await _price_all(gates, scope, body, scope, now)
        await self._take(plan, price, box, scope, body, now)
        return receive

    async def _take(
        self, plan: Plan, price: _native.Price, box: _Box, scope: Scope, body: bytes | None, now: int | None
    ) -> None:
        """Verify the proof at ``price`` and consume it: the request is paid."""
        paid = await admit_async(
            plan.gates,
            proof_of(scope),
            scope["method"],
            binding_path(scope),
            request_origin(scope),
            price,
            body,
            now,
            hint=None if plan.price is not None else payer_hint_of(scope),
        )
        scope[PAID_KEY] = box.paid = paid
        scope[PAYMENT_KEY] = paid.payment
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["vlx_payment"] = paid.payment

    # --- which paywalls apply -------------------------------------------------------------

    def _plan(self, scope: Scope) -> tuple[Any, Plan] | None:
        m = self._map
        if m is _UNRESOLVED:
            m = self._resolve_router(scope)
        if self._config_error is not None:
            return None
        method = scope["method"]
        if m is None:  # a plain ASGI app: the path it reads
            g = self.table.match(method, scope["path"])
            if g is None:
                return None, NO_PLAN
            plan = self._literal.get(id(g))
            if plan is None:
                plan = self._literal[id(g)] = Plan((g,))
            return None, plan
        key = None
        # The cache is read under the native entry's rule (`_cache_current`); when that fails, a
        # router changed since is surveyed again (`cacheable`) and, if every route still matches
        # on the path alone, the cache starts anew under its new generation.
        current = self._cache_current(m)
        if not current and m.cacheable():
            self._recent.clear()
            self._generation = m.generation
            current = True
        if current:
            key = (method, scope.get("root_path", ""), scope["path"])
            hit = self._recent.get(key)
            if hit is not None:
                return hit
        leaf = m.resolve(scope)
        if leaf is None:
            return None, NO_PLAN  # (not remembered: a flood of 404s cannot fill the memory)
        plan = leaf.cache.get(method)
        if plan is None:
            plan = leaf.cache[method] = Plan(self._gates_of_leaf(leaf, method))
        if key is not None:
            if len(self._recent) >= _RECENT_MAX:
                self._recent.clear()
            self._recent[key] = (leaf, plan)
        return leaf, plan

    def _gates_of_leaf(self, leaf: Any, method: str) -> tuple[Gate, ...]:
        """Every paywall on the way to ``leaf`` that this one asks for: its own key, then the
        paywall middlewares inside it (in its stack, in the apps mounted on the way) and the
        route's paywall dependencies, all of one provider: one price, asked once."""
        if leaf.methods is not None and method not in leaf.methods:
            return ()  # the route answers 405: no handler runs
        g = self.table.match(method, leaf.template)
        if g is None:
            return ()
        from ._starlette import chain, guards_of

        def inner() -> Iterator[Gate | None]:
            for mw in chain(self.app):
                if isinstance(mw, PaywallMiddleware):
                    yield mw.table.match(method, leaf.template)
            for mount, cut in leaf.mounts:
                for mw in chain(mount.app):
                    if isinstance(mw, PaywallMiddleware):
                        yield mw.table.match(method, leaf.template[cut:])
            for guard in guards_of(leaf.dependant, _is_guard):
                yield guard._gate

        return together(g, inner())

    def _resolve_router(self, scope: Scope) -> Any:
        router = None
        try:
            from ._starlette import RouterMap, find_router
        except ImportError:  # Starlette is not installed: a plain ASGI app
            m = None
        else:
            router = find_router(self.app)
            m = RouterMap(router) if router is not None else None
        if m is not None:
            leaves = list(m.leaves())
            unmatched = self.table.unmatched((lf.template, lf.methods) for lf in leaves)
            if unmatched:
                self._config_error = config_message(unmatched, (lf.template for lf in leaves))
                logger.error("vlexivo: %s; answering 500 config_invalid", self._config_error)
            self._check = self._other_route
            if self._config_error is None:
                now = self.server.now if self._clocked else None
                usage = self._usage_entries
                self._fast_path(self.app, m, self._recent, self._check, self._paid_by, usage, now)
        self._map = m
        return m

    async def _config_answer(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        err = _native.error_for("config_invalid", "paywall route table")
        answer = self.server.native.reject(err, method, binding_path(scope), None)
        await send_answer(send, answer, scope)

    # --- running the app -----------------------------------------------------------------

    def _same_route(self, scope: Scope, leaf: Any, plan: Plan) -> bool:
        """Did the router run the route this middleware priced? ``scope["route"]`` names it (a
        container route such as a mount, left by an outer router, tells nothing)."""
        actual = scope.get("route")
        if actual is None or (leaf is not None and actual is leaf.route):
            return True
        m = self._map
        if m is None or m is _UNRESOLVED:
            return True
        method = scope["method"]
        for other in m.leaf_of(actual):
            theirs = other.cache.get(method)
            if theirs is None:
                theirs = other.cache[method] = Plan(self._gates_of_leaf(other, method))
            if theirs.gates != plan.gates:
                logger.error(
                    "vlexivo: the router ran %r for %s %s, not %r as the paywall predicted; answering 500",
                    other,
                    method,
                    scope.get("path"),
                    leaf,
                )
                return False
        return True

    async def _mismatch_answer(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        err = _native.error_for("internal", "paywall route mismatch")
        await send_answer(send, self.server.native.reject(err, method, binding_path(scope), None), scope)


# --- the guard: FastAPI dependency and Flask decorator ---------------------------------------

_http_exc_class: Any = None


def _payment_http_exception() -> Any:
    """A Starlette ``HTTPException`` carrying the exact Vlexivo answer (created lazily so the
    package does not need Starlette unless FastAPI is used)."""
    global _http_exc_class
    if _http_exc_class is None:
        from starlette.exceptions import HTTPException

        class VlexivoHTTPException(HTTPException):
            def __init__(self, answer: Answer) -> None:
                status, headers, body = answer
                self.answer = answer
                super().__init__(status_code=status, detail=body, headers=dict(headers))

        _http_exc_class = VlexivoHTTPException
    return _http_exc_class


async def _answer_handler(request: Any, exc: Any) -> Any:
    from starlette.responses import Response

    status, headers, body = exc.answer
    h = dict(headers)
    if exposes_headers(cross_origin(request.scope)):
        h["Access-Control-Expose-Headers"] = _EXPOSE[1].decode()
    return Response(body, status_code=status, headers=h, media_type="application/json")


def _raise_answer(scope: Scope, answer: Answer) -> None:
    exc_class = _payment_http_exception()
    # Register our handler in the app's live exception-handler table so the 402 body is the
    # protocol's JSON, not FastAPI's {"detail": …} wrapper (which would still carry the headers).
    handlers = scope.get("starlette.exception_handlers")
    if handlers is not None and exc_class not in handlers[0]:
        handlers[0][exc_class] = _answer_handler
    raise exc_class(answer)


_warned = False


def _warn_unobserved() -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "vlexivo: a paywall dependency runs without the ASGI middleware, so it cannot see a "
            "response the handler returns: a returned 5xx keeps the payer's nonce and a returned "
            f"Response carries no {RECEIPT_HEADER}. Add app.add_middleware(vlx.asgi_paywall)."
        )


class _Sent:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def mark(self) -> None:
        self.done = True


def _route_guards(scope: Scope, first: PaywallGuard) -> list[Gate]:
    """Every paywall dependency of the route FastAPI is running (same provider), ``first``
    first: their prices are asked once, together."""
    from ._starlette import guards_of

    dependant = None
    fastapi_state = scope.get("fastapi")
    ctx = fastapi_state.get("effective_route_context") if isinstance(fastapi_state, dict) else None
    if ctx is not None and getattr(ctx, "original_route", None) is scope.get("route"):
        dependant = getattr(ctx, "dependant", None)
    if dependant is None:
        dependant = getattr(scope.get("route"), "dependant", None)
    return list(together(first._gate, (g._gate for g in guards_of(dependant, _is_guard))))


def _is_guard(call: Any) -> bool:
    return isinstance(call, PaywallGuard)


class PaywallGuard:
    """Returned by :meth:`VlexivoServer.paywall`.

    * FastAPI: ``payment = Depends(vlx.paywall(price="0.001"))`` on a route, or in a router's or
      the app's ``dependencies`` — verifies before the handler, answers 402/409/5xx itself,
      releases the nonce if the handler raises (or, with the ASGI middleware installed, answers
      5xx), and adds ``Vlexivo-Receipt``. Several on one route are asked for once, at the
      highest of their prices.
    * Flask: ``@vlx.paywall(price="0.001")`` on a view — the payment is in ``flask.g.vlx_payment``.
    * Any WSGI app: ``guard.wsgi(app)`` paywalls every request of ``app``.
    """

    def __init__(self, server: Provider, route: PaidRoute) -> None:
        self.server = server
        self.route = route
        self._gate = Gate(server, route, "paywall()")
        # FastAPI decides how to call a dependency by inspecting ``call.__call__``: an async
        # generator makes it a yield-dependency, awaited on the event loop. The class-level
        # __call__ below dispatches between that and the decorator use.
        self.__call__ = self._dependency  # type: ignore[method-assign]

    @property
    def __signature__(self) -> inspect.Signature:
        from starlette.background import BackgroundTasks
        from starlette.requests import Request
        from starlette.responses import Response

        P = inspect.Parameter
        return inspect.Signature(
            [
                P("request", P.POSITIONAL_OR_KEYWORD, annotation=Request),
                P("response", P.POSITIONAL_OR_KEYWORD, annotation=Response),
                P("background_tasks", P.POSITIONAL_OR_KEYWORD, annotation=BackgroundTasks),
            ]
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "request" in kwargs:
            return self._dependency(**kwargs)
        if len(args) == 1 and not kwargs and callable(args[0]):
            from ._wsgi import flask_view

            return flask_view(self._gate, args[0])
        raise TypeError("use as Depends(vlx.paywall(...)) or as a decorator @vlx.paywall(...)")

    def wsgi(self, app: Any) -> Any:
        """Paywall every request of a WSGI app at this price."""
        from ._wsgi import WsgiPaywall

        return WsgiPaywall(app, server=self.server, table=RouteTable([("*", self._gate)]))

    async def _dependency(
        self, request: Any, response: Any, background_tasks: Any = None
    ) -> AsyncIterator[_native.Payment | None]:
        scope = request.scope
        if preflight(scope):
            yield None
            return
        gate = self._gate
        method = scope["method"]
        path = binding_path(scope)
        now = self.server.now()
        body: bytes | None = None
        box: _Box | None = scope.get(_MIDDLEWARE_KEY)
        paid: Paid | None = box.paid if box is not None and box.paid is not None else scope.get(PAID_KEY)
        try:
            if paid is not None and paid.native is gate.native:
                # An earlier paywall on this request took the proof: check its amount only.
                if not paid.covers(gate):
                    if gate.needs_body:
                        body = await request.body()
                    price = await _price_all((gate,), scope, body, request, now)
                    require(paid, gate, price, method, path, request_origin(scope), now, body)
                payment = paid.payment
                owner = False
            else:
                gates = _route_guards(scope, self)
                if needs_body(gates):
                    body = await request.body()
                    if len(body) > self.server.max_body_bytes:
                        raise Reject(gate.too_large(method, path, now))
                price = await _price_all(gates, scope, body, request, now)
                paid = await admit_async(
                    gates,
                    proof_of(scope),
                    method,
                    path,
                    request_origin(scope),
                    price,
                    body,
                    now,
                    hint=payer_hint_of(scope),
                )
                scope[PAID_KEY] = paid
                scope[PAYMENT_KEY] = paid.payment
                if box is not None:
                    box.paid = paid
                payment = paid.payment
                owner = True
        except Reject as r:
            _raise_answer(scope, browser_answer(r.answer, scope))
            raise AssertionError("unreachable") from None
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["vlx_payment"] = payment
        # Without the middleware, the dependency sees of the outcome only what is thrown into it.
        alone = owner and box is None
        sent = _Sent()
        if alone:
            _warn_unobserved()
            response.headers[RECEIPT_HEADER] = payment.receipt
            if exposes_headers(cross_origin(scope)):
                merged = expose_value(response.headers.get("access-control-expose-headers"))
                if merged is not None:
                    response.headers["Access-Control-Expose-Headers"] = merged
            if background_tasks is not None:
                # The first background task runs once the response has been sent in full: an
                # exception after it (a failing background task) is not the handler's.
                background_tasks.add_task(sent.mark)
        try:
            yield payment
        except BaseException as exc:
            if alone and not sent.done:
                # An HTTPException is answered in full with its status (core: a 4xx keeps the
                # payment, a 5xx releases it); anything else failed before a response.
                status = getattr(exc, "status_code", None)
                if isinstance(status, int):
                    paid.settle(status, True, True)
                else:
                    paid.settle(0, True, False)
            raise
