"""TaskOwner: the one way services start coroutines (isengard_desktop/services/tasks.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from isengard_desktop.services.tasks import NoRunningLoop, OwnerClosed, TaskOwner


@pytest.fixture
def hooked(monkeypatch):
    """What reaches sys.excepthook."""
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, exc, tb: seen.append(exc))
    return seen


def test_spawn_without_a_running_loop_raises_and_closes_the_coroutine():
    owner = TaskOwner("test")
    ran = []

    async def work() -> None:
        ran.append(True)

    coro = work()
    with pytest.raises(NoRunningLoop, match="no asyncio loop is running"):
        owner.spawn(coro)
    assert coro.cr_frame is None          # closed: no "never awaited" warning, never run
    assert ran == [] and len(owner) == 0


def test_a_failed_task_reaches_the_excepthook(hooked):
    async def main() -> None:
        owner = TaskOwner("test")

        async def boom() -> None:
            raise ValueError("broken")

        task = owner.spawn(boom())
        await asyncio.wait({task})
        await asyncio.sleep(0)            # done callbacks run

    asyncio.run(main())
    assert [type(e) for e in hooked] == [ValueError] and str(hooked[0]) == "broken"


def test_results_and_cancellation_are_not_errors(hooked):
    async def main() -> int:
        owner = TaskOwner("test")

        async def answer() -> int:
            return 42

        async def forever() -> None:
            await asyncio.Event().wait()

        slow = owner.spawn(forever())
        result = await owner.spawn(answer())
        await asyncio.sleep(0)
        assert len(owner) == 1            # the finished one was let go, the slow one is held
        slow.cancel()
        await asyncio.wait({slow})
        await asyncio.sleep(0)
        assert len(owner) == 0
        return result

    assert asyncio.run(main()) == 42
    assert hooked == []


def test_aclose_cancels_and_awaits_everything_then_refuses(hooked):
    ended: list[str] = []

    async def main() -> None:
        owner = TaskOwner("test")
        extra: set[asyncio.Future] = set()

        async def worker(name: str) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)    # clean-up that itself awaits
                ended.append(name)

        owner.spawn(worker("a"))
        owner.spawn(worker("b"), also=extra)
        await asyncio.sleep(0)
        assert len(extra) == 1
        await owner.aclose()
        assert sorted(ended) == ["a", "b"] and len(owner) == 0 and not extra
        await owner.aclose()              # idempotent
        coro = worker("late")
        with pytest.raises(OwnerClosed):
            owner.spawn(coro)
        assert coro.cr_frame is None

    asyncio.run(main())
    assert hooked == []


def test_a_broken_excepthook_falls_back_to_the_default(monkeypatch, capsys):
    def broken(*_args: object) -> None:
        raise RuntimeError("hook broke")

    monkeypatch.setattr(sys, "excepthook", broken)

    async def main() -> None:
        owner = TaskOwner("test")

        async def boom() -> None:
            raise KeyError("lost?")

        task = owner.spawn(boom())
        await asyncio.wait({task})
        await asyncio.sleep(0)

    asyncio.run(main())
    assert "KeyError: 'lost?'" in capsys.readouterr().err
