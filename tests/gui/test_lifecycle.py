"""The app's asyncio lifecycle (isengard_desktop/lifecycle.py) on a real qasync loop."""

from __future__ import annotations

import asyncio
import sys

from isengard_desktop.lifecycle import run
from isengard_desktop.services.tasks import TaskOwner


def test_run_drives_the_qt_loop_and_failed_tasks_reach_the_excepthook(qapp, monkeypatch):
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, exc, tb: seen.append(exc))

    async def main() -> str:
        owner = TaskOwner("test")

        async def boom() -> None:
            await asyncio.sleep(0.01)
            raise RuntimeError("from a spawned task")

        task = owner.spawn(boom())
        await asyncio.wait({task})
        await owner.aclose()
        return type(asyncio.get_running_loop()).__module__

    assert run(main(), qapp).startswith("qasync")
    assert [str(e) for e in seen] == ["from a spawned task"]
    # the loop is closed and no longer current: a plain asyncio.run works afterwards
    assert asyncio.run(asyncio.sleep(0, "ok")) == "ok"


def test_a_stuck_thread_call_does_not_hold_the_loops_close(qapp, monkeypatch):
    """qasync's own default executor waits on its threads without limit when the loop
    closes (QThread.wait, where no signal reaches Python): a call stuck in a worker thread
    (a lookup, a read on a dead share) hung the exit for ever."""
    import threading
    import time

    from isengard_desktop import lifecycle

    monkeypatch.setattr(lifecycle, "DEFAULT_EXECUTOR_CLOSE_S", 0.5)
    release = threading.Event()
    warnings: list[str] = []
    sink = lifecycle.logger.add(lambda m: warnings.append(str(m)), level="WARNING")

    def stuck_read() -> None:
        release.wait(30)

    async def main() -> int:
        started = time.monotonic()
        # a quick call gets its answer; the stuck one is still running when main() returns
        assert await asyncio.to_thread(lambda: 6 * 7) == 42
        asyncio.get_running_loop().run_in_executor(None, stuck_read)
        await asyncio.sleep(0.05)
        return int(started)

    try:
        t0 = time.monotonic()
        run(main(), qapp)
        closed_after = time.monotonic() - t0
        assert closed_after < 5, closed_after            # 30 s with a waiting executor
        assert any("left behind" in w and "stuck_read" in w for w in warnings), warnings
        left = [t for t in threading.enumerate() if t.name.startswith("loop-default")]
        assert left and all(t.daemon for t in left)      # never joined at the exit either
    finally:
        release.set()
        lifecycle.logger.remove(sink)
