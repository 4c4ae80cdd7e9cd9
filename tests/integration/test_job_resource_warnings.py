"""Issue 16 item 3, loose end 2: a warning the resource monitor raises while a job runs (here
VRAM > 97 % on the job's GPU, from recorded NVML values) is kept in the job's record — in the
``jobs`` table, after a restart, in the debug bundle — and shown in its History entry after
the job ended (when, which), and in the job panel when that entry is selected. A real
TrainingService runs the fake trainer as a child; the monitor and the service are connected
as ``app.py`` connects them."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from isengard_desktop.core.db.jobs import JobsRepository
from isengard_desktop.core.hardware.monitor import GB, ResourceSampler
from isengard_desktop.core.training.spec import TrainingJob, new_job_id
from isengard_desktop.plugins.registry import default_registry
from isengard_desktop.services.resource_monitor import ResourceMonitor
from isengard_desktop.services.training.service import TrainingService
from isengard_desktop.ui.training.history import COLUMNS, HistoryWidget
from isengard_desktop.ui.training.job_panel import JobPanelWidget
from tests.helpers.characters import add_character
from tests.helpers.recorded_gpus import (REASON_HW_THERMAL, RTX_4090, TRAINING_4090,
                                         RecordedNvml, RecordedSystem)
from tests.helpers.service_harness import fast_training, start_library

WAIT = 30_000
HOT = replace(TRAINING_4090, temp_c=90, reasons=REASON_HW_THERMAL)
FULL = replace(TRAINING_4090, vram_used=int(RTX_4090.memory_total * 0.99))


def _service(paths, library) -> TrainingService:
    registry = default_registry()
    registry.register("fake", "tests.helpers.fake_backend:FakeBackend", "Fake trainer")
    service = TrainingService(paths, library, lambda: {}, registry)
    fast_training(service, 10.0)
    return service


def test_a_warning_while_the_job_ran_is_in_its_history_entry(qtbot, tmp_path):
    paths, library = start_library(qtbot, WAIT)
    services: list[TrainingService] = []
    nvml = RecordedNvml(cards=[RTX_4090, RTX_4090], live=[HOT, FULL])   # GPU 0 is not the job's
    monitor = ResourceMonitor(ResourceSampler(paths.data, nvml=nvml, system=RecordedSystem(
        disk_space=(120 * GB, 500 * GB))), interval_ms=50, record_every_s=3600)
    try:
        add_character(qtbot, library, "Alice", trigger="alc", timeout=WAIT)
        character = library.characters()[0]
        service = _service(paths, library)
        services.append(service)
        service.start()
        qtbot.waitUntil(lambda: service.is_ready, timeout=WAIT)
        # as app.py connects them
        service.job_updated.connect(monitor.on_job_updated)
        monitor.job_alerts_raised.connect(service.note_resource_alerts)
        finished: list = []
        service.job_finished.connect(finished.append)
        monitor.start()
        job = TrainingJob(job_id=new_job_id(), character_id=character.id,
                          character_name=character.name, trigger_word="alc", family="sd15",
                          base_model=str(Path.home() / "models" / "base.safetensors"),
                          dataset_dir=str(paths.characters / "alice"),
                          output_name="alice_lora", backend="fake", steps=40,
                          extra={"delay": 0.05, "gpu_ids": "1"})
        service.submit(job)
        qtbot.waitUntil(lambda: bool(finished), timeout=WAIT)
        done = service.job(job.job_id)
        assert done is not None and done.state == "completed", done
        # one warning (the episode lasted the whole run), about the job's GPU only
        (warning,) = done.resource_warnings
        assert (warning.kind, warning.gpu) == ("vram", 1)
        assert warning.message.startswith("GPU 1 (NVIDIA GeForce RTX 4090) VRAM is 99.0 % full")
        assert done.started is not None and done.finished is not None
        assert done.started[:16] <= warning.when[:16] <= done.finished[:16]
        # in the jobs table, and after a restart
        rows: list = []
        library.database.read(
            lambda conn: JobsRepository(conn, paths.data).get(job.job_id), rows.append)
        qtbot.waitUntil(lambda: bool(rows), timeout=WAIT)
        assert json.loads(rows[0].resource_warnings) == [
            {"when": warning.when, "kind": "vram", "message": warning.message, "gpu": 1}]
        again = _service(paths, library)
        services.append(again)
        again.start()
        qtbot.waitUntil(lambda: again.is_ready, timeout=WAIT)
        reloaded = again.job(job.job_id)
        assert reloaded is not None and reloaded.resource_warnings == done.resource_warnings
        # the debug bundle's record.json carries it
        bundles: list = []
        again.export_debug_bundle(job.job_id, tmp_path / "bundle.zip", bundles.append)
        qtbot.waitUntil(lambda: bool(bundles), timeout=WAIT)
        with zipfile.ZipFile(bundles[0]) as zf:
            record = json.loads(zf.read("record.json"))
        assert record["resource_warnings"][0]["message"] == warning.message
        # the History entry says so: a mark in the State column, when and which in its tooltip
        history = HistoryWidget()
        qtbot.addWidget(history)
        history.set_jobs(again.jobs())
        state = history.row_text(job.job_id)[COLUMNS.index("State")]
        assert state == "Completed · ⚠ 1", state
        item = history.tree.topLevelItem(0)
        assert item is not None
        tip = item.toolTip(0).splitlines()
        assert "Resource warning while it ran:" in tip
        local = datetime.fromisoformat(warning.when).astimezone().strftime("%Y-%m-%d %H:%M")
        assert f"⚠ {local} · VRAM nearly full: {warning.message}" in tip
        # and the job panel, showing that entry, lists it too (a running job shows live ones)
        panel = JobPanelWidget()
        qtbot.addWidget(panel)
        panel.show()
        panel.show_job(reloaded)
        assert panel.warnings_label.isVisible()
        assert panel.warnings_label.text() == f"⚠ {local} · VRAM nearly full: {warning.message}"
        panel.show_job(replace(reloaded, state="running"))
        assert not panel.warnings_label.isVisible()
    finally:
        monitor.shutdown()
        for service in services:
            service.shutdown()
        library.shutdown()
