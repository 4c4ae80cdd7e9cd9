"""Which Python runs trainer children, the self-test helpers and external deep checks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..paths import AppPaths

__all__ = ["PythonSource", "TrainerPython", "trainer_python"]


class PythonSource(StrEnum):
    CHECKOUT = "checkout"    # a developer checkout: the app's own interpreter has torch
    RUNTIME = "runtime"      # a ready trainer runtime under <data>/runtime/
    NONE = "none"            # nothing can train yet (``problem`` says why)


@dataclass(frozen=True)
class TrainerPython:
    """The interpreter for ``-m isengard_desktop.training_runtime`` children.

    Attributes:
        executable: its path; None when ``source`` is NONE.
        source: where it comes from.
        problem: "" when usable; else one sentence for the user (what to install).
    """

    executable: Path | None
    source: PythonSource
    problem: str = ""


def trainer_python(paths: AppPaths) -> TrainerPython:
    """The interpreter trainer children use: the app's own one on a developer checkout (not
    frozen and ``torch`` findable without importing it), else the ready runtime's. Cheap: reads
    a few small files; never starts a process."""
    raise NotImplementedError("filled in by the runtime manager (issue 12)")
