#!/usr/bin/env python3
"""The soak benchmark (a benchmark, not a test; scripts/soak.sh runs this).

A real facilitator (`vlexivo serve`, SQLite ledger), the Express paywall (Node) and the FastAPI
paywall (Python, uvicorn), both on one throwaway Redis nonce store (a key prefix each), under a
steady load from a Node and a Python load generator (bindings-*/bench/soak*): paid calls through
the VlexivoClient of each language, replayed proofs, expired proofs (used more than the token's
300 s lifetime ago) and forged ones. Everything binds 127.0.0.1; the run is bounded by
--minutes and --max-calls, and stops every process it started.

Every ~10 s it samples each process's RSS and open file descriptors and each API's live nonces
in the store (keys under its prefix: they expire with their token, so the count must level off
once the first tokens expire); the generators report each call's latency per 10 s window. At the
end: the paid handler runs of each API, `vlexivo ledger verify`, and the payments in the ledger
(each paid call served is one payment: the two must be equal), the RSS slope of each process in
bytes per hour (least squares over all samples, and over the samples after the first expiries),
and the p99 drift (last window's p99 over the first's).

    scripts/soak.sh                   # 10 minutes, release builds
    scripts/soak.sh --minutes 2 --profile debug --no-build
    scripts/soak.sh --smoke           # 20 s on debug builds, checks that it runs

Output: target/soak/<time>/series.csv (one row per sample), windows.json (latencies per window),
summary.json; the summary is printed too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "bindings-node"
PY = ROOT / "bindings-python"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
VENV = Path(os.environ.get("VLEXIVO_PY_VENV", PY / ".venv"))
TOKEN_TTL_S = 300  # core's TOKEN_TTL_SECS: a nonce is held until its token expires


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without its VLX_* settings (each process gets only the soak's)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("VLX_")}, **(extra or {})}


def sh(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    log(" ".join(cmd) + (f"   (in {cwd.relative_to(ROOT)})" if cwd != ROOT else ""))
    subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, check=True)


def build(profile: str) -> None:
    release = ["--release"] if profile == "release" else []
    sh(["cargo", "build", "-q", "-p", "vlexivo-facilitator", "--bin", "vlexivo", *release])
    if not (NODE / "node_modules").is_dir():
        sh(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE)
    sh(["npx", "napi", "build", "--platform", *release, "--output-dir", "native", "--js", "index.js",
        "--dts", "index.d.ts"], cwd=NODE)
    sh(["npm", "run", "-s", "build:ts"], cwd=NODE)
    py = VENV / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(VENV)])
    sh([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements-dev.txt"], cwd=PY)
    sh([str(VENV / "bin" / "maturin"), "develop", "-q", *release], cwd=PY,
       env={"VIRTUAL_ENV": str(VENV), "CARGO_TARGET_DIR": str(TARGET)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_until(what: str, ok: Any, secs: float = 60) -> None:
    end = time.time() + secs
    while time.time() < end:
        try:
            if ok():
                return
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up within {secs:.0f} s")


class Procs:
    """Every process the soak starts; all are stopped at the end, whatever happens."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.all: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None,
              stdout: int | TextIO = subprocess.PIPE) -> subprocess.Popen[str]:
        err = open(self.work / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        p = subprocess.Popen(cmd, cwd=cwd, env=base_env(env), stdin=subprocess.DEVNULL,
                             stdout=stdout, stderr=err, text=True)
        self.all[name] = p
        return p

    def first_line(self, name: str, secs: float = 60) -> str:
        out: list[str] = []
        p = self.all[name]
        t = threading.Thread(target=lambda: out.append(p.stdout.readline() if p.stdout else ""), daemon=True)
        t.start()
        t.join(secs)
        if not out or not out[0]:
            raise SystemExit(f"{name} printed nothing within {secs:.0f} s; see {self.work / (name + '.log')}")
        return out[0].strip()

    def stop(self, name: str, secs: float = 20) -> None:
        p = self.all.get(name)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(secs)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.all)):
            self.stop(name, 10)


def proc_sample(pid: int) -> tuple[int, int]:
    """(RSS bytes, open file descriptors) of a process; (0, 0) once it is gone."""
    try:
        rss = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return 0, 0


def live_nonces(port: int, prefix: str) -> int:
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--scan", "--pattern", f"{prefix}*"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return sum(1 for line in out.splitlines() if line)


def slope_per_hour(ts: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over ts (seconds), per hour."""
    if len(ts) < 3:
        return None
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return None if den == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den * 3600


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=20, help="calls/s of each load generator (default 20)")
    ap.add_argument("--workers", type=int, default=4, help="clients (wallets) per load generator")
    ap.add_argument("--max-calls", type=int, default=100_000, help="per load generator")
    ap.add_argument("--sample-secs", type=float, default=10)
    ap.add_argument("--profile", choices=["release", "debug"], default="release")
    ap.add_argument("--no-build", action="store_true", help="use what is already built")
    ap.add_argument("--smoke", action="store_true", help="20 s on debug builds: checks that it runs")
    ap.add_argument("--out", type=Path, help="output directory (default target/soak/<time>)")
    args = ap.parse_args()
    if args.smoke:
        args.minutes, args.profile, args.sample_secs = 1 / 3, "debug", 5
    if not args.no_build:
        build(args.profile)
    out = args.out or TARGET / "soak" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vlexivo-soak-") as tmp:
        procs = Procs(Path(tmp))
        try:
            summary = run(args, Path(tmp), out, procs)
        finally:
            procs.stop_all()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    log(f"series, windows and summary in {out}")
    if not summary["ok"]:
        raise SystemExit("soak: " + "; ".join(summary["problems"]))


def run(args: argparse.Namespace, tmp: Path, out: Path, procs: Procs) -> dict[str, Any]:
    bin_dir = TARGET / ("release" if args.profile == "release" else "debug")
    vlexivo = str(bin_dir / "vlexivo")
    uptime_start = os.getloadavg()

    # Redis on a free port (a few tries: another process may take the port first).
    for _ in range(5):
        redis_port = free_port()
        procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
        try:
            wait_until("redis", lambda port=redis_port: subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"],
                capture_output=True, text=True, timeout=5).stdout.strip() == "PONG", 10)
            break
        except SystemExit:
            procs.stop("redis")
    else:
        raise SystemExit("redis-server did not start")
    store = f"redis://127.0.0.1:{redis_port}"

    db = tmp / "ledger.db"
    procs.start("facilitator", [vlexivo, "serve", "--addr", "127.0.0.1:0", "--db", str(db),
                                "--faucet-cap", "1000000"], env={"RUST_LOG": "warn"})
    fac_url = procs.first_line("facilitator").removeprefix("VLEXIVO_URL=")
    provider = http_json("POST", f"{fac_url}/v1/providers", {})
    api_env = {"VLX_SECRET_KEY": provider["api_secret"], "VLX_FACILITATOR_URL": fac_url, "SOAK_STORE": store,
               "SOAK_CHALLENGE_TTL": "30"}

    procs.start("express", ["node", "bench/soak-express.mjs"], cwd=NODE,
                env={**api_env, "SOAK_STORE_PREFIX": "soak-express:"})
    express = procs.first_line("express").removeprefix("listening on ")
    py = str(VENV / "bin" / "python")
    for _ in range(5):
        fastapi_port = free_port()
        procs.start("fastapi", [py, "-m", "uvicorn", "soak_app:app", "--host", "127.0.0.1", "--port",
                                str(fastapi_port), "--no-access-log", "--log-level", "warning"],
                    cwd=PY / "bench", env={**api_env, "SOAK_STORE_PREFIX": "soak-fastapi:"},
                    stdout=subprocess.DEVNULL)
        fastapi = f"http://127.0.0.1:{fastapi_port}"
        try:
            wait_until("fastapi", lambda url=fastapi: http_json("GET", f"{url}/stats") is not None, 60)
            break
        except SystemExit:
            procs.stop("fastapi")
    else:
        raise SystemExit("the FastAPI app did not start")
    apis = {"express": express, "fastapi": fastapi}

    t0 = time.time()
    deadline = t0 + args.minutes * 60
    gen_env = {"VLX_FACILITATOR_URL": fac_url, "SOAK_TARGETS": ",".join(f"{n}={u}" for n, u in apis.items()),
               "SOAK_T0_MS": str(int(t0 * 1000)), "SOAK_DEADLINE_MS": str(int(deadline * 1000)),
               "SOAK_MAX_CALLS": str(args.max_calls), "SOAK_WORKERS": str(args.workers),
               "SOAK_RATE": str(args.rate), "SOAK_WINDOW_S": str(args.sample_secs),
               "SOAK_EXPIRED_AFTER_S": str(TOKEN_TTL_S + 5)}
    lines: list[dict[str, Any]] = []

    def reader(name: str) -> None:
        p = procs.all[name]
        assert p.stdout is not None
        for line in p.stdout:
            try:
                lines.append(json.loads(line))
            except ValueError:
                log(f"{name}: {line.rstrip()}")

    readers = []
    for name, cmd, cwd in [("load-node", ["node", "bench/soak-load.mjs"], NODE),
                           ("load-python", [py, "bench/soak_load.py"], PY)]:
        procs.start(name, cmd, cwd=cwd, env=gen_env)
        readers.append(threading.Thread(target=reader, args=(name,), daemon=True))
        readers[-1].start()
    log(f"load running for {args.minutes:g} min against {express} (Express) and {fastapi} (FastAPI); "
        f"facilitator {fac_url}, nonce store {store}; load average {os.getloadavg()[0]:.1f}")

    watched = ["facilitator", "express", "fastapi", "redis", "load-node", "load-python"]
    rows: list[dict[str, Any]] = []
    hard_end = deadline + 120
    next_sample = t0
    while time.time() < hard_end and any(procs.all[g].poll() is None for g in ("load-node", "load-python")):
        if time.time() >= next_sample:
            row: dict[str, Any] = {"t": round(time.time() - t0, 1), "load1": os.getloadavg()[0]}
            for name in watched:
                row[f"rss_{name}"], row[f"fds_{name}"] = proc_sample(procs.all[name].pid)
            for name in apis:
                row[f"nonces_{name}"] = live_nonces(redis_port, f"soak-{name}:")
            rows.append(row)
            if len(rows) % 6 == 1:
                log(f"t={row['t']:.0f}s rss MB: " + ", ".join(
                    f"{n} {row[f'rss_{n}'] / 1e6:.0f}" for n in watched[:3]) +
                    f"; nonces {row['nonces_express']} + {row['nonces_fastapi']}; load {row['load1']:.1f}")
            next_sample += args.sample_secs
        time.sleep(0.2)
    for g in ("load-node", "load-python"):
        try:
            procs.all[g].wait(30)
        except subprocess.TimeoutExpired:
            procs.stop(g)
    for r in readers:
        r.join(10)
    elapsed = time.time() - t0
    handled = {n: http_json("GET", f"{u}/stats") for n, u in apis.items()}

    procs.stop("facilitator")
    verify = subprocess.run([vlexivo, "ledger", "verify", "--json", "--db", str(db)], capture_output=True,
                            text=True, env=base_env(), timeout=600)
    try:
        verified = json.loads(verify.stdout)
    except ValueError:
        verified = {"ok": False, "error": verify.stderr.strip()[-500:]}
    ledger_payments = int(verified.get("summary", {}).get("payments", -1))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        payment_rows = int(c.execute("SELECT count(*) FROM payments").fetchone()[0])

    # Windows: latencies of every generator's calls, per API and kind.
    windows: dict[int, dict[str, dict[str, Any]]] = {}
    gens_done = [x for x in lines if x.get("done")]
    for x in lines:
        if "cells" not in x:
            continue
        w = windows.setdefault(int(x["w"]), {})
        for key, cell in x["cells"].items():
            agg = w.setdefault(key, {"status": {}, "ms": []})
            for s, n in cell["status"].items():
                agg["status"][s] = agg["status"].get(s, 0) + n
            agg["ms"].extend(cell["ms"])
    keys = sorted({k for w in windows.values() for k in w})
    totals: dict[str, dict[str, int]] = {}
    for w in windows.values():
        for key, cell in w.items():
            t = totals.setdefault(key, {})
            for s, n in cell["status"].items():
                t[s] = t.get(s, 0) + n
    series_w = []
    for i in sorted(windows):
        entry: dict[str, Any] = {"window": i, "t": i * args.sample_secs}
        for key in keys:
            ms = windows[i].get(key, {}).get("ms", [])
            entry[key] = {"n": len(ms), "p50": pct(ms, 0.5), "p99": pct(ms, 0.99)}
        series_w.append(entry)
    (out / "windows.json").write_text(json.dumps(series_w, indent=1))

    # The sample rows, with each window's paid-call percentiles beside them.
    with (out / "series.csv").open("w", newline="") as f:
        fields = list(rows[0]) + [f"{k}_{q}" for k in keys for q in ("p50", "p99")] if rows else []
        wcsv = csv.DictWriter(f, fieldnames=fields)
        wcsv.writeheader()
        for row in rows:
            w = windows.get(int(row["t"] // args.sample_secs), {})
            extra = {f"{k}_{q}": pct(w.get(k, {}).get("ms", []), 0.5 if q == "p50" else 0.99)
                     for k in keys for q in ("p50", "p99")}
            wcsv.writerow({**row, **extra})

    # Figures.
    settle = TOKEN_TTL_S + 30
    ts = [r["t"] for r in rows]
    later = [r for r in rows if r["t"] >= settle]
    figures: dict[str, Any] = {}
    for name in watched:
        figures[name] = {
            "rss_first_mb": round(rows[0][f"rss_{name}"] / 1e6, 1) if rows else None,
            "rss_last_mb": round(rows[-1][f"rss_{name}"] / 1e6, 1) if rows else None,
            "rss_slope_bytes_per_hour": slope_per_hour(ts, [r[f"rss_{name}"] for r in rows]),
            "rss_slope_bytes_per_hour_after_first_expiries": slope_per_hour(
                [r["t"] for r in later], [r[f"rss_{name}"] for r in later]),
            "fds_min_max": [min(r[f"fds_{name}"] for r in rows), max(r[f"fds_{name}"] for r in rows)] if rows else None,
        }
    for name in apis:
        figures[name]["nonces_max"] = max((r[f"nonces_{name}"] for r in rows), default=0)
        figures[name]["nonces_last"] = rows[-1][f"nonces_{name}"] if rows else 0
        figures[name]["handled"] = handled[name]["handled"]
        figures[name]["store_failures"] = handled[name]["storeFailures"]
    # p99 drift: the calls of the first minute against those of the last full minute (the last
    # window may be cut short by the deadline), pooled per API and kind.
    per_min = max(1, round(60 / args.sample_secs))
    idx = sorted(windows)
    first_ws, last_ws = idx[:per_min], idx[-per_min - 1 : -1] if len(idx) > per_min + 1 else idx[-per_min:]
    drift: dict[str, Any] = {}
    for key in keys:
        a = [m for i in first_ws for m in windows[i].get(key, {}).get("ms", [])]
        b = [m for i in last_ws for m in windows[i].get(key, {}).get("ms", [])]
        pa, pb = pct(a, 0.99), pct(b, 0.99)
        if pa and pb:
            drift[key] = {"calls_first_last": [len(a), len(b)], "p50_first_ms": pct(a, 0.5), "p50_last_ms": pct(b, 0.5),
                          "p99_first_ms": pa, "p99_last_ms": pb, "p99_last_over_first": round(pb / pa, 2)}
    served = sum(h["handled"] for h in handled.values())
    client_paid_200 = sum(totals.get(f"{n}:paid", {}).get("200", 0) for n in apis)
    wrongly_served = {k: v.get("200", 0) for k, v in totals.items() if not k.endswith(":paid") and v.get("200")}
    problems = []
    if verify.returncode != 0 or not verified.get("ok"):
        problems.append(f"ledger verify failed: {verified.get('error')}")
    if payment_rows != ledger_payments:
        problems.append(f"ledger verify counted {ledger_payments} payments, the payments table has {payment_rows}")
    if served != ledger_payments:
        problems.append(f"paid calls served {served} != payments in the ledger {ledger_payments}")
    if wrongly_served:
        problems.append(f"a refused kind of proof was served: {wrongly_served}")
    if len(gens_done) != 2:
        problems.append("a load generator did not finish")
    if not rows:
        problems.append("no samples")
    return {
        "ok": not problems,
        "problems": problems,
        "minutes": round(elapsed / 60, 2),
        "profile": args.profile,
        "rate_per_generator": args.rate,
        "load_average_start": [round(x, 1) for x in uptime_start],
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "load1_min_max": [min(r["load1"] for r in rows), max(r["load1"] for r in rows)] if rows else None,
        "calls": {g["gen"]: g["calls"] for g in gens_done},
        "status_totals": totals,
        "paid_calls_served": served,
        "client_paid_200": client_paid_200,
        "ledger_payments": ledger_payments,
        "ledger_verify": verified,
        "processes": figures,
        "latency_drift": drift,
    }


if __name__ == "__main__":
    main()
