"""Small value types shared by core, services and UI (no Qt here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """How far a long operation has come. ``total`` 0 means "unknown"."""

    label: str
    done: int
    total: int
    detail: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0
