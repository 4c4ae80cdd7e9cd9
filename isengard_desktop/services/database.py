"""The database service: the one writer of the SQLite database, and the one emitter of change.

Every statement runs on one writer thread over one connection (WAL, foreign keys on; see
:func:`~..core.db.schema.connect`), so the UI thread never waits on the disk. There are two
kinds of work (the shape of anki's ``QueryOp`` / ``CollectionOp``):

- :meth:`DatabaseService.read` runs ``query(conn)`` and hands back its value; it changes
  nothing and emits nothing.
- :meth:`DatabaseService.write` runs a *write op* ``op(conn) -> WriteResult`` inside one
  transaction (:func:`~..core.db.transaction.transaction`: all of it is stored, or none of
  it). The op says what it changed in its result's :class:`ChangeSet`; on the main thread the
  service calls ``on_success(value)`` first (so a caller's in-memory snapshot is current),
  then emits ``changed(ChangeSet)`` once, unless the change set is empty. A failed op rolls
  back, emits nothing and goes to ``on_failure`` (or, without one, to ``sys.excepthook``:
  never silent). No caller emits a change signal by hand.

Work runs in the order it was asked for. :meth:`DatabaseService.open` queues opening (and
migrating) the database, a first read of it, then emits ``opened`` and
``changed(ChangeSet.everything_changed())``.

Signals:
    opened(): the database is open and the first read's ``on_loaded`` has run.
    changed(ChangeSet): a write op changed something (after its ``on_success``).
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from ..core.db.schema import connect
from ..core.db.transaction import transaction
from .ops import run_in_executor

__all__ = ["ChangeSet", "DatabaseClosedError", "DatabaseService", "WriteResult"]

T = TypeVar("T")

WRITER_THREAD_NAME = "db-writer"


@dataclass(frozen=True, kw_only=True)
class ChangeSet:
    """What a write changed, so each view can decide whether to refresh.

    The flags name tables (``characters``, ``images``, ``loras``, ``jobs``,
    ``generations``); ``character_ids`` the characters whose data changed; ``everything``
    means "re-read it all" (the database was just opened)."""

    characters: bool = False
    images: bool = False
    loras: bool = False
    jobs: bool = False
    generations: bool = False
    character_ids: frozenset[int] = frozenset()
    everything: bool = False

    @classmethod
    def everything_changed(cls) -> ChangeSet:
        return cls(everything=True, characters=True, images=True, loras=True, jobs=True,
                   generations=True)

    @property
    def is_empty(self) -> bool:
        return self == _NO_CHANGE

    @property
    def touches_library(self) -> bool:
        """Characters, their images or their LoRAs changed (what the library shows)."""
        return self.everything or self.characters or self.images or self.loras

    def __or__(self, other: ChangeSet) -> ChangeSet:
        return ChangeSet(characters=self.characters or other.characters,
                         images=self.images or other.images,
                         loras=self.loras or other.loras,
                         jobs=self.jobs or other.jobs,
                         generations=self.generations or other.generations,
                         character_ids=self.character_ids | other.character_ids,
                         everything=self.everything or other.everything)


_NO_CHANGE = ChangeSet()


@dataclass(frozen=True)
class WriteResult(Generic[T]):
    """What a write op returns: its value (for ``on_success``) and what it changed."""

    value: T
    changes: ChangeSet


class DatabaseClosedError(RuntimeError):
    """The database is not open (yet, or any more)."""


class DatabaseService(QObject):
    """The single writer; see the module docstring for the ops and the signals."""

    opened = Signal()
    changed = Signal(object)

    def __init__(self, db_file: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db_file = db_file
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=WRITER_THREAD_NAME)
        self._conn: sqlite3.Connection | None = None
        self._open_requested = False
        self.is_open = False

    # -- lifecycle -------------------------------------------------------------------------
    def open(self, load: Callable[[sqlite3.Connection], T],
             on_loaded: Callable[[T], None],
             on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Open and migrate the database off the UI thread, then run ``load(conn)``;
        ``on_loaded(value)`` runs on the main thread, then ``opened`` and ``changed``
        (everything) are emitted. Asking twice is an error."""
        if self._open_requested:
            raise RuntimeError(f"{self.db_file} is already opened")
        self._open_requested = True

        def work() -> T:
            self._conn = connect(self.db_file)
            return load(self._conn)

        def done(value: T) -> None:
            self.is_open = True
            try:
                on_loaded(value)
            finally:
                self.opened.emit()
                self.changed.emit(ChangeSet.everything_changed())

        run_in_executor(self._writer, work, done, on_failure)

    def shutdown(self) -> None:
        """Finish the work already asked for, close the connection and stop the writer.
        Later reads and writes raise :class:`RuntimeError`."""

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            self._writer.submit(close)
        except RuntimeError:      # already shut down
            return
        self._writer.shutdown(wait=True)
        self.is_open = False

    # -- work ------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseClosedError(f"the database {self.db_file.name} is not open "
                                      "(DatabaseService.open first)")
        return self._conn

    def read(self, query: Callable[[sqlite3.Connection], T],
             on_success: Callable[[T], None] | None = None,
             on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Run ``query(conn)`` on the writer thread; ``on_success(value)`` on the main thread.

        ``query`` must not touch widgets or services. Raises :class:`RuntimeError` after
        :meth:`shutdown`."""
        run_in_executor(self._writer, lambda: query(self._connection()), on_success,
                        on_failure)

    def write(self, op: Callable[[sqlite3.Connection], WriteResult[T]],
              on_success: Callable[[T], None] | None = None,
              on_failure: Callable[[BaseException], None] | None = None
              ) -> Future[WriteResult[T]]:
        """Run the write op ``op(conn)`` in one transaction on the writer thread.

        On the main thread: ``on_success(result.value)``, then ``changed(result.changes)``
        once (not when empty). When ``op`` raises, the transaction is rolled back, nothing is
        emitted and ``on_failure(exc)`` runs (``sys.excepthook`` without one). ``op`` must
        not touch widgets or services. Raises :class:`RuntimeError` after :meth:`shutdown`.

        Returns the future of the op (committed when it is done): a worker thread may wait
        on it (never the UI thread)."""

        def work() -> WriteResult[T]:
            conn = self._connection()
            with transaction(conn):
                result = op(conn)
                if not isinstance(result, WriteResult):   # (rolled back)
                    raise TypeError("a write op returns a WriteResult, not "
                                    f"{type(result).__name__}")
            return result

        def done(result: WriteResult[T]) -> None:
            try:
                if on_success is not None:
                    on_success(result.value)
            finally:
                if not result.changes.is_empty:
                    self.changed.emit(result.changes)

        return run_in_executor(self._writer, work, done, on_failure)
