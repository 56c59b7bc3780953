"""One API instance for the scale tests, run as its own process:
``python scale_app.py fastapi|flask STORE_URL SECRET``. Prints ``PORT=<n>`` once it listens on
127.0.0.1 (a port the OS picked). ``GET /paid`` costs 0.001; ``GET /runs`` (free) says how many
times this process ran the paid handler."""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

from vlexivo import VlexivoServer

framework, store, secret = sys.argv[1], sys.argv[2], sys.argv[3]
vlx = VlexivoServer(
    api_secret=secret, nonce_store=store, origin="http://api.test", nonce_store_options={"timeout_ms": 2000}
)
runs = 0
lock = threading.Lock()


def ran() -> int:
    global runs
    with lock:
        runs += 1
        return runs


sock = socket.socket()
sock.bind(("127.0.0.1", 0))
# Listening before PORT is printed: early connections wait in the backlog, never refused.
sock.listen(128)
port = sock.getsockname()[1]

if framework == "fastapi":
    import uvicorn
    from fastapi import Depends, FastAPI

    app = FastAPI()

    @app.get("/paid")
    def paid(payment: Any = Depends(vlx.paywall(price="0.001"))) -> dict[str, Any]:
        return {"run": ran(), "nonce": payment.nonce}

    @app.get("/runs")
    def count() -> dict[str, int]:
        return {"runs": runs, "store_failures": vlx.store_failures}

    server = uvicorn.Server(uvicorn.Config(vlx.asgi_paywall(app), log_level="warning"))
    print(f"PORT={port}", flush=True)
    server.run(sockets=[sock])
else:
    import flask
    import waitress

    fapp = flask.Flask("scale")

    @fapp.get("/paid")
    @vlx.paywall(price="0.001")
    def fpaid() -> Any:
        return {"run": ran(), "nonce": flask.g.vlx_payment.nonce}

    @fapp.get("/runs")
    def fruns() -> Any:
        return {"runs": runs, "store_failures": vlx.store_failures}

    srv = waitress.create_server(fapp, sockets=[sock], threads=16)
    print(f"PORT={port}", flush=True)
    srv.run()
