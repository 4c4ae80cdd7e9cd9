"""TOML writing for every TOML file the app makes: training profiles
(``core/training/profiles.py``) and the external trainers' configs (``plugins/external/files.py``,
``plugins/diffusion_pipe/backend.py``). Written with tomlkit (strings escaped as TOML basic
strings, so Windows paths survive; key order kept); read with the stdlib's ``tomllib``.
Qt-free, torch-free.

Layout: ``header`` lines as ``#`` comments and a blank line, then a table's plain values in
order, then its tables (``[name]``, each after a blank line; a table holding only tables
gets no header line of its own) and arrays of tables (``[[name]]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

__all__ = ["dumps"]

_SCALARS = (bool, int, float, str, datetime, date, time)


def _is_table_array(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and bool(value)
            and all(isinstance(v, Mapping) for v in value))


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or _is_table_array(value)


def _value(value: Any) -> Any:
    """A plain TOML value (scalar, array, inline table) as tomlkit should write it."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        for key, item in value.items():
            inline[str(key)] = _value(item)
        return inline
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _fill(table: Any, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if not _is_table(value):
            table.add(str(key), _value(value))
    for key, value in data.items():
        if isinstance(value, Mapping):
            table.add(str(key), _table(value))
        elif _is_table_array(value):
            table.add(str(key), AoT([_table(item) for item in value]))


def _table(data: Mapping[str, Any]) -> Table:
    only_tables = bool(data) and all(_is_table(v) for v in data.values())
    table = tomlkit.table(is_super_table=only_tables)
    _fill(table, data)
    return table


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """TOML text of ``data``: bool, int, float (``nan``/``inf`` too), str, date/time, lists,
    tables (dicts) and arrays of tables (lists of dicts), with ``header`` on top as comments.
    Any other type is a :class:`TypeError`."""
    doc = tomlkit.document()
    for line in header.splitlines():
        doc.add(tomlkit.comment(line))
    if header:
        doc.add(tomlkit.nl())
    _fill(doc, data)
    return doc.as_string()
