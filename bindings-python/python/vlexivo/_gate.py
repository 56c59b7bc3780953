"""The gate every provider adapter goes through (ASGI middleware, FastAPI dependency, Flask
decorator, WSGI middleware): price a route, verify and consume the proof once for every paywall
on the request's path, and decide from the handler's outcome whether the nonce is released.

Adapters only move bytes; the rules here are thin calls into the native core."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import parse_qsl

from . import _native
from .errors import NATIVE_ERRORS, as_native

logger = logging.getLogger("vlexivo")

Payment = _native.Payment
PriceValue = str | Decimal | int | float | _native.Price
PriceResolver = Callable[["PricingRequest"], PriceValue | Awaitable[PriceValue]]
# (status, headers, body) as the native module shapes it.
Answer = tuple[int, list[tuple[str, str]], str]


def for_browser(answer: Answer, accept: str | None, proof_present: bool) -> Answer:
    """Core's HTML 402 page for a browser that asked without a proof (same status, same
    challenge header, its own ``Content-Type``); any other answer unchanged (agents and SDKs
    keep the JSON)."""
    return _native.for_browser(answer, accept, proof_present)


# Header names as core spells them (case-insensitive on the wire).
PROOF_HEADER = _native.PROOF_HEADER.lower()
PAYER_HEADER = _native.PAYER_HEADER.lower()
RECEIPT_HEADER = _native.RECEIPT_HEADER
EXPOSE_HEADERS = _native.EXPOSE_HEADERS
DEFAULT_MAX_BODY = 1 << 20


class Provider(Protocol):
    """What a gate needs of its :class:`~vlexivo.VlexivoServer`."""

    bind_body: bool
    max_body_bytes: int

    @property
    def native(self) -> _native.Paywall: ...

    def now(self) -> int | None: ...


@dataclass(frozen=True)
class PricedPayer:
    """Who a request is priced for (``PricingRequest.payer``): the payer its proof proves
    (``proven``, on the paid retry), else the one its ``Vlexivo-Payer`` hint names (unverified,
    on the unpaid request). A challenge priced for a hinted payer names it, only that wallet
    may pay it, and the paid retry is priced again for the proven payer: a wallet that hints
    another's address is never served cheaper."""

    address: str
    proven: bool


class PricingRequest:
    """What a price resolver sees, the same in every framework: ``method``, ``path``,
    ``query`` (first value per name), ``headers`` (lower-case names), ``body`` (bytes, when
    the route reads it), ``json()``, ``raw`` (the framework's own request object, or the
    ASGI scope / WSGI environ) and ``payer`` (:class:`PricedPayer` or ``None``)."""

    __slots__ = (
        "_header_pairs",
        "_headers",
        "_json",
        "_native",
        "_now",
        "_payer",
        "body",
        "method",
        "path",
        "query_string",
        "raw",
    )

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
        self._native: _native.Paywall | None = None
        self._now: int | None = None
        self._payer: Any = _UNSET

    @property
    def payer(self) -> PricedPayer | None:
        """Who this request is priced for (core decides): the payer of its proof when the proof
        verifies, else the payer its ``Vlexivo-Payer`` header names, else ``None`` (a missing or
        malformed hint: price it as anyone's)."""
        if self._payer is _UNSET:
            found = None
            if self._native is not None:
                h = self.headers
                p = self._native.priced_payer(h.get(PROOF_HEADER), h.get(PAYER_HEADER), self._now)
                found = None if p is None else PricedPayer(p[0], p[1])
            self._payer = found
        payer: PricedPayer | None = self._payer
        return payer

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


class Reject(Exception):
    """Answer with this instead of running the handler."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer


# --- the response policy: core's (vlexivo_core::response_policy); asked here, never re-decided ---

is_free_request = _native.is_free_request  # only a CORS preflight passes unpaid
priced_method = _native.priced_method  # HEAD costs what GET costs

# Core's answers to the two questions asked of every paid response, remembered per status (they
# depend on nothing else, and a few statuses ever occur): a native call per answer would cost
# more than the dictionary look-up. The adapters' hot paths read the dictionaries first.
SENDS_RECEIPT: dict[int, bool] = {}
RELEASES: dict[tuple[int, bool, bool], bool] = {}


def _status_key(status: Any) -> bool:
    return type(status) is int and 0 <= status <= 999


def sends_receipt(status: int) -> bool:
    """Whether a paid response with this status carries ``Vlexivo-Receipt``: when it keeps the
    payment (core's ``sends_receipt``)."""
    known = SENDS_RECEIPT.get(status)
    if known is None:
        known = _native.sends_receipt(status)
        if _status_key(status):
            SENDS_RECEIPT[status] = known
    return known


def releases(status: int, raised: bool, complete: bool) -> bool:
    """Whether the nonce is released once the handler has ended (core's ``releases``): ``status``
    of the response it started (0: none), whether it raised, whether the response was complete."""
    key = (status, raised, complete)
    known = RELEASES.get(key)
    if known is None:
        known = _native.releases(status or None, raised, complete)
        if _status_key(status) and type(raised) is bool and type(complete) is bool:
            RELEASES[key] = known
    return known


# Whether an answer, paid or refused, lists our headers in ``Access-Control-Expose-Headers``
# depends only on whether its request carries ``Origin``: core's two answers, asked once.
_EXPOSES = (_native.exposes_headers(False), _native.exposes_headers(True))
_EXPOSE_ALONE = _native.expose_value(None)


def exposes_headers(origin_header: bool) -> bool:
    """Whether an answer to a request that carries ``Origin`` (``origin_header``) or not exposes
    our headers to CORS (core's ``exposes_headers``: only a cross-origin request's)."""
    return _EXPOSES[bool(origin_header)]


def expose_value(existing: str | None) -> str | None:
    """The ``Access-Control-Expose-Headers`` value of an answer that exposes our headers, given
    the application's own (``None``: unset): ours merged in, or ``None`` when it needs no change
    (core's ``expose_value``)."""
    return _EXPOSE_ALONE if existing is None else _native.expose_value(existing)


class Gate:
    """One paywall: a route's price under one provider."""

    __slots__ = ("currency", "label", "native", "needs_body", "provider", "route", "scope")

    def __init__(self, provider: Provider, route: PaidRoute, label: str) -> None:
        self.provider = provider
        self.native = provider.native
        self.route = route
        self.label = label
        self.needs_body = route.resolver is not None or provider.bind_body
        self.currency = route.currency
        self.scope = route.scope

    def __repr__(self) -> str:
        return f"Gate({self.label})"

    def _bad_price(self, method: str, path: str, value: Any, why: str, now: int | None) -> Reject:
        # A provider bug: never serve the request for free or at a wrong price.
        logger.error(
            "vlexivo: price for %s (%s %s) is invalid: %r (%s); answering 500 price_invalid",
            self.label,
            method,
            path,
            value,
            why,
        )
        return Reject(self.native.reject("price_invalid", method, path, None, self.currency, self.scope, now))

    def _to_price(self, value: Any, method: str, path: str, now: int | None) -> _native.Price:
        try:
            return _native.parse_price(value, self.currency)
        except NATIVE_ERRORS as e:
            raise self._bad_price(method, path, value, getattr(e, "message", str(e)), now) from None

    def price_sync(self, req: PricingRequest, now: int | None) -> _native.Price:
        fixed = self.route.price
        if fixed is not None:
            return fixed
        try:
            value = self._resolve(req, now)
            if inspect.isawaitable(value):
                value = _run_awaitable(value)
        except Exception as e:
            raise self._raised(req, e, now) from None
        return self._to_price(value, req.method, req.path, now)

    async def price_async(self, req: PricingRequest, now: int | None) -> _native.Price:
        fixed = self.route.price
        if fixed is not None:
            return fixed
        try:
            value = self._resolve(req, now)
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:
            raise self._raised(req, e, now) from None
        return self._to_price(value, req.method, req.path, now)

    def _resolve(self, req: PricingRequest, now: int | None) -> Any:
        assert self.route.resolver is not None
        req._native = self.native
        req._now = now
        return self.route.resolver(req)

    def _raised(self, req: PricingRequest, e: Exception, now: int | None) -> Reject:
        logger.exception("vlexivo: price resolver for %s raised", self.label)
        return self._bad_price(req.method, req.path, "<raised>", repr(e), now)

    def too_large(self, method: str, path: str, now: int | None) -> Answer:
        return self.native.reject("request_too_large", method, path, None, self.currency, self.scope, now)


def _run_awaitable(aw: Awaitable[Any]) -> Any:
    """An async resolver used from a sync framework (Flask/WSGI): run it to completion."""
    import asyncio

    async def run() -> Any:
        return await aw

    return asyncio.run(run())


def together(first: Gate, more: Iterable[Gate | None]) -> tuple[Gate, ...]:
    """The paywalls asked for together with ``first``: it, then every other one of the same
    provider (a proof pays one provider; another provider's paywall asks on its own)."""
    out = [first]
    native = first.native
    for g in more:
        if g is not None and g.native is native and g not in out:
            out.append(g)
    return tuple(out)


def needs_body(gates: Sequence[Gate]) -> bool:
    return any(g.needs_body for g in gates)


def fixed_prices(gates: Sequence[Gate]) -> list[_native.Price] | None:
    """The gates' prices when none needs a resolver (the common, allocation-light case)."""
    out = []
    for g in gates:
        p = g.route.price
        if p is None:
            return None
        out.append(p)
    return out


def effective(
    gates: Sequence[Gate], prices: Sequence[_native.Price], method: str, path: str, now: int | None
) -> _native.Price:
    """One request, one price: core's effective price of every paywall on the path (the highest;
    paywalls in different currencies are the provider's mistake, a 500 ``price_invalid``)."""
    try:
        return _native.effective_price(prices)
    except NATIVE_ERRORS as caught:
        e = as_native(caught)
        raise gates[0]._bad_price(method, path, [str(x) for x in prices], e.message, now) from None


class Plan:
    """What one request of a route needs, computed once per route and method: the gates of every
    paywall on its way, whether any reads the body, and their one price when all are fixed."""

    __slots__ = ("gates", "inline", "needs_body", "price")

    def __init__(self, gates: Sequence[Gate]) -> None:
        self.gates = tuple(gates)
        self.needs_body = needs_body(gates)
        prices = fixed_prices(gates)
        self.price: _native.Price | None = None
        if prices:
            # On an error: answered per request, as price_invalid.
            with contextlib.suppress(*NATIVE_ERRORS):
                self.price = _native.effective_price(prices)
        # The common case, verified in one native call on the event loop: a fixed price, no body
        # to read, a nonce store that answers in microseconds (not over the network).
        self.inline = self.price is not None and not self.needs_body and not self.gates[0].native.store_blocks

    def __bool__(self) -> bool:
        return bool(self.gates)


NO_PLAN = Plan(())


# The request's (scheme, Host): bound into challenges and proofs when no origin is configured.
Origin = tuple[str, str | None]


# A paid request: its payment (``payment``), the paywall that took it (``native``), the price
# (``price``), the gates whose price it covers (``gates``, ``covers(gate)``) and its nonce's fate
# (``release()``, ``settle(status, raised, complete)``, ``released``). Native: the ASGI
# middleware's native entry makes and reads it without a Python frame. Held in the ASGI scope /
# WSGI environ so that every later paywall on the same request (a FastAPI dependency under the
# middleware, a Flask decorator under the WSGI middleware, a second stacked decorator) only
# checks that the payment covers its price (:func:`require`) instead of asking again.
Paid = _native.Paid


def require(
    paid: Paid,
    gate: Gate,
    price: _native.Price,
    method: str,
    path: str,
    origin: Origin,
    now: int | None,
    body: bytes | None,
) -> None:
    """A later paywall on the request (at ``price``) checks the payment's amount only, as core
    decides: covered, or raise :class:`Reject` (the nonce released, the effective price asked)."""
    ask = _native.check_stacked(paid.payment.amount, paid.payment.currency, price)
    if ask is not None:
        raise underpaid(paid, gate, ask, method, path, origin, now, body)


def _release_failed(payment: _native.Payment, caught: BaseException) -> None:
    """:meth:`Paid.release`: the store could not give the nonce back (the response stands)."""
    logger.error("vlexivo: could not release nonce %s: %s", payment.nonce, as_native(caught).message)


def admit(
    gates: Sequence[Gate],
    proof: str | None,
    method: str,
    path: str,
    origin: Origin,
    price: _native.Price,
    body: bytes | None,
    now: int | None,
    hint: str | None = None,
) -> Paid:
    """Verify the proof at the effective price and consume its nonce, or raise :class:`Reject`
    with the answer to send. ``hint``: the request's ``Vlexivo-Payer`` header; a challenge for a
    price a resolver computed names the payer it hints."""
    scheme, host = origin
    if hint is not None and all(g.route.resolver is None for g in gates):
        hint = None
    try:
        payment = gates[0].native.verify(
            proof, method, path, price, price.currency, now, body, scheme=scheme, host=host, payer=hint
        )
    except NATIVE_ERRORS as caught:
        raise refused(gates, caught, method, path, origin, price, body, now, hint) from None
    return accepted(gates, payment, price)


def accepted(gates: Sequence[Gate], payment: _native.Payment, price: _native.Price) -> Paid:
    """The request is paid: tell the provider (its usage answers change), keep the nonce's fate."""
    gate = gates[0]
    paid_by = getattr(gate.provider, "_paid_by", None)
    if paid_by is not None:
        paid_by(payment)
    return Paid(payment, gate.native, price, gates)


def refused(
    gates: Sequence[Gate],
    caught: BaseException,
    method: str,
    path: str,
    origin: Origin,
    price: _native.Price,
    body: bytes | None,
    now: int | None,
    hint: str | None,
) -> Reject:
    """The answer for a proof that does not pay the request (core shapes it from the error)."""
    gate = gates[0]
    e = as_native(caught)
    if e.status >= 500:
        logger.error("vlexivo: %s %s: %s (%s)", method, path, e.code, e.message)
    scheme, host = origin
    return Reject(
        gate.native.reject(
            e,
            method,
            path,
            price,
            price.currency,
            gate.scope,
            now,
            body,
            scheme=scheme,
            host=host,
            payer=hint,
        )
    )


async def admit_async(
    gates: Sequence[Gate],
    proof: str | None,
    method: str,
    path: str,
    origin: Origin,
    price: _native.Price,
    body: bytes | None,
    now: int | None,
    to_thread: Callable[..., Awaitable[Paid]] | None = None,
    hint: str | None = None,
) -> Paid:
    """:func:`admit` for an event loop: with a networked nonce store (Redis, PostgreSQL) the
    store's round trip runs on a worker thread (the native call releases the GIL), so a slow or
    unreachable store never stalls the loop; a local store answers in microseconds, inline.
    ``to_thread(fn, *args)`` runs it there (default: anyio's; Django passes asgiref's)."""
    if not gates[0].provider.native.store_blocks or proof is None:
        return admit(gates, proof, method, path, origin, price, body, now, hint)
    if to_thread is None:
        import anyio.to_thread

        to_thread = anyio.to_thread.run_sync
    return await to_thread(admit, gates, proof, method, path, origin, price, body, now, hint)


def underpaid(
    paid: Paid,
    gate: Gate,
    ask: _native.Price,
    method: str,
    path: str,
    origin: Origin,
    now: int | None,
    body: bytes | None,
) -> Reject:
    """A later paywall on the path asks more than the consumed proof paid (its price was not
    known when the proof was checked): give the nonce back and ask once for ``ask``, the
    effective price of both."""
    paid.release()
    err = _native.error_for("token_underpaid", "")
    scheme, host = origin
    return Reject(
        gate.native.reject(
            err, method, path, ask, ask.currency, gate.scope, now, body, scheme=scheme, host=host
        )
    )
