"""Shared helpers for the benchmarks. Not a benchmark itself: run directly (``make bench``
runs every ``benchmarks/*.py``) it prints one line and exits 0.

Rules every benchmark follows (ARCHITECTURE.md §6):

* ``ISENGARD_HOME`` points at a fresh temporary folder, removed afterwards; the user's own
  folders are never touched.
* ``QT_QPA_PLATFORM`` defaults to ``offscreen``; set it yourself (e.g. ``xcb``) to measure on a
  real display.
* Figures are ratios against a baseline measured in the same run, medians of several
  repetitions. The last line printed is one JSON object with the figures and ``goal_met``
  (one boolean per goal). The exit code is 0 even when a goal is missed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def prepare_env() -> None:
    """Offscreen Qt unless the caller chose a platform; no stray Qt logging noise."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@contextmanager
def fresh_home(tag: str) -> Iterator[Path]:
    """A new empty folder set as ``ISENGARD_HOME`` for the duration; removed afterwards."""
    old = os.environ.get("ISENGARD_HOME")
    root = Path(tempfile.mkdtemp(prefix=f"isengard-bench-{tag}-"))
    os.environ["ISENGARD_HOME"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("ISENGARD_HOME", None)
        else:
            os.environ["ISENGARD_HOME"] = old
        shutil.rmtree(root, ignore_errors=True)


def app_paths(home: Path):  # noqa: ANN201 - AppPaths, imported lazily
    """The app's folders under ``home`` (never the platform defaults)."""
    from isengard_desktop.core.paths import resolve_paths

    paths = resolve_paths({"ISENGARD_HOME": str(home)})
    assert paths.portable and Path(paths.data).is_relative_to(home), paths
    return paths.ensure()


# -- statistics ---------------------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (``pct`` in 0..100)."""
    if not values:
        return math.nan
    data = sorted(values)
    k = (len(data) - 1) * pct / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def rss_mib() -> float:
    """Resident memory of this process now (VmRSS), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource  # not Linux: peak RSS is the best we have (KiB on Linux, bytes on macOS)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


# -- output -------------------------------------------------------------------------------------

def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max((len(label) for label, _ in rows), default=0)
    print(f"\n{title}")
    print("-" * max(len(title), 20))
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    sys.stdout.flush()


def _clean(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit_json(name: str, figures: dict[str, object], goals: dict[str, bool]) -> None:
    """The benchmark's last line: one JSON object (figures, ``goal_met`` per goal)."""
    print(json.dumps({"benchmark": name, **_clean(figures),  # type: ignore[dict-item]
                      "goal_met": goals}, ensure_ascii=False), flush=True)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- test photos --------------------------------------------------------------------------------

def make_bench_photo(path: Path, size: tuple[int, int], seed: int, quality: int = 90) -> Path:
    """A photo-like JPEG: gradient, shapes and sensor-like noise, so it compresses (and
    decodes) like a real photo rather than a flat test card. Distinct per ``seed``."""
    import random

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    w, h = size
    top = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    grad = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3))
    img = Image.fromarray(grad.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(30):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(20, w // 2), y0 + rng.randrange(20, h // 2)
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noise = np.random.default_rng(seed).integers(-12, 13, (h, w, 3), dtype=np.int16)
    arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, "JPEG", quality=quality)
    return path


def _make_one(args: tuple[str, tuple[int, int], int]) -> str:
    path, size, seed = args
    return str(make_bench_photo(Path(path), size, seed))


def make_bench_photos(folder: Path, count: int, size: tuple[int, int],
                      workers: int = 2, prefix: str = "photo") -> list[Path]:
    """``count`` distinct photos in ``folder``, generated in parallel processes."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"{prefix}_{i:05d}.jpg"), size, i) for i in range(count)]
    with ProcessPoolExecutor(workers) as pool:
        return [Path(p) for p in pool.map(_make_one, jobs, chunksize=8)]


# -- bare import baseline (runs in worker threads or processes) ---------------------------------

def baseline_import_one(src: str, out_dir: str) -> int:
    """What any importer must do at least: read the file, decode every pixel, store the
    photo, make a 256 px thumbnail and save it. Returns the bytes read."""
    import io

    from PIL import Image

    with open(src, "rb") as fh:
        data = fh.read()
    im = Image.open(io.BytesIO(data))
    im.load()
    name = os.path.basename(src)
    with open(os.path.join(out_dir, name), "wb") as fh:
        fh.write(data)
    im.thumbnail((256, 256))
    stem = os.path.splitext(name)[0]
    im.save(os.path.join(out_dir, f"{stem}-256.jpg"), "JPEG", quality=85)
    return len(data)


def warm_worker() -> int:
    """Import Pillow in a pool worker before timing starts."""
    import PIL.Image

    return os.getpid() if PIL.Image else 0


if __name__ == "__main__":
    print("benchmarks/_common.py holds shared helpers; run startup.py, import_photos.py or "
          "grid.py instead.")
