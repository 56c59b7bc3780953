"""What every paying client shares, whatever its HTTP library: the native payer built from the
options, payment events, and the driver that walks the native payer flow (``_native.PayerCall``)
step by step while a client only performs the I/O each step asks for.

The httpx clients (``client``) and the requests adapter (``_requests``) are such I/O; no rule of
the flow lives in them."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from . import _native
from ._environ import env as _env
from .errors import NATIVE_ERRORS, VlexivoError, from_native, make_error

__all__ = ["AutoTopUp", "PaymentEvent"]

Amount = str | Decimal | int | float
MAX_BODY = _native.MAX_RESPONSE_BODY
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class AutoTopUp:
    """Top the wallet up before a payment would take the balance below ``trigger_balance``
    (by ``top_up_amount``, or by more if the price alone needs it; never more than the spending
    caps could still spend, and at most ``max_total`` over the client's lifetime: past it a
    top-up is refused, ``top_up_refused``, unless the balance still covers the price).

    Sandbox top-ups come from the facilitator's faucet. In live mode they come from a funding
    wallet: ``funding_wallet_key`` (default ``VLX_FUNDING_KEY``) signs an on-chain transfer of
    the token to the payer's wallet and pays its gas, sent through ``rpc_url`` (default
    ``VLX_RPC_URL``); the payment waits until it is mined."""

    enabled: bool = True
    trigger_balance: Amount = "1.00"
    top_up_amount: Amount = "10.00"
    max_total: Amount | None = None
    funding_wallet_key: str | None = field(default=None, repr=False)
    rpc_url: str | None = field(default=None, repr=False)


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
    #: The price the challenge asked.
    price: str = ""
    #: Added by auto top-up before this payment.
    topped_up: str | None = None
    #: A payment an earlier call left in doubt, found paid when sent again.
    reconciled: bool = False


OnPayment = Callable[[PaymentEvent], Awaitable[None] | None]


def _auto_top_up(
    value: AutoTopUp | Mapping[str, Any] | bool | None,
) -> tuple[Amount, Amount, Amount | None, str | None, str | None] | None:
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
    key = cfg.funding_wallet_key if cfg.funding_wallet_key is not None else _env("VLX_FUNDING_KEY")
    rpc = cfg.rpc_url if cfg.rpc_url is not None else _env("VLX_RPC_URL")
    return (cfg.trigger_balance, cfg.top_up_amount, cfg.max_total, key or None, rpc or None)


def call_native(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except NATIVE_ERRORS as e:
        raise from_native(e) from None


class PayerFlow:
    """The native payer a client pays with, and the flow's events in Python's shape."""

    def __init__(
        self,
        wallet_key: str | None,
        auto_top_up: AutoTopUp | Mapping[str, Any] | bool | None,
        max_per_call: Amount | None,
        max_per_host: Amount | None,
        max_total: Amount | None,
        window: tuple[int, Amount] | None,
        facilitator_url: str | None,
        facilitators: list[str] | None,
        on_payment: OnPayment | None,
        payer_hint: bool = True,
    ) -> None:
        key = wallet_key if wallet_key is not None else _env("VLX_WALLET_KEY")
        if not key:
            raise make_error("wallet_key_invalid", "")
        win = None if window is None else (int(window[0]), window[1])
        self.payer: _native.Payer = call_native(
            _native.Payer,
            key,
            max_per_call,
            max_per_host,
            max_total,
            win,
            facilitator_url,
            list(facilitators) if facilitators is not None else None,
            _auto_top_up(auto_top_up),
            None,
            _env("VLX_FACILITATOR_URL"),
            bool(payer_hint),
        )
        self.on_payment = on_payment

    def call(self, method: str, url: str, replayable: bool) -> _native.PayerCall:
        call: _native.PayerCall = call_native(self.payer.call, method, url, replayable)
        return call

    @staticmethod
    def event(e: _native.PaymentEvent) -> PaymentEvent:
        r = e.receipt
        return PaymentEvent(
            method=e.method,
            url=e.url,
            amount=r.amount,
            currency=r.currency,
            tx_hash=r.tx_hash,
            payer=r.payer,
            nonce=r.nonce,
            balance=r.balance,
            replayed=r.replayed,
            receipt=r,
            price=e.price,
            topped_up=e.topped_up,
            reconciled=e.reconciled,
        )

    @staticmethod
    def unavailable(e: Exception) -> VlexivoError:
        return make_error("facilitator_unavailable", type(e).__name__)

    def balance(self, io: SyncIO, facilitator_url: str | None) -> str:
        """The wallet's balance at a facilitator (default: the first trusted)."""
        req = call_native(self.payer.balance_request, facilitator_url)
        status, body = self._wallet(io, req)
        balance: str = call_native(self.payer.read_balance, req, status, body)
        return balance

    def top_up(self, io: SyncIO, facilitator_url: str | None, amount: Amount) -> str:
        """Add funds (sandbox faucet); the new balance."""
        req = call_native(self.payer.top_up_request, amount, facilitator_url)
        status, body = self._wallet(io, req)
        receipt: _native.TopUpReceipt = call_native(self.payer.read_top_up, req, status, body)
        return receipt.balance

    def _wallet(self, io: SyncIO, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        try:
            return io.fetch(req)
        except FetchFailed as e:
            raise self.unavailable(e.cause) from e.cause

    def drive(self, call: _native.PayerCall, io: SyncIO) -> None:
        """Walk ``call`` to its end, performing each step through ``io`` (a blocking client). The
        last response ``io`` holds is the caller's answer; on an exception the caller closes it."""
        step = call.start()
        while True:
            kind = step.kind
            if kind == "send":
                try:
                    status, headers, url = io.send(step)
                except BaseException:
                    call.request_failed()
                    raise
                step = call_native(call.response, status, headers, None, url)
            elif kind == "read_body":
                status, headers, prefix = io.read_body(step.limit or MAX_BODY)
                step = call_native(call.response, status, headers, prefix, None)
            elif kind == "facilitator":
                assert step.request is not None
                try:
                    status, body = io.fetch(step.request)
                except FetchFailed as e:
                    step = call_native(call.transport_error, e.sent, str(e.cause) or type(e.cause).__name__)
                    continue
                step = call_native(call.answer, status, body)
            elif kind == "paid":
                assert step.event is not None
                if self.on_payment is not None:
                    result = self.on_payment(self.event(step.event))
                    if inspect.isawaitable(result):
                        raise TypeError("a blocking client's on_payment must be synchronous")
                step = call_native(call.resume)
            elif kind == "wait":
                time.sleep((step.millis or 25) / 1000)
                step = call_native(call.resume)
            else:
                return

    async def balance_async(self, io: AsyncIO, facilitator_url: str | None) -> str:
        req = call_native(self.payer.balance_request, facilitator_url)
        status, body = await self._wallet_async(io, req)
        balance: str = call_native(self.payer.read_balance, req, status, body)
        return balance

    async def top_up_async(self, io: AsyncIO, facilitator_url: str | None, amount: Amount) -> str:
        req = call_native(self.payer.top_up_request, amount, facilitator_url)
        status, body = await self._wallet_async(io, req)
        receipt: _native.TopUpReceipt = call_native(self.payer.read_top_up, req, status, body)
        return receipt.balance

    async def _wallet_async(self, io: AsyncIO, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        try:
            return await io.fetch(req)
        except FetchFailed as e:
            raise self.unavailable(e.cause) from e.cause

    async def drive_async(self, call: _native.PayerCall, io: AsyncIO) -> None:
        """:meth:`drive` on an event loop (``on_payment`` may be a coroutine function)."""
        step = call.start()
        while True:
            kind = step.kind
            if kind == "send":
                try:
                    status, headers, url = await io.send(step)
                except BaseException:
                    call.request_failed()
                    raise
                step = call_native(call.response, status, headers, None, url)
            elif kind == "read_body":
                status, headers, prefix = await io.read_body(step.limit or MAX_BODY)
                step = call_native(call.response, status, headers, prefix, None)
            elif kind == "facilitator":
                assert step.request is not None
                try:
                    status, body = await io.fetch(step.request)
                except FetchFailed as e:
                    step = call_native(call.transport_error, e.sent, str(e.cause) or type(e.cause).__name__)
                    continue
                step = call_native(call.answer, status, body)
            elif kind == "paid":
                assert step.event is not None
                if self.on_payment is not None:
                    result = self.on_payment(self.event(step.event))
                    if inspect.isawaitable(result):
                        await result
                step = call_native(call.resume)
            elif kind == "wait":
                await asyncio.sleep((step.millis or 25) / 1000)
                step = call_native(call.resume)
            else:
                return


class FetchFailed(Exception):
    """A facilitator call that failed in transport; ``sent``: it may have reached the server."""

    def __init__(self, cause: Exception, sent: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sent = sent


class TooLarge(Exception):
    pass


class SyncIO(Protocol):
    """The I/O a blocking client does for :meth:`PayerFlow.drive`."""

    def send(self, step: _native.Step) -> tuple[int, Headers, str]:
        """Send the caller's request as ``step`` says (its URL, added headers); keep the response
        (closing the previous one); its status, headers and final URL."""
        ...

    def read_body(self, limit: int) -> tuple[int, Headers, bytes]:
        """Read the held response's body up to a little past ``limit``, keeping what was read for
        the caller; its status, headers and the bytes read."""
        ...

    def fetch(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        """A facilitator call: status and body (at most ``MAX_BODY`` bytes, else
        :class:`FetchFailed` around :class:`TooLarge`); a transport failure raises
        :class:`FetchFailed`."""
        ...


class AsyncIO(Protocol):
    """:class:`SyncIO` on an event loop, for :meth:`PayerFlow.drive_async`."""

    async def send(self, step: _native.Step) -> tuple[int, Headers, str]: ...

    async def read_body(self, limit: int) -> tuple[int, Headers, bytes]: ...

    async def fetch(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]: ...
