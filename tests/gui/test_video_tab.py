"""The Video tab through pytest-qt against the ComfyUI double: a character's picture becomes a
playable clip (real MP4 made by the double, downloaded, stored with its parameters), three
keyframes make one clip, playback loops and scrubs, Reuse parameters and Delete work; a
banner offers the video set of a workflow whose files the server lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shiboken6
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from isengard_desktop.app import connect_video
from isengard_desktop.core.comfy.client import ComfyClient
from isengard_desktop.core.video import container
from isengard_desktop.services.video import VideoService
from isengard_desktop.ui.video import VideoTab
from tests.helpers.characters import add_character
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401  (fixture)
from tests.helpers.service_harness import run_on_loop, start_library
from tests.helpers.trash import install_private_trash

WAIT = 30_000
MODELS = {
    "diffusion_models": ["wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors",
                         "wan2.1_flf2v_720p_14B_fp8_e4m3fn.safetensors",
                         "wan2.1_t2v_1.3B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
}


def picture(path: Path, color) -> Path:
    Image.new("RGB", (64, 48), color).save(path)
    return path


@pytest.fixture
def tab(qtbot, qt_asyncio_loop, make_comfy_double, tmp_path, monkeypatch):  # noqa: F811
    """A factory: ``make()`` -> (VideoTab, library) on a video service + client + double;
    everything is closed on the loop afterwards."""
    install_private_trash(monkeypatch, tmp_path / "trash")
    made: list = []

    def make(**double_options):
        double_options.setdefault("models", MODELS)
        double = make_comfy_double(preview_method="auto", step_delay=0.01, **double_options)
        paths, library = start_library(qtbot, WAIT)
        client = ComfyClient(double.url, timeout=10.0, reconnect_delays=(0.05, 0.1))
        service = VideoService(paths, lambda: client)
        widget = VideoTab(service, library)
        connect_video(service, widget)
        qtbot.addWidget(widget)
        # not shown: closing the last shown window would quit the app's loop under the test
        made.append((service, client))
        return widget, library

    yield make
    for service, client in made:
        run_on_loop(qtbot, service.aclose(), WAIT, qt_asyncio_loop)
        run_on_loop(qtbot, client.aclose(), WAIT, qt_asyncio_loop)
        shiboken6.delete(service)


def drop(widget, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)


def test_a_character_picture_becomes_a_playable_clip(qtbot, tab, tmp_path):
    widget, library = tab()
    anna = add_character(qtbot, library, "Anna", trigger="ohwxanna")
    widget.refresh_characters()
    widget.character_combo.setCurrentIndex(widget.character_combo.findData(anna.id))
    paths = library.paths
    assert widget.keyframes.start_folders == [paths.characters / anna.folder, paths.outputs]
    drop(widget.keyframes.list, [picture(tmp_path / "anna.png", (200, 40, 40))])
    assert widget.keyframes.summary.text() == "1 picture: image to video"
    qtbot.keyClicks(widget.prompt_edit, "turns and smiles")
    widget.tier_combo.setCurrentIndex(0)
    widget.width_spin.setValue(64)
    widget.height_spin.setValue(48)
    widget.seconds_spin.setValue(1.0)
    widget.advanced_button.click()
    assert widget.advanced.isVisibleTo(widget)
    widget.steps_spin.setValue(3)
    widget.generate_button.click()
    assert not widget.generate_button.isEnabled()
    # live progress: sampler steps and a preview frame from the double's sampler
    qtbot.waitUntil(lambda: not widget.preview_label.pixmap().isNull() or widget.job_id == "",
                    timeout=WAIT)
    assert not widget.preview_label.pixmap().isNull()
    qtbot.waitUntil(lambda: widget.clip_list.count() == 1 and widget.job_id == "", timeout=WAIT)
    assert widget.status_label.text().startswith("Done:"), widget.status_label.text()
    clip = widget.current_clip()
    assert clip.parameters["prompt"] == "ohwxanna, turns and smiles"
    assert clip.parameters["character_id"] == anna.id
    assert container.probe(clip.path).codec == "h264"
    # the player decodes it (off the UI thread) and knows its length
    qtbot.waitUntil(lambda: widget.player.frame_count == 17, timeout=WAIT)
    assert widget.player.duration_s == pytest.approx(17 / 16)
    assert widget.player.time_label.text() == "0.00 / 1.06 s"
    # scrub
    widget.player.slider.setValue(8)
    assert widget.player.position == 8
    # play to the end and loop around
    widget.player.loop_box.setChecked(True)
    widget.player.play_button.click()
    assert widget.player.playing
    qtbot.waitUntil(lambda: widget.player.position < 8, timeout=WAIT)     # wrapped around
    widget.player.loop_box.setChecked(False)
    qtbot.waitUntil(lambda: not widget.player.playing, timeout=WAIT)
    assert widget.player.position == 16
    # reuse parameters: the form gets the stored seed and settings back
    widget.prompt_edit.setPlainText("something else")
    widget.keyframes.set_paths([])
    widget.reuse_button.click()
    assert widget.prompt_edit.toPlainText() == "ohwxanna, turns and smiles"
    assert not widget.random_seed.isChecked()
    assert widget.seed_spin.value() == clip.parameters["seed"] % (2**31)
    assert widget.keyframes.paths() == [str(tmp_path / "anna.png")]
    assert widget.request().seconds == 1.0 and widget.request().steps == 3
    # delete: the clip and its sidecar go to the trash
    widget.delete_button.click()
    qtbot.waitUntil(lambda: widget.clip_list.count() == 0, timeout=WAIT)
    assert not clip.path.exists() and not container.sidecar_path(clip.path).exists()
    assert {p.name for p in (tmp_path / "trash").glob("*/*")} >= {
        clip.path.name, container.sidecar_path(clip.path).name}


def test_three_keyframes_make_one_clip_and_an_old_clip_is_listed(qtbot, tab, tmp_path):
    widget, _library = tab()
    keys = [picture(tmp_path / f"k{i}.png", c)
            for i, c in enumerate([(220, 30, 30), (30, 200, 40), (40, 50, 210)])]
    widget.keyframes.add_paths(keys)
    assert widget.keyframes.summary.text() == "3 keyframes: a sequence of 2 segments"
    assert "in 2 segments" in widget.plan_label.text()
    widget.prompt_edit.setPlainText("walks across the room")
    widget.width_spin.setValue(64)
    widget.height_spin.setValue(64)
    widget.seconds_spin.setValue(2.0)
    widget.container_combo.setCurrentIndex(1)       # WebM
    widget.generate_button.click()
    qtbot.waitUntil(lambda: widget.clip_list.count() == 1 and widget.job_id == "", timeout=WAIT)
    clip = widget.current_clip()
    assert clip.path.suffix == ".webm"
    assert clip.frames == sum(clip.parameters["segment_frames"]) - 1
    frames = container.read_frames(clip.path)
    mid = clip.parameters["segment_frames"][0] - 1
    assert np.abs(frames[mid].reshape(-1, 3).mean(axis=0) - (30, 200, 40)).max() < 30


def test_errors_reach_the_status_line(qtbot, tab, tmp_path):
    widget, _library = tab()
    widget.generate_button.click()
    assert "Write a prompt" in widget.status_label.text()
    widget.keyframes.add_paths([tmp_path / "missing.png"])
    widget.prompt_edit.setPlainText("waves")
    widget.generate_button.click()
    qtbot.waitUntil(lambda: widget.job_id == "", timeout=WAIT)
    assert "missing.png" in widget.status_label.text()
    assert widget.generate_button.isEnabled()


def checked(qtbot, widget, workflow: str):
    """The tab's latest answer about ``workflow`` (waits for it)."""
    qtbot.waitUntil(lambda: widget.model_check is not None
                    and widget.model_check.workflow == workflow, timeout=WAIT)
    return widget.model_check


def test_the_get_it_banner_shows_only_for_a_model_the_server_lacks(qtbot, tab, tmp_path):
    widget, _library = tab()
    pages: list[str] = []
    widget.setup_requested.connect(pages.append)
    # no keyframe: Wan text to video, whose files the double has: no banner
    assert widget.current_workflow() == "wan21-t2v"
    check = checked(qtbot, widget, "wan21-t2v")
    assert check.missing == () and check.server and widget.setup_banner.isHidden()
    widget.keyframes.add_paths([picture(tmp_path / "a.png", (200, 40, 40))])
    assert checked(qtbot, widget, "wan21-i2v").missing == ()
    assert widget.setup_banner.isHidden()
    # LTX-Video: the double has no checkpoint and no T5 text encoder
    widget.family_combo.setCurrentIndex(widget.family_combo.findData("ltxv"))
    check = checked(qtbot, widget, "ltxv-i2v")
    assert check.models_missing and not widget.setup_banner.isHidden()
    text = widget.setup_banner.text()
    assert text.startswith("The ComfyUI server has no LTX-Video 2B model. Get it (≈ 16.1 GB) "
                           "into the app's models folder"), text
    assert text.endswith(f"What {check.server} lacks: no checkpoint in models/checkpoints; no "
                         "T5-XXL text encoder in models/text_encoders (or models/clip)."), text
    assert widget.setup_banner.button.text() == "Get LTX-Video 2B…"
    widget.setup_banner.button.click()
    assert pages == ["base_models:ltxv-2b"]
    # back to Wan: the banner goes
    widget.family_combo.setCurrentIndex(widget.family_combo.findData("wan21"))
    checked(qtbot, widget, "wan21-i2v")
    assert widget.setup_banner.isHidden()


def test_a_missing_node_is_named_without_a_download_offer(qtbot, tab, tmp_path):
    widget, _library = tab(remove_nodes={"WanImageToVideo"})       # an older ComfyUI
    assert checked(qtbot, widget, "wan21-t2v").missing == ()
    widget.keyframes.add_paths([picture(tmp_path / "a.png", (200, 40, 40))])
    check = checked(qtbot, widget, "wan21-i2v")
    assert not check.models_missing
    assert "needs node WanImageToVideo" in widget.setup_banner.text()
    assert widget.setup_banner.button.isHidden()


def test_without_a_server_the_model_folders_are_asked(qtbot, qt_asyncio_loop, tmp_path):
    """No ComfyUI server is ready: the banner names the set's files the model folders lack
    (the app's models folder and a linked one), and goes once they are there."""
    from isengard_desktop.core.models_catalogue import load_catalogue

    cat = load_catalogue()
    paths, library = start_library(qtbot, WAIT)
    linked = tmp_path / "linked-models"
    umt5 = cat.files["umt5-xxl-fp8"]
    (linked / "text_encoders").mkdir(parents=True)
    (linked / "text_encoders" / umt5.name).write_bytes(b"x")      # size unknown: name counts
    service = VideoService(paths, lambda: None, model_folders=lambda: [paths.models, linked])
    try:
        widget = VideoTab(service, library)
        connect_video(service, widget)
        qtbot.addWidget(widget)
        check = checked(qtbot, widget, "wan21-t2v")
        assert check.server == "" and check.missing == (
            "no wan2.1_t2v_1.3B_fp16.safetensors in diffusion_models/",
            "no wan_2.1_vae.safetensors in vae/")
        text = widget.setup_banner.text()
        assert text.startswith("The model folders have no Wan 2.1 text-to-video 1.3B model (and "
                               "no ComfyUI server is ready). Get it (≈ 9.8 GB)"), text
        assert widget.setup_banner.button.text() == "Get Wan 2.1 text-to-video 1.3B…"
        for fid in ("wan21-t2v-1.3b", "wan21-vae"):
            item = cat.files[fid]
            (paths.models / item.folder).mkdir(parents=True, exist_ok=True)
            (paths.models / item.folder / item.name).write_bytes(b"x")
        widget.model_check = None
        widget.check_models()
        assert checked(qtbot, widget, "wan21-t2v").missing == ()
        assert widget.setup_banner.isHidden()
    finally:
        run_on_loop(qtbot, service.aclose(), WAIT, qt_asyncio_loop)
        shiboken6.delete(service)
