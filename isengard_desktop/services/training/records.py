"""A training job's record, its states, and how a run's end changes them (Qt-free).

:class:`JobRecord` is the UI's snapshot of a job; the service replaces it on every change;
:class:`JobState` names its states. :class:`RunOutcome` is how one trainer process ended (its
:class:`~..child_process.ProcessOutcome` plus the trainer's final events). The functions here
are the state changes that depend only
on a record and what happened to it: a job found running at start whose process is gone
(:func:`interrupted_at_start`), a step (:func:`with_step`), the end of a run
(:func:`finished_record`, :func:`crash_message`), and the records read at start-up
(:func:`examine_rows`, on a worker thread).

States: ``queued → running → (stopping →) completed | failed | cancelled | interrupted |
stopped``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from loguru import logger

from ...core.db.jobs import JobRow
from ...core.logging import redact
from ...core.platform_support import windows_end_phrase
from ...core.training.checkpoints import latest_complete
from ...core.training.job_warnings import JobWarning, warnings_from_json, warnings_to_json
from ...core.training.protocol import DoneEvent, ErrorEvent, StepEvent, StoppedEvent
from ...core.training.spec import JobPaths, SpecError, TrainingJob
from ..child_process import ProcessOutcome, StopIntent
from ..process_group import pid_alive

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "JobRecord", "JobState", "RESUMABLE_STATES",
           "RunOutcome", "STATES", "crash_message", "examine_rows", "finished_record",
           "interrupted_at_start", "utc_now", "with_step"]

class JobState(StrEnum):
    """A job's state; the values are what the ``jobs`` table stores (and compare equal to
    those strings)."""

    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"


STATES: tuple[JobState, ...] = tuple(JobState)
ACTIVE_STATES = frozenset({JobState.RUNNING, JobState.STOPPING})
FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
                          JobState.INTERRUPTED, JobState.STOPPED})
RESUMABLE_STATES = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED,
                              JobState.STOPPED})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """What the UI knows about one job (a snapshot; the service replaces it on change).
    Built with keyword arguments only."""

    job_id: str
    character_id: int | None
    character_name: str
    backend: str
    family: str
    preset: str
    state: JobState
    created: str
    job_dir: Path
    spec: TrainingJob
    started: str | None = None
    finished: str | None = None
    step: int = 0
    total_steps: int = 0
    last_loss: float | None = None
    lora_path: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    sec_per_step: float | None = None
    checkpoint_step: int | None = None   # newest complete checkpoint (None: none)
    pid: int | None = None
    paused_seconds: float = 0.0          # between runs (Resume): not running time
    oom_notes: tuple[str, ...] = ()      # one per out-of-memory recovery (core/training/oom)
    # disk / VRAM / heat warnings the resource monitor raised while it ran, oldest first
    resource_warnings: tuple[JobWarning, ...] = ()

    @property
    def oom_recoveries(self) -> int:
        return len(self.oom_notes)

    @property
    def resumable(self) -> bool:
        return self.state in RESUMABLE_STATES and self.checkpoint_step is not None

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def paths(self) -> JobPaths:
        return JobPaths(self.job_dir)

    def to_row(self) -> JobRow:
        return JobRow(job_id=self.job_id, character_id=self.character_id,
                      backend=self.backend, family=self.family, preset=self.preset,
                      state=JobState(self.state).value, spec_json=self.spec.to_json(),
                      job_dir=str(self.job_dir), created=self.created, started=self.started,
                      finished=self.finished, pid=self.pid, step=self.step,
                      total_steps=self.total_steps, last_loss=self.last_loss,
                      lora_path=self.lora_path, error_kind=self.error_kind,
                      error_message=self.error_message, sec_per_step=self.sec_per_step,
                      paused_seconds=self.paused_seconds,
                      oom_notes=json.dumps(list(self.oom_notes), ensure_ascii=False),
                      resource_warnings=warnings_to_json(self.resource_warnings))

    @classmethod
    def from_row(cls, row: JobRow, spec: TrainingJob) -> JobRecord:
        return cls(job_id=row.job_id, character_id=row.character_id,
                   character_name=spec.character_name, backend=row.backend,
                   family=row.family, preset=row.preset, state=JobState(row.state),
                   created=row.created, started=row.started, finished=row.finished,
                   step=row.step, total_steps=row.total_steps, last_loss=row.last_loss,
                   lora_path=row.lora_path, error_kind=row.error_kind,
                   error_message=row.error_message, sec_per_step=row.sec_per_step,
                   job_dir=Path(row.job_dir), spec=spec, checkpoint_step=None, pid=row.pid,
                   paused_seconds=row.paused_seconds or 0.0,
                   oom_notes=_notes(row.oom_notes),
                   resource_warnings=warnings_from_json(row.resource_warnings))


def _notes(stored: str | None) -> tuple[str, ...]:
    """The recovery notes of a row (a JSON list; anything else reads as none)."""
    try:
        value = json.loads(stored or "[]")
    except ValueError:
        return ()
    return tuple(str(n) for n in value) if isinstance(value, list) else ()


@dataclass(frozen=True)
class RunOutcome:
    """How one trainer run ended: the process's :class:`~..child_process.ProcessOutcome` and
    the trainer's last word (done / stopped / error events)."""

    process: ProcessOutcome
    done: DoneEvent | None = None
    stopped: StoppedEvent | None = None
    error: ErrorEvent | None = None

    @property
    def exit_code(self) -> int | None:
        """The exit code, or the signal number when crashed; None when it never started."""
        return self.process.exit_code

    @property
    def crashed(self) -> bool:
        return self.process.crashed

    @property
    def failed_to_start(self) -> bool:
        return self.process.failed_to_start

    @property
    def start_error(self) -> str:
        return self.process.error

    @property
    def stderr_tail(self) -> tuple[str, ...]:
        return self.process.tail

    @property
    def pid(self) -> int | None:
        return self.process.pid


def examine_rows(rows: list[JobRow]) -> list[tuple[JobRecord, bool]]:
    """(worker thread, at start-up) Records from DB rows, with the newest complete checkpoint
    of jobs that may be resumed; True where an active job's process is still alive."""
    out = []
    for row in rows:
        try:
            spec = TrainingJob.from_json(row.spec_json)
        except (SpecError, TypeError) as exc:
            logger.warning("job {} cannot be read and is not shown: {}", row.job_id, exc)
            continue
        record = JobRecord.from_row(row, spec)
        alive = record.state in ACTIVE_STATES and pid_alive(record.pid, record.job_id)
        if record.state in RESUMABLE_STATES or (record.state in ACTIVE_STATES and not alive):
            found = latest_complete(record.job_dir, deep=False)
            record = replace(record, checkpoint_step=found.step if found else None)
        out.append((record, alive))
    return out


def interrupted_at_start(record: JobRecord) -> JobRecord:
    """A job found running at start whose process is gone: interrupted."""
    return replace(record, state=JobState.INTERRUPTED, finished=utc_now(), pid=None,
                   error_kind=None,
                   error_message="Isengard was closed or crashed while this job was running."
                                 + (f" Resume continues from step {record.checkpoint_step}."
                                    if record.checkpoint_step is not None else ""))


def with_step(record: JobRecord, event: StepEvent) -> JobRecord:
    """``record`` after a step event (a NaN loss keeps the last one)."""
    loss = event.loss if event.loss == event.loss else record.last_loss
    return replace(record, step=event.step, total_steps=event.total or record.total_steps,
                   last_loss=loss, sec_per_step=event.sec_per_step or record.sec_per_step)


def finished_record(record: JobRecord, outcome: RunOutcome, intent: StopIntent | None,
                    program: str) -> JobRecord:
    """``record`` once its process ended: final state, error kind and message.

    ``intent`` is what was asked of the run (stop, cancel, shutdown or None);
    ``program`` names what was started (for the message when it could not start)."""
    record = replace(record, pid=None, finished=utc_now())
    if outcome.done is not None:
        state, kind, message = JobState.COMPLETED, None, None
        record = replace(record, lora_path=outcome.done.lora,
                         step=max(record.step, outcome.done.steps))
    elif intent == StopIntent.SHUTDOWN:
        state, kind = JobState.INTERRUPTED, None
        message = "Isengard was closed while this job was running."
    elif intent == StopIntent.CANCEL:
        state, kind, message = JobState.CANCELLED, None, None
    elif outcome.stopped is not None:
        state, kind, message = JobState.STOPPED, None, None
        if outcome.stopped.lora:       # the newest checkpoint, exported as the LoRA
            record = replace(record, lora_path=outcome.stopped.lora)
    elif intent == StopIntent.STOP:
        state, kind = JobState.INTERRUPTED, None
        message = ("The trainer did not save and exit in time, so it was ended. "
                   "Resume continues from the newest complete checkpoint, if any.")
    elif outcome.failed_to_start:
        state, kind = JobState.FAILED, "crash"
        message = (f"The trainer could not be started ({outcome.start_error}). "
                   f"Check that {program} exists.")
    elif outcome.error is not None:
        state, kind, message = JobState.FAILED, outcome.error.kind, outcome.error.message
    else:
        state, kind, message = JobState.FAILED, "crash", crash_message(record, outcome)
    return replace(record, state=state, error_kind=kind, error_message=message)


def crash_message(record: JobRecord, outcome: RunOutcome) -> str:
    windows_end = windows_end_phrase(outcome.exit_code)
    if windows_end is not None:
        what = windows_end
    elif outcome.crashed:
        what = f"was killed by signal {outcome.exit_code}"
        if outcome.exit_code == 9:
            what += " (often the system ran out of memory)"
    elif outcome.exit_code == 0:
        what = "exited without finishing (no 'done' event)"
    else:
        what = f"exited with code {outcome.exit_code}"
    tail = redact("\n".join(outcome.stderr_tail[-5:]))  # the runner masked it; twice is safe
    message = f"The trainer {what} at step {record.step}."
    if tail:
        message += f" Last lines of {record.paths.stderr}:\n{tail}"
    else:
        message += f" See {record.paths.stderr}."
    return message
