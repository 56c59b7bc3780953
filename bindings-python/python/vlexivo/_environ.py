"""The environment variables Vlexivo reads, by core's table (``VLX_*`` names, the older
``VLEXIVO_*`` ones as aliases)."""

from __future__ import annotations

import os

from . import _native
from .errors import NATIVE_ERRORS, from_native


def env(name: str) -> str | None:
    """The value of ``name`` or of an older alias; ``None`` when unset. Both set to different
    values raises ``ConfigError`` (``config_invalid``)."""
    try:
        return _native.env_var(name, os.environ)
    except NATIVE_ERRORS as e:
        raise from_native(e) from None
