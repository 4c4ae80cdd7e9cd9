"""The Video tab's player on the video service's previews (made by the clips child, cached):
a real clip plays at its rate and scrubs, a broken or missing clip is named, and without a
trainer runtime the message says where video files are read. The gallery lists a clip whose
sidecar holds its probe without any child, and probes the others in the child."""

from __future__ import annotations

import os

import numpy as np
import pytest
import shiboken6

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime.python import ENV_FORCE_RUNTIME
from isengard_desktop.core.video import clip_record
from isengard_desktop.core.video.container import write_clip
from isengard_desktop.services.video import VideoService
from isengard_desktop.ui.video.clip_player import ClipPlayerWidget
from tests.helpers.service_harness import run_on_loop

WAIT = 30_000


@pytest.fixture
def player(qtbot, qt_asyncio_loop):
    paths = resolve_paths().ensure()
    service = VideoService(paths, lambda: None)
    widget = ClipPlayerWidget(previews=service.preview)
    qtbot.addWidget(widget)
    widget.service = service
    yield widget, paths
    run_on_loop(qtbot, service.aclose(), WAIT, qt_asyncio_loop)
    shiboken6.delete(service)


def test_a_clip_plays_from_its_cached_preview(qtbot, player, tmp_path):
    widget, paths = player
    clip = write_clip(tmp_path / "walk.webm", [np.full((240, 320, 3), i * 30, np.uint8)
                                               for i in range(7)], 12)
    with qtbot.waitSignal(widget.loaded, timeout=WAIT) as blocker:
        widget.load(clip)
    assert blocker.args == [7]
    assert widget.fps == 12.0 and widget.duration_s == pytest.approx(7 / 12)
    assert widget.view.pixmap().size().width() == 320
    widget.slider.setValue(3)
    assert widget.position == 3 and widget.time_label.text() == "0.25 / 0.58 s"
    assert clip_record.read_preview_info(clip_record.preview_dir(paths.cache, clip)) is not None
    widget.load(None)
    assert widget.frame_count == 0 and widget.view.text() == "No clip selected"
    with qtbot.waitSignal(widget.loaded, timeout=WAIT) as blocker:   # from the cache now
        widget.load(clip)
    assert blocker.args == [7]


def test_a_broken_or_missing_clip_is_named(qtbot, player, tmp_path):
    widget, _paths = player
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with qtbot.waitSignal(widget.failed, timeout=WAIT) as blocker:
        widget.load(bad)
    assert blocker.args[0].startswith("broken.mp4 cannot be played: ")
    assert "cannot be read as a video" in blocker.args[0]
    assert widget.view.text() == blocker.args[0] and not widget.play_button.isEnabled()
    with qtbot.waitSignal(widget.failed, timeout=WAIT) as blocker:
        widget.load(tmp_path / "gone.mp4")
    assert blocker.args[0].startswith("gone.mp4 cannot be played: ")


def test_without_a_trainer_runtime_the_player_says_where_clips_are_read(
        qtbot, player, tmp_path, monkeypatch):
    widget, _paths = player
    clip = write_clip(tmp_path / "c.mp4", [np.zeros((32, 32, 3), np.uint8)] * 3, 8)
    monkeypatch.setenv(ENV_FORCE_RUNTIME, "1")      # ignore this checkout's own interpreter
    with qtbot.waitSignal(widget.failed, timeout=WAIT) as blocker:
        widget.load(clip)
    assert blocker.args[0].startswith("c.mp4 cannot be played: Video files are read in the "
                                      "trainer runtime.")
    assert "Trainer runtime" in blocker.args[0]


def test_a_newer_clip_wins_and_deleting_a_clip_drops_its_preview(qtbot, player, tmp_path):
    widget, paths = player
    service = widget.service
    first = write_clip(tmp_path / "first.mp4", [np.zeros((32, 32, 3), np.uint8)] * 4, 8)
    second = write_clip(tmp_path / "second.mp4", [np.full((32, 48, 3), 90, np.uint8)] * 6, 8)
    got: list = []
    service.preview(first, lambda info: got.append(("first", info)), got.append)
    service.preview(second, lambda info: got.append(("second", info)), got.append)
    qtbot.waitUntil(lambda: bool(got) and not service._runs, timeout=WAIT)
    assert [name for name, _info in got] == ["second"]        # the older request said nothing
    assert (got[0][1].count, got[0][1].width) == (6, 48)
    folder = clip_record.preview_dir(paths.cache, second)
    assert clip_record.read_preview_info(folder) is not None
    service.delete(second)
    qtbot.waitUntil(lambda: not second.exists(), timeout=WAIT)
    assert not folder.exists()


def test_the_gallery_lists_sidecar_clips_without_a_child_and_probes_the_rest(
        qtbot, player, monkeypatch):
    widget, paths = player
    service = widget.service
    folder = service.clips_dir
    folder.mkdir(parents=True, exist_ok=True)
    ours = write_clip(folder / "ours.mp4", [np.zeros((48, 64, 3), np.uint8)] * 5, 10)
    clip_record.write_sidecar(ours, {"seed": 5}, {"1": {}}, {
        "width": 64, "height": 48, "frames": 5, "fps": 10.0, "duration_s": 0.5, "codec": "h264"})
    os.utime(ours, (1_000, 1_000))                              # older than the other one
    write_clip(folder / "other.webm", [np.zeros((32, 32, 3), np.uint8)] * 3, 8,
               metadata={"isengard": {"seed": 6}})
    failed: list = []
    service.failed.connect(failed.append)
    monkeypatch.setenv(ENV_FORCE_RUNTIME, "1")                  # no child can run
    with qtbot.waitSignal(service.clips_changed, timeout=WAIT):
        service.refresh()
    assert [(c.path.name, c.frames, c.parameters["seed"]) for c in service.clips()] == [
        ("ours.mp4", 5, 5)]
    assert "Video files are read in the trainer runtime" in failed[0]
    monkeypatch.delenv(ENV_FORCE_RUNTIME)
    with qtbot.waitSignal(service.clips_changed, timeout=WAIT):
        service.refresh()
    assert [(c.path.name, c.frames, c.parameters["seed"]) for c in service.clips()] == [
        ("other.webm", 3, 6), ("ours.mp4", 5, 5)]
    write_clip(ours, [np.zeros((48, 64, 3), np.uint8)] * 9, 10)  # changed: the sidecar is stale
    with qtbot.waitSignal(service.clips_changed, timeout=WAIT):
        service.refresh()
    assert {c.path.name: c.frames for c in service.clips()}["ours.mp4"] == 9


def test_a_newer_refresh_stops_the_older_ones_probe(qtbot, player, monkeypatch):
    """Each probe is a trainer-runtime Python importing PyAV: a refresh made while an older
    one's probe still runs stops that child instead of letting it run for nothing."""
    import isengard_desktop.services.video.service as video_service

    widget, paths = player
    service = widget.service
    folder = service.clips_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_clip(folder / "other.webm", [np.zeros((32, 32, 3), np.uint8)] * 3, 8)
    outcomes: list = []
    real_start = video_service.start_clips

    def spying(paths_, args, done, **kwargs):
        def noted(outcome):
            outcomes.append((args[0], outcome.cancelled))
            done(outcome)
        return real_start(paths_, args, noted, **kwargs)

    monkeypatch.setattr(video_service, "start_clips", spying)
    service.refresh()
    qtbot.waitUntil(lambda: any(run.proc.is_running for run in service._runs), timeout=WAIT)
    with qtbot.waitSignal(service.clips_changed, timeout=WAIT):
        service.refresh()
    qtbot.waitUntil(lambda: len(outcomes) == 2, timeout=WAIT)
    assert sorted(outcomes) == [("probe", False), ("probe", True)]
    assert [c.path.name for c in service.clips()] == ["other.webm"]
