"""Fields the user fills in for a trainer (Qt-free): declared by a backend's
``capabilities()["fields"]`` or by a profile's ``[fields]`` tables, in the same shape::

    {"key", "label", "kind": "file"|"folder"|"text"|"int"|"float"|"choice"|"bool", "tooltip",
     "required": bool, "choices": [...] (choice only), "default" (not for file/folder),
     "model_types": [...] (shown only for these; omitted = all), "placeholder"}

Checking the declarations, converting typed-in values to their kind, and finding required
fields left empty live here; the values end up in ``job.extra["fields"]``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Mapping

__all__ = ["FIELD_KEYS", "FIELD_KINDS", "PATH_KINDS", "FieldError", "applies_to",
           "check_field_values", "coerce_field_value", "field_spec_errors", "field_specs",
           "is_empty"]

FIELD_KINDS = ("file", "folder", "text", "int", "float", "choice", "bool")
PATH_KINDS = ("file", "folder")
FIELD_KEYS = ("label", "kind", "tooltip", "required", "choices", "default", "model_types",
              "placeholder")
_FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class FieldError:
    """One problem, named by its dotted place in a profile (``train.rank``,
    ``fields.transformer_path.kind``) or by a field key."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def field_spec_errors(key: str, spec: Any) -> list[FieldError]:
    name = f"fields.{key}"
    if not _FIELD_KEY.match(str(key)):
        return [FieldError(name, "a field key is lower-case letters, digits and _")]
    if not isinstance(spec, dict):
        return [FieldError(name, "must be a table with label, kind, tooltip and required")]
    errors = [FieldError(f"{name}.{k}", "unknown key (known: " + ", ".join(FIELD_KEYS) + ")")
              for k in spec if k not in FIELD_KEYS]
    add = lambda k, message: errors.append(FieldError(f"{name}.{k}", message))  # noqa: E731
    if not isinstance(spec.get("label"), str) or not spec.get("label", "").strip():
        add("label", "cannot be empty")
    kind = spec.get("kind", "text")
    if kind not in FIELD_KINDS:
        add("kind", f"must be one of {', '.join(FIELD_KINDS)} (got {kind!r})")
    for text_key in ("tooltip", "placeholder"):
        if text_key in spec and not isinstance(spec[text_key], str):
            add(text_key, "must be text")
    if "required" in spec and not isinstance(spec["required"], bool):
        add("required", f"must be true or false (got {spec['required']!r})")
    choices = spec.get("choices")
    if kind == "choice":
        if not isinstance(choices, list) or not choices \
                or not all(isinstance(c, str) for c in choices):
            add("choices", "a choice field needs a list of text choices")
    elif choices is not None:
        add("choices", "only a choice field has choices")
    types = spec.get("model_types")
    if types is not None and (not isinstance(types, list)
                              or not all(isinstance(t, str) for t in types)):
        add("model_types", "must be a list of model type keys")
    if "default" in spec:
        if kind in PATH_KINDS:
            add("default", "a file or folder field has no default: each user picks their "
                           "own path")
        elif kind in FIELD_KINDS:
            try:
                coerce_field_value({"key": key, "kind": kind, "choices": choices or []},
                                   spec["default"])
            except ValueError as exc:
                add("default", str(exc))
    return errors


def field_specs(tables: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``[fields]`` tables as ``capabilities()["fields"]`` entries (``key`` filled in)."""
    out = []
    for key, spec in tables.items():
        if isinstance(spec, Mapping):
            entry = {"key": key, "label": spec.get("label", key),
                     "kind": spec.get("kind", "text"), "tooltip": spec.get("tooltip", ""),
                     "required": bool(spec.get("required", False))}
            for extra in ("choices", "default", "model_types", "placeholder"):
                if extra in spec:
                    entry[extra] = copy.deepcopy(spec[extra])
            out.append(entry)
    return out


def applies_to(spec: Mapping[str, Any], model_type: str | None) -> bool:
    """Whether a field is shown for ``model_type`` (no ``model_types``: always)."""
    types = spec.get("model_types")
    return not types or not model_type or model_type in types


def coerce_field_value(spec: Mapping[str, Any], value: Any) -> Any:
    """``value`` as the field's kind wants it (text from an input box is accepted);
    ValueError naming the field when it cannot be."""
    kind, key = spec.get("kind", "text"), spec.get("key", "field")
    label = spec.get("label", key)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise ValueError(f"{label} ({key}) must be true or false (got {value!r})")
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError(f"{label} ({key}) must be a number (got {value!r})")
        try:
            number = float(value) if kind == "float" else _to_int(value)
        except (TypeError, ValueError):
            words = "a whole number" if kind == "int" else "a number"
            raise ValueError(f"{label} ({key}) must be {words} (got {value!r})") from None
        return number
    if not isinstance(value, str):
        raise ValueError(f"{label} ({key}) must be text (got {value!r})")
    if kind == "choice" and value not in (spec.get("choices") or []):
        raise ValueError(f"{label} ({key}) must be one of "
                         f"{', '.join(spec.get('choices') or [])} (got {value!r})")
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_field_values(specs: Iterable[Mapping[str, Any]], values: Mapping[str, Any],
                       model_type: str | None = None) -> list[FieldError]:
    """Problems with the values filled in for ``specs`` (those shown for ``model_type``):
    a required one left empty, or a value of the wrong kind. Each names the field key."""
    errors = []
    for spec in specs:
        if not applies_to(spec, model_type):
            continue
        key = spec["key"]
        value = values.get(key)
        if is_empty(value):
            if spec.get("required"):
                what = {"file": "choose the file", "folder": "choose the folder"}.get(
                    spec.get("kind", "text"), "fill it in")
                errors.append(FieldError(key, f"{spec.get('label', key)} is required: {what}"))
            continue
        try:
            coerce_field_value(spec, value)
        except ValueError as exc:
            errors.append(FieldError(key, str(exc)))
    return errors


