"""The download service: the persisted queue of ``core/downloads`` on the app's asyncio loop.

One ``httpx.AsyncClient`` (made at :meth:`DownloadService.start`), one
:class:`~..core.downloads.DownloadQueue` over the app database (its own connection and
thread), tasks owned by a :class:`~.tasks.TaskOwner`. Tokens are read from the OS keyring off
the UI thread before each item starts and go only to their own hosts. At start unfinished
items resume from their ``.part``; :meth:`aclose` stops the fetches, and their rows stay
queued for the next start.

Signals:
    items_changed(tuple[DownloadView, ...]): the whole list, after every state change and at
        most ~10 times a second while bytes arrive.
    count_changed(int): how many items are queued or running (the status-bar button).
    item_failed(str): a download failed for good; the message names the file and what to do.
    repo_queued(RepoQueued): a Hugging Face repo was listed and its files queued
        (:meth:`enqueue_hub_repo`).
    repo_failed(str, str): listing a repo failed: (destination folder, message naming the repo).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core.downloads import (
    DownloadError, DownloadQueue, DownloadRow, FetchConfig, HostTokens, HubFile, HubListing,
    ThreadedStore, list_repo, transformers_files,
)
from ..core.downloads.fetch import FetchProgress, format_bytes
from ..core.downloads.hf_repo import HF_ENDPOINT, file_info, parse_resolve_url
from ..core.downloads.tokens import read_tokens
from ..core.models_catalogue import CatalogueFile
from ..core.types import Progress
from .tasks import TaskOwner
from .throttle import Throttler

__all__ = ["DownloadService", "DownloadView", "RepoQueued", "progress_for"]


@dataclass(frozen=True)
class DownloadView:
    """One item as the panel shows it."""

    id: int
    name: str
    state: str
    progress: Progress
    error: str = ""
    dest: str = ""

    @property
    def can_pause(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def can_resume(self) -> bool:
        return self.state == "paused"

    @property
    def can_cancel(self) -> bool:
        return self.state in ("queued", "running", "paused", "failed")

    @property
    def can_retry(self) -> bool:
        return self.state in ("failed", "cancelled")


@dataclass(frozen=True)
class RepoQueued:
    """A repo's files queued into ``folder`` (``dests``: where each one goes)."""

    folder: str
    listing: HubListing
    files: tuple[HubFile, ...]
    dests: tuple[str, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def _eta_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_for(row: DownloadRow, p: FetchProgress | None) -> Progress:
    """The one Progress value: done/total in bytes, detail "MB of MB · MB/s · ETA"."""
    total = p.total if p is not None and p.total else row.size
    done = p.done if p is not None else row.bytes_done
    parts = [f"{format_bytes(done)} of {format_bytes(total)}" if total else format_bytes(done)]
    if p is not None and row.state == "running":
        parts.append(f"{p.rate / (1024 * 1024):.1f} MB/s")
        if p.eta_s is not None:
            parts.append(f"ETA {_eta_text(p.eta_s)}")
    return Progress(row.name, done, total, " · ".join(parts), job_id=f"download-{row.id}")


class DownloadService(QObject):
    """Owns the download queue (see the module text for its signals)."""

    items_changed = Signal(object)
    count_changed = Signal(int)
    item_failed = Signal(str)
    repo_queued = Signal(object)
    repo_failed = Signal(str, str)

    def __init__(self, db_file: Path, tokens: Callable[[], HostTokens] | None = None, *,
                 config: FetchConfig | None = None, parallel: int = 1,
                 hub_endpoint: str = HF_ENDPOINT, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db_file = db_file
        self.hub_endpoint = hub_endpoint          # tests point it at a local Hub double
        self._tokens = tokens
        self.config = config or FetchConfig()
        self.parallel = parallel
        self._tasks = TaskOwner("downloads")
        self._store: ThreadedStore | None = None
        self._client: httpx.AsyncClient | None = None
        self.queue: DownloadQueue | None = None
        self._ready: asyncio.Future[None] | None = None
        self._count = -1
        self._states: dict[int, str] = {}
        self._throttle: Throttler[None] = Throttler(lambda _v: self._emit_items(), parent=self)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the queue and resume unfinished items (on the running loop). Idempotent."""
        if self.queue is not None or self._tasks.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:        # a test building widgets without the app's loop
            logger.warning("downloads: no asyncio loop is running; the queue is not started")
            return
        self._store = ThreadedStore(self.db_file)
        self._client = httpx.AsyncClient(trust_env=False)
        self.queue = DownloadQueue(
            self._store, self._client, config=self.config, parallel=self.parallel,
            tokens=self._tokens, on_changed=self._on_changed, on_progress=self._on_progress,
            spawn=lambda coro: self._tasks.spawn(coro))
        self._ready = loop.create_future()
        self._spawn(self._load())

    async def _load(self) -> None:
        assert self.queue is not None and self._ready is not None
        try:
            await self.queue.load()
        finally:
            if not self._ready.done():
                self._ready.set_result(None)
        self._emit_items()

    async def aclose(self) -> None:
        """Stop the fetches (their rows stay queued for the next start) and close the client.
        Idempotent; never raises."""
        if self._tasks.closed:
            return
        self._throttle.cancel()
        try:
            if self.queue is not None:
                await self.queue.aclose()
        except Exception as exc:       # quitting: log it, close the rest
            logger.opt(exception=exc).error("downloads: stopping the queue failed")
        await self._tasks.aclose(timeout_s=10)
        if self._client is not None:
            await self._client.aclose()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    # -- requests (from the UI) ---------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.spawn(coro)

    async def _when_ready(self) -> DownloadQueue:
        if self.queue is None or self._ready is None:
            raise RuntimeError("the download service was not started")
        await self._ready
        return self.queue

    def enqueue(self, url: str, dest: Path, *, label: str = "", size: int = 0,
                sha256: str = "") -> None:
        """Queue a download to ``dest`` (size/sha256 checked when given)."""
        async def add() -> None:
            queue = await self._when_ready()
            await queue.enqueue(url, dest, label=label, size=size, sha256=sha256)
        self._spawn(add())

    def enqueue_catalogue_file(self, item: CatalogueFile, models_root: Path) -> Path:
        """Queue a catalogue file into its ComfyUI folder under ``models_root`` (checked
        against the catalogue's size and SHA-256 where known); returns where it will be.
        Only the first URL is used (no mirror fallback yet). When the catalogue has no
        SHA-256 (or size) and the URL is a Hugging Face ``resolve/`` URL, the Hub's entry for
        the file fills them first (its LFS SHA-256), so the file is still checked; when the
        Hub cannot say, the file is queued as the catalogue has it."""
        dest = models_root / item.folder / item.name
        url = item.urls[0]
        if item.sha256 or parse_resolve_url(url) is None:
            self.enqueue(url, dest, label=item.name, size=item.size, sha256=item.sha256)
            return dest

        async def add() -> None:
            queue = await self._when_ready()
            assert self._client is not None
            size, sha256 = item.size, ""
            try:
                tokens = await read_tokens(self._tokens)
                hub = await file_info(self._client, url, tokens=tokens)
            except DownloadError as exc:        # the fetch reports what is wrong, if anything
                logger.info("downloads: no Hub hash for {} ({})", item.name, exc.message)
                hub = None
            if hub is not None:
                sha256 = hub.sha256
                size = size or hub.size
                logger.info("downloads: {}: size {} and SHA-256 {} from the Hub", item.name,
                            size, sha256[:12] or "(none: not in LFS)")
            await queue.enqueue(url, dest, label=item.name, size=size, sha256=sha256)
        self._spawn(add())
        return dest

    def enqueue_hub_repo(self, repo: str, revision: str, folder: Path) -> None:
        """List Hugging Face model repo ``repo`` at ``revision`` (on the loop, never the UI
        thread) and queue the files a transformers folder needs into ``folder`` (same
        relative paths), each checked against the listed size and, for LFS files, SHA-256.
        Emits ``repo_queued`` or ``repo_failed(folder, message)``."""
        async def run() -> None:
            queue = await self._when_ready()
            assert self._client is not None
            try:
                tokens = await read_tokens(self._tokens)
                listing = await list_repo(self._client, repo, revision,
                                          endpoint=self.hub_endpoint, tokens=tokens)
                files = transformers_files(listing.files, repo)
            except DownloadError as exc:
                logger.warning("downloads: listing {} failed ({}): {}", repo, exc.kind,
                               exc.message)
                self.repo_failed.emit(str(folder), exc.message)
                return
            dests = []
            for f in files:
                dest = folder / f.path
                dests.append(str(dest))
                await queue.enqueue(listing.url(f), dest, label=f"{folder.name}/{f.path}",
                                    size=f.size, sha256=f.sha256)
            logger.info("downloads: queued {} into {}", listing.describe(), folder)
            self.repo_queued.emit(RepoQueued(str(folder), listing, files, tuple(dests)))
        self._spawn(run())

    def _act(self, name: str, item_id: int) -> None:
        async def act() -> None:
            queue = await self._when_ready()
            await getattr(queue, name)(item_id)
        self._spawn(act())

    def clear_finished(self) -> None:
        """Remove done and cancelled items from the list (their files stay)."""
        async def clear() -> None:
            queue = await self._when_ready()
            await queue.clear_finished()
            self._emit_items()
        self._spawn(clear())

    def pause(self, item_id: int) -> None:
        self._act("pause", item_id)

    def resume(self, item_id: int) -> None:
        self._act("resume", item_id)

    def cancel(self, item_id: int) -> None:
        self._act("cancel", item_id)

    def retry(self, item_id: int) -> None:
        self._act("retry", item_id)

    # -- reads --------------------------------------------------------------------------------
    def views(self) -> tuple[DownloadView, ...]:
        if self.queue is None:
            return ()
        return tuple(
            DownloadView(row.id, row.name, row.state,
                         progress_for(row, self.queue.progress.get(row.id)), row.error,
                         row.dest)
            for row in self.queue.items())

    # -- from the queue -----------------------------------------------------------------------
    def _on_changed(self, row: DownloadRow) -> None:
        before = self._states.get(row.id)
        self._states[row.id] = row.state
        # a failure is announced when it happens, not again when the list is read at start
        if row.state == "failed" and row.error and before not in (None, "failed"):
            self.item_failed.emit(row.error)
        self._throttle.cancel()        # the full list goes out now
        self._emit_items()

    def _on_progress(self, row: DownloadRow, p: FetchProgress) -> None:
        self._throttle.submit(None)

    def _emit_items(self) -> None:
        views = self.views()
        self.items_changed.emit(views)
        count = sum(1 for v in views if v.state in ("queued", "running"))
        if count != self._count:
            self._count = count
            self.count_changed.emit(count)
