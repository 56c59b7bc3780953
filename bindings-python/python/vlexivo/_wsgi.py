"""WSGI adapters: the Flask view decorator and a generic WSGI middleware."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import _native
from .server import EXPOSE_HEADERS, RECEIPT_HEADER, Answer, Gate, PricingRequest, RouteTable, _Reject

if TYPE_CHECKING:
    from .server import VlexivoServer

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS_TEXT = {402: "Payment Required", 409: "Conflict", 413: "Content Too Large", 431: "Request Header Fields Too Large",
                500: "Internal Server Error", 503: "Service Unavailable", 400: "Bad Request", 401: "Unauthorized"}


def binding_path(environ: dict[str, Any]) -> str:
    """The request path as the client's URL spells it (what the challenge and token bind)."""
    raw: str | None = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = raw.split("?", 1)[0]
        if "://" in raw:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        return raw
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # PEP 3333: PATH_INFO is the decoded bytes as latin-1; re-encode as the client sent it.
    return quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~")


def _header_pairs(environ: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            yield k[5:].replace("_", "-").lower(), v
        elif k in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            yield k.replace("_", "-").lower(), v


def _status_line(status: int) -> str:
    return f"{status} {_STATUS_TEXT.get(status, 'Error')}"


def _answer_headers(answer: Answer) -> list[tuple[str, str]]:
    status, headers, body = answer
    return [("Content-Type", "application/json"), ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
            ("Content-Length", str(len(body.encode()))), *headers]


def _read_wsgi_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The whole body (None if over ``limit``); ``wsgi.input`` is replaced so the app reads it too."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if length > limit:
        return None
    body: bytes
    if length > 0 and stream is not None:
        body = stream.read(length)
    elif stream is not None and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = stream.read(limit + 1)
        if len(body) > limit:
            return None
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def flask_view(gate: Gate, view: Callable[..., Any]) -> Callable[..., Any]:
    """``@vlx.paywall(...)`` on a Flask view: the payment is in ``flask.g.vlx_payment``."""

    @functools.wraps(view)
    def paid_view(*args: Any, **kwargs: Any) -> Any:
        import flask
        from werkzeug.exceptions import HTTPException

        request = flask.request
        environ = request.environ
        method = request.method
        path = binding_path(environ)
        now = gate._now()
        body: bytes | None = None
        try:
            if gate.needs_body:
                body = request.get_data(cache=True)
                if len(body) > gate.server.max_body_bytes:
                    raise _Reject(gate.too_large(method, path, now))
            if gate.route.price is not None:
                price = gate.route.price
            else:
                preq = PricingRequest(method, path, environ.get("QUERY_STRING", ""), _header_pairs(environ), body, request)
                price = gate.price_sync(preq, now)
            payment = gate.admit(request.headers.get("Vlexivo-Proof"), method, path, price, body, now)
        except _Reject as r:
            status, headers, text = r.answer
            return flask.Response(text, status=status, headers=_answer_headers(r.answer))
        flask.g.vlx_payment = payment
        try:
            rv = flask.current_app.ensure_sync(view)(*args, **kwargs)
            resp = flask.current_app.make_response(rv)
        except HTTPException as e:
            if (e.code or 500) >= 500:
                gate.release(payment)
            raise
        except BaseException:
            gate.release(payment)
            raise
        if resp.status_code >= 500:
            gate.release(payment)
        resp.headers[RECEIPT_HEADER] = payment.receipt
        resp.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return resp

    return paid_view


class _PaidBody:
    """Wraps the app's response iterable: releases the nonce when the response turned out to
    be a 5xx or failed while streaming, once the server closes it (PEP 3333)."""

    __slots__ = ("_it", "_close", "_on_close")

    def __init__(self, result: Iterable[bytes], on_close: Callable[[bool], None]) -> None:
        self._it = iter(result)
        self._close = getattr(result, "close", None)
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._it
        except BaseException:
            self._on_close(True)
            raise

    def close(self) -> None:
        try:
            if self._close is not None:
                self._close()
        finally:
            self._on_close(False)


class WsgiPaywall:
    """Generic WSGI middleware. The payment is in ``environ["vlexivo.payment"]``."""

    def __init__(self, app: WSGIApp, *, server: VlexivoServer, routes: Mapping[str, Any]) -> None:
        self.app = app
        self.server = server
        self.table = RouteTable(server, routes)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        gate = self.table.match(method, environ.get("PATH_INFO", "") or "/")
        if gate is None:
            return self.app(environ, start_response)
        path = binding_path(environ)
        now = gate._now()
        body: bytes | None = None
        try:
            if gate.needs_body:
                body = _read_wsgi_body(environ, self.server.max_body_bytes)
                if body is None:
                    raise _Reject(gate.too_large(method, path, now))
            if gate.route.price is not None:
                price = gate.route.price
            else:
                preq = PricingRequest(method, path, environ.get("QUERY_STRING", ""), _header_pairs(environ), body, environ)
                price = gate.price_sync(preq, now)
            payment = gate.admit(environ.get("HTTP_VLEXIVO_PROOF"), method, path, price, body, now)
        except _Reject as r:
            start_response(_status_line(r.answer[0]), _answer_headers(r.answer))
            return [r.answer[2].encode()]
        environ["vlexivo.payment"] = payment
        receipt = payment.receipt
        status = [0]
        released = [False]

        def release_once() -> None:
            if not released[0]:
                released[0] = True
                gate.release(payment)

        def paid_start_response(st: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(st[:3])
            if status[0] >= 500:
                # Before the server sends anything: a client retrying as soon as it sees the 5xx
                # must find the nonce free (the server closes the body later, on its own thread).
                release_once()
            headers = [*headers, (RECEIPT_HEADER, receipt), ("Access-Control-Expose-Headers", EXPOSE_HEADERS)]
            return start_response(st, headers, exc_info) if exc_info is not None else start_response(st, headers)

        def on_close(failed: bool) -> None:
            if failed or status[0] >= 500 or status[0] == 0:
                release_once()

        try:
            result = self.app(environ, paid_start_response)
        except BaseException:
            on_close(True)
            raise
        return _PaidBody(result, on_close)


__all__ = ["WsgiPaywall", "flask_view", "binding_path", "_native"]
