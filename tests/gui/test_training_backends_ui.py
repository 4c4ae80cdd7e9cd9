"""The trainer backend picker and the backend fields rendered from ``capabilities()``, driven
as a user would: every registered backend is listed, an unavailable one is disabled with its
reason, the built-in one stays the default, a backend's model types and fields appear (only
those for the chosen model type), required ones block Start naming the field, and the values
land in the submitted job's ``extra``.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QLineEdit

from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.ui.training.backend_fields import BackendChoice, choice_for
from isengard_desktop.ui.training.backend_picker import BackendPickerWidget
from tests.gui.test_training_profiles import UnavailableBackend, builtin, library, make_tab
from tests.helpers.characters import add_character
from tests.helpers.fake_backend import FakeBackend

__all__ = ["library", "make_tab"]   # fixtures shared with the profile tests


class FieldsBackend(FakeBackend):
    """A fake backend that declares model types and one field of every kind."""

    key = "fake-fields"
    label = "Fake with fields"

    def capabilities(self):
        return {
            "families": ["sd15", "chroma"], "resume": True, "samples": False,
            "model_types": [{"key": "sd15", "label": "SD 1.5", "families": ["sd15"]},
                            {"key": "chroma", "label": "Chroma", "families": ["chroma"]}],
            "fields": [
                {"key": "checkpoint_path", "label": "Checkpoint file", "kind": "file",
                 "tooltip": "The SD 1.5 checkpoint to train on.", "required": True,
                 "model_types": ["sd15"]},
                {"key": "transformer_path", "label": "Transformer file", "kind": "file",
                 "tooltip": "The Chroma transformer.", "required": True,
                 "model_types": ["chroma"]},
                {"key": "cache_dir", "label": "Cache folder", "kind": "folder",
                 "tooltip": "Where latents are cached.", "required": False},
                {"key": "note", "label": "Run note", "kind": "text",
                 "tooltip": "Free text for the run."},
                {"key": "blocks", "label": "Blocks to swap", "kind": "int", "default": 4,
                 "tooltip": "Transformer blocks kept in system RAM."},
                {"key": "shift", "label": "Shift", "kind": "float",
                 "tooltip": "Timestep shift."},
                {"key": "sampler", "label": "Sampler", "kind": "choice",
                 "choices": ["euler", "ddim"], "default": "euler",
                 "tooltip": "Sampler for previews."},
                {"key": "wandb", "label": "Log to W&B", "kind": "bool",
                 "tooltip": "Send the loss to Weights & Biases."},
                {"key": "broken", "label": "Unknown kind", "kind": "slider"},
            ]}


def test_every_backend_is_listed_and_an_unavailable_one_is_disabled_with_its_reason(
        qtbot, library, make_tab, tmp_path):
    add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)
    tab, _ = make_tab(UnavailableBackend(), builtin(), FieldsBackend())
    form, picker = tab.form, tab.form.backend_picker
    combo = form.backend_combo
    assert combo is picker.combo
    assert [combo.itemData(i).key for i in range(combo.count())] == \
        ["ai-toolkit", "builtin", "fake-fields"]
    # the built-in stays the default even when listed second
    assert form.backend().key == "builtin"
    assert not picker.is_enabled("ai-toolkit")
    assert picker.is_enabled("builtin") and picker.is_enabled("fake-fields")
    assert combo.itemText(0) == "ai-toolkit — not available"
    assert combo.itemData(0, Qt.ItemDataRole.ToolTipRole) == UnavailableBackend.REASON
    # the built-in has no fields and no model types: nothing extra is shown
    assert not picker.isVisible() and not picker.model_type_combo.isVisible()
    assert form.start_button.isEnabled(), form.start_hint.text()
    assert "extra" not in form.job_fields()
    # picked anyway (e.g. by a profile): Start is blocked with the reason
    picker.select_backend("ai-toolkit")
    assert not form.start_button.isEnabled()
    assert form.start_hint.text() == UnavailableBackend.REASON
    assert combo.toolTip() == UnavailableBackend.REASON
    picker.select_backend("builtin")
    assert form.start_button.isEnabled()


def test_backend_fields_render_from_capabilities_and_land_in_extra(
        qtbot, library, make_tab, tmp_path, monkeypatch):
    ch = add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)
    tab, service = make_tab(builtin(), FieldsBackend())
    form, picker = tab.form, tab.form.backend_picker
    form.model_combo.setCurrentIndex(0)                       # SD 1.5
    assert form.family() == "sd15"
    picker.select_backend("fake-fields")
    assert picker.isVisible() and picker.model_type_combo.isVisible()
    assert [picker.model_type_combo.itemText(i)
            for i in range(picker.model_type_combo.count())] == ["SD 1.5", "Chroma"]
    assert picker.model_type() == "sd15"                      # follows the model's family
    rows = picker.rows()
    assert list(rows) == ["checkpoint_path", "cache_dir", "note", "blocks", "shift",
                          "sampler", "wandb"]                  # chroma-only and bad kind hidden
    # widgets per kind, tooltips on every one, required ones marked
    assert isinstance(rows["checkpoint_path"].editor, QLineEdit)
    assert rows["checkpoint_path"].browse_button is not None
    assert rows["cache_dir"].browse_button is not None
    assert isinstance(rows["sampler"].editor, QComboBox)
    assert isinstance(rows["wandb"].editor, QComboBox)     # trainer default / on / off
    assert [rows["wandb"].editor.itemText(i) for i in range(3)] == \
        ["Trainer default", "On", "Off"]
    # required fields, files and folders at once; the optional rest collapsed
    assert [k for k in rows if picker.is_main(k)] == ["checkpoint_path", "cache_dir"]
    assert picker.more_button.text() == "More options (5)"
    assert not picker.more.isVisible() and not rows["shift"].editor.isVisible()
    qtbot.mouseClick(picker.more_button, Qt.MouseButton.LeftButton)
    assert picker.more.isVisible() and rows["shift"].editor.isVisible()
    assert rows["checkpoint_path"].label.text() == "Checkpoint file *"
    assert rows["note"].label.text() == "Run note"
    for row in rows.values():
        assert row.editor.toolTip().startswith(row.spec["tooltip"])
        assert f"Setting: {row.key}" in row.label.toolTip()
    assert rows["blocks"].raw() == "4" and rows["sampler"].raw() == "euler"   # defaults

    # a required field left empty blocks Start, naming it
    assert not form.start_button.isEnabled()
    assert form.start_hint.text() == ("Trainer options: Checkpoint file is required: "
                                      "choose the file.")
    checkpoint = tmp_path / "models" / "my sd15.safetensors"
    asked = []

    def open_file(parent, title, start, filters):
        asked.append(title)
        return str(checkpoint), filters

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(open_file))
    qtbot.mouseClick(rows["checkpoint_path"].browse_button, Qt.MouseButton.LeftButton)
    assert asked == ["Choose Checkpoint file"]
    assert rows["checkpoint_path"].raw() == str(checkpoint)
    assert form.start_button.isEnabled(), form.start_hint.text()

    # a value of the wrong kind is pointed out next to the field
    qtbot.keyClicks(rows["shift"].editor, "abc")
    assert rows["shift"].error.isVisible()
    assert rows["shift"].error.text() == "Shift (shift) must be a number (got 'abc')"
    assert not form.start_button.isEnabled()
    assert form.start_hint.text().startswith("Trainer options: Shift (shift) must be a number")
    rows["shift"].editor.setText("3.5")
    assert not rows["shift"].error.isVisible() and form.start_button.isEnabled()
    qtbot.keyClicks(rows["note"].editor, "first try")
    rows["sampler"].editor.setCurrentIndex(1)
    rows["wandb"].editor.setCurrentIndex(rows["wandb"].editor.findData(True))
    rows["blocks"].editor.setText("8")

    # another model type shows its own fields; values are kept when switching back
    picker.set_model_type("chroma")
    assert "transformer_path" in picker.rows() and "checkpoint_path" not in picker.rows()
    assert picker.rows()["note"].raw() == "first try"
    picker.set_model_type("sd15")
    assert picker.rows()["checkpoint_path"].raw() == str(checkpoint)

    qtbot.mouseClick(form.start_button, Qt.MouseButton.LeftButton)
    job = service.submitted[-1]
    assert job.backend == "fake-fields" and job.character_id == ch.id
    assert job.extra == {"model_type": "sd15",
                         "fields": {"checkpoint_path": str(checkpoint), "note": "first try",
                                    "blocks": 8, "shift": 3.5, "sampler": "ddim",
                                    "wandb": True}}
    assert tab.history.row_text(job.job_id)[7] == "Fake with fields"

    # an earlier job's trainer, model type and fields come back with its settings
    picker.select_backend("builtin")
    form.load_job(TrainingJob.from_dict({**job.__dict__}))
    assert form.backend().key == "fake-fields" and picker.model_type() == "sd15"
    assert picker.rows()["note"].raw() == "first try"
    assert picker.rows()["checkpoint_path"].raw() == str(checkpoint)


def test_picker_on_its_own_handles_odd_backends(qtbot):
    broken = BackendChoice("x", "X", False, "")
    picker = BackendPickerWidget([broken, BackendChoice("y", "Y", True, "",
                                                        model_types=({"key": "a"},))])
    qtbot.addWidget(picker)
    assert picker.backend().key == "y"              # the first available one
    assert picker.model_type() == "a" and picker.extra() == {"model_type": "a"}
    assert picker.problems() == [] and picker.values() == {}
    assert not picker.select_backend("nope")
    only_broken = BackendPickerWidget([broken])
    qtbot.addWidget(only_broken)
    assert only_broken.backend().key == "x"          # nothing available: shown, not usable
    assert only_broken.combo.itemData(0, Qt.ItemDataRole.ToolTipRole) == "Not available here."


def test_backend_choices_read_availability_and_capabilities():
    from isengard_desktop.plugins.registry import TrainerRegistry
    from isengard_desktop.ui.training.training_tab import backend_choices

    class Exploding(FakeBackend):
        def capabilities(self):
            raise RuntimeError("boom")

    registry = TrainerRegistry()
    registry.register("fields", FieldsBackend, "Fields")
    registry.register("off", UnavailableBackend, "Off")
    registry.register("explodes", Exploding, "Explodes")
    registry.register("missing", "no_such_module_xyz:Backend", "Missing")
    choices = {c.key: c for c in backend_choices(registry)}
    assert choices["fields"].available and len(choices["fields"].fields) == 8   # bad kind out
    assert [t["key"] for t in choices["fields"].model_types] == ["sd15", "chroma"]
    assert choices["fields"].families == ("sd15", "chroma")
    assert not choices["off"].available and choices["off"].why == UnavailableBackend.REASON
    assert not choices["explodes"].available and "boom" in choices["explodes"].why
    assert not choices["missing"].available and "could not be loaded" in choices["missing"].why


@pytest.mark.parametrize("family", ["chroma"])
def test_backend_that_does_not_train_the_family_says_so(qtbot, library, make_tab, tmp_path,
                                                        family):
    add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)
    tab, _ = make_tab(builtin(), FieldsBackend())
    form = tab.form
    form.model_combo.setCurrentIndex(1)   # SDXL: not in the fake backend's families
    form.backend_picker.select_backend("fake-fields")
    assert form.start_hint.text() == ("Fake with fields does not train SDXL models: pick "
                                      "another trainer or base model.")
    form.model_combo.setCurrentIndex(2)
    assert form.family() == family and form.backend_picker.model_type() == "chroma"
    assert "Transformer file is required" in form.start_hint.text()


def test_trainers_are_checked_again_when_settings_change(qtbot, library, make_tab, tmp_path):
    add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)

    class LaterBackend(UnavailableBackend):
        ready = False

        def available(self):
            return (True, "") if self.ready else (False, self.REASON)

    later = LaterBackend()
    tab, _ = make_tab(builtin(), later)
    picker = tab.form.backend_picker
    assert not picker.is_enabled("ai-toolkit")
    later.ready = True                       # e.g. its folder was set in Settings → Trainers
    tab.refresh_models()                     # what a settings change calls
    assert picker.is_enabled("ai-toolkit") and picker.backend().key == "builtin"
    picker.select_backend("ai-toolkit")
    assert tab.form.start_button.isEnabled(), tab.form.start_hint.text()
    later.ready = False
    tab.refresh_models()
    assert picker.backend().key == "ai-toolkit"          # kept, now blocked with the reason
    assert tab.form.start_hint.text() == UnavailableBackend.REASON


def test_the_real_registry_lists_every_trainer(qtbot, library, tmp_path):
    """The shipped backends (external ones not set up here): all listed, the external ones
    disabled with their own reason, the built-in one picked; a profile's options that are a
    trainer's own fields show up in them."""
    from isengard_desktop.core.training.profile_store import ProfileStore
    from isengard_desktop.plugins.registry import default_registry
    from isengard_desktop.ui.training.training_tab import TrainingTab
    from tests.gui.test_training_profiles import SHIPPED, StandInTraining, models

    registry = default_registry()
    service = StandInTraining(registry, tmp_path / "jobs")
    tab = TrainingTab(library, service, lambda done: done(models(tmp_path)),
                      profiles=ProfileStore(tmp_path / "user-profiles", SHIPPED))
    qtbot.addWidget(tab)
    picker = tab.form.backend_picker
    keys = [c.key for c in picker.choices()]
    assert keys == registry.keys() and "builtin" in keys
    assert picker.backend().key == "builtin"
    for i, key in enumerate(keys):
        ok, why = registry.get(key).available()
        assert picker.is_enabled(key) == ok
        if not ok:
            assert picker.combo.itemData(i, Qt.ItemDataRole.ToolTipRole) == why
    if "diffusion-pipe" in keys:
        qtbot.waitUntil(lambda: tab.form.profile_combo.count() > 1, timeout=10_000)
        profile = next(tab.form.profile_combo.itemData(i)
                       for i in range(1, tab.form.profile_combo.count())
                       if tab.form.profile_combo.itemData(i).name == "Chroma E6AI 512")
        tab.form.apply_profile(profile)
        assert tab.form.backend().key == "diffusion-pipe"
        assert picker.model_type() == "chroma"
        extra = tab.form.job_fields()["extra"]
        for key in picker.backend_field_keys() & set(profile.options):
            assert extra["fields"][key] == profile.options[key]


class NoSamplesBackend(FakeBackend):
    """Like diffusion-pipe: no samples during training, and training settings it ignores."""

    key = "diffusion-pipe"
    label = "diffusion-pipe"

    def capabilities(self):
        return {"families": ["sd15", "sdxl", "chroma"], "resume": True, "samples": False,
                "unused_job_fields": ["alpha", "seed", "sample_every", "sample_steps",
                                      "sample_prompts", "quantize_base", "not_a_field"]}


def test_what_the_trainer_does_not_use_is_greyed_out_with_the_reason(
        qtbot, library, make_tab, tmp_path):
    from isengard_desktop.plugins.diffusion_pipe.backend import DiffusionPipeBackend
    from isengard_desktop.ui.training.advanced_fields import FIELD_ROWS

    add_character(qtbot, library, "Anna", photos=3, photo_root=tmp_path)
    tab, _ = make_tab(builtin(), NoSamplesBackend())
    form = tab.form
    form.model_combo.setCurrentIndex(2)                       # Chroma: 8-bit base applies
    tips = {name: tip for name, _, tip in FIELD_ROWS}
    labels = form.advanced.labels
    assert form.backend().key == "builtin"
    assert form.prompts_edit.isEnabled() and "automatically" in form.prompts_note.text()
    assert all(w.isEnabled() and w.toolTip() == tips[n] for n, w in form.fields.items())

    form.backend_picker.select_backend("diffusion-pipe")
    # the sample prompts: disabled, with a visible one-line reason instead of being ignored
    assert not form.prompts_edit.isEnabled()
    assert form.prompts_note.isVisible()
    assert form.prompts_note.text() == "diffusion-pipe does not make samples during training."
    assert form.prompts_edit.toolTip() == form.prompts_note.text()
    # the settings it does not use: greyed out (input and label), the tooltip says why
    for name in ("alpha", "seed", "sample_every", "sample_steps", "quantize_base"):
        assert not form.fields[name].isEnabled() and not labels[name].isEnabled(), name
        assert form.fields[name].toolTip() == \
            f"diffusion-pipe does not use this setting.\n\n{tips[name]}"
        assert labels[name].toolTip() == form.fields[name].toolTip()
    for name in ("rank", "learning_rate", "steps", "resolution", "checkpoint_every"):
        assert form.fields[name].isEnabled() and form.fields[name].toolTip() == tips[name]
    assert form.start_button.isEnabled(), form.start_hint.text()
    # a character change keeps the reason
    form._on_character()
    assert form.prompts_note.text() == "diffusion-pipe does not make samples during training."

    # back to a trainer that samples and uses them all: everything enabled again
    form.backend_picker.select_backend("builtin")
    assert form.prompts_edit.isEnabled() and "automatically" in form.prompts_note.text()
    assert all(w.isEnabled() and w.toolTip() == tips[n] for n, w in form.fields.items())
    assert all(lab.isEnabled() for lab in labels.values())
    # SDXL: the 8-bit base stays off for its own reason, whatever the trainer
    form.model_combo.setCurrentIndex(1)
    assert not form.fields["quantize_base"].isEnabled()

    # the real diffusion-pipe backend says the same through its capabilities
    choice = choice_for("diffusion-pipe", "diffusion-pipe", DiffusionPipeBackend())
    assert choice.samples is False
    assert {"alpha", "seed", "sample_every", "sample_prompts"} <= set(choice.unused_fields)
    assert choice_for("fake-fields", "F", FieldsBackend()).unused_fields == ()
    assert choice_for("builtin", "Built-in", builtin()).samples is True   # no "samples" key
