"""Paid MCP tools over the Python MCP SDK (``pip install 'vlexivo[mcp]'``, ``mcp`` 2), on any
transport (stdio, streamable HTTP). The wire shape is docs/protocol.md §7.2, the same as the npm
package's ``vlexivo/mcp``:

* A paid tool's resource is ``POST <origin>/mcp/tools/<name, percent-encoded>``: challenges and
  proofs bind it as they bind an HTTP route (``origin``: the server's configured one).
* An unpaid call (or a refused proof) is a JSON-RPC error ``-32402`` whose ``data`` is the HTTP
  402 body plus the HTTP ``status`` core chose (402, 409); a provider-side fault (a bad price,
  the nonce store down) is ``-32603`` with ``data.error`` its code: never a free call.
* The proof rides in the call's ``params._meta["vlexivo/proof"]``; a paid result carries
  ``_meta["vlexivo/receipt"]``.
* The tool runs once per proof; a tool that fails (raises, or answers ``isError``) releases the
  nonce, so the same proof pays for a retry: core's response policy decides, fed a failed tool
  as a 500 and a result as a 200.

>>> server = MCPServer("tools")
>>> @paid_tool(server, vlx, price="0.01")
... def analyze(document: str) -> str:
...     return f"paid by {current_payment().payer}"

>>> async with AsyncVlexivoClient(wallet_key=…, max_per_call="0.05") as payer:
...     result = await call_paid_tool(session, payer, "analyze", {"document": d}, origin=origin)
"""

from __future__ import annotations

import contextvars
import inspect
import json
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from . import _native
from ._gate import (
    PAYER_HEADER,
    PROOF_HEADER,
    Gate,
    PriceValue,
    PricingRequest,
    Reject,
    admit_async,
    sends_receipt,
)
from .errors import make_error

if TYPE_CHECKING:
    from .client import AsyncVlexivoClient
    from .server import VlexivoServer

__all__ = [
    "INTERNAL_ERROR",
    "PAYMENT_REQUIRED",
    "PROOF_META",
    "RECEIPT_META",
    "call_paid_tool",
    "current_payment",
    "meta_key",
    "paid_tool",
    "tool_path",
]

# Where Vlexivo's values ride in MCP messages and the JSON-RPC shape of a refusal are core's
# rules (vlexivo_core::mcp), shared with the npm package: this module only moves them between
# the SDK and the payer flow. `_meta` and error data cross to core as JSON text.

#: JSON-RPC error code of a payment-required answer (the draft MCP payment proposal's).
PAYMENT_REQUIRED = _native.MCP_PAYMENT_REQUIRED
#: JSON-RPC internal error (a provider-side fault).
INTERNAL_ERROR = _native.MCP_INTERNAL_ERROR
#: ``_meta`` key of the proof on a call (``vlexivo/proof``).
PROOF_META = _native.MCP_PROOF_META
#: ``_meta`` key of the receipt on a paid result (``vlexivo/receipt``).
RECEIPT_META = _native.MCP_RECEIPT_META


def meta_key(header: str) -> str:
    """The ``_meta`` key that carries a Vlexivo header's value: ``Vlexivo-<X>`` is ``vlexivo/<x>``."""
    return _native.mcp_meta_key(header)


def _json(value: Any) -> str:
    # What the SDK parsed from the wire is JSON; anything else a caller put there is text.
    return json.dumps(value, default=str)


def tool_path(name: str) -> str:
    """The HTTP-shaped path a tool's challenges and proofs bind (the name as JavaScript's
    ``encodeURIComponent`` writes it, as every binding does)."""
    return "/mcp/tools/" + quote(name, safe="!*'()")


_payment: contextvars.ContextVar[_native.Payment] = contextvars.ContextVar("vlexivo_mcp_payment")


def current_payment() -> _native.Payment:
    """The payment of the paid tool call running (raises ``LookupError`` outside one)."""
    return _payment.get()


# --- the server side ---------------------------------------------------------------------------


def _rpc_error(status: int, body: str) -> MCPError:
    code, message, data = _native.mcp_rejection_error(status, body)
    return MCPError(code, message, data)


class _Paywall:
    """The paid tools of one MCP server, and its tools/call handler in front of the SDK's."""

    def __init__(self, low: Any) -> None:
        entry = low.get_request_handler("tools/call")
        if entry is None:
            raise make_error(
                "config_invalid", "this MCP server has no tools/call handler to put a paywall in"
            )
        self.inner = entry.handler
        self.tools: dict[str, Gate] = {}
        low.add_request_handler("tools/call", entry.params_type, self.handle)

    async def handle(self, ctx: Any, params: Any) -> Any:
        gate = self.tools.get(params.name)
        if gate is None:
            return await self.inner(ctx, params)
        path = tool_path(params.name)
        args = params.arguments or {}
        # Who the call is priced for is core's answer (PricingRequest.payer): the proof's payer,
        # else the `vlexivo/payer` hint; a challenge priced for a hint names that payer.
        proof, hint = _native.mcp_call_meta(_json(params.meta))
        now = gate.provider.now()
        try:
            price = gate.route.price
            if price is None:
                headers = [(k, v) for k, v in ((PROOF_HEADER, proof), (PAYER_HEADER, hint)) if v is not None]
                req = PricingRequest("POST", path, "", headers, json.dumps(args).encode(), args)
                price = await gate.price_async(req, now)
            # The origin is the server's configured one (required): nothing of the call's own.
            paid = await admit_async(
                (gate,),
                proof,
                "POST",
                path,
                ("https", None),
                price,
                None,
                now,
                hint=hint,
            )
        except Reject as r:
            raise _rpc_error(r.answer[0], r.answer[2]) from None
        token = _payment.set(paid.payment)
        try:
            result = await self.inner(ctx, params)
        except BaseException:
            paid.settle(0, True, False)
            raise
        finally:
            _payment.reset(token)
        if isinstance(result, CallToolResult):
            # The SDK answers a tool that raised (or had bad arguments) with isError: it failed.
            status = 500 if result.is_error else 200
            paid.settle(status, False, True)
            if sends_receipt(status):
                result.meta = {**(result.meta or {}), RECEIPT_META: paid.payment.receipt}
        return result


_PAYWALLS: weakref.WeakKeyDictionary[Any, _Paywall] = weakref.WeakKeyDictionary()

F = TypeVar("F", bound=Callable[..., Any])


def _paywall_of(server: Any) -> _Paywall:
    low = getattr(server, "_lowlevel_server", server)
    paywall = _PAYWALLS.get(low)
    if paywall is None:
        paywall = _PAYWALLS[low] = _Paywall(low)
    return paywall


def _takes_payer(fn: Callable[..., Any]) -> bool:
    """Whether a price resolver takes the payer as a second positional argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def paid_tool(
    server: Any,
    vlx: VlexivoServer,
    *,
    price: PriceValue | None = None,
    price_resolver: Callable[..., Any] | None = None,
    currency: str | None = None,
    name: str | None = None,
    **tool_options: Any,
) -> Callable[[F], F]:
    """Register a paid tool on ``server`` (an ``MCPServer``): ``@paid_tool(server, vlx,
    price="0.01")`` where you would write ``@server.tool()`` (``tool_options`` go to it). The
    price is fixed, or ``price_resolver(arguments)`` / ``price_resolver(arguments, payer)`` (sync
    or async; ``payer``: the :class:`~vlexivo.PricedPayer` the call is priced for, or ``None``:
    the proof's payer on the paid call, the ``vlexivo/payer`` hint on the unpaid one). In the tool,
    :func:`current_payment` is the payment. ``vlx`` needs an ``origin``: this MCP server's
    public origin, which challenges bind."""
    if vlx.origin is None:
        raise make_error(
            "config_invalid",
            "paid MCP tools need the server's origin (VlexivoServer(origin=…)): challenges bind it",
        )
    resolver = None
    if price_resolver is not None:
        fn = price_resolver
        if _takes_payer(fn):

            def resolver(req: PricingRequest) -> Any:
                return fn(req.raw, req.payer)

        else:

            def resolver(req: PricingRequest) -> Any:
                return fn(req.raw)

    route = vlx.price(price, resolver=resolver, currency=currency)

    def register(tool: F) -> F:
        tool_name = name or tool.__name__
        server.tool(name=tool_name, **tool_options)(tool)
        _paywall_of(server).tools[tool_name] = Gate(vlx, route, f"MCP tool {tool_name}")
        return tool

    return register


# --- the payer side ----------------------------------------------------------------------------


class _McpIO:
    """The I/O of one paid tool call (``_flow.AsyncIO``): the payer flow's HTTP request is the
    ``tools/call``, its headers ride in ``_meta``; a ``-32402`` error is the 402 response."""

    __slots__ = ("arguments", "body", "name", "payer", "result", "session", "status", "timeout", "url")

    def __init__(
        self,
        session: Any,
        payer: AsyncVlexivoClient,
        name: str,
        arguments: dict[str, Any] | None,
        url: str,
        timeout: float | None,
    ) -> None:
        self.session = session
        self.payer = payer
        self.name = name
        self.arguments = arguments
        self.url = url
        self.timeout = timeout
        self.result: CallToolResult | None = None
        self.body = b""
        self.status = 0

    async def send(self, step: _native.Step) -> tuple[int, list[tuple[str, str]], str]:
        meta = _native.mcp_request_meta(step.headers)
        self.result = None
        try:
            result = await self.session.call_tool(
                self.name, self.arguments, read_timeout_seconds=self.timeout, meta=meta or None
            )
        except MCPError as e:
            answer = _native.mcp_payment_required_answer(e.code, _json(e.data))
            if answer is None:
                raise
            self.status, headers, body = answer
            self.body = body.encode()
            return self.status, headers, self.url
        if not isinstance(result, CallToolResult):
            raise make_error("not_payment_required", f"tools/call answered {type(result).__name__}")
        self.result = result
        self.body = b""
        self.status = 500 if result.is_error else 200
        receipt = _native.mcp_result_receipt(_json(result.meta))
        headers = [(_native.RECEIPT_HEADER.lower(), receipt)] if isinstance(receipt, str) else []
        return self.status, headers, self.url

    async def read_body(self, limit: int) -> tuple[int, list[tuple[str, str]], bytes]:
        return self.status, [("content-type", "application/json")], self.body[: limit + 1]

    async def fetch(self, req: _native.FacilitatorRequest) -> tuple[int, bytes]:
        return await self.payer.fetch_facilitator(req)


async def call_paid_tool(
    session: Any,
    payer: AsyncVlexivoClient,
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    origin: str,
    read_timeout_seconds: float | None = None,
) -> CallToolResult:
    """Call a tool through ``session`` (an MCP ``ClientSession``), paying when it asks with
    ``payer``'s wallet, caps and trusted facilitators (an :class:`~vlexivo.AsyncVlexivoClient`;
    its ``on_payment`` runs). ``origin`` is the MCP server's origin as the caller knows it (for
    streamable HTTP, its URL's): a challenge bound to another is refused before paying. Returns
    the tool's result (its receipt in ``_meta["vlexivo/receipt"]``); raises the typed
    :class:`~vlexivo.VlexivoError` when the payment cannot be made (a price over a cap: before
    anything is signed), the SDK's ``MCPError`` for anything else."""
    url = origin.rstrip("/") + tool_path(name)
    io = _McpIO(session, payer, name, arguments, url, read_timeout_seconds)
    flow = payer._vlx
    await flow.drive_async(flow.call("POST", url, True), io)
    if io.result is not None:
        return io.result
    # The flow ended on a refusal it does not pay for: the server's answer, as the SDK raises it.
    raise _rpc_error(io.status, io.body.decode())
