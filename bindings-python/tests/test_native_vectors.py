"""The shared vectors straight through the native module (the adapters run them over HTTP in
test_adapter_vectors.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from vlexivo import _native

from .conftest import vectors

MONEY = vectors("money")
CLIENT = vectors("client")
PAYWALL = vectors("paywall")


@pytest.mark.parametrize("case", MONEY["cases"], ids=lambda c: c["name"])
def test_money(case: dict[str, Any]) -> None:
    expect = case["expect"]
    try:
        p = _native.parse_amount(case["input"], case["currency"], bool(case.get("positive")))
    except _native.NativeError as e:
        assert e.code == expect.get("error"), case
        return
    assert "error" not in expect, case
    assert p.amount == expect["amount"] and str(p.atomic) == expect["atomic"]
    # A provider's price: every refusal (and zero) is price_invalid, the same amount otherwise.
    if p.atomic > 0:
        assert _native.parse_price(case["input"], case["currency"]).amount == expect["amount"]
        if isinstance(case["input"], str):
            assert _native.parse_price(Decimal(case["input"]), case["currency"]).amount == expect["amount"]


def test_price_types() -> None:
    assert _native.parse_price(3).amount == "3"
    assert _native.parse_price(0.019).amount == "0.019"
    assert _native.parse_price(Decimal("1E-3")).amount == "0.001"
    for bad in (True, None, [1], 0.1 + 0.2, float("inf"), Decimal("NaN"), 0, -1, "1e-7", b"0.1"):
        with pytest.raises(_native.NativeError) as ei:
            _native.parse_price(bad)
        assert ei.value.code == "price_invalid" and ei.value.status == 500


def _payer(config: dict[str, Any], now: int) -> _native.Payer:
    auto = config.get("auto_top_up")
    return _native.Payer(
        CLIENT["private_key"],
        config.get("max_per_call"),
        None,
        config.get("max_total"),
        None,
        None,
        config["trusted"],
        (auto["trigger_balance"], auto["top_up_amount"]) if auto else None,
        now,
    )


@pytest.mark.parametrize("case", [c for c in CLIENT["cases"] if c["op"] == "quote"], ids=lambda c: c["name"])
def test_client_quote(case: dict[str, Any]) -> None:
    expect = case["expect"]
    resp = case["response"]
    payer = _payer(case["config"], case["now"])
    try:
        pr = _native.parse_payment_required(
            resp["status"], [tuple(h) for h in resp.get("headers", [])], resp["body"].encode()
        )
        q = payer.quote(pr, case["request"]["method"], case["request"]["url"])
    except _native.NativeError as e:
        assert {"error": e.code} == expect, case["name"]
        return
    got = {
        "price": q.price,
        "currency": q.currency,
        "nonce": q.nonce,
        "pay_url": q.pay_url,
        "payment_request": json.loads(q.body),
    }
    assert got == expect, case["name"]
    assert payer.reserved_total() == "0"


def _feed(call: _native.PayerCall, data: dict[str, Any]) -> Any:
    """One recorded input; the step in the vectors' form."""
    ((kind, v),) = data.items()
    try:
        if kind == "start":
            step = call.start()
        elif kind == "response":
            body = None if v["body"] is None else v["body"].encode()
            step = call.response(v["status"], [tuple(h) for h in v["headers"]], body, v["url"])
        elif kind == "answer":
            step = call.answer(v["status"], v["body"].encode())
        elif kind == "transport_error":
            step = call.transport_error(v["sent"], "vector")
        elif kind == "resume":
            step = call.resume()
        else:  # pragma: no cover
            raise AssertionError(kind)
    except _native.NativeError as e:
        return {"error": e.code}
    if step.kind == "send":
        return {"send": {"url": step.url, "proof": dict(step.headers).get(_native.PROOF_HEADER)}}
    if step.kind == "read_body":
        return {"read_body": {"limit": step.limit}}
    if step.kind == "facilitator":
        r = step.request
        assert r is not None
        return {"facilitator": {"method": r.method, "url": r.url, "body": r.body}}
    if step.kind == "paid":
        e = step.event
        assert e is not None
        return {
            "paid": {
                "price": e.price,
                "nonce": e.receipt.nonce,
                "replayed": e.receipt.replayed,
                "topped_up": e.topped_up,
                "reconciled": e.reconciled,
            }
        }
    return {step.kind: {}}


@pytest.mark.parametrize("case", [c for c in CLIENT["cases"] if c["op"] == "flow"], ids=lambda c: c["name"])
def test_client_flow(case: dict[str, Any]) -> None:
    payer = _payer(case["config"], case["now"])
    for c in case["calls"]:
        call = payer.call(c["method"], c["url"], c["replayable"])
        for i, ex in enumerate(c["exchanges"]):
            assert _feed(call, ex["input"]) == ex["expect"], f"{case['name']}: exchange {i}"
    got = {
        "spent": payer.spent_total(),
        "reserved": payer.reserved_total(),
        "in_doubt": payer.in_doubt_total(),
    }
    assert got == case["expect_budget"], case["name"]


@pytest.mark.parametrize("case", PAYWALL["cases"], ids=lambda c: c["name"])
def test_paywall(case: dict[str, Any]) -> None:
    pw = _native.Paywall(
        PAYWALL["api_secret"],
        None,
        PAYWALL["facilitator_url"],
        None,
        300,
        PAYWALL["leeway_secs"],
        False,
        "memory",
        PAYWALL["jwks"] if case["jwks"] else None,
        PAYWALL["origin"],
    )
    for req in case["requests"]:
        expect = req["expect"]
        path = req["path"]
        try:
            p = pw.verify(req["proof"], req["method"], path, case["price"], case["currency"], req["now"])
        except _native.NativeError as e:
            status, headers, body = pw.reject(
                e, req["method"], path, case["price"], case["currency"], "per-call", req["now"]
            )
            assert (status, json.loads(body)["error"]) == (expect["status"], expect["error"])
            assert (
                any(k.lower() == _native.CHALLENGE_HEADER.lower() for k, _ in headers) == expect["challenge"]
            )
            continue
        assert p.to_dict(camel=True) == expect["payment"]
        # Whether the nonce is released is core's response policy's call (a failed handler:
        # released, good again at once), and what the store holds afterwards is observed
        # through the paywall (a served proof is spent).
        if _native.releases(req.get("handler_status", 200), False, True):
            pw.release(p.store_key)
            again = pw.verify(req["proof"], req["method"], path, case["price"], case["currency"], req["now"])
            assert again.nonce == p.nonce
            pw.release(again.store_key)
        else:
            with pytest.raises(_native.NativeError) as replay:
                pw.verify(req["proof"], req["method"], path, case["price"], case["currency"], req["now"])
            assert replay.value.code == "token_replayed"
