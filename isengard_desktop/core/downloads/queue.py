"""The persisted download queue and its runner (Qt-free; the service and scripts share it).

:class:`ThreadedStore` keeps the ``downloads`` table on its own connection and thread, so no
SQLite call runs on the event loop. :class:`DownloadQueue` runs at most ``parallel`` fetches
at once in the order items were added; pause keeps the ``.part``, cancel deletes it, retry
queues a failed or cancelled item again. At :meth:`DownloadQueue.load` rows left ``running``
by a run that was killed are queued again and resume from their ``.part`` offset. The bytes
done are saved about once a second (the ``.part`` size is what a resume trusts).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
from loguru import logger

from ..db.schema import connect
from .errors import DownloadError
from .fetch import FetchConfig, FetchProgress, FetchSpec, fetch, part_path
from .store import DownloadRow, DownloadsRepository
from .tokens import HostTokens, read_tokens

__all__ = ["DownloadQueue", "ThreadedStore"]

T = TypeVar("T")
SAVE_EVERY_S = 1.0


class ThreadedStore:
    """The downloads table on one connection owned by one worker thread."""

    def __init__(self, db_file: Path) -> None:
        self.db_file = db_file
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="downloads-db")
        self._repo: DownloadsRepository | None = None

    def _repository(self) -> DownloadsRepository:
        if self._repo is None:
            self._repo = DownloadsRepository(connect(self.db_file))
        return self._repo

    async def call(self, fn: Callable[[DownloadsRepository], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._repository()))

    def submit(self, fn: Callable[[DownloadsRepository], Any]) -> None:
        """Fire and forget (progress saves); a failure is logged, never lost silently."""
        future = self._executor.submit(lambda: fn(self._repository()))
        future.add_done_callback(
            lambda f: f.exception() and logger.warning("downloads: saving progress failed: {}",
                                                       f.exception()))

    def close(self) -> None:
        def shut() -> None:
            if self._repo is not None:
                self._repo.conn.close()
                self._repo = None
        self._executor.submit(shut)
        self._executor.shutdown(wait=True)


class DownloadQueue:
    """Runs the persisted queue. Callbacks (on the loop): ``on_changed(row)`` after every state
    change, ``on_progress(row, FetchProgress)`` for every chunk (coalesce before widgets).
    ``tokens`` is called off the loop before each item starts (it may read the keyring)."""

    def __init__(self, store: ThreadedStore, client: httpx.AsyncClient, *,
                 config: FetchConfig | None = None, parallel: int = 1,
                 tokens: Callable[[], HostTokens] | None = None,
                 on_changed: Callable[[DownloadRow], None] | None = None,
                 on_progress: Callable[[DownloadRow, FetchProgress], None] | None = None,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] | None = None,
                 ) -> None:
        self.store, self.client = store, client
        self.config = config or FetchConfig()
        self.parallel = parallel
        self._tokens = tokens
        self._on_changed = on_changed or (lambda row: None)
        self._on_progress = on_progress or (lambda row, p: None)
        self._spawn = spawn or (lambda coro: asyncio.get_running_loop().create_task(coro))
        self.rows: dict[int, DownloadRow] = {}
        self.progress: dict[int, FetchProgress] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- reads --------------------------------------------------------------------------------
    def items(self) -> list[DownloadRow]:
        return [self.rows[k] for k in sorted(self.rows)]

    def active_count(self) -> int:
        return sum(1 for r in self.rows.values() if r.state in ("queued", "running"))

    # -- changes ------------------------------------------------------------------------------
    async def _set(self, item_id: int, **values: Any) -> DownloadRow:
        row = await self.store.call(lambda repo: repo.update(item_id, **values))
        self.rows[item_id] = row
        self._on_changed(row)
        return row

    async def load(self) -> list[DownloadRow]:
        """Read the queue; rows a killed run left ``running`` are queued again; start work."""
        def read(repo: DownloadsRepository) -> list[DownloadRow]:
            requeued = repo.requeue_interrupted()
            if requeued:
                logger.info("downloads: {} interrupted download(s) queued again", requeued)
            return repo.all()
        for row in await self.store.call(read):
            self.rows[row.id] = row
            self._on_changed(row)
        self._pump()
        return self.items()

    async def enqueue(self, url: str, dest: Path, *, label: str = "", size: int = 0,
                      sha256: str = "") -> DownloadRow:
        """Add a download (an unfinished one to the same ``dest`` is reused and resumed)."""
        def add(repo: DownloadsRepository) -> DownloadRow:
            existing = repo.unfinished_for(str(dest))
            if existing is not None:
                if existing.state == "paused":
                    return repo.update(existing.id, state="queued")
                return existing
            return repo.add(url, str(dest), label=label, size=size, sha256=sha256)
        row = await self.store.call(add)
        self.rows[row.id] = row
        self._on_changed(row)
        self._pump()
        return row

    async def pause(self, item_id: int) -> None:
        row = self.rows[item_id]
        if row.state not in ("queued", "running"):
            return
        await self._stop_task(item_id)
        await self._set(item_id, state="paused", bytes_done=_part_size(row))
        self._pump()

    async def resume(self, item_id: int) -> None:
        if self.rows[item_id].state == "paused":
            await self._set(item_id, state="queued")
            self._pump()

    async def cancel(self, item_id: int) -> None:
        row = self.rows[item_id]
        if not row.unfinished and row.state != "failed":
            return
        await self._stop_task(item_id)
        await asyncio.to_thread(part_path(Path(row.dest)).unlink, True)
        await self._set(item_id, state="cancelled", bytes_done=0)
        self._pump()

    async def retry(self, item_id: int) -> None:
        if self.rows[item_id].state in ("failed", "cancelled"):
            await self._set(item_id, state="queued", error="", error_kind="")
            self._pump()

    async def clear_finished(self) -> None:
        """Forget done and cancelled items (their files stay)."""
        await self.store.call(lambda repo: repo.delete_finished())
        for item_id in [i for i, r in self.rows.items() if r.state in ("done", "cancelled")]:
            del self.rows[item_id]

    async def wait_idle(self) -> None:
        """Until nothing is queued or running (scripts and tests)."""
        while True:
            await self._idle.wait()
            if not any(r.state in ("queued", "running") for r in self.rows.values()):
                return
            self._idle.clear()
            self._pump()

    async def aclose(self) -> None:
        """Stop every fetch; their rows go back to ``queued`` (they resume at the next start)."""
        self._closing = True
        running = list(self._tasks)
        for item_id in running:
            await self._stop_task(item_id)
        for item_id in running:
            await self._set(item_id, state="queued", bytes_done=_part_size(self.rows[item_id]))

    # -- running ------------------------------------------------------------------------------
    async def _stop_task(self, item_id: int) -> None:
        task = self._tasks.get(item_id)
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])

    def _pump(self) -> None:
        if self._closing:
            return
        for row in self.items():
            if len(self._tasks) >= self.parallel:
                break
            if row.state == "queued" and row.id not in self._tasks:
                self._idle.clear()
                task = self._spawn(self._run(row.id))
                self._tasks[row.id] = task
                task.add_done_callback(functools.partial(self._ended, row.id))
        if not self._tasks:
            self._idle.set()

    def _ended(self, item_id: int, _task: object = None) -> None:
        self._tasks.pop(item_id, None)
        self._pump()

    async def _run(self, item_id: int) -> None:
        row = await self._set(item_id, state="running", error="", error_kind="")
        tokens = await read_tokens(self._tokens)
        config = replace(self.config, tokens=tokens)
        spec = FetchSpec(row.url, Path(row.dest), row.size, row.sha256, row.label)
        saved_at = time.monotonic()

        def progress(p: FetchProgress) -> None:
            nonlocal saved_at
            self.progress[item_id] = p
            self._on_progress(self.rows[item_id], p)
            now = time.monotonic()
            if now - saved_at >= SAVE_EVERY_S:
                saved_at = now
                done = p.done
                self.store.submit(lambda repo: repo.update(item_id, bytes_done=done))

        try:
            result = await fetch(self.client, spec, config, progress)
        except DownloadError as exc:
            logger.warning("download {} failed ({}): {}", row.name, exc.kind, exc.message)
            await self._set(item_id, state="failed", error=exc.message, error_kind=exc.kind,
                            bytes_done=_part_size(row))
            return
        except asyncio.CancelledError:
            raise                        # pause/cancel/aclose set the state
        except Exception as exc:         # a bug: the row says so, the hook gets the traceback
            await self._set(item_id, state="failed", error_kind="bug",
                            error=f"{row.name}: unexpected error {type(exc).__name__}: {exc}")
            raise
        finally:
            self.progress.pop(item_id, None)
        await self._set(item_id, state="done", bytes_done=result.size,
                        sha256=result.sha256 if not row.sha256 else row.sha256)


def _part_size(row: DownloadRow) -> int:
    try:
        return part_path(Path(row.dest)).stat().st_size
    except OSError:
        return 0
