"""Exceptions of the trainer child and their translation into protocol ``error`` events.

Every failure the user can act on becomes one event with a kind and a plain message that
names the thing and what to do; the traceback stays in the stderr log. Imports no torch, so
start-up failures (bad spec, missing model) are reported before the ML libraries load.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from ..core.training.protocol import ErrorEvent
from ..core.training.spec import SpecError


class TrainerError(Exception):
    """A failure with a known kind; ``str(exc)`` is the message for the user."""

    kind = "crash"


class ConfigError(TrainerError):
    """The job spec cannot be used; the message names the field."""

    kind = "config"


class ModelMissingError(TrainerError):
    """A model file or folder is not there; the message names it."""

    kind = "model_missing"


class NanLossError(TrainerError):
    """The loss stopped being a number; the last good state was saved first."""

    kind = "nan_loss"


def _chain(exc: BaseException):
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _is_disk_full(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        text = str(e)
        if "No space left on device" in text or "os error 28" in text:
            return True
    return False


def _is_oom(exc: BaseException) -> tuple[bool, bool]:
    """(out of memory?, on the GPU?)"""
    for e in _chain(exc):
        name = type(e).__name__
        text = str(e).lower()
        if name == "OutOfMemoryError" or "cuda out of memory" in text \
                or "cuda error: out of memory" in text or "mps backend out of memory" in text:
            return True, True
        if isinstance(e, MemoryError) or "can't allocate memory" in text \
                or "defaultcpuallocator" in text:
            return True, False
    return False, False


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is an out-of-memory error, GPU or CPU."""
    return _is_oom(exc)[0]


def _oom_step(exc: BaseException) -> int:
    """The step being trained when ``exc`` was raised (set by the loop; 0: unknown)."""
    for e in _chain(exc):
        step = getattr(e, "training_step", 0)
        if isinstance(step, int) and step > 0:
            return step
    return 0


def _is_model_missing(exc: BaseException) -> bool:
    base = sys.modules.get("isengard_desktop.training_runtime.families.base")
    missing_cls = getattr(base, "ModelMissing", None) if base else None
    return any(isinstance(e, ModelMissingError) or (missing_cls and isinstance(e, missing_cls))
               for e in _chain(exc))


def classify(exc: BaseException, job: Any = None) -> ErrorEvent:
    """The ``error`` event for ``exc`` (``job``, when known, makes OOM advice concrete)."""
    if isinstance(exc, SpecError):
        return ErrorEvent("config", f"The job settings are not valid: {exc}")
    if isinstance(exc, TrainerError) and not isinstance(exc, ModelMissingError):
        return ErrorEvent(exc.kind, str(exc))
    if _is_model_missing(exc):
        return ErrorEvent("model_missing", str(exc))
    if _is_disk_full(exc):
        where = getattr(exc, "filename", None)
        return ErrorEvent("disk_full", "The disk is full" + (f" (writing {where})" if where else "")
                          + ". Free some space on that drive, then resume the job: it continues "
                          "from its last checkpoint.")
    oom, gpu = _is_oom(exc)
    if oom:
        now = ""
        if job is not None:
            now = (f" (now: batch size {job.batch_size}, resolution {job.resolution}, "
                   f"rank {job.rank})")
        what = "The GPU ran out of memory" if gpu else "The computer ran out of memory"
        tip = ("; turning gradient checkpointing on also helps" if job is not None
               and not getattr(job, "gradient_checkpointing", True) else "")
        return ErrorEvent("oom", f"{what}. Lower the batch size, the resolution or the LoRA "
                                 f"rank{now}{tip}, then start again.", _oom_step(exc))
    return ErrorEvent("crash", f"The trainer stopped unexpectedly: {type(exc).__name__}: {exc}"
                               " (the full traceback is in the trainer log).")


def exit_code(event: ErrorEvent) -> int:
    """Process exit status for an error event: 2 for a bad spec, 1 for everything else."""
    return 2 if event.kind == "config" else 1
