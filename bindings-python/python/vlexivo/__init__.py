"""Vlexivo: HTTP 402 per-call API payments.

Provider: :class:`VlexivoServer` with an ASGI middleware (Starlette/FastAPI), a FastAPI
dependency, a Flask decorator and a WSGI middleware. Payer: :class:`VlexivoClient` and
:class:`AsyncVlexivoClient` (httpx). Everything protocol-related runs in the native core
(``vlexivo._native``)."""

from ._native import ALL_CODES, Payment, Price, Receipt, Wallet, __version__
from .client import AsyncVlexivoClient, AutoTopUp, PaymentEvent, VlexivoClient
from .errors import (
    AmountError,
    BodyNotReplayableError,
    BudgetExceededError,
    ChallengeError,
    ChallengeMalformedError,
    ConfigError,
    FacilitatorError,
    InsufficientFundsError,
    InternalError,
    InvalidInputError,
    ModeMismatchError,
    NonceStoreError,
    NotPaymentRequiredError,
    PaymentRequiredError,
    PriceInvalidError,
    ProofError,
    ProofMalformedError,
    RequestError,
    SignatureError,
    TokenReplayedError,
    VlexivoError,
    WalletError,
    error_class,
)
from .server import PaidRoute, PricingRequest, VlexivoServer

__all__ = [
    "ALL_CODES",
    "AmountError",
    "AsyncVlexivoClient",
    "AutoTopUp",
    "BodyNotReplayableError",
    "BudgetExceededError",
    "ChallengeError",
    "ChallengeMalformedError",
    "ConfigError",
    "FacilitatorError",
    "InsufficientFundsError",
    "InternalError",
    "InvalidInputError",
    "ModeMismatchError",
    "NonceStoreError",
    "NotPaymentRequiredError",
    "PaidRoute",
    "Payment",
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
    "VlexivoClient",
    "VlexivoError",
    "VlexivoServer",
    "Wallet",
    "WalletError",
    "__version__",
    "error_class",
]
