"""FastAPI (or Django) + Vlexivo paywall vs the bare framework under load, on 127.0.0.1 (bounded
in time).

    python bench/bench_load.py [--framework fastapi|django] [--server h11|standard] [--duration 10]
                               [--connections 32] [--rounds 2]

FastAPI: ``load_app.py``'s apps; Django: ``load_django.py``'s, an async view under Django's ASGI
handler, bare and behind ``vlx.django_middleware`` (both under uvicorn).

Each variant runs as a real uvicorn process (one worker), on the server stack named, never the
one uvicorn would pick by itself from what happens to be installed: ``h11`` (uvicorn's pure-Python
HTTP/1.1 parser on asyncio's loop: ``pip install fastapi uvicorn``) or ``standard`` (httptools'
llhttp parser on uvloop: uvicorn[standard], what ``pip install "fastapi[standard]"`` brings).
wrk (Debian's `wrk` package) sends GET /hello; against the paid app every request carries a
distinct pre-minted valid proof token (the test-only native helper signs them with the
provider's HS256 key), so every request runs the full hot path: header scan, verify, nonce
insert, receipt header. The same header is sent to the bare app, so both parse the same
requests. Without wrk a bounded Python generator is used.

Rounds alternate the order (bare, paid, then paid, bare: ABBA), so drift in the machine's load
falls on both alike. Reported: the server CPU µs per request the paywall adds (robust to other
load), the median of per-round throughput ratios, the CPU ratio and the server's minor page
faults per request (every thread's); then one `BENCH {json}` line for scripts/bench.sh."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlexivo import _native

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.tokens import mint_token  # noqa: E402

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# uvicorn's --http and --loop for each server stack.
STACKS = {"h11": ("h11", "asyncio"), "standard": ("httptools", "uvloop")}


def start(app: str, module: str, stack: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "VLX_SECRET_KEY": SECRET, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"{module}:{app}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            "1",
            "--http",
            STACKS[stack][0],
            "--loop",
            STACKS[stack][1],
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"{app} did not start") from None
            time.sleep(0.05)
    return proc, url


def stat_fields(pid: int) -> list[str]:
    """A process's /proc/<pid>/stat fields after its name (Linux), counted over every thread."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: the server's own cost, which other load on a shared
    machine does not inflate the way it inflates wall-clock throughput."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far: a first touch of a page costs microseconds on a VM,
    so a fault per request would show in the CPU figure."""
    return int(stat_fields(pid)[7])


def run_wrk(url: str, tokens: Path, duration: int, connections: int, threads: int) -> tuple[float, int]:
    env = {**os.environ, "VLX_TOKENS": str(tokens), "WRK_THREADS": str(threads)}
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "-s",
            str(HERE / "tokens.lua"),
            url + "/hello",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, int(m.group(1)) if m else 0


def run_python(url: str, tokens: Path, duration: int, connections: int) -> tuple[float, int]:
    """Fallback load generator: keep-alive connections in threads, bounded by time and tokens."""
    import http.client
    import threading
    from urllib.parse import urlparse

    toks = tokens.read_text().split()
    host = urlparse(url)
    if host.hostname is None:
        raise SystemExit(f"{url}: no host")
    hostname = host.hostname
    lock = threading.Lock()
    it = iter(toks)
    done = [0, 0]
    stop = time.monotonic() + duration

    def worker() -> None:
        c = http.client.HTTPConnection(hostname, host.port)
        while time.monotonic() < stop:
            with lock:
                t = next(it, None)
            if t is None:
                return
            c.request("GET", "/hello", headers={"Vlexivo-Proof": t})
            r = c.getresponse()
            r.read()
            with lock:
                done[0] += 1
                done[1] += r.status != 200

    ts = [threading.Thread(target=worker) for _ in range(connections)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0] / (time.monotonic() - t0), done[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--framework", choices=["fastapi", "django"], default="fastapi")
    ap.add_argument("--server", choices=sorted(STACKS), default="h11")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=120_000)
    args = ap.parse_args()
    use_wrk = shutil.which("wrk") is not None
    now = _native.now()
    results: dict[str, list[float]] = {"bare": [], "paid": []}
    cpu_us: dict[str, list[float]] = {"bare": [], "paid": []}
    faults: dict[str, list[float]] = {"bare": [], "paid": []}
    with tempfile.TemporaryDirectory() as tmp:

        def mint(tag: str, count: int) -> Path:
            f = Path(tmp) / f"{tag}.txt"
            f.write_text(
                "\n".join(
                    mint_token(SECRET, f"{tag}-{i:016d}", "GET", "/hello", "0.001", now) for i in range(count)
                )
                + "\n"
            )
            return f

        for rnd in range(args.rounds):
            for app in ("bare", "paid") if rnd % 2 == 0 else ("paid", "bare"):
                # Fresh tokens (and a fresh server, so a fresh nonce store) for every run.
                warm, run = mint(f"w{rnd}{app}", 20_000), mint(f"r{rnd}{app}", args.tokens)
                proc, url = start(
                    app, {"fastapi": "load_app", "django": "load_django"}[args.framework], args.server
                )
                try:
                    if use_wrk:
                        run_wrk(url, warm, 1, 4, 1)
                        c0, f0 = cpu_seconds(proc.pid), minor_faults(proc.pid)
                        rps, bad = run_wrk(url, run, args.duration, args.connections, args.threads)
                    else:
                        run_python(url, warm, 1, 4)
                        c0, f0 = cpu_seconds(proc.pid), minor_faults(proc.pid)
                        rps, bad = run_python(url, run, args.duration, args.connections)
                    served = rps * args.duration
                    cpu_us[app].append((cpu_seconds(proc.pid) - c0) / served * 1e6)
                    faults[app].append((minor_faults(proc.pid) - f0) / served)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
                print(
                    f"round {rnd} {app:<5} {rps:9.0f} req/s   server CPU {cpu_us[app][-1]:6.1f} µs/req   "
                    f"minor faults {faults[app][-1]:.4f}/req   "
                    f"non-2xx: {bad}",
                    flush=True,
                )
                if bad:
                    raise SystemExit(f"{app}: {bad} failed requests (tokens exhausted or rejected)")
                results[app].append(rps)
    import json
    import statistics

    bare, paid = max(results["bare"]), max(results["paid"])
    ratios = [p / b for b, p in zip(results["bare"], results["paid"], strict=True)]
    http, loop = STACKS[args.server]
    tool = "wrk" if use_wrk else "python"
    print(f"tool: {tool}; server: uvicorn {http} on {loop}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"best of {args.rounds}: bare {bare:.0f} req/s, paid {paid:.0f} req/s, paid/bare = {paid / bare:.3f}"
    )
    print(f"median of per-round paid/bare ratios = {statistics.median(ratios):.3f}")
    cb, cp = statistics.median(cpu_us["bare"]), statistics.median(cpu_us["paid"])
    print(
        f"server CPU per request (median): bare {cb:.1f} µs, paid {cp:.1f} µs (+{cp - cb:.1f} µs); "
        f"capacity ratio paid/bare = {cb / cp:.3f}"
    )
    fb, fp = statistics.median(faults["bare"]), statistics.median(faults["paid"])
    print(f"server minor page faults per request (median): bare {fb:.4f}, paid {fp:.4f}")
    spread = (max(results["bare"]) - min(results["bare"])) / statistics.median(results["bare"]) * 100
    bench = {
        "bench": args.framework,
        "server": args.server,
        "rounds": args.rounds,
        "duration": args.duration,
        "tput_ratio": statistics.median(ratios),
        "cpu_ratio": cb / cp,
        "bare_cpu_us": cb,
        "paid_cpu_us": cp,
        "cpu_added_us": cp - cb,
        "bare_rps": statistics.median(results["bare"]),
        "paid_rps": statistics.median(results["paid"]),
        "bare_spread_pct": spread,
        "bare_faults_per_req": fb,
        "paid_faults_per_req": fp,
    }
    print("BENCH " + json.dumps(bench))


if __name__ == "__main__":
    main()
