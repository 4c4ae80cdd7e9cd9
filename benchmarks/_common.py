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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# Compiled bytecode for child processes: an installed app has its .pyc files (pip and
# PyInstaller write them), so a benchmark child must not recompile every module each run
# (``PYTHONDONTWRITEBYTECODE`` in a developer's or CI's environment made start-up ~80 ms
# slower than what a user sees). Written under the temp folder, never into the checkout.
PYCACHE_PREFIX = Path(tempfile.gettempdir()) / "isengard-bench-pycache"


def prepare_env() -> None:
    """Offscreen Qt unless the caller chose a platform; children write and reuse bytecode
    (under ``PYCACHE_PREFIX``) as an installed app would."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE_PREFIX))


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


def wait_until(app, cond, timeout: float = 60.0, what: str = "condition") -> None:  # noqa: ANN001
    """Process Qt events until ``cond()`` holds; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.002)


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



# -- tiny training jobs (trainer_overhead.py, trainer_step.py) ----------------------------------

TRAINER_MODULE = "isengard_desktop.training_runtime"

_BUILD_TINY = r"""
import sys
from pathlib import Path
from isengard_desktop.training_runtime import tiny_models as tiny
model, data, count, size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tiny.build_sd15(model, prediction_type="epsilon", seed=0)
tiny.make_dataset(data, count=count, size=(size, size))
"""


def set_threads(threads: int) -> None:
    """Fix the CPU thread count of every torch child started from now on (the app's runner
    passes this process's environment on), so both sides of a comparison use the same."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)


def trainer_env(threads: int | None = None) -> dict[str, str]:
    """The environment the app's runner gives a built-in trainer child (``TrainingService._spawn``
    + ``BuiltinTrainer.build_launch``: this checkout first on ``PYTHONPATH``, unbuffered UTF-8,
    offline), for children started directly by a benchmark."""
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *rest])
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1")
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def build_tiny_sd15(root: Path, images: int = 4, size: int = 64) -> tuple[Path, Path]:
    """The tiny random SD1.5-like model of the trainer tests (``training_runtime.tiny_models``)
    and a small captioned dataset, built in a child process (this process stays free of torch).
    Returns (model folder, dataset folder)."""
    import subprocess

    model, data = root / "tiny-sd15", root / "tiny-data"
    proc = subprocess.run([sys.executable, "-c", _BUILD_TINY, str(model), str(data),
                           str(images), str(size)], cwd=REPO, env=trainer_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the tiny model failed:\n{proc.stderr[-3000:]}")
    return model, data


def tiny_job(model: Path, data: Path, **fields: object):  # noqa: ANN201 - TrainingJob (lazy)
    """A TrainingJob for the tiny SD1.5-like model: 64 px, no samples, one checkpoint at the
    end (plus the LoRA), everything else the spec's defaults unless given in ``fields``."""
    from isengard_desktop.core.training.spec import TrainingJob, new_job_id

    values: dict[str, object] = {
        "job_id": new_job_id(), "character_id": 1, "character_name": "Bench",
        "trigger_word": "sks", "family": "sd15", "base_model": str(model),
        "dataset_dir": str(data), "output_name": "bench_lora", "resolution": 64,
        "sample_every": 0, "checkpoint_every": 0, "device": "cpu"}
    values.update(fields)
    job = TrainingJob(**values)  # type: ignore[arg-type]
    job.validate()
    return job


def write_photo_list(job, job_dir: Path) -> None:  # noqa: ANN001 - TrainingJob (lazy)
    """The job's ``dataset.json`` (what the app writes from the database), made from the
    benchmark's dataset folder: the trainer reads only that list."""
    from isengard_desktop.core.training.dataset_list import entries_from_folder, write_dataset_list

    write_dataset_list(job_dir, entries_from_folder(job.dataset_dir))


class TrainerRun:
    """One trainer child run: protocol events with their arrival times, wall time, exit code."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict]] = []   # (time.time() at arrival, event)
        self.cpu_at: list[float] = []    # the child's CPU seconds when each event arrived
        self.wall_s = math.nan
        self.child_cpu_s = math.nan    # user + system CPU of the child (and anything it waited for)
        self.parent_cpu_s = math.nan   # this process's CPU while the child ran (draining stdout)
        self.returncode: int | None = None
        self.stderr_path: Path | None = None

    def steps(self) -> list[tuple[int, float, dict]]:
        """(step, arrival time, event) of every step event."""
        return [(int(e["step"]), t, e) for t, e in self.events if e.get("event") == "step"]

    def step_cpu(self) -> list[tuple[int, float]]:
        """(step, the child's CPU seconds when that step's event arrived)."""
        return [(int(e["step"]), c) for (_, e), c in zip(self.events, self.cpu_at, strict=True)
                if e.get("event") == "step"]

    def failure(self) -> str:
        """Why the run did not complete ('' if it did)."""
        if self.returncode == 0 and any(e.get("event") == "done" for _, e in self.events):
            return ""
        errors = [e for _, e in self.events if e.get("event") == "error"]
        tail = ""
        if self.stderr_path is not None and self.stderr_path.is_file():
            tail = self.stderr_path.read_text(errors="replace")[-3000:]
        return f"exit {self.returncode}; error events {errors}; stderr tail:\n{tail}"


def run_trainer(job, job_dir: Path, env: dict[str, str], timeout: float = 900) -> TrainerRun:  # noqa: ANN001
    """Run ``python -m isengard_desktop.training_runtime train`` on ``job`` as a plain
    subprocess: stdout (the protocol) drained line by line with arrival times, stderr straight
    into ``job_dir/stderr.log``, stdin an open pipe (as under the app's runner). The wall time
    runs from just before the spawn to the process's exit."""
    import subprocess
    import time

    job_dir.mkdir(parents=True, exist_ok=True)
    spec = job_dir / "job.json"
    spec.write_text(job.to_json(), encoding="utf-8")
    write_photo_list(job, job_dir)
    run = TrainerRun()
    run.stderr_path = job_dir / "stderr.log"
    argv = [sys.executable, "-m", TRAINER_MODULE, "train", "--job", str(spec),
            "--job-dir", str(job_dir)]
    with open(run.stderr_path, "wb") as err:
        usage0, cpu0 = children_cpu_s(), time.process_time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                cwd=job_dir, env=env, start_new_session=True)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                now = time.time()
                cpu = proc_cpu_s(proc.pid)
                try:
                    run.events.append((now, json.loads(raw)))
                    run.cpu_at.append(cpu)
                except ValueError:
                    pass
            run.returncode = proc.wait(timeout=timeout)
            run.wall_s = time.perf_counter() - t0
            run.parent_cpu_s = time.process_time() - cpu0
            run.child_cpu_s = children_cpu_s() - usage0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
    return run


def proc_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a running process, all threads (``/proc/PID/stat``, clock
    ticks: 10 ms steps, so use it over windows of seconds); NaN where there is no /proc."""
    try:
        with open(f"/proc/{pid or 'self'}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's children that have been waited for."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def step_stats(stamps: Sequence[tuple[int, float]], warmup: int) -> dict[str, float]:
    """Step timing from (step, time the step ended) pairs, skipping steps ≤ ``warmup``:
    ``mean`` = (end of the last step − end of step ``warmup``) / steps counted, ``median`` of
    the single-step durations, ``span`` from the first to the last step, ``steps`` counted."""
    stamps = sorted(stamps)
    by_step = dict(stamps)
    window = [(s, t) for s, t in stamps if s > warmup and s - 1 in by_step]
    if not window:
        return {"mean": math.nan, "median": math.nan, "span": math.nan, "steps": 0}
    durations = [t - by_step[s - 1] for s, t in window]
    first_counted = window[0][0] - 1
    return {"mean": (window[-1][1] - by_step[first_counted]) / (window[-1][0] - first_counted),
            "median": median(durations),
            "span": stamps[-1][1] - stamps[0][1],
            "steps": len(durations)}


def machine_load() -> str:
    """The 1/5/15-minute load averages and the CPU count, for the report."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


if __name__ == "__main__":
    print("benchmarks/_common.py holds shared helpers; run startup.py, import_photos.py, "
          "grid.py, trainer_overhead.py or trainer_step.py instead.")
