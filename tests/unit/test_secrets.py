"""SecretStore: OS keyring wrapper, unavailable keyrings, masking, child env, no leaks."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringLocked
from loguru import logger

from isengard_desktop.core import logging as applog
from tests.helpers.keyring import MemoryKeyring
from isengard_desktop.core.logging import REDACTED, redact, setup_logging, shutdown_logging
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.secrets import (
    SECRETS, SERVICE, KeyringUnavailable, SecretStore, SecretStoreError, install_hint, spec_for,
)

HF = "hf_" + "Qw3rTy8uIoPaSdFgHjKl9f2c"
WANDB = "a" * 36 + "beef"


class LockedKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("the collection is locked")


class EmptyChainer(chainer.ChainerBackend):
    backends: list = []


class FakeAltPlaintext(MemoryKeyring):
    """Looks like keyrings.alt's plaintext file backend."""


FakeAltPlaintext.__module__ = "keyrings.alt.file"


class ChainerWithAlt(chainer.ChainerBackend):
    backends = [MemoryKeyring(), FakeAltPlaintext()]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path))
    yield
    shutdown_logging()
    applog._clear_redaction_values()


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def test_specs_cover_the_three_services() -> None:
    assert [s.key for s in SECRETS] == ["wandb_api_key", "hf_token", "civitai_token"]
    assert spec_for("hf_token").label == "Hugging Face token"
    assert all(s.help and s.env for s in SECRETS)
    with pytest.raises(ValueError, match="known secrets"):
        spec_for("nope")


def test_set_get_replace_clear(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()                    # picks up keyring.get_keyring()
    assert store.available() == (True, "")
    assert not store.is_set("hf_token")
    assert store.get("hf_token") is None

    store.set("hf_token", f"  {HF}\n")       # whitespace stripped
    assert memory_keyring.store[(SERVICE, "hf_token")] == HF
    assert store.is_set("hf_token")
    assert store.get("hf_token") == HF

    store.set("hf_token", "hf_" + "Replaced0123456789abcdXYZ1")
    assert store.get("hf_token") == "hf_Replaced0123456789abcdXYZ1"

    store.clear("hf_token")
    assert not store.is_set("hf_token")
    assert (SERVICE, "hf_token") not in memory_keyring.store
    store.clear("hf_token")                  # clearing again is fine


def test_empty_value_is_refused(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    with pytest.raises(ValueError, match="empty"):
        store.set("civitai_token", "   ")
    assert memory_keyring.store == {}


def test_masked_shows_at_most_prefix_and_suffix(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    assert store.masked("hf_token") == ""
    store.set("hf_token", HF)
    assert store.masked("hf_token") == "hf_…9f2c"
    store.set("wandb_api_key", WANDB)
    assert store.masked("wandb_api_key") == "aaa…beef"
    store.set("civitai_token", "short1234")
    assert store.masked("civitai_token") == "••••"


def test_env_for_child_only_has_set_secrets(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    assert store.env_for_child() == {}
    store.set("hf_token", HF)
    store.set("wandb_api_key", WANDB)
    assert store.env_for_child() == {"HF_TOKEN": HF, "WANDB_API_KEY": WANDB}


def test_stored_and_read_values_are_redacted_from_logs(memory_keyring: MemoryKeyring) -> None:
    odd = "plain-looking-civitai-value-42"
    assert redact(f"x {odd}") == f"x {odd}"
    SecretStore().set("civitai_token", odd)
    assert redact(f"x {odd}") == f"x {REDACTED}"

    applog._clear_redaction_values()
    memory_keyring.store[(SERVICE, "wandb_api_key")] = "set-elsewhere-value-77"
    SecretStore().get("wandb_api_key")       # reading registers it too
    assert redact("set-elsewhere-value-77") == REDACTED


def test_secret_is_never_logged_or_written(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    paths = resolve_paths().ensure()
    setup_logging(paths, level="DEBUG")
    store = SecretStore()
    store.set("hf_token", HF)
    store.clear("hf_token")
    logger.info("done")
    log_text = "".join(f.read_text(encoding="utf-8") for f in paths.app_logs.glob("*.jsonl"))
    assert "Hugging Face token" in log_text  # the action is logged ...
    assert HF not in log_text                # ... the value is not
    assert not _files_containing(tmp_path, HF)


def _files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.parametrize("backend, reason_part", [
    (fail.Keyring(), "found no keyring backend"),
    (null.Keyring(), "null"),
    (EmptyChainer(), "found no keyring backend"),
    (FakeAltPlaintext(), "keyrings.alt"),
    (ChainerWithAlt(), "keyrings.alt"),
    (LockedKeyring(), "locked"),
])
def test_unusable_backends_are_unavailable(backend: KeyringBackend, reason_part: str) -> None:
    ok, reason = SecretStore(backend).available()
    assert ok is False
    assert reason_part in reason


def test_unavailable_keyring_stores_nothing(tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        paths = resolve_paths().ensure()
        setup_logging(paths, level="DEBUG")
        store = SecretStore()
        ok, reason = store.available()
        assert not ok and reason
        with pytest.raises(KeyringUnavailable) as info:
            store.set("hf_token", HF)
        message = str(info.value)
        assert "No OS keyring is available" in message
        assert "nothing was stored" in message
        assert install_hint() in message
        with pytest.raises(KeyringUnavailable):
            store.clear("hf_token")
        assert isinstance(info.value, SecretStoreError)
        assert store.get("hf_token") is None
        assert not store.is_set("hf_token")
        assert store.masked("hf_token") == ""
        assert store.env_for_child() == {}
        logger.opt(exception=info.value).warning("set failed: {}", info.value)
    finally:
        keyring.set_keyring(previous)
    assert not _files_containing(tmp_path, HF)


def test_install_hint_names_what_to_install() -> None:
    linux = install_hint("linux")
    assert "Secret Service" in linux and "GNOME Keyring" in linux and "KWallet" in linux
    assert "Keychain" in install_hint("darwin")
    assert "Credential Manager" in install_hint("win32")


def test_fake_alt_backend_never_receives_the_secret() -> None:
    backend = FakeAltPlaintext()
    with pytest.raises(KeyringUnavailable, match="keyrings.alt"):
        SecretStore(backend).set("hf_token", HF)
    assert backend.store == {}


def test_server_upload_tokens_are_per_server_and_redacted():
    backend = MemoryKeyring()
    store = SecretStore(backend)
    a, b = "http://10.0.0.5:8188", "https://gpu.example.org"
    assert store.server_token(a) is None
    store.set_server_token(a + "/", "tok-aaaaaaaaaaaa")
    store.set_server_token(b, "  tok-bbbbbbbbbbbb  ")
    assert store.server_token(a) == "tok-aaaaaaaaaaaa"      # trailing slash is the same server
    assert store.server_token(b) == "tok-bbbbbbbbbbbb"
    assert redact("token tok-aaaaaaaaaaaa here") == f"token {REDACTED} here"
    store.set_server_token(a, "")                           # empty removes it
    assert store.server_token(a) is None and store.server_token(b) == "tok-bbbbbbbbbbbb"
    store.clear_server_token(b)
    store.clear_server_token(b)                             # twice is fine
    assert store.server_token(b) is None
    assert store.env_for_child() == {}                      # never passed to children


def test_server_token_without_keyring_is_refused_and_reads_none():
    store = SecretStore(fail.Keyring())
    assert store.server_token("http://x:1") is None
    with pytest.raises(KeyringUnavailable):
        store.set_server_token("http://x:1", "tok")
