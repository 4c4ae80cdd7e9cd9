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
