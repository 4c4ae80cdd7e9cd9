"""Small pieces of a generation job: progress (events → GenerationProgress, coalesced to
~10 a second), awaiting executor work on the loop, the trigger word, PNG sizes."""

from __future__ import annotations

import asyncio
import struct
import time
from concurrent.futures import Executor
from typing import Any
from collections.abc import Callable, Mapping

from PySide6.QtCore import QObject, QTimer

from ...core.comfy.jobs import GenerationProgress
from ...core.dataset.captions import with_trigger
from ...core.comfy.types import (NodeProgress, NodesCached, NodeStarted, PreviewImage, RunEvent,
                                RunStarted)
from ..ops import run_in_executor

__all__ = ["ProgressCoalescer", "ProgressTracker", "await_executor", "png_size",
           "with_trigger"]


def await_executor(executor: Executor, fn: Callable[[], Any]) -> asyncio.Future:
    """Run ``fn`` on ``executor`` (``ops.run_in_executor``) and await its result on the loop."""
    future = asyncio.get_event_loop().create_future()

    def ok(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def bad(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    run_in_executor(executor, fn, ok, bad)
    return future


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


class ProgressCoalescer(QObject):
    """Forwards the latest progress at most every ``interval_ms`` (the last one always)."""

    def __init__(self, emit: Callable[[GenerationProgress], None], interval_ms: int = 100,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._emit = emit
        self._interval = interval_ms
        self._pending: GenerationProgress | None = None
        self._last = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)

    def update(self, progress: GenerationProgress) -> None:
        self._pending = progress
        if self._timer.isActive():
            return
        wait = self._interval - (time.monotonic() - self._last) * 1000
        if wait <= 0:
            self.flush()
        else:
            self._timer.start(int(wait))

    def flush(self) -> None:
        self._timer.stop()
        progress, self._pending = self._pending, None
        if progress is not None:
            self._last = time.monotonic()
            self._emit(progress)

    def stop(self) -> None:
        self._timer.stop()
        self._pending = None


class ProgressTracker:
    """Turns run events into GenerationProgress values."""

    def __init__(self, job_id: str, server: str, graph: Mapping[str, Any],
                 out: Callable[[GenerationProgress], None]) -> None:
        self.job_id, self.server, self.graph, self.out = job_id, server, graph, out
        self.cached: set[str] = set()
        self.started: list[str] = []
        self.node = self.node_class = ""
        self.step = self.total = 0
        self.preview: bytes | None = None

    def fraction(self) -> float:
        nodes = max(1, len(self.graph) - len(self.cached))
        done = max(0, len(self.started) - 1)
        current = self.step / self.total if self.total else 0.0
        return max(0.0, min(1.0, (done + current) / nodes))

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            pass
        elif isinstance(event, NodesCached):
            self.cached.update(event.nodes)
        elif isinstance(event, NodeStarted):
            if event.node not in self.started:
                self.started.append(event.node)
            self.node, self.node_class = event.node, event.class_type
            self.step = self.total = 0
        elif isinstance(event, NodeProgress):
            self.node = event.node
            self.step, self.total = int(event.value), int(event.max)
        elif isinstance(event, PreviewImage):
            self.preview = event.data
        else:
            return
        self.out(GenerationProgress(self.job_id, self.server, self.node, self.node_class,
                                    self.step, self.total, self.fraction(), self.preview))
