"""Photo import: the app's real import vs a bare Pillow loop on both cores, and UI smoothness.

* Generates N distinct photo-like 1024×768 JPEGs once (≈200 KB each, in parallel).
* App: ``build_app()`` in this process (window shown, offscreen by default), one character,
  ``LibraryService.import_photos(character, [folder])``, timed until ``task.finished``.
  Each repetition uses a fresh ``ISENGARD_HOME`` (the thumbnail cache is keyed by content, so
  a second import into the same home would find every thumbnail already made).
* Baseline: for every file, read it, decode every pixel, write the photo to a folder, make a
  256 px thumbnail and save it — what any importer must do at least — spread over 2 workers.
  Both a thread pool and a process pool are measured (pools started and warmed before the clock
  starts); the faster one is the baseline.
* Figure: throughput ratio = baseline time / app time (goal ≥ 0.8).
* UI smoothness: a 16 ms precise QTimer runs on the UI thread during the app import; each
  tick's lateness (actual interval − 16 ms) gives p50/p99/max (goal p99 ≤ 16 ms). The same
  timer on the idle app (window shown, nothing running) is the reference.

    .venv/bin/python benchmarks/import_photos.py [--quick] [--count N] [--reps R]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    app_paths,
    baseline_import_one,
    emit_json,
    fmt_ms,
    fresh_home,
    make_bench_photos,
    median,
    percentile,
    prepare_env,
    print_table,
    ratio,
    wait_until,
    warm_worker,
)

GOAL_THROUGHPUT = 0.8
GOAL_P99_LATE_MS = 16.0
TICK_MS = 16
SIZE = (1024, 768)
WORKERS = 2


class TickRecorder:
    """A precise 16 ms timer on the UI thread; lateness of each tick in ms."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.stamps: list[float] = []

    def _tick(self) -> None:
        self.stamps.append(time.perf_counter())

    def start(self) -> None:
        self.stamps = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        s = self.stamps
        return [(b - a) * 1000.0 - TICK_MS for a, b in itertools.pairwise(s)]


def run_baseline(pool: Executor, files: list[Path], out_dir: Path) -> float:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    list(pool.map(baseline_import_one, [str(f) for f in files],
                  [str(out_dir)] * len(files), chunksize=4))
    elapsed = time.perf_counter() - t0
    shutil.rmtree(out_dir, ignore_errors=True)
    return elapsed


def idle_lateness(app, seconds: float, home: Path) -> list[float]:  # noqa: ANN001
    """Tick lateness with the app built and shown but idle (the reference)."""
    from PySide6.QtCore import QEventLoop, QTimer

    from isengard_desktop.app import build_app

    ctx = build_app(app_paths(home), install_excepthook=False)
    ctx.window.show()
    wait_until(app, lambda: ctx.library.is_ready, what="library ready")
    rec = TickRecorder()
    loop = QEventLoop()
    rec.start()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    late = rec.stop()
    close_app(app, ctx)
    return late


def close_app(app, ctx) -> None:  # noqa: ANN001
    ctx.window.close()
    from isengard_desktop.lifecycle import run   # the app closes as __main__ closes it

    run(ctx.aclose(), app)
    ctx.window.deleteLater()
    app.processEvents()


def run_app_import(app, home: Path, source: Path,  # noqa: ANN001
                   expected: int) -> tuple[float, list[float], float]:
    """Returns (seconds, tick lateness list, seconds until the second phase began)."""
    from PySide6.QtCore import QEventLoop, QTimer

    from isengard_desktop.app import build_app

    ctx = build_app(app_paths(home), install_excepthook=False)
    ctx.window.show()
    errors: list[str] = []
    ctx.library.failed.connect(errors.append)
    wait_until(app, lambda: ctx.library.is_ready, what="library ready")
    created: list[int] = []
    problem = ctx.library.create_character("Bench Subject", "bnchsubj", "benchmark",
                                           on_created=lambda c: created.append(c.id))
    if problem:
        raise RuntimeError(problem)
    wait_until(app, lambda: bool(created) or bool(errors), what="character created")
    if errors:
        raise RuntimeError("; ".join(errors))

    loop = QEventLoop()
    rec = TickRecorder()
    watchdog = QTimer()
    watchdog.setSingleShot(True)
    watchdog.timeout.connect(lambda: (errors.append("import timed out"), loop.quit()))
    watchdog.start(30 * 60 * 1000)
    rec.start()
    t0 = time.perf_counter()
    task = ctx.library.import_photos(created[0], [source])
    if task is None:
        raise RuntimeError("import_photos refused: " + "; ".join(errors))
    phases: dict[str, float] = {}
    task.progressed.connect(lambda pr: phases.setdefault(pr.label, time.perf_counter() - t0))
    task.finished.connect(lambda _outcome: loop.quit())
    loop.exec()
    elapsed = time.perf_counter() - t0
    late = rec.stop()
    watchdog.stop()
    outcome = task.outcome
    added = len(outcome.added) if outcome else 0
    close_app(app, ctx)
    if errors or added != expected:
        rejected = outcome.report.rejected[:3] if outcome else []
        raise RuntimeError(f"import added {added} of {expected}: {errors} {rejected}")
    # The import reports two phases: checking/copying photos, then captions and thumbnails
    # (progress labels; ~10 Hz, so the boundary is known to about 0.1 s).
    from isengard_desktop.core.dataset.importer import PROGRESS_LABEL

    second = [t for label, t in phases.items() if label != PROGRESS_LABEL]
    return elapsed, late, min(second) if second else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 photos, 2 repetitions")
    parser.add_argument("--count", type=int, default=None, help="photos (default 1000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    args = parser.parse_args(argv)
    count = args.count or (200 if args.quick else 1000)
    reps = args.reps or (2 if args.quick else 3)
    prepare_env()

    from PySide6.QtWidgets import QApplication

    with fresh_home("import") as root:
        t = time.perf_counter()
        files = make_bench_photos(root / "source", count, SIZE, workers=WORKERS)
        gen_s = time.perf_counter() - t
        mb = sum(f.stat().st_size for f in files) / 2**20
        print(f"generated {count} photos {SIZE[0]}×{SIZE[1]} ({mb:.0f} MiB) in {gen_s:.1f} s",
              flush=True)

        app = QApplication.instance() or QApplication([sys.argv[0]])
        threads = ThreadPoolExecutor(WORKERS)
        procs = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"))
        for pool in (threads, procs):
            [f.result() for f in [pool.submit(warm_worker) for _ in range(WORKERS * 2)]]

        idle = idle_lateness(app, 1.5, root / "home-idle")
        app_times: list[float] = []
        phase1_times: list[float] = []
        thread_times: list[float] = []
        proc_times: list[float] = []
        lateness: list[float] = []
        for rep in range(reps):
            def do_app(rep: int = rep) -> None:
                elapsed, late, phase1 = run_app_import(app, root / f"home-{rep}",
                                                       root / "source", count)
                app_times.append(elapsed)
                phase1_times.append(phase1)
                lateness.extend(late)
                print(f"  rep {rep + 1}: app import {elapsed:.2f} s", flush=True)

            def do_base(rep: int = rep) -> None:
                thread_times.append(run_baseline(threads, files, root / "out-thread"))
                proc_times.append(run_baseline(procs, files, root / "out-proc"))
                print(f"  rep {rep + 1}: baseline threads {thread_times[-1]:.2f} s, "
                      f"processes {proc_times[-1]:.2f} s", flush=True)

            for step in ((do_app, do_base) if rep % 2 == 0 else (do_base, do_app)):
                step()
            shutil.rmtree(root / f"home-{rep}", ignore_errors=True)
        threads.shutdown()
        procs.shutdown()

    app_s = median(app_times)
    phase1_s = median(phase1_times)
    thr_s, proc_s = median(thread_times), median(proc_times)
    base_kind, base_s = ("threads", thr_s) if thr_s <= proc_s else ("processes", proc_s)
    throughput = ratio(base_s, app_s)
    p50, p99, worst = (percentile(lateness, 50), percentile(lateness, 99),
                       max(lateness, default=float("nan")))
    i50, i99, imax = percentile(idle, 50), percentile(idle, 99), max(idle, default=float("nan"))
    print_table(f"Import {count} photos (median of {reps} repetitions, {WORKERS} workers "
                "for the baseline)", [
        ("app import (LibraryService)", f"{app_s:.2f} s  = {count / app_s:.0f} images/s"),
        ("  phase 1: check, hash, copy", f"{phase1_s:.2f} s"),
        ("  phase 2: captions, thumbnails, DB", f"{app_s - phase1_s:.2f} s"),
        ("baseline, thread pool", f"{thr_s:.2f} s  = {count / thr_s:.0f} images/s"),
        ("baseline, process pool", f"{proc_s:.2f} s  = {count / proc_s:.0f} images/s"),
        ("baseline used", f"{base_kind} (the faster)"),
        ("throughput ratio baseline/app", f"{throughput:.2f}  (goal ≥ {GOAL_THROUGHPUT})"),
        ("UI tick lateness during import", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                                           f"max {worst:.1f} ms  (goal p99 ≤ "
                                           f"{GOAL_P99_LATE_MS:.0f} ms; {len(lateness)} ticks)"),
        ("UI tick lateness, idle app", f"p50 {i50:.1f} ms, p99 {i99:.1f} ms, max {imax:.1f} ms"),
        ("all app runs", ", ".join(fmt_ms(x) for x in app_times)),
    ])
    emit_json("import_photos", {
        "photos": count, "repetitions": reps, "photo_size": list(SIZE),
        "app_s": app_s, "app_images_per_s": count / app_s,
        "app_phase1_check_copy_s": phase1_s,
        "app_phase2_sidecars_thumbs_db_s": app_s - phase1_s,
        "baseline_kind": base_kind, "baseline_s": base_s,
        "baseline_images_per_s": count / base_s,
        "baseline_threads_s": thr_s, "baseline_processes_s": proc_s,
        "throughput_ratio": throughput,
        "ui_lateness_ms": {"p50": p50, "p99": p99, "max": worst, "ticks": len(lateness)},
        "idle_lateness_ms": {"p50": i50, "p99": i99, "max": imax},
    }, {"throughput_ratio_ge_0_8": bool(throughput >= GOAL_THROUGHPUT),
        "ui_p99_lateness_le_16ms": bool(p99 <= GOAL_P99_LATE_MS)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
