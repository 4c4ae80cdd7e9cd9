"""One throttle for high-rate updates: at most one delivery per interval, the last value always.

Progress, log lines and redraws arrive far faster than a person can read them; everything that
reaches a widget goes through a :class:`Throttler` (~10 a second by default). It delivers the
first value at once (leading edge), holds the newest one while the interval runs, and delivers
that when the interval ends (trailing edge): the last value submitted is never dropped.

The clock and the timer are injectable, so tests drive it deterministically with a fake clock
(see ``tests/gui/test_throttle.py``); by default they are ``time.monotonic`` and a ``QTimer``.
``submit`` is for the thread it lives in (the main thread); a worker thread calls
``submit_from_any_thread``, which keeps the newest value and wakes the main thread at most once
per hand-over (cheap enough to call for every file of an import).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Generic, Protocol, TypeVar
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

from .ops import call_in_main_thread

__all__ = ["DEFAULT_INTERVAL_MS", "OneShotTimer", "Throttler"]

DEFAULT_INTERVAL_MS = 100          # ~10 updates a second reach the UI

T = TypeVar("T")


class OneShotTimer(Protocol):
    """What a :class:`Throttler` needs of a timer (``QTimer`` fits; tests pass a fake)."""

    def start(self, msec: int) -> None: ...
    def stop(self) -> None: ...
    def isActive(self) -> bool: ...


class _Unset:
    """Marks "nothing pending" (``None`` is a value one may submit)."""


_NOTHING = _Unset()


class Throttler(QObject, Generic[T]):
    """Calls ``deliver(value)`` at most once per ``interval_ms``: leading and trailing edge.

    ``submit(value)`` replaces the pending value; ``flush()`` delivers it now (e.g. when the
    operation ends); ``cancel()`` drops it. Values submitted while nothing was delivered for a
    whole interval go out immediately.
    """

    def __init__(self, deliver: Callable[[T], None], interval_ms: int = DEFAULT_INTERVAL_MS, *,
                 clock: Callable[[], float] = time.monotonic,
                 timer_factory: Callable[[Callable[[], None]], OneShotTimer] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._deliver = deliver
        self.interval_ms = interval_ms
        self._clock = clock
        self._pending: T | _Unset = _NOTHING
        self._last = -math.inf
        self._timer: OneShotTimer = (timer_factory or self._qt_timer)(self.flush)
        self._handover_lock = threading.Lock()
        self._handover: T | _Unset = _NOTHING     # newest value from another thread

    def _qt_timer(self, fire: Callable[[], None]) -> OneShotTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(fire)
        return timer

    @property
    def has_pending(self) -> bool:
        return not isinstance(self._pending, _Unset)

    def submit(self, value: T) -> None:
        """Deliver ``value`` now if the interval has passed, else when it has (newest wins)."""
        self._pending = value
        if self._timer.isActive():
            return
        wait_ms = self.interval_ms - (self._clock() - self._last) * 1000.0
        if wait_ms <= 0:
            self.flush()
        else:
            self._timer.start(max(1, math.ceil(round(wait_ms, 3))))   # float noise: no +1 ms

    def submit_from_any_thread(self, value: T) -> None:
        """:meth:`submit` from a worker thread (values handed over in order, newest wins)."""
        with self._handover_lock:
            waiting = not isinstance(self._handover, _Unset)
            self._handover = value
        if not waiting:
            call_in_main_thread(self._take_handover)

    def _take_handover(self) -> None:
        with self._handover_lock:
            value, self._handover = self._handover, _NOTHING
        if not isinstance(value, _Unset):
            self.submit(value)

    def flush(self) -> None:
        """Deliver the pending value (if any) now."""
        self._timer.stop()
        value, self._pending = self._pending, _NOTHING
        if not isinstance(value, _Unset):
            self._last = self._clock()
            self._deliver(value)

    def cancel(self) -> None:
        """Drop the pending value; nothing more is delivered until the next ``submit``."""
        self._timer.stop()
        self._pending = _NOTHING
