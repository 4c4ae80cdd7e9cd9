"""Issue 11 item 3: what an import killed half-way leaves behind is reconciled at start."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from isengard_desktop.core.dataset.reconcile import reconcile_folder, remove_stale_temp_files


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _age(path: Path, seconds: float = 60) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_orphans_are_adopted_and_stale_part_files_removed(tmp_path: Path) -> None:
    folder = tmp_path / "anna"
    folder.mkdir()
    known = folder / "known-11111111.png"
    known.write_bytes(_png(1))
    orphan = folder / "orphan-22222222.png"
    orphan.write_bytes(_png(2))
    (folder / "orphan-22222222.txt").write_text("red coat\n", encoding="utf-8")
    broken = folder / "broken-33333333.png"
    broken.write_bytes(b"not a picture")
    stale = folder / ".photo.abcd1234.part"
    stale.write_bytes(b"half")
    for p in (known, orphan, broken, stale):
        _age(p)
    fresh = folder / "landing-44444444.png"     # an import running right now
    fresh.write_bytes(_png(4))
    fresh_part = folder / ".landing.ef567890.part"
    fresh_part.write_bytes(b"half")
    started = time.time() - 5

    result = reconcile_folder(folder, known_paths={known},
                              known_sha256={hashlib.sha256(_png(1)).hexdigest()},
                              older_than=started)
    assert [r.path for r in result.adopt] == [orphan]
    row = result.adopt[0]
    assert (row.width, row.height) == (80, 96)
    assert row.sha256 == hashlib.sha256(_png(2)).hexdigest()
    assert row.caption == "red coat"
    assert result.unusable == [broken]
    assert result.removed == [stale]
    assert not stale.exists() and fresh_part.exists() and fresh.exists()


def test_duplicate_content_is_not_adopted_twice(tmp_path: Path) -> None:
    folder = tmp_path / "anna"
    folder.mkdir()
    copy = folder / "copy-55555555.png"
    copy.write_bytes(_png(1))
    _age(copy)
    result = reconcile_folder(folder, known_paths=set(),
                              known_sha256={hashlib.sha256(_png(1)).hexdigest()},
                              older_than=time.time())
    assert result.adopt == [] and result.unusable == [copy]


def test_stale_part_files_in_the_thumbnail_cache_are_removed(tmp_path: Path) -> None:
    cache = tmp_path / "thumbs"
    (cache / "ab").mkdir(parents=True)
    stale = cache / "ab" / ".ab12-256.jpg.1234abcd.part"
    stale.write_bytes(b"x")
    _age(stale)
    entry = cache / "ab" / "ab12-256.jpg"
    entry.write_bytes(b"jpeg")
    _age(entry)
    assert remove_stale_temp_files(cache, older_than=time.time(), recursive=True) == [stale]
    assert entry.exists()
