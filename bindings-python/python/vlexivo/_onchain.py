"""``verify_payment(tx_hash, payer=…, amount=…)``: a provider checks a live payment on chain,
without the facilitator. One JSON-RPC batch (the transaction's receipt and the head block) goes
to the chain's node; the native core decides: the receipt must be successful and carry the
token's ``Transfer(payer, payee, amount)``, at least ``confirmations`` deep.

Failures raise the typed errors of their stable codes: ``transaction_not_found``,
``settlement_failed`` (reverted), ``transfer_mismatch`` (``details["field"]`` names what
differs), ``confirmations_pending``, ``chain_unavailable`` (never naming the node's URL, which
often holds an API key). Only the standard library is used (a provider's server needs no
httpx); ``verify_payment_async`` runs the same in a worker thread."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal

from . import _native
from ._environ import env
from .errors import from_native, make_error

#: Time allowed for the node's answer (seconds).
TIMEOUT = 15.0
#: Largest answer read (a batched relay's receipt carries a log per payment).
MAX_ANSWER = 8 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedPayment:
    """A transaction that pays as expected. ``transfers``: the token's Transfer logs in it (more
    than 1 when it settled several payments, a batched relay); ``matching``: how many of them are
    this very transfer (more than 1: the hash alone cannot tell them apart, pass
    ``authorization_nonce``)."""

    tx_hash: str
    block: int
    confirmations: int
    gas_used: int
    log_index: int
    transfers: int
    matching: int
    authorization_checked: bool
    token: str
    payer: str
    payee: str
    amount: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _setting(value: str | None, name: str, option: str) -> str:
    v = value if value is not None else env(name)
    if not v:
        raise make_error("config_invalid", f"verify_payment needs {option} (or {name})")
    return v


def _failure(e: BaseException, timeout: float) -> str:
    """What failed, without where (the URL may carry an API key)."""
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:g} s"
    reason = getattr(e, "reason", None)
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.errno is not None:
        return f"the node could not be reached (errno {reason.errno})"
    if isinstance(e, OSError) and e.errno is not None:
        return f"the node could not be reached (errno {e.errno})"
    return "the node could not be reached"


def verify_payment(
    tx_hash: str,
    *,
    payer: str,
    amount: str | int | float | Decimal,
    rpc_url: str | None = None,
    asset: str | None = None,
    pay_to: str | None = None,
    confirmations: int = 1,
    authorization_nonce: str | None = None,
    timeout: float = TIMEOUT,
) -> VerifiedPayment:
    """Check a live payment's transaction on chain. ``rpc_url``, ``asset`` (the token) and
    ``pay_to`` (the provider's payout address) default to ``VLX_RPC_URL``, ``VLX_ASSET`` and
    ``VLX_PAY_TO``; ``amount`` is in usd."""
    url = _setting(rpc_url, "VLX_RPC_URL", "rpc_url")
    try:
        check = _native.PaymentCheck(
            tx_hash,
            _setting(asset, "VLX_ASSET", "asset"),
            payer,
            _setting(pay_to, "VLX_PAY_TO", "pay_to"),
            amount,
            confirmations,
            authorization_nonce,
        )
    except _native.NativeError as e:
        raise from_native(e) from None
    body = check.request()
    status, answer, failure = 0, b"", None
    req = urllib.request.Request(
        url, data=body.encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        try:
            with _OPENER.open(req, timeout=timeout) as res:
                status, answer = res.status, res.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read(MAX_ANSWER + 1)
        if len(answer) > MAX_ANSWER:
            failure = f"the node's answer is larger than {MAX_ANSWER} bytes"
    except (OSError, ValueError) as e:
        failure = _failure(e, timeout)
    try:
        facts = check.answer(status, answer, failure)
    except _native.NativeError as e:
        raise from_native(e) from None
    return VerifiedPayment(**facts)


async def verify_payment_async(
    tx_hash: str,
    *,
    payer: str,
    amount: str | int | float | Decimal,
    rpc_url: str | None = None,
    asset: str | None = None,
    pay_to: str | None = None,
    confirmations: int = 1,
    authorization_nonce: str | None = None,
    timeout: float = TIMEOUT,
) -> VerifiedPayment:
    """:func:`verify_payment` without blocking the event loop."""
    return await asyncio.to_thread(
        verify_payment,
        tx_hash,
        payer=payer,
        amount=amount,
        rpc_url=rpc_url,
        asset=asset,
        pay_to=pay_to,
        confirmations=confirmations,
        authorization_nonce=authorization_nonce,
        timeout=timeout,
    )
