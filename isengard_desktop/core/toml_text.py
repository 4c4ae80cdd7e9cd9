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
from tomlkit.toml_document import TOMLDocument

__all__ = ["dumps", "update"]

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


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def _same(old: Any, new: Any) -> bool:
    """Equal and of the same kind (``1`` is not ``1.0`` nor ``True`` in TOML)."""
    if isinstance(old, list) and isinstance(new, (list, tuple)):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    return type(old) is type(new) and old == new


def _sync(table: Any, data: Mapping[str, Any]) -> None:
    for key in [k for k in table if k not in data]:
        del table[key]
    for key, value in data.items():
        current = table.get(key)
        if isinstance(value, Mapping) and isinstance(current, (Table, dict)) \
                and not isinstance(current, AoT):
            _sync(current, value)
        elif current is not None and _same(_plain(current), value):
            continue
        elif isinstance(value, Mapping):
            table[key] = _table(value)
        elif _is_table_array(value):
            table[key] = AoT([_table(item) for item in value])
        else:
            table[key] = _value(value)


def update(text: str, data: Mapping[str, Any]) -> str:
    """``text`` (TOML) changed to say ``data``, keeping its comments and layout: values that
    differ are replaced where they stand, keys ``data`` lacks are removed, new ones added at
    the end of their table. ``tomllib.loads(update(t, d)) == d`` for the types
    :func:`dumps` writes. Raises ValueError when ``text`` is not TOML."""
    doc: TOMLDocument = tomlkit.parse(text)
    _sync(doc, data)
    return doc.as_string()
