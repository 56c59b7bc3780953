#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from tests/vectors (the same files the targets take
their keys from): every input the vectors hold, in the shape each target reads (fields joined
by a NUL byte, see src/lib.rs). Usage: seeds.py OUT_DIR (one directory per target)."""

import base64
import contextlib
import hashlib
import hmac
import json
import pathlib
import struct
import sys

root = pathlib.Path(__file__).resolve().parent.parent
vec = {p.stem: json.loads(p.read_text()) for p in (root / "tests" / "vectors").glob("*.json")}
out = pathlib.Path(sys.argv[1])
SEP = b"\0"


def b(x):
    if x is None:
        return b""
    return x if isinstance(x, bytes) else str(x).encode()


def put(target, *fields):
    data = SEP.join(b(f) for f in fields)
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


for c in vec["money"]["cases"]:
    put("money", json.dumps(c["input"]) if not isinstance(c["input"], str) else c["input"], "0.001")
    put("money", c["input"] if isinstance(c["input"], str) else repr(c["input"]), "999999.999999")

for c in vec["challenge"]["cases"]:
    put("challenge", c["encoded"])
    put("payer", "402", "vlexivo-challenge: " + c["encoded"], "")

for c in vec["paywall"]["cases"]:
    for r in c["requests"]:
        for flags in (b"\0", b"\1"):
            put(
                "paywall",
                flags,
                r["method"],
                r["path"],
                r.get("host") or "api.example.com",
                r.get("proof"),
                c.get("price", "0.001"),
                r.get("body") or "",
                "",
            )
        if r.get("proof"):
            put("token", r["proof"], "", "POST https://api.example.com/api/v1/inference", c.get("price"))
            parts = r["proof"].split(".")
            if len(parts) == 3:
                pad = "=" * (-len(parts[1]) % 4)
                with contextlib.suppress(ValueError):
                    put("token_claims_diff", base64.urlsafe_b64decode(parts[1] + pad))

for c in vec["payment"]["cases"]:
    put("facilitator", json.dumps(c["request"]))
    put("eip712", c["request"]["signature"], c["request"]["payer"], "", c["request"]["challenge"])

# The facilitator's other bodies (api_bodies): onboarding, rotation, top-ups.
addresses = [c["expect"]["address"] for c in vec["wallet"]["cases"] if "address" in (c.get("expect") or {})]
for body in [
    "",
    "{}",
    '{"mode":"sandbox","name":"weather api"}',
    '{"token_alg":"EdDSA"}',
    '{"token_alg":"none"}',
    '{"mode":"live"}',
    json.dumps({"mode": "live", "name": "x" * 250, "payout_address": addresses[0]}),
    json.dumps({"payout_address": addresses[0].lower()}),
    '{"overlap_secs":3}',
    '{"overlap_secs":2592001}',
    '{"amount":"10.00"}',
    '{"amount":0.25}',
]:
    put("api_bodies", body)
for c in vec["money"]["cases"]:
    put("api_bodies", json.dumps({"amount": c["input"]}))


# Payment lists (paging): filters, limits, and cursors sealed as the facilitator seals them
# (key derived from 7 x 32 bytes, for the target's account), so the fuzzer starts from ones
# that open.
def seal(route, payer, frm, to, position, account="acct_fuzz"):
    key = hmac.new(bytes([7] * 32), b"vlexivo/payments-cursor/v1", hashlib.sha256).digest()

    def field(v):
        return b"\0" if v is None else b"\1" + struct.pack(">Q", len(v)) + v

    def i64(v):
        return None if v is None else struct.pack(">q", v)

    m = b"".join(field(x) for x in (account.encode(), route and route.encode(), payer and payer.encode(), i64(frm), i64(to)))
    tag = hmac.new(key, m + struct.pack(">q", position), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(bytes([1]) + struct.pack(">q", position) + tag).rstrip(b"=").decode()


for route, payer, frm, to, limit, position in [
    (None, None, None, None, "", 42),
    ("POST /api/v1/inference", None, None, None, "100", 7),
    (None, addresses[0], 1_800_000_000, 1_800_086_400, "1000", 1),
    ("GET /a", addresses[1], 0, None, "0", -1),
]:
    put("paging", route, payer, frm, to, limit, seal(route, payer, frm, to, position), "")
put("paging", "", addresses[0].lower(), "-1", "soon", "1001", "!!!!", "acct_other")

# The payer hint: addresses as sent (EIP-55, lower case, padded), junk, and proofs that verify.
proofs = [r["proof"] for c in vec["paywall"]["cases"] for r in c["requests"] if r.get("proof")]
for i, a in enumerate(addresses):
    put("payer_hint", a, proofs[i % len(proofs)] if proofs else "", "/api/v1/inference")
    put("payer_hint", " " + a.lower() + " ", "", "/a?b=c")
put("payer_hint", "0x", "", "")
put("payer_hint", "nobody", "not.a.token", "/")

# MCP metadata: a call's `_meta`, a refusal (status, body), an error code and a payer's headers.
for i, proof in enumerate(proofs[:8]):
    meta = json.dumps({"vlexivo/proof": proof, "vlexivo/payer": addresses[i % len(addresses)]})
    put("mcp", meta, "", "", "", "Vlexivo-Proof: " + proof)
for c in vec["client"]["cases"]:
    if c["op"] == "quote" and c["response"]["body"]:
        r = c["response"]
        code = struct.pack("<q", -32402)
        put("mcp", json.dumps({"status": r["status"], **json.loads(r["body"])}) if r["body"].startswith("{") else "{}",
            str(r["status"]), r["body"], code, "Vlexivo-Payer: " + addresses[0])
    elif c["op"] == "error_from_body":
        put("mcp", "{}", str(c["status"]), c["body"], struct.pack("<q", -32603), "")

for c in vec["wallet"]["cases"]:
    addr = c.get("input") or (c.get("expect") or {}).get("address")
    payee = (c.get("authorization") or {}).get("payee", "acct_x")
    put("eip712", c.get("signature"), addr if isinstance(addr, str) else "", c.get("private_key"), payee)

for c in vec["client"]["cases"]:
    if c["op"] == "quote":
        r = c["response"]
        head = "\n".join(f"{k}: {v}" for k, v in r["headers"])
        put("payer", str(r["status"]), head, r["body"] or "", "")
    elif c["op"] == "error_from_body":
        put("payer", str(c["status"]), "", c["body"], "")
    elif c["op"] == "flow":
        for call in c["calls"]:
            head, body, answers = "", "", []
            for x in call["exchanges"]:
                i = x["input"]
                if "response" in i and i["response"]["status"] == 402 and not head:
                    head = "\n".join(f"{k}: {v}" for k, v in i["response"]["headers"])
                    body = i["response"]["body"] or ""
                if "answer" in i:
                    answers.append(bytes([(i["answer"]["status"] - 200) // 100 % 4]) + b(i["answer"]["body"]))
            put("payer", "402", head, body, b"\1".join(answers))

print(f"seeds: {sum(1 for _ in out.rglob('*') if _.is_file())} inputs in {out}")
