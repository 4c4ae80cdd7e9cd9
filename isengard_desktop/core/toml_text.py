"""TOML value text shared by the profile writer (``core/training/profiles.py``) and the
external-trainer config writers (``plugins/external/files.py``, ``plugins/diffusion_pipe/backend.py``).
Qt-free, torch-free."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["BARE_KEY", "toml_key", "toml_string", "toml_value"]

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (Windows paths survive; DEL escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    """``key`` bare when it may be, else quoted."""
    return key if BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any, each: Callable[[Any], str] | None = None) -> str:
    """TOML text of a bool, int, float (``nan``/``inf`` too), str or list/tuple of them.
    List items are written with ``each`` (default: this function), so a caller's own extra
    types and checks reach them; any other type is a :class:`TypeError`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join((each or toml_value)(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
