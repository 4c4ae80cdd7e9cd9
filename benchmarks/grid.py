"""The Dataset grid with 10,000 images vs an empty library: first paint, memory, scrolling.

Set-up (not timed): a library of N rows (default 10,000; --quick 2,000) is written straight
into a fresh database through ``Repository.add_images``: 200 distinct 640×480 JPEGs, each
hard-linked under N/200 names, one distinct sha256 per row (so the grid treats every row as
a different photo). Each measurement is a fresh child process running ``build_app()``
with the Dataset tab current and the window shown (offscreen by default):

* ``empty``  the baseline: a library with no characters and no images.
* ``warm``   N rows, every thumbnail already in the disk cache (what the app's own import
             leaves behind: it writes each photo's thumbnail).
* ``cold``   the same N rows with the thumbnail cache emptied before the run, so the grid makes
             each visible thumbnail from the photo (first open after the cache was cleared).

Figures (medians over repetitions; runs alternate):

* first paint: ``build_app()`` → end of the first paint of the grid viewport once the library
  is loaded and the model holds every row. Ratio N-row / empty (goal ≤ 1.5×).
* visible thumbnails: first paint → every tile in view shows its thumbnail (informative).
* RSS (VmRSS) once the first screen is complete, and after scrolling through the whole grid.
  Ratios N-row / empty (goals ≤ 1.5× after first screen, ≤ 2× after scrolling).
* scrolling: the grid is scrolled by one page at a time to the end; each step's time
  (scroll + event processing + the viewport's repaint) is one frame. p50/p99/max
  (goal p99 ≤ 16 ms, i.e. 60 frames a second, for both warm and cold).

The goals other than the first-paint ratio are the benchmark author's proposal.

    .venv/bin/python benchmarks/grid.py [--quick] [--rows N] [--reps R]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO,
    app_paths,
    emit_json,
    fmt_ms,
    fresh_home,
    make_bench_photos,
    median,
    percentile,
    prepare_env,
    print_table,
    ratio,
    rss_mib,
)

DISTINCT = 200
PHOTO_SIZE = (640, 480)
GOAL_FIRST_PAINT = 1.5
GOAL_RSS = 1.5
GOAL_RSS_SCROLLED = 2.0
GOAL_FRAME_MS = 16.0
CHILD_TIMEOUT_S = 300


# ---------------------------------------------------------------------------------- set-up

def build_library(home: Path, rows: int, photos: list[Path], thumbnails: bool) -> None:
    """Write ``rows`` image rows (and their files) into a fresh library under ``home``."""
    from isengard_desktop.core.dataset.thumbnails import ensure_thumbnail, thumbnail_path
    from isengard_desktop.core.db.repository import Repository
    from isengard_desktop.core.db.records import NewImage
    from isengard_desktop.core.db.schema import connect

    paths = app_paths(home)
    folder_name = "grid-bench"
    folder = paths.characters / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    conn = connect(paths.db_file)
    try:
        repo = Repository(conn, paths.data)
        character = repo.create_character("Grid Bench", "gridbench", "benchmark", folder_name)
        thumbs: list[Path] = []
        if thumbnails:
            thumbs = [ensure_thumbnail(p, paths.thumbnails, hashlib.sha256(p.read_bytes())
                                       .hexdigest()) for p in photos]
        items = []
        for i in range(rows):
            src = photos[i % len(photos)]
            dest = folder / f"{src.stem}-{i:05d}.jpg"
            _link(src, dest)
            sha = hashlib.sha256(f"grid-bench-row-{i}".encode()).hexdigest()
            if thumbnails:
                target = thumbnail_path(paths.thumbnails, sha)
                target.parent.mkdir(parents=True, exist_ok=True)
                _link(thumbs[i % len(thumbs)], target)
            items.append(NewImage(path=dest, sha256=sha, width=PHOTO_SIZE[0],
                                  height=PHOTO_SIZE[1],
                                  caption=f"photo of gridbench, picture {i}", source=str(src)))
        added = repo.add_images(character.id, items)
        assert len(added) == rows, (len(added), rows)
    finally:
        conn.close()


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


# ---------------------------------------------------------------------------------- child

def child(home: Path, expect: int, scroll: bool) -> dict[str, object]:
    """One measurement in this (fresh) process; returns the figures."""
    prepare_env()
    from PySide6.QtCore import QEvent, QObject, QPoint, QTimer
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    from isengard_desktop.app import build_app

    paths = app_paths(home)
    out: dict[str, object] = {"rss_before_build_mib": rss_mib()}

    class ViewportProbe(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.paints = 0
            self.first_done: float | None = None
            self.armed = False

        def eventFilter(self, obj, event) -> bool:  # noqa: ANN001, N802
            if event.type() == QEvent.Type.Paint:
                self.paints += 1
                if self.first_done is None and not self.armed and ready():
                    self.armed = True
                    QTimer.singleShot(0, self._done)
            return False

        def _done(self) -> None:
            self.first_done = time.perf_counter()

    t0 = time.perf_counter()
    ctx = build_app(paths, install_excepthook=False)
    dataset = ctx.tabs["Dataset"]
    grid = dataset.grid  # type: ignore[attr-defined]
    model = grid.grid_model

    def ready() -> bool:
        return ctx.library.is_ready and model.rowCount() == expect

    probe = ViewportProbe()
    grid.viewport().installEventFilter(probe)
    ctx.window.tabs.setCurrentWidget(dataset)
    ctx.window.show()
    spin(app, lambda: probe.first_done is not None, 120, "first paint of the grid")
    out["first_paint_s"] = probe.first_done - t0  # type: ignore[operator]
    out["rss_first_paint_mib"] = rss_mib()

    def visible_rows() -> list[int]:
        vp = grid.viewport().rect()
        first = grid.indexAt(QPoint(grid.gridSize().width() // 2, 2))
        if not first.isValid():
            first = grid.indexAt(QPoint(grid.gridSize().width() // 2,
                                        grid.gridSize().height() // 2))
        if not first.isValid():
            return []
        rows, row = [], first.row()
        while row < model.rowCount():
            rect = grid.visualRect(model.index(row))
            if rect.top() >= vp.bottom():
                break
            if rect.intersects(vp):
                rows.append(row)
            row += 1
        return rows

    def thumbs_shown() -> bool:
        for row in visible_rows():
            rec = model.record(row)
            pix = model.data(model.index(row), 1)  # DecorationRole
            if not isinstance(pix, QPixmap) and not ctx.thumbnails.has_failed(rec.sha256):
                return False
        return True

    t1 = time.perf_counter()
    spin(app, thumbs_shown, 120, "visible thumbnails")
    out["visible_thumbs_s"] = time.perf_counter() - t1
    sb = grid.verticalScrollBar()
    # Batched layout: wait until the scroll range stops growing (every row laid out).
    last, stable_since = -1, time.perf_counter()
    while time.perf_counter() - stable_since < 0.3:
        app.processEvents()
        if sb.maximum() != last:
            last, stable_since = sb.maximum(), time.perf_counter()
        time.sleep(0.005)
    out["settled_s"] = time.perf_counter() - t0
    out["rss_settled_mib"] = rss_mib()
    out["rows_shown"] = model.rowCount()
    out["visible_tiles"] = len(visible_rows())

    frames: list[float] = []
    frames_cpu: list[float] = []   # the UI thread's own CPU time per frame (load-independent)
    missed = 0
    if scroll and expect:
        sb.setValue(0)
        app.processEvents()
        while sb.value() < sb.maximum():
            probe.paints = 0
            t, c = time.perf_counter(), time.thread_time()
            sb.setValue(min(sb.value() + sb.pageStep(), sb.maximum()))
            while probe.paints == 0 and time.perf_counter() - t < 1.0:
                app.processEvents()
            if probe.paints == 0:
                missed += 1
            frames.append(time.perf_counter() - t)
            frames_cpu.append(time.thread_time() - c)
        spin(app, lambda: True, 1, "")
    out["frames_ms"] = [f * 1000 for f in frames]
    out["frames_cpu_ms"] = [f * 1000 for f in frames_cpu]
    out["frames_without_paint"] = missed
    out["scroll_range_px"] = sb.maximum()
    out["page_step_px"] = sb.pageStep()
    out["rss_scrolled_mib"] = rss_mib()
    print("BENCH " + json.dumps(out), flush=True)
    ctx.window.close()
    from isengard_desktop.lifecycle import run   # the app closes as __main__ closes it

    run(ctx.aclose(), app)
    return out


def spin(app, cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    app.processEvents()
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.001)


def run_child(home: Path, expect: int, scroll: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(home),
           "--rows", str(expect)] + (["--scroll"] if scroll else [])
    env = dict(os.environ, ISENGARD_HOME=str(home))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH {")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"child failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(line[len("BENCH "):])


# ---------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 2 repetitions")
    parser.add_argument("--rows", type=int, default=None, help="images (default 10,000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scroll", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.rows or 0, args.scroll)
        return 0
    rows = args.rows or (2000 if args.quick else 10_000)
    reps = args.reps or (2 if args.quick else 3)
    prepare_env()

    with fresh_home("grid") as root:
        t = time.perf_counter()
        photos = make_bench_photos(root / "distinct", DISTINCT, PHOTO_SIZE)
        empty, warm, cold = root / "home-empty", root / "home-warm", root / "home-cold"
        app_paths(empty)
        build_library(warm, rows, photos, thumbnails=True)
        build_library(cold, rows, photos, thumbnails=False)
        print(f"set-up: {rows} rows ({DISTINCT} distinct {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} "
              f"photos) in {time.perf_counter() - t:.1f} s", flush=True)
        cold_thumbs = app_paths(cold).thumbnails

        run_child(empty, 0, False)   # warm-up: creates the empty database, fills OS caches
        results: dict[str, list[dict]] = {"empty": [], "warm": [], "cold": []}
        kinds = ["empty", "warm", "cold"]
        for rep in range(reps):
            for kind in kinds[rep % 3:] + kinds[:rep % 3]:
                if kind == "cold":
                    shutil.rmtree(cold_thumbs, ignore_errors=True)
                home = {"empty": empty, "warm": warm, "cold": cold}[kind]
                r = run_child(home, 0 if kind == "empty" else rows, kind != "empty")
                results[kind].append(r)
                frames = r["frames_ms"]
                print(f"  rep {rep + 1} {kind:5s}: first paint {fmt_ms(r['first_paint_s'])}, "
                      f"RSS {r['rss_settled_mib']:.0f} → {r['rss_scrolled_mib']:.0f} MiB"
                      + (f", {len(frames)} scroll frames p99 {percentile(frames, 99):.1f} ms"
                         if frames else ""), flush=True)

    def med(kind: str, key: str) -> float:
        return median([float(r[key]) for r in results[kind]])

    def frames(kind: str, key: str = "frames_ms") -> list[float]:
        return [f for r in results[kind] for f in r[key]]

    e_paint, w_paint, c_paint = (med(k, "first_paint_s") for k in kinds)
    e_rss, w_rss, c_rss = (med(k, "rss_settled_mib") for k in kinds)
    w_rss_s, c_rss_s = med("warm", "rss_scrolled_mib"), med("cold", "rss_scrolled_mib")
    w_frames, c_frames = frames("warm"), frames("cold")
    w_cpu, c_cpu = frames("warm", "frames_cpu_ms"), frames("cold", "frames_cpu_ms")
    fig = {
        "rows": rows, "repetitions": reps,
        "first_paint_s": {"empty": e_paint, "warm": w_paint, "cold": c_paint},
        "first_paint_ratio": ratio(w_paint, e_paint),
        "first_paint_ratio_cold": ratio(c_paint, e_paint),
        "visible_thumbs_s": {"warm": med("warm", "visible_thumbs_s"),
                             "cold": med("cold", "visible_thumbs_s")},
        "rss_mib": {"empty": e_rss, "warm": w_rss, "cold": c_rss,
                    "warm_scrolled": w_rss_s, "cold_scrolled": c_rss_s},
        "rss_ratio": ratio(w_rss, e_rss),
        "rss_scrolled_ratio": ratio(max(w_rss_s, c_rss_s), e_rss),
        "scroll_frame_ms": {
            "warm": {"p50": percentile(w_frames, 50), "p99": percentile(w_frames, 99),
                     "max": max(w_frames, default=float("nan")), "frames": len(w_frames)},
            "cold": {"p50": percentile(c_frames, 50), "p99": percentile(c_frames, 99),
                     "max": max(c_frames, default=float("nan")), "frames": len(c_frames)},
        },
        "scroll_frame_ui_cpu_ms": {
            "warm": {"p50": percentile(w_cpu, 50), "p99": percentile(w_cpu, 99)},
            "cold": {"p50": percentile(c_cpu, 50), "p99": percentile(c_cpu, 99)},
        },
        "frames_without_paint": sum(r["frames_without_paint"] for k in ("warm", "cold")
                                    for r in results[k]),
        "visible_tiles": results["warm"][0]["visible_tiles"],
        "page_step_px": results["warm"][0]["page_step_px"],
    }
    sf = fig["scroll_frame_ms"]
    print_table(f"Dataset grid, {rows} images vs empty library (median of {reps} runs each, "
                f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')})", [
        ("first paint, empty library", fmt_ms(e_paint)),
        (f"first paint, {rows} rows (thumbs cached)", fmt_ms(w_paint)),
        (f"first paint, {rows} rows (cold cache)", fmt_ms(c_paint)),
        ("ratio rows / empty", f"{fig['first_paint_ratio']:.2f}× warm, "
                               f"{fig['first_paint_ratio_cold']:.2f}× cold  "
                               f"(goal ≤ {GOAL_FIRST_PAINT}×)"),
        ("visible thumbnails after first paint",
         f"{fmt_ms(fig['visible_thumbs_s']['warm'])} warm, "
         f"{fmt_ms(fig['visible_thumbs_s']['cold'])} cold "
         f"({fig['visible_tiles']} tiles in view)"),
        ("RSS first screen: empty / rows", f"{e_rss:.0f} MiB / {w_rss:.0f} MiB warm, "
                                           f"{c_rss:.0f} MiB cold"),
        ("RSS ratio rows / empty", f"{fig['rss_ratio']:.2f}×  (goal ≤ {GOAL_RSS}×)"),
        ("RSS after scrolling everything", f"{w_rss_s:.0f} MiB warm, {c_rss_s:.0f} MiB cold "
                                           f"= {fig['rss_scrolled_ratio']:.2f}× empty "
                                           f"(goal ≤ {GOAL_RSS_SCROLLED}×)"),
        ("scroll frame (page step) warm", f"p50 {sf['warm']['p50']:.1f} ms, p99 "
                                          f"{sf['warm']['p99']:.1f} ms, max "
                                          f"{sf['warm']['max']:.1f} ms "
                                          f"({sf['warm']['frames']} frames)"),
        ("scroll frame (page step) cold", f"p50 {sf['cold']['p50']:.1f} ms, p99 "
                                          f"{sf['cold']['p99']:.1f} ms, max "
                                          f"{sf['cold']['max']:.1f} ms "
                                          f"({sf['cold']['frames']} frames)"),
        ("UI thread CPU per frame", f"p50 {percentile(w_cpu, 50):.1f} / p99 "
                                    f"{percentile(w_cpu, 99):.1f} ms warm, p50 "
                                    f"{percentile(c_cpu, 50):.1f} / p99 "
                                    f"{percentile(c_cpu, 99):.1f} ms cold (wall minus this: "
                                    f"waiting for a core)"),
        ("goal for frames", f"p99 ≤ {GOAL_FRAME_MS:.0f} ms"),
    ])
    emit_json("grid", fig, {
        "first_paint_ratio_le_1_5": bool(fig["first_paint_ratio"] <= GOAL_FIRST_PAINT),
        "rss_ratio_le_1_5": bool(fig["rss_ratio"] <= GOAL_RSS),
        "rss_scrolled_ratio_le_2": bool(fig["rss_scrolled_ratio"] <= GOAL_RSS_SCROLLED),
        "scroll_p99_le_16ms_warm": bool(sf["warm"]["p99"] <= GOAL_FRAME_MS),
        "scroll_p99_le_16ms_cold": bool(sf["cold"]["p99"] <= GOAL_FRAME_MS),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
