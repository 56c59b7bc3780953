"""Live mode from Python: a real anvil with Circle's FiatTokenV2_2 and a live facilitator
(`vlexivo demo --live --serve`), a FastAPI paywall in live mode configured from the VLX_*
settlement terms, and the httpx client paying on chain. Balances are read from the chain
(eth_call balanceOf), independently of the facilitator."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from vlexivo import (
    AutoTopUp,
    PaymentError,
    VerifiedPayment,
    VlexivoClient,
    VlexivoError,
    VlexivoServer,
    Wallet,
    verify_payment,
    verify_payment_async,
)

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
    # 0 confirmations: the proof comes once the node took the relay; read the chain after its block.
    for tx in hashes:
        mined(devnet, tx)
    assert payer_before - on_chain(devnet, payer) == 3000
    assert on_chain(devnet, devnet["VLX_PAY_TO"]) - payout_before == 3000


def live_api(
    devnet: dict[str, str],
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    price: str,
    handler: Callable[..., Awaitable[dict[str, Any]]],
) -> str:
    """A FastAPI app whose ``GET /api/v1/hello`` (``handler``) has a live paywall at ``price``,
    its terms and facilitator from the environment as in production: its base URL."""
    for name in (*TERMS, "VLX_FACILITATOR_URL"):
        monkeypatch.setenv(name, devnet[name])
    vlx = VlexivoServer(
        api_secret=devnet["VLX_SECRET_KEY"], mode="live", facilitator_url=devnet["VLX_FACILITATOR_URL"]
    )
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"GET /api/v1/hello": vlx.price(price)})
    app.get("/api/v1/hello")(handler)
    url: str = serve("uvicorn", app)
    return url


def rpc(env: dict[str, str], method: str, params: list[Any]) -> Any:
    r = httpx.post(env["VLX_RPC_URL"], json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    body = r.json()
    assert "error" not in body, body
    return body["result"]


def mined(env: dict[str, str], tx: str) -> dict[str, Any]:
    """The receipt of ``tx`` once it is in a block, or a failure after 10 s. anvil answers
    eth_sendTransaction, and the facilitator at 0 confirmations answers a payment, as soon as
    the node took the transaction: its automined block may not be in yet, so nothing read from
    the chain (a balance, a receipt) reflects it until then."""
    for _ in range(400):
        receipt = rpc(env, "eth_getTransactionReceipt", [tx])
        if receipt is not None:
            return dict(receipt)
        time.sleep(0.025)
    pytest.fail(f"no receipt for {tx} within 10 s")


def reverted_transaction(env: dict[str, str]) -> str:
    """A mined transaction whose status is 0: one of anvil's unlocked dev accounts, holding no
    token, transfers 1 unit of it (gas given, so the node mines it rather than estimating)."""
    sender = rpc(env, "eth_accounts", [])[5]
    data = "0xa9059cbb" + env["VLX_PAY_TO"][2:].lower().rjust(64, "0") + "1".rjust(64, "0")
    tx = rpc(
        env, "eth_sendTransaction", [{"from": sender, "to": env["VLX_ASSET"], "data": data, "gas": "0x30000"}]
    )
    receipt = mined(env, tx)
    assert receipt["status"] == "0x0", receipt
    return str(tx)


_RESERVED: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port that refuses connections: bound (so nothing else takes it meanwhile) and
    never listening, for as long as the tests run."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _RESERVED.append(s)
    port: int = s.getsockname()[1]
    return port


def test_a_provider_verifies_a_live_payment_on_chain(
    devnet: dict[str, str], serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def report(request: Request) -> dict[str, Any]:
        return {"tx": request.state.vlx_payment.tx_hash}

    url = live_api(devnet, serve, monkeypatch, "0.002", report)
    monkeypatch.setenv("VLX_RPC_URL", devnet["VLX_RPC_URL"])
    with VlexivoClient(wallet_key=devnet["VLX_WALLET_KEY"], base_url=url) as client:
        r = client.get("/api/v1/hello")
        assert r.status_code == 200, r.text
    tx = r.json()["tx"]
    mined(devnet, tx)
    payer = Wallet(devnet["VLX_WALLET_KEY"]).address

    # The real payment verifies; the token, payout address and RPC come from the environment.
    v = verify_payment(tx, payer=payer, amount="0.002")
    assert isinstance(v, VerifiedPayment)
    assert (v.tx_hash, v.payer, v.payee, v.amount) == (tx.lower(), payer, devnet["VLX_PAY_TO"], "0.002")
    assert (v.transfers, v.matching, v.authorization_checked) == (1, 1, False)
    assert v.block > 0 and v.confirmations >= 1 and v.gas_used > 0
    va = asyncio.run(
        verify_payment_async(tx, payer=payer, amount=Decimal("0.002"), rpc_url=devnet["VLX_RPC_URL"])
    )
    assert va.block == v.block

    def refused(tx_hash: str = tx, **kw: Any) -> VlexivoError:
        args: dict[str, Any] = {"payer": payer, "amount": "0.002", **kw}
        with pytest.raises(VlexivoError) as e:
            verify_payment(tx_hash, **args)
        return e.value

    # Each wrong expectation names its field.
    e = refused(amount="0.003")
    assert (e.code, e.status, e.details) == (
        "transfer_mismatch",
        402,
        {"field": "amount", "expected": "0.003", "got": "0.002"},
    )
    assert isinstance(e, PaymentError)
    assert refused(pay_to=payer).details["field"] == "payee"
    assert refused(payer=devnet["VLX_PAY_TO"]).details["field"] == "payer"
    e = refused(asset=payer)
    assert (e.details["field"], e.details["got"]) == ("token", devnet["VLX_ASSET"])
    # Not deep enough yet; an unknown hash; a reverted transaction.
    e = refused(confirmations=10_000)
    assert (e.code, e.details["required"]) == ("confirmations_pending", 10_000)
    assert refused("0x" + "ab" * 32).code == "transaction_not_found"
    assert refused(reverted_transaction(devnet)).code == "settlement_failed"
    # The RPC down: chain_unavailable, and the URL (its API key) is never in the error.
    e = refused(rpc_url=f"http://127.0.0.1:{closed_port()}/v3/key-s3cr3t")
    assert (e.code, e.status) == ("chain_unavailable", 503)
    assert "s3cr3t" not in str(e) and "s3cr3t" not in repr(e.details)
    # Bad input is refused before anything is sent.
    assert refused("0x1234").code == "request_malformed"
    assert refused(amount="-1").code == "amount_negative"
    monkeypatch.delenv("VLX_RPC_URL")
    assert refused().code == "config_invalid"


def test_live_auto_top_up_from_a_funding_wallet(
    devnet: dict[str, str], serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payer short of funds is topped up on chain from its funding wallet, once, then pays;
    the cap and an empty funding wallet refuse with their codes, and nothing is paid."""

    async def hello() -> dict[str, str]:
        return {"ok": "yes"}

    url = live_api(devnet, serve, monkeypatch, "0.001", hello)
    # The funding wallet: the demo's funded payer, given gas for the transfers it sends.
    funder = Wallet(devnet["VLX_WALLET_KEY"]).address
    one_eth = "0xde0b6b3a7640000"
    rpc(devnet, "anvil_setBalance", [funder, one_eth])
    funder_before, payout_before = on_chain(devnet, funder), on_chain(devnet, devnet["VLX_PAY_TO"])
    rule = AutoTopUp(
        trigger_balance="0",
        top_up_amount="0.01",
        funding_wallet_key=devnet["VLX_WALLET_KEY"],
        rpc_url=devnet["VLX_RPC_URL"],
    )
    assert devnet["VLX_WALLET_KEY"][2:] not in repr(rule)
    payer = Wallet.generate()
    events: list[Any] = []
    key = payer.private_key_hex()
    with VlexivoClient(wallet_key=key, base_url=url, auto_top_up=rule, on_payment=events.append) as c:
        for i in range(2):
            r = c.get(f"/api/v1/hello?topup={i}")
            assert r.status_code == 200, r.text
    assert [e.topped_up for e in events] == ["0.01", None], "one top-up, before the first payment"
    for event in events:
        mined(devnet, event.tx_hash)
    assert funder_before - on_chain(devnet, funder) == 10_000
    assert on_chain(devnet, payer.address) == 8_000

    # Over the cap: refused, nothing sent, nothing paid.
    capped = replace(rule, max_total="0.0005")
    capped_client = VlexivoClient(
        wallet_key=Wallet.generate().private_key_hex(), base_url=url, auto_top_up=capped
    )
    with capped_client as c, pytest.raises(PaymentError) as e:
        c.get("/api/v1/hello?cap")
    assert e.value.code == "top_up_refused" and "capped at 0.0005" in str(e.value)
    # A funding wallet without the token: funding_insufficient with the amounts, never its key.
    empty = Wallet.generate()
    rpc(devnet, "anvil_setBalance", [empty.address, one_eth])
    broke = replace(rule, funding_wallet_key=empty.private_key_hex())
    broke_client = VlexivoClient(
        wallet_key=Wallet.generate().private_key_hex(), base_url=url, auto_top_up=broke
    )
    with broke_client as c, pytest.raises(PaymentError) as e:
        c.get("/api/v1/hello?empty")
    assert e.value.code == "funding_insufficient"
    assert (e.value.details["required"], e.value.details["balance"]) == ("0.01", "0")
    assert empty.private_key_hex()[2:] not in str(e.value) + repr(e.value.details)
    assert funder_before - on_chain(devnet, funder) == 10_000
    assert on_chain(devnet, devnet["VLX_PAY_TO"]) - payout_before == 2_000, "the two paid calls only"
