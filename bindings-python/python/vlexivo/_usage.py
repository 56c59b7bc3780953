"""``await vlx.usage(payer, since=…)``: what one payer paid this provider since a time, asked of
the facilitator (``GET /v1/providers/me/payers/{address}/usage?since=``) and kept for a short
while, so a price resolver may ask on every request without a round trip each time.

Staleness: an answer is reused for at most ``ttl`` seconds; a payment this server accepts drops
its payer's answers at once (the next question goes to the facilitator), so only payments made
through other instances of the API can be missing, for at most ``ttl``. Failures are not kept.
Only the standard library is used (the server side does not need httpx)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from . import _native
from .errors import from_native, make_error

#: Default reuse time of an answer (seconds).
DEFAULT_TTL = 2.0
#: Answers kept at most (the oldest go first).
MAX_ENTRIES = 10_000
TIMEOUT = 5.0


@dataclass(frozen=True)
class Usage:
    """The facilitator's answer: ``count`` payments of ``payer`` summing to ``total`` (a
    canonical decimal string) in ``currency``, since ``since`` (unix seconds, inclusive)."""

    payer: str
    since: int
    count: int
    total: str
    currency: str


def since_param(since: datetime | int | float | None) -> str:
    """``since`` as the query parameter: unix seconds as given (the facilitator checks them)."""
    if since is None:
        return ""
    if isinstance(since, datetime):
        return str(int(since.timestamp()))
    if isinstance(since, float):
        return str(int(since)) if since.is_integer() else repr(since)
    return str(since)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class UsageCache:
    def __init__(self, facilitator_url: str, api_secret: str, ttl: float = DEFAULT_TTL) -> None:
        if not isinstance(ttl, (int, float)) or ttl < 0 or ttl != ttl:
            raise make_error("config_invalid", "usage_cache_seconds must be a number of seconds >= 0")
        self._url = facilitator_url.rstrip("/")
        self._secret = api_secret
        self._ttl = float(ttl)
        self._lock = threading.Lock()
        # (lower-case address, since) -> (time asked, answer)
        self._entries: OrderedDict[tuple[str, str], tuple[float, Usage]] = OrderedDict()

    def paid(self, payment: _native.Payment) -> None:
        """A payment was accepted: its payer's counts changed (the payer is read only when some
        answer is cached)."""
        if not self._entries:
            return
        who = payment.payer.lower()
        with self._lock:
            for key in [k for k in self._entries if k[0] == who]:
                del self._entries[key]

    def get(self, payer: str, since: datetime | int | float | None) -> Usage:
        key = (payer.lower(), since_param(since))
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        usage = self._ask(payer, key[1])
        if self._ttl > 0:
            with self._lock:
                self._entries.pop(key, None)
                self._entries[key] = (now, usage)
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popitem(last=False)
        return usage

    async def get_async(self, payer: str, since: datetime | int | float | None) -> Usage:
        key = (payer.lower(), since_param(since))
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and time.monotonic() - hit[0] < self._ttl:
                return hit[1]
        return await asyncio.to_thread(self.get, payer, since)

    def _ask(self, payer: str, since: str) -> Usage:
        url = f"{self._url}/v1/providers/me/payers/{quote(payer, safe='')}/usage"
        if since:
            url += f"?since={quote(since, safe='')}"
        req = urllib.request.Request(url, headers={"authorization": f"Bearer {self._secret}"})
        try:
            with _OPENER.open(req, timeout=TIMEOUT) as res:
                status, body = res.status, res.read(64 * 1024)
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read(64 * 1024)
        except (OSError, ValueError) as e:
            raise make_error(
                "facilitator_unavailable", f"the facilitator could not be reached for usage counts: {e}"
            ) from None
        if status != 200:
            raise from_native(_native.error_from_body(status, body))
        u = json.loads(body)
        return Usage(
            payer=str(u["payer"]),
            since=int(u["since"]),
            count=int(u["count"]),
            total=str(u["total"]),
            currency=str(u["currency"]),
        )
