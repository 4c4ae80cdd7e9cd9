"""Trainer processes left running by an earlier app instance ("orphans"), for the training service.

A job found ``running`` at start whose process is still alive has no QProcess here: its pid
(also its process group id) is watched once a second until it is gone, and it can be stopped
through its process group (SIGTERM, then SIGKILL after a grace). What the job's record
becomes is the service's business.

Signals:
    ended(str): the process of this job id is gone (it is no longer watched).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from ..process_group import end_tree, pid_alive

__all__ = ["OrphanWatcher"]


class OrphanWatcher(QObject):
    """Job id -> pid of an earlier app's trainer, watched until each process ends."""

    ended = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pids: dict[str, int] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._check)

    def watch(self, job_id: str, pid: int) -> None:
        """Watch ``pid`` for ``job_id`` (call :meth:`start` once they are all added)."""
        self._pids[job_id] = pid

    def start(self) -> None:
        """Check once a second while anything is watched."""
        if self._pids:
            self._timer.start()

    def stop(self) -> None:
        """Stop checking (app quit); the processes are left alone."""
        self._timer.stop()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._pids

    def __len__(self) -> int:
        return len(self._pids)

    def terminate(self, job_id: str, kill_grace_s: float) -> None:
        """SIGTERM the job's process group; SIGKILL it ``kill_grace_s`` later if still there
        (Windows: the process and its descendants are ended, see :func:`end_tree`)."""
        pid = self._pids.get(job_id)
        if pid is None:
            return
        end_tree(pid, force=False)

        def kill() -> None:
            if pid_alive(pid, job_id):
                end_tree(pid, force=True)

        QTimer.singleShot(int(kill_grace_s * 1000), kill)

    def _check(self) -> None:
        for job_id, pid in list(self._pids.items()):
            if pid_alive(pid, job_id):
                continue
            del self._pids[job_id]
            self.ended.emit(job_id)
        if not self._pids:
            self._timer.stop()
