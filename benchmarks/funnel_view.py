"""The Explore view (draft funnel grid) on the UI thread: first show of a stage, and the cost of
one decision (K/D), which redraws the stage, against the gallery's own refresh as baseline.

Set-up (not timed): N generated pictures (default 64, the largest funnel; --quick 20) written as
small PNGs under a fresh ``ISENGARD_HOME``, their thumbnails made once (a warm cache, as after
the drafts arrived), then the real :class:`FunnelViewWidget` and :class:`GalleryWidget` shown
offscreen.

Figures (medians over repetitions):

* ``first_show``: ``show_stage`` of N new pictures + event processing (the view after a
  stage is opened or re-opened).
* ``decision``: one K press as the app does it — the tile marked, the stage shown again with
  the same pictures (what ``gallery_changed`` triggers) + event processing.
* ``baseline``: ``GalleryWidget.set_items`` with the same N pictures + event processing (the
  gallery refresh that runs on the same signal today).

Goals (the author's proposal): a decision within one 60 Hz frame (p99 ≤ 16 ms) and no more than
3× the baseline gallery refresh.

    .venv/bin/python benchmarks/funnel_view.py [--quick] [--pictures N] [--reps R]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    app_paths,
    emit_json,
    fmt_ms,
    fresh_home,
    median,
    percentile,
    prepare_env,
    print_table,
    ratio,
    wait_until,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pictures", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args()
    n = args.pictures or (20 if args.quick else 64)
    reps = args.reps or (10 if args.quick else 30)
    prepare_env()
    with fresh_home("funnel") as home:
        return run(home, n, reps)


def run(home: Path, n: int, reps: int) -> int:
    from PIL import Image
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.core.comfy.funnel import FunnelSizes
    from isengard_desktop.core.comfy.jobs import GalleryItem
    from isengard_desktop.services.thumbnails import ThumbnailService
    from isengard_desktop.ui.generate.funnel_view import FunnelViewWidget
    from isengard_desktop.ui.widgets.gallery import GalleryWidget, thumb_key

    app = QApplication.instance() or QApplication([])
    paths = app_paths(home)
    folder = paths.outputs / "generations" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"draft-{i:03d}.png"
        Image.new("RGB", (768, 768), ((i * 37) % 255, (i * 91) % 255, 128)).save(path)
        items.append(GalleryItem(id=i + 1, job_id="bench", path=str(path), prompt="a lighthouse",
                                 negative="", seed=5000 + i, width=768, height=768,
                                 workflow="sdxl", model="m.safetensors", lora_path="",
                                 lora_strength=0.0, character_id=None, status="gallery",
                                 params={"tier": "Draft"}, funnel_id="f", stage="draft"))
    thumbs = ThumbnailService(paths.cache / "thumbnails")
    for item in items:                   # warm cache: every thumbnail decoded once
        thumbs.pixmap(thumb_key(item.path), Path(item.path))
    wait_until(app, lambda: all(thumbs.pixmap(thumb_key(i.path), Path(i.path)) is not None
                                for i in items), what="thumbnails")
    sizes = FunnelSizes.from_values(max(2, n), 8, 3)
    view = FunnelViewWidget(thumbs)
    view.resize(900, 600)
    view.show()
    gallery = GalleryWidget(thumbs)
    gallery.resize(900, 600)
    gallery.show()
    app.processEvents()

    first, decision, baseline = [], [], []
    for rep in range(reps):
        view.funnel_id = ""                 # a different stage: every tile new
        t0 = time.perf_counter()
        view.show_stage(f"f{rep}", "draft", items, sizes)
        app.processEvents()
        first.append(time.perf_counter() - t0)
        current = list(items)
        for step in range(min(8, n)):
            view.set_current(current[step].id)
            t0 = time.perf_counter()
            view.decide(current[step].id, "keep")      # the tile, counts, signal
            current[step] = replace(current[step], pick="keep")
            view.show_stage(f"f{rep}", "draft", current, sizes)   # gallery_changed → again
            app.processEvents()
            decision.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            gallery.set_items(current)
            app.processEvents()
            baseline.append(time.perf_counter() - t0)
    view.setFocus(Qt.FocusReason.OtherFocusReason)
    figures = {"pictures": n, "reps": reps,
               "first_show_ms": median(first) * 1000,
               "decision_p50_ms": median(decision) * 1000,
               "decision_p99_ms": percentile(decision, 99) * 1000,
               "baseline_p50_ms": median(baseline) * 1000,
               "decision_vs_baseline": ratio(median(decision), median(baseline))}
    print_table(f"Explore view, {n} pictures ({reps} repetitions)", [
        ("first show of a stage", fmt_ms(median(first))),
        ("one decision (p50 / p99)", f"{fmt_ms(median(decision))} / "
                                     f"{fmt_ms(percentile(decision, 99))}"),
        ("baseline: gallery refresh (p50)", fmt_ms(median(baseline))),
        ("decision / baseline", f"{figures['decision_vs_baseline']:.2f}×"),
    ])
    emit_json("funnel_view", figures, {
        "decision_p99_within_16ms": percentile(decision, 99) * 1000 <= 16.0,
        "decision_within_3x_baseline": figures["decision_vs_baseline"] <= 3.0})
    view.close()
    gallery.close()
    thumbs.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
