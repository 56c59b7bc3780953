"""The payer side for ``requests``: a transport adapter that pays Vlexivo 402s, and a
``requests.Session`` with it mounted for ``http://`` and ``https://``.

>>> s = VlexivoSession(wallet_key=os.environ["VLX_WALLET_KEY"], max_per_call="0.05")
>>> r = s.post("http://127.0.0.1:8000/api/v1/inference", json={"model": "large-v2"})

The adapter sits where requests sends each request (every redirect hop included), so it pays
for exactly the request it sends. Every decision is the native payer flow's, walked by the same
driver as the httpx client's (``_flow.PayerFlow.drive``); this module only does requests' I/O."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from . import _native
from ._flow import MAX_BODY, Amount, AutoTopUp, FetchFailed, Headers, OnPayment, PayerFlow, TooLarge

__all__ = ["VlexivoAdapter", "VlexivoSession"]


def _replayable(request: requests.PreparedRequest) -> bool:
    """Can this request's body be sent a second time (the paid retry)? Bytes and strings can;
    a file that can seek back can (it is rewound); a generator cannot."""
    body = request.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    seekable = getattr(body, "seekable", None)
    return callable(seekable) and bool(seekable())


def _never_sent(e: Exception) -> bool:
    """A failure before the request left (nothing can have been charged)."""
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(e, requests.exceptions.ConnectionError):
        from urllib3.exceptions import NewConnectionError

        reason = getattr(e.args[0], "reason", None) if e.args else None
        return isinstance(reason, NewConnectionError)
    return False


class VlexivoAdapter(HTTPAdapter):
    """A ``requests`` transport adapter that pays Vlexivo 402s within the caps; mount it on a
    session of yours (``session.mount("https://", VlexivoAdapter(wallet_key=…))``) or use
    :class:`VlexivoSession`. The options are :class:`~vlexivo.VlexivoClient`'s; other keyword
    arguments go to ``HTTPAdapter``. A 402 of another scheme is returned as is; a payment over a
    cap raises :class:`~vlexivo.BudgetExceededError` before anything is signed, an empty wallet
    :class:`~vlexivo.InsufficientFundsError` (with the amount); a one-shot body (a generator)
    raises :class:`~vlexivo.BodyNotReplayableError` before paying."""

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
        self.flow = PayerFlow(
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
        self.facilitator_timeout = facilitator_timeout
        # Facilitator calls go through a session of their own: never the API's headers, auth or
        # proxies' credentials, and never a redirect (a signed payment is for that facilitator).
        self._facilitator = requests.Session()
        self._facilitator.trust_env = False
        self._facilitator.max_redirects = 0

    @property
    def address(self) -> str:
        """The wallet's address."""
        return self.flow.payer.address

    @property
    def payer(self) -> _native.Payer:
        """The native payer (``spent_total()``, ``reserved_total()``, ``in_doubt_total()``, …)."""
        return self.flow.payer

    def balance(self, facilitator_url: str | None = None) -> str:
        """The wallet's balance at a facilitator (default: the first trusted)."""
        return self.flow.balance(_RequestsIO(self, None, {}), facilitator_url)

    def top_up(self, facilitator_url: str | None, amount: Amount) -> str:
        """Add funds (sandbox faucet); returns the new balance."""
        return self.flow.top_up(_RequestsIO(self, None, {}), facilitator_url, amount)

    def close(self) -> None:
        self._facilitator.close()
        super().close()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        stream = bool(kwargs.pop("stream", False))
        io = _RequestsIO(self, request, kwargs)
        try:
            call = self.flow.call(request.method or "GET", request.url or "", _replayable(request))
            self.flow.drive(call, io)
            response = io.response
            assert response is not None
            if not stream:
                _ = response.content
            return response
        except BaseException:
            if io.response is not None:
                io.response.close()
            raise


class _RequestsIO:
    """The I/O of one request through a :class:`VlexivoAdapter` (``_flow.SyncIO``)."""

    __slots__ = ("adapter", "kwargs", "request", "response", "start")

    def __init__(
        self, adapter: VlexivoAdapter, request: requests.PreparedRequest | None, kwargs: dict[str, Any]
    ) -> None:
        self.adapter = adapter
        self.request = request
        self.kwargs = kwargs
        self.response: requests.Response | None = None
        body = request.body if request is not None else None
        # Where a file body starts, to rewind it for the paid retry.
        self.start: int | None = body.tell() if body is not None and hasattr(body, "tell") else None

    def send(self, step: _native.Step) -> tuple[int, Headers, str]:
        assert self.request is not None
        if self.response is not None:
            self.response.close()
        req = self.request
        if step.headers or (step.url and step.url != req.url):
            req = req.copy()
            for k, v in step.headers:
                req.headers[k] = v
            if step.url:
                req.url = step.url
        if self.start is not None:
            req.body.seek(self.start)  # type: ignore[union-attr]
        r = self.response = HTTPAdapter.send(self.adapter, req, stream=True, **self.kwargs)
        return r.status_code, list(r.headers.items()), str(r.url)

    def read_body(self, limit: int) -> tuple[int, Headers, bytes]:
        r = self.response
        assert r is not None
        chunks, size = [], 0
        rest = r.iter_content(64 * 1024)
        for chunk in rest:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        prefix = b"".join(chunks)
        # The caller gets the whole body: what was read, then the rest as it comes.
        r.raw = _Rest(prefix, rest, r.raw)
        r._content_consumed = False
        r._content = False
        # The bytes are decoded already.
        r.headers.pop("content-encoding", None)
        r.headers.pop("content-length", None)
        return r.status_code, list(r.headers.items()), prefix

    def fetch(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        session = self.adapter._facilitator
        headers = {"accept": "application/json"}
        if req.body is not None:
            headers["content-type"] = "application/json"
        try:
            r = session.request(
                req.method,
                req.url,
                data=req.body.encode() if req.body is not None else None,
                headers=headers,
                timeout=self.adapter.facilitator_timeout,
                allow_redirects=False,
                stream=True,
            )
            try:
                chunks, size = [], 0
                for chunk in r.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise TooLarge(f"answer larger than {MAX_BODY} bytes")
                    chunks.append(chunk)
                return r.status_code, b"".join(chunks)
            finally:
                r.close()
        except (requests.exceptions.RequestException, TooLarge) as e:
            raise FetchFailed(e, not _never_sent(e)) from e


class _Rest(io.RawIOBase):
    """The bytes already read, then the rest of the original body (as requests' ``raw``)."""

    def __init__(self, prefix: bytes, rest: Iterator[bytes], original: Any) -> None:
        super().__init__()
        self._prefix = prefix
        self._rest = rest
        self._original = original

    def stream(self, amt: int = 65536, decode_content: bool = True) -> Iterator[bytes]:
        if self._prefix:
            yield self._prefix
            self._prefix = b""
        yield from self._rest

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._original.close()
        super().close()

    def release_conn(self) -> None:
        release = getattr(self._original, "release_conn", None)
        if release is not None:
            release()


class VlexivoSession(requests.Session):
    """``requests.Session`` that pays Vlexivo 402s: a :class:`VlexivoAdapter` mounted for
    ``http://`` and ``https://`` with these options (the same as
    :class:`~vlexivo.VlexivoClient`'s)."""

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
        pool_maxsize: int = 32,
    ) -> None:
        super().__init__()
        self.vlexivo = VlexivoAdapter(
            wallet_key,
            auto_top_up=auto_top_up,
            max_per_call=max_per_call,
            max_per_host=max_per_host,
            max_total=max_total,
            window=window,
            facilitator_url=facilitator_url,
            facilitators=facilitators,
            on_payment=on_payment,
            facilitator_timeout=facilitator_timeout,
            pool_maxsize=pool_maxsize,
        )
        self.mount("http://", self.vlexivo)
        self.mount("https://", self.vlexivo)

    @property
    def address(self) -> str:
        return self.vlexivo.address

    @property
    def payer(self) -> _native.Payer:
        return self.vlexivo.payer

    def balance(self, facilitator_url: str | None = None) -> str:
        return self.vlexivo.balance(facilitator_url)

    def top_up(self, facilitator_url: str | None, amount: Amount) -> str:
        return self.vlexivo.top_up(facilitator_url, amount)
