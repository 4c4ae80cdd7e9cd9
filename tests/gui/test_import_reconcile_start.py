"""Issue 11 item 3: at start the library records photos an interrupted import left without a
row, trashes unusable ones and removes stale temp files."""

from __future__ import annotations

import os
import time

from tests.helpers.photos import make_photos
from tests.helpers.qt import close_app


def _age(path, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_restart_adopts_orphans_and_removes_part_files(qtbot, make_app, tmp_path, monkeypatch):
    trashed: list[str] = []
    monkeypatch.setattr("isengard_desktop.services.trash_support.send2trash", trashed.append)
    ctx = make_app()
    problem = ctx.library.create_character("Anna", "zzq_vokzi", "")
    assert problem is None
    qtbot.waitUntil(lambda: bool(ctx.library.characters()), timeout=10_000)
    ch = ctx.library.characters()[0]
    folder = ctx.paths.characters / ch.folder
    close_app(qtbot, ctx)

    # what a kill -9 during an import leaves: a photo renamed into place with no row, a
    # staged temp file, a thumbnail temp file, and a file that is no photo
    src = make_photos(tmp_path / "src", 1)[0]
    orphan = folder / f"orphan-1a2b3c4d{src.suffix}"
    orphan.write_bytes(src.read_bytes())
    part = folder / ".photo.ab12cd34.part"
    part.write_bytes(b"half a photo")
    junk = folder / "junk-99999999.png"
    junk.write_bytes(b"not a photo")
    thumb_part = ctx.paths.thumbnails / "ab" / ".ab-256.jpg.0000aaaa.part"
    thumb_part.parent.mkdir(parents=True, exist_ok=True)
    thumb_part.write_bytes(b"x")
    for p in (orphan, part, junk, thumb_part):
        _age(p)

    ctx2 = make_app()
    qtbot.waitUntil(lambda: len(ctx2.library.images(ch.id)) == 1, timeout=10_000)
    (image,) = ctx2.library.images(ch.id)
    assert image.path == orphan and image.source == "recovered"
    qtbot.waitUntil(lambda: trashed == [str(junk)], timeout=10_000)
    assert not part.exists() and not thumb_part.exists()
