"""The exception hierarchy, following core's error table (``_native.ERROR_TABLE``).

Every code has one *category* in core (``amount``, ``challenge``, ``wallet``, ``proof``,
``payment``, ``facilitator``, ``nonce_store``, ``request``, ``config``, ``internal``), and the
category is the base class here (:data:`CATEGORY_CLASSES`): ``except ProofError`` catches every
proof problem, whatever its code. A few codes have a subclass of their own: those with fields of
their own (:class:`InsufficientFundsError`, :class:`BudgetExceededError`, ...) and those core
calls *bad input*, which also subclass :class:`ValueError` (through :class:`InvalidInputError`).
``tests/test_errors.py`` checks :data:`CODE_CLASSES` against the table, code by code.

An error's fields are in ``details``, under core's keys (the same as ``details`` in JS)."""

from __future__ import annotations

from typing import Any, NoReturn

from . import _native

__all__ = [
    "CATEGORY_CLASSES",
    "CODE_CLASSES",
    "AmountError",
    "BodyNotReplayableError",
    "BudgetExceededError",
    "ChallengeError",
    "ChallengeMalformedError",
    "ConfigError",
    "ConfigInvalidError",
    "FacilitatorError",
    "InsufficientFundsError",
    "InternalError",
    "InvalidRequestError",
    "ModeMismatchError",
    "NonceStoreError",
    "NotPaymentRequiredError",
    "PaymentError",
    "PaymentRequiredError",
    "PriceInvalidError",
    "ProofError",
    "ProofMalformedError",
    "RequestError",
    "SignatureError",
    "TokenReplayedError",
    "UnderpaidError",
    "WalletError",
    "WalletKeyError",
    "error_class",
    "from_native",
    "make_error",
]


class VlexivoError(Exception):
    """Base of every Vlexivo failure.

    ``code`` is the stable snake_case code (the same in every language and on the wire),
    ``status`` the HTTP status a server answers with, ``category`` core's category of the code
    (the class's), ``details`` the structured fields under core's keys.
    """

    category: str = "internal"
    code: str
    status: int
    message: str
    details: dict[str, Any]

    def __init__(
        self,
        message: str = "",
        *,
        code: str = "internal",
        status: int = 500,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidInputError(VlexivoError, ValueError):
    """The caller passed something invalid (core's ``is_bad_input()``); mixed into the classes
    of those codes, so ``except ValueError`` catches a malformed amount or wallet key."""


# --- one class per category ------------------------------------------------------------------


class AmountError(InvalidInputError):
    """``amount``: an amount or currency that core refuses (``amount_*``, ``currency_*``)."""

    category = "amount"


class ChallengeError(VlexivoError):
    """``challenge``: a 402 challenge that cannot be paid: expired, failed authentication, for
    another request than the one made, or naming a facilitator this payer does not trust."""

    category = "challenge"


class WalletError(VlexivoError):
    """``wallet``: a wallet key, address or signature."""

    category = "wallet"


class ProofError(VlexivoError):
    """``proof``: no proof of payment, or one that does not buy this request (expired, wrong
    route, underpaid, replayed, ...)."""

    category = "proof"


class PaymentError(VlexivoError):
    """``payment``: the payment was refused (budget, funds, conflict, top-up) or its fate is
    unknown (``payment_in_doubt``)."""

    category = "payment"


class FacilitatorError(VlexivoError):
    """``facilitator``: the facilitator refused the caller, failed or could not be reached."""

    category = "facilitator"

    @property
    def facilitator_status(self) -> int | None:
        """For ``facilitator_error``: the facilitator's HTTP status."""
        s = self.details.get("facilitatorStatus")
        return int(s) if s is not None else None

    @property
    def facilitator_code(self) -> str | None:
        """For ``facilitator_error``: the facilitator's error code."""
        c = self.details.get("facilitatorCode")
        return str(c) if c is not None else None


class NonceStoreError(VlexivoError):
    """``nonce_store``: the nonce store is full or unavailable (503)."""

    category = "nonce_store"


class RequestError(VlexivoError):
    """``request``: a request that cannot be made or sent again, or a response that is not a
    Vlexivo 402."""

    category = "request"


class ConfigError(VlexivoError):
    """``config``: invalid configuration, a mode mismatch, or an invalid provider price."""

    category = "config"


class InternalError(VlexivoError):
    """``internal``: a bug."""

    category = "internal"


# --- codes with a class of their own ---------------------------------------------------------


class ChallengeMalformedError(ChallengeError, InvalidInputError):
    """A challenge that does not decode (or is too large)."""


class WalletKeyError(WalletError, InvalidInputError):
    """A wallet key or address that is not valid."""


class SignatureError(WalletError):
    """A wallet signature that does not verify (opaque on purpose)."""


class PaymentRequiredError(ProofError):
    """No proof was presented (``payment_required``)."""


class ProofMalformedError(ProofError, InvalidInputError):
    """A proof token that is not a token at all, or too large, or with claims the protocol
    never issues."""


class TokenReplayedError(ProofError):
    """The proof token's nonce was already consumed (409)."""


class UnderpaidError(ProofError):
    """The proof paid less than this request's price, or in another currency: ``paid`` and
    ``price`` say what."""

    @property
    def paid(self) -> str:
        return str(self.details.get("paid", ""))

    @property
    def price(self) -> str:
        return str(self.details.get("price", ""))


class BudgetExceededError(PaymentError):
    """A spending cap refused the payment before anything was signed.

    ``limit`` is ``"per_call"``, ``"per_host"``, ``"total"`` or ``"window"``; ``requested`` and
    ``remaining`` are decimal strings.
    """

    @property
    def limit(self) -> str:
        return str(self.details.get("limit", ""))

    @property
    def requested(self) -> str:
        return str(self.details.get("requested", ""))

    @property
    def remaining(self) -> str:
        return str(self.details.get("remaining", ""))


class InsufficientFundsError(PaymentError):
    """The wallet cannot pay: ``required_amount``, ``balance`` and ``currency`` say by how much."""

    @property
    def required_amount(self) -> str:
        return str(self.details.get("required", ""))

    @property
    def balance(self) -> str:
        return str(self.details.get("balance", ""))

    @property
    def currency(self) -> str:
        return str(self.details.get("currency", "usd"))


class InvalidRequestError(RequestError, InvalidInputError):
    """A request that is malformed or too large."""


class BodyNotReplayableError(RequestError, InvalidInputError):
    """The request body is a one-shot stream: it cannot be sent again after paying, so the
    client refuses before paying. Pass ``content=bytes`` (or ``json=``) instead."""


class NotPaymentRequiredError(RequestError):
    """A response that is not a Vlexivo 402."""


class ConfigInvalidError(ConfigError, InvalidInputError):
    """An option that is not valid (an ``api_secret`` that is not one, a bad network, ...)."""


class ModeMismatchError(ConfigError):
    """``mode`` disagrees with the ``api_secret`` (``sk_test_`` is sandbox, ``sk_live_`` live),
    or a challenge's mode with the facilitator's."""


class PriceInvalidError(ConfigError):
    """The provider's price (static or from a resolver) is not a valid price: a provider bug."""


CATEGORY_CLASSES: dict[str, type[VlexivoError]] = {
    "amount": AmountError,
    "challenge": ChallengeError,
    "wallet": WalletError,
    "proof": ProofError,
    "payment": PaymentError,
    "facilitator": FacilitatorError,
    "nonce_store": NonceStoreError,
    "request": RequestError,
    "config": ConfigError,
    "internal": InternalError,
}

_OWN_CLASSES: dict[str, type[VlexivoError]] = {
    "challenge_malformed": ChallengeMalformedError,
    "challenge_too_large": ChallengeMalformedError,
    "wallet_key_invalid": WalletKeyError,
    "address_invalid": WalletKeyError,
    "signature_invalid": SignatureError,
    "payment_required": PaymentRequiredError,
    "token_malformed": ProofMalformedError,
    "token_too_large": ProofMalformedError,
    "token_replayed": TokenReplayedError,
    "token_underpaid": UnderpaidError,
    "token_currency": UnderpaidError,
    "budget_exceeded": BudgetExceededError,
    "insufficient_funds": InsufficientFundsError,
    "request_too_large": InvalidRequestError,
    "request_malformed": InvalidRequestError,
    "body_not_replayable": BodyNotReplayableError,
    "not_payment_required": NotPaymentRequiredError,
    "config_invalid": ConfigInvalidError,
    "mode_mismatch": ModeMismatchError,
    "price_invalid": PriceInvalidError,
}

#: The class of every code core has: its own, else its category's (from core's table).
CODE_CLASSES: dict[str, type[VlexivoError]] = {
    code: _OWN_CLASSES.get(code, CATEGORY_CLASSES.get(category, VlexivoError))
    for code, _status, category, _bad_input in _native.ERROR_TABLE
}


def error_class(code: str) -> type[VlexivoError]:
    """The class raised for ``code`` (:class:`VlexivoError` itself for a code it does not know)."""
    return CODE_CLASSES.get(code, VlexivoError)


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
        details=getattr(e, "details", None),
    )
    err._native = e  # type: ignore[attr-defined]  # reject() wants the core error back
    return err


def make_error(code: str, message: str = "") -> VlexivoError:
    """The public exception for ``code``, with core's status and message."""
    return from_native(_native.error_for(code, message))


def reraise(e: BaseException) -> NoReturn:
    raise from_native(e) from None
