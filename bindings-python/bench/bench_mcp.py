"""A paid MCP tool call vs an unpaid one, through the real MCP SDK (``mcp`` 2) over its in-memory
transport, in one process (bounded by counts).

    python bench/bench_mcp.py [--calls 2000] [--rounds 4]

The paid tool's calls each carry a fresh proof in ``_meta["vlexivo/proof"]`` (minted beforehand,
untimed, with the provider's HS256 key as the facilitator would: tests/tokens.py), so every call
runs the whole paywall: price, verify, nonce insert, the result's receipt. The free tool is the
same function without the paywall. Rounds alternate the order (ABBA). Reported: µs per call of
each, the median of per-round paid/free ratios and the µs the paywall adds; then one
``BENCH {json}`` line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import cast

from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import RequestParamsMeta
from vlexivo import VlexivoServer, _native
from vlexivo.mcp import PROOF_META, paid_tool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.tokens import mint_token  # noqa: E402

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
ORIGIN = "https://tools.example.com"


def build() -> MCPServer:
    vlx = VlexivoServer(api_secret=SECRET, origin=ORIGIN)
    server = MCPServer("bench")

    @paid_tool(server, vlx, price="0.001")
    async def paid(x: int) -> str:
        return str(x)

    @server.tool()
    async def free(x: int) -> str:
        return str(x)

    return server


def proof_meta(proof: str) -> RequestParamsMeta:
    """A call's ``_meta`` carrying the proof (its key is not a literal the TypedDict knows)."""
    return cast(RequestParamsMeta, {PROOF_META: proof})


async def run(calls: int, rounds: int) -> dict[str, float]:
    now = _native.now()
    per_call: dict[str, list[float]] = {"free": [], "paid": []}
    async with Client(build()) as client:
        for tool in ("free", "paid"):  # warm-up
            warm = proof_meta(
                mint_token(SECRET, f"warm-{tool}", "POST", "/mcp/tools/paid", "0.001", now, origin=ORIGIN)
            )
            await client.call_tool(tool, {"x": 1}, meta=warm if tool == "paid" else None)
        for rnd in range(rounds):
            for tool in ("free", "paid") if rnd % 2 == 0 else ("paid", "free"):
                proofs = [
                    mint_token(
                        SECRET, f"r{rnd}-{i:012d}", "POST", "/mcp/tools/paid", "0.001", now, origin=ORIGIN
                    )
                    for i in range(calls)
                ]
                t0 = time.perf_counter()
                for i in range(calls):
                    meta = proof_meta(proofs[i]) if tool == "paid" else None
                    r = await client.call_tool(tool, {"x": i}, meta=meta)
                    assert not r.is_error
                per_call[tool].append((time.perf_counter() - t0) / calls * 1e6)
                print(f"round {rnd} {tool:<4} {per_call[tool][-1]:8.1f} µs/call", flush=True)
    ratios = [p / f for f, p in zip(per_call["free"], per_call["paid"], strict=True)]
    free, paid = statistics.median(per_call["free"]), statistics.median(per_call["paid"])
    return {"free_us": free, "paid_us": paid, "added_us": paid - free, "ratio": statistics.median(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    res = asyncio.run(run(args.calls, args.rounds))
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"median per call: free {res['free_us']:.1f} µs, paid {res['paid_us']:.1f} µs "
        f"(+{res['added_us']:.1f} µs); median paid/free = {res['ratio']:.3f}"
    )
    print("BENCH " + json.dumps({"bench": "mcp", "rounds": args.rounds, "calls": args.calls, **res}))


if __name__ == "__main__":
    main()
