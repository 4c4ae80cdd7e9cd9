"""Issue 11 item 3: an import killed with SIGKILL half-way leaves at most one batch of photos
without a database row, and the next start records those and removes the temp files.

The import runs in a real child process (tests/helpers/import_child.py: the library service
on a temp data folder); the test kills it once some rows are committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from isengard_desktop.core.dataset.decode import SUPPORTED_EXTS
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.library import LibraryService
from tests.helpers.service_harness import start_library

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = 400
WAIT = 60_000


def _noise_photos(folder: Path, count: int) -> None:
    """Small distinct PNGs (noise: they do not compress, so each takes real work)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        pixels = rng.integers(0, 255, (160, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:04d}.png")


def _photo_files(folder: Path) -> set[Path]:
    return {p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
            and p.suffix.lower() in SUPPORTED_EXTS}


def _rows(data: Path, db: Path) -> tuple[set[Path], str]:
    """The recorded photo paths and Anna's folder name, read straight from the database
    file the killed child left (SQLite recovers its WAL on open). Paths in the database are
    relative to the data folder."""
    conn = sqlite3.connect(db)
    try:
        folder = conn.execute("SELECT folder FROM characters").fetchone()[0]
        paths = {data / r[0] for r in conn.execute("SELECT path FROM images")}
    finally:
        conn.close()
    return paths, folder


def test_sigkill_mid_import_leaves_at_most_one_batch_without_rows(qtbot, tmp_path):
    source = tmp_path / "source"
    _noise_photos(source, PHOTOS)
    paths = resolve_paths().ensure()
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")
    child = subprocess.Popen([sys.executable, "-m", "tests.helpers.import_child", str(source)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    seen: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seen.append(line.strip())
            if line.startswith("rows ") and int(line.split()[1]) > 0:
                break       # some batches are committed: kill it here
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        stderr = child.stderr.read() if child.stderr else ""
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    assert child.returncode == -signal.SIGKILL, (seen, stderr[-2000:])
    assert not any(s.startswith("done") for s in seen), "the import ended before the kill"

    recorded, folder_name = _rows(paths.data, paths.db_file)
    folder = paths.characters / folder_name
    on_disk = _photo_files(folder)
    batch = LibraryService(paths).import_batch_files
    # every row names a file; at most one batch of files has no row yet
    assert recorded <= on_disk
    assert 0 < len(recorded) <= len(on_disk) <= len(recorded) + batch, (
        len(recorded), len(on_disk))
    assert len(on_disk) < PHOTOS, "killed after every photo had landed: proves nothing"

    # the next start: the library adopts the photos without a row and removes temp files
    _, library = start_library(qtbot, WAIT)
    try:
        character = library.characters()[0]
        qtbot.waitUntil(lambda: library.image_count(character.id) == len(on_disk),
                        timeout=WAIT)
        assert {i.path for i in library.images(character.id)} == _photo_files(folder)
        qtbot.waitUntil(lambda: not list(folder.glob("*.part"))
                        and not list(paths.thumbnails.rglob("*.part")), timeout=WAIT)
    finally:
        library.shutdown()
