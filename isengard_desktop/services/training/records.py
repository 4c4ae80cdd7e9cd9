"""A training job's record, its states, and how a run's end changes them (Qt-free).

:class:`JobRecord` is the UI's snapshot of a job (re-exported by ``services/training/service.py`` and
``services/training/runner.py``); the service replaces it on every change. :class:`RunOutcome`
is how one trainer process ended. The functions here are the state changes that depend only
on a record and what happened to it: a job found running at start whose process is gone
(:func:`interrupted_at_start`), a step (:func:`with_step`), the end of a run
(:func:`finished_record`, :func:`crash_message`), and the records read at start-up
(:func:`examine_rows`, on a worker thread).

States: ``queued → running → (stopping →) completed | failed | cancelled | interrupted |
stopped``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, UTC
from pathlib import Path

from loguru import logger

from ...core.db.jobs import JobRow
from ...core.training.checkpoints import latest_complete
from ...core.training.protocol import DoneEvent, ErrorEvent, StepEvent, StoppedEvent
from ...core.training.spec import JobPaths, SpecError, TrainingJob
from ..process_group import pid_alive

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "JobRecord", "RESUMABLE_STATES", "RunOutcome",
           "STATES", "crash_message", "examine_rows", "finished_record", "interrupted_at_start",
           "utc_now", "with_step"]

STATES = ("queued", "running", "stopping", "completed", "failed", "cancelled", "interrupted",
          "stopped")
ACTIVE_STATES = frozenset({"running", "stopping"})
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "interrupted", "stopped"})
RESUMABLE_STATES = frozenset({"failed", "cancelled", "interrupted", "stopped"})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class JobRecord:
    """What the UI knows about one job (a snapshot; the service replaces it on change)."""

    job_id: str
    character_id: int | None
    character_name: str
    backend: str
    family: str
    preset: str
    state: str
    created: str
    started: str | None
    finished: str | None
    step: int
    total_steps: int
    last_loss: float | None
    lora_path: str | None
    error_kind: str | None
    error_message: str | None
    sec_per_step: float | None
    job_dir: Path
    spec: TrainingJob
    checkpoint_step: int | None = None   # newest complete checkpoint (None: none)
    pid: int | None = None

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
        return JobRow(self.job_id, self.character_id, self.backend, self.family, self.preset,
                      self.state, self.spec.to_json(), str(self.job_dir), self.created,
                      self.started, self.finished, self.pid, self.step, self.total_steps,
                      self.last_loss, self.lora_path, self.error_kind, self.error_message,
                      self.sec_per_step)

    @classmethod
    def from_row(cls, row: JobRow, spec: TrainingJob) -> JobRecord:
        return cls(row.job_id, row.character_id, spec.character_name, row.backend, row.family,
                   row.preset, row.state, row.created, row.started, row.finished, row.step,
                   row.total_steps, row.last_loss, row.lora_path, row.error_kind,
                   row.error_message, row.sec_per_step, Path(row.job_dir), spec, None, row.pid)


@dataclass(frozen=True)
class RunOutcome:
    """How one process run ended."""

    exit_code: int | None          # the exit code, or the signal number when crashed
    crashed: bool                  # ended by a signal / crashed
    failed_to_start: bool = False
    start_error: str = ""
    done: DoneEvent | None = None
    stopped: StoppedEvent | None = None
    error: ErrorEvent | None = None
    stderr_tail: tuple[str, ...] = ()
    pid: int | None = None


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
    return replace(record, state="interrupted", finished=utc_now(), pid=None, error_kind=None,
                   error_message="Isengard was closed or crashed while this job was running."
                                 + (f" Resume continues from step {record.checkpoint_step}."
                                    if record.checkpoint_step is not None else ""))


def with_step(record: JobRecord, event: StepEvent) -> JobRecord:
    """``record`` after a step event (a NaN loss keeps the last one)."""
    loss = event.loss if event.loss == event.loss else record.last_loss
    return replace(record, step=event.step, total_steps=event.total or record.total_steps,
                   last_loss=loss, sec_per_step=event.sec_per_step or record.sec_per_step)


def finished_record(record: JobRecord, outcome: RunOutcome, intent: str | None,
                    program: str) -> JobRecord:
    """``record`` once its process ended: final state, error kind and message.

    ``intent`` is what was asked of the run ("stop", "cancel", "shutdown" or None);
    ``program`` names what was started (for the message when it could not start)."""
    record = replace(record, pid=None, finished=utc_now())
    if outcome.done is not None:
        state, kind, message = "completed", None, None
        record = replace(record, lora_path=outcome.done.lora,
                         step=max(record.step, outcome.done.steps))
    elif intent == "shutdown":
        state, kind, message = "interrupted", None, "Isengard was closed while this job " \
                                                    "was running."
    elif intent == "cancel":
        state, kind, message = "cancelled", None, None
    elif outcome.stopped is not None:
        state, kind, message = "stopped", None, None
    elif intent == "stop":
        state, kind = "interrupted", None
        message = ("The trainer did not save and exit in time, so it was ended. "
                   "Resume continues from the newest complete checkpoint, if any.")
    elif outcome.failed_to_start:
        state, kind = "failed", "crash"
        message = (f"The trainer could not be started ({outcome.start_error}). "
                   f"Check that {program} exists.")
    elif outcome.error is not None:
        state, kind, message = "failed", outcome.error.kind, outcome.error.message
    else:
        state, kind, message = "failed", "crash", crash_message(record, outcome)
    return replace(record, state=state, error_kind=kind, error_message=message)


def crash_message(record: JobRecord, outcome: RunOutcome) -> str:
    if outcome.crashed:
        what = f"was killed by signal {outcome.exit_code}"
        if outcome.exit_code == 9:
            what += " (often the system ran out of memory)"
    elif outcome.exit_code == 0:
        what = "exited without finishing (no 'done' event)"
    else:
        what = f"exited with code {outcome.exit_code}"
    tail = "\n".join(outcome.stderr_tail[-5:])
    message = f"The trainer {what} at step {record.step}."
    if tail:
        message += f" Last lines of {record.paths.stderr}:\n{tail}"
    else:
        message += f" See {record.paths.stderr}."
    return message
