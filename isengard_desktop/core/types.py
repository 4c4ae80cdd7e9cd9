"""Small value types shared by core, services and UI (no Qt here)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """How far a long operation has come: the one progress value that reaches widgets.

    ``done``/``total`` count the current part (``total`` 0 means "unknown"). The optional
    fields are filled by operations that have them: a generation job says which job, server and
    ComfyUI node it is at (``done``/``total`` are then that node's steps), its ``overall``
    fraction across the whole graph, and the latest preview image (encoded bytes).
    """

    label: str
    done: int
    total: int
    detail: str = ""
    job_id: str = ""
    server: str = ""
    node: str = ""
    node_class: str = ""
    overall: float | None = None
    preview: bytes | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        """How much of the whole operation is done, 0…1."""
        if self.overall is not None:
            return self.overall
        return self.done / self.total if self.total else 0.0
