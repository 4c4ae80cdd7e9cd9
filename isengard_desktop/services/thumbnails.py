"""Thumbnails for image grids: cached on disk by content hash, decoded off the UI thread.

Requests are served newest first (what the user looks at now), and old requests beyond a
bound are dropped, so scrolling fast through 10,000 images never builds a backlog. The decoding
runs on the app's shared worker pool (``background.BackgroundWork``): at most ``workers`` drain
loops at a time, each taking the newest pending request until none is left.

Signals:
    thumbnail_ready(str, QImage): the thumbnail for that sha256 is available.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Executor
from pathlib import Path

from loguru import logger
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPixmap

from .background import background_work

_MAX_PENDING = 256
# 256 × 256 px pixmaps ≈ 50 MB at worst (256 × 192 × 4 bytes each); a full-screen grid shows
# ~50-100 tiles, so this keeps a few screens for scrolling back; older ones are decoded again
# from the disk cache (~1 ms each, off the UI thread). 600 held ~115 MB: RSS after scrolling
# 10,000 photos was 2.2× the empty app.
_MAX_CACHED = 256
_SHUTDOWN_WAIT_S = 5.0


class ThumbnailService(QObject):
    thumbnail_ready = Signal(str, QImage)

    def __init__(self, cache_dir: Path, workers: int = 2, parent: QObject | None = None,
                 executor: Executor | None = None) -> None:
        super().__init__(parent)
        self.cache_dir = cache_dir
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._failed: set[str] = set()
        self._pending: OrderedDict[str, Path] = OrderedDict()
        self._in_flight: set[str] = set()
        self._lock = threading.Condition()
        self._stop = False
        self._workers = workers
        self._draining = 0          # drain loops submitted and not yet ended
        self._executor = executor or background_work().executor()
        self.thumbnail_ready.connect(self._on_ready)

    def pixmap(self, sha256: str, path: Path) -> QPixmap | None:
        """The cached pixmap, or None after queueing a request for it."""
        pix = self._pixmaps.get(sha256)
        if pix is not None:
            self._pixmaps.move_to_end(sha256)
            return pix
        if sha256 not in self._failed:
            self.request(sha256, path)
        return None

    def has_failed(self, sha256: str) -> bool:
        return sha256 in self._failed

    def request(self, sha256: str, path: Path) -> None:
        with self._lock:
            if sha256 in self._in_flight:
                return
            self._pending[sha256] = path
            self._pending.move_to_end(sha256)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)
            if self._stop or self._draining >= self._workers:
                return
            self._draining += 1
        try:
            self._executor.submit(self._drain)
        except RuntimeError:        # the pool is shut down: the app is closing
            with self._lock:
                self._draining -= 1

    def shutdown(self) -> None:
        """Drop pending requests and wait (≤ 5 s) for the decodes in progress to end."""
        with self._lock:
            self._stop = True
            self._pending.clear()
            self._lock.wait_for(lambda: self._draining == 0, timeout=_SHUTDOWN_WAIT_S)

    def _drain(self) -> None:
        """On a pool thread: decode the newest pending request until none is left."""
        ended = False
        try:
            ended = self._drain_pending()
        except Exception:  # a bug; the pool would swallow it
            logger.exception("thumbnail worker stopped")
        finally:
            if not ended:
                with self._lock:
                    self._draining -= 1
                    self._lock.notify_all()

    def _drain_pending(self) -> bool:
        # imported here, on the worker thread: decoding pulls in numpy and pillow-heif
        from ..core.dataset.thumbnails import THUMB_SIZE, ensure_thumbnail

        while True:
            with self._lock:
                if self._stop or not self._pending:
                    # checked and counted under one lock: a request() arriving now either is
                    # seen here or sees this loop gone and starts another
                    self._draining -= 1
                    self._lock.notify_all()
                    return True
                sha256, path = self._pending.popitem(last=True)
                self._in_flight.add(sha256)
            image = QImage()
            try:
                thumb = ensure_thumbnail(path, self.cache_dir, sha256, THUMB_SIZE)
                image = QImage(str(thumb))
            except Exception as exc:  # a bad file shows a placeholder, never a crash
                logger.warning("no thumbnail for {}: {}", Path(path).name, exc)
            with self._lock:
                self._in_flight.discard(sha256)
                stopped = self._stop
            if not stopped:
                self.thumbnail_ready.emit(sha256, image)

    def _on_ready(self, sha256: str, image: QImage) -> None:
        if image.isNull():
            self._failed.add(sha256)
            return
        self._pixmaps[sha256] = QPixmap.fromImage(image)
        while len(self._pixmaps) > _MAX_CACHED:
            self._pixmaps.popitem(last=False)
