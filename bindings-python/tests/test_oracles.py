"""Independent oracles: eth-account for wallet signatures and addresses (EIP-712
PaymentAuthorization, docs/protocol.md §6, both ways; the eth-account → core direction through a
real facilitator), Python's ``decimal`` for money parsing (§3) in property tests."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal, localcontext
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from vlexivo import _native

from .conftest import Facilitator, vectors

ORIGIN = "http://api.example.com"
TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ],
    "PaymentAuthorization": [
        {"name": "challenge", "type": "bytes32"},
        {"name": "payee", "type": "string"},
        {"name": "amount", "type": "uint256"},
        {"name": "currency", "type": "string"},
        {"name": "deadline", "type": "uint256"},
    ],
}


def typed_data(
    challenge_hash: bytes, payee: str, amount: int, currency: str, deadline: int, chain_id: int
) -> dict[str, Any]:
    return {
        "types": TYPES,
        "primaryType": "PaymentAuthorization",
        "domain": {"name": "Vlexivo", "version": "1", "chainId": chain_id},
        "message": {
            "challenge": challenge_hash,
            "payee": payee,
            "amount": amount,
            "currency": currency,
            "deadline": deadline,
        },
    }


def for_challenge(encoded: str) -> dict[str, Any]:
    """§6's typed data for a challenge as a payer receives it (base64url text)."""
    c = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    atomic = int(Decimal(c["amount"]) * 1_000_000)
    return typed_data(keccak(text=encoded), c["account"], atomic, c["currency"], c["exp"], 0)


def recover(td: dict[str, Any], signature: str) -> str:
    return str(Account.recover_message(encode_typed_data(full_message=td), signature=signature))


def challenge_of(pw: _native.Paywall, method: str, path: str, price: str) -> str:
    _status, headers, _body = pw.challenge(method, path, price)
    return next(v for k, v in headers if k.lower() == _native.CHALLENGE_HEADER.lower())


def test_core_signing_hash_and_signature_are_eth_account_s() -> None:
    c = next(x for x in vectors("wallet")["cases"] if x["op"] == "sign")
    a = c["authorization"]
    td = typed_data(
        bytes.fromhex(a["challenge"][2:]),
        a["payee"],
        int(a["amount"]),
        a["currency"],
        a["deadline"],
        a["chain_id"],
    )
    signable = encode_typed_data(full_message=td)
    signed = Account.sign_message(signable, private_key=c["private_key"])
    assert "0x" + signed.message_hash.hex().removeprefix("0x") == c["expect"]["signing_hash"]
    # RFC 6979 and low-s on both sides: the very same bytes.
    assert "0x" + signed.signature.hex().removeprefix("0x") == c["expect"]["signature"]
    assert recover(td, c["expect"]["signature"]) == c["expect"]["signer"]


@pytest.mark.parametrize("price", ["0.001", "0.0123", "7", "999999.999999"])
def test_payments_signed_by_core_recover_to_the_payer_in_eth_account(price: str) -> None:
    pw = _native.Paywall(
        "sk_test_" + base64.urlsafe_b64encode(bytes([11]) * 32).rstrip(b"=").decode(), origin=ORIGIN
    )
    acct = Account.create()
    payer = _native.Payer(acct.key.hex(), facilitator_url=pw.facilitator_url)
    encoded = challenge_of(pw, "POST", "/api/v1/inference", price)
    pr = _native.parse_payment_required(402, [(_native.CHALLENGE_HEADER, encoded)], b"")
    quote = payer.quote(pr, "POST", f"{ORIGIN}/api/v1/inference")
    req = json.loads(quote.body)
    td = for_challenge(encoded)
    assert recover(td, req["signature"]) == acct.address == req["payer"]
    td["message"]["amount"] += 1
    assert recover(td, req["signature"]) != acct.address


def test_payments_signed_by_eth_account_are_accepted_by_a_real_facilitator(facilitator: Facilitator) -> None:
    provider = facilitator.provider()
    pw = _native.Paywall(provider["api_secret"], facilitator_url=facilitator.url, origin=ORIGIN)
    acct = Account.create()
    facilitator.top_up(acct.address, "1")
    encoded = challenge_of(pw, "GET", "/report", "0.25")
    td = for_challenge(encoded)

    def pay(signature: str) -> httpx.Response:
        return facilitator.http.post(
            "/v1/payments", json={"challenge": encoded, "payer": acct.address, "signature": signature}
        )

    def sign(data: dict[str, Any]) -> str:
        return "0x" + Account.sign_message(
            encode_typed_data(full_message=data), private_key=acct.key
        ).signature.hex().removeprefix("0x")

    tampered = json.loads(
        json.dumps({**td, "message": {**td["message"], "challenge": td["message"]["challenge"].hex()}})
    )
    tampered["message"]["challenge"] = bytes.fromhex(tampered["message"]["challenge"])
    tampered["message"]["amount"] += 1
    refused = pay(sign(tampered))
    assert (refused.status_code, refused.json()["error"]) == (401, "signature_invalid")
    assert facilitator.balance(acct.address) == "1"

    ok = pay(sign(td))
    assert ok.status_code == 200, ok.text
    receipt = ok.json()
    assert (receipt["payer"], receipt["amount"]) == (acct.address, "0.25")
    assert facilitator.balance(acct.address) == "0.75"
    # The proof the facilitator issued buys the request at the paywall.
    assert pw.verify(receipt["token"], "GET", "/report", "0.25").payer == acct.address


def test_addresses_and_eip55_agree_with_eth_account() -> None:
    for _ in range(32):
        acct = Account.create()
        ours = _native.Wallet(acct.key.hex()).address
        assert ours == acct.address == to_checksum_address(ours.lower())
    for c in vectors("wallet")["cases"]:
        if c["op"] == "address" and "address" in c["expect"]:
            assert Account.from_key(c["private_key"]).address == c["expect"]["address"], c["name"]


# --- money: Python's decimal as the oracle of §3 --------------------------------------------

GRAMMAR = re.compile(r"[+-]?([0-9]+(\.[0-9]+)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def expected(text: str) -> tuple[str, str] | str:
    """§3 by hand over ``decimal`` (exact: a context wide enough for every generated input):
    (canonical, atomic units) or the error code, checked in §3's order."""
    if len(text) > 40 or not GRAMMAR.fullmatch(text):
        return "amount_malformed"
    with localcontext(prec=400):
        d = Decimal(text)
        if d < 0:
            return "amount_negative"
        if d > 1_000_000:
            return "amount_too_large"
        if d != d.quantize(Decimal("1e-6")):
            return "amount_precision"
        return (format(d.normalize(), "f") if d != 0 else "0"), str(int(d * 1_000_000))


def actual(text: str) -> tuple[str, str] | str:
    try:
        p = _native.parse_amount(text, "usd")
    except _native.NativeError as e:
        return str(e.code)
    return p.amount, str(p.atomic)


amounts = st.from_regex(
    r"[+-]?([0-9]{1,12}(\.[0-9]{1,12})?|\.[0-9]{1,12})([eE][+-]?[0-9]{1,2})?", fullmatch=True
)


@settings(max_examples=400, deadline=None)
@given(amounts)
def test_money_parsing_agrees_with_python_decimal(text: str) -> None:
    assert actual(text) == expected(text), text


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(
        min_value=Decimal(0), max_value=Decimal(1_000_000), places=6, allow_nan=False, allow_infinity=False
    )
)
def test_every_six_place_amount_round_trips(d: Decimal) -> None:
    text = format(d, "f")
    assert actual(text) == expected(text)
    assert actual(text) == (format(d.normalize(), "f") if d != 0 else "0", str(int(d * 1_000_000)))


@pytest.mark.parametrize("text", [" 1", "1 ", "1_000", "Infinity", "nan", "1.", "0x10", "١", "1e", "--1", ""])  # noqa: RUF001 - an Arabic-Indic digit on purpose: decimal reads it, §3 does not
def test_what_decimal_reads_but_the_spec_refuses(text: str) -> None:
    assert actual(text) in {"amount_malformed", "amount_not_finite"}, text
