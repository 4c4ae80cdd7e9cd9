"""User settings: a versioned JSON file (``paths.settings_file``).

* A missing file gives the defaults.
* A file that cannot be read as settings is never lost: it is renamed to
  ``settings.json.corrupt-<timestamp>`` next to the original, a warning is logged, and the
  defaults are used.
* Older files are upgraded step by step by :data:`MIGRATIONS` (``{from_version: function}``,
  each turning the raw dict of version N into version N+1).
* A file from a newer app version is read for the fields we know, and a copy is kept as
  ``settings.json.v<N>-<timestamp>`` before anything could overwrite it.
* Secrets never live here (see :mod:`isengard_desktop.core.secrets`).

This module is Qt-free.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from isengard_desktop.core.fsutil import atomic_copy, atomic_write_text
from isengard_desktop.core.training.installs import TRAINER_KINDS

__all__ = ["MIGRATIONS", "SETTINGS_VERSION", "Settings", "load_settings", "save_settings",
           "valid_ollama_model", "valid_ollama_url"]

SETTINGS_VERSION = 1

THEMES = ("dark", "light")
# "" (automatic) or a RuntimeDevice value; spelled out so settings never imports core.runtime
DEVICE_OVERRIDES = ("", "cu130", "cu126", "rocm", "mps", "cpu")

# version N -> function(raw dict at version N) -> raw dict at version N+1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass
class Settings:
    """Everything the user can choose that is not a secret."""

    version: int = SETTINGS_VERSION
    model_folders: list[str] = field(default_factory=list)
    comfyui_models_folder: str = ""
    comfyui_folder: str = ""
    comfyui_python: str = ""
    remote_servers: list[str] = field(default_factory=list)
    theme: str = "dark"
    # external trainers: "ai-toolkit" | "diffusion-pipe" | "kohya" -> {"folder", "python"}
    trainer_installs: dict[str, dict[str, str]] = field(default_factory=dict)
    # the first-run wizard was finished or skipped once (Help → Set-up assistant reopens it);
    # an older file without it shows the wizard once, which also finds a missing runtime
    wizard_completed: bool = False
    # which trainer-runtime build to install: "" = automatic (GPU detection chooses), else a
    # RuntimeDevice value ("cu130", "cu126", "rocm", "mps", "cpu")
    runtime_device_override: str = ""
    # local prompt refinement (optional): the Ollama server (loopback by default) and model
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_model: str = "llama3.2"
    # ComfyUI server tiers: server key ("local", "gpu<index>", a remote URL) -> "final" |
    # "standard" | "draft"; a server not listed gets the default from the cards
    # (core.comfy.tiers.default_tiers)
    server_tiers: dict[str, str] = field(default_factory=dict)
    # the Generate tab's draft funnel ("Explore"): drafts made, then kept for the standard
    # and the final stage (core/comfy/funnel.py FunnelSizes clamps them)
    funnel_drafts: int = 20
    funnel_standard: int = 8
    funnel_final: int = 3


def valid_ollama_url(value: str) -> bool:
    """An http(s) address with a host (``http://127.0.0.1:11434``)."""
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def valid_ollama_model(value: str) -> bool:
    """An Ollama model name: ``name`` or ``name:tag`` (``namespace/name`` too), no spaces."""
    return re.fullmatch(r"[A-Za-z0-9][\w.\-/]*(:[\w.\-]+)?", value.strip()) is not None


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _set_aside(path: Path, suffix: str) -> Path:
    """Rename ``path`` to ``<name>.<suffix>-<timestamp>`` (unique) and return the new path."""
    base = path.with_name(f"{path.name}.{suffix}-{_timestamp()}")
    target, n = base, 1
    while target.exists():
        target = base.with_name(f"{base.name}-{n}")
        n += 1
    path.replace(target)
    return target


def _migrate(data: dict[str, Any], version: int) -> dict[str, Any]:
    while version < SETTINGS_VERSION:
        step = MIGRATIONS.get(version)
        if step is not None:
            data = step(dict(data))
        logger.info("Settings migrated from version {} to {}", version, version + 1)
        version += 1
        data["version"] = version
    return data


_INSTALL_KEYS = ("folder", "python")


def _trainer_installs(value: Any, path: Path) -> dict[str, dict[str, str]] | None:
    """The usable entries of ``trainer_installs``; bad entries are logged and dropped.
    None when the value is not an object at all."""
    if not isinstance(value, dict):
        return None
    out: dict[str, dict[str, str]] = {}
    for kind, entry in value.items():
        if kind not in TRAINER_KINDS:
            logger.warning("Settings file {}: trainer_installs has an unknown trainer {!r} "
                           "(known: {}); it is ignored", path, kind, ", ".join(TRAINER_KINDS))
            continue
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k, ""), str) for k in _INSTALL_KEYS):
            logger.warning("Settings file {}: trainer_installs[{!r}] must be an object with "
                           "text 'folder' and 'python' (got {!r}); it is ignored", path, kind,
                           entry)
            continue
        extra = sorted(set(entry) - set(_INSTALL_KEYS))
        if extra:
            logger.warning("Settings file {}: trainer_installs[{!r}] has unknown keys {}; "
                           "they are ignored", path, kind, extra)
        out[kind] = {k: entry.get(k, "").strip() for k in _INSTALL_KEYS}
    return out


def _server_tiers(value: Any, path: Path) -> dict[str, str]:
    """The usable entries of ``server_tiers`` (text key -> a known tier); others are logged
    and dropped."""
    from isengard_desktop.core.comfy.tiers import SERVER_TIERS

    if not isinstance(value, dict):
        logger.warning("Settings file {}: server_tiers must be an object (server -> tier), "
                       "not {!r}; the tiers of the cards are used", path, value)
        return {}
    out: dict[str, str] = {}
    for key, tier in value.items():
        if isinstance(key, str) and key and tier in SERVER_TIERS:
            out[key] = tier
        else:
            logger.warning("Settings file {}: server_tiers[{!r}] = {!r} is not one of {}; "
                           "it is ignored", path, key, tier, ", ".join(SERVER_TIERS))
    return out


def _from_dict(data: dict[str, Any], path: Path) -> Settings:
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "version" or f.name not in data:
            continue
        value = data[f.name]
        if f.name == "trainer_installs":
            installs = _trainer_installs(value, path)
            if installs is None:
                logger.warning("Settings file {}: field {!r} has an unusable value {!r}; "
                               "using the default {!r}", path, f.name, value, {})
            else:
                values[f.name] = installs
            continue
        if f.name == "server_tiers":
            values[f.name] = _server_tiers(value, path)
            continue
        default = getattr(defaults, f.name)
        if isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, type(default))
        if f.name == "theme" and ok and value not in THEMES:
            ok = False
        if f.name == "runtime_device_override" and ok and value not in DEVICE_OVERRIDES:
            ok = False
        if f.name == "ollama_url" and ok and not valid_ollama_url(value):
            ok = False
        if f.name == "ollama_model" and ok and not valid_ollama_model(value):
            ok = False
        if not ok:
            logger.warning("Settings file {}: field {!r} has an unusable value {!r}; "
                           "using the default {!r}", path, f.name, value, default)
            continue
        values[f.name] = list(value) if isinstance(value, list) else value
    return Settings(version=SETTINGS_VERSION, **values)


def load_settings(path: Path) -> Settings:
    """Read settings from ``path``; see the module docstring for missing, corrupt, old files."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings()

    problem = None
    data: Any = None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"it is not valid JSON ({exc})"
    else:
        if not isinstance(data, dict):
            problem = f"it holds a JSON {type(data).__name__}, not an object"
        elif not isinstance(data.get("version", SETTINGS_VERSION), int) or isinstance(
                data.get("version"), bool):
            problem = f"its version {data.get('version')!r} is not a number"
    if problem is not None:
        kept = _set_aside(path, "corrupt")
        logger.warning("Settings file {} could not be read because {}. It was kept as {} and "
                       "default settings are used; fix or delete that copy as you like.",
                       path, problem, kept.name)
        return Settings()

    version = data.get("version", SETTINGS_VERSION)
    if version > SETTINGS_VERSION:
        backup = path.with_name(f"{path.name}.v{version}-{_timestamp()}")
        atomic_copy(path, backup)
        logger.warning("Settings file {} was written by a newer Isengard (settings version {}, "
                       "this one knows {}). Known fields are used; a copy was kept as {}.",
                       path, version, SETTINGS_VERSION, backup.name)
    elif version < SETTINGS_VERSION:
        try:
            data = _migrate(data, version)
        except Exception:
            kept = _set_aside(path, "corrupt")
            logger.exception("Settings file {} (version {}) could not be upgraded. It was kept "
                             "as {} and default settings are used.", path, version, kept.name)
            return Settings()
    return _from_dict(data, path)


def save_settings(path: Path, s: Settings) -> None:
    """Write ``s`` to ``path`` atomically as pretty JSON, with the current version."""
    data = asdict(s)
    data["version"] = SETTINGS_VERSION
    atomic_write_text(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")
