"""Environment names: the SDK reads core's ``VLX_*`` names, and the older ``VLEXIVO_*`` ones when
those are unset; both set to different values is a ``ConfigError``."""

from __future__ import annotations

import pytest
from vlexivo import ConfigError, VlexivoClient, VlexivoServer, Wallet

SECRET = "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"
OTHER = "sk_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "VLX_SECRET_KEY",
        "VLEXIVO_API_SECRET",
        "VLX_WALLET_KEY",
        "VLEXIVO_WALLET_KEY",
        "VLX_FACILITATOR_URL",
        "VLEXIVO_FACILITATOR_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_new_names_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLX_SECRET_KEY", SECRET)
    monkeypatch.setenv("VLEXIVO_FACILITATOR_URL", "http://127.0.0.1:4999")
    vlx = VlexivoServer()
    assert vlx.account.startswith("acct_")
    assert vlx.facilitator_url == "http://127.0.0.1:4999"
    monkeypatch.setenv("VLX_FACILITATOR_URL", "http://127.0.0.1:4998")
    monkeypatch.delenv("VLEXIVO_FACILITATOR_URL")
    assert VlexivoServer().facilitator_url == "http://127.0.0.1:4998"

    monkeypatch.delenv("VLX_SECRET_KEY")
    monkeypatch.setenv("VLEXIVO_API_SECRET", SECRET)
    assert VlexivoServer().account == vlx.account

    wallet = Wallet.generate()
    monkeypatch.setenv("VLEXIVO_WALLET_KEY", wallet.private_key_hex())
    assert VlexivoClient().address == wallet.address


def test_conflicting_names_are_refused_without_their_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLX_SECRET_KEY", SECRET)
    monkeypatch.setenv("VLEXIVO_API_SECRET", OTHER)
    with pytest.raises(ConfigError) as e:
        VlexivoServer()
    assert e.value.code == "config_invalid"
    assert "VLX_SECRET_KEY" in str(e.value) and "VLEXIVO_API_SECRET" in str(e.value)
    assert SECRET not in str(e.value) and OTHER not in str(e.value)
