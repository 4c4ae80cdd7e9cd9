"""The one way for a widget to run blocking work off the UI thread (anki's ``QueryOp``).

::

    BackgroundOp(parent=self, op=lambda: load_scaled(path, BOX)) \\
        .success(self._show).failure(self._show_problem) \\
        .supersede("preview").run()

* ``op`` runs on a worker thread of :class:`BackgroundWork` (no UI calls in it); the caller's
  context (correlation id) goes with it.
* ``success(result)`` / ``failure(exc)`` run on the main thread, and only while ``parent``
  lives: when the widget is deleted its callbacks are dropped (checked here, in
  :func:`alive`, nowhere else).
* Without a failure handler an exception reaches ``sys.excepthook`` (logged and shown): no
  failure is ever silent, even when the parent is gone or the op was superseded.
* ``supersede(key)``: a newer op of the same parent with the same key drops the callbacks of
  the older ones still running (replaces hand-written request counters).
* ``in_lane(name)``: ops of one lane run one at a time in submission order (e.g. profile writes
  and the reads that follow them); without a lane they share the pool.
* ``with_progress(label)``: the status bar shows the op (label, bar, Cancel) while it runs; the
  op may report with ``op.report(Progress(...))`` and look at ``op.cancelled()`` (both safe from
  the worker thread; reports are throttled to ~10 a second, the last one always shown).

Executors belong to services: :class:`BackgroundWork` owns the shared pool and the lanes and
shuts them down on app close (``app.py`` creates it with :func:`start_background_work`).
Widgets never hold an executor.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Generic, TypeVar
from collections.abc import Callable

import shiboken6
from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core.types import Progress
from .ops import report_unexpected, run_in_executor
from .throttle import Throttler

__all__ = ["BackgroundOp", "BackgroundWork", "OpTask", "alive", "background_work", "guarded",
           "shutdown_background_work", "start_background_work"]

T = TypeVar("T")

POOL_WORKERS = max(4, min(8, os.cpu_count() or 4))   # thumbnails take 2, the rest stay free


class OpTask(QObject):
    """An op shown in the status bar (``with_progress``): what ``ProgressPanelWidget.track``
    needs.

    Signals:
        progressed(Progress): throttled to ~10 a second, the last one always.
        finished(object): the op ended (``None``); emitted once.
    """

    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, label: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self._cancel = threading.Event()
        self._throttle: Throttler[Progress] = Throttler(self.progressed.emit, parent=self)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, progress: Progress) -> None:
        """Safe from any thread."""
        self._throttle.submit_from_any_thread(progress)

    def end(self) -> None:
        self._throttle.flush()
        self.finished.emit(None)


class BackgroundWork(QObject):
    """Owns the app's worker threads: one shared pool and named one-thread lanes.

    Signals:
        task_started(OpTask): an op with ``with_progress`` started (the status bar tracks it).
    """

    task_started = Signal(object)

    def __init__(self, workers: int = POOL_WORKERS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="background")
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self.closed = False

    def executor(self, lane: str | None = None) -> Executor:
        """The shared pool, or the one-thread executor of ``lane``."""
        if lane is None:
            return self._pool
        with self._lock:
            pool = self._lanes.get(lane)
            if pool is None:
                pool = self._lanes[lane] = ThreadPoolExecutor(1, thread_name_prefix=lane)
            return pool

    def submit(self, fn: Callable[[], T], lane: str | None = None) -> Future[T]:
        """Run ``fn`` on a worker thread (no result delivery; see :class:`BackgroundOp`)."""
        return self.executor(lane).submit(fn)

    def shutdown(self, wait: bool = True) -> None:
        """Cancel queued work and stop the threads (running work finishes first if ``wait``)."""
        if self.closed:
            return
        self.closed = True
        with self._lock:
            pools = [self._pool, *self._lanes.values()]
        for pool in pools:
            pool.shutdown(wait=wait, cancel_futures=True)


_current: BackgroundWork | None = None


def start_background_work(workers: int = POOL_WORKERS) -> BackgroundWork:
    """Create the app's :class:`BackgroundWork` (``app.py``; shut it down on close)."""
    global _current
    _current = BackgroundWork(workers)
    return _current


def shutdown_background_work() -> None:
    """Shut the app's :class:`BackgroundWork` down (app close): queued ops are dropped,
    running ones end on their own (not waited for: a 30 s install check must not hold the
    window)."""
    if _current is not None:
        _current.shutdown(wait=False)


def background_work() -> BackgroundWork:
    """The running app's :class:`BackgroundWork` (made on first use where no app built one,
    e.g. a widget tested alone)."""
    if _current is None or _current.closed:
        return start_background_work()
    return _current


def alive(obj: QObject | None) -> bool:
    """Whether ``obj``'s C++ object still exists: the one place that asks."""
    return obj is not None and shiboken6.isValid(obj)


# newest op number per (parent, key): older ops with the same key are superseded
_latest: weakref.WeakKeyDictionary[QObject, dict[str, int]] = weakref.WeakKeyDictionary()


def _newest_token(parent: QObject, key: str) -> int:
    """Number a new op of ``parent`` under ``key`` (older ones become superseded)."""
    counters = _latest.setdefault(parent, {})
    token = counters[key] = counters.get(key, 0) + 1
    return token


def _is_newest(parent: QObject, key: str | None, token: int) -> bool:
    return key is None or _latest.get(parent, {}).get(key) == token


def guarded(parent: QObject, fn: Callable[..., None], *,
            supersede: str | None = None) -> Callable[..., None]:
    """``fn`` that does nothing once ``parent`` is gone, or (with ``supersede``) once a newer
    callback or op of ``parent`` with that key exists. For callbacks handed to services."""
    token = _newest_token(parent, supersede) if supersede is not None else 0

    def call(*args: object) -> None:
        if alive(parent) and _is_newest(parent, supersede, token):
            fn(*args)

    return call


class BackgroundOp(Generic[T]):
    """Builder for one background operation of a widget; see the module docstring."""

    def __init__(self, *, parent: QObject, op: Callable[[], T]) -> None:
        self._parent = parent
        self._op = op
        self._on_success: Callable[[T], None] | None = None
        self._on_failure: Callable[[BaseException], None] | None = None
        self._key: str | None = None
        self._lane: str | None = None
        self._label: str | None = None
        self._task: OpTask | None = None

    # -- building ------------------------------------------------------------------------------
    def success(self, callback: Callable[[T], None]) -> BackgroundOp[T]:
        self._on_success = callback
        return self

    def failure(self, callback: Callable[[BaseException], None]) -> BackgroundOp[T]:
        self._on_failure = callback
        return self

    def supersede(self, key: str) -> BackgroundOp[T]:
        self._key = key
        return self

    def in_lane(self, name: str) -> BackgroundOp[T]:
        self._lane = name
        return self

    def with_progress(self, label: str) -> BackgroundOp[T]:
        self._label = label
        return self

    # -- from the op (any thread) --------------------------------------------------------------
    def report(self, progress: Progress) -> None:
        if self._task is not None:
            self._task.report(progress)

    def cancelled(self) -> bool:
        return self._task is not None and self._task.is_cancelled

    # -- running -------------------------------------------------------------------------------
    def run(self) -> Future[T]:
        work = background_work()
        token = _newest_token(self._parent, self._key) if self._key is not None else 0
        if self._label is not None:
            self._task = OpTask(self._label, work)
            work.task_started.emit(self._task)
        return run_in_executor(work.executor(self._lane), self._op,
                               lambda result: self._deliver(token, result, None),
                               lambda exc: self._deliver(token, None, exc))

    def _deliver(self, token: int, result: T | None, exc: BaseException | None) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.end()
            task.deleteLater()
        wanted = alive(self._parent) and _is_newest(self._parent, self._key, token)
        if exc is not None:
            if self._on_failure is None:
                report_unexpected(exc)
            elif wanted:
                self._on_failure(exc)
            else:
                logger.debug("background op failed after it was dropped: {}", exc)
        elif wanted and self._on_success is not None:
            self._on_success(result)  # type: ignore[arg-type]
