"""ThumbnailService: thumbnails arrive off the UI thread and are cached as pixmaps."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

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
