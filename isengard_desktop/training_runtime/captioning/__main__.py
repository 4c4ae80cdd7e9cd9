"""The captioning child process.

    python -m isengard_desktop.training_runtime.captioning run --job <caption_job.json>
    python -m isengard_desktop.training_runtime.captioning make-tiny-model <folder>

``run``: stdout carries only event lines (``core/captioning/job.py``); everything else goes to
stderr. The first event goes out before torch and transformers are imported. Photos already
in the job's suggestion file are skipped (a run resumes where the last one ended). Stop: a
line ``stop`` on stdin, or SIGTERM/SIGINT → the batch in hand finishes and is kept,
``stopped`` follows, exit 0; a second signal ends the process at once.

Exit status: 0 done or stopped; 2 bad job file; 1 any other error (after an ``error`` event).
``make-tiny-model`` writes a tiny random Florence-2 (tests, benchmark) and prints one JSON
line ``{"model": "<folder>"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from collections.abc import Callable
from typing import Any, TextIO

from ...core.captioning.job import CaptionJob, JobError, caption_event_line
from ...core.captioning.store import RawCaption, append_raw, pending_keys, read_raw
from ..__main__ import OFFLINE_ENV, StopRequest


class Channel:
    """The event stream: the process's real stdout, one flushed line an event."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._broken = False

    @classmethod
    def claim(cls) -> Channel:
        """Keep fd 1 for events; point fd 1 and ``sys.stdout`` at stderr (stray prints and
        progress bars land in the log, never in the event stream)."""
        sys.stdout.flush()
        proto_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1, newline="\n"))

    def emit(self, event: str, **fields: Any) -> None:
        line = caption_event_line(event, **fields)
        with self._lock:
            if self._broken:
                return
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                self._broken = True   # the app stopped reading: the suggestion file still fills


def _writer(path: Path) -> Callable[[list[RawCaption]], None]:
    """Stores a batch's records in the suggestion file (one sync a batch)."""
    return lambda records: append_raw(path, *records)


def _error_kind(exc: BaseException) -> str:
    from .pipeline import ModelMissing

    if isinstance(exc, JobError):
        return "config"
    if isinstance(exc, ModelMissing):
        return "model_missing"
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "oom"
    return "crash"


def run(job_file: Path) -> int:
    channel = Channel.claim()
    channel.emit("phase", phase="loading_model", detail="starting")
    os.environ.update(OFFLINE_ENV)
    stop = StopRequest()
    stop.install_signals()
    stop.watch_stdin()
    try:
        try:
            text = Path(job_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise JobError(f"{job_file}: cannot read the captioning job "
                           f"({exc.strerror or exc})") from exc
        job = CaptionJob.from_json(text, source=str(job_file))
        output = Path(job.output)
        done = read_raw(output)
        todo_keys = set(pending_keys([i.key for i in job.images], done))
        images, seen = [], set()
        for image in job.images:
            if image.key in todo_keys and image.key not in seen:
                seen.add(image.key)
                images.append(image)
        skipped = len(job.images) - len(images)
        if not images:
            channel.emit("started", total=0, skipped=skipped, device="", batch_size=0)
            channel.emit("done", captioned=0, failed=0)
            return 0
        channel.emit("phase", phase="loading_model", detail="loading the captioning model")
        from .pipeline import Captioner

        started = time.monotonic()
        captioner = Captioner(job.model, job.device)
        print(f"[captioning] model loaded on {captioner.device} ({captioner.dtype}) in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        channel.emit("started", total=len(images), skipped=skipped,
                     device=captioner.device.type, batch_size=job.batch_size)
        result = captioner.run(job, images, channel.emit, stop, _writer(output))
        if result.stopped:
            channel.emit("stopped", captioned=result.captioned)
        else:
            channel.emit("done", captioned=result.captioned, failed=result.failed)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
        if isinstance(exc, SystemExit):
            raise
        traceback.print_exc(file=sys.stderr)
        kind = _error_kind(exc)
        message = str(exc) if kind != "oom" else (
            "Out of GPU memory with one photo a batch: close other programs using the GPU, "
            "or caption on the CPU.")
        channel.emit("error", kind=kind, message=message or type(exc).__name__)
        return 2 if kind == "config" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isengard_desktop.training_runtime.captioning",
                                     description="Isengard Desktop's photo captioning child.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="caption the photos of a job file")
    p_run.add_argument("--job", required=True, type=Path)
    p_tiny = sub.add_parser("make-tiny-model", help="write a tiny random Florence-2 (tests)")
    p_tiny.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.job)
    os.environ.update(OFFLINE_ENV)
    from .tiny_florence import build_tiny_florence

    folder = build_tiny_florence(args.folder)
    print(json.dumps({"model": str(folder)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
