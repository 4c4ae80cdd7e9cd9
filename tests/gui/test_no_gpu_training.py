"""Training says plainly when there is no usable GPU and estimates for the device chosen
(issue 11, item 14)."""

from __future__ import annotations

import os

from isengard_desktop.core.selftest_report import GpuStatus
from isengard_desktop.core.training.presets import estimate_seconds, format_duration
from tests.gui.test_training_tab import library, make_form, model, training_app  # noqa: F401
from tests.helpers.characters import add_character


def test_device_cpu_estimates_for_the_cpu(qtbot, library, tmp_path):  # noqa: F811
    add_character(qtbot, library, "Anna", photos=12, photo_root=tmp_path, size=(512, 512))
    form, _ = make_form(qtbot, library, measured={("sd15", 512): 0.2})
    form.set_models([model(tmp_path, "sd15")])
    assert "measured on this machine" in form.estimate_basis.text()     # a GPU run's speed
    form.set_field("device", "cpu")
    form.update_estimate()
    assert "CPU" in form.estimate_basis.text(), form.estimate_basis.text()
    steps = int(form.field_value("steps"))
    batch = int(form.field_value("batch_size")) * int(form.field_value("grad_accum"))
    resolution = int(form.field_value("resolution"))
    seconds, words = estimate_seconds("sd15", resolution, steps, batch, gpu_hint="cpu",
                                      cpu_cores=os.cpu_count())
    assert form.estimate_label.text() == f"Estimated time: {format_duration(seconds)}"
    basis = form.estimate_basis.text()
    assert basis == f"Based on {words}, including loading and caching."
    assert "typical step time on this computer's CPU" in basis     # not the GPU run's 0.2 s


def test_device_cpu_prefers_an_earlier_cpu_jobs_measured_step_time(qtbot, library,  # noqa: F811
                                                                     tmp_path):
    add_character(qtbot, library, "Anna", photos=12, photo_root=tmp_path, size=(512, 512))
    form, _ = make_form(qtbot, library, measured={("sd15", 512): 0.2,
                                                  ("sd15", 512, "cpu"): 9.5})
    form.set_models([model(tmp_path, "sd15")])
    form.set_field("device", "cpu")
    form.update_estimate()
    assert form.estimate_basis.text().startswith(
        "Based on measured on this computer's CPU: 9.50 s/step")
    steps = int(form.field_value("steps"))
    seconds, _ = estimate_seconds("sd15", 512, steps, 1, 9.5, "cpu")
    assert form.estimate_label.text() == f"Estimated time: {format_duration(seconds)}"


def test_no_gpu_banner_and_estimate_on_auto(qtbot, training_app):  # noqa: F811
    tab, _service = training_app({"builtin": []})
    assert not tab.no_gpu_banner.isVisible()
    tab.set_gpu_status(GpuStatus(usable=False, hint="cpu",
                                 why="PyTorch 2.13.0+cpu is a CPU-only build"))
    assert tab.no_gpu_banner.isVisible()
    text = tab.no_gpu_banner.text()
    assert "No usable GPU" in text and "CPU-only build" in text
    assert "CPU" in tab.form.estimate_basis.text()           # auto falls back to the CPU
    tab.set_gpu_status(GpuStatus(usable=True, hint="NVIDIA RTX 4090, 24 GB", why=""))
    assert not tab.no_gpu_banner.isVisible()
    assert "24 GB" in tab.form.estimate_basis.text()


def test_the_probe_verdict_is_cached(qtbot, tmp_path):
    import json
    import sys
    import time

    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.services.gpu_probe import GpuProbe

    paths = resolve_paths().ensure()
    probe = {"torch": "2.13.0+cpu", "cuda": {"available": False, "version": None}}
    found: list[GpuStatus] = []
    gpu = GpuProbe(paths)
    gpu.cache_file.parent.mkdir(parents=True, exist_ok=True)
    gpu.cache_file.write_text(json.dumps({"python": sys.executable, "time": time.time(),
                                          "probe": probe}))
    gpu.found.connect(found.append)
    gpu.start()                                   # from the cache: no child is started
    assert gpu._child is None
    assert found and not found[0].usable and "CPU-only build" in found[0].why
    gpu.cache_file.write_text(json.dumps({"python": "/other/python", "time": time.time(),
                                          "probe": probe}))
    assert GpuProbe(paths)._read_cache() is None    # another Python: probe again
