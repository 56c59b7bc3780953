"""Type stubs for the pyo3 module ``vlexivo._native`` (checked by ``mypy.stubtest`` in ci.sh)."""

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Final, final

from typing_extensions import disjoint_base

__all__ = [
    "ALL_CODES",
    "CHALLENGE_HEADER",
    "DEFAULT_FACILITATOR_URL",
    "ERROR_CATEGORIES",
    "ERROR_TABLE",
    "EXPOSE_HEADERS",
    "MAX_RESPONSE_BODY",
    "MCP_INTERNAL_ERROR",
    "MCP_PAYER_META",
    "MCP_PAYMENT_REQUIRED",
    "MCP_PROOF_META",
    "MCP_RECEIPT_META",
    "PAYER_HEADER",
    "PROOF_HEADER",
    "PROTOCOL_VERSION",
    "RECEIPT_HEADER",
    "AsgiMiddleware",
    "FacilitatorRequest",
    "NativeError",
    "PanicException",
    "Payer",
    "PayerCall",
    "Payment",
    "PaymentCheck",
    "PaymentEvent",
    "PaymentRequired",
    "Paywall",
    "Price",
    "Quote",
    "Receipt",
    "ResponseWatch",
    "Step",
    "TopUpReceipt",
    "Wallet",
    "_ErrorBox",
    "__version__",
    "auto_top_up_amount",
    "check_stacked",
    "effective_price",
    "env_var",
    "error_for",
    "error_from_body",
    "expose_value",
    "exposes_headers",
    "for_browser",
    "is_free_request",
    "mcp_call_meta",
    "mcp_meta_key",
    "mcp_payment_required_answer",
    "mcp_rejection_error",
    "mcp_request_meta",
    "mcp_result_receipt",
    "now",
    "parse_amount",
    "parse_payment_required",
    "parse_price",
    "priced_method",
    "releases",
    "sends_receipt",
    "split_url",
]

ALL_CODES: Final[tuple[str, ...]]
ERROR_TABLE: Final[tuple[tuple[str, int, str, bool], ...]]
ERROR_CATEGORIES: Final[tuple[str, ...]]
CHALLENGE_HEADER: Final[str]
PROOF_HEADER: Final[str]
PAYER_HEADER: Final[str]
RECEIPT_HEADER: Final[str]
EXPOSE_HEADERS: Final[str]
PROTOCOL_VERSION: Final[int]
DEFAULT_FACILITATOR_URL: Final[str]
MAX_RESPONSE_BODY: Final[int]
MCP_PAYMENT_REQUIRED: Final[int]
MCP_INTERNAL_ERROR: Final[int]
MCP_PROOF_META: Final[str]
MCP_PAYER_META: Final[str]
MCP_RECEIPT_META: Final[str]
__version__: Final[str]

_Answer = tuple[int, list[tuple[str, str]], str]
_PriceLike = str | int | float | Any  # Any: decimal.Decimal or Price

class PanicException(BaseException):
    """pyo3's exception for a panic inside a native call (the package raises it as ``internal``)."""

class NativeError(Exception):
    """A vlexivo-core error: .code, .status, .category, .message, .bad_input, .details."""

    code: str
    status: int
    category: str
    message: str
    bad_input: bool
    details: dict[str, Any]

@final
class _ErrorBox: ...

@final
class Price:
    @property
    def amount(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def atomic(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Payment:
    @property
    def payer(self) -> str: ...
    @property
    def amount(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def tx_hash(self) -> str: ...
    @property
    def nonce(self) -> str: ...
    @property
    def paid_at(self) -> int: ...
    @property
    def expires_at(self) -> int: ...
    @property
    def resource(self) -> str: ...
    @property
    def store_key(self) -> str: ...
    @property
    def receipt(self) -> str: ...
    def to_dict(self, camel: bool = False) -> dict[str, Any]: ...

@final
class Paywall:
    def __new__(
        cls,
        api_secret: str,
        mode: str | None = None,
        facilitator_url: str | None = None,
        network: str | None = None,
        challenge_ttl: int = 300,
        leeway: int = 30,
        bind_body: bool = False,
        nonce_store: str = "memory",
        jwks: str | Mapping[str, Any] | None = None,
        origin: str | None = None,
        nonce_store_options: Mapping[str, str | int | bool] | None = None,
    ) -> Paywall: ...
    @property
    def account(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def facilitator_url(self) -> str: ...
    @property
    def origin(self) -> str | None: ...
    @property
    def bind_body(self) -> bool: ...
    @property
    def nonce_store(self) -> str: ...
    @property
    def store_blocks(self) -> bool: ...
    @property
    def store_failures(self) -> int: ...
    def priced_payer(
        self, proof: str | None, hint: str | None, now: int | None = None
    ) -> tuple[str, bool] | None: ...
    def verify(
        self,
        proof: str | None,
        method: str,
        path: str,
        price: _PriceLike,
        currency: str = "usd",
        now: int | None = None,
        body: bytes | None = None,
        *,
        scheme: str = "http",
        host: str | None = None,
        payer: str | None = None,
    ) -> Payment: ...
    def verify_scope(
        self, scope: Mapping[str, Any], price: Price, now: int | None = None
    ) -> tuple[Payment, bool] | None: ...
    def release(self, store_key: str) -> None: ...
    def challenge(
        self,
        method: str,
        path: str,
        price: _PriceLike,
        currency: str = "usd",
        scope: str = "per-call",
        now: int | None = None,
        body: bytes | None = None,
        *,
        scheme: str = "http",
        host: str | None = None,
        payer: str | None = None,
    ) -> _Answer: ...
    def reject(
        self,
        error: NativeError | str,
        method: str,
        path: str,
        price: _PriceLike | None = None,
        currency: str = "usd",
        scope: str = "per-call",
        now: int | None = None,
        body: bytes | None = None,
        *,
        scheme: str = "http",
        host: str | None = None,
        payer: str | None = None,
    ) -> _Answer: ...

@final
class ResponseWatch:
    def __new__(
        cls,
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
        holder: Any,
        scope: MutableMapping[str, Any],
        check: Callable[..., Awaitable[None] | None] | None,
        route: tuple[Any, Any],
    ) -> ResponseWatch: ...
    def __call__(self, msg: MutableMapping[str, Any]) -> Awaitable[None]: ...
    def ended(self, raised: bool) -> None: ...
    @property
    def status(self) -> int: ...
    @property
    def complete(self) -> bool: ...

@disjoint_base
class AsgiMiddleware:
    def __new__(cls, *args: Any, **kwargs: Any) -> AsgiMiddleware: ...
    def _fast_path(
        self,
        app: Callable[..., Awaitable[None]],
        map: Any,
        recent: dict[Any, Any],
        check: Callable[..., Awaitable[None] | None],
        paid_by: Callable[[Payment], None] | None,
        usage: Any,
        now: Callable[[], int | None] | None,
    ) -> None: ...
    def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> Awaitable[None]: ...

@final
class PaymentCheck:
    def __new__(
        cls,
        tx_hash: str,
        token: str,
        payer: str,
        payee: str,
        amount: _PriceLike,
        confirmations: int = 1,
        authorization_nonce: str | None = None,
    ) -> PaymentCheck: ...
    def request(self) -> str: ...
    def answer(self, status: int, body: bytes, failure: str | None = None) -> dict[str, Any]: ...

@final
class Wallet:
    def __new__(cls, private_key: str) -> Wallet: ...
    @staticmethod
    def generate() -> Wallet: ...
    @property
    def address(self) -> str: ...
    def private_key_hex(self) -> str: ...

@final
class PaymentRequired:
    @property
    def challenge(self) -> str: ...
    @property
    def price(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def nonce(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def facilitator(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def network(self) -> str: ...
    @property
    def issued_at(self) -> int: ...
    @property
    def expires_at(self) -> int: ...

@final
class Receipt:
    @property
    def token(self) -> str: ...
    @property
    def tx_hash(self) -> str: ...
    @property
    def payer(self) -> str: ...
    @property
    def amount(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def balance(self) -> str: ...
    @property
    def nonce(self) -> str: ...
    @property
    def paid_at(self) -> int: ...
    @property
    def expires_at(self) -> int: ...
    @property
    def replayed(self) -> bool: ...

@final
class TopUpReceipt:
    @property
    def address(self) -> str: ...
    @property
    def amount(self) -> str: ...
    @property
    def balance(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def tx_hash(self) -> str: ...

@final
class FacilitatorRequest:
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def facilitator(self) -> str: ...

@final
class PaymentEvent:
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def facilitator(self) -> str: ...
    @property
    def price(self) -> str: ...
    @property
    def receipt(self) -> Receipt: ...
    @property
    def topped_up(self) -> str | None: ...
    @property
    def reconciled(self) -> bool: ...

@final
class Step:
    @property
    def kind(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def request(self) -> FacilitatorRequest | None: ...
    @property
    def event(self) -> PaymentEvent | None: ...
    @property
    def millis(self) -> int | None: ...

@final
class Quote:
    @property
    def price(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def nonce(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def facilitator(self) -> str: ...
    @property
    def pay_url(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def expires_at(self) -> int: ...

@final
class Payer:
    def __new__(
        cls,
        wallet_key: str,
        max_per_call: _PriceLike | None = None,
        max_per_host: _PriceLike | None = None,
        max_total: _PriceLike | None = None,
        window: tuple[int, _PriceLike] | None = None,
        facilitator_url: str | None = None,
        facilitators: list[str] | None = None,
        auto_top_up: tuple[_PriceLike, _PriceLike]
        | tuple[_PriceLike, _PriceLike, _PriceLike | None, str | None, str | None]
        | None = None,
        fixed_now: int | None = None,
        facilitator_env: str | None = None,
        payer_hint: bool = True,
    ) -> Payer: ...
    @property
    def address(self) -> str: ...
    @property
    def facilitators(self) -> list[str]: ...
    def call(self, method: str, url: str, replayable: bool) -> PayerCall: ...
    def quote(self, payment_required: PaymentRequired, method: str, url: str) -> Quote: ...
    def balance_request(self, facilitator: str | None = None) -> FacilitatorRequest: ...
    def read_balance(self, request: FacilitatorRequest, status: int, body: bytes) -> str: ...
    def top_up_request(self, amount: _PriceLike, facilitator: str | None = None) -> FacilitatorRequest: ...
    def read_top_up(self, request: FacilitatorRequest, status: int, body: bytes) -> TopUpReceipt: ...
    def spent_total(self) -> str: ...
    def spent_for_host(self, host: str) -> str: ...
    def reserved_total(self) -> str: ...
    def in_doubt_total(self) -> str: ...

@final
class PayerCall:
    def start(self) -> Step: ...
    def response(
        self,
        status: int,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | Any,
        body: bytes | None = None,
        url: str | None = None,
    ) -> Step: ...
    def answer(self, status: int, body: bytes) -> Step: ...
    def transport_error(self, sent: bool, reason: str) -> Step: ...
    def resume(self) -> Step: ...
    def request_failed(self) -> None: ...
    @property
    def price(self) -> str | None: ...

def parse_price(value: _PriceLike, currency: str = "usd") -> Price: ...
def parse_amount(value: _PriceLike, currency: str = "usd", positive: bool = False) -> Price: ...
def error_for(code: str, message: str = "") -> NativeError: ...
def error_from_body(status: int, body: bytes) -> NativeError: ...
def for_browser(answer: _Answer, accept: str | None, proof_present: bool) -> _Answer: ...
def env_var(name: str, environ: Mapping[str, str]) -> str | None: ...
def parse_payment_required(
    status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]] | Any, body: bytes
) -> PaymentRequired: ...
def auto_top_up_amount(
    trigger_balance: _PriceLike, top_up_amount: _PriceLike, balance: _PriceLike, price: _PriceLike
) -> str | None: ...
def split_url(url: str) -> tuple[str, str]: ...
def is_free_request(method: str, preflight_header: bool) -> bool: ...
def priced_method(method: str) -> str: ...
def releases(status: int | None, raised: bool, complete: bool) -> bool: ...
def sends_receipt(status: int) -> bool: ...
def exposes_headers(origin_header: bool) -> bool: ...
def expose_value(existing: str | None = None) -> str | None: ...
def effective_price(prices: Sequence[Price]) -> Price: ...
def check_stacked(paid_amount: str, paid_currency: str, price: Price) -> Price | None: ...
def now() -> int: ...
def mcp_meta_key(header: str) -> str: ...
def mcp_call_meta(meta: str) -> tuple[str | None, str | None]: ...
def mcp_result_receipt(meta: str) -> str | None: ...
def mcp_request_meta(headers: Sequence[tuple[str, str]]) -> dict[str, Any]: ...
def mcp_rejection_error(status: int, body: str) -> tuple[int, str, dict[str, Any]]: ...
def mcp_payment_required_answer(code: int, data: str) -> tuple[int, list[tuple[str, str]], str] | None: ...
