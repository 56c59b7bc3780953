"""Live mode from Python: a real anvil with Circle's FiatTokenV2_2 and a live facilitator
(`vlexivo demo --live --serve`), a FastAPI paywall in live mode configured from the VLX_*
settlement terms, and the httpx client paying on chain. Balances are read from the chain
(eth_call balanceOf), independently of the facilitator."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from vlexivo import VlexivoClient, VlexivoServer, Wallet

from .conftest import REPO, facilitator_bin

ANVIL = REPO / "live" / "devnet" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
TERMS = ("VLX_NETWORK", "VLX_ASSET", "VLX_ASSET_NAME", "VLX_ASSET_VERSION", "VLX_PAY_TO")


@pytest.fixture(scope="module")
def devnet() -> Iterator[dict[str, str]]:
    if not ANVIL.exists():
        pytest.skip("the devnet is not installed (npm ci --prefix live/devnet)")
    proc = subprocess.Popen(
        [str(facilitator_bin()), "demo", "--live", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    env: dict[str, str] = {}
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line == "READY":
            break
        name, _, value = line.partition("=")
        env[name] = value
    try:
        assert env.get("VLX_SECRET_KEY", "").startswith("sk_live_"), env
        yield env
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def on_chain(env: dict[str, str], address: str) -> int:
    data = "0x70a08231" + address[2:].lower().rjust(64, "0")
    call = {"to": env["VLX_ASSET"], "data": data}
    r = httpx.post(
        env["VLX_RPC_URL"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
    )
    return int(r.json()["result"], 16)


def test_the_python_client_pays_a_live_fastapi_paywall_on_chain(
    devnet: dict[str, str], serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The live paywall reads its settlement terms from the environment, as in production.
    for name in TERMS:
        monkeypatch.setenv(name, devnet[name])
    monkeypatch.setenv("VLX_FACILITATOR_URL", devnet["VLX_FACILITATOR_URL"])
    vlx = VlexivoServer(
        api_secret=devnet["VLX_SECRET_KEY"], mode="live", facilitator_url=devnet["VLX_FACILITATOR_URL"]
    )
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"GET /api/v1/hello": vlx.price("0.001")})

    @app.get("/api/v1/hello")
    async def hello(request: Request) -> dict[str, Any]:
        payment = request.state.vlx_payment
        return {"paid": payment.amount, "payer": payment.payer, "tx": payment.tx_hash}

    url = serve("uvicorn", app)
    payer = Wallet(devnet["VLX_WALLET_KEY"]).address
    payer_before, payout_before = on_chain(devnet, payer), on_chain(devnet, devnet["VLX_PAY_TO"])
    hashes = set()
    with VlexivoClient(wallet_key=devnet["VLX_WALLET_KEY"], base_url=url) as client:
        for i in range(3):
            r = client.get(f"/api/v1/hello?i={i}")
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["paid"], body["payer"]) == ("0.001", payer)
            hashes.add(body["tx"])
    assert len(hashes) == 3, "one transaction per call"
    # Automine: each relay is in a block by the time it is read.
    assert payer_before - on_chain(devnet, payer) == 3000
    assert on_chain(devnet, devnet["VLX_PAY_TO"]) - payout_before == 3000
