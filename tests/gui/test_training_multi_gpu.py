"""The Training tab offers "Train on N GPUs" when the probe saw several GPUs and the trainer
has an engine for them, shows the per-GPU and effective batch, and puts the choice into the
job (issue 16 item 5)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from isengard_desktop.core.selftest_report import GpuStatus, gpu_status
from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.ui.training.backend_fields import BackendChoice
from tests.gui.test_training_tab import library, make_form, model  # noqa: F401

BACKENDS = [BackendChoice("builtin", "Built-in", multi_gpu="accelerate",
                          families=("sd15", "sdxl", "flux-dev", "chroma")),
            BackendChoice("one-gpu", "One-GPU trainer", families=("sd15", "sdxl"))]


def _two_gpu_form(qtbot, library, tmp_path):  # noqa: F811
    form, _ = make_form(qtbot, library, backends=BACKENDS,
                        gpu_hint="NVIDIA RTX 4090, 24 GB")
    form.set_models([model(tmp_path, "sdxl")])
    form.backend_picker.select_backend("builtin")
    return form


def test_one_gpu_offers_nothing(qtbot, library, tmp_path):  # noqa: F811
    form = _two_gpu_form(qtbot, library, tmp_path)
    form.set_gpu_count(1)
    assert not form.multi_gpu_row.isVisible()
    assert "num_processes" not in form.job_fields().get("extra", {})


def test_two_gpus_are_offered_with_the_effective_batch(qtbot, library, tmp_path):  # noqa: F811
    form = _two_gpu_form(qtbot, library, tmp_path)
    form.set_gpu_count(2)
    assert form.multi_gpu_row.isVisible()
    assert not form.multi_gpu_check.isChecked() and not form.multi_gpu_spin.isEnabled()
    assert "2 GPUs found" in form.multi_gpu_note.text()
    assert form.multi_gpu_check.toolTip() and form.multi_gpu_spin.toolTip()
    assert "num_processes" not in form.job_fields().get("extra", {})
    assert form.fit_label.text().startswith("Fits this GPU (est. ")

    qtbot.mouseClick(form.multi_gpu_check, Qt.MouseButton.LeftButton)
    assert form.multi_gpu_check.isChecked() and form.multi_gpu_spin.isEnabled()
    assert form.multi_gpu_spin.value() == 2
    batch = int(form.field_value("batch_size"))
    accum = int(form.field_value("grad_accum"))
    assert form.job_fields()["extra"]["num_processes"] == 2
    # the pre-flight speaks of each GPU, and of the RAM of two processes loading the model
    assert form.fit_label.text().startswith("Fits each of the 2 GPUs (est. ")
    assert "2 training processes" in form.fit_label.toolTip()
    assert f"batch {batch} per GPU × 2 GPUs" in form.multi_gpu_note.text()
    assert form.multi_gpu_note.text().endswith(f"effective batch {batch * 2 * accum}")

    form.set_field("batch_size", 3)
    form.set_field("grad_accum", 2)
    form._on_field_edited()
    assert form.multi_gpu_note.text() == ("batch 3 per GPU × 2 GPUs × 2 accumulated = "
                                          "effective batch 12")
    # the job the form makes is the job the backend launches on two GPUs
    job = TrainingJob.from_dict({**form.job_fields(), "job_id": "j", "character_id": 1,
                                 "character_name": "A", "trigger_word": "sks",
                                 "dataset_dir": str(tmp_path), "output_name": "a"})
    from isengard_desktop.core.training.parallel import num_processes
    assert num_processes(job) == 2 and job.batch_size == 3


def test_cpu_or_a_one_gpu_trainer_hides_the_offer(qtbot, library, tmp_path):  # noqa: F811
    form = _two_gpu_form(qtbot, library, tmp_path)
    form.set_gpu_count(4)
    form.set_processes(3)
    assert form.processes() == 3 and form.multi_gpu_spin.maximum() == 4
    form.backend_picker.select_backend("one-gpu")
    assert not form.multi_gpu_row.isVisible()
    assert "num_processes" not in form.job_fields().get("extra", {})
    form.backend_picker.select_backend("builtin")
    assert form.multi_gpu_row.isVisible() and form.processes() == 3
    form.set_field("device", "cpu")
    form._on_field_edited()
    assert not form.multi_gpu_row.isVisible() and form.processes() == 1


def test_an_earlier_job_reloads_its_gpu_count(qtbot, library, tmp_path):  # noqa: F811
    form = _two_gpu_form(qtbot, library, tmp_path)
    form.set_gpu_count(2)
    job = TrainingJob(job_id="j", character_id=1, character_name="A", trigger_word="sks",
                      family="sdxl", base_model=str(tmp_path / "models" / "sdxl.safetensors"),
                      dataset_dir=str(tmp_path), output_name="a", backend="builtin",
                      extra={"num_processes": 2})
    form.load_job(job)
    assert form.multi_gpu_check.isChecked() and form.processes() == 2
    form.load_job(TrainingJob(**{**job.__dict__, "extra": {}}))
    assert not form.multi_gpu_check.isChecked() and form.processes() == 1


def test_the_probe_reports_how_many_gpus_torch_sees():
    probe = {"torch": "2.13.0", "cuda": {"available": True, "device_name": "NVIDIA H100",
                                         "vram_total": 80 << 30, "device_count": 2}}
    assert gpu_status(probe) == GpuStatus(usable=True, hint="NVIDIA H100, 80 GB", why="",
                                          gpu_count=2)
    del probe["cuda"]["device_count"]          # an older probe's answer: one GPU
    assert gpu_status(probe).gpu_count == 1
