"""Start-up time: the real app window vs a bare PySide6 "hello" window (goal: ≤ 1.5×).

Each run is a fresh Python process. The clock starts just before the parent spawns the child
and stops when the child's window has finished its first paint (and, for the app, when the
library has also loaded: ``LibraryService.is_ready``). Both timestamps are CLOCK_MONOTONIC,
which is shared by all processes on the machine, so interpreter start and imports are counted.

The app side does what ``isengard`` does (``isengard_desktop.__main__``): QApplication,
``build_app()``, ``window.show()``. The bare side makes a QMainWindow of the same size with
one QLabel. Runs alternate app/bare after one untimed warm-up of each (the warm-up also
creates the app's data folder, so timed runs measure a normal start with an empty library).

    .venv/bin/python benchmarks/startup.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, emit_json, fmt_ms, fresh_home, median, prepare_env, print_table, ratio  # noqa: E402

GOAL_RATIO = 1.5
TIMEOUT_S = 60

# Shared by both children: report the end of the first paint of any widget in `window`.
_PROBE = r'''
import json, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer

class FirstPaint(QObject):
    """Records when the window's first paint has finished (a zero timer after the Paint)."""
    def __init__(self, window, on_done):
        super().__init__()
        self.window, self.on_done, self.seen = window, on_done, False
    def eventFilter(self, obj, event):
        if (not self.seen and event.type() == QEvent.Type.Paint
                and hasattr(obj, "window") and obj.window() is self.window):
            self.seen = True
            QTimer.singleShot(0, lambda: self.on_done(time.monotonic()))
        return False

def finish(app, marks):
    print("BENCH " + json.dumps(marks), flush=True)
    app.quit()
'''

BARE = _PROBE + r'''
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication([sys.argv[0]])
window = QMainWindow()
window.setWindowTitle("hello")
window.resize(1280, 820)
window.setCentralWidget(QLabel("Hello, world"))
marks = {}
def painted(t):
    marks["painted"] = t
    finish(app, marks)
probe = FirstPaint(window, painted)
app.installEventFilter(probe)
marks["show"] = time.monotonic()
window.show()
QTimer.singleShot(%(timeout)d * 1000, lambda: (print("BENCH TIMEOUT", flush=True), app.exit(3)))
sys.exit(app.exec())
'''

APP = _PROBE + r'''
from PySide6.QtWidgets import QApplication
from isengard_desktop import APP_NAME, __version__
from isengard_desktop.app import build_app
app = QApplication([sys.argv[0]])
app.setApplicationName(APP_NAME)
app.setApplicationVersion(__version__)
app.setOrganizationName("Isengard")
marks = {"imported": time.monotonic()}
ctx = build_app()
marks["built"] = time.monotonic()
def check():
    if "painted" in marks and "ready" in marks:
        ctx.window.close()
        finish(app, marks)
def painted(t):
    marks["painted"] = t
    check()
def ready():
    marks["ready"] = time.monotonic()
    check()
if ctx.library.is_ready:
    ready()
else:
    ctx.library.ready.connect(ready)
probe = FirstPaint(ctx.window, painted)
app.installEventFilter(probe)
marks["show"] = time.monotonic()
ctx.window.show()
QTimer.singleShot(%(timeout)d * 1000, lambda: (print("BENCH TIMEOUT", flush=True), app.exit(3)))
code = app.exec()
from isengard_desktop.lifecycle import run   # the app closes as __main__ closes it
run(ctx.aclose(), app)
sys.exit(code)
'''


def run_child(kind: str, home: Path) -> dict[str, float]:
    code = (APP if kind == "app" else BARE) % {"timeout": TIMEOUT_S}
    env = dict(os.environ, ISENGARD_HOME=str(home))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S + 30)
    exited = time.monotonic()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH {")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{kind} child failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    marks = json.loads(line[len("BENCH "):])
    end = max(marks["painted"], marks.get("ready", marks["painted"]))
    out = {"total": end - start, "painted": marks["painted"] - start,
           "show": marks["show"] - start, "exit": exited - start}
    if kind == "app":
        out["ready"] = marks["ready"] - start
        out["build_app"] = marks["built"] - marks["imported"]
        out["imports"] = marks["imported"] - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 5")
    parser.add_argument("--runs", type=int, default=None, help="timed runs of each side")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    prepare_env()

    with fresh_home("startup") as home:
        first_app = run_child("app", home)   # warm-up: creates the data folder and database
        run_child("bare", home)
        app_runs: list[dict[str, float]] = []
        bare_runs: list[dict[str, float]] = []
        for i in range(runs):
            order = ("app", "bare") if i % 2 == 0 else ("bare", "app")
            for kind in order:
                (app_runs if kind == "app" else bare_runs).append(run_child(kind, home))

    app_t = median([r["total"] for r in app_runs])
    bare_t = median([r["total"] for r in bare_runs])
    r = ratio(app_t, bare_t)
    app_paint = median([r_["painted"] for r_ in app_runs])
    app_ready = median([r_["ready"] for r_ in app_runs])
    imports = median([r_["imports"] for r_ in app_runs])
    build = median([r_["build_app"] for r_ in app_runs])
    print_table(f"Start-up to first paint (median of {runs} runs each, "
                f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')})", [
        ("bare PySide6 window", fmt_ms(bare_t)),
        ("Isengard window + library ready", fmt_ms(app_t)),
        ("  of which: interpreter, imports, QApplication", fmt_ms(imports)),
        ("  of which: build_app()", fmt_ms(build)),
        ("  app first paint", fmt_ms(app_paint)),
        ("  app library ready", fmt_ms(app_ready)),
        ("first app run (creates data folder)", fmt_ms(first_app["total"])),
        ("ratio app / bare", f"{r:.2f}×  (goal ≤ {GOAL_RATIO}×)"),
        ("all app runs", ", ".join(fmt_ms(x["total"]) for x in app_runs)),
        ("all bare runs", ", ".join(fmt_ms(x["total"]) for x in bare_runs)),
    ])
    emit_json("startup", {
        "runs": runs,
        "bare_s": bare_t, "app_s": app_t, "ratio_app_over_bare": r,
        "app_imports_s": imports, "app_build_app_s": build,
        "app_first_paint_s": app_paint, "app_library_ready_s": app_ready,
        "first_run_app_s": first_app["total"],
    }, {"startup_ratio_le_1_5": bool(r <= GOAL_RATIO)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
