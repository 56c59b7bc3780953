"""Two API instances (two processes) sharing a Redis, then a PostgreSQL nonce store, for
FastAPI and Flask: a proof used on one is refused on the other, and 200 concurrent requests
spread over both carrying 100 distinct proofs run the handler exactly 100 times. Plus: store
URLs that are malformed, unknown or point nowhere fail at construction; a store that goes down
fails paid requests closed (503), never the free ones, and the proof works once it is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import vlexivo
from vlexivo import VlexivoServer, _native

from .conftest import REPO
from .tokens import mint_token

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
SERVICES = REPO / "scripts" / "test-services.sh"
HERE = Path(__file__).resolve().parent


def services(*args: str) -> str:
    out = subprocess.run(["bash", str(SERVICES), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (
        f"test-services.sh {args}: {out.stderr} (run scripts/test-services.sh install)"
    )
    return out.stdout.strip()


class Stores:
    def __init__(self) -> None:
        # Each in a directory of its own under /tmp (PostgreSQL's user must reach its one).
        self.dirs = [tempfile.mkdtemp(prefix="vlx-py-redis-"), tempfile.mkdtemp(prefix="vlx-py-pg-")]
        try:
            self.redis = services("redis", "start", self.dirs[0])
            self.pg = services("postgres", "start", self.dirs[1])
        except BaseException:
            # Nothing started here outlives a failed start.
            for d in self.dirs:
                subprocess.run(["bash", str(SERVICES), "stop", d], capture_output=True, check=False)
            raise

    def database(self) -> str:
        name = "n" + uuid.uuid4().hex[:12]
        subprocess.run(
            ["psql", "-q", self.pg, "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True
        )
        return self.pg.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def stores() -> Iterator[Stores]:
    s = Stores()
    try:
        yield s
    finally:
        for d in s.dirs:
            services("stop", d)
            subprocess.run(["rm", "-rf", d], check=False)


class Instance:
    def __init__(self, framework: str, store: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "scale_app.py"), framework, store, SECRET],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT="):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"instance did not start: {line!r} {err}")
        self.url = f"http://127.0.0.1:{line[5:]}"

    def runs(self) -> int:
        return int(httpx.get(f"{self.url}/runs", timeout=10).json()["runs"])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def token(nonce: str) -> str:
    return mint_token(SECRET, nonce, "GET", "/paid", "0.001", _native.now())


def paid(url: str, proof: str) -> tuple[int, Any]:
    r = httpx.get(f"{url}/paid", headers={"Vlexivo-Proof": proof}, timeout=30)
    return r.status_code, r.json()


@pytest.mark.parametrize("kind", ["redis", "postgres"])
@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_two_instances_share_the_store(stores: Stores, framework: str, kind: str) -> None:
    url = stores.redis + f"?prefix={uuid.uuid4().hex}:" if kind == "redis" else stores.database()
    a, b = Instance(framework, url), Instance(framework, url)
    try:
        # A proof used on one instance is refused on the other.
        first = token(uuid.uuid4().hex[:24])
        assert paid(a.url, first)[0] == 200
        status, body = paid(b.url, first)
        assert (status, body["error"]) == (409, "token_replayed")

        # 200 concurrent requests, every one of 100 proofs sent to both instances.
        proofs = [token(uuid.uuid4().hex[:24]) for _ in range(100)]
        jobs = [(inst.url, p) for p in proofs for inst in (a, b)]
        with ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(lambda j: paid(*j), jobs))
        statuses = sorted(s for s, _ in results)
        assert statuses.count(200) == 100 and statuses.count(409) == 100, statuses
        assert a.runs() + b.runs() == 101
    finally:
        a.stop()
        b.stop()


def test_store_urls_fail_at_construction(stores: Stores) -> None:
    for store, opts, what in [
        ("redis//localhost", None, "not a store URL"),
        ("mongodb://h", None, "unknown scheme"),
        (stores.redis, {"timeout": 5}, 'unknown option "timeout"'),
        (stores.redis, {"pool_size": "lots"}, "pool_size"),
        ("redis://:hunter2@127.0.0.1:1", {"connect_timeout_ms": 300}, "cannot connect"),
        ("postgres://postgres@127.0.0.1:1/x", {"connect_timeout_ms": 300}, "cannot use"),
        ("/var/tmp/nonces.db", None, "not a store URL"),
    ]:
        with pytest.raises(vlexivo.VlexivoError) as e:
            VlexivoServer(api_secret=SECRET, nonce_store=store, nonce_store_options=opts)
        assert e.value.code == "config_invalid", store
        assert what in str(e.value), str(e.value)
        assert "hunter2" not in str(e.value)


def test_pages_thread_takes_a_python_bool() -> None:
    """``nonce_store_options={"pages_thread": False}``: no page-making thread is started for the
    memory store (``True`` and the default start it). Each in a process of its own: the thread
    is per process; the kernel keeps 15 bytes of its name, vlexivo-store-pages. The thread names
    itself once it runs: looked for until it shows (bounded), or for 2 s where none is expected."""
    script = """
import json, os, sys, time
from vlexivo import VlexivoServer
options = json.loads(sys.argv[2])
vlx = VlexivoServer(api_secret=sys.argv[1], nonce_store_options=options)
def named(t):
    try:
        return open(f"/proc/self/task/{t}/comm").read().strip()
    except OSError:
        return ""
def count():
    return sum(named(t) == "vlexivo-store-p" for t in os.listdir("/proc/self/task"))
until = time.monotonic() + (2 if options.get("pages_thread") is False else 30)
n = count()
while n == 0 and time.monotonic() < until:
    time.sleep(0.01)
    n = count()
print(n)
"""

    def helpers(options: dict[str, object]) -> int:
        out = subprocess.run(
            [sys.executable, "-c", script, SECRET, json.dumps(options)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip().splitlines()[-1])

    assert helpers({"pages_thread": False}) == 0
    assert helpers({"pages_thread": False, "capacity": 5000}) == 0
    assert helpers({}) == 1
    assert helpers({"pages_thread": True}) == 1
    with pytest.raises(vlexivo.VlexivoError) as e:
        VlexivoServer(api_secret=SECRET, nonce_store_options={"pages_thread": "no"})
    assert e.value.code == "config_invalid" and "pages_thread must be true or false" in str(e.value)


def test_store_down_fails_closed_without_blocking_the_loop(stores: Stores, tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP): a paid FastAPI request waits at most the store timeout and gets
    503 nonce_store_unavailable, the handler does not run, a free route keeps answering
    meanwhile (the event loop is not blocked), and the proof works once Redis is back."""
    root = str(tmp_path / "r")
    redis = services("redis", "start", root)
    port = redis.rsplit(":", 1)[1]
    pid = Path(f"{root}/redis-{port}.pid").read_text().strip()
    inst = Instance("fastapi", redis)
    try:
        proof = token(uuid.uuid4().hex[:24])
        os.kill(int(pid), 19)  # SIGSTOP
        with ThreadPoolExecutor(max_workers=2) as pool:
            slow = pool.submit(paid, inst.url, proof)
            time.sleep(0.3)
            # While the paid request waits on the frozen store, the loop still serves.
            free = httpx.get(f"{inst.url}/runs", timeout=10)
            assert free.status_code == 200 and not slow.done()
            status, body = slow.result()
        assert (status, body["error"]) == (503, "nonce_store_unavailable")
        assert inst.runs() == 0
        # Counted where the application can read it.
        assert httpx.get(f"{inst.url}/runs", timeout=10).json()["store_failures"] >= 1
        os.kill(int(pid), 18)  # SIGCONT
        # The lost consume is undone in the background; the same proof then buys one run.
        for _ in range(200):
            status, body = paid(inst.url, proof)
            if status == 200:
                break
            assert status in (409, 503), body
            time.sleep(0.1)
        assert status == 200 and inst.runs() == 1
    finally:
        os.kill(int(pid), 18)
        inst.stop()
        services("stop", root)
