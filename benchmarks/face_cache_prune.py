"""Face cache prune: ``core.faces.cache.prune_cache`` (what the face analysis service runs
once per start, on its worker thread) vs a bare loop that globs the same records and
unlinks the stale ones (goal ≤ 1.3×: the per-record lock and gate cost little).

* Cache: N records (default 10,000; ``--quick`` 2,000) as the analysis child writes them
  (one face each, ~3.5 KB of JSON), split over the ``hog`` and ``cnn`` folders; half belong to
  photos still in the library (kept), half not (removed).
* Bare: the same job done plainly: ``glob("v*/*/??/*.json")``, ``stat`` (the bytes freed)
  and ``unlink`` of each record whose name is not kept, then ``rmdir`` of each emptied
  folder; no lock, no gate.
* Ours: ``prune_cache(root, keep, lock, allowed)`` with a real ``threading.Lock`` and a gate
  that reads a set, as the service passes them.
* Each repetition writes a fresh cache (untimed); 5 repetitions (``--quick`` 2),
  alternating. Figure: the median time ratio ours/bare. Also ours per 1,000 records.

    .venv/bin/python benchmarks/face_cache_prune.py [--quick] [--records N] [--reps R]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    emit_json, fresh_home, median, prepare_env, print_table, ratio,
)

GOAL = 1.3


def seed(root: Path, count: int) -> set[str]:
    """Write ``count`` records under ``root``; return the sha256 of the half to keep."""
    from isengard_desktop.core.faces.cache import FaceCache
    from isengard_desktop.core.faces.records import Face, PhotoFaces

    face = Face(box=(100.0, 100.0, 300.0, 300.0),
                landmarks=((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0)),
                score=1.0, rel_size=0.25, sharpness=120.0, yaw=3.0, brightness=128.0,
                embedding=tuple((i % 17) / 170 - 0.05 for i in range(128)))
    caches = [FaceCache(root, "hog"), FaceCache(root, "cnn")]
    keep: set[str] = set()
    for i in range(count):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        caches[i % 2].put(PhotoFaces(sha, 800, 800, (face,)))
        if i % 4 < 2:
            keep.add(sha)
    return keep


def bare(root: Path, keep: set[str]) -> int:
    removed = freed = 0
    parents = set()
    for path in (root / "faces").glob("v*/*/??/*.json"):
        if path.stem not in keep:
            freed += path.stat().st_size
            path.unlink()
            parents.add(path.parent)
            removed += 1
    for folder in parents:
        if not any(folder.iterdir()):
            folder.rmdir()
    assert freed > 0
    return removed


def ours(root: Path, keep: set[str]) -> int:
    from isengard_desktop.core.faces.cache import prune_cache

    live: set[object] = set()
    return prune_cache(root, keep, threading.Lock(), lambda: not live).removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int)
    parser.add_argument("--reps", type=int)
    args = parser.parse_args()
    count = args.records or (2_000 if args.quick else 10_000)
    reps = args.reps or (2 if args.quick else 5)
    prepare_env()
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    with fresh_home("prune") as home:
        root = home / "cache"
        for _ in range(reps):
            for name, fn in (("bare", bare), ("ours", ours)):
                shutil.rmtree(root, ignore_errors=True)
                keep = seed(root, count)
                start = time.perf_counter()
                removed = fn(root, keep)
                times[name].append(time.perf_counter() - start)
                assert removed == count - len(keep), (name, removed)
    b, o = median(times["bare"]), median(times["ours"])
    r = ratio(o, b)
    print_table(f"Face cache prune, {count} records (half stale), {reps} repetitions", [
        ("bare glob + unlink", f"{b * 1000:.0f} ms"),
        ("prune_cache", f"{o * 1000:.0f} ms ({o / count * 1e6:.0f} ms per 1,000 records)"),
        ("ratio ours/bare", f"{r:.2f} (goal ≤ {GOAL})"),
    ])
    emit_json("face_cache_prune", {"records": count, "bare_s": b, "ours_s": o, "ratio": r,
                                   "ours_ms_per_1000": o / count * 1e6},
              {"ratio": r <= GOAL})


if __name__ == "__main__":
    main()
