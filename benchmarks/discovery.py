"""The wizard's folder search (``core.discovery.discover``) on a big synthetic home folder vs a
plain ``os.walk`` of the same tree (what an unbounded search would cost).

Set-up (not timed): a home folder with a ComfyUI checkout (+ a venv of 2,000 folders),
an A1111 web UI, a Stability Matrix library, a git-like project tree and N (default 20,000;
--quick 5,000) ordinary folders spread 4 levels deep. Timed (medians of --reps runs, warm
file-system cache, runs alternate):

* ``discover(home)``: must find the three layouts.
* baseline: ``os.walk(home)`` over every folder.

Figures: both times, their ratio, folders looked at. Goals (the benchmark author's
proposal): the search takes under 0.5 s and under a quarter of the full walk, so the models
page fills in about as fast as the page appears.

    .venv/bin/python benchmarks/discovery.py [--quick] [--folders N] [--reps R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import emit_json, fmt_ms, median, print_table, ratio

from isengard_desktop.core.discovery import discover


def build_home(root: Path, folders: int) -> Path:
    home = root / "home"
    comfy = home / "AI" / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    for i in range(2000):
        (comfy / "venv" / "lib" / f"pkg{i:04d}").mkdir(parents=True)
    (comfy / "venv" / "bin").mkdir(parents=True)
    (comfy / "venv" / "bin" / "python").write_text("")
    webui = home / "stable-diffusion-webui"
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    (webui / "webui.py").write_text("")
    lib = home / "StabilityMatrix" / "Data"
    (lib / "Models").mkdir(parents=True)
    (lib / "settings.json").write_text("{}")
    per = max(1, round(folders ** 0.25))
    made = 0
    for a in range(per):
        for b in range(per):
            for c in range(per):
                for d in range(per):
                    if made >= folders:
                        break
                    (home / "Documents" / f"a{a}" / f"b{b}" / f"c{c}" / f"d{d}").mkdir(
                        parents=True, exist_ok=True)
                    made += 1
    return home


def full_walk(home: Path) -> int:
    return sum(len(dirs) for _, dirs, _ in os.walk(home))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--folders", type=int, default=0)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    folders = args.folders or (5000 if args.quick else 20000)
    root = Path(tempfile.mkdtemp(prefix="isengard-bench-discovery-"))
    try:
        home = build_home(root, folders)
        total = full_walk(home)          # also warms the file-system cache
        search, walk = [], []
        found = None
        for _ in range(args.reps):
            t = time.perf_counter()
            found = discover(home, env={}, os_name="Linux")
            search.append(time.perf_counter() - t)
            t = time.perf_counter()
            full_walk(home)
            walk.append(time.perf_counter() - t)
        assert found is not None
        ok = len(found.comfy) == 1 and len(found.model_folders) == 2
        s, w = median(search), median(walk)
        print_table("Folder search (wizard, Models and ComfyUI page)", [
            ("folders in the home tree", f"{total:,}"),
            ("discover()", fmt_ms(s)), ("os.walk (baseline)", fmt_ms(w)),
            ("ratio", f"{ratio(s, w):.2f}×"), ("found all three layouts", str(ok))])
        emit_json("discovery", {"folders": total, "discover_s": s, "walk_s": w,
                                "ratio": ratio(s, w), "found_all": ok},
                  {"under_0_5_s": s < 0.5, "under_quarter_of_walk": ratio(s, w) < 0.25,
                   "found_all": ok})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
