#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from tests/vectors (the same files the targets take
their keys from): every input the vectors hold, in the shape each target reads (fields joined
by a NUL byte, see src/lib.rs). Usage: seeds.py OUT_DIR (one directory per target)."""

import base64
import contextlib
import hashlib
import json
import pathlib
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
put("facilitator", '{"amount":"10.00"}')
put("facilitator", '{"amount":0.25}')

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
