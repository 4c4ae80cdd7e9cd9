"""The trainer runtime's owner in the GUI process (install/verify/repair run as children)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ...core.paths import AppPaths
from ...core.runtime.status import RuntimeDevice, RuntimeStatus

__all__ = ["RuntimeService"]


class RuntimeService(QObject):
    """Owns ``<data>/runtime/``.

    Signals:
        status_changed(RuntimeStatus): after every state change (also at the end of a job).
        progress(Progress): during install/verify/repair (``label`` names the phase,
            ``detail`` says "312 of 2,400 MB · 24 MB/s · about 1 min left" or "package 12 of 40").
        finished(RuntimeStatus): once per install/verify/repair, when it ends (also on cancel
            and failure: the status then says what is wrong).
    """

    status_changed = Signal(object)
    progress = Signal(object)
    finished = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths

    def status(self, device: RuntimeDevice | None = None) -> RuntimeStatus:
        """The runtime's state for ``device`` (default: the chosen or installed one)."""
        raise NotImplementedError

    def install(self, device: RuntimeDevice, offline_folder: Path | None = None) -> None:
        """Create (or finish) the runtime for ``device``: online from the lock's index, or from
        an offline payload folder (verified against its manifest first, ``--no-index``)."""
        raise NotImplementedError

    def verify(self) -> None:
        """Run the runtime's own probe; ends in READY or BROKEN (``problem`` names it)."""
        raise NotImplementedError

    def repair(self) -> None:
        """Reinstall only what verify found broken."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop a running install/verify/repair; what was downloaded is kept for a retry."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop any child (at quit)."""
