"""The Training tab and its widgets, driven as a user would.

Widgets first (loss chart, log view, samples strip, setup form with presets, estimate and the
Advanced section), then the whole tab on the real TrainingService running the fake trainer
backend through real child processes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from isengard_desktop.core.models import ModelInfo
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.training.presets import PRESETS, estimate_seconds, format_duration
from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.services.library import LibraryService
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.ui.training.backend_fields import BackendChoice
from isengard_desktop.ui.training.setup_form import SetupFormWidget, resolve_prompts
from isengard_desktop.ui.theme import apply_dark_theme
from isengard_desktop.ui.widgets.log_view import LogViewWidget, line_level
from isengard_desktop.ui.widgets.loss_chart import LossChartWidget
from isengard_desktop.ui.widgets.samples_strip import SamplesStripWidget
from tests.helpers.characters import add_character


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def library(qtbot):
    init_main_thread_bridge()
    apply_dark_theme(QApplication.instance())
    paths = resolve_paths().ensure()
    lib = LibraryService(paths)
    lib.start()
    qtbot.waitUntil(lambda: lib.is_ready, timeout=10_000)
    yield lib
    lib.shutdown()


def model(tmp_path, family, name=None):
    label = {"sd15": "SD 1.5", "sdxl": "SDXL", "flux-dev": "Flux.1 dev", "chroma": "Chroma",
             None: "unknown"}[family]
    path = tmp_path / "models" / (name or f"{family}.safetensors")
    return ModelInfo(path, family, label, 6_900_000_000)


def png(path: Path, color, size=(256, 256)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


# -- loss chart ----------------------------------------------------------------------------------
def test_loss_chart_keeps_every_point_of_rapid_updates(qtbot):
    # (how often it redraws is a timing: benchmarks measure it, tests do not)
    chart = LossChartWidget()
    qtbot.addWidget(chart)
    for step in range(1, 41):                  # 40 updates arriving 10 times a second
        chart.append_points([(step, 1.0 / step)])
        qtbot.wait(25)
    qtbot.waitUntil(lambda: not chart._redraw_throttle.has_pending, timeout=10_000)
    assert len(chart.raw_curve.getOriginalDataset()[0]) == 40   # nothing lost


def test_loss_chart_appends_smooths_and_rewinds(qtbot):
    chart = LossChartWidget(smoothing=0.9)
    qtbot.addWidget(chart)
    assert len(chart) == 0 and chart._stack.currentWidget() is chart.empty_label
    rng = np.random.default_rng(0)
    losses = 0.2 + 0.05 * rng.standard_normal(3000)
    chart.append_points([(i + 1, float(v)) for i, v in enumerate(losses[:10])])
    assert chart._stack.currentWidget() is chart.plot
    for start in range(10, 3000, 100):          # batches, as the 10 Hz signal delivers them
        chunk = range(start, min(start + 100, 3000))
        chart.append_points([(i + 1, float(losses[i])) for i in chunk])
    assert len(chart) == 3000 and chart.last_step() == 3000
    # the trend is much calmer than the raw loss and follows its mean
    smooth = chart.smoothed()
    assert smooth[0] == pytest.approx(losses[0])  # debiased: starts at the first value
    assert np.std(smooth[200:]) < np.std(losses) / 3
    assert abs(np.mean(smooth[200:]) - 0.2) < 0.01
    # redraws are throttled (≤ 2 a second): the curve catches up shortly after
    qtbot.waitUntil(lambda: len(chart.raw_curve.getOriginalDataset()[0]) == 3000, timeout=10_000)
    x, y = chart.raw_curve.getOriginalDataset()
    assert len(x) == 3000 and y[-1] == pytest.approx(losses[-1])
    assert len(chart.smooth_curve.getOriginalDataset()[0]) == 3000
    # a NaN leaves a gap and doesn't poison the trend
    chart.append_points([(3001, math.nan), (3002, 0.2)])
    assert math.isnan(chart.losses()[-2]) and math.isfinite(chart.smoothed()[-1])
    # a resumed run restarting from its checkpoint at step 2500 rewinds the chart there
    before = chart.smoothed()[2499]                    # the trend at step 2500
    chart.append_points([(2501, 0.1)])
    assert len(chart) == 2501 and chart.last_step() == 2501
    assert chart.smoothed()[2500] == pytest.approx(0.9 * before + 0.1 * 0.1, rel=1e-3)
    chart.set_history([(1, 0.5), (2, 0.4)])
    assert list(chart.steps()) == [1, 2]
    chart.clear()
    assert len(chart) == 0 and chart._stack.currentWidget() is chart.empty_label


# -- log view ------------------------------------------------------------------------------------
def test_log_view_levels_filter_limit_and_autoscroll(qtbot):
    log = LogViewWidget()
    log.resize(500, 200)
    qtbot.addWidget(log)
    log.show()
    assert line_level("RuntimeError: CUDA out of memory") == "error"
    assert line_level("/x.py:1: UserWarning: deprecated thing") == "warning"
    assert line_level("step 10/100 loss=0.1") == "info"
    log.append_lines("stderr", ["\x1b[32mLoading:\x1b[0m 33%", "UserWarning: careful",
                                "Traceback (most recent call last):", "step 1"])
    assert log.lines() == ["Loading: 33%", "UserWarning: careful",
                           "Traceback (most recent call last):", "step 1"]
    log.set_filter("problems")
    assert log.lines() == ["UserWarning: careful", "Traceback (most recent call last):"]
    log.append_lines("stdout", ["INFO: fine", "ERROR: bad"])
    assert log.lines()[-1] == "ERROR: bad" and "INFO: fine" not in log.lines()
    log.set_filter("all")
    assert log.lines()[-2:] == ["INFO: fine", "ERROR: bad"]

    # follows new output at the bottom...
    log.append_lines("stderr", [f"line {i}" for i in range(300)])
    bar = log.text.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    # ...but not when the user scrolled up to read
    bar.setValue(10)
    assert log.follow_button.isVisible()
    log.append_lines("stderr", [f"more {i}" for i in range(50)])
    assert bar.value() == 10
    qtbot.mouseClick(log.follow_button, Qt.MouseButton.LeftButton)
    assert bar.value() == bar.maximum() and not log.follow_button.isVisible()
    log.append_lines("stderr", ["last"])
    assert bar.value() == bar.maximum()

    # bounded: the oldest lines go
    log.append_lines("stderr", [f"flood {i}" for i in range(6000)])
    assert log.text.document().blockCount() <= 5000
    assert log.lines()[-1] == "flood 5999"
    log.clear()
    assert log.lines() == []


# -- samples strip -------------------------------------------------------------------------------
def test_samples_strip_newest_first_thumbnails_and_enlarge(qtbot, tmp_path):
    strip = SamplesStripWidget()
    strip.resize(600, 170)
    qtbot.addWidget(strip)
    strip.show()
    a = png(tmp_path / "s" / "step250.png", (200, 40, 40), (512, 512))
    b = png(tmp_path / "s" / "step500.png", (40, 200, 40), (512, 768))
    strip.add_sample(250, a, "anr_toka, portrait")
    strip.add_sample(500, b, "anr_toka smiling")
    assert strip.paths() == [str(b), str(a)]
    qtbot.waitUntil(lambda: strip.is_loaded(0) and strip.is_loaded(1), timeout=5000)
    icon = strip.item(0).icon().pixmap(strip.iconSize())
    assert not icon.isNull() and max(icon.width(), icon.height()) <= strip.iconSize().width()
    assert "step 500" in strip.item(0).text() and "smiling" in strip.item(0).toolTip()
    # a sample that cannot be read says so instead of failing
    strip.add_sample(750, tmp_path / "missing.png", "x")
    qtbot.waitUntil(lambda: "unreadable" in strip.item(0).text(), timeout=5000)

    with qtbot.waitSignal(strip.sample_clicked) as clicked:
        rect = strip.visualItemRect(strip.item(1))
        qtbot.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert clicked.args == [str(b)]
    dialog = strip.last_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.windowTitle() == "Sample at step 500"
    pix = dialog.image_label.pixmap()
    assert (pix.width(), pix.height()) == (512, 768)
    dialog.close()

    strip.set_samples([(1, a, "p"), (2, b, "q")])
    assert strip.paths() == [str(b), str(a)]
    strip.clear()
    assert strip.count() == 0


# -- setup form ------------------------------------------------------------------------------------
def make_form(qtbot, library, measured=None, backends=None, gpu_hint=None):
    calls = []

    def measure(family, resolution, cpu=False, auto_on_cpu=False):
        calls.append((family, resolution))
        # a CPU measurement is keyed (family, resolution, "cpu"): GPU runs never count for it
        return (measured or {}).get((family, resolution, "cpu") if cpu else (family, resolution))

    form = SetupFormWidget(library, measure,
                           backends or [BackendChoice("builtin", "Built-in")],
                           gpu_hint=gpu_hint)
    form.resize(420, 900)
    qtbot.addWidget(form)
    form.show()
    return form, calls


def test_presets_fill_the_form_and_update_the_estimate(qtbot, library, tmp_path):
    ch = add_character(qtbot, library, "Anna", photos=12, photo_root=tmp_path, size=(1024, 1280))
    form, calls = make_form(qtbot, library, measured={("sdxl", 1024): 1.5})
    # no model yet: it says where models come from; Start explains why it can't run
    form.set_models([])
    assert "Model folders are set in Settings" in form.model_info.text()
    assert not form.start_button.isEnabled()
    assert "base model" in form.start_hint.text()
    form.set_models([model(tmp_path, "sd15"), model(tmp_path, "sdxl")])
    assert form.selected_character().id == ch.id
    assert "12 photos" in form.character_combo.currentText()
    assert form.start_button.isEnabled()

    # the three presets are visible, checkable buttons; Balanced is the default
    for button in form.preset_buttons.values():
        assert button.isVisible() and button.isCheckable()
    assert form.preset_buttons["Balanced"].isChecked()
    assert form.family() == "sd15" and "SD 1.5" in form.model_info.text()
    sd15 = PRESETS["sd15"]["Balanced"]
    assert form.field_value("steps") == sd15.steps
    assert form.field_value("resolution") == 512
    assert form.field_value("learning_rate") == pytest.approx(1e-4)

    # Quick on SD 1.5: fields follow, the estimate shrinks and says it is typical
    qtbot.mouseClick(form.preset_buttons["Quick"], Qt.MouseButton.LeftButton)
    assert form.preset_buttons["Quick"].isChecked()
    quick = PRESETS["sd15"]["Quick"]
    assert (form.field_value("steps"), form.field_value("rank"),
            form.field_value("batch_size")) == (quick.steps, quick.rank, quick.batch_size)
    expected, _ = estimate_seconds("sd15", quick.resolution, quick.steps,
                                   quick.batch_size * quick.grad_accum)
    assert form.estimate_label.text() == f"Estimated time: {format_duration(expected)}"
    assert "typical for a 24 GB GPU" in form.estimate_basis.text()

    # another model family re-applies the preset for it and uses the measured step time
    form.model_combo.setCurrentIndex(1)
    assert form.family() == "sdxl" and form.field_value("resolution") == 1024
    assert form.field_value("steps") == PRESETS["sdxl"]["Quick"].steps
    assert ("sdxl", 1024) in calls
    assert "measured on this machine: 1.50 s/step" in form.estimate_basis.text()
    seconds, _ = estimate_seconds("sdxl", 1024, PRESETS["sdxl"]["Quick"].steps, 1, 1.5)
    assert format_duration(seconds) in form.estimate_label.text()

    # editing a field marks the preset edited and updates the estimate at once
    before = form.estimate_label.text()
    form.fields["steps"].setValue(6000)
    assert form.edited and "edited" in form.preset_note.text()
    assert form.estimate_label.text() != before
    assert form.job_fields()["preset"] == "Quick (edited)"
    qtbot.mouseClick(form.preset_buttons["High Quality"], Qt.MouseButton.LeftButton)
    assert not form.edited and form.field_value("steps") == PRESETS["sdxl"]["High Quality"].steps


def test_advanced_section_is_collapsed_and_every_field_explained(qtbot, library, tmp_path):
    form, _ = make_form(qtbot, library)
    assert not form.advanced.isVisible() and not form.advanced_button.isChecked()
    assert form.advanced_button.arrowType() == Qt.ArrowType.RightArrow
    qtbot.mouseClick(form.advanced_button, Qt.MouseButton.LeftButton)
    assert form.advanced.isVisible()
    assert form.advanced_button.arrowType() == Qt.ArrowType.DownArrow
    wanted = {"steps", "rank", "alpha", "learning_rate", "lr_scheduler", "warmup_steps",
              "batch_size", "grad_accum", "resolution", "repeats", "caption_dropout", "seed",
              "mixed_precision", "gradient_checkpointing", "quantize_base", "checkpoint_every",
              "keep_checkpoints", "sample_every"}
    assert wanted <= set(form.fields)
    job_fields = set(TrainingJob.__dataclass_fields__)
    for name, widget in form.fields.items():
        assert name in job_fields, name
        tip = widget.toolTip()
        assert len(tip) > 40 and tip.endswith("."), (name, tip)
        assert widget.isVisible()
    # the learning-rate box reads and writes scientific notation
    lr = form.fields["learning_rate"]
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "3e-5")
    lr.interpretText()
    assert lr.value() == pytest.approx(3e-5) and "3.00e-5" in lr.text()
    lr.stepBy(1)
    assert lr.value() == pytest.approx(6e-5)
    qtbot.mouseClick(form.advanced_button, Qt.MouseButton.LeftButton)
    assert not form.advanced.isVisible()


def test_dataset_warnings_and_prompts_with_trigger(qtbot, library, tmp_path):
    few = add_character(qtbot, library, "Bo", photos=3, photo_root=tmp_path, size=(400, 500), trigger="bo_kuvi")
    form, _ = make_form(qtbot, library)
    form.set_models([model(tmp_path, "sdxl")])
    form.select_character(few.id)
    warnings = form.dataset_warnings()
    assert any(w.startswith("Only 3 photos") for w in warnings)
    assert any("smaller than 1024 px" in w for w in warnings)
    assert any("No photo has a caption" in w for w in warnings)
    assert form.warnings_label.isVisible()
    assert "bo_kuvi" in form.character_info.text()
    assert "bo_kuvi" in form.prompts_note.text() and "automatically" in form.prompts_note.text()
    form.prompts_edit.setPlainText("a photo of [trigger] in a park\n\nportrait, studio light\n"
                                   "bo_kuvi at the beach")
    assert form.sample_prompts() == ["a photo of bo_kuvi in a park",
                                     "bo_kuvi, portrait, studio light", "bo_kuvi at the beach"]
    assert resolve_prompts("[trigger]\nx", "") == ["x"]


def test_unknown_model_and_unavailable_backend_block_start(qtbot, library, tmp_path):
    add_character(qtbot, library, "Cy", photos=2, photo_root=tmp_path)
    form, _ = make_form(qtbot, library, backends=[
        BackendChoice("kohya", "kohya_ss", False, "kohya_ss is not installed: set its folder "
                      "in Settings."),
        BackendChoice("builtin", "Built-in")])
    assert form.backend().key == "builtin"      # the first available one is chosen
    form.set_models([model(tmp_path, None, "sd3.safetensors")])
    assert "not a model family we can train" in form.model_info.text()
    assert not form.start_button.isEnabled()
    form.set_models([model(tmp_path, "flux-dev")])
    assert form.start_button.isEnabled()
    assert form.field_value("quantize_base") == "int8"
    form.backend_combo.setCurrentIndex(0)
    assert not form.start_button.isEnabled()
    assert "kohya_ss is not installed" in form.start_hint.text()


def test_form_fields_make_a_valid_job(qtbot, library, tmp_path):
    ch = add_character(qtbot, library, "Dee", photos=2, photo_root=tmp_path)
    form, _ = make_form(qtbot, library)
    form.set_models([model(tmp_path, "sd15")])
    fields = form.job_fields()
    job = TrainingJob(job_id="x", character_id=ch.id, character_name=ch.name,
                      trigger_word=ch.trigger_word, dataset_dir="/d", output_name="dee",
                      **fields)
    job.validate()
    assert job.family == "sd15" and job.quantize_base == "none"
    assert job.base_model.endswith("sd15.safetensors") and job.preset == "Balanced"
    assert all(ch.trigger_word in p for p in job.sample_prompts)
    # loading an earlier job's settings brings every field back
    job.steps, job.rank, job.seed = 1234, 8, 99
    form.apply_preset("Quick")
    form.load_job(job)
    assert (form.field_value("steps"), form.field_value("rank"),
            form.field_value("seed")) == (1234, 8, 99)


# -- the whole tab on the real training service ---------------------------------------------------
SAMPLER = r'''
"""The fake trainer, following the job's sample_every (a sample picture every N steps, as
the built-in trainer does) and checkpoint_every: wraps tests/helpers/fake_trainer.py."""
import importlib.util
import json
import sys
from pathlib import Path

from PIL import Image

spec = importlib.util.spec_from_file_location("fake_trainer", sys.argv[1])
ft = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ft)
sys.argv = [sys.argv[1], *sys.argv[2:]]
job = json.loads(Path(sys.argv[sys.argv.index("--job") + 1]).read_text(encoding="utf-8"))
job_dir = Path(sys.argv[sys.argv.index("--job-dir") + 1])
plain_emit = ft.emit
if job.get("checkpoint_every"):
    sys.argv += ["--checkpoint-every", str(job["checkpoint_every"])]


def emit(event, **fields):
    plain_emit(event, **fields)
    every = job.get("sample_every") or 0
    if event == "step" and every and fields["step"] % every == 0:
        step = fields["step"]
        path = job_dir / "samples" / f"step{step:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 128), (step * 5 % 256, 90, 160)).save(path)
        plain_emit("sample", step=step, path=str(path), prompt=job["sample_prompts"][0])


ft.emit = emit
sys.exit(ft.main())
'''


def make_backend(script: Path, key: str, options: list[str]):
    from dataclasses import replace

    from tests.helpers.fake_backend import FAKE_TRAINER, FakeBackend

    class SamplingFakeBackend(FakeBackend):
        label = f"Fake trainer ({key})"

        def build_launch(self, job, paths, resume):
            launch = super().build_launch(job, paths, resume)
            argv = [launch.argv[0], str(script), str(FAKE_TRAINER), *launch.argv[2:], *options]
            return replace(launch, argv=argv)

    backend = SamplingFakeBackend()
    backend.key = key
    return backend


def write_sd15_model(path: Path) -> Path:
    """A header-only SD1.5-like .safetensors (what the model scan reads)."""
    import json
    import struct

    header = {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
              {"dtype": "F16", "shape": [320, 768], "data_offsets": [0, 491520]}}
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


@pytest.fixture
def training_app(qtbot, library, tmp_path):
    """The real TrainingService (fake trainer backends, real child processes) and a
    TrainingTab on it; returns a function (backends) -> (tab, service)."""
    from concurrent.futures import ThreadPoolExecutor

    from isengard_desktop.core.models import scan_model_folders
    from isengard_desktop.plugins.registry import TrainerRegistry
    from isengard_desktop.services.ops import run_in_executor
    from isengard_desktop.services.training.service import TrainingService
    from isengard_desktop.ui.training.training_tab import TrainingTab

    script = tmp_path / "sampling_fake_trainer.py"
    script.write_text(SAMPLER, encoding="utf-8")
    models = tmp_path / "models"
    write_sd15_model(models / "dreamshaper_8.safetensors")
    pool = ThreadPoolExecutor(1)
    made = []

    def list_models(callback):
        run_in_executor(pool, lambda: scan_model_folders([models]), callback)

    def make(backends: dict[str, list[str]], wait_ready: bool = True):
        registry = TrainerRegistry()
        for key, options in backends.items():
            backend = make_backend(script, key, options)
            registry.register(key, lambda b=backend: b, backend.label)
        service = TrainingService(library.paths, library, lambda: {}, registry)
        service.bundle_probe_torch = False
        service.stop_grace_s = service.cancel_grace_s = service.kill_grace_s = 5.0
        service.start()
        if wait_ready:
            qtbot.waitUntil(lambda: service.is_ready, timeout=10_000)
        tab = TrainingTab(library, service, list_models)
        tab.resize(1400, 900)
        qtbot.addWidget(tab)
        tab.show()
        qtbot.waitUntil(lambda: tab.form.selected_model() is not None, timeout=10_000)
        made.append(service)
        return tab, service

    yield make
    for service in made:
        service.shutdown()
    pool.shutdown(wait=True)


def set_up_job(qtbot, tab, steps, sample_every=0, checkpoint_every=0, backend=None):
    form = tab.form
    if backend:
        form.backend_combo.setCurrentIndex(
            next(i for i in range(form.backend_combo.count())
                 if form.backend_combo.itemData(i).key == backend))
    qtbot.mouseClick(form.preset_buttons["Quick"], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(form.advanced_button, Qt.MouseButton.LeftButton)
    form.fields["steps"].setValue(steps)
    form.fields["sample_every"].setValue(sample_every)
    form.fields["checkpoint_every"].setValue(checkpoint_every)
    assert form.start_button.isEnabled(), form.start_hint.text()


def test_start_from_the_tab_watch_it_train_and_find_the_lora_in_history(
        qtbot, library, training_app, tmp_path, monkeypatch):
    ch = add_character(qtbot, library, "Anna", photos=12, photo_root=tmp_path)
    tab, service = training_app({"fake": ["--delay", "0.03"]})
    form, panel = tab.form, tab.panel
    assert form.model_combo.currentText().startswith("dreamshaper_8.safetensors — SD 1.5")
    assert "SD 1.5" in form.model_info.text()
    set_up_job(qtbot, tab, steps=40, sample_every=10)
    assert "Estimated time" in form.estimate_label.text()

    seen = {"phases": set(), "chart": [], "steps": []}
    service.phase_changed.connect(lambda _id, _ev: seen["phases"].add(
        panel.phase_label.text().split(" (")[0]))
    service.progressed.connect(lambda _id, _ev: (seen["chart"].append(len(panel.chart)),
                                                 seen["steps"].append(panel.step_label.text())))
    notes, messages = [], []
    tab.notify_requested.connect(lambda title, text: notes.append((title, text)))
    tab.message_posted.connect(messages.append)

    with qtbot.waitSignal(service.job_finished, timeout=30_000) as finished:
        qtbot.mouseClick(form.start_button, Qt.MouseButton.LeftButton)
        assert form.error_label.text() == ""
        job_id = tab.selected_job_id
        assert job_id and tab.history.job_ids() == [job_id]
    record = finished.args[0]
    assert record.state == "completed", (record.error_kind, record.error_message)

    # the job was built from the form
    spec = record.spec
    assert spec.character_id == ch.id and spec.trigger_word == ch.trigger_word
    assert spec.dataset_dir == str(library.character_folder(ch))
    assert spec.family == "sd15" and spec.backend == "fake" and spec.preset == "Quick (edited)"
    assert spec.output_name == f"anna-sd15-{job_id[:6]}" and spec.steps == 40
    assert spec.sample_prompts[0].startswith(f"a photo of {ch.trigger_word}")

    # live: phases, progress and chart points arrived while it ran
    assert {"Loading the base model", "Training"} <= seen["phases"]
    assert seen["chart"] and seen["chart"][0] >= 1
    assert any(s.startswith("step ") and s.endswith(" / 40") for s in seen["steps"])
    # finished: the full curve, the samples (newest first), the log and the LoRA
    qtbot.waitUntil(lambda: len(panel.chart) == 40, timeout=5000)
    assert list(panel.chart.steps()) == list(range(1, 41))
    assert panel.chart.losses()[-1] < panel.chart.losses()[0]
    qtbot.waitUntil(lambda: panel.samples.count() == 4, timeout=5000)
    assert [Path(p).name for p in panel.samples.paths()] == [
        "step00040.png", "step00030.png", "step00020.png", "step00010.png"]
    qtbot.waitUntil(lambda: panel.samples.is_loaded(0), timeout=5000)
    assert panel.step_label.text() == "step 40 / 40"
    assert panel.progress.value() == panel.progress.maximum()
    assert panel.state_label.text() == "Completed"
    lora = f"anna-sd15-{job_id[:6]}.safetensors"
    assert panel.phase_label.text() == f"Finished: {lora}"
    assert any("fake warning" in line for line in panel.log.lines())
    assert not panel.error_label.isVisible()
    assert not panel.stop_button.isEnabled() and not panel.cancel_button.isEnabled()
    row = tab.history.row_text(job_id)
    assert row[0] == "Completed" and row[1] == "Anna" and row[2] == "SD 1.5 · Quick (edited)"
    assert row[6] == lora and row[5] != "—" and row[4] != "—"
    assert notes and notes[-1][0] == "LoRA ready" and lora in notes[-1][1]
    assert any(m.startswith("Training finished: Anna") for m in messages)
    qtbot.waitUntil(lambda: len(library.loras(ch.id)) == 1, timeout=5000)
    assert Path(library.loras(ch.id)[0].path).name == lora

    # click the newest sample: it opens enlarged
    rect = panel.samples.visualItemRect(panel.samples.item(0))
    qtbot.mouseClick(panel.samples.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.samples.last_dialog.windowTitle() == "Sample at step 40"
    panel.samples.last_dialog.close()

    # history actions: open folder, export a debug bundle, re-run with the same settings
    opened = []
    monkeypatch.setattr("isengard_desktop.ui.training.training_tab.QDesktopServices.openUrl",
                        lambda url: opened.append(url.toLocalFile()))
    tab.history.select_job(job_id)
    qtbot.mouseClick(tab.history.open_button, Qt.MouseButton.LeftButton)
    assert opened == [str(record.job_dir)]
    bundle = tmp_path / "bundle"
    monkeypatch.setattr("isengard_desktop.ui.training.training_tab.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(bundle), "Zip archive (*.zip)"))
    qtbot.mouseClick(tab.history.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(m.startswith("Debug bundle saved") for m in messages),
                    timeout=20_000)
    import zipfile

    with zipfile.ZipFile(tmp_path / "bundle.zip") as zf:
        names = zf.namelist()
    assert any(n.endswith("job.json") for n in names)
    assert any(n.endswith("events.jsonl") for n in names)

    assert tab.history.rerun_button.isEnabled() and not tab.history.resume_button.isEnabled()
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as again:
        qtbot.mouseClick(tab.history.rerun_button, Qt.MouseButton.LeftButton)
    second = again.args[0]
    assert second.state == "completed" and second.job_id != job_id
    assert second.spec.steps == 40 and second.spec.preset == spec.preset
    assert tab.history.job_ids() == [second.job_id, job_id]
    assert tab.selected_job_id == second.job_id
    qtbot.waitUntil(lambda: len(panel.chart) == 40, timeout=5000)

    # the next estimate uses the step time measured on this machine
    form.update_estimate()
    assert "measured on this machine" in form.estimate_basis.text()
    tab.grab().save(str(tmp_path / "training_tab.png"))


def test_compare_checkpoints_recommends_the_best_scored_step_and_uses_it(
        qtbot, library, training_app, tmp_path):
    """Checkpoint comparison (issue 16, item 4): rows = saved steps with their samples; with
    identity scores injected the best row is "Recommended"; "Use this checkpoint" makes that
    step's LoRA the character's newest; A/B and zoom show the pictures."""
    import re

    from PySide6.QtCore import QTimer

    from isengard_desktop.ui.training.checkpoint_compare import RECOMMENDED, ZoomDialog

    ch = add_character(qtbot, library, "Cleo", photos=4, photo_root=tmp_path)
    tab, service = training_app({"fake": ["--delay", "0.01"]})
    set_up_job(qtbot, tab, steps=40, sample_every=10, checkpoint_every=10)
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as finished:
        qtbot.mouseClick(tab.form.start_button, Qt.MouseButton.LeftButton)
    record = finished.args[0]
    assert record.state == "completed", record.error_message
    qtbot.waitUntil(lambda: len(library.loras(ch.id)) == 1, timeout=5000)

    wanted = {10: 0.41, 20: 0.93, 30: 0.62, 40: 0.58}   # step 20 looks most like Cleo
    asked: list[list[Path]] = []

    def scorer(images, on_scores):
        asked.append(list(images))
        scores = {p: wanted[int(re.search(r"step(\d+)", p.name).group(1))] for p in images}
        QTimer.singleShot(10, lambda: on_scores(scores))

    tab.identity_scorer = lambda character_id: scorer if character_id == ch.id else None
    tab.history.select_job(record.job_id)
    assert tab.history.compare_button.isEnabled()
    qtbot.mouseClick(tab.history.compare_button, Qt.MouseButton.LeftButton)
    dialog = tab.compare_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.grid.recommended is not None, timeout=10_000)
    grid = dialog.grid
    assert [r.step for r in grid.rows] == [10, 20, 30, 40] and all(r.can_use for r in grid.rows)
    assert len(asked) == 1 and len(asked[0]) == 4
    assert grid.recommended.step == 20
    score_column = len(grid.prompts)
    assert RECOMMENDED in dialog.table.item(1, score_column).text()
    assert all(RECOMMENDED not in dialog.table.item(r, score_column).text() for r in (0, 2, 3))
    assert "Step 20 looks most like the character" in dialog.status.text()

    # zoom and A/B
    qtbot.waitUntil(lambda: not dialog.table.item(0, 0).icon().isNull(), timeout=10_000)
    dialog.table.cellDoubleClicked.emit(2, 0)
    zooms = dialog.findChildren(ZoomDialog)
    assert zooms and zooms[-1].windowTitle().startswith("Step 30")
    zooms[-1].close()
    dialog.select_step(10)
    dialog.select_step(30)
    assert dialog.selected_steps() == [10, 30] and not dialog.use_button.isEnabled()
    qtbot.mouseClick(dialog.ab_button, Qt.MouseButton.LeftButton)
    a, b = dialog.ab_images()
    assert not a.isNull() and not b.isNull() and a != b
    assert dialog.ab_label.text() == "A: step 10    B: step 30"

    # use step 20: it becomes the character's newest LoRA; the others stay on disk
    dialog.table.clearSelection()
    dialog.select_step(20)
    assert dialog.use_button.isEnabled()
    messages: list[str] = []
    tab.message_posted.connect(messages.append)
    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(library.loras(ch.id)) == 2, timeout=10_000)
    from isengard_desktop.ui.generate.generate_tab import lora_options

    chosen = next(o for o in lora_options(library) if o.character_id == ch.id)
    name = f"{record.spec.output_name}-step20.safetensors"
    assert Path(chosen.path).name == name and Path(chosen.path).is_file()
    assert (Path(record.job_dir) / name).is_file()
    assert Path(record.lora_path).is_file()              # the final LoRA is still there
    assert any(m.startswith("Step 20 is now Cleo's LoRA") for m in messages)
    dialog.grab().save(str(tmp_path / "compare.png"))


def test_trainer_error_is_shown_as_a_readable_message(qtbot, library, training_app, tmp_path):
    add_character(qtbot, library, "Bea", photos=3, photo_root=tmp_path)
    tab, service = training_app({"fake-oom": ["--delay", "0.01", "--fail-at", "5"]})
    panel = tab.panel
    set_up_job(qtbot, tab, steps=20, checkpoint_every=2)
    notes = []
    tab.notify_requested.connect(lambda title, text: notes.append((title, text)))
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as finished:
        qtbot.mouseClick(tab.form.start_button, Qt.MouseButton.LeftButton)
    record = finished.args[0]
    # out of memory in every run: one recovery (384 px, batch 1), then nothing is left
    assert record.state == "failed" and record.error_kind == "oom"
    assert panel.error_label.isVisible()
    text = panel.error_label.text()
    first = ("The GPU ran out of memory at step 5, and the job already uses the lowest memory "
             "settings Isengard can choose for it.")
    assert text.startswith(f"Out of GPU memory: {first}\nTried:\n  • Recovered from "
                           "out-of-memory at step 5: 512 → 384 px")
    assert "What you can do: close other programs" in text
    assert text.endswith("The trainer said: Out of memory at step 5: lower the batch size.")
    note = ("⚠ Recovered from out-of-memory at step 5: 512 → 384 px, batch 2 → 1 (gradient "
            "accumulation 1 → 2)")
    assert panel.recovery_label.isVisible() and panel.recovery_label.text() == note
    assert panel.state_label.text() == "Failed"
    row = tab.history.row_text(record.job_id)
    assert row[0] == "Failed · OOM recovered" and row[6] == "—"
    item = tab.history.tree.topLevelItem(0)
    assert "Out of GPU memory" in item.toolTip(0) and note in item.toolTip(0)
    assert notes == [("Training failed", f"Bea · SD 1.5: Out of GPU memory: {first}")]
    # calm: no dialog popped up
    from PySide6.QtWidgets import QMessageBox

    assert not [w for w in QApplication.topLevelWidgets()
                if isinstance(w, QMessageBox) and w.isVisible()]
    # checkpoints were saved before the failure: Resume is offered
    qtbot.waitUntil(lambda: service.job(record.job_id).resumable, timeout=5000)
    assert panel.resume_button.isEnabled() and tab.history.resume_button.isEnabled()

    # after a restart the history loads in the background and the job is shown again,
    # error, chart and log included
    tab2, service2 = training_app({"fake-oom": []}, wait_ready=False)
    qtbot.waitUntil(lambda: tab2.history.job_ids() == [record.job_id], timeout=10_000)
    qtbot.waitUntil(lambda: len(tab2.panel.chart) == 4, timeout=5000)
    assert tab2.selected_job_id == record.job_id
    assert tab2.panel.error_label.text() == text
    assert tab2.panel.recovery_label.text() == note
    assert tab2.panel.resume_button.isEnabled()
    qtbot.waitUntil(lambda: any("fake warning" in line for line in tab2.panel.log.lines()),
                    timeout=5000)


def test_a_recovered_out_of_memory_is_a_note_in_the_panel_and_the_history(
        qtbot, library, training_app, tmp_path):
    """The trainer runs out of memory at step 5 while the job asks for more than 384 px or a
    batch above 1: it resumes one tier lower by itself and completes; the job panel and the
    history say so (also after a restart), and no error is shown."""
    add_character(qtbot, library, "Dee", photos=3, photo_root=tmp_path)
    tab, service = training_app({"fake-oom": ["--delay", "0.01", "--oom-at", "5",
                                              "--oom-above", "384"]})
    panel = tab.panel
    set_up_job(qtbot, tab, steps=12, checkpoint_every=2)
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as finished:
        qtbot.mouseClick(tab.form.start_button, Qt.MouseButton.LeftButton)
    record = finished.args[0]
    assert record.state == "completed" and record.step == 12, record.error_message
    note = ("⚠ Recovered from out-of-memory at step 5: 512 → 384 px, batch 2 → 1 (gradient "
            "accumulation 1 → 2)")
    assert panel.recovery_label.isVisible() and panel.recovery_label.text() == note
    assert not panel.error_label.isVisible()
    assert panel.state_label.text() == "Completed"
    assert "384 px" in panel.summary_label.text()      # the settings it finished with
    row = tab.history.row_text(record.job_id)
    assert row[0] == "Completed · OOM recovered"
    assert note in tab.history.tree.topLevelItem(0).toolTip(0)
    tab.grab().save(str(tmp_path / "training_tab_oom_recovered.png"))

    tab2, _service2 = training_app({"fake-oom": []}, wait_ready=False)
    qtbot.waitUntil(lambda: tab2.history.job_ids() == [record.job_id], timeout=10_000)
    qtbot.waitUntil(lambda: len(tab2.panel.chart) > 0, timeout=5000)
    assert tab2.panel.recovery_label.text() == note and tab2.panel.recovery_label.isVisible()
    assert not tab2.panel.error_label.isVisible()   # the recovered OOM event is no error
    assert tab2.history.row_text(record.job_id)[0] == "Completed · OOM recovered"


def test_stop_and_save_then_resume_finishes_the_planned_steps(qtbot, library, training_app,
                                                              tmp_path):
    add_character(qtbot, library, "Cal", photos=3, photo_root=tmp_path)
    tab, service = training_app({"fake": ["--delay", "0.03"]})
    panel = tab.panel
    set_up_job(qtbot, tab, steps=60, checkpoint_every=20)
    qtbot.mouseClick(tab.form.start_button, Qt.MouseButton.LeftButton)
    job_id = tab.selected_job_id
    qtbot.waitUntil(lambda: service.job(job_id).step >= 8, timeout=20_000)
    assert panel.stop_button.isEnabled() and panel.cancel_button.isEnabled()
    assert not panel.resume_button.isEnabled()
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as stopped:
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert stopped.args[0].state == "stopped"
    qtbot.waitUntil(lambda: panel.resume_button.isEnabled(), timeout=5000)
    assert panel.state_label.text() == "Stopped (saved)"
    assert "Resume continues" in panel.phase_label.text()
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as done:
        qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    assert done.args[0].state == "completed" and done.args[0].step == 60
    # the full curve is reloaded at the end: the resumed run continues it, no duplicate steps
    qtbot.waitUntil(lambda: len(panel.chart) == 60, timeout=5000)
    assert list(panel.chart.steps()) == list(range(1, 61))


def test_cancel_asks_first_then_ends_the_job(qtbot, library, training_app, tmp_path,
                                             monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    add_character(qtbot, library, "Dan", photos=3, photo_root=tmp_path)
    tab, service = training_app({"fake": ["--delay", "0.03"]})
    panel = tab.panel
    set_up_job(qtbot, tab, steps=2000)
    qtbot.mouseClick(tab.form.start_button, Qt.MouseButton.LeftButton)
    job_id = tab.selected_job_id
    qtbot.waitUntil(lambda: service.job(job_id).step >= 3, timeout=20_000)
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: answers.pop(0)))
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)   # "No": keeps running
    assert service.job(job_id).state == "running"
    with qtbot.waitSignal(service.job_finished, timeout=30_000) as finished:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].state == "cancelled"
    assert panel.state_label.text() == "Cancelled"
    assert tab.history.row_text(job_id)[0] == "Cancelled"
    assert not panel.cancel_button.isEnabled() and tab.history.rerun_button.isEnabled()
