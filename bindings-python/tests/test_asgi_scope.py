"""The ASGI middleware's one-call paid path (`Paywall.verify_scope`): it reads the proof, `Host`
and binding path from the ASGI scope as the Python helpers do, falls back to them when the scope
lacks what it reads, and the paid response exposes the receipt to CORS only for a request that
carries `Origin` (protocol §2)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from vlexivo import VlexivoServer, _native
from vlexivo._asgi import binding_path, proof_of, request_origin

from .tokens import mint_token

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
PRICE = _native.parse_price("0.001", "usd")


def scope(
    headers: list[tuple[bytes, bytes]], raw_path: bytes | None = b"/hello", **more: Any
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        **more,
    }
    if raw_path is not None:
        s["raw_path"] = raw_path
    return s


def outcome(call: Any) -> tuple[str, ...]:
    try:
        p = call()
    except _native.NativeError as e:
        return ("refused", e.code)
    if isinstance(p, tuple):
        p = p[0]
    return ("paid", p.amount, p.resource, p.payer)


_n = iter(range(10**6))


def tok(path: str, origin: str = "http://127.0.0.1:8000", amount: str = "0.001") -> bytes:
    nonce = f"scope-{next(_n)}".ljust(24, "x")
    return mint_token(SECRET, nonce, "GET", path, amount, _native.now(), origin=origin).encode("latin-1")


# (raw_path, headers but the proof, the path and origin the proof is for)
CASES: list[tuple[bytes, list[tuple[bytes, bytes]], str, str]] = [
    (b"/hello", [(b"host", b"127.0.0.1:8000")], "/hello", "http://127.0.0.1:8000"),
    # The query is not bound; escapes stay as the client spelled them.
    (b"/a/%7Eb?x=1&y=2", [(b"host", b"127.0.0.1:8000")], "/a/%7Eb", "http://127.0.0.1:8000"),
    # A raw byte of the path is its Latin-1 character, as the helpers decode it.
    (b"/caf\xe9", [(b"host", b"127.0.0.1:8000")], "/caf\xe9", "http://127.0.0.1:8000"),
    # The first Host counts; core normalises its case.
    (b"/hello", [(b"host", b"API.test"), (b"host", b"other.test")], "/hello", "http://api.test"),
    # A proof for another path, another origin, another amount: refused alike.
    (b"/hello", [(b"host", b"127.0.0.1:8000")], "/other", "http://127.0.0.1:8000"),
    (b"/hello", [(b"host", b"evil.test")], "/hello", "http://127.0.0.1:8000"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_verify_scope_decides_as_verify_on_the_helpers_reading(case: int) -> None:
    raw, headers, path, origin = CASES[case]
    native = _native.Paywall(SECRET)  # no configured origin: the request's scheme and Host are bound
    a = scope([*headers, (b"vlexivo-proof", tok(path, origin))], raw_path=raw)
    b = scope([*headers, (b"vlexivo-proof", tok(path, origin))], raw_path=raw)
    scheme, host = request_origin(b)
    expected = outcome(
        lambda: native.verify(
            proof_of(b), "GET", binding_path(b), PRICE, "usd", None, scheme=scheme, host=host
        )
    )
    assert outcome(lambda: native.verify_scope(a, PRICE)) == expected
    if case < 4:
        assert expected[0] == "paid"


def test_verify_scope_proof_reading() -> None:
    native = _native.Paywall(SECRET)
    host = (b"host", b"127.0.0.1:8000")
    # No proof, a proof that is not Latin-1 text of a token: the codes verify gives.
    missing = outcome(lambda: native.verify(None, "GET", "/hello", PRICE, host="127.0.0.1:8000"))
    assert missing[0] == "refused"
    assert outcome(lambda: native.verify_scope(scope([host]), PRICE)) == missing
    bad = scope([host, (b"vlexivo-proof", b"\xff\xfe")])
    assert outcome(lambda: native.verify_scope(bad, PRICE)) == outcome(
        lambda: native.verify(proof_of(bad), "GET", "/hello", PRICE, host="127.0.0.1:8000")
    )
    # The first proof counts (as proof_of reads it); a replay is refused.
    t = tok("/hello")
    s = scope([host, (b"vlexivo-proof", t), (b"vlexivo-proof", b"junk")])
    assert outcome(lambda: native.verify_scope(s, PRICE))[0] == "paid"
    assert outcome(lambda: native.verify_scope(s, PRICE)) == ("refused", "token_replayed")
    # Header names that are not bytes name nothing; a value that is not bytes is a TypeError.
    s = scope([("vlexivo-proof", tok("/hello")), host])  # type: ignore[list-item]
    assert outcome(lambda: native.verify_scope(s, PRICE)) == missing
    with pytest.raises(TypeError):
        native.verify_scope(scope([host, (b"vlexivo-proof", "text")]), PRICE)  # type: ignore[list-item]


def test_verify_scope_reports_a_cross_origin_request() -> None:
    native = _native.Paywall(SECRET)
    host = (b"host", b"127.0.0.1:8000")
    found = native.verify_scope(scope([host, (b"vlexivo-proof", tok("/hello"))]), PRICE)
    assert found is not None and found[1] is False
    cors = [host, (b"origin", b"https://app.test"), (b"vlexivo-proof", tok("/hello"))]
    found = native.verify_scope(scope(cors), PRICE)
    assert found is not None and found[1] is True


def test_verify_scope_leaves_what_it_cannot_read_to_the_caller() -> None:
    """Without raw_path (or an empty one), without Host, or not a dict: None, and the proof is
    not consumed (the helpers' path then verifies it)."""
    native = _native.Paywall(SECRET)
    t = tok("/hello")
    for s in (
        scope([(b"host", b"127.0.0.1:8000"), (b"vlexivo-proof", t)], raw_path=None),
        scope([(b"host", b"127.0.0.1:8000"), (b"vlexivo-proof", t)], raw_path=b""),
        scope([(b"vlexivo-proof", t)]),
    ):
        assert native.verify_scope(s, PRICE) is None
    from types import MappingProxyType

    assert (
        native.verify_scope(
            MappingProxyType(scope([(b"host", b"127.0.0.1:8000"), (b"vlexivo-proof", t)])), PRICE
        )
        is None
    )
    paid = native.verify(t.decode(), "GET", "/hello", PRICE, host="127.0.0.1:8000")
    assert paid.amount == "0.001"


def paid_app(vlx: VlexivoServer) -> FastAPI:
    app = FastAPI()
    app.add_middleware(vlx.asgi_paywall, routes={"GET /hello": vlx.price("0.001")})

    @app.get("/hello")
    async def hello(request: Request) -> dict[str, str]:
        return {"paid": request.state.vlx_payment.amount}

    return app


def test_a_scope_without_raw_path_or_host_still_pays_through_the_middleware() -> None:
    vlx = VlexivoServer(api_secret=SECRET)
    app = paid_app(vlx)

    async def call(s: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                out["status"], out["headers"] = msg["status"], dict(msg["headers"])
            else:
                out["body"] += msg.get("body", b"")

        await app(s, receive, send)
        return out["status"], out["headers"], out["body"]

    t = tok("/hello", origin="http://api.test")
    no_raw = scope([(b"host", b"api.test"), (b"vlexivo-proof", t)], raw_path=None, server=("127.0.0.1", 8000))
    status, headers, body = asyncio.run(call(no_raw))
    assert (status, body) == (200, b'{"paid":"0.001"}') and b"vlexivo-receipt" in headers
    # Without Host the server's address is the origin (the helpers' rule).
    t = tok("/hello", origin="http://127.0.0.1:8000")
    status, headers, body = asyncio.run(call(scope([(b"vlexivo-proof", t)], server=("127.0.0.1", 8000))))
    assert status == 200 and b"vlexivo-receipt" in headers
    # (A fresh scope: the middleware keeps the request's payment in it.)
    status, _, body = asyncio.run(call(scope([(b"vlexivo-proof", t)], server=("127.0.0.1", 8000))))
    assert status == 409 and b"token_replayed" in body


def test_the_receipt_is_exposed_to_cross_origin_requests_only(serve: Any) -> None:
    vlx = VlexivoServer(api_secret=SECRET, origin="http://api.test")
    url = serve("uvicorn", paid_app(vlx))
    with httpx.Client(base_url=url) as http:
        r = http.get("/hello", headers={"Vlexivo-Proof": tok("/hello", origin="http://api.test").decode()})
        assert r.status_code == 200 and r.headers["vlexivo-receipt"].startswith("tx=")
        assert "access-control-expose-headers" not in r.headers
        r = http.get(
            "/hello",
            headers={
                "Vlexivo-Proof": tok("/hello", origin="http://api.test").decode(),
                "Origin": "https://app.test",
            },
        )
        assert r.status_code == 200 and r.headers["vlexivo-receipt"].startswith("tx=")
        assert "Vlexivo-Receipt" in r.headers["access-control-expose-headers"]


def watched(native: _native.Paywall, status: int, *, origin: bool = False) -> tuple[Any, list[Any], Any]:
    """A paid request's box and the messages a `ResponseWatch` sends for a response of
    ``status`` (two body chunks), then ``ended(False)``."""
    from vlexivo._asgi import _Box
    from vlexivo._gate import Paid

    headers = [(b"host", b"127.0.0.1:8000"), *([(b"origin", b"https://app.test")] if origin else [])]
    s = scope([*headers, (b"vlexivo-proof", tok("/hello"))])
    found = native.verify_scope(s, PRICE)
    assert found is not None
    box = _Box()
    box.paid, box.cross_origin = Paid(found[0], native, PRICE, ()), None
    sent: list[Any] = []

    async def send(msg: Any) -> None:
        sent.append(msg)

    async def run() -> None:
        watch = _native.ResponseWatch(send, box, s, None, (None, None))
        own = [(b"content-type", b"text/plain")]
        await watch({"type": "http.response.start", "status": status, "headers": own})
        assert own == [(b"content-type", b"text/plain")]  # the app's own list is left alone
        await watch({"type": "http.response.body", "body": b"a", "more_body": True})
        assert (watch.status, watch.complete) == (status, False)
        await watch({"type": "http.response.body", "body": b"b"})
        assert watch.complete
        watch.ended(False)

    asyncio.run(run())
    return box, sent, s


def test_the_response_watch_executes_cores_policy_for_every_status() -> None:
    """The receipt header on exactly the statuses core says keep the payment, the nonce given
    back (the same proof pays again) on exactly those it says release it; every message sent on,
    in order, the app's headers first."""
    native = _native.Paywall(SECRET)
    for status in range(100, 1000):
        box, sent, s = watched(native, status)
        assert [m["type"] for m in sent] == [
            "http.response.start",
            "http.response.body",
            "http.response.body",
        ]
        names = [k for k, _ in sent[0]["headers"]]
        keeps = _native.sends_receipt(status)
        assert names == ([b"content-type", b"vlexivo-receipt"] if keeps else [b"content-type"]), status
        if keeps:
            assert sent[0]["headers"][1][1] == box.paid.payment.receipt.encode()
        released = (not keeps and _native.releases(status, False, False)) or _native.releases(
            status, False, True
        )
        assert box.paid.released == released, status
        again = outcome(lambda s=s: native.verify_scope(s, PRICE))
        assert again[0] == ("paid" if released else "refused"), (status, again)


def test_the_response_watch_exposes_the_receipt_to_a_request_with_origin() -> None:
    native = _native.Paywall(SECRET)
    _, sent, _ = watched(native, 200, origin=True)
    assert sent[0]["headers"][-1] == (b"access-control-expose-headers", _native.EXPOSE_HEADERS.encode())
    _, sent, _ = watched(native, 200)
    assert sent[0]["headers"][-1][0] == b"vlexivo-receipt"


def test_the_response_watch_after_the_app() -> None:
    """Core's outcome rule once the app has ended: no response started or raised mid-stream
    releases the nonce; a complete response keeps it; nothing paid, nothing to settle."""
    from vlexivo._asgi import _Box
    from vlexivo._gate import Paid

    native = _native.Paywall(SECRET)

    async def send(msg: Any) -> None:
        pass

    def paid_box() -> Any:
        s = scope([(b"host", b"127.0.0.1:8000"), (b"vlexivo-proof", tok("/hello"))])
        found = native.verify_scope(s, PRICE)
        assert found is not None
        box = _Box()
        box.paid, box.cross_origin = Paid(found[0], native, PRICE, ()), False
        return box, s

    for messages, raised in (
        ([], False),
        ([], True),
        ([200], True),
        ([200, "more"], True),
        ([200, "end"], True),
    ):
        box, s = paid_box()
        watch = _native.ResponseWatch(send, box, s, None, (None, None))

        async def run(messages: list[Any] = messages, watch: Any = watch) -> None:
            for m in messages:
                if m == "more":
                    await watch({"type": "http.response.body", "body": b"x", "more_body": True})
                elif m == "end":
                    await watch({"type": "http.response.body", "body": b"x"})
                else:
                    await watch({"type": "http.response.start", "status": m, "headers": []})

        asyncio.run(run())
        watch.ended(raised)
        status = messages[0] if messages else None
        expected = _native.releases(status, raised, "end" in messages)
        assert box.paid.released == expected, (messages, raised)
    # A request no paywall took: the watch only passes the messages on.
    box = _Box()
    box.paid = box.cross_origin = None
    sent: list[Any] = []

    async def keep(msg: Any) -> None:
        sent.append(msg)

    watch = _native.ResponseWatch(keep, box, scope([]), None, (None, None))
    start = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]}
    asyncio.run(watch(start))  # type: ignore[arg-type]
    watch.ended(False)
    assert sent == [{"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]}]


def test_a_paid_request_gives_its_nonce_back_once_and_logs_a_store_that_cannot(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``Paid``: the nonce released at most once per request, as core's outcome rule says; a
    store that fails to give it back is logged, not raised (the response stands)."""
    import sqlite3

    from vlexivo._gate import Paid

    db = tmp_path / "nonces.db"
    native = _native.Paywall(SECRET, nonce_store=f"sqlite://{db}")
    s = scope([(b"host", b"127.0.0.1:8000"), (b"vlexivo-proof", tok("/hello"))])
    found = native.verify_scope(s, PRICE)
    assert found is not None
    gates = ["a", "b"]
    paid = Paid(found[0], native, PRICE, gates)
    assert paid.gates == ("a", "b") and paid.covers("b") and not paid.covers("c")
    assert paid.native is native and paid.price is PRICE and paid.payment is found[0]
    paid.settle(200, False, True)  # a complete 200 keeps the payment
    assert not paid.released
    assert outcome(lambda: native.verify_scope(s, PRICE)) == ("refused", "token_replayed")
    # Another process drops the store's table: the release fails on the store's side.
    with sqlite3.connect(db) as other:
        other.execute("DROP TABLE vlexivo_nonces")
    with caplog.at_level("ERROR", logger="vlexivo"):
        paid.settle(503, False, True)
        paid.release()
    assert paid.released
    failures = [r for r in caplog.records if "could not release nonce" in r.getMessage()]
    assert len(failures) == 1 and found[0].nonce in failures[0].getMessage(), caplog.text
