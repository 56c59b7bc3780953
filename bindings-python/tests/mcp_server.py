"""The paid MCP tools the tests call: built in process for streamable HTTP (uvicorn), or run as
a stdio server process (``python mcp_server.py``, configured by ``VLX_*`` variables)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from mcp.server.mcpserver import MCPServer
from vlexivo import VlexivoServer
from vlexivo.mcp import current_payment, paid_tool

ORIGIN = "https://tools.example.com"


def build(vlx: VlexivoServer, runs: Counter[str]) -> MCPServer:
    server = MCPServer("vlexivo-test-tools")

    @paid_tool(server, vlx, price="0.01")
    def analyze(document: str) -> str:
        """A fixed price; a sync tool (the SDK runs it on a worker thread)."""
        runs["analyze"] += 1
        p = current_payment()
        return f"analyzed {len(document)} chars for {p.payer}, paid {p.amount} (run {runs['analyze']})"

    async def by_pages(args: dict[str, Any]) -> str:
        return f"{int(args.get('pages', 1)) * 0.001:.3f}"

    @paid_tool(server, vlx, price_resolver=by_pages)
    async def summarize(pages: int) -> str:
        """A price from the arguments (an async resolver)."""
        runs["summarize"] += 1
        return f"{pages} pages, paid {current_payment().amount}"

    @paid_tool(server, vlx, price="0.002")
    async def flaky(fail: bool) -> str:
        runs["flaky"] += 1
        if fail:
            raise RuntimeError("backend down")
        return "ok"

    @paid_tool(server, vlx, price_resolver=lambda args: "abc")
    def mispriced() -> str:
        runs["mispriced"] += 1
        return "never"

    @paid_tool(server, vlx, price_resolver=lambda _args, payer: "0.001" if payer else "0.002")
    def loyal() -> str:
        """Cheaper for a payer who names itself (the resolver takes the payer)."""
        runs["loyal"] += 1
        return f"paid {current_payment().amount}"

    @server.tool()
    def free() -> str:
        runs["free"] += 1
        return "free"

    return server


if __name__ == "__main__":
    vlx = VlexivoServer(
        api_secret=os.environ["VLX_SECRET_KEY"],
        facilitator_url=os.environ["VLX_FACILITATOR_URL"],
        origin=os.environ.get("VLX_ORIGIN", ORIGIN),
    )
    build(vlx, Counter()).run("stdio")
