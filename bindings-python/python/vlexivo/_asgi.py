"""ASGI adapters: a pure ASGI middleware (Starlette, FastAPI, any ASGI app) and the
:class:`PaywallGuard` that is both a FastAPI dependency and a Flask view decorator."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import _native
from .server import (
    EXPOSE_HEADERS,
    PROOF_HEADER,
    Answer,
    Gate,
    PaidRoute,
    PricingRequest,
    RouteTable,
    _Reject,
)

if TYPE_CHECKING:
    from .server import VlexivoServer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROOF = PROOF_HEADER.encode()
_RECEIPT = b"vlexivo-receipt"
_EXPOSE = (b"access-control-expose-headers", EXPOSE_HEADERS.encode())
# Set by the middleware in every HTTP scope: the FastAPI dependency leaves the receipt header
# and the release-on-5xx to it when present (it sees the real response; a dependency cannot).
_HOLDER_KEY = "vlexivo.middleware"


def binding_path(scope: Scope) -> str:
    """The request path as the client's URL spells it (what the challenge and token bind)."""
    raw: bytes | None = scope.get("raw_path")
    if raw:
        # ASGI's raw_path has no query string; some servers' did once, so cut it if present.
        return raw.decode("latin-1") if b"?" not in raw else raw.decode("latin-1").split("?", 1)[0]
    return quote(scope.get("root_path", "") + scope["path"], safe="/:@!$&'()*+,;=-._~%")


def proof_of(scope: Scope) -> str | None:
    k: bytes
    v: bytes
    for k, v in scope["headers"]:
        if k == _PROOF:
            return v.decode("latin-1")
    return None


def _pricing_request(scope: Scope, body: bytes | None, raw: Any) -> PricingRequest:
    return PricingRequest(
        scope["method"],
        binding_path(scope),
        scope.get("query_string", b"").decode("latin-1"),
        ((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]),
        body,
        raw,
    )


async def send_answer(send: Send, answer: Answer) -> None:
    status, headers, body = answer
    raw = [(b"content-type", b"application/json"), _EXPOSE]
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    data = body.encode()
    raw.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


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


class PaywallMiddleware:
    """Pure ASGI paywall. Unmatched routes pass straight through (with only a marker in the
    scope, for the FastAPI dependency)."""

    def __init__(self, app: ASGIApp, *, server: VlexivoServer, routes: Mapping[str, Any]) -> None:
        self.app = app
        self.server = server
        self.table = RouteTable(server, routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gate = self.table.match(scope["method"], scope["path"])
        if gate is None:
            await self._passthrough(scope, receive, send)
            return
        method = scope["method"]
        path = binding_path(scope)
        now = None if self.server._clock is None else gate._now()
        body: bytes | None = None
        try:
            if gate.needs_body:
                try:
                    body = await read_body(receive, self.server.max_body_bytes)
                except _BodyTooLarge:
                    await send_answer(send, gate.too_large(method, path, now))
                    return
                except _Disconnected:
                    return
                receive = replay_receive(body, receive)
            if gate.route.price is not None:
                price = gate.route.price
            else:
                price = await gate.price_async(_pricing_request(scope, body, scope), now)
            payment = gate.admit(proof_of(scope), method, path, price, body, now)
        except _Reject as r:
            await send_answer(send, r.answer)
            return
        await self._run_paid(gate, payment, scope, receive, send)

    async def _run_paid(
        self, gate: Gate, payment: _native.Payment, scope: Scope, receive: Receive, send: Send
    ) -> None:
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["vlx_payment"] = payment
        receipt = payment.receipt.encode("latin-1")
        status = 0
        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                gate.release(payment)

        async def send_paid(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                if status >= 500:
                    # Before the 5xx goes out: a client retrying at once must find the nonce free.
                    release_once()
                # A new list: the app may reuse its own (Starlette passes response.raw_headers).
                msg["headers"] = [*msg.get("headers", ()), (_RECEIPT, receipt), _EXPOSE]
            await send(msg)

        try:
            await self.app(scope, receive, send_paid)
        except BaseException:
            release_once()
            raise
        # No response at all (client gone) or a server error: the work was not delivered.
        if status >= 500 or status == 0:
            release_once()

    async def _passthrough(self, scope: Scope, receive: Receive, send: Send) -> None:
        holder: dict[str, Any] = {}
        scope[_HOLDER_KEY] = holder
        status = 0

        async def send_marked(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                payment = holder.get("payment")
                if payment is not None:
                    status = msg["status"]
                    if status >= 500:
                        # Before the 5xx goes out: a client retrying at once must find it free.
                        _release_held(holder)
                    msg = dict(msg)
                    msg["headers"] = [*msg.get("headers", ()), (_RECEIPT, payment.receipt.encode("latin-1")), _EXPOSE]
            await send(msg)

        try:
            await self.app(scope, receive, send_marked)
        except BaseException:
            _release_held(holder)
            raise
        if holder.get("payment") is not None and (status >= 500 or status == 0):
            _release_held(holder)


def _release_held(holder: dict[str, Any]) -> None:
    """Release the held payment's nonce, once."""
    payment = holder.get("payment")
    gate = holder.get("gate")
    if payment is not None and gate is not None and not holder.get("released"):
        holder["released"] = True
        gate.release(payment)


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
    h["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return Response(body, status_code=status, headers=h, media_type="application/json")


def _raise_answer(scope: Scope, answer: Answer) -> None:
    exc_class = _payment_http_exception()
    # Register our handler in the app's live exception-handler table so the 402 body is the
    # protocol's JSON, not FastAPI's {"detail": …} wrapper (which would still carry the headers).
    handlers = scope.get("starlette.exception_handlers")
    if handlers is not None and exc_class not in handlers[0]:
        handlers[0][exc_class] = _answer_handler
    raise exc_class(answer)


class PaywallGuard:
    """Returned by :meth:`VlexivoServer.paywall`.

    * FastAPI: ``payment = Depends(vlx.paywall(price="0.001"))`` — verifies before the handler,
      answers 402/409/5xx itself, releases the nonce if the handler raises (or, with the ASGI
      middleware installed, answers 5xx), and adds ``Vlexivo-Receipt``.
    * Flask: ``@vlx.paywall(price="0.001")`` on a view — the payment is in ``flask.g.vlx_payment``.
    * Any WSGI app: ``guard.wsgi(app)`` paywalls every request of ``app``.
    """

    def __init__(self, server: VlexivoServer, route: PaidRoute) -> None:
        self.server = server
        self.route = route
        self._gate = Gate(server, route, "paywall()")
        # FastAPI decides how to call a dependency by inspecting ``call.__call__``: an async
        # generator makes it a yield-dependency, awaited on the event loop. The class-level
        # __call__ below dispatches between that and the decorator use.
        self.__call__ = self._dependency  # type: ignore[method-assign]

    @property
    def __signature__(self) -> inspect.Signature:
        from starlette.requests import Request
        from starlette.responses import Response

        P = inspect.Parameter
        return inspect.Signature(
            [
                P("request", P.POSITIONAL_OR_KEYWORD, annotation=Request),
                P("response", P.POSITIONAL_OR_KEYWORD, annotation=Response),
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

        return WsgiPaywall(app, server=self.server, routes={"*": self.route})

    async def _dependency(self, request: Any, response: Any) -> AsyncIterator[_native.Payment]:
        gate = self._gate
        scope = request.scope
        method = scope["method"]
        path = binding_path(scope)
        now = gate._now()
        body: bytes | None = None
        try:
            if gate.needs_body:
                body = await request.body()
                if len(body) > self.server.max_body_bytes:
                    raise _Reject(gate.too_large(method, path, now))
            if gate.route.price is not None:
                price = gate.route.price
            else:
                price = await gate.price_async(_pricing_request(scope, body, request), now)
            payment = gate.admit(proof_of(scope), method, path, price, body, now)
        except _Reject as r:
            _raise_answer(scope, r.answer)
            raise AssertionError("unreachable") from None
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["vlx_payment"] = payment
        holder = scope.get(_HOLDER_KEY)
        if holder is not None:
            holder["payment"] = payment
            holder["gate"] = gate
        else:
            response.headers["Vlexivo-Receipt"] = payment.receipt
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        try:
            yield payment
        except BaseException as exc:
            # The handler raised: release, unless it answered a client error (HTTPException < 500)
            # or the middleware (which sees the real response) will.
            if holder is None and getattr(exc, "status_code", 500) >= 500:
                gate.release(payment)
            raise

