"""The face cache prune: records of photos no longer in the library and of other analysis
versions are removed (with the bytes they held), the library's are kept, and nothing is
removed while the gate says an analysis child may be writing."""

from __future__ import annotations

import json
import threading

from isengard_desktop.core.faces.cache import FaceCache, prune_cache
from isengard_desktop.core.faces.records import ANALYSIS_VERSION
from tests.unit.test_face_identity import _face, _photo

KEEP, GONE, OTHER = "a1" * 32, "b2" * 32, "c3" * 32


def _seed(root):
    for detector in ("hog", "cnn"):
        cache = FaceCache(root, detector)
        for sha in (KEEP, GONE, OTHER):
            cache.put(_photo(sha, _face()))
    old = root / "faces" / f"v{ANALYSIS_VERSION - 1}" / "hog" / KEEP[:2] / f"{KEEP}.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"version": ANALYSIS_VERSION - 1}))
    stray = root / "faces" / f"v{ANALYSIS_VERSION}" / "hog" / "notes.txt"
    stray.write_text("not a record")
    return old, stray


def test_prune_removes_records_no_photo_has_and_old_versions(tmp_path):
    old, stray = _seed(tmp_path)
    hog, cnn = FaceCache(tmp_path, "hog"), FaceCache(tmp_path, "cnn")
    gone = [c.path_for(s) for c in (hog, cnn) for s in (GONE, OTHER)] + [old]
    size = sum(p.stat().st_size for p in gone)
    result = prune_cache(tmp_path, {KEEP}, threading.Lock(), lambda: True)
    assert (result.removed, result.freed_bytes, result.kept, result.stopped) == \
        (5, size, 2, False)
    assert hog.get(KEEP) is not None and cnn.get(KEEP) is not None
    assert not any(p.exists() for p in gone)
    assert not (tmp_path / "faces" / f"v{ANALYSIS_VERSION - 1}").exists()   # emptied folders
    assert not hog.path_for(GONE).parent.exists()
    assert stray.exists()                                   # only records are touched
    again = prune_cache(tmp_path, {KEEP}, threading.Lock(), lambda: True)
    assert (again.removed, again.kept) == (0, 2)


def test_prune_removes_nothing_while_the_gate_is_closed_and_stops_when_it_closes(tmp_path):
    _seed(tmp_path)
    hog = FaceCache(tmp_path, "hog")
    closed = prune_cache(tmp_path, set(), threading.Lock(), lambda: False)
    assert closed.stopped and closed.removed == 0
    assert hog.get(GONE) is not None and hog.get(KEEP) is not None
    answers = iter([True, True])                 # a child starts after two removals
    half = prune_cache(tmp_path, set(), threading.Lock(), lambda: next(answers, False))
    assert half.stopped and half.removed == 2
    assert prune_cache(tmp_path, set(), threading.Lock(), lambda: True).removed == 5


def test_prune_asks_the_gate_holding_the_lock(tmp_path):
    _seed(tmp_path)
    lock = threading.Lock()
    held = []
    prune_cache(tmp_path, {KEEP}, lock, lambda: held.append(lock.locked()) or True)
    assert held and all(held)


def test_prune_of_a_missing_cache_does_nothing(tmp_path):
    result = prune_cache(tmp_path / "nothing", {KEEP}, threading.Lock(), lambda: True)
    assert (result.removed, result.kept, result.stopped) == (0, 0, False)


def test_a_walk_past_many_kept_records_stops_when_asked(tmp_path):
    """Shutting down during a prune of a big cache that keeps almost everything: the walk
    stops within a few hundred records instead of holding the app's quit to its end."""
    cache = FaceCache(tmp_path, "hog")
    keep = {f"{i:064x}" for i in range(700)}
    for sha in keep:
        cache.put(_photo(sha, _face()))
    asked = [0]

    def allowed() -> bool:
        asked[0] += 1
        return False                       # the app began shutting down

    result = prune_cache(tmp_path, keep, threading.Lock(), allowed)
    assert result.stopped and result.removed == 0 and result.kept < 700
    assert all(cache.get(sha) is not None for sha in keep)
