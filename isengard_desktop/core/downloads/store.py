"""Plain SQL for the ``downloads`` table (migration 5): the persisted download queue.

States: ``queued`` (waiting), ``running``, ``paused`` (the ``.part`` is kept), ``done``,
``failed`` (``error`` says why, ``error_kind`` is a :class:`~.errors.DownloadError` kind) and
``cancelled`` (the ``.part`` was deleted). A ``running`` row found at start-up is from a run
that ended without saying so (crash, kill): it is queued again and resumes from its ``.part``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["ACTIVE_STATES", "DOWNLOAD_STATES", "DownloadRow", "DownloadsRepository"]

DOWNLOAD_STATES = ("queued", "running", "paused", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class DownloadRow:
    """One row of ``downloads``."""

    id: int
    url: str
    dest: str
    label: str = ""
    size: int = 0
    sha256: str = ""
    state: str = "queued"
    bytes_done: int = 0
    error: str = ""
    error_kind: str = ""
    created: str = ""
    updated: str = ""

    @property
    def name(self) -> str:
        return self.label or Path(self.dest).name

    @property
    def unfinished(self) -> bool:
        return self.state in ("queued", "running", "paused")


_COLUMNS = tuple(f.name for f in fields(DownloadRow))
_UPDATABLE = frozenset(_COLUMNS) - {"id", "created"}


class DownloadsRepository:
    """Create, read and update download rows on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _row(self, row: sqlite3.Row) -> DownloadRow:
        return DownloadRow(**{name: row[name] for name in _COLUMNS})

    def add(self, url: str, dest: str, *, label: str = "", size: int = 0,
            sha256: str = "") -> DownloadRow:
        now = _now()
        cur = self.conn.execute(
            "INSERT INTO downloads (url, dest, label, size, sha256, state, created, updated) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
            (url, dest, label, size, sha256.lower(), now, now))
        row = self.get(int(cur.lastrowid or 0))
        assert row is not None
        return row

    def get(self, item_id: int) -> DownloadRow | None:
        row = self.conn.execute("SELECT * FROM downloads WHERE id = ?", (item_id,)).fetchone()
        return self._row(row) if row else None

    def all(self) -> list[DownloadRow]:
        return [self._row(r) for r in self.conn.execute("SELECT * FROM downloads ORDER BY id")]

    def unfinished_for(self, dest: str) -> DownloadRow | None:
        row = self.conn.execute(
            "SELECT * FROM downloads WHERE dest = ? AND state IN ('queued','running','paused') "
            "ORDER BY id LIMIT 1", (dest,)).fetchone()
        return self._row(row) if row else None

    def update(self, item_id: int, **values: object) -> DownloadRow:
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"downloads has no updatable column(s) {sorted(unknown)}")
        values["updated"] = _now()
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.conn.execute(f"UPDATE downloads SET {assignments} WHERE id = ?",
                          (*values.values(), item_id))
        row = self.get(item_id)
        if row is None:
            raise KeyError(f"no download with id {item_id}")
        return row

    def requeue_interrupted(self) -> int:
        """Rows left ``running`` by a run that ended without saying so go back to ``queued``."""
        cur = self.conn.execute(
            "UPDATE downloads SET state = 'queued', updated = ? WHERE state = 'running'",
            (_now(),))
        return cur.rowcount

    def delete_finished(self) -> int:
        cur = self.conn.execute(
            "DELETE FROM downloads WHERE state IN ('done', 'cancelled')")
        return cur.rowcount
