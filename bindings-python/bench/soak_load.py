"""The soak benchmark's Python load generator (scripts/soak.sh runs it): the same mix as
bindings-node/bench/soak-load.mjs (paid calls through VlexivoClient, replayed, expired and forged
proofs) from SOAK_WORKERS threads, each with its own client and wallet, at SOAK_RATE calls/s in
all, until SOAK_DEADLINE_MS or SOAK_MAX_CALLS. Every SOAK_WINDOW_S seconds one JSON line: per
"api:kind", the status counts and each call's latency in ms."""

from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
from typing import Any

import httpx
from vlexivo import VlexivoClient, Wallet

env = os.environ
named = {url: name for name, url in (p.split("=", 1) for p in env["SOAK_TARGETS"].split(","))}
targets = list(named)
t0 = int(env["SOAK_T0_MS"]) / 1000
deadline = int(env["SOAK_DEADLINE_MS"]) / 1000
max_calls = int(env.get("SOAK_MAX_CALLS", "1000000000"))
workers = int(env.get("SOAK_WORKERS", "4"))
rate = float(env.get("SOAK_RATE", "20"))
window_s = float(env.get("SOAK_WINDOW_S", "10"))
expired_after = float(env.get("SOAK_EXPIRED_AFTER_S", "305"))

lock = threading.Lock()
fresh: dict[str, list[tuple[float, str]]] = {t: [] for t in targets}
replayable_s = 280  # younger than the token's 300 s lifetime, with a margin
aging: dict[str, list[tuple[float, str]]] = {t: [] for t in targets}
calls = 0
window: dict[str, Any] = {"w": int((time.time() - t0) // window_s), "cells": {}}


def keep(items: list[Any], item: Any, cap: int) -> None:
    if len(items) < cap:
        items.append(item)
    else:
        items[random.randrange(cap)] = item


def capturing(sent: list[tuple[str, str]]) -> Any:
    """An httpx request hook (it runs for every request the client sends) noting the proofs."""

    def capture(request: httpx.Request) -> None:
        proof = request.headers.get("vlexivo-proof")
        api = next((t for t in targets if str(request.url).startswith(t)), None)
        if proof and api:
            sent.append((api, proof))

    return capture


def kept(sent: list[tuple[str, str]]) -> None:
    """The proofs of a finished call become replayable (a replay must never race the first use)."""
    with lock:
        for api, proof in sent:
            keep(fresh[api], (time.time(), proof), 512)
            if len(aging[api]) < 4096 and random.random() < 0.25:
                aging[api].append((time.time(), proof))
    sent.clear()


def pick(items: list[Any]) -> Any:
    return random.choice(items) if items else None


def forged(api: str) -> str:
    real = (pick(fresh[api]) or pick(fresh[random.choice(targets)]) or (0, None))[1]
    other = (pick(fresh[random.choice([t for t in targets if t != api] or targets)]) or (0, None))[1]
    forgery = forge(real, other)
    # A change that happens to give the real token back (a palindromic tail) is no forgery.
    return f"{forgery}x" if forgery == real else forgery


def forge(real: str | None, other: str | None) -> str:
    n = random.randrange(5)
    if n == 0:
        return base64.urlsafe_b64encode(os.urandom(20 + random.randrange(200))).decode().rstrip("=")
    if n == 1:
        return f"{real[:-4]}{real[-4:][::-1]}" if real else "x.y.z"
    if n == 2:
        return f"{real.split('.')[0]}.AAAAAAAA{real.split('.', 1)[1][8:]}" if real else "a.b.c"
    if n == 3:
        return "e" * 6000
    return other or "not-a-token"


def flush(next_w: int) -> None:
    global window
    print(json.dumps({"gen": "python", **window}), flush=True)
    window = {"w": next_w, "cells": {}}


def record(api: str, kind: str, status: str, ms: float) -> None:
    with lock:
        w = int((time.time() - t0) // window_s)
        if w != window["w"]:
            flush(w)
        cell = window["cells"].setdefault(f"{named[api]}:{kind}", {"status": {}, "ms": []})
        cell["status"][status] = cell["status"].get(status, 0) + 1
        cell["ms"].append(round(ms, 2))


def one(client: VlexivoClient, sent: list[tuple[str, str]], plain: httpx.Client, n: int) -> None:
    api = random.choice(targets)
    r = random.random()
    started = time.perf_counter()
    kind = "paid"
    try:
        if r < 0.5:
            try:
                status = str(client.get(f"{api}/paid", params={"n": n}).status_code)
            finally:
                kept(sent)
        else:
            proof = None
            with lock:
                if r < 0.7:
                    p = pick(fresh[api])
                    if p and time.time() - p[0] < replayable_s:
                        kind, proof = "replay", p[1]
                elif r < 0.85 and aging[api] and time.time() - aging[api][0][0] > expired_after:
                    kind, proof = "expired", aging[api].pop(0)[1]
            if not proof:
                kind, proof = "garbage", forged(api)
            status = str(
                plain.get(f"{api}/paid", params={"n": n}, headers={"vlexivo-proof": proof}).status_code
            )
    except Exception as e:
        status = f"error:{type(e).__name__}"
    record(api, kind, status, (time.perf_counter() - started) * 1000)


def worker(spent: list[str]) -> None:
    global calls
    sent: list[tuple[str, str]] = []
    client = VlexivoClient(
        Wallet.generate().private_key_hex(),
        facilitator_url=env["VLX_FACILITATOR_URL"],
        auto_top_up={"trigger_balance": "1.00", "top_up_amount": "50.00"},
        event_hooks={"request": [capturing(sent)]},
        timeout=30,
    )
    plain = httpx.Client(timeout=30)
    every = workers / rate
    next_at = time.time() + random.random() * every
    while True:
        with lock:
            if time.time() >= deadline or calls >= max_calls:
                break
            calls += 1
            n = calls
        wait = next_at - time.time()
        if wait > 0:
            time.sleep(wait)
        # Late by more than a second: start again from now rather than sending a burst.
        next_at = max(next_at + every, time.time() - 1)
        one(client, sent, plain, n)
    spent.append(str(client.payer.spent_total()))
    client.close()
    plain.close()


def main() -> None:
    spent: list[str] = []
    threads = [threading.Thread(target=worker, args=(spent,)) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with lock:
        flush(window["w"] + 1)
    print(json.dumps({"gen": "python", "done": True, "calls": calls, "spent": spent}), flush=True)


if __name__ == "__main__":
    main()
