"""WSGI adapters: the Flask view decorator and a WSGI middleware (Flask-aware: it prices the
view Flask's URL map will run; for any other WSGI app, the path the app reads)."""

from __future__ import annotations

import functools
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from . import _native
from ._gate import (
    PAYER_HEADER,
    PROOF_HEADER,
    RECEIPT_HEADER,
    Answer,
    Gate,
    Paid,
    PricingRequest,
    Provider,
    Reject,
    admit,
    effective,
    expose_value,
    exposes_headers,
    fixed_prices,
    for_browser,
    is_free_request,
    needs_body,
    require,
    sends_receipt,
    together,
)
from ._routes import RouteTable, build_table, config_message, template_form

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

logger = logging.getLogger("vlexivo")

# The proof and payer-hint headers as WSGI environ keys.
_PROOF_KEY = "HTTP_" + PROOF_HEADER.upper().replace("-", "_")
_PAYER_KEY = "HTTP_" + PAYER_HEADER.upper().replace("-", "_")

# The paid request's record (a `Paid`), shared by every paywall on the request.
PAID_KEY = "vlexivo.paid"

_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    409: "Conflict",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# An absolute-form request target ("http://host/path"), as opposed to a path that holds a URL.
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def request_origin(environ: dict[str, Any]) -> tuple[str, str | None]:
    """The scheme and ``Host`` the request came with (core binds them when no origin is
    configured); the server's name and port when a client sent no ``Host``."""
    host = environ.get("HTTP_HOST")
    if host is None and environ.get("SERVER_NAME"):
        host = f"{environ['SERVER_NAME']}:{environ.get('SERVER_PORT', '')}"
    return environ.get("wsgi.url_scheme", "http"), host


def binding_path(environ: dict[str, Any]) -> str:
    """The request path as the client's URL spells it (what the challenge and token bind)."""
    raw: str | None = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = raw.split("?", 1)[0]
        if not raw.startswith("/") and _ABSOLUTE_FORM.match(raw):
            # Absolute form: drop the scheme and authority, keep the path.
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


def _preflight(environ: dict[str, Any], method: str) -> bool:
    return is_free_request(method, "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ)


def _status_line(status: int) -> str:
    return f"{status} {_STATUS_TEXT.get(status, 'Error')}"


_EXPOSE_KEY = "Access-Control-Expose-Headers"


def cross_origin(environ: Mapping[str, Any]) -> bool:
    """Whether our headers are exposed to CORS on this request's answers, paid or refused (core
    decides from whether it carries ``Origin``)."""
    return exposes_headers("HTTP_ORIGIN" in environ)


def with_exposed(headers: list[tuple[str, str]], environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``headers`` (a WSGI list) with our headers merged into ``Access-Control-Expose-Headers``
    when the request is cross-origin (core's value; the application's own list kept)."""
    if not cross_origin(environ):
        return headers
    for i, (k, v) in enumerate(headers):
        if k.lower() == "access-control-expose-headers":
            merged = expose_value(v)
            return headers if merged is None else [*headers[:i], (k, merged), *headers[i + 1 :]]
    return [*headers, (_EXPOSE_KEY, expose_value(None) or "")]


def _answer_headers(answer: Answer, environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    _status, headers, body = answer
    typed = any(k.lower() == "content-type" for k, _ in headers)
    return with_exposed(
        [
            *([] if typed else [("Content-Type", "application/json")]),
            ("Content-Length", str(len(body.encode()))),
            *headers,
        ],
        environ,
    )


def browser_answer(answer: Answer, environ: Mapping[str, Any]) -> Answer:
    """The refusal as this request's client should get it (core's page for a browser)."""
    return for_browser(answer, environ.get("HTTP_ACCEPT"), environ.get("HTTP_VLEXIVO_PROOF") is not None)


def _send_answer(
    start_response: StartResponse, answer: Answer, method: str, environ: Mapping[str, Any]
) -> list[bytes]:
    start_response(_status_line(answer[0]), _answer_headers(answer, environ))
    # A HEAD answer has the headers of the GET one and no body (a body would be read as the
    # start of the next response on a keep-alive connection).
    return [] if method == "HEAD" else [answer[2].encode()]


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


def _price_all(
    gates: Sequence[Gate],
    method: str,
    path: str,
    environ: dict[str, Any],
    body: bytes | None,
    raw: Any,
    now: int | None,
) -> _native.Price:
    if len(gates) == 1 and gates[0].route.price is not None:
        return gates[0].route.price
    prices = fixed_prices(gates)
    if prices is None:
        req = PricingRequest(method, path, environ.get("QUERY_STRING", ""), _header_pairs(environ), body, raw)
        prices = [g.price_sync(req, now) for g in gates]
    return prices[0] if len(prices) == 1 else effective(gates, prices, method, path, now)


# --- Flask ------------------------------------------------------------------------------------


def view_gates(view: Any) -> tuple[Gate, ...]:
    """The paywalls a view was decorated with (outermost first)."""
    gates: tuple[Gate, ...] = getattr(view, "__vlexivo_gates__", ())
    return gates


def flask_view(gate: Gate, view: Callable[..., Any]) -> Callable[..., Any]:
    """``@vlx.paywall(...)`` on a Flask view: the payment is in ``flask.g.vlx_payment``.

    Stacked decorators make one paywall: one proof, asked for once at the highest price."""
    inner = view_gates(view)
    target: Callable[..., Any] = getattr(view, "__vlexivo_view__", view) if inner else view
    gates = (gate, *(g for g in inner if g is not gate))

    @functools.wraps(target)
    def paid_view(*args: Any, **kwargs: Any) -> Any:
        import flask
        from werkzeug.exceptions import HTTPException

        request = flask.request
        environ = request.environ
        method = request.method
        app = flask.current_app
        if _preflight(environ, method):
            return app.ensure_sync(target)(*args, **kwargs)
        path = binding_path(environ)
        now = gate.provider.now()
        body: bytes | None = None
        paid: Paid | None = environ.get(PAID_KEY)
        try:
            if paid is not None and paid.native is gate.native:
                # An outer paywall (the WSGI middleware) took the proof: check its amount only.
                missing = [g for g in gates if not paid.covers(g)]
                if missing:
                    if needs_body(missing):
                        body = request.get_data(cache=True)
                    price = _price_all(missing, method, path, environ, body, request, now)
                    require(paid, missing[0], price, method, path, request_origin(environ), now, body)
                owner = False
            else:
                if needs_body(gates):
                    body = request.get_data(cache=True)
                    if len(body) > gate.provider.max_body_bytes:
                        raise Reject(gate.too_large(method, path, now))
                price = _price_all(gates, method, path, environ, body, request, now)
                paid = admit(
                    gates,
                    request.headers.get(PROOF_HEADER),
                    method,
                    path,
                    request_origin(environ),
                    price,
                    body,
                    now,
                    request.headers.get(PAYER_HEADER),
                )
                environ[PAID_KEY] = paid
                owner = True
        except Reject as r:
            answer = browser_answer(r.answer, flask.request.environ)
            status, _headers, text = answer
            return flask.Response(text, status=status, headers=_answer_headers(answer, flask.request.environ))
        flask.g.vlx_payment = paid.payment
        if not owner:
            return app.ensure_sync(target)(*args, **kwargs)
        try:
            rv = app.ensure_sync(target)(*args, **kwargs)
            resp = app.make_response(rv)
        except HTTPException as e:
            # Answered in full with its status (core: a 4xx keeps the payment, a 5xx releases it).
            paid.settle(e.code or 0, True, e.code is not None)
            raise
        except BaseException:
            paid.settle(0, True, False)
            raise
        status = resp.status_code
        if not sends_receipt(status):
            paid.settle(status, False, True)  # a failure: released
            return resp
        if resp.is_streamed:
            resp.response = _release_if_stream_fails(resp.response, paid, status)
        resp.headers[RECEIPT_HEADER] = paid.payment.receipt
        if cross_origin(flask.request.environ):
            merged = expose_value(resp.headers.get(_EXPOSE_KEY))
            if merged is not None:
                resp.headers[_EXPOSE_KEY] = merged
        return resp

    paid_view.__vlexivo_gates__ = gates  # type: ignore[attr-defined]
    paid_view.__vlexivo_view__ = target  # type: ignore[attr-defined]
    return paid_view


def _release_if_stream_fails(body: Iterable[Any], paid: Paid, status: int) -> Iterator[Any]:
    """A streamed body that raises before its end is a failed handler; a client that went away
    (the server closes the iterator early) is not."""
    try:
        yield from body
    except GeneratorExit:
        raise
    except BaseException:
        paid.settle(status, True, False)
        raise


def _flask_app(app: Any) -> Any:
    """The Flask app behind ``app`` (a Flask app, or its bound ``wsgi_app``, under any number of
    paywalls), if any."""
    while isinstance(app, WsgiPaywall):
        app = app.app
    for candidate in (app, getattr(app, "__self__", None)):
        if (
            candidate is not None
            and hasattr(candidate, "url_map")
            and hasattr(candidate, "create_url_adapter")
        ):
            return candidate
    return None


class _FlaskRoutes:
    """The rule (and view) Flask's own URL adapter matches for a request, as Flask itself
    matches it before dispatching."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._forms: dict[str, str] = {}

    def form(self, rule: str) -> str:
        f = self._forms.get(rule)
        if f is None:
            f = self._forms[rule] = template_form(rule)
        return f

    def rule(self, environ: dict[str, Any], method: str) -> Any:
        from werkzeug.exceptions import HTTPException

        fl = self.app
        try:
            adapter = fl.create_url_adapter(fl.request_class(environ, populate_request=False, shallow=True))
            rule, _ = adapter.match(return_rule=True)
        except HTTPException:  # 404, 405, a slash redirect, an untrusted host: no view runs
            return None
        if method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
            return None  # Flask answers it itself
        return rule

    def view(self, rule: Any) -> Any:
        return self.app.view_functions.get(rule.endpoint)

    def declared(self) -> list[tuple[str, frozenset[str] | None]]:
        return [(r.rule, frozenset(r.methods) if r.methods else None) for r in self.app.url_map.iter_rules()]


class _PaidBody:
    """Wraps the app's response iterable: settles the payment once the server closes it
    (PEP 3333): released if the body failed before its end, or the answer was a 5xx."""

    __slots__ = ("_close", "_done", "_it", "_settle")

    def __init__(self, result: Iterable[bytes], settle: Callable[[bool, bool], None]) -> None:
        self._it = iter(result)
        self._close = getattr(result, "close", None)
        self._settle = settle
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._it
        except GeneratorExit:
            raise
        except BaseException:
            self._settle(True, False)
            raise
        self._done = True

    def close(self) -> None:
        try:
            if self._close is not None:
                self._close()
        finally:
            self._settle(False, self._done)


class WsgiPaywall:
    """WSGI middleware. The payment is in ``environ["vlexivo.payment"]``.

    Around a Flask app (``app.wsgi_app = vlx.wsgi_paywall(app.wsgi_app, routes=…)``) the route
    keys name Flask rules (``"GET /items/<int:item_id>"``), matched by Flask's own URL map, and
    the prices of the view's ``@vlx.paywall`` decorators are asked together with the key's. Around
    any other WSGI app the keys match the ``PATH_INFO`` the app reads."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        server: Provider,
        routes: Mapping[str, Any] | None = None,
        table: RouteTable | None = None,
    ) -> None:
        self.app = app
        self.server = server
        self.table = table if table is not None else build_table(server, routes or {})
        fl = _flask_app(app) if table is None else None
        self.flask = _FlaskRoutes(fl) if fl is not None else None
        self._config_error: str | None = None
        self._checked = self.flask is None

    def _check(self) -> None:
        # Once, on the first request: by then the app has declared its routes.
        assert self.flask is not None
        declared = self.flask.declared()
        unmatched = self.table.unmatched(declared)
        if unmatched:
            self._config_error = config_message(unmatched, (t for t, _ in declared))
            logger.error("vlexivo: %s; answering 500 config_invalid", self._config_error)
        self._checked = True

    def _own(self, environ: dict[str, Any], method: str) -> tuple[Gate | None, Any]:
        """This middleware's gate for the request, and the Flask rule that matched (if any)."""
        if self.flask is None:
            return self.table.match(method, environ.get("PATH_INFO", "") or "/"), None
        rule = self.flask.rule(environ, method)
        if rule is None:
            return None, None
        return self.table.match(method, self.flask.form(rule.rule)), rule

    def _gates(self, environ: dict[str, Any], method: str) -> Sequence[Gate]:
        """Every paywall on the request's way that this one asks for: its own key, then the
        paywall middlewares it wraps and the view's decorators, all of one provider: one
        price, asked once."""
        g, rule = self._own(environ, method)
        if g is None:
            return ()
        more: list[Gate | None] = []
        node = self.app
        while isinstance(node, WsgiPaywall):  # paywalls stacked inside this one
            ig, irule = node._own(environ, method)
            more.append(ig)
            rule = rule or irule
            node = node.app
        if rule is not None and self.flask is not None:
            more.extend(view_gates(self.flask.view(rule)))
        return together(g, more)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if _preflight(environ, method):
            return self.app(environ, start_response)
        if not self._checked:
            self._check()
        if self._config_error is not None:
            err = _native.error_for("config_invalid", "paywall route table")
            return _send_answer(
                start_response,
                self.server.native.reject(err, method, binding_path(environ), None),
                method,
                environ,
            )
        gates = self._gates(environ, method)
        if not gates:
            return self.app(environ, start_response)
        path = binding_path(environ)
        now = self.server.now()
        body: bytes | None = None
        earlier: Paid | None = environ.get(PAID_KEY)
        same = earlier is not None and earlier.native is gates[0].native
        try:
            if needs_body(gates):
                body = _read_wsgi_body(environ, self.server.max_body_bytes)
                if body is None:
                    raise Reject(gates[0].too_large(method, path, now))
            if earlier is not None and same:
                # An outer paywall took the proof: this one checks the amount only.
                missing = [g for g in gates if not earlier.covers(g)]
                if missing:
                    price = _price_all(missing, method, path, environ, body, environ, now)
                    require(earlier, missing[0], price, method, path, request_origin(environ), now, body)
            else:
                price = _price_all(gates, method, path, environ, body, environ, now)
                paid = admit(
                    gates,
                    environ.get(_PROOF_KEY),
                    method,
                    path,
                    request_origin(environ),
                    price,
                    body,
                    now,
                    environ.get(_PAYER_KEY),
                )
        except Reject as r:
            return _send_answer(start_response, browser_answer(r.answer, environ), method, environ)
        if same:
            return self.app(environ, start_response)  # the outer paywall settles
        environ[PAID_KEY] = paid
        environ["vlexivo.payment"] = paid.payment
        receipt = paid.payment.receipt
        status = [0]

        def paid_start_response(st: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(st[:3])
            if sends_receipt(status[0]):
                headers = with_exposed([*headers, (RECEIPT_HEADER, receipt)], environ)
            else:
                # A failure (5xx), released before the server sends anything: a client retrying as
                # soon as it sees it must find the nonce free (the body is closed later).
                paid.settle(status[0], False, False)
            return (
                start_response(st, headers, exc_info) if exc_info is not None else start_response(st, headers)
            )

        def settle(raised: bool, complete: bool) -> None:
            paid.settle(status[0], raised, complete)

        try:
            result = self.app(environ, paid_start_response)
        except BaseException:
            settle(True, False)
            raise
        return _PaidBody(result, settle)


__all__ = ["PAID_KEY", "WsgiPaywall", "binding_path", "flask_view"]
