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


@pytest.mark.parametrize(
    "case", [c for c in CLIENT["cases"] if c.get("op") is None], ids=lambda c: c["name"]
)
def test_client(case: dict[str, Any]) -> None:
    expect = case["expect"]
    policy = dict(case.get("policy") or {})
    fac = policy.pop("facilitator_url", None) or case.get("facilitator_url")
    resp = case["response"]
    try:
        pr = _native.parse_payment_required(resp["status"], [tuple(h) for h in resp.get("headers", [])], resp["body"].encode())
        payer = _native.Payer(CLIENT["private_key"], policy.get("max_per_call"), policy.get("max_per_host"),
                              policy.get("max_total"), None, fac)
        prepared = payer.prepare(pr, case["request"]["method"], case["request"]["url"], case["now"])
    except _native.NativeError as e:
        assert e.code == expect.get("error"), case["name"]
        return
    assert "error" not in expect, case["name"]
    assert (pr.price, pr.currency, prepared.nonce, prepared.pay_url) == (
        expect["price"], expect["currency"], expect["nonce"], expect["pay_url"])
    assert json.loads(prepared.body) == expect["payment_request"]
    payer.abandon(prepared)
    assert payer.reserved_total() == "0"


@pytest.mark.parametrize("case", PAYWALL["cases"], ids=lambda c: c["name"])
def test_paywall(case: dict[str, Any]) -> None:
    pw = _native.Paywall(PAYWALL["api_secret"], None, PAYWALL["facilitator_url"], None, 300, PAYWALL["leeway_secs"],
                         False, "memory", PAYWALL["jwks"] if case["jwks"] else None, PAYWALL["origin"])
    for req in case["requests"]:
        expect = req["expect"]
        path = req["path"]
        try:
            p = pw.verify(req["proof"], req["method"], path, case["price"], case["currency"], req["now"])
        except _native.NativeError as e:
            status, headers, body = pw.reject(e, req["method"], path, case["price"], case["currency"], "per-call", req["now"])
            assert (status, json.loads(body)["error"]) == (expect["status"], expect["error"])
            assert any(k == "Vlexivo-Challenge" for k, _ in headers) == expect["challenge"]
            continue
        assert p.to_dict(camel=True) == expect["payment"]
        if req.get("handler_status", 200) >= 500:
            pw.release(p.store_key)
            assert expect["status"] == req["handler_status"]
        else:
            assert expect["status"] == 200
