"""The payer side: httpx clients that meet a Vlexivo 402, pay for exactly that call within the
spending caps (topping the wallet up when asked), and replay the request with the proof.

>>> client = VlexivoClient(wallet_key=os.environ["VLX_WALLET_KEY"],
...                        auto_top_up=dict(enabled=True, trigger_balance="1.00", top_up_amount="10.00"))
>>> r = client.post("http://127.0.0.1:8000/api/v1/inference", json={"model": "large-v2"})
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union
from urllib.parse import quote

import httpx

from . import _native
from ._environ import env as _env
from .errors import InsufficientFundsError, VlexivoError, from_native, make_error

__all__ = ["VlexivoClient", "AsyncVlexivoClient", "AutoTopUp", "PaymentEvent"]

Amount = Union[str, Decimal, int, float]
PROOF_HEADER = "Vlexivo-Proof"
# Largest 402 body read (core ignores bigger ones as not-a-challenge anyway).
MAX_402_BODY = 64 * 1024


@dataclass(frozen=True)
class AutoTopUp:
    """Top the wallet up before a payment would take the balance below ``trigger_balance``
    (by ``top_up_amount``, or by more if the price alone needs it)."""

    enabled: bool = True
    trigger_balance: Amount = "1.00"
    top_up_amount: Amount = "10.00"


@dataclass(frozen=True)
class PaymentEvent:
    """Handed to ``on_payment`` after each payment."""

    method: str
    url: str
    amount: str
    currency: str
    tx_hash: str
    payer: str
    nonce: str
    balance: str
    replayed: bool
    receipt: _native.Receipt


OnPayment = Callable[[PaymentEvent], Union[None, Awaitable[None]]]


def _auto_top_up(value: AutoTopUp | Mapping[str, Any] | bool | None) -> AutoTopUp | None:
    if value is None or value is False:
        return None
    if value is True:
        cfg = AutoTopUp()
    elif isinstance(value, AutoTopUp):
        cfg = value
    elif isinstance(value, Mapping):
        cfg = AutoTopUp(**dict(value))
    else:
        raise TypeError("auto_top_up must be an AutoTopUp, a dict or a bool")
    if not cfg.enabled:
        return None
    # Validate now (bad amounts raise AmountError, a ValueError).
    _call(_native.auto_top_up_amount, cfg.trigger_balance, cfg.top_up_amount, "0", "0")
    return cfg


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except _native.NativeError as e:
        raise from_native(e) from None


def _replayable(request: httpx.Request) -> bool:
    """Can this request's body be sent a second time (the paid retry)?"""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return True
    try:  # files=…: replayable when every file can seek back (httpx rewinds them).
        from httpx._multipart import FileField, MultipartStream
    except ImportError:  # pragma: no cover
        return False
    if isinstance(stream, MultipartStream):
        for field in stream.fields:
            if isinstance(field, FileField) and not isinstance(field.file, (bytes, str)):
                if not (hasattr(field.file, "seek") and getattr(field.file, "seekable", lambda: True)()):
                    return False
        return True
    return False


class _Flow:
    """What both clients share: the native payer, the caps and the top-up settings."""

    def __init__(
        self,
        wallet_key: str | None,
        auto_top_up: AutoTopUp | Mapping[str, Any] | bool | None,
        max_per_call: Amount | None,
        max_per_host: Amount | None,
        max_total: Amount | None,
        window: tuple[int, Amount] | None,
        facilitator_url: str | None,
        on_payment: OnPayment | None,
    ) -> None:
        key = wallet_key if wallet_key is not None else _env("VLX_WALLET_KEY")
        if not key:
            raise make_error("wallet_key_invalid", "")
        win = None if window is None else (int(window[0]), window[1])
        self.payer: _native.Payer = _call(
            _native.Payer, key, max_per_call, max_per_host, max_total, win, facilitator_url
        )
        self.auto = _auto_top_up(auto_top_up)
        self.on_payment = on_payment

    @property
    def address(self) -> str:
        return self.payer.address

    def payment_required(self, response: httpx.Response, body: bytes) -> _native.PaymentRequired | None:
        """The decoded challenge, or None for a 402 of another scheme."""
        try:
            return self.payer_parse(response, body)
        except _native.NativeError as e:
            if e.code == "not_payment_required":
                return None
            raise from_native(e) from None

    @staticmethod
    def payer_parse(response: httpx.Response, body: bytes) -> _native.PaymentRequired:
        return _native.parse_payment_required(response.status_code, response.headers.multi_items(), body)

    def prepare(self, pr: _native.PaymentRequired, request: httpx.Request) -> _native.PreparedPayment:
        prepared: _native.PreparedPayment = _call(self.payer.prepare, pr, request.method, str(request.url))
        return prepared

    def top_up_amount(self, balance: str, price: str) -> str | None:
        assert self.auto is not None
        amount: str | None = _call(
            _native.auto_top_up_amount, self.auto.trigger_balance, self.auto.top_up_amount, balance, price
        )
        return amount

    def wallet_url(self, facilitator: str) -> str:
        return f"{facilitator}/v1/wallets/{quote(self.address)}"

    def event(self, request: httpx.Request, r: _native.Receipt) -> PaymentEvent:
        return PaymentEvent(
            method=request.method,
            url=str(request.url),
            amount=r.amount,
            currency=r.currency,
            tx_hash=r.tx_hash,
            payer=r.payer,
            nonce=r.nonce,
            balance=r.balance,
            replayed=r.replayed,
            receipt=r,
        )

    @staticmethod
    def retry_request(request: httpx.Request, token: str) -> httpx.Request:
        headers = request.headers.copy()
        headers[PROOF_HEADER] = token
        return httpx.Request(
            request.method, request.url, headers=headers, stream=request.stream, extensions=request.extensions
        )

    @staticmethod
    def not_replayable() -> VlexivoError:
        return make_error("body_not_replayable", "")

    @staticmethod
    def unavailable(e: Exception) -> VlexivoError:
        return make_error("facilitator_unavailable", type(e).__name__)

    @staticmethod
    def facilitator_error(status: int, body: bytes) -> VlexivoError:
        return from_native(_native.error_from_body(status, body))


def _bounded(body: bytes) -> bytes:
    return body[: MAX_402_BODY + 1]


class VlexivoClient(httpx.Client):
    """``httpx.Client`` that pays Vlexivo 402s (overrides :meth:`send`, so every request method,
    ``stream()`` included, is covered). A 402 of another scheme is returned as is.

    Caps: ``max_per_call``, ``max_per_host``, ``max_total``, ``window=(seconds, max)``; a payment
    over one raises :class:`BudgetExceededError` before anything is signed. ``facilitator_url``
    pins the one facilitator to pay through (else the challenge's). ``on_payment(event)`` runs
    after each payment. Other keyword arguments go to ``httpx.Client``.
    """

    def __init__(
        self,
        wallet_key: str | None = None,
        *,
        auto_top_up: AutoTopUp | Mapping[str, Any] | bool | None = None,
        max_per_call: Amount | None = None,
        max_per_host: Amount | None = None,
        max_total: Amount | None = None,
        window: tuple[int, Amount] | None = None,
        facilitator_url: str | None = None,
        on_payment: OnPayment | None = None,
        facilitator_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._vlx = _Flow(
            wallet_key, auto_top_up, max_per_call, max_per_host, max_total, window, facilitator_url, on_payment
        )
        # Facilitator calls go through their own client: never the API's headers or auth.
        self._vlx_http = httpx.Client(timeout=facilitator_timeout)
        self._vlx_top_up_lock = threading.Lock()

    @property
    def address(self) -> str:
        """The wallet's address."""
        return self._vlx.address

    @property
    def payer(self) -> _native.Payer:
        """The native payer (budget figures: ``spent_total()``, ``spent_for_host(host)``)."""
        return self._vlx.payer

    def close(self) -> None:
        self._vlx_http.close()
        super().close()

    def balance(self, facilitator_url: str) -> str:
        """The wallet's balance at a facilitator."""
        r = self._facilitator("GET", self._vlx.wallet_url(facilitator_url.rstrip("/")))
        return str(r.json()["balance"])

    def top_up(self, facilitator_url: str, amount: Amount) -> str:
        """Add funds (sandbox faucet); returns the new balance."""
        amt = _call(_native.parse_amount, amount, "usd", True).amount
        r = self._facilitator(
            "POST", self._vlx.wallet_url(facilitator_url.rstrip("/")) + "/topup", json={"amount": amt}
        )
        return str(r.json()["balance"])

    def _facilitator(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            r = self._vlx_http.request(method, url, **kw)
        except httpx.TransportError as e:
            raise self._vlx.unavailable(e) from e
        if r.status_code >= 400:
            raise self._vlx.facilitator_error(r.status_code, r.content)
        return r

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = super().send(request, **kwargs)
        if response.status_code != 402:
            return response
        flow = self._vlx
        body = _bounded(response.read())
        pr = flow.payment_required(response, body)
        if pr is None:
            return response
        response.close()
        if not _replayable(request):
            raise flow.not_replayable()
        receipt = self._pay(pr, request)
        return super().send(flow.retry_request(request, receipt.token), **kwargs)

    def _pay(self, pr: _native.PaymentRequired, request: httpx.Request) -> _native.Receipt:
        flow = self._vlx
        topped_up = False
        if flow.auto is not None:
            self._maybe_top_up(pr.facilitator, pr.price)
        while True:
            prepared = flow.prepare(pr, request)
            try:
                r = self._vlx_http.post(
                    prepared.pay_url, content=prepared.body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as e:
                flow.payer.abandon(prepared)
                raise flow.unavailable(e) from e
            try:
                receipt = flow.payer.finish(prepared, r.status_code, r.content)
            except _native.NativeError as e:
                err = from_native(e)
                # Concurrent payments may have drained the balance since the top-up check.
                if isinstance(err, InsufficientFundsError) and flow.auto is not None and not topped_up:
                    topped_up = True
                    self._maybe_top_up(pr.facilitator, pr.price, balance=err.balance)
                    continue
                raise err from None
            break
        if flow.on_payment is not None:
            result = flow.on_payment(flow.event(request, receipt))
            if inspect.isawaitable(result):
                raise TypeError("VlexivoClient's on_payment must be synchronous")
        return receipt

    def _maybe_top_up(self, facilitator: str, price: str, balance: str | None = None) -> None:
        flow = self._vlx
        with self._vlx_top_up_lock:
            url = flow.wallet_url(facilitator.rstrip("/"))
            if balance is None:
                balance = str(self._facilitator("GET", url).json()["balance"])
            amount = flow.top_up_amount(balance, price)
            if amount is not None:
                self._facilitator("POST", url + "/topup", json={"amount": amount})


class AsyncVlexivoClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` that pays Vlexivo 402s; the same options as :class:`VlexivoClient`
    (``on_payment`` may be sync or async). Concurrent calls each pay for their own request."""

    def __init__(
        self,
        wallet_key: str | None = None,
        *,
        auto_top_up: AutoTopUp | Mapping[str, Any] | bool | None = None,
        max_per_call: Amount | None = None,
        max_per_host: Amount | None = None,
        max_total: Amount | None = None,
        window: tuple[int, Amount] | None = None,
        facilitator_url: str | None = None,
        on_payment: OnPayment | None = None,
        facilitator_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._vlx = _Flow(
            wallet_key, auto_top_up, max_per_call, max_per_host, max_total, window, facilitator_url, on_payment
        )
        self._vlx_http = httpx.AsyncClient(timeout=facilitator_timeout)
        self._vlx_top_up_lock: asyncio.Lock | None = None

    @property
    def address(self) -> str:
        return self._vlx.address

    @property
    def payer(self) -> _native.Payer:
        return self._vlx.payer

    async def aclose(self) -> None:
        await self._vlx_http.aclose()
        await super().aclose()

    async def balance(self, facilitator_url: str) -> str:
        r = await self._facilitator("GET", self._vlx.wallet_url(facilitator_url.rstrip("/")))
        return str(r.json()["balance"])

    async def top_up(self, facilitator_url: str, amount: Amount) -> str:
        amt = _call(_native.parse_amount, amount, "usd", True).amount
        r = await self._facilitator(
            "POST", self._vlx.wallet_url(facilitator_url.rstrip("/")) + "/topup", json={"amount": amt}
        )
        return str(r.json()["balance"])

    async def _facilitator(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            r = await self._vlx_http.request(method, url, **kw)
        except httpx.TransportError as e:
            raise self._vlx.unavailable(e) from e
        if r.status_code >= 400:
            raise self._vlx.facilitator_error(r.status_code, r.content)
        return r

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = await super().send(request, **kwargs)
        if response.status_code != 402:
            return response
        flow = self._vlx
        body = _bounded(await response.aread())
        pr = flow.payment_required(response, body)
        if pr is None:
            return response
        await response.aclose()
        if not _replayable(request):
            raise flow.not_replayable()
        receipt = await self._pay(pr, request)
        return await super().send(flow.retry_request(request, receipt.token), **kwargs)

    async def _pay(self, pr: _native.PaymentRequired, request: httpx.Request) -> _native.Receipt:
        flow = self._vlx
        topped_up = False
        if flow.auto is not None:
            await self._maybe_top_up(pr.facilitator, pr.price)
        while True:
            prepared = flow.prepare(pr, request)
            try:
                r = await self._vlx_http.post(
                    prepared.pay_url, content=prepared.body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as e:
                flow.payer.abandon(prepared)
                raise flow.unavailable(e) from e
            except BaseException:
                flow.payer.abandon(prepared)
                raise
            try:
                receipt = flow.payer.finish(prepared, r.status_code, r.content)
            except _native.NativeError as e:
                err = from_native(e)
                if isinstance(err, InsufficientFundsError) and flow.auto is not None and not topped_up:
                    topped_up = True
                    await self._maybe_top_up(pr.facilitator, pr.price, balance=err.balance)
                    continue
                raise err from None
            break
        if flow.on_payment is not None:
            result = flow.on_payment(flow.event(request, receipt))
            if inspect.isawaitable(result):
                await result
        return receipt

    async def _maybe_top_up(self, facilitator: str, price: str, balance: str | None = None) -> None:
        flow = self._vlx
        if self._vlx_top_up_lock is None:
            self._vlx_top_up_lock = asyncio.Lock()
        async with self._vlx_top_up_lock:
            url = flow.wallet_url(facilitator.rstrip("/"))
            if balance is None:
                balance = str((await self._facilitator("GET", url)).json()["balance"])
            amount = flow.top_up_amount(balance, price)
            if amount is not None:
                await self._facilitator("POST", url + "/topup", json={"amount": amount})
