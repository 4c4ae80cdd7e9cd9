"""ThumbnailService: thumbnails arrive off the UI thread, decoded at a lower CPU priority."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.services import thumbnails as thumbs_mod
from isengard_desktop.services.thumbnails import ThumbnailService

SHA = "ab" * 32


def test_thumbnail_arrives_and_is_cached(qtbot, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(photo, quality=90)
    service = ThumbnailService(tmp_path / "cache")
    try:
        assert service.pixmap(SHA, photo) is None          # queued, not ready yet
        with qtbot.waitSignal(service.thumbnail_ready, timeout=10_000):
            pass
        pix = service.pixmap(SHA, photo)
        assert pix is not None and max(pix.width(), pix.height()) == 256
    finally:
        service.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_decoding_threads_run_below_the_ui_threads_priority() -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)     # on Linux: this (the calling) thread
    seen: list[int] = []

    def job() -> None:
        thumbs_mod._lower_thread_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    assert seen == [min(before + thumbs_mod._WORKER_NICENESS, 19)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == before    # the UI thread is untouched
