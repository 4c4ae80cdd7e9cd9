"""Player start-up since clips are decoded in a child: time from "show this clip" to frames
ready to paint, ours (clips child → cached JPEGs → Pillow) vs the old in-process decode.

* Clip: a 480p Wan-sized MP4 (832×480, 81 frames at 16 fps, moving noise so H.264 has work;
  ``--quick`` 33 frames), made once with PyAV in this process.
* Old (baseline): what the player did before, in the GUI process: ``probe`` +
  ``read_frames(max_side=640)`` with PyAV already imported (the best case for it).
* Ours, first show: ``python -m isengard_desktop.analysis_runtime clips preview`` spawned as the
  service spawns it (interpreter start, imports, decode, JPEG writes; empty cache), then the
  JPEGs read back with Pillow as the player's worker does.
* Ours, again: the cache hit the service answers without a child (``read_preview_info`` +
  the JPEGs read back).
* Repetitions: 3 (``--quick`` 2); medians. Goals: a cached show is at least as fast as the old
  decode (ratio old/ours ≥ 1.0); the first show costs at most 3× the old decode.

    .venv/bin/python benchmarks/clip_preview.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (REPO, emit_json, fmt_ms, fresh_home, median, prepare_env,  # noqa: E402
                     print_table, ratio)

sys.path.insert(0, str(REPO))


def make_clip(path: Path, frames: int) -> Path:
    import numpy as np

    from isengard_desktop.core.video.container import write_clip

    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, (480, 832, 3), dtype=np.uint8)
    return write_clip(path, (np.roll(base, i * 6, axis=1) for i in range(frames)), 16.0)


def read_jpegs(paths: list[Path]) -> int:
    import numpy as np
    from PIL import Image

    n = 0
    for p in paths:
        with Image.open(p) as im:
            n += int(np.asarray(im.convert("RGB")).shape[0] > 0)
    return n


def old_decode(clip: Path) -> int:
    from isengard_desktop.core.video.container import probe, read_frames

    frames = read_frames(clip, max_side=640)
    probe(clip)
    return len(frames)


def ours_first(clip: Path, cache: Path) -> int:
    from isengard_desktop.core.video import clip_record

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, "-m", "isengard_desktop.analysis_runtime", "clips",
                    "preview", str(clip), "--cache", str(cache)], check=True, env=env,
                   capture_output=True)
    info = clip_record.read_preview_info(clip_record.preview_dir(cache, clip))
    assert info is not None
    return read_jpegs(info.frame_paths())


def ours_again(clip: Path, cache: Path) -> int:
    from isengard_desktop.core.video import clip_record

    info = clip_record.read_preview_info(clip_record.preview_dir(cache, clip))
    assert info is not None
    return read_jpegs(info.frame_paths())


def timed(fn) -> tuple[float, int]:  # noqa: ANN001
    start = time.perf_counter()
    n = fn()
    return time.perf_counter() - start, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    frames, reps = (33, 2) if args.quick else (81, 3)
    prepare_env()
    with fresh_home("clip-preview") as home:
        return run(home, frames, reps)


def run(home: Path, frames: int, reps: int) -> int:
    work = home / "work"
    work.mkdir(parents=True)
    try:
        clip = make_clip(work / "wan480.mp4", frames)
        old_decode(clip)                                     # warm-up: av imported, file cached
        old, first, again = [], [], []
        for rep in range(reps):
            cache = work / f"cache{rep}"
            t, n = timed(lambda: old_decode(clip))
            old.append(t)
            assert n == frames
            t, n = timed(lambda c=cache: ours_first(clip, c))
            first.append(t)
            assert n == frames
            t, n = timed(lambda c=cache: ours_again(clip, c))
            again.append(t)
        figures = {"frames": frames, "old_s": median(old), "first_s": median(first),
                   "again_s": median(again),
                   "cached_vs_old": ratio(median(old), median(again)),
                   "first_over_old": ratio(median(first), median(old))}
        print_table(f"Clip preview, 832×480, {frames} frames (medians of {reps})", [
            ("old: in-process PyAV decode", fmt_ms(median(old))),
            ("ours, first show (child + JPEGs)", fmt_ms(median(first))),
            ("ours, again (cache)", fmt_ms(median(again))),
        ])
        emit_json("clip_preview", figures, {
            "cached_at_least_as_fast": figures["cached_vs_old"] >= 1.0,
            "first_within_3x": figures["first_over_old"] <= 3.0})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
