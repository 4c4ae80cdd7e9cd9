"""The one throttle (services/throttle.py), driven by a fake clock and a fake timer: no waiting,
no timing assertions."""

from __future__ import annotations

import threading

import pytest

from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.services.throttle import Throttler


class FakeClock:
    """Whole milliseconds, so no float rounding decides a test."""

    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> float:
        return self.now_ms / 1000.0

    def advance_ms(self, ms: int) -> None:
        self.now_ms += ms


class FakeTimer:
    """A one-shot timer that fires when the test says time has passed."""

    def __init__(self, clock: FakeClock, fire) -> None:  # noqa: ANN001
        self.clock, self.fire = clock, fire
        self.due: int | None = None
        self.starts: list[int] = []

    def start(self, msec: int) -> None:
        self.starts.append(msec)
        self.due = self.clock.now_ms + msec

    def stop(self) -> None:
        self.due = None

    def isActive(self) -> bool:  # noqa: N802 - QTimer's name
        return self.due is not None

    def run_due(self) -> None:
        if self.due is not None and self.clock.now_ms >= self.due:
            self.due = None
            self.fire()


@pytest.fixture
def rig():
    clock = FakeClock()
    timers: list[FakeTimer] = []
    out: list[object] = []

    def make_timer(fire):  # noqa: ANN001, ANN202
        timers.append(FakeTimer(clock, fire))
        return timers[-1]

    throttler = Throttler(out.append, 100, clock=clock, timer_factory=make_timer)

    def advance(ms: int) -> None:
        clock.advance_ms(ms)
        timers[0].run_due()

    return throttler, out, advance, timers


def test_first_value_goes_out_at_once(rig):
    throttler, out, _advance, _ = rig
    throttler.submit(1)
    assert out == [1]
    assert not throttler.has_pending


def test_a_burst_gives_the_leading_and_the_last_value(rig):
    throttler, out, advance, timers = rig
    for value in range(1, 11):          # ten values within 10 ms
        throttler.submit(value)
        advance(1)
    assert out == [1]
    assert throttler.has_pending
    advance(89)                          # 99 ms after the first: still held
    assert out == [1]
    advance(1)                           # 100 ms: the trailing edge delivers the newest
    assert out == [1, 10]
    assert not throttler.has_pending
    assert timers[0].starts == [99]      # one timer start for the whole burst


def test_steady_stream_is_limited_to_one_per_interval_and_ends_with_the_last(rig):
    throttler, out, advance, _ = rig
    for value in range(100):             # 100 values, one every 10 ms = 1 s
        throttler.submit(value)
        advance(10)
    advance(100)
    assert out[0] == 0 and out[-1] == 99
    assert 10 <= len(out) <= 11


def test_after_a_quiet_interval_the_next_value_is_immediate(rig):
    throttler, out, advance, _ = rig
    throttler.submit("a")
    advance(250)
    throttler.submit("b")
    assert out == ["a", "b"]


def test_flush_delivers_now_and_cancel_drops(rig):
    throttler, out, advance, _ = rig
    throttler.submit(1)
    throttler.submit(2)
    throttler.flush()
    assert out == [1, 2]
    throttler.submit(3)                  # within the interval of the flush: held
    throttler.cancel()
    advance(500)
    assert out == [1, 2]
    throttler.flush()                    # nothing pending: nothing delivered
    assert out == [1, 2]


def test_none_is_a_value(rig):
    throttler, out, advance, _ = rig
    throttler.submit(None)
    throttler.submit(None)
    advance(100)
    assert out == [None, None]


def test_values_from_a_worker_thread_arrive_in_order_the_last_always(qtbot):
    init_main_thread_bridge()
    out: list[int] = []
    throttler: Throttler[int] = Throttler(out.append, 50)

    def work() -> None:
        for value in range(1, 2001):
            throttler.submit_from_any_thread(value)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: bool(out) and out[-1] == 2000, timeout=5000)
    assert out == sorted(out)
    assert len(out) < 2000
