"""Whether this computer has a GPU training can use, asked once and cached.

The answer comes from ``python -m isengard_desktop.training_runtime probe`` run as a
:class:`~.runtime_helpers.HelperProcess` (torch is never imported in the GUI process). It is
cached in ``<cache>/gpu_probe.json`` for :data:`CACHE_MAX_AGE_S`, keyed by the Python that
runs trainers, so opening Training does not start PyTorch each time.

Signals:
    found(GpuStatus): the verdict (from the cache or a fresh probe); not emitted when the
        probe could not run (nothing is claimed then).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core.fsutil import atomic_write_text
from ..core.paths import AppPaths
from ..core.runtime.python import trainer_python
from ..core.selftest_report import GpuStatus, gpu_status
from .child_process import StopIntent
from .runtime_helpers import HelperOutcome, HelperProcess

__all__ = ["CACHE_MAX_AGE_S", "GpuProbe"]

CACHE_MAX_AGE_S = 24 * 3600.0
PROBE_TIMEOUT_S = 180.0
CACHE_NAME = "gpu_probe.json"


class GpuProbe(QObject):
    found = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self.status: GpuStatus | None = None
        self._child: HelperProcess | None = None

    @property
    def cache_file(self) -> Path:
        return self._paths.cache / CACHE_NAME

    def start(self) -> None:
        """Emit the cached verdict, or run the probe once (a second call while it runs or
        after it answered does nothing new)."""
        if self.status is not None:
            self.found.emit(self.status)
            return
        if self._child is not None:
            return
        cached = self._read_cache()
        if cached is not None:
            self._set(gpu_status(cached))
            return
        self._paths.logs.mkdir(parents=True, exist_ok=True)
        child = HelperProcess(["probe"], self._paths.logs / "gpu-probe.log", PROBE_TIMEOUT_S,
                              self, paths=self._paths)
        child.finished.connect(self._on_finished)
        self._child = child
        child.start()

    def stop(self) -> None:
        """Kill a probe still running (at quit)."""
        if self._child is not None:
            self._child.kill(StopIntent.SHUTDOWN, "the app is closing")
            self._child.wait()

    def _on_finished(self, outcome: HelperOutcome) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.deleteLater()
        if outcome.data is None:
            logger.warning("GPU probe failed: {}", outcome.why)
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.cache_file, json.dumps(
                {"python": self._python_key(), "time": time.time(), "probe": outcome.data}))
        except OSError as exc:
            logger.warning("could not cache the GPU probe in {}: {}", self.cache_file, exc)
        self._set(gpu_status(outcome.data))

    def _set(self, status: GpuStatus) -> None:
        self.status = status
        if not status.usable:
            logger.info("no usable GPU: {}", status.why)
        self.found.emit(status)

    def _python_key(self) -> str:
        """The cache belongs to the trainer's interpreter (a new runtime is probed anew)."""
        return str(trainer_python(self._paths).executable or "")

    def _read_cache(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("python") != self._python_key():
            return None
        age = time.time() - float(data.get("time") or 0)
        probe = data.get("probe")
        if not 0 <= age <= CACHE_MAX_AGE_S or not isinstance(probe, dict):
            return None
        return probe
