"""Real servers for the tests: the `vlexivo` facilitator as a process, uvicorn and waitress /
werkzeug in threads, all on 127.0.0.1 with ports chosen by the OS."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The shared vectors, read in place (never copied).
VECTORS = HERE / ".." / ".." / "tests" / "vectors"


def vectors(name: str) -> dict[str, Any]:
    with open(VECTORS / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def facilitator_bin() -> Path:
    if os.environ.get("VLEXIVO_BIN"):
        return Path(os.environ["VLEXIVO_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target / "debug" / "vlexivo"


class Facilitator:
    def __init__(self, url: str, proc: subprocess.Popen[str]) -> None:
        self.url = url
        self.proc = proc
        self.http = httpx.Client(base_url=url, timeout=10)

    def provider(self) -> dict[str, Any]:
        r = self.http.post("/v1/providers", json={"mode": "sandbox"})
        r.raise_for_status()
        return r.json()

    def top_up(self, address: str, amount: str) -> str:
        r = self.http.post(f"/v1/wallets/{address}/topup", json={"amount": amount})
        r.raise_for_status()
        return str(r.json()["balance"])

    def balance(self, address: str) -> str:
        r = self.http.get(f"/v1/wallets/{address}")
        r.raise_for_status()
        return str(r.json()["balance"])

    def payments(self, api_secret: str) -> list[dict[str, Any]]:
        r = self.http.get(
            "/v1/providers/me/payments",
            params={"limit": 1000},
            headers={"authorization": f"Bearer {api_secret}"},
        )
        r.raise_for_status()
        return list(r.json()["payments"])


def start_facilitator(db: Path, public_url: str | None = None) -> Facilitator:
    """`vlexivo serve` on a free port (`public_url`: the URL it believes it is reached at)."""
    binary = facilitator_bin()
    assert binary.exists(), f"{binary} missing: run `cargo build -p vlexivo-facilitator` (or set VLEXIVO_BIN)"
    args = [str(binary), "serve", "--addr", "127.0.0.1:0", "--db", str(db)]
    if public_url is not None:
        args += ["--public-url", public_url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("VLEXIVO_URL="), f"unexpected facilitator output {line!r}"
    return Facilitator(line.split("=", 1)[1], proc)


def stop_facilitator(fac: Facilitator) -> None:
    fac.http.close()
    fac.proc.terminate()
    try:
        fac.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        fac.proc.kill()


@pytest.fixture(scope="session")
def facilitator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facilitator]:
    fac = start_facilitator(tmp_path_factory.mktemp("facilitator") / "f.db")
    try:
        yield fac
    finally:
        stop_facilitator(fac)


class UvicornThread:
    """A real uvicorn server in a thread."""

    def __init__(self, app: Any, lifespan: str = "off") -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class WaitressThread:
    """A real waitress server in a thread (Flask's production server)."""

    def __init__(self, app: Any) -> None:
        import waitress

        # A short poll timeout lets stop() end the loop quickly.
        self.server = waitress.create_server(
            app, host="127.0.0.1", port=0, threads=8, asyncore_loop_timeout=0.05
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.effective_port}"

    def stop(self) -> None:
        # End the poll loop first (it runs while its map has channels), then close the sockets:
        # closing them under a running select() failed the loop thread with EBADF.
        channels = list(self.server._map.values())
        self.server._map.clear()
        self.thread.join(timeout=10)
        for channel in channels:
            channel.close()
        self.server.task_dispatcher.shutdown()


class WerkzeugThread:
    """werkzeug's threaded server (``flask run``'s) in a thread."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(kind, app)`` → base URL; every server is stopped after the test."""
    running: list[Any] = []

    def start(kind: str, app: Any) -> str:
        cls = {"uvicorn": UvicornThread, "waitress": WaitressThread, "werkzeug": WerkzeugThread}[kind]
        s = cls(app)
        running.append(s)
        return str(s.url)

    yield start
    for s in running:
        s.stop()
