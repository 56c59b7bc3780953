"""Vlexivo: HTTP 402 per-call API payments.

Provider: :class:`VlexivoServer` with an ASGI middleware (Starlette/FastAPI), a FastAPI
dependency, a Flask decorator, a WSGI middleware, a Django middleware and view decorator.
Payer: :class:`VlexivoClient` and :class:`AsyncVlexivoClient` (httpx). Everything
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
from .server import PaidRoute, PricingRequest, VlexivoServer

if TYPE_CHECKING:
    from .client import AsyncVlexivoClient, AutoTopUp, PaymentEvent, VlexivoClient

# The clients need httpx, an extra (`pip install 'vlexivo[client]'`): a provider's server does
# not, so they are imported on first use.
_CLIENT_NAMES = frozenset({"AsyncVlexivoClient", "AutoTopUp", "PaymentEvent", "VlexivoClient"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        try:
            from . import client
        except ModuleNotFoundError as e:
            if e.name != "httpx":
                raise
            raise ImportError(
                f"vlexivo.{name} needs httpx, which is not installed: pip install 'vlexivo[client]'"
            ) from None
        return getattr(client, name)
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
    "PricingRequest",
    "ProofError",
    "ProofMalformedError",
    "Receipt",
    "RequestError",
    "SignatureError",
    "TokenReplayedError",
    "UnderpaidError",
    "VlexivoClient",
    "VlexivoError",
    "VlexivoServer",
    "Wallet",
    "WalletError",
    "WalletKeyError",
    "__version__",
    "error_class",
]
