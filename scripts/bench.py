#!/usr/bin/env python3
"""Every benchmark figure of the README, from one command (scripts/bench.sh runs this).

Builds release, then runs each benchmark `--runs` times (default 3); every benchmark measures
its baseline in the same process or the same interleaved run (fast-jwt and jose beside the napi
verify, bare Express beside Express + paywall, aws-lc beside RustCrypto, ...). Prints the README's
table: the range over the runs and its median, the number of runs, and the load average of each
run. `--write-readme` puts the table into README.md between its bench markers.

    scripts/bench.sh                      # everything, 3 runs
    scripts/bench.sh --only core,stores   # some benchmarks (ids: see BENCHES)
    scripts/bench.sh --smoke              # tiny counts, debug builds: checks that each runs
    scripts/bench.sh --write-readme       # also regenerate README.md's table

Benchmarks print `BENCH {json}` lines (criterion's figures are read from target/criterion).
Load generators and targets run on 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "bindings-node"
PY = ROOT / "bindings-python"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
VENV = Path(os.environ.get("VLEXIVO_PY_VENV", PY / ".venv"))
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin (scripts/bench.sh --write-readme) -->", "<!-- bench:end -->"

Values = dict[str, float]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    """The CPU model, and whether the kernel runs under a hypervisor: the same code measures
    very differently on another host (page faults, syscalls and TLB misses above all)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    guest = " hypervisor" in flags
    return f" ({model}{', a virtual machine' if guest else ''})" if model else ""


def load_average() -> float:
    return os.getloadavg()[0]


def sh(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: int = 1800) -> str:
    """Run a command, echo its output to stderr, return its stdout."""
    log(" ".join(cmd) + (f"   (in {cwd.relative_to(ROOT)})" if cwd != ROOT else ""))
    p = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                       text=True, timeout=timeout)
    sys.stderr.write(p.stdout)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout


def bench_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in out.splitlines() if line.startswith("BENCH {")]


# ------------------------------------------------------------------------------------------
# Benchmarks: each returns {figure id: value}.

class Ctx:
    def __init__(self, smoke: bool, release: bool) -> None:
        self.smoke = smoke
        self.release = release

    @property
    def profile_dir(self) -> Path:
        return TARGET / ("release" if self.release else "debug")

    def example(self, package: str, name: str, args: list[str]) -> str:
        if self.release:
            # Built by build() before the runs.
            return sh([str(TARGET / "release" / "examples" / name), *args])
        return sh(["cargo", "run", "-q", "-p", package, "--example", name, "--", *args])


def criterion_estimate(bench_id: str) -> float:
    """Median time per iteration of a criterion benchmark, in µs."""
    est = json.loads((TARGET / "criterion" / bench_id / "new" / "estimates.json").read_text())
    return float(est["median"]["point_estimate"]) / 1000.0


CORE_BENCHES = {
    "paywall": ["challenge_issue_encode", "challenge_402_response", "verify_consume_memory",
                "verify_consume_sqlite_wal", "verify_replay_memory"],
    "token": ["token_verify_hs256", "token_verify_eddsa", "token_issue_hs256", "token_issue_eddsa"],
    "wallet": ["eip712_recover", "eip712_sign"],
    "crypto": ["hs256_verify/rustcrypto", "hs256_verify/aws-lc", "hs256_sign/rustcrypto", "hs256_sign/aws-lc",
               "ed25519_verify/dalek", "ed25519_verify/aws-lc", "ed25519_sign/dalek", "ed25519_sign/aws-lc",
               "claims_b64_decode/base64", "claims_b64_decode/base64-simd"],
}


def run_core(ctx: Ctx) -> Values:
    timing = ["--warm-up-time", "0.05", "--measurement-time", "0.1", "--sample-size", "10"] if ctx.smoke else \
        ["--warm-up-time", "1", "--measurement-time", "3"]
    profile = [] if ctx.release else ["--profile", "dev"]
    out: Values = {}
    for bench, ids in CORE_BENCHES.items():
        sh(["cargo", "bench", "-q", "-p", "vlexivo-core", "--bench", bench, *profile, "--", "--noplot", *timing])
        for i in ids:
            out[i] = criterion_estimate(i)
    return out


def run_stores(ctx: Ctx) -> Values:
    out: Values = {}
    sizes = [(2_000, 5_000)] if ctx.smoke else [(100_000, 300_000), (1_000_000, 300_000)]
    for rows, ops in sizes:
        text = ctx.example("vlexivo-core", "store_latency", ["--rows", str(rows), "--ops", str(ops)])
        for b in bench_lines(text):
            tag = f"{b['store']}_{rows // 1000}k"
            for k in ("p50", "p99", "p999", "max", "own_p99", "own_p999", "own_max", "stolen", "faulted",
                      "faulted_max", "rss_filled_mb"):
                out[f"{tag}_{k}"] = b[k]
            # The machine's floor, printed for the memory store only.
            for k in ("floor_max", "floor_own_max", "slow", "slow_at_tick", "floor_slow", "floor_slow_at_tick"):
                if k in b:
                    out[f"{tag}_{k}"] = b[k]
    # The default memory store's resident memory as it fills, and a fresh one's first consumes.
    if not ctx.smoke:
        (b,) = bench_lines(ctx.example("vlexivo-core", "store_latency", ["--rss"]))
        out.update({f"rss_{k}": b[k] for k in ("made", "live_1k", "live_10k", "live_100k", "live_990k")})
    (b,) = bench_lines(ctx.example("vlexivo-core", "store_latency", ["--fresh", "2000" if ctx.smoke else "50000"]))
    out["fresh_cpu_us"], out["fresh_faults"] = b["cpu_us"], b["faults"]
    return out


def run_payments(ctx: Ctx) -> Values:
    args = ["--payments", "300", "--calls", "100", "--agents", "4"] if ctx.smoke else []
    (b,) = [x for x in bench_lines(ctx.example("vlexivo-facilitator", "bench_payments", args))
            if x["bench"] == "payments"]
    return {k: float(v) for k, v in b.items() if isinstance(v, (int, float))}


def node_ready(ctx: Ctx) -> None:
    if not (NODE / "node_modules").is_dir():
        sh(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE)
    if ctx.release:
        sh(["npm", "run", "-s", "build:native"], cwd=NODE)
        sh(["npm", "run", "-s", "build:ts"], cwd=NODE)


def run_node_verify(ctx: Ctx) -> Values:
    args = ["2000", "4"] if ctx.smoke else ["100000", "20"]
    (b,) = bench_lines(sh(["node", "bench/verify.mjs", *args], cwd=NODE))
    return {k: float(v) for k, v in b["usPerOp"].items()}


def run_node_http(ctx: Ctx) -> Values:
    args = ["0.3", "2", "8"] if ctx.smoke else ["2", "10", "16"]
    (b,) = bench_lines(sh(["node", "bench/http.mjs", *args], cwd=NODE))
    out: Values = {}
    for pair, r in b["pairs"].items():
        for k, v in r.items():
            out[f"{pair}_{k}"] = float(v)
    return out


def run_node_http_ir(ctx: Ctx) -> Values:
    # Instructions per request under callgrind (Debian package valgrind): the machine's load
    # does not move them; valgrind lacks the SHA extensions, so core's HMAC counts high.
    args = ["300", "1000", "8"] if ctx.smoke else ["5000", "20000", "8"]
    (b,) = bench_lines(sh(["node", "bench/http-callgrind.mjs", *args], cwd=NODE,
                          env={"ROUNDS": "1" if ctx.smoke else "3"}))
    return {f"{k}_ir": float(v) for k, v in b["perRequest"].items()}


def python_ready(ctx: Ctx) -> Path:
    """The developer's .venv (requirements-dev.txt) with the package built in by maturin:
    release for figures, the dev profile (already built by the test command) for --smoke."""
    py = VENV / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(VENV)])
    sh([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements-dev.txt"], cwd=PY)
    sh([str(VENV / "bin" / "maturin"), "develop", "-q"] + (["--release"] if ctx.release else []), cwd=PY,
       env={"VIRTUAL_ENV": str(VENV), "CARGO_TARGET_DIR": str(TARGET)})
    return py


def run_py_verify(ctx: Ctx) -> Values:
    py = VENV / "bin" / "python"
    (b,) = bench_lines(sh([str(py), "bench/bench_verify.py", "2000" if ctx.smoke else "50000"], cwd=PY))
    return {k: float(v) for k, v in b["usPerOp"].items()}


def run_py_load(ctx: Ctx, *more: str) -> Values:
    """FastAPI (or Django: ``--framework django``) bare and paid under uvicorn (``--server``
    names the stack: h11 on asyncio unless told)."""
    py = VENV / "bin" / "python"
    args = ["--duration", "1", "--rounds", "2", "--tokens", "20000"] if ctx.smoke else \
        ["--duration", "4", "--rounds", "6"]
    (b,) = bench_lines(sh([str(py), "bench/bench_load.py", *more, *args], cwd=PY))
    return {k: float(v) for k, v in b.items() if isinstance(v, (int, float))}


def run_py_load_std(ctx: Ctx) -> Values:
    return run_py_load(ctx, "--server", "standard")


def run_py_django(ctx: Ctx) -> Values:
    return run_py_load(ctx, "--framework", "django")


def run_py_mcp(ctx: Ctx) -> Values:
    py = VENV / "bin" / "python"
    args = ["--calls", "100", "--rounds", "2"] if ctx.smoke else ["--calls", "2000", "--rounds", "6"]
    (b,) = bench_lines(sh([str(py), "bench/bench_mcp.py", *args], cwd=PY))
    return {k: float(v) for k, v in b.items() if isinstance(v, (int, float))}


def run_live_batch(ctx: Ctx) -> Values:
    # Real anvil devnets (npm ci --prefix live/devnet); the benchmark is an ignored test.
    if not (ROOT / "live" / "devnet" / "node_modules").is_dir():
        sh(["npm", "ci", "--prefix", "live/devnet", "--no-audit", "--no-fund", "--loglevel=error"])
    profile = ["--release"] if ctx.release else []
    out = sh(["cargo", "test", "-q", *profile, "-p", "vlexivo-facilitator", "--test", "live",
              "batched_vs_single", "--", "--ignored", "--nocapture"])
    (b,) = [x for x in bench_lines(out) if x.get("bench") == "live-batch"]
    return {k: float(v) for k, v in b.items() if isinstance(v, (int, float))}


BENCHES: dict[str, tuple[str, Callable[[Ctx], Values]]] = {
    "core": ("criterion: paywall, token, wallet, crypto", run_core),
    "stores": ("nonce-store tail latency", run_stores),
    "payments": ("facilitator payments/s and paid-call latency", run_payments),
    "node-verify": ("napi verify vs fast-jwt and jose", run_node_verify),
    "node-http": ("Express and Fastify with and without the paywall", run_node_http),
    "node-http-ir": ("Fastify with and without the plugin: instructions per request (callgrind)", run_node_http_ir),
    "py-verify": ("pyo3 verify vs PyJWT", run_py_verify),
    "py-load": ("FastAPI with and without the paywall (uvicorn: h11 on asyncio)", run_py_load),
    "py-load-std": ("FastAPI with and without the paywall (uvicorn[standard]: httptools on uvloop)", run_py_load_std),
    "py-django": ("Django (ASGI) with and without the paywall middleware", run_py_django),
    "py-mcp": ("an MCP tool call paid vs unpaid (Python SDK, in memory)", run_py_mcp),
    "live-batch": ("live relays on anvil: batched (Multicall3) vs one per payment", run_live_batch),
}


def wrk_ready() -> None:
    """The Python load rows are measured with wrk (Debian's package): without it bench_load.py
    falls back to a Python load generator, whose figures are not the README's."""
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("the FastAPI and Django rows are measured with wrk: apt-get install wrk")
    log("installing wrk (Debian package)")
    if not any(p.name != "lock" for p in Path("/var/lib/apt/lists").glob("*")):
        sh(["apt-get", "update", "-qq"])
    sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
       env={"DEBIAN_FRONTEND": "noninteractive"})


def build(ctx: Ctx, only: list[str]) -> None:
    if any(b.startswith("node") for b in only):
        node_ready(ctx)
    if any(b.startswith("py") for b in only):
        python_ready(ctx)
    if ctx.release and any(b.startswith(("py-load", "py-django")) for b in only):
        wrk_ready()
    if not ctx.release:
        return
    log("building release")
    if "core" in only:
        sh(["cargo", "bench", "-q", "-p", "vlexivo-core", "--no-run"])
    if "stores" in only:
        sh(["cargo", "build", "-q", "--release", "-p", "vlexivo-core", "--example", "store_latency"])
    if "payments" in only:
        sh(["cargo", "build", "-q", "--release", "-p", "vlexivo-facilitator", "--example", "bench_payments"])
    if "live-batch" in only:
        sh(["cargo", "test", "-q", "--release", "-p", "vlexivo-facilitator", "--test", "live", "--no-run"])


# ------------------------------------------------------------------------------------------
# The table.

def quotient(num: str, den: str) -> Callable[[Values], float]:
    """One run's `num` figure over its `den` figure."""
    return lambda r: r[num] / r[den]


def spread(vals: list[float], fmt: Callable[[float], str]) -> str:
    """`a–b (median m)` over the runs, or the one value."""
    if not vals:
        return "—"
    lo, hi, med = min(vals), max(vals), statistics.median(vals)
    if len(vals) == 1 or fmt(lo) == fmt(hi):
        return fmt(med)
    return f"{fmt(lo)}–{fmt(hi)} (median {fmt(med)})"


def us(v: float) -> str:
    return f"{v:.2f} µs" if v < 10 else f"{v:.1f} µs" if v < 100 else f"{v:,.0f} µs"


def times(v: float) -> str:
    return f"{v:.2f}×"


def ratio(v: float) -> str:
    return f"{v:.2f}"


def per_s(v: float) -> str:
    return f"{v:,.0f}/s"


def ms(v: float) -> str:
    return f"{v:.2f} ms"


def count(v: float) -> str:
    return f"{v:,.0f}"


class Table:
    def __init__(self, runs: list[dict[str, Values]]) -> None:
        self.runs = runs
        self.rows: list[tuple[str, str, str, int, str]] = []

    def vals(self, bench: str, key: str) -> list[float]:
        return [r[bench][key] for r in self.runs if bench in r and key in r[bench]]

    def derived(self, bench: str, f: Callable[[Values], float]) -> list[float]:
        out = []
        for r in self.runs:
            if bench in r:
                with contextlib.suppress(KeyError, ZeroDivisionError):
                    out.append(f(r[bench]))
        return out

    def row(self, what: str, command: str, result: str, target: str = "") -> None:
        if "—" not in result.split(" / ")[0]:
            bench = command.rsplit(" ", 1)[-1]
            runs = sum(1 for r in self.runs if r.get(bench))
            self.rows.append((what, command, result, runs, target))

    def markdown(self) -> str:
        lines = ["| what | command | result: min–max over the runs (median) | runs | target |",
                 "|---|---|---|---|---|"]
        for what, cmd, res, runs, target in self.rows:
            lines.append(f"| {what} | `{cmd}` | {res} | {runs} | {target} |")
        return "\n".join(lines)


def make_table(runs: list[dict[str, Values]]) -> Table:
    t = Table(runs)
    v, d = t.vals, t.derived
    core = "scripts/bench.sh --only core"
    t.row("verify proof + consume nonce, memory store (fresh nonces)", core,
          spread(v("core", "verify_consume_memory"), us), "≤ 5 µs")
    t.row("the same proof again: a refused replay (memory)", core, spread(v("core", "verify_replay_memory"), us))
    t.row("verify proof + consume nonce, SQLite (WAL, NORMAL; fresh nonces)", core,
          spread(v("core", "verify_consume_sqlite_wal"), us), "≤ 40 µs")
    t.row("challenge issue + encode (OS RNG) / whole 402 response", core,
          f"{spread(v('core', 'challenge_issue_encode'), us)} / {spread(v('core', 'challenge_402_response'), us)}",
          "≤ 5 µs")
    t.row("HS256 / EdDSA proof verify (owned claims)", core,
          f"{spread(v('core', 'token_verify_hs256'), us)} / {spread(v('core', 'token_verify_eddsa'), us)}")
    t.row("HS256 / EdDSA proof issue (facilitator)", core,
          f"{spread(v('core', 'token_issue_hs256'), us)} / {spread(v('core', 'token_issue_eddsa'), us)}")
    t.row("EIP-712 recover (k256)", core, spread(v("core", "eip712_recover"), us), "≤ 100 µs")
    for prim, ours, theirs, label in [
        ("hs256_verify", "rustcrypto", "aws-lc", "HMAC-SHA256 verify of a token: RustCrypto vs aws-lc"),
        ("hs256_sign", "rustcrypto", "aws-lc", "HMAC-SHA256 sign of a token: RustCrypto vs aws-lc"),
        ("ed25519_verify", "dalek", "aws-lc", "Ed25519 verify of a token: ed25519-dalek vs aws-lc"),
        ("ed25519_sign", "dalek", "aws-lc", "Ed25519 sign of a token: ed25519-dalek vs aws-lc"),
        ("claims_b64_decode", "base64-simd", "base64", "claims segment base64url decode: base64-simd vs base64"),
    ]:
        a, b = f"{prim}/{theirs}", f"{prim}/{ours}"
        t.row(label, core,
              f"{spread(v('core', b), us)} vs {spread(v('core', a), us)}: "
              f"{theirs} time / {ours} time {spread(d('core', quotient(a, b)), times)}",
              "aws-lc kept only if > 1.3× faster on a figure users feel" if theirs == "aws-lc" else "")
    stores = "scripts/bench.sh --only stores"

    def floor(k: str) -> str:
        return (f"; the machine's floor, a no-op as long as 8 mean consumes timed after every 8th: max "
                f"{spread(v('stores', k + '_floor_max'), us)} (own {spread(v('stores', k + '_floor_own_max'), us)}); "
                f"own ≥ 20 µs: consumes {spread(v('stores', k + '_slow'), count)} (spanning a timer tick "
                f"{spread(v('stores', k + '_slow_at_tick'), count)}), no-ops "
                f"{spread(v('stores', k + '_floor_slow'), count)} "
                f"({spread(v('stores', k + '_floor_slow_at_tick'), count)})")

    for store, size, target in [("memory", "100k", "max ≤ 100 µs"), ("memory", "1000k", "max ≤ 100 µs"),
                                ("sqlite", "100k", "p99.9 ≤ 1 ms"), ("sqlite", "1000k", "p99.9 ≤ 1 ms")]:
        k = f"{store}_{size}"
        live = "100,000" if size == "100k" else "1,000,000"
        t.row(f"one nonce consume, {store} store, {live} live: p50 / p99.9 / max (own: neither preempted nor "
              "off its CPU to the hypervisor)", stores,
              f"p50 {spread(v('stores', k + '_p50'), us)}; p99.9 {spread(v('stores', k + '_p999'), us)} "
              f"(own {spread(v('stores', k + '_own_p999'), us)}); max {spread(v('stores', k + '_max'), us)} "
              f"(own {spread(v('stores', k + '_own_max'), us)}); off-CPU {spread(v('stores', k + '_stolen'), count)}; "
              f"own consumes that page-faulted {spread(v('stores', k + '_faulted'), count)} "
              f"(slowest {spread(v('stores', k + '_faulted_max'), us)}); process RSS filled "
              f"{spread(v('stores', k + '_rss_filled_mb'), count)} MB" + (floor(k) if store == "memory" else ""),
              target)
    t.row("default memory store: process RSS when made / at 1k / 10k / 100k / 990k live nonces; a fresh store's "
          "first 50,000 consumes after 200: CPU µs per consume, page faults in them", stores,
          " / ".join(spread(v("stores", f"rss_{k}"), count) for k in ("made", "live_1k", "live_10k", "live_100k",
                                                                       "live_990k"))
          + f" MB; {spread(v('stores', 'fresh_cpu_us'), us)}, {spread(v('stores', 'fresh_faults'), count)} faults")
    pay = "scripts/bench.sh --only payments"
    t.row("facilitator payments/s, SQLite, fsync before ack (load from another process)", pay,
          spread(v("payments", "payments_per_s"), per_s), "≥ 2,000/s")
    t.row("facilitator CPU per payment (service process only)", pay,
          spread(v("payments", "service_cpu_us_per_payment"), us))
    t.row("whole paid call (402 → pay → retry), loopback: p50 / p99 / p99.9 (unpaid baseline p50)", pay,
          f"{spread(v('payments', 'paid_p50_ms'), ms)} / {spread(v('payments', 'paid_p99_ms'), ms)} / "
          f"{spread(v('payments', 'paid_p999_ms'), ms)} "
          f"({spread(v('payments', 'base_p50_ms'), ms)}); "
          f"p99/p50 {spread(d('payments', lambda r: r['paid_p99_ms'] / r['paid_p50_ms']), times)}",
          "p50 ≤ 3 ms; p99 ≤ 3× p50")
    t.row("the disk alone, just before the paid calls: 8 pages written + fsync (what each paid call waits for "
          "before its answer), p50 / p99", pay,
          f"{spread(v('payments', 'disk_fsync_p50_ms'), ms)} / {spread(v('payments', 'disk_fsync_p99_ms'), ms)}")
    t.row("paid call: waits for a CPU (run queue of both processes' threads during a call) p50 / p99; "
          "slow calls (> 3× p50) that waited at least half their excess; threads put on a CPU per call", pay,
          f"{spread(v('payments', 'paid_wait_p50_ms'), ms)} / {spread(v('payments', 'paid_wait_p99_ms'), ms)}; "
          f"{spread(d('payments', lambda r: 100 * r['paid_slow_share_waiting']), lambda x: f'{x:.0f} %')}; "
          f"{spread(v('payments', 'paid_thread_runs_per_call'), lambda x: f'{x:.1f}')}")
    t.row("facilitator ledger COMMIT (SQLite, fsync) p99 during the paid calls (bucket bound); checkpoints; "
          "WAL files at the end, ledger / nonce store (the most each held)", pay,
          f"{spread(v('payments', 'ledger_commit_p99_ms'), ms)}; "
          f"{spread(v('payments', 'ledger_checkpoints'), lambda x: f'{x:.0f}')}; "
          f"{spread(v('payments', 'ledger_wal_mb'), lambda x: f'{x:.1f} MB')} / "
          f"{spread(v('payments', 'nonce_wal_mb'), lambda x: f'{x:.1f} MB')}")
    nv = "scripts/bench.sh --only node-verify"
    t.row("napi `Paywall.verify` (public API) / adapter path, verify + consume", nv,
          f"{spread(v('node-verify', 'verify'), us)} / {spread(v('node-verify', 'route'), us)}")
    for base, label, target in [("fastJwt", "fast-jwt HS256 (signature + exp only, no cache)", "≥ 2×"),
                                ("fastJwtMap", "fast-jwt + claims checks + Map insert (like for like)", ""),
                                ("jose", "jose jwtVerify HS256 (async: one await per call)", "≥ 10×")]:
        t.row(f"napi `Paywall.verify` / adapter path vs {label}", nv,
              f"{spread(d('node-verify', quotient(base, 'verify')), times)} / "
              f"{spread(d('node-verify', quotient(base, 'route')), times)} faster", target)
    nh = "scripts/bench.sh --only node-http"
    for fw, label, target in [("express", "Express 5", "≥ 0.85"), ("fastify", "Fastify 5", "≥ 0.90"),
                              ("hono", "Hono 4 (@hono/node-server)", "")]:
        t.row(f"{label} + paywall vs bare: server CPU µs per request added; throughput ratio; CPU ratio", nh,
              f"+{spread(v('node-http', fw + '_cpuAddedUs'), us)} on {spread(v('node-http', fw + '_bareCpuUs'), us)} "
              f"(lowest rounds +{spread(v('node-http', fw + '_cpuAddedLowUs'), us)}, "
              f"per round +{spread(v('node-http', fw + '_cpuAddedPairedUs'), us)}); "
              f"{spread(v('node-http', fw + '_tput'), ratio)}; {spread(v('node-http', fw + '_cpu'), ratio)} "
              f"(round spread of bare req/s ±{spread(v('node-http', fw + '_bareSpreadPct'), lambda x: f'{x:.0f}%')}, "
              f"of bare CPU/request ±{spread(v('node-http', fw + '_bareCpuSpreadPct'), lambda x: f'{x:.0f}%')})",
              target)
    t.row("Fastify 5 + plugin vs bare: instructions per request under callgrind (valgrind has no SHA extensions: "
          "core's HMAC counts several times its native cost)", "scripts/bench.sh --only node-http-ir",
          f"{spread(v('node-http-ir', 'fastify-paywall_ir'), lambda x: f'{x:,.0f}')} vs "
          f"{spread(v('node-http-ir', 'fastify-bare_ir'), lambda x: f'{x:,.0f}')}: +"
          + spread(d("node-http-ir", lambda r: r["fastify-paywall_ir"] - r["fastify-bare_ir"]), lambda x: f"{x:,.0f}"))
    t.row("Express + jose + Set (hand-written guard) vs bare: throughput; CPU", nh,
          f"{spread(v('node-http', 'joseSet_tput'), ratio)}; {spread(v('node-http', 'joseSet_cpu'), ratio)}")
    pv = "scripts/bench.sh --only py-verify"
    t.row("pyo3 verify + consume vs PyJWT decode (no replay check)", pv,
          f"{spread(v('py-verify', 'vlexivo'), us)} vs {spread(v('py-verify', 'pyjwt'), us)}: "
          f"{spread(d('py-verify', lambda r: r['pyjwt'] / r['vlexivo']), times)} faster", "≥ 10×")
    pl = "scripts/bench.sh --only py-load"
    t.row("FastAPI + paywall vs bare (uvicorn: h11 on asyncio; wrk, ABBA rounds): CPU µs per request added; "
          "throughput; CPU ratio", pl,
          f"+{spread(v('py-load', 'cpu_added_us'), us)} on {spread(v('py-load', 'bare_cpu_us'), us)}; "
          f"{spread(v('py-load', 'tput_ratio'), ratio)}; {spread(v('py-load', 'cpu_ratio'), ratio)}", "≥ 0.90 by CPU")
    t.row("FastAPI + paywall vs bare on uvicorn[standard] (httptools on uvloop: what "
          "`pip install \"fastapi[standard]\"` brings): the same figures",
          "scripts/bench.sh --only py-load-std",
          f"+{spread(v('py-load-std', 'cpu_added_us'), us)} on {spread(v('py-load-std', 'bare_cpu_us'), us)}; "
          f"{spread(v('py-load-std', 'tput_ratio'), ratio)}; {spread(v('py-load-std', 'cpu_ratio'), ratio)}")
    t.row("Django (ASGI, async view) + paywall middleware vs bare (uvicorn, wrk, ABBA rounds): CPU µs per request "
          "added; throughput; CPU ratio", "scripts/bench.sh --only py-django",
          f"+{spread(v('py-django', 'cpu_added_us'), us)} on {spread(v('py-django', 'bare_cpu_us'), us)}; "
          f"{spread(v('py-django', 'tput_ratio'), ratio)}; {spread(v('py-django', 'cpu_ratio'), ratio)}")
    t.row("MCP tool call, paid (fresh proof in _meta) vs unpaid (Python SDK, in-memory transport, ABBA): µs per call",
          "scripts/bench.sh --only py-mcp",
          f"{spread(v('py-mcp', 'paid_us'), us)} vs {spread(v('py-mcp', 'free_us'), us)}: "
          f"+{spread(v('py-mcp', 'added_us'), us)}, {spread(v('py-mcp', 'ratio'), times)}")
    lb = "scripts/bench.sh --only live-batch"
    t.row("live (anvil, automine, 0 confirmations), 16 payers × 10 calls at once: gas per payment, one relay each "
          "vs batched (Multicall3, 50 ms window)", lb,
          f"{spread(v('live-batch', 'single_gas_per_payment'), lambda x: f'{x:,.0f}')} vs "
          f"{spread(v('live-batch', 'batched_gas_per_payment'), lambda x: f'{x:,.0f}')}: "
          f"{spread(v('live-batch', 'gas_ratio'), times)} less")
    t.row("the same: payments/s, one relay each vs batched", lb,
          f"{spread(v('live-batch', 'single_payments_per_s'), per_s)} vs "
          f"{spread(v('live-batch', 'batched_payments_per_s'), per_s)}: "
          f"ratio {spread(v('live-batch', 'tput_ratio'), ratio)}")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    ap.add_argument("--smoke", action="store_true", help="tiny counts on debug builds (the test command's check)")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--json", type=Path, help="also write every run's raw figures here")
    ap.add_argument("--no-build", action="store_true", help="use what is already built")
    args = ap.parse_args()
    only = [b for b in args.only.split(",") if b]
    unknown = [b for b in only if b not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}")
    ctx = Ctx(smoke=args.smoke, release=not args.smoke)
    runs = 1 if args.smoke else args.runs
    if not args.no_build:
        build(ctx, only)
    results: list[dict[str, Values]] = []
    loads: list[float] = []
    started = time.time()
    for r in range(runs):
        loads.append(load_average())
        res: dict[str, Values] = {}
        for b in only:
            log(f"run {r + 1}/{runs}: {b} ({BENCHES[b][0]}), load average {load_average():.1f}")
            res[b] = BENCHES[b][1](ctx)
        results.append(res)
    table = make_table(results)
    cpu = os.cpu_count()
    note = (f"{runs} run{'s' if runs > 1 else ''} of `scripts/bench.sh` on {cpu} cores{machine()}, "
            f"{time.strftime('%Y-%m-%d')}; 1-minute load average at the start of each run: "
            f"{', '.join(f'{x:.1f}' for x in loads)}; {round((time.time() - started) / 60)} min.")
    print()
    print(table.markdown())
    print()
    print(note)
    if args.json:
        args.json.write_text(json.dumps({"loads": loads, "runs": results}, indent=1))
    if args.write_readme:
        if args.smoke:
            raise SystemExit("--write-readme needs real runs, not --smoke")
        text = README.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"README.md has no {BEGIN} … {END} markers")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{BEGIN}\n{table.markdown()}\n\n{note}\n{END}{tail}")
        log("README.md table regenerated")
    if args.smoke:
        missing = [b for b in only if not results[0].get(b)]
        if missing:
            raise SystemExit(f"no figures from {missing}")
        print(f"bench smoke: {len(only)} passed, 0 failed")


if __name__ == "__main__":
    main()
