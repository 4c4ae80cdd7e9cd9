"""API keys and tokens, kept in the operating system's keyring and nowhere else.

Secrets are never written to a file by the app and never logged: every value that is stored or
read is registered with :func:`isengard_desktop.core.logging.add_redaction_value`, so even an
exception that echoes it is masked in the logs. Child processes receive them only through
environment variables (:meth:`SecretStore.env_for_child`).

A plaintext or "null" keyring is treated as no keyring at all: nothing is stored silently in a
file on disk. This module is Qt-free.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import keyring
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError, PasswordDeleteError
from loguru import logger

from isengard_desktop.core.logging import add_redaction_value

__all__ = [
    "SECRETS", "SERVER_TOKEN_PREFIX", "SERVICE", "KeyringUnavailable", "SecretSpec", "SecretStore", "SecretStoreError",
    "install_hint", "spec_for",
]

SERVICE = "isengard-desktop"
SERVER_TOKEN_PREFIX = "comfyui_upload_token:"
_PROBE_USER = "__isengard_probe__"
_MASK = "••••"


@dataclass(frozen=True)
class SecretSpec:
    """One secret the app knows about: its keyring key, a label, help text and child env name."""

    key: str
    label: str
    help: str
    env: str


SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec(
        key="wandb_api_key",
        label="Weights & Biases API key",
        help=("Optional. Lets training runs report to Weights & Biases. Copy it from "
              "https://wandb.ai/authorize (User settings → API keys). Trainers receive it as "
              "WANDB_API_KEY."),
        env="WANDB_API_KEY",
    ),
    SecretSpec(
        key="hf_token",
        label="Hugging Face token",
        help=("Needed to download gated base models (for example FLUX.1-dev) from Hugging Face. "
              "Create a read token at https://huggingface.co/settings/tokens and accept the "
              "model's licence on its page. Child processes receive it as HF_TOKEN."),
        env="HF_TOKEN",
    ),
    SecretSpec(
        key="civitai_token",
        label="Civitai API token",
        help=("Needed to download some models from Civitai. Create one at "
              "https://civitai.com/user/account (API Keys). Child processes receive it as "
              "CIVITAI_TOKEN."),
        env="CIVITAI_TOKEN",
    ),
)

_BY_KEY = {spec.key: spec for spec in SECRETS}


def spec_for(key: str) -> SecretSpec:
    """The :class:`SecretSpec` for ``key``; ValueError names the known keys otherwise."""
    try:
        return _BY_KEY[key]
    except KeyError:
        known = ", ".join(_BY_KEY)
        raise ValueError(f"Unknown secret {key!r}; known secrets: {known}.") from None


def install_hint(platform: str | None = None) -> str:
    """What to install so that an OS keyring exists on this platform."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux") or "bsd" in platform:
        return ("On Linux, install and start a Secret Service provider such as GNOME Keyring "
                "(package gnome-keyring) or KWallet, make sure it is unlocked in your desktop "
                "session, then restart Isengard.")
    if platform == "darwin":
        return ("On macOS the login Keychain is used; make sure it is unlocked, then restart "
                "Isengard.")
    if platform.startswith("win"):
        return ("On Windows the Credential Manager is used; make sure you are logged in to a "
                "normal user session, then restart Isengard.")
    return ("Install a system keyring supported by the Python 'keyring' package, then restart "
            "Isengard.")


class SecretStoreError(Exception):
    """The keyring refused an operation (locked, denied, backend error). The message says what."""


class KeyringUnavailable(SecretStoreError):
    """No usable OS keyring: nothing was stored. The message says why and what to install."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"No OS keyring is available, so nothing was stored or changed. {reason} "
            f"{install_hint()}")


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _unusable_reason(backend: Any) -> str | None:
    """Why ``backend`` must not be used, or None if it looks like a real OS keyring."""
    module = type(backend).__module__
    if module.startswith("keyrings.alt"):
        return (f"The active keyring is {_backend_name(backend)} from the 'keyrings.alt' package, "
                "which keeps secrets in a file on disk; Isengard does not store keys there. "
                "Uninstall keyrings.alt or select a system keyring.")
    if isinstance(backend, fail.Keyring):
        return "The Python 'keyring' package found no keyring backend on this system."
    if isinstance(backend, null.Keyring):
        return "The keyring is configured as the 'null' backend, which throws every secret away."
    if isinstance(backend, chainer.ChainerBackend):
        members = list(getattr(backend, "backends", []) or [])
        if not members:
            return "The Python 'keyring' package found no keyring backend on this system."
        for member in members:
            reason = _unusable_reason(member)
            if reason is not None:
                return reason
    return None


class SecretStore:
    """Read, write and clear the app's secrets in the OS keyring (service ``isengard-desktop``)."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = backend if backend is not None else keyring.get_keyring()
        self._availability: tuple[bool, str] | None = None

    @property
    def backend_name(self) -> str:
        return _backend_name(self._backend)

    # -- availability -------------------------------------------------------------------------

    def available(self, *, refresh: bool = False) -> tuple[bool, str]:
        """``(True, "")`` when a real OS keyring answers, else ``(False, reason)``.

        The first call probes the keyring with one read; the answer is kept (``refresh=True``
        probes again).
        """
        if self._availability is None or refresh:
            self._availability = self._probe()
        return self._availability

    def _probe(self) -> tuple[bool, str]:
        reason = _unusable_reason(self._backend)
        if reason is not None:
            return False, reason
        try:
            self._backend.get_password(SERVICE, _PROBE_USER)
        except KeyringError as exc:
            return False, f"The keyring ({self.backend_name}) did not answer: {exc}"
        except Exception as exc:  # a backend failing in its own way (D-Bus, locked, ...)
            return False, (f"The keyring ({self.backend_name}) failed: "
                           f"{type(exc).__name__}: {exc}")
        return True, ""

    def _require(self) -> None:
        ok, reason = self.available()
        if not ok:
            raise KeyringUnavailable(reason)

    # -- operations ---------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The stored value, or None when it is not set or no keyring is available."""
        spec = spec_for(key)
        if not self.available()[0]:
            return None
        try:
            value = self._backend.get_password(SERVICE, spec.key)
        except KeyringError as exc:
            raise SecretStoreError(
                f"Could not read the {spec.label} from the keyring: {exc}") from exc
        if value:
            add_redaction_value(value)
            return value
        return None

    def is_set(self, key: str) -> bool:
        return self.get(key) is not None

    def set(self, key: str, value: str) -> None:
        """Store (or replace) a secret. Surrounding whitespace is stripped.

        Raises ValueError for an empty value, :class:`KeyringUnavailable` when there is no
        usable keyring (nothing is stored anywhere), :class:`SecretStoreError` when the keyring
        refuses.
        """
        spec = spec_for(key)
        value = (value or "").strip()
        if not value:
            raise ValueError(f"The {spec.label} is empty; paste the value before saving.")
        add_redaction_value(value)
        self._require()
        try:
            self._backend.set_password(SERVICE, spec.key, value)
        except KeyringError as exc:
            raise SecretStoreError(f"The keyring refused to store the {spec.label}: {exc}") from exc
        logger.info("Stored the {} in the OS keyring", spec.label)

    def clear(self, key: str) -> None:
        """Remove a secret; nothing happens when it is not set."""
        spec = spec_for(key)
        self._require()
        try:
            self._backend.delete_password(SERVICE, spec.key)
        except PasswordDeleteError:
            return
        except KeyringError as exc:
            raise SecretStoreError(
                f"The keyring refused to remove the {spec.label}: {exc}") from exc
        logger.info("Removed the {} from the OS keyring", spec.label)

    def masked(self, key: str) -> str:
        """A recognisable but safe form, e.g. ``hf_…9f2c``; ``""`` when not set.

        At most the first 3 and last 4 characters are shown, and only when at least 5 stay
        hidden; shorter secrets are shown as ``••••``.
        """
        value = self.get(key)
        if value is None:
            return ""
        if len(value) < 12:
            return _MASK
        return f"{value[:3]}…{value[-4:]}"

    # -- per-server tokens ------------------------------------------------------------------
    # The LoRA upload token of a remote ComfyUI (our isengard_lora_upload node), one per
    # server URL, under the keyring user ``comfyui_upload_token:<url>``. Never sent to children.

    @staticmethod
    def _server_user(url: str) -> str:
        return f"{SERVER_TOKEN_PREFIX}{url.strip().rstrip('/')}"

    def server_token(self, url: str) -> str | None:
        """The upload token stored for ComfyUI server ``url``; None when unset or no keyring."""
        if not self.available()[0]:
            return None
        try:
            value = self._backend.get_password(SERVICE, self._server_user(url))
        except KeyringError as exc:
            raise SecretStoreError(
                f"Could not read the upload token of {url} from the keyring: {exc}") from exc
        if value:
            add_redaction_value(value)
            return value
        return None

    def set_server_token(self, url: str, value: str) -> None:
        """Store (or replace) the upload token of ComfyUI server ``url``; an empty value
        removes it. Raises like :meth:`set`."""
        value = (value or "").strip()
        if not value:
            self.clear_server_token(url)
            return
        add_redaction_value(value)
        self._require()
        try:
            self._backend.set_password(SERVICE, self._server_user(url), value)
        except KeyringError as exc:
            raise SecretStoreError(
                f"The keyring refused to store the upload token of {url}: {exc}") from exc
        logger.info("Stored the upload token of ComfyUI server {} in the OS keyring", url)

    def clear_server_token(self, url: str) -> None:
        """Remove the upload token of ComfyUI server ``url`` (nothing happens when unset)."""
        self._require()
        try:
            self._backend.delete_password(SERVICE, self._server_user(url))
        except PasswordDeleteError:
            return
        except KeyringError as exc:
            raise SecretStoreError(
                f"The keyring refused to remove the upload token of {url}: {exc}") from exc

    def env_for_child(self) -> dict[str, str]:
        """Environment variables for a child process, only for secrets that are set."""
        env: dict[str, str] = {}
        for spec in SECRETS:
            value = self.get(spec.key)
            if value is not None:
                env[spec.env] = value
        return env
