"""Paid MCP tools with the real MCP SDK (``mcp``), over stdio (a server process) and over
streamable HTTP (uvicorn), paid through a real `vlexivo` facilitator: an unpaid call gets the
-32402 error with the challenge, a forged proof is refused, the client pays once and gets the
result with its receipt, a replayed proof is refused, a failing tool leaves the proof for the
retry, a price from the arguments, a bad price is -32603 price_invalid, a price over the cap and
a challenge for another origin are refused before paying, a free tool stays free."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from vlexivo import AsyncVlexivoClient, BudgetExceededError, ChallengeError, VlexivoServer, Wallet
from vlexivo.mcp import PAYMENT_REQUIRED, PROOF_META, RECEIPT_META, call_paid_tool

from .conftest import HERE, Facilitator, UvicornThread
from .mcp_server import ORIGIN, build


@asynccontextmanager
async def stdio_session(fac: Facilitator, secret: str) -> AsyncIterator[ClientSession]:
    env = {**os.environ, "VLX_SECRET_KEY": secret, "VLX_FACILITATOR_URL": fac.url, "VLX_ORIGIN": ORIGIN}
    params = StdioServerParameters(command=sys.executable, args=[str(HERE / "mcp_server.py")], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def http_session(vlx: VlexivoServer, runs: Counter[str]) -> AsyncIterator[ClientSession]:
    app = build(vlx, runs).streamable_http_app(stateless_http=True, json_response=True)
    server = UvicornThread(app, lifespan="on")  # the SDK runs its session manager in the lifespan
    try:
        async with (
            streamable_http_client(server.url + "/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    finally:
        server.stop()


async def unpaid_error(
    session: ClientSession, name: str, args: dict[str, Any], proof: str | None = None
) -> Any:
    with pytest.raises(MCPError) as ei:
        await session.call_tool(name, args, meta={PROOF_META: proof} if proof else None)
    return ei.value


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_paid_tools(transport: str, facilitator: Facilitator) -> None:
    fac = facilitator
    provider = fac.provider()
    secret = provider["api_secret"]
    vlx = VlexivoServer(api_secret=secret, facilitator_url=fac.url, origin=ORIGIN)
    runs: Counter[str] = Counter()
    wallet = Wallet.generate()
    fac.top_up(wallet.address, "1")
    events: list[Any] = []
    session_cm = stdio_session(fac, secret) if transport == "stdio" else http_session(vlx, runs)
    async with (
        session_cm as session,
        AsyncVlexivoClient(
            wallet_key=wallet.private_key_hex(), facilitator_url=fac.url, on_payment=events.append
        ) as payer,
    ):
        # Unpaid: the payment-required error, carrying the 402 body and its challenge.
        e = await unpaid_error(session, "analyze", {"document": "abc"})
        assert e.code == PAYMENT_REQUIRED
        assert (e.data["status"], e.data["error"], e.data["price"]) == (402, "payment_required", "0.01")
        assert e.data["challenge"] and e.data["resource"] == f"POST {ORIGIN}/mcp/tools/analyze"
        # Forged and malformed proofs: refused, with a fresh challenge.
        e = await unpaid_error(session, "analyze", {"document": "abc"}, proof="not.a.token")
        assert (e.code, e.data["error"], e.data["status"]) == (PAYMENT_REQUIRED, "token_malformed", 402)
        assert e.data["challenge"]
        e = await unpaid_error(session, "analyze", {"document": "abc"}, proof="x" * 5000)
        assert (e.data["error"], e.data["status"]) == ("token_too_large", 431)

        # Paid once, the result carries the receipt.
        r = await call_paid_tool(session, payer, "analyze", {"document": "abc"}, origin=ORIGIN)
        assert not r.is_error and r.content[0].text.startswith(
            f"analyzed 3 chars for {wallet.address}, paid 0.01"
        )
        assert (r.meta or {})[RECEIPT_META].startswith("tx=0x")
        assert len(events) == 1 and events[0].amount == "0.01"
        # A replayed proof is refused (409), the tool does not run again.
        token = events[0].receipt.token
        e = await unpaid_error(session, "analyze", {"document": "abc"}, proof=token)
        assert (e.data["error"], e.data["status"]) == ("token_replayed", 409)

        # A price from the arguments.
        r = await call_paid_tool(session, payer, "summarize", {"pages": 3}, origin=ORIGIN)
        assert r.content[0].text == "3 pages, paid 0.003" and events[-1].amount == "0.003"

        # The payer hint rides in _meta: the resolver prices for the hinted payer (unpaid: no
        # hint, anyone's price), and the paid call is priced again for the proven payer.
        e = await unpaid_error(session, "loyal", {})
        assert (e.data["error"], e.data["price"]) == ("payment_required", "0.002")
        r = await call_paid_tool(session, payer, "loyal", {}, origin=ORIGIN)
        assert r.content[0].text == "paid 0.001" and events[-1].amount == "0.001"

        # A failing tool leaves the proof for the retry: paid once, run twice, then spent.
        r = await call_paid_tool(session, payer, "flaky", {"fail": True}, origin=ORIGIN)
        assert r.is_error and RECEIPT_META not in (r.meta or {})
        assert len(events) == 4
        flaky_proof = events[3].receipt.token
        r = await session.call_tool("flaky", {"fail": False}, meta={PROOF_META: flaky_proof})
        assert not r.is_error and r.content[0].text == "ok" and (r.meta or {})[RECEIPT_META]
        e = await unpaid_error(session, "flaky", {"fail": False}, proof=flaky_proof)
        assert e.data["error"] == "token_replayed"

        # A bad price is a provider fault, never a free call.
        e = await unpaid_error(session, "mispriced", {})
        assert (e.code, e.data) == (-32603, {"error": "price_invalid", "status": 500})
        # A free tool stays free.
        r = await session.call_tool("free", {})
        assert r.content[0].text == "free"

        # Refused before paying: a price over the cap, a challenge bound to another origin.
        async with AsyncVlexivoClient(
            wallet_key=wallet.private_key_hex(), facilitator_url=fac.url, max_per_call="0.005"
        ) as capped:
            with pytest.raises(BudgetExceededError) as be:
                await call_paid_tool(session, capped, "analyze", {"document": "abc"}, origin=ORIGIN)
            assert (be.value.limit, be.value.requested) == ("per_call", "0.01")
        with pytest.raises(ChallengeError) as ce:
            await call_paid_tool(
                session, payer, "analyze", {"document": "x"}, origin="https://other.example.com"
            )
        assert ce.value.code == "challenge_mismatch"
        assert payer.payer.spent_total() == "0.016"

    assert [p["amount"] for p in fac.payments(secret)] == ["0.002", "0.001", "0.003", "0.01"]
    assert fac.balance(wallet.address) == "0.984"
    if transport == "http":
        assert runs == Counter({"analyze": 1, "summarize": 1, "loyal": 1, "flaky": 2, "free": 1})


def test_a_paid_tool_needs_the_origin() -> None:
    from mcp.server.mcpserver import MCPServer
    from vlexivo import ConfigInvalidError
    from vlexivo.mcp import paid_tool

    vlx = VlexivoServer(api_secret="sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM")
    with pytest.raises(ConfigInvalidError):
        paid_tool(MCPServer("x"), vlx, price="0.01")
