"""Training profiles: named, versioned sets of training settings stored as ``.toml`` (Qt-free).

A profile is one use of a trainer — "SDXL on a 12 GB card", "Chroma E6AI 512 with
diffusion-pipe" — and never holds anything specific to one machine. Its file::

    version = 1

    [profile]                 # what it is for
    name = "Chroma E6AI 512"
    description = "…"
    backend = "diffusion-pipe" # a trainer backend key
    family = "chroma"          # a TrainingJob family
    vram_gb = 24               # the VRAM tier it was made for (optional)
    model_type = "chroma"      # the backend's model type (optional)

    [train]                   # TrainingJob fields (same names, same rules)
    resolution = 512
    rank = 32

    [backend]                 # backend-specific options, copied to job.extra
    transformer_dtype = "float8"
    [backend.optimizer]
    type = "adamw_optimi"

    [fields.transformer_path] # what the user fills in on their machine -> job.extra["fields"]
    label = "Chroma transformer (chroma-unlocked-v47)"
    kind = "file"              # file | folder | text | int | float | choice | bool
    tooltip = "…"
    required = true

Fields have the shape of a backend's ``capabilities()["fields"]`` entries, so the Training tab
renders both the same way (:mod:`.profile_fields`). A file or folder field never carries a
value: paths are filled in by the user. Loading, checking, comparing, writing and applying
live here; the on-disk collection (shipped + user profiles, change history) is
:mod:`.profile_store`.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Callable, Iterable, Mapping

from ..fsutil import atomic_write_text
from .. import toml_text
from .profile_fields import (FieldError, applies_to,
                             check_field_values, coerce_field_value, field_spec_errors,
                             field_specs, is_empty)
from .spec import FAMILIES, SpecError, TrainingJob

__all__ = ["KNOWN_BACKENDS", "MIGRATIONS", "PROFILE_VERSION", "TRAIN_KEYS", "DiffRow", "Profile",
           "ProfileError", "apply", "diff", "dumps", "export_profile", "field_specs", "flatten",
           "import_profile", "load_profile", "loads", "save_profile", "validate"]

PROFILE_VERSION = 1
# version N -> function(raw document at version N) -> raw document at version N+1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

KNOWN_BACKENDS = ("builtin", "ai-toolkit", "diffusion-pipe", "kohya")
PROFILE_KEYS = ("name", "description", "backend", "family", "vram_gb", "model_type")
SECTIONS = ("profile", "train", "backend", "fields")
# TrainingJob fields a profile never sets: who and what is trained, where things are, and
# what the profile itself decides in [profile].
_NOT_TRAIN = ("job_id", "character_id", "character_name", "trigger_word", "family",
              "base_model", "dataset_dir", "output_name", "version", "backend", "tokenizer_dir",
              "preset", "extra")
TRAIN_KEYS = tuple(f.name for f in fields(TrainingJob) if f.name not in _NOT_TRAIN)
_TRAIN_TYPES = {f.name: str(f.type) for f in fields(TrainingJob)}
_SECRET_WORDS = ("api_key", "apikey", "token", "password", "secret")
_ABS_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


class ProfileError(ValueError):
    """A profile that cannot be read, saved or applied. ``errors`` holds the field-level
    problems; the message names the first ones."""

    def __init__(self, message: str, errors: Iterable[FieldError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


class DiffRow(NamedTuple):
    """A setting that differs between two profiles (``None`` where one lacks it)."""

    field: str
    a: Any
    b: Any


@dataclass
class Profile:
    """A training profile. ``train`` holds TrainingJob values, ``options`` the ``[backend]``
    table (goes to ``job.extra``), ``fields`` the ``[fields]`` tables by key. ``unknown``
    keeps keys this version does not know (dotted), so :func:`validate` can name them."""

    name: str
    description: str = ""
    backend: str = "builtin"
    family: str = "sdxl"
    vram_gb: float | None = None
    model_type: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown: dict[str, Any] = field(default_factory=dict)
    version: int = PROFILE_VERSION
    # where it came from (not part of its value)
    source: Path | None = field(default=None, compare=False, repr=False)
    source_text: str | None = field(default=None, compare=False, repr=False)
    shipped: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The document as written to disk (sections in a fixed order)."""
        meta: dict[str, Any] = {"name": self.name, "description": self.description,
                                "backend": self.backend, "family": self.family}
        if self.vram_gb is not None:
            meta["vram_gb"] = self.vram_gb
        if self.model_type:
            meta["model_type"] = self.model_type
        doc: dict[str, Any] = {"version": self.version, "profile": meta,
                               "train": copy.deepcopy(self.train)}
        if self.options:
            doc["backend"] = copy.deepcopy(self.options)
        if self.fields:
            doc["fields"] = copy.deepcopy(self.fields)
        for dotted, value in self.unknown.items():
            _put(doc, dotted.split("."), copy.deepcopy(value))
        return doc

    def field_specs(self) -> list[dict[str, Any]]:
        """The declared fields in the ``capabilities()["fields"]`` shape."""
        return field_specs(self.fields)

    @property
    def label(self) -> str:
        tier = f", {self.vram_gb:g} GB" if isinstance(self.vram_gb, (int, float)) else ""
        return f"{self.name} — {self.backend}{tier}"


# -- reading -----------------------------------------------------------------------------------
def loads(text: str, source: Path | None = None) -> Profile:
    """A profile from TOML text. Raises :class:`ProfileError` only when the text is not a
    profile at all (not TOML, a section that is not a table, a newer version); everything
    else is kept for :func:`validate` to report."""
    where = str(source) if source else "profile"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where}: not a valid TOML file ({exc})",
                           [FieldError("file", f"not valid TOML: {exc}")]) from exc
    profile = from_dict(doc, where)
    profile.source = source
    profile.source_text = text
    return profile


def load_profile(path: Path) -> Profile:
    """Read a profile file (see :func:`loads`); OSError if it cannot be read."""
    path = Path(path)
    return loads(path.read_text(encoding="utf-8"), source=path)


def from_dict(doc: Mapping[str, Any], where: str = "profile") -> Profile:
    """A profile from a parsed document, migrated to the current version."""
    doc = dict(doc)
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProfileError(f"{where}: version must be a whole number ≥ 1 (got {version!r})",
                           [FieldError("version", f"must be a whole number ≥ 1 "
                                                  f"(got {version!r})")])
    if version > PROFILE_VERSION:
        message = (f"profile version {version} is newer than this app understands "
                   f"({PROFILE_VERSION}); update Isengard to use it")
        raise ProfileError(f"{where}: {message}", [FieldError("version", message)])
    while version < PROFILE_VERSION:
        doc = MIGRATIONS[version](copy.deepcopy(doc))
        version += 1
        doc["version"] = version
    for name in SECTIONS:
        if name in doc and not isinstance(doc[name], dict):
            message = f"must be a table ([{name}]), not {type(doc[name]).__name__}"
            raise ProfileError(f"{where}: {name}: {message}", [FieldError(name, message)])
    meta = dict(doc.get("profile", {}))
    unknown: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in SECTIONS and key != "version":
            unknown[key] = value
    for key in list(meta):
        if key not in PROFILE_KEYS:
            unknown[f"profile.{key}"] = meta.pop(key)
    raw_fields = dict(doc.get("fields", {}))
    return Profile(name=meta.get("name", ""), description=meta.get("description", ""),
                   backend=meta.get("backend", "builtin"), family=meta.get("family", ""),
                   vram_gb=meta.get("vram_gb"), model_type=meta.get("model_type", ""),
                   train=dict(doc.get("train", {})), options=dict(doc.get("backend", {})),
                   fields=raw_fields, unknown=unknown, version=version)


# -- checking ----------------------------------------------------------------------------------
def validate(profile: Profile, backends: Iterable[str] | None = None) -> list[FieldError]:
    """Every problem with ``profile``, each naming its field. ``backends`` are the backend
    keys to accept (default: the ones Isengard knows)."""
    known_backends = tuple(backends) if backends is not None else KNOWN_BACKENDS
    errors: list[FieldError] = []
    add = lambda name, message: errors.append(FieldError(name, message))  # noqa: E731
    if profile.version != PROFILE_VERSION:
        add("version", f"must be {PROFILE_VERSION} (got {profile.version!r})")
    for dotted in profile.unknown:
        add(dotted, "unknown key: this app does not use it (check the spelling)")
    if not isinstance(profile.name, str) or not profile.name.strip():
        add("profile.name", "cannot be empty")
    elif len(profile.name) > 80:
        add("profile.name", "is longer than 80 characters")
    if not isinstance(profile.description, str):
        add("profile.description", "must be text")
    if not isinstance(profile.backend, str) or profile.backend not in known_backends:
        add("profile.backend", f"unknown trainer backend {profile.backend!r} "
                               f"(known: {', '.join(known_backends)})")
    if profile.family not in FAMILIES:
        add("profile.family", f"unknown model family {profile.family!r} "
                              f"(known: {', '.join(FAMILIES)})")
    vram = profile.vram_gb
    if vram is not None and (isinstance(vram, bool) or not isinstance(vram, (int, float))
                             or not 0 < vram <= 1024):
        add("profile.vram_gb", f"must be a number of GB between 1 and 1024 (got {vram!r})")
    if not isinstance(profile.model_type, str):
        add("profile.model_type", "must be text")
    family = profile.family if profile.family in FAMILIES else FAMILIES[0]
    for key, value in profile.train.items():
        errors.extend(_train_errors(key, value, family))
    errors.extend(_option_errors("backend", profile.options))
    for key, spec in profile.fields.items():
        errors.extend(field_spec_errors(key, spec))
    return errors


def _train_errors(key: str, value: Any, family: str) -> list[FieldError]:
    name = f"train.{key}"
    if key not in TRAIN_KEYS:
        why = ("is not a training setting a profile can hold"
               if key in _TRAIN_TYPES else "unknown training setting (check the spelling)")
        return [FieldError(name, why)]
    kind = _TRAIN_TYPES[key]
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool),
          "str": isinstance(value, str),
          "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
          }.get(kind, True)
    if not ok:
        words = {"int": "a whole number", "float": "a number", "bool": "true or false",
                 "str": "text", "list[str]": "a list of text"}.get(kind, kind)
        return [FieldError(name, f"must be {words} (got {value!r})")]
    if kind == "float" and not math.isfinite(value):
        return [FieldError(name, f"must be a finite number (got {value!r})")]
    try:  # the range rules are TrainingJob's own
        TrainingJob(job_id="profile", character_id=0, character_name="profile",
                    trigger_word="profile", family=family, base_model="", dataset_dir="",
                    output_name="profile", **{key: value}).validate()
    except SpecError as exc:
        _, _, why = str(exc).partition(": ")
        return [FieldError(name, why or str(exc))]
    return []


def _option_errors(prefix: str, value: Any) -> list[FieldError]:
    """Backend options: no secret and no path of one machine, at any depth."""
    errors: list[FieldError] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            dotted = f"{prefix}.{key}"
            lowered = str(key).lower()
            if any(word in lowered for word in _SECRET_WORDS):
                errors.append(FieldError(dotted, "secrets never go in a profile: W&B and "
                                                 "Hugging Face keys are set in Settings"))
                continue
            errors.extend(_option_errors(dotted, sub))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            errors.extend(_option_errors(f"{prefix}[{i}]", item))
    elif isinstance(value, str) and _ABS_PATH.match(value):
        errors.append(FieldError(prefix, f"{value!r} is a path on one machine: declare it "
                                         "in [fields] so each user fills it in"))
    return errors


# -- applying ----------------------------------------------------------------------------------
def apply(profile: Profile, job_defaults: Mapping[str, Any],
          field_values: Mapping[str, Any] | None = None,
          backends: Iterable[str] | None = None,
          backend_fields: Iterable[str] = ()) -> dict[str, Any]:
    """TrainingJob keyword arguments: ``job_defaults`` (e.g. ids, names, paths and the form's
    values) with the profile's backend, family and ``[train]`` values on top, and its
    ``[backend]`` options, model type and the filled-in ``field_values`` in ``extra``.
    ``backend_fields`` are the keys of the fields the backend itself declares: options of
    those names go to ``extra["fields"]`` too (where backends read their fields), unless a
    value was filled in.

    Raises :class:`ProfileError` (with field-level ``errors``) when the profile is invalid
    or a required field is not filled in.
    """
    errors = validate(profile, backends)
    if errors:
        raise ProfileError(f"The profile {profile.name!r} has problems: "
                           + "; ".join(map(str, errors[:3])), errors)
    values = dict(field_values or {})
    specs = profile.field_specs()
    missing = check_field_values(specs, values, profile.model_type or None)
    if missing:
        raise ProfileError("Fill in the profile's fields first: "
                           + "; ".join(map(str, missing)), missing)
    out = dict(job_defaults)
    for key, value in profile.train.items():
        out[key] = float(value) if _TRAIN_TYPES[key] == "float" else copy.deepcopy(value)
    out.update(backend=profile.backend, family=profile.family, preset=profile.name)
    extra = copy.deepcopy(dict(job_defaults.get("extra") or {}))
    extra.update(copy.deepcopy(profile.options))
    by_key = {s["key"]: s for s in specs}
    filled = dict(extra.get("fields") or {})
    for key, spec in by_key.items():
        if applies_to(spec, profile.model_type or None) and not is_empty(values.get(key)):
            filled[key] = coerce_field_value(spec, values[key])
        elif "default" in spec and key not in filled:
            filled[key] = copy.deepcopy(spec["default"])
    for key, value in values.items():
        if key not in by_key and not is_empty(value):
            filled[key] = value
    for key in backend_fields:
        option = profile.options.get(key)
        if key not in filled and option is not None and not isinstance(option, (dict, list)):
            filled[key] = copy.deepcopy(option)
    if filled:
        extra["fields"] = filled
    if profile.model_type:
        extra["model_type"] = profile.model_type
    extra["profile"] = profile.name
    out["extra"] = extra
    return out


# -- comparing ---------------------------------------------------------------------------------
def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values (lists are leaves)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def diff(a: Profile, b: Profile) -> list[DiffRow]:
    """The settings that differ, in file order (``a``'s order, then keys only ``b`` has)."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    keys = list(fa) + [k for k in fb if k not in fa]
    return [DiffRow(k, fa.get(k), fb.get(k)) for k in keys
            if k not in fa or k not in fb or not _same(fa[k], fb[k])]


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return x is y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return float(x) == float(y)
    return bool(x == y)


# -- writing -----------------------------------------------------------------------------------
def dumps(profile: Profile) -> str:
    """The profile as TOML (canonical layout: ``loads(dumps(p)) == p``)."""
    try:
        return toml_text.dumps(profile.to_dict())
    except TypeError as exc:
        raise ProfileError(f"cannot write the profile: {exc}") from exc


def _put(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        doc = doc.setdefault(part, {})
    doc[parts[-1]] = value


def _text_for(profile: Profile, base_text: str | None = None) -> str:
    """The profile's own text (``source_text``), else ``base_text`` (the file it replaces):
    as it is when it still says exactly this profile (comments and layout byte for byte),
    else edited to say it (tomlkit keeps the comments and key order); the canonical TOML
    when neither is there or readable."""
    for text in (profile.source_text, base_text):
        if text is None:
            continue
        try:
            if from_dict(tomllib.loads(text)) == profile:
                return text
            edited = toml_text.update(text, profile.to_dict())
            if from_dict(tomllib.loads(edited)) == profile:
                return edited
        except (tomllib.TOMLDecodeError, ProfileError, ValueError, TypeError, KeyError):
            continue
    return dumps(profile)


def save_profile(profile: Profile, path: Path, base_text: str | None = None) -> Path:
    """Write ``profile`` to ``path`` atomically (no validation; see ProfileStore.save).
    ``base_text``: the text of the file it replaces, whose comments are kept."""
    path = Path(path)
    atomic_write_text(path, _text_for(profile, base_text))
    return path


def import_profile(src: Path, backends: Iterable[str] | None = None) -> Profile:
    """Read a ``.toml`` profile from anywhere and check it; ProfileError (with the field
    errors) when it is not a valid profile."""
    try:
        profile = load_profile(src)
    except OSError as exc:
        raise ProfileError(f"Could not read {src}: {exc}",
                           [FieldError("file", str(exc))]) from exc
    errors = validate(profile, backends)
    if errors:
        raise ProfileError(f"{src} is not a valid profile: " + "; ".join(map(str, errors[:3]))
                           + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""),
                           errors)
    return profile


def export_profile(profile: Profile, dest: Path) -> Path:
    """Write ``profile`` to ``dest`` (atomic). A profile read from a file and not changed
    since is written byte for byte as it was read."""
    return save_profile(profile, dest)
