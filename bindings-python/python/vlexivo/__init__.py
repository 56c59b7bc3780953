"""Vlexivo: HTTP 402 per-call API payments.

Provider: :class:`VlexivoServer` with an ASGI middleware (Starlette/FastAPI), a FastAPI
dependency, a Flask decorator, a WSGI middleware, a Django middleware and view decorator.
Payer: :class:`VlexivoClient` and :class:`AsyncVlexivoClient` (httpx), :class:`VlexivoSession`
and :class:`VlexivoAdapter` (requests). Everything
protocol-related runs in the native core (``vlexivo._native``)."""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 (a clear error on an unsupported Python)  # pragma: no cover - the wheel's Requires-Python stops pip first
    raise ImportError(
        f"vlexivo needs Python 3.10 or newer; this is {sys.version.split()[0]}. "
        "Install it into a Python >= 3.10 environment."
    )

from typing import TYPE_CHECKING, Any

from ._native import (
    ALL_CODES,
    CHALLENGE_HEADER,
    PROOF_HEADER,
    RECEIPT_HEADER,
    Payment,
    Price,
    Receipt,
    Wallet,
    __version__,
)
from ._onchain import VerifiedPayment, verify_payment, verify_payment_async
from .errors import (
    CATEGORY_CLASSES,
    CODE_CLASSES,
    AmountError,
    BodyNotReplayableError,
    BudgetExceededError,
    ChallengeError,
    ChallengeMalformedError,
    ConfigError,
    ConfigInvalidError,
    FacilitatorError,
    InsufficientFundsError,
    InternalError,
    InvalidInputError,
    InvalidRequestError,
    ModeMismatchError,
    NonceStoreError,
    NotPaymentRequiredError,
    PaymentError,
    PaymentRequiredError,
    PriceInvalidError,
    ProofError,
    ProofMalformedError,
    RequestError,
    SignatureError,
    TokenReplayedError,
    UnderpaidError,
    VlexivoError,
    WalletError,
    WalletKeyError,
    error_class,
)
from .server import PaidRoute, PricedPayer, PricingRequest, Usage, VlexivoServer

if TYPE_CHECKING:
    from ._flow import AutoTopUp, PaymentEvent
    from ._requests import VlexivoAdapter, VlexivoSession
    from .client import AsyncVlexivoClient, VlexivoClient

# The clients need their HTTP library, an extra (`pip install 'vlexivo[client]'` for httpx,
# `'vlexivo[requests]'` for requests): a provider's server needs neither, so they are imported
# on first use.
_LAZY = {
    "AutoTopUp": ("_flow", None),
    "PaymentEvent": ("_flow", None),
    "AsyncVlexivoClient": ("client", "httpx"),
    "VlexivoClient": ("client", "httpx"),
    "VlexivoAdapter": ("_requests", "requests"),
    "VlexivoSession": ("_requests", "requests"),
}
_EXTRA = {"httpx": "client", "requests": "requests"}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is not None:
        import importlib

        module, needs = found
        try:
            mod = importlib.import_module(f".{module}", __name__)
        except ModuleNotFoundError as e:
            if needs is None or e.name != needs:
                raise
            extra = _EXTRA[needs]
            raise ImportError(
                f"vlexivo.{name} needs {needs}, which is not installed: pip install 'vlexivo[{extra}]'"
            ) from None
        return getattr(mod, name)
    raise AttributeError(f"module 'vlexivo' has no attribute {name!r}")


__all__ = [
    "ALL_CODES",
    "CATEGORY_CLASSES",
    "CHALLENGE_HEADER",
    "CODE_CLASSES",
    "PROOF_HEADER",
    "RECEIPT_HEADER",
    "AmountError",
    "AsyncVlexivoClient",
    "AutoTopUp",
    "BodyNotReplayableError",
    "BudgetExceededError",
    "ChallengeError",
    "ChallengeMalformedError",
    "ConfigError",
    "ConfigInvalidError",
    "FacilitatorError",
    "InsufficientFundsError",
    "InternalError",
    "InvalidInputError",
    "InvalidRequestError",
    "ModeMismatchError",
    "NonceStoreError",
    "NotPaymentRequiredError",
    "PaidRoute",
    "Payment",
    "PaymentError",
    "PaymentEvent",
    "PaymentRequiredError",
    "Price",
    "PriceInvalidError",
    "PricedPayer",
    "PricingRequest",
    "ProofError",
    "ProofMalformedError",
    "Receipt",
    "RequestError",
    "SignatureError",
    "TokenReplayedError",
    "UnderpaidError",
    "Usage",
    "VerifiedPayment",
    "VlexivoAdapter",
    "VlexivoClient",
    "VlexivoError",
    "VlexivoServer",
    "VlexivoSession",
    "Wallet",
    "WalletError",
    "WalletKeyError",
    "__version__",
    "error_class",
    "verify_payment",
    "verify_payment_async",
]
