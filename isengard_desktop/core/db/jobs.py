"""Plain SQL for the ``jobs`` table (migration 2): the training queue and its history.

Only the database service's writer thread calls these (``DatabaseService.read/write``).
Job folders are stored relative to the data folder when they lie inside it, so a portable
install can move.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["JOB_COLUMNS", "JobRow", "JobsRepository"]


@dataclass(frozen=True, kw_only=True)
class JobRow:
    """One row of ``jobs`` (built with keyword arguments). Times are ISO-8601 strings (UTC);
    ``started`` is the first run's start (a resume keeps it), the running time is
    ``finished - started - paused_seconds``;
    ``state`` is one of the job states' values (``services.training.records.JobState``)."""

    job_id: str
    character_id: int | None
    backend: str
    family: str
    preset: str
    state: str
    spec_json: str
    job_dir: str
    created: str
    started: str | None = None
    finished: str | None = None
    pid: int | None = None
    step: int = 0
    total_steps: int = 0
    last_loss: float | None = None
    lora_path: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    sec_per_step: float | None = None
    paused_seconds: float = 0.0     # time between the runs of a resumed job (migration 4)
    oom_notes: str = "[]"           # JSON list: one note per out-of-memory recovery (mig. 6)
    resource_warnings: str = "[]"   # JSON list: disk/VRAM/heat warnings while it ran (mig. 9)


JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(JobRow))
_UPDATABLE = frozenset(JOB_COLUMNS) - {"job_id"}


class JobsRepository:
    """Create, read, update and delete job rows on one connection."""

    def __init__(self, conn: sqlite3.Connection, data_root: Path | None = None) -> None:
        self.conn = conn
        self.data_root = data_root

    # -- paths -----------------------------------------------------------------------------
    def _to_db_path(self, path: str) -> str:
        if self.data_root is None:
            return str(path)
        try:
            return Path(path).relative_to(self.data_root).as_posix()
        except ValueError:
            return str(path)

    def _from_db_path(self, stored: str) -> str:
        p = Path(stored)
        if p.is_absolute() or self.data_root is None:
            return str(p)
        return str(self.data_root / p)

    def _row(self, row: sqlite3.Row) -> JobRow:
        values = {name: row[name] for name in JOB_COLUMNS}
        values["job_dir"] = self._from_db_path(values["job_dir"])
        return JobRow(**values)

    # -- writes ----------------------------------------------------------------------------
    def save(self, job: JobRow) -> None:
        """Insert the row, or replace every column of an existing one (upsert).

        A ``character_id`` whose character no longer exists is stored as NULL instead of
        failing (the same thing ``ON DELETE SET NULL`` does later).
        """
        values: dict[str, Any] = asdict(job)
        values["job_dir"] = self._to_db_path(values["job_dir"])
        cols = ", ".join(JOB_COLUMNS)
        marks = ", ".join(
            "(SELECT id FROM characters WHERE id=:character_id)" if c == "character_id"
            else f":{c}" for c in JOB_COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in JOB_COLUMNS if c != "job_id")
        self.conn.execute(
            f"INSERT INTO jobs({cols}) VALUES ({marks}) "
            f"ON CONFLICT(job_id) DO UPDATE SET {updates}", values)

    def insert(self, job: JobRow) -> None:
        """Insert a new row; sqlite3.IntegrityError if the id exists."""
        if self.get(job.job_id) is not None:
            raise sqlite3.IntegrityError(f"job {job.job_id} already exists")
        self.save(job)

    def update(self, job_id: str, **changes: Any) -> JobRow:
        """Change some columns; KeyError when the job does not exist."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown job column(s): {', '.join(sorted(unknown))}")
        current = self.get(job_id)
        if current is None:
            raise KeyError(f"job {job_id} does not exist")
        row = replace(current, **changes)
        self.save(row)
        return row

    def delete(self, job_id: str) -> None:
        self.conn.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRow | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def list_jobs(self, states: tuple[str, ...] | None = None) -> list[JobRow]:
        """All jobs (or those in ``states``), newest first."""
        if states:
            marks = ",".join("?" * len(states))
            rows = self.conn.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created DESC, rowid DESC",
                states)
        else:
            rows = self.conn.execute("SELECT * FROM jobs ORDER BY created DESC, rowid DESC")
        return [self._row(r) for r in rows]
