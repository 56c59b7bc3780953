"""What the paywall adds to a FastAPI request inside the server process, without sockets or a
load generator: uvicorn's own protocol is driven over an in-memory transport, so each request
runs the server's whole path (parse, the ASGI cycle, the app, serialise) on one thread.

    python bench/bench_asgi_cost.py [--server h11|standard] [--requests 3000] [--rounds 6]

``--server`` names the stack as bench_load.py does: ``h11`` (uvicorn's h11 protocol on asyncio's
loop) or ``standard`` (its httptools protocol on uvloop, what uvicorn[standard] brings).

prints the CPU µs per request of ``load_app.py``'s bare and paid apps, rounds alternating ABBA.
Its figures move with the machine's load; for a count that does not, run one app at a time under
callgrind with the same number of requests (tokens are minted alike for both):

    export PYTHONHASHSEED=0
    valgrind --tool=callgrind python bench/bench_asgi_cost.py --only paid --requests 1000 --rounds 1
    valgrind --tool=callgrind python bench/bench_asgi_cost.py --only bare --requests 1000 --rounds 1

and (paid's Ir - bare's Ir) / 1000 is the instructions the paywall adds per request (valgrind
hides SHA-NI, so the HMAC of each proof counts ~33k instructions more than the CPU runs). The
fixed hash seed matters: dictionaries' probe sequences follow it, and with a random seed per
run the same code counted up to ~5k instructions per request more or less."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
os.environ.setdefault("VLX_SECRET_KEY", SECRET)

import load_app  # noqa: E402
from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402
from vlexivo import _native  # noqa: E402

from tests.tokens import mint_token  # noqa: E402


class Transport(asyncio.Transport):
    """The connection's socket: what the server writes is kept until the next request."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def write(self, data: Any) -> None:
        self.out += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        raise SystemExit("the server closed the connection")


class Connection:
    """One keep-alive connection to a uvicorn server of ``app`` (its h11 or httptools protocol)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, protocol: type[asyncio.Protocol]) -> None:
        # No keep-alive timeout: under valgrind an idle connection would time out.
        config = Config(app=app, log_level="warning", access_log=False, timeout_keep_alive=10**6)
        config.load()
        self.state = ServerState()
        self.state.default_headers = [(b"date", b"Mon, 30 Nov 2026 06:00:00 GMT"), (b"server", b"uvicorn")]
        self.protocol: Any = protocol(config, self.state, {}, _loop=loop)  # type: ignore[call-arg]
        self.transport = Transport()
        self.protocol.connection_made(self.transport)

    async def run(self, requests: list[bytes]) -> None:
        for request in requests:
            self.transport.out.clear()
            self.protocol.data_received(request)
            while self.state.tasks:
                await asyncio.sleep(0)
            if not self.transport.out.startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"not a 200: {bytes(self.transport.out[:200])!r}")


def requests(tag: str, count: int, now: int) -> list[bytes]:
    """Requests as wrk sends them, each with its own proof (the bare app gets them too)."""
    return [
        b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVlexivo-Proof: "
        + mint_token(SECRET, f"{tag}-{i:016d}", "GET", "/hello", "0.001", now).encode()
        + b"\r\n\r\n"
        for i in range(count)
    ]


# uvicorn's protocol for each server stack (bench_load.py's STACKS); the loop is picked in __main__.
PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"h11": H11Protocol, "standard": HttpToolsProtocol}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", choices=sorted(PROTOCOLS), default="h11")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--only", choices=["bare", "paid"])
    return ap.parse_args()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    now = _native.now()
    protocol = PROTOCOLS[args.server]
    conns = {app: Connection(getattr(load_app, app), loop, protocol) for app in ("bare", "paid")}
    for app, conn in conns.items():  # warm both (middleware stacks, route caches)
        await conn.run(requests(f"w{app}", 200, now))
    apps = [args.only] if args.only else ["bare", "paid"]
    cpu: dict[str, list[float]] = {app: [] for app in apps}
    for rnd in range(args.rounds):
        for app in apps if rnd % 2 == 0 else apps[::-1]:
            batch = requests(f"r{rnd}{app}", args.requests, now)
            t0 = time.process_time()
            await conns[app].run(batch)
            cpu[app].append((time.process_time() - t0) / args.requests * 1e6)
    for app in apps:
        print(f"{app:<5} CPU µs per request: {' '.join(f'{x:.1f}' for x in cpu[app])}")
    if not args.only:
        added = [p - b for b, p in zip(cpu["bare"], cpu["paid"], strict=True)]
        b, p, m = statistics.median(cpu["bare"]), statistics.median(cpu["paid"]), statistics.median(added)
        print(
            f"paywall adds {min(added):.1f}..{max(added):.1f} µs per request (median {m:.1f}) on {b:.1f} µs "
            f"bare; CPU ratio bare/paid {b / p:.3f}; server {args.server}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    options = parse_args()
    if options.server == "standard":
        # Imported by name: uvloop is a benchmark-only install (requirements-dev.txt), absent from
        # the test environment that type-checks this file.
        importlib.import_module("uvloop").run(main(options))
    else:
        asyncio.run(main(options))
