"""Issue 16 item 3, loose ends: the resource warnings a job keeps (when, which; one per
episode, bounded; stored as JSON in the ``jobs`` table), the GPU each alert is about, and the
GPUs a job trains on (which the monitor follows)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from isengard_desktop.core.db.jobs import JobRow, JobsRepository
from isengard_desktop.core.db.schema import MIGRATIONS, SCHEMA_VERSION, connect, migrate
from isengard_desktop.core.hardware.monitor import (ResourceAlert, ResourceSampler,
                                                    cuda_numbers_are_nvml, resource_alerts)
from isengard_desktop.core.training.job_warnings import (MAX_WARNINGS, JobWarning, add_warnings,
                                                         warning_lines, warnings_from_json,
                                                         warnings_to_json)
from isengard_desktop.core.training.parallel import job_gpu_indices
from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.services.training.records import JobRecord
from tests.helpers.recorded_gpus import (REASON_HW_THERMAL, RTX_3060_12GB, RTX_4090,
                                         TRAINING_4090, RecordedNvml, RecordedSystem)

T0 = datetime(2026, 12, 6, 14, 2, 5, tzinfo=UTC)
FULL = ResourceAlert("vram", "GPU 1 (NVIDIA GeForce RTX 4090) VRAM is 98.4 % full", 1)
HOT = ResourceAlert("thermal", "GPU 0 (NVIDIA GeForce RTX 4090) is slowing down", 0)
DISK = ResourceAlert("disk", "Free disk (1.20 GB) will not hold the next checkpoint")


def _job(tmp_path: Path, **extra: object) -> TrainingJob:
    return TrainingJob(job_id="j1", character_id=1, character_name="Ana", family="sdxl",
                       base_model="/m.safetensors", dataset_dir=str(tmp_path), steps=100,
                       trigger_word="ana", output_name="ana", extra=dict(extra))


def test_alerts_name_the_gpu_they_are_about(tmp_path):
    hot = replace(TRAINING_4090, reasons=REASON_HW_THERMAL, temp_c=88)
    full = replace(TRAINING_4090, vram_used=int(RTX_4090.memory_total * 0.99))
    nvml = RecordedNvml(cards=[RTX_4090, RTX_4090], live=[hot, full])
    sample = ResourceSampler(tmp_path, nvml=nvml, system=RecordedSystem(
        disk_space=(1000, 500 * 1024 ** 3))).sample()
    alerts = resource_alerts(sample, 10_000)
    assert [(a.kind, a.gpu) for a in alerts] == [("disk", None), ("thermal", 0), ("vram", 1)]
    assert [a.key for a in alerts] == [("disk", None), ("thermal", 0), ("vram", 1)]


def test_a_started_alert_becomes_a_warning_with_its_time(tmp_path):
    kept = add_warnings((), [FULL, DISK], T0)
    assert kept == (JobWarning("2026-12-06T14:02:05+00:00", "vram", FULL.message, 1),
                    JobWarning("2026-12-06T14:02:05+00:00", "disk", DISK.message, None))
    # the same warning again within five minutes is the same episode (VRAM hovering at 97 %)
    assert add_warnings(kept, [replace(FULL, message="… 98.9 % full")],
                        T0 + timedelta(seconds=299)) == kept
    # another GPU's, or another kind, is new
    other = ResourceAlert("vram", "GPU 0 VRAM is 99 % full", 0)
    assert add_warnings(kept, [other, HOT], T0 + timedelta(seconds=10))[2:] == (
        JobWarning("2026-12-06T14:02:15+00:00", "vram", other.message, 0),
        JobWarning("2026-12-06T14:02:15+00:00", "thermal", HOT.message, 0))
    # five minutes later it is a new episode
    later = add_warnings(kept, [FULL], T0 + timedelta(minutes=5))
    assert len(later) == 3 and later[-1].when == "2026-12-06T14:07:05+00:00"


def test_a_long_job_keeps_a_bounded_list(tmp_path):
    warnings: tuple[JobWarning, ...] = ()
    for minute in range(0, 6 * (MAX_WARNINGS + 10), 6):
        warnings = add_warnings(warnings, [FULL], T0 + timedelta(minutes=minute))
    assert len(warnings) == MAX_WARNINGS
    assert warnings[0].when == "2026-12-06T14:02:05+00:00"     # the first ones are kept


def test_warnings_round_trip_as_json_and_bad_entries_are_left_out():
    kept = add_warnings((), [FULL, DISK], T0)
    assert warnings_from_json(warnings_to_json(kept)) == kept
    assert warnings_from_json(None) == () and warnings_from_json("not json") == ()
    assert warnings_from_json('{"when": 1}') == ()
    assert warnings_from_json('[{"when": "2026-12-06T14:02:05+00:00", "kind": "vram", '
                              '"message": "m", "gpu": true}, 3, {"kind": "disk"}]') == (
        JobWarning("2026-12-06T14:02:05+00:00", "vram", "m", None),)


def test_warning_lines_say_when_and_which():
    (line,) = warning_lines(add_warnings((), [FULL], T0))
    local = T0.astimezone().strftime("%Y-%m-%d %H:%M")
    assert line == f"⚠ {local} · VRAM nearly full: {FULL.message}"


def test_the_jobs_gpus(tmp_path):
    assert job_gpu_indices(_job(tmp_path)) == (0,)
    assert job_gpu_indices(_job(tmp_path, gpu_ids="2,3")) == (2, 3)
    assert job_gpu_indices(_job(tmp_path, gpu_ids=[1])) == (1,)
    assert job_gpu_indices(_job(tmp_path, num_processes=4)) == (0, 1, 2, 3)
    assert job_gpu_indices(_job(tmp_path, gpu_ids="1,x")) is None       # unreadable: unknown
    assert job_gpu_indices(_job(tmp_path, gpu_ids="1", num_processes=2)) is None


def test_cuda_numbers_name_nvml_cards_only_where_the_orders_agree():
    same, mixed = [RTX_4090.name] * 4, [RTX_3060_12GB.name, RTX_4090.name]
    assert cuda_numbers_are_nvml(same, {}) and cuda_numbers_are_nvml([], {})
    assert not cuda_numbers_are_nvml(mixed, {})
    assert not cuda_numbers_are_nvml(mixed, {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    assert cuda_numbers_are_nvml(mixed, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})


def test_the_jobs_table_keeps_the_warnings_and_old_rows_read_as_none(tmp_path):
    db = tmp_path / "db.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    for statements in MIGRATIONS[:SCHEMA_VERSION - 1]:      # a database from before
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.execute("INSERT INTO jobs(job_id, backend, family, preset, state, spec_json, job_dir,"
                 " created) VALUES ('old', 'builtin', 'sdxl', '', 'completed', '{}', 'jobs/old',"
                 " '2026-12-01T00:00:00Z')")
    conn.close()
    conn = connect(db)
    assert migrate(conn) == SCHEMA_VERSION
    repo = JobsRepository(conn, tmp_path)
    old = repo.get("old")
    assert old is not None and old.resource_warnings == "[]"
    spec = _job(tmp_path, gpu_ids="1")
    record = JobRecord(job_id="j1", character_id=None, character_name="Ana", backend="builtin",
                       family="sdxl", preset="", state="completed",  # type: ignore[arg-type]
                       created="2026-12-06T14:00:00+00:00", job_dir=tmp_path / "jobs" / "j1",
                       spec=spec, resource_warnings=add_warnings((), [FULL], T0))
    repo.save(record.to_row())
    row = repo.get("j1")
    assert isinstance(row, JobRow)
    assert JobRecord.from_row(row, spec).resource_warnings == record.resource_warnings
    conn.close()
