"""The profile manager and profiles on the Training tab, driven as a user would: apply a
profile (form values, trainer and its fields change), save the current settings as a profile,
import/export through the file dialogs, compare two, validate with field-level problems, and
the change history with restore.

The tab runs on a small stand-in training service (it records submitted jobs; nothing is
launched) and a registry of fake backends; profiles come from the repository's
``profiles/`` folder and a user folder under the test's ISENGARD_HOME.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog, QMessageBox

from isengard_desktop.core.models import ModelInfo
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.training.profile_store import ProfileStore
from isengard_desktop.core.training.profiles import load_profile
from isengard_desktop.core.training.spec import JobPaths
from isengard_desktop.plugins.registry import TrainerRegistry
from isengard_desktop.services.library import LibraryService
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.services.training.records import JobRecord, JobState
from isengard_desktop.ui.theme import apply_dark_theme
from tests.helpers.fake_backend import FakeBackend
from tests.helpers.characters import add_character

SHIPPED = Path(__file__).resolve().parents[2] / "profiles"


# -- stand-ins -------------------------------------------------------------------------------------
class StandInTraining(QObject):
    """What the Training tab needs from the training service; submitted jobs are recorded
    (and listed as queued), nothing is launched."""

    jobs_changed = Signal()
    job_updated = Signal(object)
    job_progress = Signal(str, object)
    phase_changed = Signal(str, object)
    progressed = Signal(str, object)
    sample_added = Signal(str, object)
    checkpoint_saved = Signal(str, object)
    log_appended = Signal(str, str, list)
    job_finished = Signal(object)
    error_reported = Signal(str, object)

    def __init__(self, registry: TrainerRegistry, root: Path) -> None:
        super().__init__()
        self.registry = registry
        self.root = root
        self.submitted = []
        self.records: dict[str, JobRecord] = {}

    def measured_sec_per_step(self, family, resolution):
        return None

    def jobs(self):
        return sorted(self.records.values(), key=lambda r: r.created, reverse=True)

    def job(self, job_id):
        return self.records.get(job_id)

    def events(self, job_id, on_loaded):
        on_loaded([])

    def add_record(self, job, state="queued") -> JobRecord:
        now = datetime.now(UTC).isoformat()
        record = JobRecord(job_id=job.job_id, character_id=job.character_id,
                           character_name=job.character_name, backend=job.backend,
                           family=job.family, preset=job.preset, state=JobState(state),
                           created=now, total_steps=job.steps,
                           job_dir=JobPaths(self.root / job.job_id).root, spec=job)
        self.records[job.job_id] = record
        return record

    def submit(self, job):
        job.validate()
        if job.backend not in self.registry:
            raise ValueError(f"backend: no trainer backend {job.backend!r}")
        self.submitted.append(job)
        record = self.add_record(job)
        self.jobs_changed.emit()
        return record


class UnavailableBackend(FakeBackend):
    key = "ai-toolkit"
    label = "ai-toolkit"
    REASON = ("ai-toolkit is not set up: choose its folder and Python in Settings → "
              "Trainers.")

    def available(self):
        return False, self.REASON


class DiffusionPipeLike(FakeBackend):
    """Declares model types and one field of its own, as diffusion-pipe does."""

    key = "diffusion-pipe"
    label = "diffusion-pipe"

    def capabilities(self):
        return {"families": ["sdxl", "flux-dev", "chroma"], "resume": True, "samples": False,
                "model_types": [{"key": "sdxl", "label": "SDXL", "families": ["sdxl"]},
                                {"key": "flux", "label": "Flux", "families": ["flux-dev"]},
                                {"key": "chroma", "label": "Chroma", "families": ["chroma"]}],
                "fields": [{"key": "checkpoint_path", "label": "SDXL checkpoint",
                            "kind": "file", "required": True, "model_types": ["sdxl"],
                            "tooltip": "The SDXL .safetensors file."},
                           {"key": "diffusers_path", "label": "Diffusers folder",
                            "kind": "folder", "required": True,
                            "model_types": ["flux", "chroma"],
                            "tooltip": "A Flux diffusers folder."},
                           {"key": "num_ar_buckets", "label": "Number of aspect-ratio buckets",
                            "kind": "int", "tooltip": "Buckets between min and max AR."},
                           {"key": "wandb", "label": "Report to W&B", "kind": "bool",
                            "tooltip": "Send the loss to Weights & Biases."}]}


def make_registry(*backends) -> TrainerRegistry:
    registry = TrainerRegistry()
    for backend in backends:
        registry.register(backend.key, lambda b=backend: b, backend.label)
    return registry


def builtin() -> FakeBackend:
    backend = FakeBackend()
    backend.key, backend.label = "builtin", "Built-in (diffusers + peft)"
    backend.capabilities = lambda: {"families": ["sd15", "sdxl", "flux-dev", "flux-schnell",
                                                 "chroma"]}
    return backend


def models(tmp_path) -> list[ModelInfo]:
    folder = tmp_path / "models"
    return [ModelInfo(folder / "sd15.safetensors", "sd15", "SD 1.5", 2 << 30),
            ModelInfo(folder / "sdxl.safetensors", "sdxl", "SDXL", 6 << 30),
            ModelInfo(folder / "chroma.safetensors", "chroma", "Chroma", 17 << 30)]


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def library(qtbot):
    init_main_thread_bridge()
    apply_dark_theme(QApplication.instance())
    lib = LibraryService(resolve_paths().ensure())
    lib.start()
    qtbot.waitUntil(lambda: lib.is_ready, timeout=10_000)
    yield lib
    lib.shutdown()


@pytest.fixture
def make_tab(qtbot, library, tmp_path):
    """A TrainingTab on the stand-in service: (backends...) -> (tab, service)."""
    from isengard_desktop.ui.training.training_tab import TrainingTab

    def make(*backends, shipped: Path = SHIPPED):
        registry = make_registry(*(backends or (builtin(),)))
        service = StandInTraining(registry, tmp_path / "jobs")
        store = ProfileStore(library.paths.data / "profiles", shipped,
                             backends=[*registry.keys(), "ai-toolkit", "diffusion-pipe",
                                       "kohya", "builtin"])
        tab = TrainingTab(library, service, lambda done: done(models(tmp_path)),
                          profiles=store)
        tab.resize(1400, 900)
        qtbot.addWidget(tab)
        tab.show()
        qtbot.waitUntil(lambda: tab.form.profile_combo.count() > 1, timeout=10_000)
        return tab, service

    return make


def open_dialog(qtbot, tab):
    qtbot.mouseClick(tab.form.manage_profiles_button, Qt.MouseButton.LeftButton)
    dialog = tab.profile_dialog
    qtbot.waitUntil(lambda: dialog.is_loaded and dialog.busy == 0, timeout=10_000)
    assert dialog.isVisible()
    return dialog


def idle(qtbot, dialog):
    qtbot.waitUntil(lambda: dialog.busy == 0, timeout=10_000)


# -- tests -------------------------------------------------------------------------------------
def test_apply_a_profile_fills_the_form_trainer_and_fields(qtbot, library, make_tab, tmp_path):
    ch = add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)
    tab, service = make_tab(builtin(), UnavailableBackend(), DiffusionPipeLike())
    form = tab.form
    assert form.backend().key == "builtin" and form.profile is None
    assert form.preset_buttons["Balanced"].isChecked()

    dialog = open_dialog(qtbot, tab)
    assert set(dialog.names(shipped=True)) == {load_profile(p).name
                                               for p in SHIPPED.glob("*.toml")}
    assert dialog.select("Chroma E6AI 512")
    rows = {r[0]: r for r in dialog.preview_rows()}
    assert rows["train.learning_rate"][1] == "0.00025"
    assert rows["backend.beta2"][1] == "0.99"
    assert rows["fields.transformer_path"][1].startswith(
        "Chroma transformer (chroma-unlocked-v47) (file, required)")
    assert all(r[2] == "" for r in rows.values())
    assert "No problems found" in dialog.validation_label.text()
    # technical settings are explained
    item = dialog.preview.item(list(rows).index("train.rank"), 0)
    assert "LoRA" in item.toolTip() or "hold" in item.toolTip()

    with qtbot.waitSignal(dialog.apply_requested):
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    # trainer, model type, base model of the profile's family, values
    assert form.backend().key == "diffusion-pipe"
    assert form.backend_picker.model_type() == "chroma"
    assert form.family() == "chroma"
    assert (form.field_value("resolution"), form.field_value("rank"),
            form.field_value("warmup_steps"), form.field_value("batch_size")) == (512, 32, 100, 2)
    assert form.field_value("learning_rate") == pytest.approx(2.5e-4)
    assert form.preset_label() == "Chroma E6AI 512"
    assert not any(b.isChecked() for b in form.preset_buttons.values())   # presets visible,
    assert all(b.isVisible() for b in form.preset_buttons.values())       # not in use
    assert form.profile_combo.currentText() == "Chroma E6AI 512"
    assert "Using the profile “Chroma E6AI 512”" in form.preset_note.text()
    assert not form.advanced.isVisible()                                 # stays collapsed
    # the profile's fields (and the backend's own, for this model type) are shown
    picker = form.backend_picker
    rows = picker.rows()
    assert set(rows) == {"transformer_path", "diffusers_path", "caption_prefix",
                         "num_ar_buckets", "wandb"}
    assert [k for k in rows if picker.is_main(k)] == ["transformer_path", "diffusers_path",
                                                      "caption_prefix"]
    # the backend's own optional options wait, collapsed, under "More options"
    assert picker.more_button.text() == "More options (2)" and not picker.more.isVisible()
    assert rows["num_ar_buckets"].raw() == "9"          # the profile's value for its option
    assert rows["wandb"].raw() is None                  # "Trainer default"
    assert rows["transformer_path"].label.text() == "Chroma transformer (chroma-unlocked-v47) *"
    assert rows["caption_prefix"].raw() == "[trigger], "
    assert not form.start_button.isEnabled()
    assert form.start_hint.text() == ("Trainer options: Chroma transformer "
                                      "(chroma-unlocked-v47) is required: choose the file "
                                      "(1 more below).")

    transformer = tmp_path / "m" / "chroma-unlocked-v47.safetensors"
    monkey_open = [str(transformer)]
    qtbot_patch = pytest.MonkeyPatch()
    qtbot_patch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (monkey_open[0], "")))
    qtbot_patch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(tmp_path / "m" / "FLUX.1-schnell")))
    try:
        qtbot.mouseClick(rows["transformer_path"].browse_button, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(rows["diffusers_path"].browse_button, Qt.MouseButton.LeftButton)
    finally:
        qtbot_patch.undo()
    assert form.start_button.isEnabled(), form.start_hint.text()
    qtbot.mouseClick(form.start_button, Qt.MouseButton.LeftButton)
    job = service.submitted[-1]
    assert job.backend == "diffusion-pipe" and job.family == "chroma"
    assert job.preset == "Chroma E6AI 512" and job.resolution == 512 and job.rank == 32
    assert job.extra["model_type"] == "chroma" and job.extra["profile"] == "Chroma E6AI 512"
    assert (job.extra["optimizer_type"], job.extra["beta1"], job.extra["beta2"],
            job.extra["weight_decay"], job.extra["eps"]) == ("adamw_optimi", 0.9, 0.99, 0.01,
                                                              1e-8)
    assert job.extra["num_ar_buckets"] == 9 and job.quantize_base == "float8"
    assert job.extra["fields"] == {"transformer_path": str(transformer),
                                   "diffusers_path": str(tmp_path / "m" / "FLUX.1-schnell"),
                                   "caption_prefix": f"{ch.trigger_word}, ",
                                   "num_ar_buckets": 9}
    # the history says which trainer ran it
    assert tab.history.row_text(job.job_id)[7] == "diffusion-pipe"

    # editing a value marks the profile edited; a preset button leaves the profile
    form.fields["steps"].setValue(1234)
    assert form.preset_label() == "Chroma E6AI 512 (edited)"
    qtbot.mouseClick(form.preset_buttons["Quick"], Qt.MouseButton.LeftButton)
    assert form.profile is None and form.profile_combo.currentIndex() == 0
    assert form.preset_buttons["Quick"].isChecked() and form.preset_label() == "Quick"
    assert "transformer_path" not in form.backend_picker.rows()

    # the quick picker in the form applies a profile directly
    idx = next(i for i in range(form.profile_combo.count())
               if form.profile_combo.itemText(i) == "SDXL · 12 GB")
    form.profile_combo.setCurrentIndex(idx)
    assert form.backend().key == "builtin" and form.family() == "sdxl"
    assert form.field_value("steps") == 1600 and form.field_value("optimizer") == "adamw8bit"
    # a profile for a trainer that is not available selects it and Start says why
    form.apply_profile(dialog.profile("Flux dev · 24 GB (ai-toolkit)"))
    assert form.backend().key == "ai-toolkit" and not form.start_button.isEnabled()
    assert form.start_hint.text() == UnavailableBackend.REASON
    # the kohya profile names a trainer that is not registered: listed, disabled
    kohya = next(i for i in range(form.profile_combo.count())
                 if form.profile_combo.itemText(i) == "Flux dev · 12 GB (kohya)")
    model = form.profile_combo.model()
    assert not model.flags(model.index(kohya, 0)) & Qt.ItemFlag.ItemIsEnabled
    assert "Needs the kohya trainer" in form.profile_combo.itemData(
        kohya, Qt.ItemDataRole.ToolTipRole)


def test_save_current_settings_as_a_profile_and_its_history(qtbot, library, make_tab,
                                                             tmp_path, monkeypatch):
    add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)
    tab, _ = make_tab(builtin(), DiffusionPipeLike())
    form = tab.form
    dialog = open_dialog(qtbot, tab)
    assert dialog.names(shipped=False) == []

    # the Chroma profile with its paths filled in, then a few edits
    form.apply_profile(dialog.profile("Chroma E6AI 1024"))
    form.backend_picker.set_values({"transformer_path": "/home/anna/chroma-v50.safetensors",
                                    "diffusers_path": "/home/anna/FLUX.1-schnell",
                                    "caption_prefix": "photo of [trigger], "})
    form.fields["steps"].setValue(1234)
    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *a, **k: ("Anna Chroma", True)))
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Anna Chroma" in dialog.names(shipped=False), timeout=10_000)
    idle(qtbot, dialog)
    assert dialog.selected().name == "Anna Chroma"
    assert "Anna Chroma  (yours)" in [form.profile_combo.itemText(i)
                                      for i in range(form.profile_combo.count())]
    saved = dialog.profile("Anna Chroma")
    assert saved.backend == "diffusion-pipe" and saved.family == "chroma"
    assert saved.train["steps"] == 1234 and saved.train["resolution"] == 1024
    assert saved.options == dialog.profile("Chroma E6AI 1024").options
    text = saved.source.read_text(encoding="utf-8")
    assert "/home/anna" not in text                      # paths stay fields to fill in
    assert saved.fields["transformer_path"]["required"] is True
    assert "default" not in saved.fields["transformer_path"]
    assert saved.fields["caption_prefix"]["default"] == "photo of [trigger], "
    assert saved.source.parent == library.paths.data / "profiles"

    # save again under the same name: asks, keeps the old version in the history
    form.fields["steps"].setValue(999)
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    dialog.save_current("Anna Chroma")
    qtbot.waitUntil(lambda: dialog.profile("Anna Chroma").train["steps"] == 999,
                    timeout=10_000)
    idle(qtbot, dialog)
    dialog.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: len(dialog.history_entries()) == 1, timeout=10_000)
    assert "1 earlier version" in dialog.history_label.text()
    dialog.history_list.setCurrentRow(0)
    qtbot.waitUntil(lambda: dialog.history_rows() != [], timeout=10_000)
    assert ["train.steps", "1234", "999"] in dialog.history_rows()
    assert dialog.restore_button.isEnabled()
    qtbot.mouseClick(dialog.restore_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.profile("Anna Chroma").train["steps"] == 1234,
                    timeout=10_000)
    qtbot.waitUntil(lambda: len(dialog.history_entries()) == 2, timeout=10_000)

    # a shipped profile has no history, and a shipped name cannot be saved over
    dialog.select("SDXL · 24 GB")
    assert "Shipped profiles have no history" in dialog.history_label.text()
    assert not dialog.delete_button.isEnabled()
    dialog.save_current("SDXL · 24 GB")
    assert "Not saved" in dialog.status_label.text()
    assert "profile.name: a shipped profile is called 'SDXL · 24 GB'" in \
        dialog.status_label.text()
    rows = {r[0]: r for r in dialog.preview_rows()}
    assert rows["profile.name"][2].startswith("a shipped profile is called")

    # delete (asks; kept in history)
    dialog.select("Anna Chroma")
    qtbot.mouseClick(dialog.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Anna Chroma" not in dialog.names(), timeout=10_000)
    assert ProfileStore(library.paths.data / "profiles", SHIPPED).history("Anna Chroma")


def test_import_and_export_through_the_dialog(qtbot, library, make_tab, tmp_path, monkeypatch):
    tab, _ = make_tab(builtin(), DiffusionPipeLike())
    dialog = open_dialog(qtbot, tab)
    src = tmp_path / "shared" / "friend.toml"
    src.parent.mkdir()
    src.write_text((SHIPPED / "chroma-e6ai-512.toml").read_text(encoding="utf-8").replace(
        'name = "Chroma E6AI 512"', 'name = "Friend Chroma"'), encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(src), "Training profiles (*.toml)")))
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Friend Chroma" in dialog.names(shipped=False), timeout=10_000)
    idle(qtbot, dialog)
    assert dialog.selected().name == "Friend Chroma"
    assert "Imported “Friend Chroma”" in dialog.status_label.text()
    qtbot.waitUntil(lambda: any("Friend Chroma" in tab.form.profile_combo.itemText(i)
                                for i in range(tab.form.profile_combo.count())), timeout=5000)

    dest = tmp_path / "out" / "exported"
    dest.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(dest), "Training profiles (*.toml)")))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    out = dest.with_name("exported.toml")
    qtbot.waitUntil(out.exists, timeout=10_000)
    idle(qtbot, dialog)
    assert out.read_bytes() == src.read_bytes()            # byte for byte
    # a shipped profile exports exactly as shipped
    dialog.select("SD 1.5 · 8 GB")
    dialog.export_selected(str(tmp_path / "out" / "sd15.toml"))
    qtbot.waitUntil((tmp_path / "out" / "sd15.toml").exists, timeout=10_000)
    idle(qtbot, dialog)
    assert (tmp_path / "out" / "sd15.toml").read_bytes() == (SHIPPED / "sd15-8gb.toml").read_bytes()

    # an invalid file is refused with the fields named
    bad = tmp_path / "shared" / "bad.toml"
    bad.write_text('version = 1\n[profile]\nname = "Bad"\nbackend = "builtin"\n'
                   'family = "sdxl"\n[train]\nrank = 0\nlearning_rate = "fast"\n',
                   encoding="utf-8")
    dialog.import_file(str(bad))
    idle(qtbot, dialog)
    status = dialog.status_label.text()
    assert status.startswith(f"Could not import {bad}")
    assert "• train.rank: must be between 1 and 1024 (got 0)" in status
    assert "• train.learning_rate: must be a number (got 'fast')" in status
    assert "Bad" not in dialog.names()


def test_compare_two_profiles_side_by_side(qtbot, library, make_tab):
    tab, _ = make_tab(builtin(), DiffusionPipeLike())
    dialog = open_dialog(qtbot, tab)
    rows = dialog.compare("Chroma E6AI 512", "Chroma E6AI 1024")
    assert dialog.tabs.currentIndex() == 1
    header = [dialog.compare_table.horizontalHeaderItem(c).text() for c in range(3)]
    assert header == ["Setting", "Chroma E6AI 512", "Chroma E6AI 1024"]
    fields = [r[0] for r in rows]
    assert ["train.resolution", "512", "1024"] in rows
    assert ["train.batch_size", "2", "1"] in rows
    assert ["profile.name", "Chroma E6AI 512", "Chroma E6AI 1024"] in rows
    assert "train.rank" not in fields and "backend.optimizer_type" not in fields
    assert "settings differ" in dialog.compare_label.text()
    rows = dialog.compare("SDXL · 12 GB", "Flux dev · 12 GB (kohya)")
    assert ["profile.backend", "builtin", "kohya"] in rows
    assert ["backend.blocks_to_swap", "—", "18"] in rows
    assert ["profile.model_type", "—", "flux-dev"] in rows
    assert dialog.compare("SDXL · 12 GB", "SDXL · 12 GB") == []


def test_validate_shows_problems_next_to_the_field_names(qtbot, library, make_tab):
    user = library.paths.data / "profiles"
    user.mkdir(parents=True, exist_ok=True)
    (user / "hand-edited.toml").write_text(
        'version = 1\n[profile]\nname = "Hand edited"\nbackend = "builtin"\nfamily = "sdxl"\n'
        'colour = "red"\n[train]\nrank = 0\nsteps = 100\n[backend]\nhf_token = "x"\n'
        '[fields.model]\nlabel = "Model"\nkind = "file"\ndefault = "/home/me/m.safetensors"\n',
        encoding="utf-8")
    (user / "not-toml.toml").write_text("= nope", encoding="utf-8")
    tab, _ = make_tab(builtin())
    dialog = open_dialog(qtbot, tab)
    assert "Hand edited" in dialog.names(shipped=False)
    broken = [dialog.user_group.child(i).text(0) for i in range(dialog.user_group.childCount())]
    assert "not-toml.toml (cannot be read)" in broken
    dialog.select("Hand edited")
    qtbot.mouseClick(dialog.validate_button, Qt.MouseButton.LeftButton)
    rows = {r[0]: r for r in dialog.preview_rows()}
    assert rows["train.rank"][2] == "must be between 1 and 1024 (got 0)"
    assert rows["train.steps"][2] == ""
    assert rows["profile.colour"][2].startswith("unknown key")
    assert rows["backend.hf_token"][2].startswith("secrets never go in a profile")
    assert rows["fields.model"][2].startswith("default: a file or folder field has no default")
    assert "4 problems" in dialog.validation_label.text()
    assert "4 problem(s) found" in dialog.status_label.text()
    # it cannot be applied
    with qtbot.assertNotEmitted(dialog.apply_requested):
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert "cannot be applied" in dialog.status_label.text()
    assert "• train.rank: must be between 1 and 1024 (got 0)" in dialog.status_label.text()
    # the form's quick picker lists it disabled, saying why
    combo = tab.form.profile_combo
    idx = next(i for i in range(combo.count()) if combo.itemText(i) == "Hand edited  (yours)")
    assert not combo.model().flags(combo.model().index(idx, 0)) & Qt.ItemFlag.ItemIsEnabled
    assert combo.itemData(idx, Qt.ItemDataRole.ToolTipRole).startswith(
        "This profile has problems (profile.colour: unknown key")


def test_history_list_shows_the_trainer_of_each_job(qtbot, library, make_tab, tmp_path):
    from isengard_desktop.core.training.spec import TrainingJob

    tab, service = make_tab(builtin(), DiffusionPipeLike())
    for job_id, backend in (("a1", "builtin"), ("b2", "diffusion-pipe"), ("c3", "kohya")):
        service.add_record(TrainingJob(job_id=job_id, character_id=1, character_name="Anna",
                                       trigger_word="anr", family="sdxl", base_model="/m.st",
                                       dataset_dir="/d", output_name=job_id, backend=backend),
                           state="completed")
    tab.on_jobs_changed()
    history = tab.history
    assert history.tree.headerItem().text(7) == "Trainer"
    assert history.row_text("a1")[7] == "Built-in (diffusers + peft)"
    assert history.row_text("b2")[7] == "diffusion-pipe"
    assert history.row_text("c3")[7] == "kohya"          # not registered: its key
    assert "trained with diffusion-pipe" in history.tree.topLevelItem(
        history.job_ids().index("b2")).toolTip(0)
    tab.select_job("b2")
    assert "trainer: diffusion-pipe" in tab.panel.summary_label.text()


def test_shipped_folder_can_be_overridden(qtbot, library, make_tab, tmp_path, monkeypatch):
    own = tmp_path / "own-profiles"
    own.mkdir()
    shutil.copy(SHIPPED / "sd15-8gb.toml", own / "only.toml")
    monkeypatch.setenv("ISENGARD_PROFILES", str(own))
    from isengard_desktop.core.training.profile_store import default_shipped_dir

    assert default_shipped_dir() == own
    tab, _ = make_tab(builtin(), shipped=default_shipped_dir())
    dialog = open_dialog(qtbot, tab)
    assert dialog.names() == ["SD 1.5 · 8 GB"]
