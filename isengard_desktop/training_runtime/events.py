"""The trainer child's protocol channel: JSON event lines on the real stdout, nothing else.

:func:`claim_stdout` keeps a private handle on file descriptor 1 for protocol lines and points
fd 1 and ``sys.stdout`` at stderr, so a stray ``print``, a tqdm bar or a library warning lands
in the log and can never corrupt the event stream. Imports nothing heavy (no torch): the
first event goes out before the ML libraries load.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from typing import TextIO

from ..core.training.protocol import (CheckpointEvent, DoneEvent, Event, LogEvent, PhaseEvent,
                                      SampleEvent, StepEvent, StoppedEvent, event_line)

log = logging.getLogger("isengard.trainer")


class Emitter:
    """Writes protocol events, one flushed line each (thread-safe)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._broken = False

    def emit(self, event: Event) -> None:
        line = event_line(event)
        with self._lock:
            if self._broken:
                return
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                # The parent stopped reading (it died or closed the pipe): keep training, keep
                # the stderr log; the checkpoints still let the job be resumed.
                self._broken = True
                print(f"[trainer] event channel closed: {exc}", file=sys.stderr, flush=True)

    def phase(self, phase: str, done: int = 0, total: int = 0, detail: str = "") -> None:
        self.emit(PhaseEvent(phase, int(done), int(total), detail))

    def step(self, step: int, total: int, loss: float, lr: float, sec_per_step: float,
             eta_sec: float) -> None:
        self.emit(StepEvent(step, total, float(loss), float(lr), round(sec_per_step, 4),
                            round(eta_sec, 1) if math.isfinite(eta_sec) else eta_sec))

    def sample(self, step: int, path: str, prompt: str) -> None:
        self.emit(SampleEvent(step, path, prompt))

    def checkpoint(self, step: int, path: str, resumable: bool = True) -> None:
        self.emit(CheckpointEvent(step, path, resumable))

    def done(self, lora: str, steps: int) -> None:
        self.emit(DoneEvent(lora, steps))

    def stopped(self, step: int, checkpoint: str, lora: str = "") -> None:
        self.emit(StoppedEvent(step, checkpoint, lora))

    def log(self, message: str, level: str = "info") -> None:
        """A human-readable note for the user (also written to the stderr log)."""
        log.log(logging.WARNING if level == "warning" else logging.INFO, message)
        self.emit(LogEvent(level, message))


def claim_stdout() -> Emitter:
    """Reserve the process's real stdout for protocol lines; send everything else to stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stream = os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1, newline="\n")
    return Emitter(stream)


def setup_stderr_logging() -> None:
    """Our own log lines go to stderr with a timestamp (libraries keep their own loggers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("isengard")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
