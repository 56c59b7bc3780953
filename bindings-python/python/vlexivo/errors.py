"""The exception hierarchy. Every code of ``vlexivo._native.ALL_CODES`` maps to exactly one class
here (``tests/test_errors.py`` checks it); codes that core calls *bad input* also subclass
:class:`ValueError`, so ``except ValueError`` catches a malformed amount or wallet key."""

from __future__ import annotations

from typing import Any, NoReturn

from . import _native

__all__ = [
    "AmountError",
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
    "PaymentRequiredError",
    "PriceInvalidError",
    "ProofError",
    "ProofMalformedError",
    "RequestError",
    "SignatureError",
    "TokenReplayedError",
    "VlexivoError",
    "WalletError",
    "error_class",
    "from_native",
    "make_error",
]


class VlexivoError(Exception):
    """Base of every Vlexivo failure.

    ``code`` is the stable snake_case code (the same in every language and on the wire),
    ``status`` the HTTP status a server answers with, ``fields`` the structured details.
    """

    code: str
    status: int
    message: str
    fields: dict[str, Any]

    def __init__(
        self,
        message: str = "",
        *,
        code: str = "internal",
        status: int = 500,
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.fields = dict(fields or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidInputError(VlexivoError, ValueError):
    """The caller passed something invalid (core's ``is_bad_input()``)."""


class AmountError(InvalidInputError):
    """An amount or currency that core refuses (``amount_*``, ``currency_*``)."""


class ConfigError(InvalidInputError):
    """Invalid configuration (an ``api_secret`` that is not one, a bad network, …)."""


class ModeMismatchError(VlexivoError):
    """``mode`` disagrees with the ``api_secret`` (``sk_test_`` is sandbox, ``sk_live_`` live)."""


class ChallengeError(VlexivoError):
    """A 402 challenge that cannot be paid: expired, failed authentication, or for another
    request than the one made."""


class ChallengeMalformedError(ChallengeError, InvalidInputError):
    """A challenge that does not decode (or is too large)."""


class WalletError(InvalidInputError):
    """A wallet key or address that is not valid."""


class SignatureError(VlexivoError):
    """A wallet signature that does not verify (opaque on purpose)."""


class PaymentRequiredError(VlexivoError):
    """No proof was presented (``payment_required``)."""


class ProofError(VlexivoError):
    """A proof token that does not buy this request (expired, wrong route, underpaid, …)."""


class ProofMalformedError(ProofError, InvalidInputError):
    """A proof token that is not a token at all (or too large)."""


class TokenReplayedError(ProofError):
    """The proof token's nonce was already consumed (409)."""


class NonceStoreError(VlexivoError):
    """The nonce store is full or unavailable (503)."""


class BudgetExceededError(VlexivoError):
    """A spending cap refused the payment before anything was signed.

    ``limit`` is ``"per_call"``, ``"per_host"``, ``"total"`` or ``"window"``; ``requested`` and
    ``remaining`` are decimal strings.
    """

    @property
    def limit(self) -> str:
        return str(self.fields.get("limit", ""))

    @property
    def requested(self) -> str:
        return str(self.fields.get("requested", ""))

    @property
    def remaining(self) -> str:
        return str(self.fields.get("remaining", ""))


class InsufficientFundsError(VlexivoError):
    """The wallet cannot pay: ``required_amount``, ``balance`` and ``currency`` say by how much."""

    @property
    def required_amount(self) -> str:
        return str(self.fields.get("required", ""))

    @property
    def balance(self) -> str:
        return str(self.fields.get("balance", ""))

    @property
    def currency(self) -> str:
        return str(self.fields.get("currency", "usd"))


class FacilitatorError(VlexivoError):
    """The facilitator refused or could not be reached."""


class RequestError(InvalidInputError):
    """A request that is malformed or too large."""


class BodyNotReplayableError(RequestError):
    """The request body is a one-shot stream: it cannot be sent again after paying, so the
    client refuses before paying. Pass ``content=bytes`` (or ``json=``) instead."""


class NotPaymentRequiredError(VlexivoError):
    """A response that is not a Vlexivo 402."""


class PriceInvalidError(VlexivoError):
    """The provider's price (static or from a resolver) is not a valid price: a provider bug."""


class InternalError(VlexivoError):
    """Anything else."""


_BY_CODE: dict[str, type[VlexivoError]] = {
    "amount_malformed": AmountError,
    "amount_negative": AmountError,
    "amount_not_finite": AmountError,
    "amount_precision": AmountError,
    "amount_too_large": AmountError,
    "amount_zero": AmountError,
    "currency_unsupported": AmountError,
    "currency_mismatch": AmountError,
    "challenge_malformed": ChallengeMalformedError,
    "challenge_too_large": ChallengeMalformedError,
    "challenge_invalid": ChallengeError,
    "challenge_expired": ChallengeError,
    "challenge_mismatch": ChallengeError,
    "wallet_key_invalid": WalletError,
    "address_invalid": WalletError,
    "signature_invalid": SignatureError,
    "payment_required": PaymentRequiredError,
    "token_malformed": ProofMalformedError,
    "token_too_large": ProofMalformedError,
    "token_algorithm": ProofError,
    "token_type": ProofError,
    "token_invalid": ProofError,
    "token_expired": ProofError,
    "token_not_yet_valid": ProofError,
    "token_audience": ProofError,
    "token_mode": ProofError,
    "token_resource": ProofError,
    "token_underpaid": ProofError,
    "token_currency": ProofError,
    "token_replayed": TokenReplayedError,
    "nonce_store_full": NonceStoreError,
    "nonce_store_unavailable": NonceStoreError,
    "budget_exceeded": BudgetExceededError,
    "insufficient_funds": InsufficientFundsError,
    "provider_unknown": FacilitatorError,
    "unauthorized": FacilitatorError,
    "payment_conflict": FacilitatorError,
    "top_up_refused": FacilitatorError,
    "request_too_large": RequestError,
    "request_malformed": RequestError,
    "facilitator_unavailable": FacilitatorError,
    "facilitator_untrusted": ChallengeError,
    "payment_in_doubt": FacilitatorError,
    "facilitator_error": FacilitatorError,
    "authorization_invalid": FacilitatorError,
    "authorization_used": FacilitatorError,
    "settlement_failed": FacilitatorError,
    "not_payment_required": NotPaymentRequiredError,
    "body_not_replayable": BodyNotReplayableError,
    "price_invalid": PriceInvalidError,
    "config_invalid": ConfigError,
    "mode_mismatch": ModeMismatchError,
    "internal": InternalError,
}


def error_class(code: str) -> type[VlexivoError]:
    """The class raised for ``code`` (:class:`VlexivoError` itself for a code from a newer core)."""
    return _BY_CODE.get(code, VlexivoError)


#: What a native call raises: a core error, or a panic inside the native module (pyo3's
#: ``PanicException``, a BaseException), which becomes an ``internal`` error, never a crash.
NATIVE_ERRORS: tuple[type[BaseException], ...] = (_native.NativeError, _native.PanicException)


def as_native(e: BaseException) -> _native.NativeError:
    """A caught native failure as core's error: a panic becomes an ``internal`` one."""
    if isinstance(e, _native.NativeError):
        return e
    return _native.error_for("internal", f"internal error in the native module: {e}")


def from_native(e: BaseException) -> VlexivoError:
    """Turn a ``_native.NativeError`` into the public exception (keeping it as ``__cause__``)."""
    e = as_native(e)
    code = getattr(e, "code", "internal")
    err = error_class(code)(
        getattr(e, "message", str(e)),
        code=code,
        status=getattr(e, "status", 500),
        fields=getattr(e, "fields", None),
    )
    err._native = e  # type: ignore[attr-defined]  # reject() wants the core error back
    return err


def make_error(code: str, message: str = "") -> VlexivoError:
    """The public exception for ``code``, with core's status and message."""
    return from_native(_native.error_for(code, message))


def reraise(e: BaseException) -> NoReturn:
    raise from_native(e) from None
