"""The GUI process never imports PyAV (``av``): its FFmpeg carries GPL libx264/libx265, and the
frozen app excludes it (packaging/isengard.spec TRAINER_ONLY). A fresh app process opens the
Video tab, lists a clip, plays and scrubs it and saves its frames — all through the clips
child — and ``av`` is still not in ``sys.modules`` afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.video.container import write_clip

_DRIVE = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from isengard_desktop.app import build_app
from isengard_desktop.ui.video import VideoTab
ctx = build_app(install_excepthook=False)
ctx.window.show()

def wait(cond, limit=60.0):
    end = time.monotonic() + limit
    while not cond() and time.monotonic() < end:
        app.processEvents(); time.sleep(0.01)
    return cond()

wait(lambda: ctx.library.is_ready)
tabs = ctx.window.tabs
tabs.setCurrentIndex([tabs.tabText(i) for i in range(tabs.count())].index("Video"))
app.processEvents()
tab = ctx.window.findChild(VideoTab)
listed = wait(lambda: tab.clip_list.count() == 1)
clip = tab.current_clip() if listed else None
if listed and clip is None:
    tab.clip_list.setCurrentRow(0)
clip = tab.current_clip()
loaded = wait(lambda: tab.player.frame_count > 0)
tab.player.slider.setValue(5)
position = tab.player.position
tab.save_frames()
saved = wait(lambda: "frames saved" in tab.status_label.text())
print(json.dumps({"listed": listed, "frames": clip.frames if clip else None,
                  "seed": clip.parameters.get("seed") if clip else None,
                  "player_frames": tab.player.frame_count, "fps": tab.player.fps,
                  "position": position, "status": tab.status_label.text(),
                  "view": tab.player.view.text(),
                  "av": sorted(m for m in sys.modules if m == "av" or m.startswith("av."))}))
ctx.window.close()
from isengard_desktop.lifecycle import run
run(ctx.aclose())
"""


def test_the_video_tab_plays_and_exports_a_clip_without_importing_av(tmp_path):
    paths = resolve_paths().ensure()          # the test's own ISENGARD_HOME (conftest)
    folder = paths.outputs / "video"
    folder.mkdir(parents=True, exist_ok=True)
    clip = write_clip(folder / "old.mp4", [np.full((48, 64, 3), i * 20, np.uint8)
                                           for i in range(9)], 16,
                      metadata={"isengard": {"seed": 77, "prompt": "waves"}})
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-c", _DRIVE], capture_output=True, text=True,
                            env=env, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["listed"] is True, out
    assert (out["frames"], out["seed"]) == (9, 77)          # probed by the child, record parsed
    assert (out["player_frames"], out["fps"], out["position"]) == (9, 16.0, 5), out
    assert out["status"] == "9 frames saved in old_frames."
    assert len(list(clip.with_name("old_frames").glob("old_*.png"))) == 9
    assert out["av"] == []
