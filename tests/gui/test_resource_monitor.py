"""Issue 16 item 3: the resource monitor service (its own thread, 1 Hz, job recording,
alerts), its widget in the job panel, and the Training tab at 900×600 with it open."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pynvml
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QWidget

from isengard_desktop.core.hardware.monitor import GB, ResourceAlert, ResourceSampler
from isengard_desktop.services.resource_monitor import RESOURCES_FILE, ResourceMonitor
from isengard_desktop.ui.training.job_panel import JobPanelWidget
from isengard_desktop.ui.training.resource_monitor import ResourceMonitorWidget
from tests.helpers.recorded_gpus import (MIB, REASON_HW_THERMAL, RTX_4090, TRAINING_4090,
                                         RecordedNvml, RecordedSystem, nvml_error)

FULL_AND_HOT = replace(TRAINING_4090, vram_used=int(RTX_4090.memory_total * 0.99), temp_c=89,
                       reasons=REASON_HW_THERMAL)


def _sampler(tmp_path: Path, live=TRAINING_4090, disk_free: int = 120 * GB,
             nvml: RecordedNvml | None = None) -> ResourceSampler:
    nvml = nvml or RecordedNvml(cards=[RTX_4090], live=[live])
    return ResourceSampler(tmp_path, nvml=nvml,
                           system=RecordedSystem(disk_space=(disk_free, 500 * GB)))


def test_service_samples_off_the_ui_thread_records_the_job_and_raises_alerts(qtbot, tmp_path):
    nvml = RecordedNvml(cards=[RTX_4090], live=[FULL_AND_HOT])
    job = tmp_path / "jobs" / "job1"
    (job / "checkpoints" / "checkpoint-100").mkdir(parents=True)
    (job / "checkpoints" / "checkpoint-100" / "lora.safetensors").write_bytes(b"x" * 4096)
    monitor = ResourceMonitor(_sampler(tmp_path, disk_free=4000, nvml=nvml), interval_ms=50,
                              record_every_s=0)
    samples: list = []
    monitor.sampled.connect(samples.append)
    monitor.on_job_updated(SimpleNamespace(state="running", job_dir=job))
    assert monitor.job_dir == job
    with qtbot.waitSignal(monitor.alerts_changed, timeout=5_000) as raised:
        monitor.start()
    assert [a.kind for a in raised.args[0]] == ["disk", "vram", "thermal"]
    qtbot.waitUntil(lambda: len(samples) >= 3, timeout=5_000)
    assert samples[0].gpus[0].temp_c == 89.0
    lines = (job / RESOURCES_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 2
    first = json.loads(lines[0])
    assert first["gpus"][0]["vram_mb"] == [int(RTX_4090.memory_total * 0.99) // MIB, 24564]
    assert first["alerts"] == ["disk", "vram", "thermal"]
    # the job ends: no more recording, and the disk alert (about its checkpoint) clears
    monitor.on_job_updated(SimpleNamespace(state="completed", job_dir=job))
    assert monitor.job_dir is None
    qtbot.waitUntil(lambda: [a.kind for a in monitor.alerts] == ["vram", "thermal"],
                    timeout=5_000)
    recorded = len((job / RESOURCES_FILE).read_text(encoding="utf-8").splitlines())
    qtbot.wait(200)
    assert len((job / RESOURCES_FILE).read_text(encoding="utf-8").splitlines()) == recorded
    monitor.shutdown()
    qtbot.waitUntil(lambda: "shutdown" in nvml.calls, timeout=5_000)
    assert "init" in nvml.calls and nvml.calls.count("init") == 1


def test_widget_updates_from_samples_and_says_when_there_is_no_gpu(qtbot, tmp_path):
    widget = ResourceMonitorWidget()
    qtbot.addWidget(widget)
    widget.resize(600, 200)
    widget.show()
    sampler = _sampler(tmp_path)
    widget.add_sample(sampler.sample())
    text = widget.summary.text()
    for words in ("GPU 98 %", "VRAM 20.1/24 GB", "71 °C", "402 W", "CPU 38 %",
                  "RAM 11.0/32 GB", "disk 120 GB free"):
        assert words in text, (words, text)
    assert not widget.body.isVisible()               # collapsed by default
    widget.toggle.click()
    assert widget.expanded and widget.body.isVisible()
    widget.add_sample(sampler.sample())
    xs, ys = widget.charts["gpu"].curve.getData()
    assert list(ys) == [98.0, 98.0] and list(xs) == [-1, 0]
    _, vram = widget.charts["vram"].curve.getData()
    assert abs(vram[-1] - 20580 / 24564 * 100) < 1e-6
    assert widget.charts["cpu"].title.text() == "CPU 38 %"
    # no driver: the GPU charts give way to a line saying why; CPU/RAM keep charting
    none = ResourceSampler(tmp_path, system=RecordedSystem(cpu=12.0), nvml=RecordedNvml(
        init_error=nvml_error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))).sample()
    widget.add_sample(none)
    assert widget.no_gpu_label.isVisible()
    assert "No NVIDIA driver found" in widget.no_gpu_label.text()
    assert not widget.charts["gpu"].isVisible() and not widget.charts["vram"].isVisible()
    assert widget.charts["cpu"].isVisible()
    assert list(widget.charts["cpu"].curve.getData()[1]) == [37.5, 37.5, 12.0]
    assert widget.summary.text().startswith("no GPU · CPU 12 %")
    widget.toggle.click()
    assert not widget.body.isVisible()


def test_job_panel_shows_and_clears_alerts(qtbot):
    panel = JobPanelWidget()
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.alerts_label.isVisible()
    panel.show_resource_alerts([ResourceAlert("vram", "GPU 0 VRAM is 99.0 % full"),
                                ResourceAlert("thermal", "GPU 0 is too hot")])
    assert panel.alerts_label.isVisible()
    assert panel.alerts_label.text().splitlines() == ["⚠ GPU 0 VRAM is 99.0 % full",
                                                      "⚠ GPU 0 is too hot"]
    panel.show_resource_alerts(())
    assert not panel.alerts_label.isVisible()


def _rect_in(widget: QWidget, ancestor: QWidget) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def test_training_tab_monitor_at_900x600(qtbot, make_app, tmp_path):
    ctx = make_app()
    ctx.window.resize(900, 600)
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Training"])
    page = ctx.tabs["Training"].page
    panel = page.panel
    # the real sampler (psutil here; NVML where a driver is) reaches the panel
    assert ctx.resources is not None
    qtbot.waitUntil(lambda: panel.monitor.latest is not None, timeout=10_000)
    assert "CPU" in panel.monitor.summary.text()
    # recorded values of a full, hot GPU go through the app's connections
    sample = _sampler(tmp_path, live=FULL_AND_HOT).sample()
    alerts = (ResourceAlert("vram", "GPU 0 (NVIDIA GeForce RTX 4090) VRAM is 99.0 % full: an "
                                    "out-of-memory error is close. Close other programs that "
                                    "use the GPU, or lower the batch size or resolution."),
              ResourceAlert("thermal", "GPU 0 (NVIDIA GeForce RTX 4090) is slowing down "
                                       "because it is too hot at 89 °C (thermal throttling)."))
    ctx.resources.stop()       # only the recorded sample from here on
    qtbot.wait(1_100)
    ctx.resources.sampled.emit(sample)
    ctx.resources.alerts_changed.emit(alerts)
    panel.monitor.set_expanded(True)
    qtbot.wait(100)
    assert "VRAM 23.7/24 GB" in panel.monitor.summary.text()
    assert panel.alerts_label.isVisible()
    scroll = panel.parentWidget().parentWidget()          # the panel's scroll area
    viewport = scroll.viewport()
    for widget in (panel.alerts_label, panel.monitor, panel.monitor.summary,
                   *panel.monitor.charts.values()):
        rect = _rect_in(widget, viewport)
        assert rect.left() >= 0 and rect.right() <= viewport.width(), widget
    for label in (panel.alerts_label, panel.monitor.summary):
        assert label.height() >= label.heightForWidth(label.width())
    for chart in panel.monitor.charts.values():
        assert chart.plot.height() > 40 and chart.plot.width() > 80
    # the loss chart keeps its room (the panel scrolls rather than squeeze it)
    assert panel.chart.height() >= panel.chart.minimumHeight()
    scroll.ensureWidgetVisible(panel.monitor)
    qtbot.wait(50)
    ctx.window.grab().save("/tmp/mon.png")
