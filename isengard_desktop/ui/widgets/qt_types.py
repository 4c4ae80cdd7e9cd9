"""Type aliases for Qt signatures that PySide6's stubs spell long."""

from __future__ import annotations

from typing import TypeAlias

from PySide6.QtCore import QModelIndex, QPersistentModelIndex

__all__ = ["ModelIndex"]

# What Qt passes to model and delegate overrides (rowCount, data, flags, sizeHint, paint).
ModelIndex: TypeAlias = QModelIndex | QPersistentModelIndex
