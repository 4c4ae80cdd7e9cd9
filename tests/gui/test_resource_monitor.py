"""Issue 16 item 3: the resource monitor service (its own thread, 1 Hz, job recording,
alerts), its widget in the job panel, and the Training tab at 900×600 with it open; with
several GPUs, the job's GPUs charted with a picker and its alerts raised for the job."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QWidget

from isengard_desktop.core.hardware.monitor import GB, ResourceAlert, ResourceSampler
from isengard_desktop.services.resource_monitor import RESOURCES_FILE, ResourceMonitor
from isengard_desktop.ui.training.job_panel import JobPanelWidget
from isengard_desktop.ui.training.resource_monitor import ResourceMonitorWidget
from tests.helpers.recorded_gpus import (MIB, REASON_HW_THERMAL, RTX_3060_12GB, RTX_4090,
                                         TRAINING_4090, RecordedLive, RecordedNvml, RecordedSystem, nvml_error)

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


# -- several GPUs: the job's GPUs are charted, picked one at a time; alerts go to the job ----
FOUR_CARDS = [RTX_4090, RTX_4090, RTX_4090, RTX_4090]
FOUR_LIVE = [RecordedLive(10, 1000 * MIB, 40, 60_000, 0), TRAINING_4090,
             RecordedLive(91, 22000 * MIB, 77, 380_000, 0),
             RecordedLive(0, 500 * MIB, 35, 20_000, 0)]


def test_widget_charts_the_jobs_gpus_with_a_picker(qtbot, tmp_path):
    nvml = RecordedNvml(cards=FOUR_CARDS, live=list(FOUR_LIVE))
    sampler = _sampler(tmp_path, nvml=nvml)
    widget = ResourceMonitorWidget()
    qtbot.addWidget(widget)
    widget.resize(700, 260)
    widget.show()
    widget.toggle.click()
    widget.set_gpus((1, 2))                  # the job trains on GPUs 1 and 2
    widget.add_sample(sampler.sample())
    text = widget.summary.text()
    assert text.startswith("GPU 1: 98 % VRAM 20.1/24 GB 71 °C 402 W · GPU 2: 91 % VRAM 21.5/24 GB "
                           "77 °C 380 W · CPU"), text
    assert "GPU0" not in text and "GPU3" not in text
    assert widget.gpu_picker.isVisible()
    assert [widget.gpu_picker.itemText(i) for i in range(widget.gpu_picker.count())] == [
        "GPU 1 · NVIDIA GeForce RTX 4090", "GPU 2 · NVIDIA GeForce RTX 4090"]
    assert widget.picked_gpu == 1
    nvml.live[1] = replace(TRAINING_4090, util=60)
    widget.add_sample(sampler.sample())
    assert list(widget.charts["gpu"].curve.getData()[1]) == [98.0, 60.0]
    assert widget.charts["gpu"].title.text() == "GPU 1: 60 %"
    # picking GPU 2 shows its two minutes at once, not from the pick on
    widget.pick_gpu(2)
    assert list(widget.charts["gpu"].curve.getData()[1]) == [91.0, 91.0]
    assert widget.charts["vram"].title.text() == f"VRAM 2: {22000 / 24564 * 100:.0f} %"
    # no job: every GPU; more than two are summed up in one phrase; the pick is kept
    widget.set_gpus(None)
    assert widget.gpu_picker.count() == 4 and widget.picked_gpu == 2
    assert widget.summary.text().startswith(
        "4 GPUs (0,1,2,3) 0–91 % VRAM up to 90 % up to 77 °C 862 W · CPU"), widget.summary.text()
    # a job on one GPU: no picker, plain titles
    widget.set_gpus((3,))
    assert not widget.gpu_picker.isVisible() and widget.picked_gpu == 3
    widget.add_sample(sampler.sample())
    assert widget.charts["gpu"].title.text() == "GPU 0 %"
    assert list(widget.charts["gpu"].curve.getData()[1]) == [0.0, 0.0, 0.0]
    assert widget.summary.text().startswith("GPU 3: 0 % VRAM 0.5/24 GB")


def test_service_follows_the_jobs_gpus_and_raises_its_alerts_once(qtbot, tmp_path):
    hot0 = replace(FOUR_LIVE[0], temp_c=90, reasons=REASON_HW_THERMAL)     # not the job's
    full1 = replace(TRAINING_4090, vram_used=int(RTX_4090.memory_total * 0.99))
    nvml = RecordedNvml(cards=[RTX_4090, RTX_4090], live=[hot0, TRAINING_4090])
    monitor = ResourceMonitor(_sampler(tmp_path, nvml=nvml), interval_ms=40,
                              record_every_s=3600, env={})
    gpus: list = []
    raised: list = []
    samples: list = []
    monitor.job_gpus_changed.connect(gpus.append)
    monitor.job_alerts_raised.connect(lambda job_id, alerts: raised.append((job_id, alerts)))
    monitor.sampled.connect(samples.append)
    job = tmp_path / "jobs" / "j1"
    job.mkdir(parents=True)
    spec = SimpleNamespace(extra={"gpu_ids": "1"})
    running = SimpleNamespace(state="running", job_dir=job, job_id="j1", spec=spec)
    monitor.on_job_updated(running)
    assert gpus == [] and monitor.job_id == "j1"        # which cards: known at the first sample
    monitor.start()
    qtbot.waitUntil(lambda: len(samples) >= 3, timeout=5_000)
    assert gpus == [(1,)] and monitor.job_gpus == (1,)  # the same model: CUDA's order is NVML's
    monitor.on_job_updated(running)                      # progress: nothing new to say
    assert gpus == [(1,)]
    assert [a.kind for a in monitor.alerts] == ["thermal"]      # shown live, not the job's
    assert raised == []
    nvml.live[1] = full1
    qtbot.waitUntil(lambda: bool(raised), timeout=5_000)
    seen = len(samples)
    qtbot.waitUntil(lambda: len(samples) >= seen + 3, timeout=5_000)
    (job_id, alerts), = raised                          # once while it lasts
    assert job_id == "j1" and [(a.kind, a.gpu) for a in alerts] == [("vram", 1)]
    # it clears and comes back: raised again (the record keeps one per episode)
    nvml.live[1] = TRAINING_4090
    qtbot.waitUntil(lambda: [a.kind for a in monitor.alerts] == ["thermal"], timeout=5_000)
    nvml.live[1] = full1
    qtbot.waitUntil(lambda: len(raised) == 2, timeout=5_000)
    # the job ends: no job GPUs, nothing raised for it any more
    monitor.on_job_updated(replace_ns(running, state="completed"))
    assert gpus == [(1,), None] and monitor.job_id is None
    nvml.live[1] = TRAINING_4090
    qtbot.waitUntil(lambda: [a.kind for a in monitor.alerts] == ["thermal"], timeout=5_000)
    nvml.live[1] = full1
    qtbot.waitUntil(lambda: len(monitor.alerts) == 2, timeout=5_000)
    assert len(raised) == 2
    monitor.shutdown()
    qtbot.waitUntil(lambda: "shutdown" in nvml.calls, timeout=5_000)


@pytest.mark.parametrize(("env", "expected", "kinds"), [
    ({}, None, [("thermal", 0), ("vram", 1)]),
    ({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, (0,), [("thermal", 0)])])
def test_mixed_cards_without_pci_order_leave_the_jobs_gpus_unknown(qtbot, tmp_path, env,
                                                                   expected, kinds):
    # CUDA numbers mixed cards fastest first, NVML by bus: the job's "GPU 0" may be NVML's 1
    hot = replace(FOUR_LIVE[0], temp_c=90, reasons=REASON_HW_THERMAL)
    nvml = RecordedNvml(cards=[RTX_3060_12GB, RTX_4090], live=[
        hot, replace(TRAINING_4090, vram_used=int(RTX_4090.memory_total * 0.99))])
    monitor = ResourceMonitor(_sampler(tmp_path, nvml=nvml), interval_ms=40,
                              record_every_s=3600, env=env)
    raised: list = []
    monitor.job_alerts_raised.connect(lambda _job, alerts: raised.extend(alerts))
    try:
        monitor.on_job_updated(SimpleNamespace(state="running", job_dir=tmp_path, job_id="j",
                                               spec=SimpleNamespace(extra={})))   # GPU 0
        monitor.start()
        qtbot.waitUntil(lambda: bool(raised), timeout=5_000)
        assert monitor.job_gpus == expected
        assert [(a.kind, a.gpu) for a in raised] == kinds
    finally:
        monitor.shutdown()
        qtbot.waitUntil(lambda: "shutdown" in nvml.calls, timeout=5_000)


def replace_ns(ns: SimpleNamespace, **changes: object) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(ns), **changes})


def test_app_tells_the_monitor_widget_the_jobs_gpus(qtbot, make_app, tmp_path):
    ctx = make_app()
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Training"])
    panel = ctx.tabs["Training"].page.panel
    assert ctx.resources is not None
    qtbot.waitUntil(lambda: panel.monitor.latest is not None, timeout=10_000)
    ctx.resources.stop()
    qtbot.wait(1_100)
    nvml = RecordedNvml(cards=FOUR_CARDS[:2], live=FOUR_LIVE[:2])
    ctx.resources.job_gpus_changed.emit((1,))
    ctx.resources.sampled.emit(_sampler(tmp_path, nvml=nvml).sample())
    assert panel.monitor.summary.text().startswith("GPU 1: 98 %")
    ctx.resources.job_gpus_changed.emit(None)
    assert panel.monitor.summary.text().startswith("GPU 0: 10 % VRAM 1.0/24 GB 40 °C 60 W · GPU 1:")
