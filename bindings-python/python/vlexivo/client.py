"""The payer side: httpx clients that meet a Vlexivo 402, pay for exactly that call within the
spending caps (topping the wallet up when asked), and replay the request with the proof.

>>> client = VlexivoClient(wallet_key=os.environ["VLX_WALLET_KEY"],
...                        auto_top_up=dict(enabled=True, trigger_balance="1.00", top_up_amount="10.00"))
>>> r = client.post("http://127.0.0.1:8000/api/v1/inference", json={"model": "large-v2"})

Every decision is the native core's payer flow (``_native.PayerCall``): these classes only
perform the HTTP each step asks for and feed back what came of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from . import _native
from ._flow import (
    MAX_BODY,
    Amount,
    AutoTopUp,
    FetchFailed,
    Headers,
    OnPayment,
    PayerFlow,
    PaymentEvent,
    TooLarge,
)

__all__ = ["AsyncVlexivoClient", "AutoTopUp", "PaymentEvent", "VlexivoClient"]


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
            if (
                isinstance(field, FileField)
                and not isinstance(field.file, (bytes, str))
                and not (hasattr(field.file, "seek") and getattr(field.file, "seekable", lambda: True)())
            ):
                return False
        return True
    return False


def _never_sent(e: Exception) -> bool:
    """A failure before the request left (nothing can have been charged)."""
    return isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))


def _without_encoding(response: httpx.Response) -> list[tuple[str, str]]:
    # The body handed on is already decoded.
    drop = ("content-encoding", "content-length")
    return [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]


class _Rest(httpx.SyncByteStream):
    """The bytes already read, then the rest of the original response."""

    def __init__(self, prefix: bytes, rest: Iterator[bytes], original: httpx.Response) -> None:
        self._prefix, self._rest, self._original = prefix, rest, original

    def __iter__(self) -> Iterator[bytes]:
        if self._prefix:
            yield self._prefix
        yield from self._rest

    def close(self) -> None:
        self._original.close()


class _AsyncRest(httpx.AsyncByteStream):
    def __init__(self, prefix: bytes, rest: AsyncIterator[bytes], original: httpx.Response) -> None:
        self._prefix, self._rest, self._original = prefix, rest, original

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._prefix:
            yield self._prefix
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._original.aclose()


class _Flow(PayerFlow):
    """The payer flow, and turning its steps into httpx objects."""

    def request(self, request: httpx.Request) -> _native.PayerCall:
        return self.call(request.method, str(request.url), _replayable(request))

    @staticmethod
    def request_for(request: httpx.Request, step: _native.Step) -> httpx.Request:
        """The caller's request, to the step's URL, with the step's headers added."""
        if not step.headers and step.url == str(request.url):
            return request
        headers = request.headers.copy()
        for k, v in step.headers:
            headers[k] = v
        return httpx.Request(
            request.method,
            step.url or request.url,
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )

    @staticmethod
    def facilitator_request(req: _native.FacilitatorRequest) -> httpx.Request:
        if req.body is None:
            return httpx.Request(req.method, req.url, headers={"accept": "application/json"})
        return httpx.Request(
            req.method, req.url, content=req.body.encode(), headers={"content-type": "application/json"}
        )


class VlexivoClient(httpx.Client):
    """``httpx.Client`` that pays Vlexivo 402s (overrides :meth:`send`, so every request method,
    ``stream()`` included, is covered). A 402 of another scheme is returned as is.

    Caps: ``max_per_call``, ``max_per_host``, ``max_total``, ``window=(seconds, max)``; a payment
    over one raises :class:`BudgetExceededError` before anything is signed. Trusted facilitators:
    ``facilitator_url`` and ``facilitators``; with neither, ``VLX_FACILITATOR_URL``, else the
    default local one; a challenge naming another raises ``FacilitatorUntrusted`` (code
    ``facilitator_untrusted``) before anything is signed or queried. ``on_payment(event)`` runs
    after each payment. ``payer_hint=False`` keeps the wallet's address off the unpaid request
    (``Vlexivo-Payer``, sent by default so APIs can price by payer). Other keyword arguments go
    to ``httpx.Client``.
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
        facilitators: list[str] | None = None,
        on_payment: OnPayment | None = None,
        facilitator_timeout: float = 10.0,
        payer_hint: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._vlx = _Flow(
            wallet_key,
            auto_top_up,
            max_per_call,
            max_per_host,
            max_total,
            window,
            facilitator_url,
            facilitators,
            on_payment,
            payer_hint,
        )
        # Facilitator calls go through their own client: never the API's headers or auth, and
        # never a redirect (a signed payment is for that facilitator only).
        self._vlx_http = httpx.Client(timeout=facilitator_timeout, follow_redirects=False)

    @property
    def address(self) -> str:
        """The wallet's address."""
        return self._vlx.payer.address

    @property
    def payer(self) -> _native.Payer:
        """The native payer (budget figures: ``spent_total()``, ``reserved_total()``,
        ``in_doubt_total()``, ``spent_for_host(host)``)."""
        return self._vlx.payer

    def close(self) -> None:
        self._vlx_http.close()
        super().close()

    def balance(self, facilitator_url: str | None = None) -> str:
        """The wallet's balance at a facilitator (default: the first trusted)."""
        return self._vlx.balance(_HttpxIO(self, None, {}), facilitator_url)

    def top_up(self, facilitator_url: str | None, amount: Amount) -> str:
        """Add funds (sandbox faucet); returns the new balance."""
        return self._vlx.top_up(_HttpxIO(self, None, {}), facilitator_url, amount)

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        stream = bool(kwargs.pop("stream", False))
        io = _HttpxIO(self, request, kwargs)
        try:
            self._vlx.drive(self._vlx.request(request), io)
            response = io.response
            assert response is not None
            if not stream:
                response.read()
            return response
        except BaseException:
            if io.response is not None:
                io.response.close()
            raise


class _HttpxIO:
    """The I/O of one call of a :class:`VlexivoClient` (``_flow.SyncIO``)."""

    __slots__ = ("client", "kwargs", "request", "response")

    def __init__(self, client: VlexivoClient, request: httpx.Request | None, kwargs: dict[str, Any]) -> None:
        self.client = client
        self.request = request
        self.kwargs = kwargs
        self.response: httpx.Response | None = None

    def send(self, step: _native.Step) -> tuple[int, Headers, str]:
        assert self.request is not None
        if self.response is not None:
            self.response.close()
        req = self.client._vlx.request_for(self.request, step)
        r = self.response = httpx.Client.send(self.client, req, stream=True, **self.kwargs)
        return r.status_code, r.headers.multi_items(), str(r.url)

    def read_body(self, limit: int) -> tuple[int, Headers, bytes]:
        original = self.response
        assert original is not None
        chunks, size, rest = [], 0, original.iter_bytes()
        for chunk in rest:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        prefix = b"".join(chunks)
        self.response = httpx.Response(
            original.status_code,
            headers=_without_encoding(original),
            stream=_Rest(prefix, rest, original),
            request=original.request,
            extensions=original.extensions,
        )
        return original.status_code, original.headers.multi_items(), prefix

    def fetch(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        try:
            r = self.client._vlx_http.send(self.client._vlx.facilitator_request(req), stream=True)
            try:
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise TooLarge(f"answer larger than {MAX_BODY} bytes")
                    chunks.append(chunk)
                return r.status_code, b"".join(chunks)
            finally:
                r.close()
        except (httpx.TransportError, TooLarge) as e:
            raise FetchFailed(e, not _never_sent(e)) from e


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
        facilitators: list[str] | None = None,
        on_payment: OnPayment | None = None,
        facilitator_timeout: float = 10.0,
        payer_hint: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._vlx = _Flow(
            wallet_key,
            auto_top_up,
            max_per_call,
            max_per_host,
            max_total,
            window,
            facilitator_url,
            facilitators,
            on_payment,
            payer_hint,
        )
        self._vlx_http = httpx.AsyncClient(timeout=facilitator_timeout, follow_redirects=False)

    @property
    def address(self) -> str:
        return self._vlx.payer.address

    @property
    def payer(self) -> _native.Payer:
        return self._vlx.payer

    async def aclose(self) -> None:
        await self._vlx_http.aclose()
        await super().aclose()

    async def balance(self, facilitator_url: str | None = None) -> str:
        return await self._vlx.balance_async(_AsyncHttpxIO(self, None, {}), facilitator_url)

    async def top_up(self, facilitator_url: str | None, amount: Amount) -> str:
        return await self._vlx.top_up_async(_AsyncHttpxIO(self, None, {}), facilitator_url, amount)

    async def fetch_facilitator(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        """A facilitator call of the payer flow (through the client's own facilitator client)."""
        try:
            r = await self._vlx_http.send(self._vlx.facilitator_request(req), stream=True)
            try:
                chunks, size = [], 0
                async for chunk in r.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise TooLarge(f"answer larger than {MAX_BODY} bytes")
                    chunks.append(chunk)
                return r.status_code, b"".join(chunks)
            finally:
                await r.aclose()
        except (httpx.TransportError, TooLarge) as e:
            raise FetchFailed(e, not _never_sent(e)) from e

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        stream = bool(kwargs.pop("stream", False))
        io = _AsyncHttpxIO(self, request, kwargs)
        try:
            await self._vlx.drive_async(self._vlx.request(request), io)
            response = io.response
            assert response is not None
            if not stream:
                await response.aread()
            return response
        except BaseException:
            if io.response is not None:
                await io.response.aclose()
            raise


class _AsyncHttpxIO:
    """The I/O of one call of an :class:`AsyncVlexivoClient` (``_flow.AsyncIO``)."""

    __slots__ = ("client", "kwargs", "request", "response")

    def __init__(
        self, client: AsyncVlexivoClient, request: httpx.Request | None, kwargs: dict[str, Any]
    ) -> None:
        self.client = client
        self.request = request
        self.kwargs = kwargs
        self.response: httpx.Response | None = None

    async def send(self, step: _native.Step) -> tuple[int, Headers, str]:
        assert self.request is not None
        if self.response is not None:
            await self.response.aclose()
        req = self.client._vlx.request_for(self.request, step)
        r = self.response = await httpx.AsyncClient.send(self.client, req, stream=True, **self.kwargs)
        return r.status_code, r.headers.multi_items(), str(r.url)

    async def read_body(self, limit: int) -> tuple[int, Headers, bytes]:
        original = self.response
        assert original is not None
        chunks, size, rest = [], 0, original.aiter_bytes()
        async for chunk in rest:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        prefix = b"".join(chunks)
        self.response = httpx.Response(
            original.status_code,
            headers=_without_encoding(original),
            stream=_AsyncRest(prefix, rest, original),
            request=original.request,
            extensions=original.extensions,
        )
        return original.status_code, original.headers.multi_items(), prefix

    async def fetch(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        return await self.client.fetch_facilitator(req)
