"""The app's one asyncio lifecycle: a qasync loop over the Qt event loop, started once.

``__main__`` runs ``main()`` with :func:`run` (``asyncio.Runner(loop_factory=QEventLoop)``:
on Python 3.11 ``asyncio.run`` has no ``loop_factory``); ``main()`` builds the app on the
running loop, waits until the window closes and awaits ``AppContext.aclose()`` once, so every
network connection closes on the loop that made it. The Runner then cancels what is left and
closes the loop. Tests build their loop the same way (``tests/conftest.py``).

The loop's default executor (``asyncio.to_thread``, ``loop.getaddrinfo``) is a
:class:`BoundedExecutor`: qasync's own one waits on its threads with ``QThread.wait()`` when
the loop closes, without limit and where no signal reaches Python, so one stuck call (a
lookup, a read on a dead share) would hang the app's exit for ever.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from loguru import logger
from PySide6.QtCore import QCoreApplication, QTimer

__all__ = ["BoundedExecutor", "SIGNAL_WAKE_MS", "new_loop", "run", "runner", "signal_wake"]

T = TypeVar("T")

#: how often :func:`signal_wake` lets Python in
SIGNAL_WAKE_MS = 250


def signal_wake(interval_ms: int = SIGNAL_WAKE_MS) -> QTimer:
    """A started no-op timer: Python runs signal handlers only between bytecodes, so while
    Qt waits for events with no Python callback due, SIGINT/SIGTERM (or pytest-timeout's
    alarm) would wait with it. Stop it when done."""
    timer = QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(interval_ms)
    return timer


#: how long closing the loop waits for its default executor's running calls
DEFAULT_EXECUTOR_CLOSE_S = 5.0


class BoundedExecutor(Executor):
    """A thread pool whose shutdown waits ``close_timeout_s`` at most.

    Its threads are daemon threads: a call still running after that is left behind (and
    named in the log) instead of holding the loop's close or the interpreter's exit, as
    ``ThreadPoolExecutor`` (joined at exit) and qasync's ``QThreadExecutor`` would.
    """

    def __init__(self, max_workers: int = 8, *, name: str = "loop-default",
                 close_timeout_s: float | None = None) -> None:
        self._max_workers = max_workers
        self._name = name
        self.close_timeout_s = (DEFAULT_EXECUTOR_CLOSE_S if close_timeout_s is None
                                else close_timeout_s)
        self._queue: queue.SimpleQueue[tuple[Future[Any], functools.partial[Any]] | None] = \
            queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._running: dict[threading.Thread, str] = {}
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new calls after shutdown")
            call = functools.partial(fn, *args, **kwargs)
            self._queue.put((future, call))
            if self._idle == 0 and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            elif self._idle:
                self._idle -= 1           # an idle thread takes it
        return future

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._running[me] = _describe(call)
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                del item, future, call
                with self._lock:
                    self._running.pop(me, None)
                    self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if not wait:
            return
        deadline = time.monotonic() + self.close_timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = [self._running.get(t, t.name) for t in threads if t.is_alive()]
        if stuck:
            logger.warning("closing the loop: {} call(s) still running after {:.0f} s were "
                           "left behind: {}", len(stuck), self.close_timeout_s,
                           "; ".join(stuck))


def _describe(call: functools.partial[Any]) -> str:
    """``fn(args)`` of a queued call, short (for the log of what was left running)."""
    fn: Any = call.func
    while isinstance(fn, functools.partial):        # asyncio wraps the target in a context run
        call, fn = fn, fn.func
    inner = call.args[0] if call.args and callable(call.args[0]) else fn
    return getattr(inner, "__qualname__", None) or repr(inner)[:80]


def new_loop(app: QCoreApplication | None = None) -> asyncio.AbstractEventLoop:
    """A qasync event loop driven by ``app``'s (or the current application's) Qt loop."""
    import qasync

    loop: asyncio.AbstractEventLoop = qasync.QEventLoop(app or QCoreApplication.instance())
    loop.set_default_executor(BoundedExecutor())
    return loop


def runner(app: QCoreApplication | None = None, *, debug: bool | None = None
           ) -> asyncio.Runner:
    """An ``asyncio.Runner`` whose loop is a qasync loop on ``app`` (use as a context
    manager; ``runner.run(coro)`` as often as needed, the loop closes on exit)."""
    return asyncio.Runner(loop_factory=lambda: new_loop(app), debug=debug)


def run(main: Coroutine[Any, Any, T], app: QCoreApplication | None = None) -> T:
    """Run ``main`` on a fresh qasync loop and close the loop after it (the app's entry)."""
    with runner(app) as r:
        return r.run(main)
