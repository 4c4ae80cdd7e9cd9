"""The Generate tab driven as a user would, on the real app and the real GenerationService,
against the ComfyUI test double over real sockets (configured as a remote server).

* empty state → Settings → ComfyUI page → add the double → the backend bar shows it ready;
* prompt → Generate → live progress (node and step) → gallery item whose PNG carries the
  metadata; reuse parameters, copy seed;
* More like this (image to image from a gallery picture, strength slider and count, nearby
  seeds) → the children record their parent and show the lineage tree; Delete (button and
  key) → OS trash, out of the gallery and the database;
* an extra (FaceDetailer) disabled with its exact reason while the server lacks its nodes, and
  enabled once the server declares them;
* staging: "Generate for dataset" (hidden for untrained characters) → Keep / Discard (buttons
  and keys) → the dataset grows by the kept images, discarded files go to the trash;
* Cancel stops a slow run.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from isengard_desktop.core.comfy.metadata import read_metadata
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.settings import Settings, save_settings
from isengard_desktop.services.library import SYNTHETIC_SOURCE
from isengard_desktop.ui.settings.comfyui_page import (check_local_install, describe_system_stats,
                                                      normalize_server_url)
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
from isengard_desktop.ui.generate.form import insert_trigger
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401 - fixture
from tests.helpers.characters import add_character
from tests.helpers.generate_ui import (CHECKPOINTS, FACE_NODES, LORA_FILE, click,
                                       configure_remote, open_generate, wait_ready, write_lora)
from tests.helpers.qt import close_app
from tests.helpers.trash import trashed_names


@pytest.fixture
def double(make_comfy_double):  # noqa: F811 - the fixture imported above
    return make_comfy_double(models={"checkpoints": CHECKPOINTS, "loras": [LORA_FILE]},
                             gpu_name="NVIDIA GeForce RTX 4090", vram_total=24 * 2**30,
                             vram_free=20 * 2**30, step_delay=0.02, preview_method="auto")


# -- pure helpers --------------------------------------------------------------------------------
def test_trigger_insertion_and_server_address_rules(tmp_path):
    assert insert_trigger("a photo at the beach", "anr_anna") == "anr_anna, a photo at the beach"
    assert insert_trigger("portrait of anr_anna", "anr_anna") == "portrait of anr_anna"
    assert insert_trigger("anr_anna, smiling", "bob_x", old="anr_anna") == "bob_x, smiling"
    assert insert_trigger("anr_anna, smiling", "", old="anr_anna") == "smiling"
    assert normalize_server_url("192.168.1.20:8188/") == ("http://192.168.1.20:8188", "")
    assert normalize_server_url("ftp://x")[1].startswith("ftp://x: the address must")
    assert "port" in normalize_server_url("http://host:99999")[1]
    stats = {"system": {"comfyui_version": "0.3.64"},
             "devices": [{"name": "cuda:0 RTX 3090 : native", "vram_total": 2**34}]}
    assert describe_system_stats("u", stats) == (True, "Reachable: ComfyUI 0.3.64 on RTX 3090 "
                                                       "(16.0 GB).")
    assert not describe_system_stats("u", {"nope": 1})[0]
    # the local check names exactly what is wrong
    ok, lines = check_local_install("", "")
    assert not ok and "main.py" in lines[0]
    (tmp_path / "ComfyUI").mkdir()
    (tmp_path / "ComfyUI" / "main.py").write_text("")
    ok, lines = check_local_install(str(tmp_path), "")
    assert not ok and "has no main.py" in lines[0] and str(tmp_path / "ComfyUI") in lines[0]
    ok, lines = check_local_install(str(tmp_path / "ComfyUI"), "")
    assert not ok and lines[-1].startswith("No Python interpreter chosen")
    ok, lines = check_local_install(str(tmp_path / "ComfyUI"), str(tmp_path / "nope" / "python"))
    assert not ok and lines[-1] == f"The Python interpreter {tmp_path / 'nope' / 'python'} " \
                                   "does not exist."


# -- empty state and the Settings page -------------------------------------------------------------
def test_empty_state_opens_settings_where_a_server_is_added(qt_asyncio_loop, qtbot, make_app,
                                                            double):
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    bar = tab.backends
    assert bar.empty_label.isVisible() and "Settings → ComfyUI" in bar.empty_label.text()
    assert not tab.form.generate_button.isEnabled()
    assert "Settings → ComfyUI" in tab.form.generate_button.toolTip()
    assert not tab.form.extras.checks["upscale"].isEnabled()
    assert "no ComfyUI server is ready" in tab.form.extras.checks["upscale"].toolTip()

    click(qtbot, bar.settings_button)
    qtbot.waitUntil(lambda: ctx.window.findChild(SettingsDialog) is not None, timeout=5000)
    dialog = ctx.window.findChild(SettingsDialog)
    page = dialog.comfyui_page
    assert dialog.tabs.currentWidget() is page
    qtbot.keyClicks(page.url_edit, double.url.removeprefix("http://") + "/")
    click(qtbot, page.add_button)
    assert page.remote_servers() == [double.url]
    page.server_list.setCurrentRow(0)
    click(qtbot, page.test_button)
    qtbot.waitUntil(lambda: page.server_message.text().startswith("Reachable"), timeout=10_000)
    assert "RTX 4090" in page.server_message.text()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert ctx.settings.settings.remote_servers == [double.url]

    wait_ready(qtbot, tab)
    assert not bar.empty_label.isVisible()
    chip = bar.chips[next(iter(bar.chips))]
    assert "Ready" in chip.facts.text() and "RTX 4090" in chip.facts.text()
    assert "20.0 of 24.0 GB free" in chip.facts.text()
    assert double.url in chip.toolTip()
    # a server without upscale models: Upscale says exactly what is missing
    upscale = tab.form.extras.checks["upscale"]
    assert not upscale.isEnabled() and "upscale_models" in upscale.toolTip()
    assert "Upscale" in tab.form.extras.hint.text()


# -- the main flow -------------------------------------------------------------------------------
def test_prompt_generate_progress_gallery_with_metadata(qt_asyncio_loop, qtbot, make_app,
                                                        double, tmp_path):
    configure_remote(double.url)
    ctx = make_app()
    anna = add_character(qtbot, ctx.library, "Anna", trigger="anr_anna",
                         lora=write_lora(ctx.paths.loras / LORA_FILE))
    add_character(qtbot, ctx.library, "Bob", trigger="bob_x")                  # untrained
    cara = add_character(qtbot, ctx.library, "Cara", trigger="crx_cara",   # not on the server
                         lora=write_lora(ctx.paths.loras / "cara-sdxl.safetensors"))
    tab = open_generate(qtbot, ctx)
    form = tab.form
    wait_ready(qtbot, tab)
    # the LoRA picker lists trained characters only
    combo = form.lora.combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["None", "Anna · SDXL",
                                                                 "Cara · SDXL"]
    assert not form.lora.slider.isEnabled()
    assert "Pick a character LoRA first" in form.lora.slider.toolTip()
    # every technical control explains itself
    for widget in (form.family_combo, form.model_combo, form.prompt_edit, combo,
                   form.advanced.seed_mode, form.advanced.negative_edit,
                   *form.aspect_buttons.values(), *form.tier_buttons.values(),
                   *form.batch_buttons.values(), *form.extras.checks.values()):
        assert widget.toolTip(), widget

    qtbot.keyClicks(form.prompt_edit, "a portrait in soft window light")
    # a LoRA the server does not list: Generate says so, the hint says how to fix it
    form.lora.select(cara.id)
    assert form.prompt_edit.toPlainText() == "crx_cara, a portrait in soft window light"
    assert not form.generate_button.isEnabled()
    assert "No ready server has Cara's LoRA" in form.generate_button.toolTip()
    assert "copy cara-sdxl.safetensors into that server's models/loras folder" in \
        form.lora.hint.text()
    double.set_models({"checkpoints": CHECKPOINTS,
                       "loras": [LORA_FILE, "cara-sdxl.safetensors"]})
    click(qtbot, tab.backends.refresh_button)
    qtbot.waitUntil(form.generate_button.isEnabled, timeout=15_000)
    assert "On 127.0.0.1" in form.lora.hint.text()
    form.lora.select(anna.id)
    assert form.prompt_edit.toPlainText() == "anr_anna, a portrait in soft window light"
    assert "anr_anna" in form.lora.trigger_label.text()
    form.lora.slider.setValue(85)
    click(qtbot, form.aspect_buttons["3:2"])
    assert form.aspect_buttons["3:2"].text() == "3:2\n1216×832"
    assert "1216 × 832 px · 1.01 MP" in form.size_label.text()
    click(qtbot, form.tier_buttons["Draft"])
    assert "15 steps" in form.tier_note.text()
    click(qtbot, form.batch_buttons[2])
    form.model_combo.setCurrentIndex(form.model_combo.findData("sd_xl_base_1.0.safetensors"))

    seen: list[tuple[str, int, int, str]] = []
    ctx.generation.job_progress.connect(
        lambda p: seen.append((p.node_class, p.done, p.total, tab.progress.detail.text())))
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, form.generate_button)
        assert form.cancel_button.isEnabled()
    _job_id, items = finished.args
    assert len(items) == 2
    steps = [(s, t, text) for cls, s, t, text in seen if cls == "KSampler" and t > 1]
    assert steps and steps[-1][1] == 15, seen
    assert any("KSampler" in text and "step" in text for _s, _t, text in steps)
    assert "Done: 2 pictures" in tab.progress.status.text()
    assert not form.cancel_button.isEnabled() and "Nothing is running" in \
        form.cancel_button.toolTip()
    qtbot.waitUntil(tab.progress.preview.has_image, timeout=10_000)

    # the gallery shows them, newest first, and the PNGs carry the metadata
    qtbot.waitUntil(lambda: len(tab.gallery.items()) == 2, timeout=5000)
    item = tab.gallery.selected_item()
    assert item is not None and item.id == max(i.id for i in items)
    meta = read_metadata(item.path)
    assert meta["parameters"].startswith("anr_anna, a portrait in soft window light")
    assert f"Seed: {item.seed}" in meta["parameters"] and "Size: 1216x832" in meta["parameters"]
    a1111 = meta["a1111"]
    assert a1111["steps"] == 15 and a1111["seed"] == item.seed
    assert a1111["prompt"] == f"{item.prompt} <lora:{Path(LORA_FILE).stem}:0.85>"
    assert a1111["model"] == "sd_xl_base_1.0"          # A1111 writes the stem
    assert meta["isengard"]["seed"] == item.seed
    assert meta["isengard"]["character_id"] == anna.id
    assert meta["isengard"]["lora"]["file"] == LORA_FILE and "path" not in meta["isengard"]["lora"]
    assert meta["isengard"]["lora"]["strength"] == pytest.approx(0.85)
    assert meta["isengard"]["workflow"] == "sdxl-lora"
    assert isinstance(meta["prompt"], dict) and meta["prompt"]
    details = tab.gallery.details.text.text()
    assert str(item.seed) in details and "1216 × 832" in details and "Anna" in details
    assert Path(item.path).is_file() and str(ctx.paths.outputs) in item.path

    # copy seed, reuse parameters
    click(qtbot, tab.gallery.details.copy_seed_button)
    assert QApplication.clipboard().text() == str(item.seed)
    form.prompt_edit.setPlainText("something else")
    click(qtbot, form.aspect_buttons["1:1"])
    form.lora.select(None)
    click(qtbot, tab.gallery.details.reuse_button)
    assert form.prompt_edit.toPlainText() == item.prompt
    assert form.aspect == "3:2" and form.tier == "Draft" and form.batch == 2
    assert form.lora.option().character_id == anna.id and form.lora.strength() == 0.85
    assert form.advanced.seed() == item.seed
    assert f"fixed seed {item.seed}" in form.advanced.toggle.text()
    assert form.model() == "sd_xl_base_1.0.safetensors"
    req = form.request()
    assert req.seed == item.seed and req.lora.path.endswith(LORA_FILE) and req.batch == 2

    # a server-side validation error shows inline, naming node, input and value
    double.set_models({"checkpoints": ["juggernautXL_v9.safetensors"], "loras": [LORA_FILE]})
    with qtbot.waitSignal(ctx.generation.job_failed, timeout=30_000) as failed:
        click(qtbot, form.generate_button)
    message = failed.args[1]
    assert "sd_xl_base_1.0.safetensors" in message
    assert form.error_label.isVisible() and form.error_label.text() == message
    assert tab.progress.error.text() == message

    # the gallery is kept: a restart shows the same pictures
    close_app(qtbot, ctx)
    ctx2 = make_app()
    tab2 = open_generate(qtbot, ctx2)
    qtbot.waitUntil(lambda: {i.id for i in tab2.gallery.items()} == {i.id for i in items},
                    timeout=15_000)


def test_extras_disabled_with_reason_until_the_server_has_what_they_need(
        qt_asyncio_loop, qtbot, make_app, double, tmp_path):
    configure_remote(double.url)
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    wait_ready(qtbot, tab)
    face = tab.form.extras.checks["facedetailer"]
    assert not face.isEnabled()
    assert "needs node FaceDetailer" in face.toolTip()
    assert "Impact" in face.toolTip()
    assert "FaceDetailer: needs node FaceDetailer" in tab.form.extras.hint.text()
    # the server gets the Impact Pack and a face detector
    double.extra_nodes = FACE_NODES
    double.set_models({"checkpoints": CHECKPOINTS, "loras": [LORA_FILE],
                       "ultralytics": ["bbox/face_yolov8m.pt"]})
    ctx.generation.refresh_servers()
    qtbot.waitUntil(face.isEnabled, timeout=15_000)
    assert face.toolTip() == tab.form.extras.tips["facedetailer"]
    assert "FaceDetailer" not in tab.form.extras.hint.text()
    face.setChecked(True)
    assert "facedetailer" in tab.form.request().features
    face.setChecked(False)

    # ControlNet: disabled without a ControlNet model; with one it needs a control image
    extras = tab.form.extras
    control = extras.checks["controlnet"]
    assert not control.isEnabled() and "controlnet" in control.toolTip()
    double.set_models({"checkpoints": CHECKPOINTS, "loras": [LORA_FILE],
                       "controlnet": ["controlnet-canny-sdxl.safetensors"]})
    ctx.generation.refresh_servers()
    qtbot.waitUntil(control.isEnabled, timeout=15_000)
    form = tab.form
    qtbot.keyClicks(form.prompt_edit, "a lighthouse at dusk")
    click(qtbot, form.tier_buttons["Draft"])
    assert form.generate_button.isEnabled()
    control.setChecked(True)
    assert extras.image_rows["controlnet"].isVisible()
    assert extras.model_combos["controlnet"].currentText() == "controlnet-canny-sdxl.safetensors"
    assert not form.generate_button.isEnabled()
    assert "Choose the control image for ControlNet" in form.generate_button.toolTip()
    control_image = tmp_path / "pose.png"
    Image.new("RGB", (96, 64), (200, 120, 40)).save(control_image)
    extras.set_image("controlnet", str(control_image))
    assert form.generate_button.isEnabled()
    assert form.request().feature_inputs == {
        "controlnet_image": str(control_image),
        "controlnet_model": "controlnet-canny-sdxl.safetensors"}
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, form.generate_button)
    graph = read_metadata(finished.args[1][0].path)["prompt"]
    classes = {node["class_type"] for node in graph.values()}
    assert {"ControlNetLoader", "ControlNetApplyAdvanced", "LoadImage"} <= classes
    assert double.uploads, "the control image was uploaded to the server"


# -- gallery: more like this (image to image, nearby seeds) and delete ----------------------------
def test_more_like_this_from_the_gallery_then_delete(make_app, qt_asyncio_loop, qtbot, double):
    # (make_app before qt_asyncio_loop: the app still closes on the loop, the whole test
    # runs inside it, and its connections close without warnings)
    configure_remote(double.url)
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    form, details = tab.form, tab.gallery.details
    wait_ready(qtbot, tab)
    assert form.input_image.isHidden() and form.request().parent_image == ""
    assert not details.video_button.isEnabled()      # nothing selected: nothing to send
    qtbot.keyClicks(form.prompt_edit, "a red lighthouse on a cliff")
    click(qtbot, form.tier_buttons["Draft"])
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, form.generate_button)
    [parent] = finished.args[1]
    qtbot.waitUntil(lambda: tab.gallery.selected_item() is not None, timeout=5000)
    more = details.more
    assert more.button.toolTip() and details.delete_button.toolTip()
    assert not details.lineage.isVisible()          # a picture without relatives: no tree

    # "More like this" (the former Vary): strength slider (default 0.35) and count (default 4)
    slider = more.slider
    assert slider.value() == 35 and more.value_label.text() == "0.35"
    assert "Strength (denoise" in slider.toolTip() and more.count.value() == 4
    assert more.count.toolTip()
    slider.setValue(30)
    more.count.setValue(3)
    before = len(double.accepted_prompts)
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, more.button)
    children = finished.args[1]
    assert len(children) == 3
    assert [c.seed for c in children] == [parent.seed + 1, parent.seed + 2, parent.seed + 3]
    assert all(c.parent_id == parent.id and c.parent_image == parent.path for c in children)
    assert all(c.workflow == "sdxl-img2img" for c in children)
    # the graphs the server received: image to image from the uploaded picture, denoise 0.3,
    # one prompt per nearby seed
    graphs = [body["prompt"] for body in double.accepted_prompts[before:]]
    assert len(graphs) == 3
    for graph, seed in zip(graphs, [parent.seed + 1, parent.seed + 2, parent.seed + 3],
                           strict=True):
        classes = {node["class_type"] for node in graph.values()}
        assert {"LoadImage", "VAEEncode"} <= classes
        [sampler] = [n["inputs"] for n in graph.values() if n["class_type"] == "KSampler"]
        assert sampler["denoise"] == 0.3 and sampler["seed"] == seed
        [load] = [n["inputs"] for n in graph.values() if n["class_type"] == "LoadImage"]
        assert Path(parent.path).stem[:20] in load["image"]
    assert double.uploads, "the picture was uploaded"
    child = children[0]
    meta = read_metadata(child.path)
    assert meta["isengard"]["parent_image"] == parent.path
    assert meta["isengard"]["parent_id"] == parent.id
    assert meta["isengard"]["origin"] == "more_like_this"
    assert "Denoising strength: 0.3" in meta["parameters"]
    # the child's details: where it came from, and its lineage as a tree
    tab.gallery.select_item(child.id)
    assert "Varied from" in details.text.text() and Path(parent.path).name in details.text.text()
    qtbot.waitUntil(details.lineage.isVisible, timeout=5000)
    texts = details.lineage.texts()
    assert texts[0] == (0, f"#{parent.id} · picture · seed {parent.seed}")
    assert (1, f"#{child.id} · picture · seed {child.seed} · more like this · denoise 0.30") \
        in texts
    assert len(texts) == 4
    assert details.lineage.currentItem().text(0).startswith(f"#{child.id} ")

    # reuse parameters of the variation brings its input image back; ✕ removes it
    form.input_image.clear()
    click(qtbot, details.reuse_button)
    assert form.input_image.path() == parent.path and form.input_image.denoise() == 0.3
    slider = form.input_image.slider
    click(qtbot, form.input_image.clear_button)
    assert form.input_image.isHidden() and not slider.isVisible()
    req = form.request()
    assert "img2img" not in req.features and req.parent_image == ""
    assert "denoise" not in req.feature_inputs

    # "To Video": the Video tab opens with the picture as its start keyframe; a second
    # picture becomes the next keyframe
    tab.gallery.select_item(parent.id)
    assert details.video_button.isEnabled() and "Video tab" in details.video_button.toolTip()
    click(qtbot, details.video_button)
    video = ctx.tabs["Video"].page
    assert ctx.window.tabs.currentWidget() is ctx.tabs["Video"]
    assert video.keyframes.paths() == [parent.path]
    tab.gallery.select_item(child.id)
    click(qtbot, details.video_button)
    assert video.keyframes.paths() == [parent.path, child.path]
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Generate"])

    # Delete (button, then the Delete key): to the OS trash, out of the gallery and the DB
    problems: list[str] = []
    ctx.generation.failed.connect(problems.append)
    tab.gallery.select_item(parent.id)
    click(qtbot, details.delete_button)
    qtbot.waitUntil(lambda: sorted(i.id for i in tab.gallery.items())
                    == sorted(c.id for c in children), timeout=10_000)
    for gone in children:
        tab.gallery.select_item(gone.id)
        tab.gallery.grid.setFocus()
        qtbot.keyClick(tab.gallery.grid, Qt.Key.Key_Delete)
        qtbot.waitUntil(lambda g=gone: g.id not in {i.id for i in tab.gallery.items()},
                        timeout=10_000)
    assert problems == [] and tab.gallery.empty_label.isVisible()
    assert not Path(parent.path).exists() and not Path(child.path).exists()
    assert {Path(parent.path).name, Path(child.path).name} <= trashed_names()
    conn = sqlite3.connect(ctx.paths.db_file)
    try:
        assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 0
    finally:
        conn.close()


# -- synthetic dataset expansion ------------------------------------------------------------------
def test_generate_for_dataset_keep_and_discard(qt_asyncio_loop, qtbot, make_app, double,
                                               tmp_path):
    configure_remote(double.url)
    ctx = make_app()
    anna = add_character(qtbot, ctx.library, "Anna", trigger="anr_anna", photos=3,
                         photo_root=tmp_path, lora=write_lora(ctx.paths.loras / LORA_FILE))
    bob = add_character(qtbot, ctx.library, "Bob", trigger="bob_x", photos=2, photo_root=tmp_path)
    characters = ctx.tabs["Characters"]
    # hidden for an untrained character, shown for a trained one
    characters.open_character(bob.id)
    assert not characters.detail.generate_button.isVisible()
    characters.open_character(anna.id)
    button = characters.detail.generate_button
    assert button.isVisible()
    click(qtbot, button)
    assert ctx.window.tabs.currentWidget() is ctx.tabs["Generate"]
    tab = ctx.generate_tab
    qtbot.waitUntil(tab.isVisible, timeout=5000)
    assert tab.staging_character_id == anna.id and tab.lower_stack.currentIndex() == 1
    form = tab.form
    assert form.staging_banner.isVisible() and "Anna" in form.title.text()
    assert not form.lora.combo.isEnabled() and "fixed" in form.lora.combo.toolTip()
    assert form.lora.option().character_id == anna.id and form.batch == 4
    wait_ready(qtbot, tab)
    qtbot.keyClicks(form.prompt_edit, "on a mountain trail, candid")
    assert form.prompt_edit.toPlainText().startswith("anr_anna, ")
    assert form.request().target == "staging"

    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, form.generate_button)
    items = finished.args[1]
    assert len(items) == 4 and all(i.status == "staging" for i in items)
    strip = tab.staging
    qtbot.waitUntil(lambda: len(strip.tiles) == 4, timeout=5000)
    assert tab.gallery.items() == []                 # staging images stay out of the gallery
    ids = strip.item_ids()
    problems = []
    ctx.generation.failed.connect(problems.append)
    paths = {i.id: i.path for i in items}

    # Keep by button, Discard by key D, move with →, Keep with K
    before = ctx.library.image_count(anna.id)
    click(qtbot, strip.tile(ids[0]).keep_button)
    assert strip.current_id == ids[1]
    strip.setFocus()
    qtbot.keyClick(strip, Qt.Key.Key_D)                # discards ids[1]
    assert strip.current_id == ids[2]
    assert strip.tile(ids[1]).caption.text() == "Discarding…"
    qtbot.keyClick(strip, Qt.Key.Key_Right)
    assert strip.current_id == ids[3]
    qtbot.keyClick(strip, Qt.Key.Key_Left)
    assert strip.current_id == ids[2]
    qtbot.keyClick(strip, Qt.Key.Key_Right)
    qtbot.keyClick(strip, Qt.Key.Key_K)                # keeps ids[3]
    assert strip.current_id == ids[2]                  # the one still undecided
    click(qtbot, strip.tile(ids[2]).discard_button)

    qtbot.waitUntil(lambda: strip.tiles == [], timeout=20_000)
    assert problems == []
    assert strip.empty_label.isVisible()
    qtbot.waitUntil(lambda: ctx.library.image_count(anna.id) == before + 2, timeout=20_000)
    synthetic = [i for i in ctx.library.images(anna.id) if i.source == SYNTHETIC_SOURCE]
    assert len(synthetic) == 2
    for image in synthetic:
        assert image.caption.startswith("anr_anna")
        assert "mountain trail" in image.caption
        assert image.path.is_file()
    assert not Path(paths[ids[1]]).exists() and not Path(paths[ids[2]]).exists()
    assert ctx.generation.staging(anna.id) == []
    assert "5 photos" in tab.staging_title.text()

    # back to the gallery: the LoRA is free again
    click(qtbot, tab.staging_back)
    assert tab.lower_stack.currentIndex() == 0 and not form.staging_banner.isVisible()
    assert form.lora.combo.isEnabled() and form.request().target == "gallery"
    # an untrained character cannot enter staging mode
    assert tab.start_staging(bob.id) is False


def test_cancel_stops_a_slow_run(qt_asyncio_loop, qtbot, make_app, double):
    double.step_delay = 0.5                  # 15 draft steps: ~7 s unless cancelled
    configure_remote(double.url)
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    form = tab.form
    wait_ready(qtbot, tab)
    qtbot.keyClicks(form.prompt_edit, "a slow picture")
    click(qtbot, form.tier_buttons["Draft"])
    steps = []
    ctx.generation.job_progress.connect(lambda p: steps.append(p.done))
    click(qtbot, form.generate_button)
    qtbot.waitUntil(lambda: any(s >= 1 for s in steps), timeout=20_000)
    assert form.cancel_button.isEnabled()
    with qtbot.waitSignal(ctx.generation.job_failed, timeout=10_000) as failed:
        click(qtbot, form.cancel_button)
    assert "cancelled" in failed.args[1].lower()
    assert max(steps) < 15
    assert "Stopped" in tab.progress.status.text() and not form.error_label.isVisible()
    assert not form.cancel_button.isEnabled() and form.generate_button.isEnabled()
    assert tab.gallery.items() == []
    assert double.interrupts, "the server was asked to interrupt"
    assert dataclasses.asdict(ctx.settings.settings)["remote_servers"] == [double.url]


def test_managed_server_problem_shows_in_the_bar(qt_asyncio_loop, qtbot, make_app, tmp_path):
    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(comfyui_folder=str(tmp_path / "no-comfy")))
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    bar = tab.backends
    qtbot.waitUntil(lambda: any(s.state == "error" for s in bar.servers), timeout=15_000)
    chip = next(iter(bar.chips.values()))
    assert chip.facts.text() == "Error" and str(tmp_path / "no-comfy") in chip.toolTip()
    assert bar.problem_label.isVisible()
    assert bar.problem_label.text().startswith("This computer (managed ComfyUI): The ComfyUI "
                                               f"folder {tmp_path / 'no-comfy'} does not exist")
    assert bar.restart_button.isVisible() and bar.log_button.isVisible()
    assert not bar.refresh_button.isEnabled() and bar.refresh_button.toolTip()
    assert not tab.form.generate_button.isEnabled()
    assert "does not exist" in tab.form.generate_button.toolTip()
    assert "Nothing can be made yet" in tab.progress.status.text()


# -- LoRA explorer (issue 17, item 6) -------------------------------------------------------------
def test_lora_explorer_grid_fixed_seed_ab_and_open_in_gallery(make_app, qt_asyncio_loop, qtbot,
                                                              double):
    """Two LoRAs × two strengths × one prompt = four pictures with one seed; each job's graph
    carries its LoRA and strength; two cells side by side in the A/B view; a cell opens its
    picture in the gallery. Bad strengths are refused naming the value."""
    from isengard_desktop.ui.generate.lora_explorer import parse_strengths

    second = "anna-sdxl-older.safetensors"
    double.set_models({"checkpoints": CHECKPOINTS, "loras": [LORA_FILE, second]})
    configure_remote(double.url)
    ctx = make_app()
    anna = add_character(qtbot, ctx.library, "Anna", trigger="anr_anna",
                         lora=write_lora(ctx.paths.loras / LORA_FILE))
    ctx.library.add_lora(anna.id, str(write_lora(ctx.paths.loras / second)), "sdxl", 400)
    qtbot.waitUntil(lambda: len(ctx.library.loras(anna.id)) == 2, timeout=5000)
    tab = open_generate(qtbot, ctx)
    wait_ready(qtbot, tab)
    click(qtbot, tab.form.tier_buttons["Draft"])
    click(qtbot, tab.explorer_button)
    dialog = tab.explorer
    assert dialog is not None and dialog.loras.count() == 2
    for widget in (dialog.loras, dialog.strengths, dialog.prompts, dialog.seed,
                   dialog.render_button, dialog.ab_slider):
        assert widget.toolTip(), widget

    dialog.check([str(ctx.paths.loras / LORA_FILE), str(ctx.paths.loras / second)])
    dialog.strengths.setText("0.5, abc")
    click(qtbot, dialog.render_button)
    assert dialog.error.isVisible() and "'abc' is not a number" in dialog.error.text()
    assert dialog.cells == []
    dialog.strengths.setText("0.5, 1.1")
    dialog.prompts.setPlainText("a portrait by a window")
    dialog.seed.setValue(4242)
    before = len(double.accepted_prompts)
    click(qtbot, dialog.render_button)
    assert len(dialog.cells) == 4 and dialog.table.rowCount() == 4
    qtbot.waitUntil(lambda: all(c.item is not None for c in dialog.cells), timeout=60_000)
    assert "4 of 4 pictures — done" in dialog.status.text()
    assert {c.item.seed for c in dialog.cells} == {4242}
    assert sorted((Path(c.item.lora_path).name, c.item.lora_strength) for c in dialog.cells) \
        == sorted((name, s) for name in (LORA_FILE, second) for s in (0.5, 1.1))
    assert all(c.item.prompt.startswith("anr_anna, a portrait by a window")
               for c in dialog.cells)
    graphs = [p["prompt"] for p in double.accepted_prompts[before:]]
    loaded = sorted((n["inputs"]["lora_name"], n["inputs"]["strength_model"])
                    for g in graphs for n in g.values() if n["class_type"] == "LoraLoader")
    assert loaded == sorted((name, s) for name in (LORA_FILE, second) for s in (0.5, 1.1))

    # A/B of two cells, then a cell → the gallery
    qtbot.waitUntil(lambda: len(dialog._images) == 4, timeout=10_000)
    dialog.table.item(0, 0).setSelected(True)
    dialog.table.item(3, 0).setSelected(True)
    a, b = dialog.ab_view.a, dialog.ab_view.b
    assert not a.isNull() and not b.isNull()
    assert "A: " in dialog.ab_label.text() and "at 0.5" in dialog.ab_label.text()
    target = dialog.cell_at(2, 0)
    dialog.table.cellDoubleClicked.emit(2, 0)
    qtbot.waitUntil(lambda: tab.gallery.selected_item() is not None
                    and tab.gallery.selected_item().id == target.item.id, timeout=5000)
    assert parse_strengths("0.4 0.8;1.2") == [0.4, 0.8, 1.2]
    with pytest.raises(ValueError, match="2.5 is outside"):
        parse_strengths("2.5")


def test_concept_builder_from_the_form_fills_prompt_and_lora(make_app, qt_asyncio_loop, qtbot,
                                                             double):
    configure_remote(double.url)
    ctx = make_app()
    anna = add_character(qtbot, ctx.library, "Anna", trigger="anr_anna",
                         lora=write_lora(ctx.paths.loras / LORA_FILE))
    tab = open_generate(qtbot, ctx)
    wait_ready(qtbot, tab)
    assert tab.form.concept_button.toolTip()
    click(qtbot, tab.form.concept_button)
    dialog = tab.concept_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.character.setCurrentIndex(dialog.character.findData(anna.id))
    dialog.edits["action"].setText("reading a letter")
    dialog.edits["setting"].setText("a train compartment")
    click(qtbot, dialog.use_button)
    assert tab.form.prompt_edit.toPlainText() == \
        "anr_anna, reading a letter, a train compartment"
    assert tab.form.lora.option() is not None and tab.form.lora.option().character_id == anna.id
    assert tab.form.request().prompt == "anr_anna, reading a letter, a train compartment"
