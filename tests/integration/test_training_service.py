"""TrainingService with real QProcess children running tests/helpers/fake_trainer.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from isengard_desktop.core.db.jobs import JobRow, JobsRepository
from isengard_desktop.core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent,
                                                     PhaseEvent, StepEvent)
from isengard_desktop.core.training.spec import SpecError, TrainingJob, new_job_id
from isengard_desktop.plugins.registry import default_registry
from isengard_desktop.services.database import ChangeSet, WriteResult
from isengard_desktop.services.training.service import TrainingService
from isengard_desktop.services.process_group import pid_alive
from tests.helpers.characters import add_character
from tests.helpers.service_harness import fast_training, start_library

SECRET = "planted-Secret-Value-7d1e2f"   # matches no redaction pattern: only explicit masking
WAIT = 30_000


class Harness:
    """A library + training service on this test's ISENGARD_HOME, with signal recorders."""

    def __init__(self, qtbot) -> None:
        self.qtbot = qtbot
        self.paths, self.library = start_library(qtbot, WAIT)
        if not self.library.characters():
            add_character(qtbot, self.library, "Alice", trigger="alc", timeout=WAIT)
        self.character = self.library.characters()[0]
        self.services: list[TrainingService] = []
        self.service = self.new_service()

    def new_service(self) -> TrainingService:
        registry = default_registry()
        registry.register("fake", "tests.helpers.fake_backend:FakeBackend", "Fake trainer")
        service = TrainingService(self.paths, self.library, lambda: {"HF_TOKEN": SECRET},
                                  registry)
        fast_training(service, 10.0)
        self.finished: list = []
        self.progress: list[tuple[float, str, StepEvent]] = []
        self.errors: list = []
        self.logs: list[tuple[str, str, list]] = []
        self.phases: list = []
        self.checkpoints: list = []
        service.job_finished.connect(self.finished.append)
        service.progressed.connect(lambda j, e: self.progress.append((time.monotonic(), j, e)))
        service.error_reported.connect(lambda j, e: self.errors.append((j, e)))
        service.log_appended.connect(lambda j, s, lines: self.logs.append((j, s, lines)))
        service.phase_changed.connect(lambda j, e: self.phases.append((j, e)))
        service.checkpoint_saved.connect(lambda j, e: self.checkpoints.append((j, e)))
        service.start()
        self.qtbot.waitUntil(lambda: service.is_ready, timeout=WAIT)
        self.services.append(service)
        return service

    def job(self, steps: int = 20, **extra) -> TrainingJob:
        return TrainingJob(job_id=new_job_id(), character_id=self.character.id,
                           character_name=self.character.name, trigger_word="alc",
                           family="sd15",
                           base_model=str(Path.home() / "models" / "base.safetensors"),
                           dataset_dir=str(self.paths.characters / "alice"),
                           output_name="alice_lora", backend="fake", steps=steps, extra=extra)

    def wait_final(self, job_id: str, timeout: int = WAIT):
        self.qtbot.waitUntil(lambda: any(r.job_id == job_id for r in self.finished),
                             timeout=timeout)
        return self.service.job(job_id)

    def wait_step(self, job_id: str, step: int) -> None:
        self.qtbot.waitUntil(lambda: (self.service.job(job_id).step >= step), timeout=WAIT)

    def db_row(self, job_id: str) -> JobRow | None:
        out: list = []
        self.library.database.read(
            lambda conn: JobsRepository(conn, self.paths.data).get(job_id), out.append)
        self.qtbot.waitUntil(lambda: bool(out), timeout=WAIT)
        return out[0]

    def close(self) -> None:
        for service in self.services:
            service.shutdown()
        self.library.shutdown()


@pytest.fixture
def h(qtbot):
    harness = Harness(qtbot)
    yield harness
    harness.close()


def log_text(h: Harness, job_id: str, stream: str | None = None) -> str:
    return "\n".join(line for j, s, lines in h.logs if j == job_id
                     and (stream is None or s == stream) for line in lines)


def test_finished_lora_is_placed_in_the_comfyui_models_folder_when_set(h, tmp_path):
    from isengard_desktop.core.settings import Settings

    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    h.service.apply_settings(Settings(comfyui_models_folder=str(models)))
    job = h.job(steps=3)
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    placed = models / "loras" / Path(done.lora_path).name
    h.qtbot.waitUntil(lambda: bool(h.library.loras(h.character.id)), timeout=WAIT)
    assert placed.read_bytes() == Path(done.lora_path).read_bytes()
    # the library records the app's own copy, not the ComfyUI one
    assert Path(h.library.loras(h.character.id)[0].path).parent == h.service.paths.loras


def test_submit_runs_to_completion_with_coalesced_progress(h):
    job = h.job(steps=400, delay=0.005)             # ~200 steps a second
    record = h.service.submit(job)
    assert record.state == "queued" and h.service.jobs()[0].job_id == job.job_id
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 400 and done.total_steps == 400 and done.last_loss is not None
    assert done.sec_per_step and done.sec_per_step > 0
    assert Path(done.lora_path).is_file() and done.lora_path.endswith("alice_lora.safetensors")
    # progress: coalesced to ≤ ~10 Hz, the last step never dropped
    mine = [(t, e) for t, j, e in h.progress if j == job.job_id]
    assert mine[-1][1].step == 400
    span = mine[-1][0] - mine[0][0]
    assert len(mine) <= span * 10 + 3, (len(mine), span)
    assert len(mine) < 100
    # phases, logs (ANSI stripped, redraws collapsed), the trainer's own notes, secrets via env
    assert [e.phase for j, e in h.phases if j == job.job_id][:2] == ["loading_model",
                                                                      "training"]
    stderr = log_text(h, job.job_id, "stderr")
    assert "UserWarning: this is a fake warning" in stderr and "\x1b" not in stderr
    assert "INFO: HF_TOKEN present: yes" in log_text(h, job.job_id, "stdout")
    assert '{"v"' not in log_text(h, job.job_id, "stdout")
    assert len([1 for j, _, _ in h.logs if j == job.job_id]) < 60
    # the files of the job folder
    paths = done.paths
    assert json.loads(paths.spec.read_text())["job_id"] == job.job_id
    assert (paths.configs / "fake.json").is_file()
    events = [json.loads(line) for line in paths.events.read_text().splitlines()]
    assert sum(e["event"] == "step" for e in events) == 400 and events[-1]["event"] == "done"
    assert all("t" in e for e in events)
    assert "Loading fake model" in paths.stderr.read_text()
    # the LoRA is the character's, and the DB row is final
    h.qtbot.waitUntil(lambda: bool(h.library.loras(h.character.id)), timeout=WAIT)
    lora = h.library.loras(h.character.id)[0]
    assert lora.steps == 400 and lora.family == "sd15"
    # published into the app's LoRA folder (what a managed ComfyUI lists), same bytes
    published = Path(lora.path)
    assert published.parent == h.service.paths.loras and published.suffix == ".safetensors"
    assert published.name == Path(done.lora_path).name
    assert published.read_bytes() == Path(done.lora_path).read_bytes()
    row = h.db_row(job.job_id)
    assert row.state == "completed" and row.step == 400 and row.pid is None
    assert h.service.measured_sec_per_step("sd15", 512) == pytest.approx(0.005)
    assert h.service.measured_sec_per_step("sdxl", 512) is None
    # Device "auto": a GPU run's time unless this computer has no usable GPU (issue 11, 14)
    assert h.service.measured_sec_per_step("sd15", 512, cpu=True) is None
    assert h.service.measured_sec_per_step("sd15", 512, cpu=True,
                                           auto_on_cpu=True) == pytest.approx(0.005)
    assert h.service.measured_sec_per_step("sd15", 512, auto_on_cpu=True) is None


def test_one_job_at_a_time(h):
    first = h.service.submit(h.job(steps=30, delay=0.02))
    second = h.service.submit(h.job(steps=5))
    h.qtbot.waitUntil(lambda: h.service.job(first.job_id).state == "running", timeout=WAIT)
    assert h.service.job(second.job_id).state == "queued"
    h.wait_step(first.job_id, 10)
    assert h.service.job(second.job_id).state == "queued"
    a = h.wait_final(first.job_id)
    b = h.wait_final(second.job_id)
    assert a.state == b.state == "completed"
    assert b.started >= a.finished
    assert [r.job_id for r in h.service.jobs()] == [second.job_id, first.job_id]


def test_stop_and_save_then_resume_finishes_the_planned_steps(h):
    job = h.job(steps=200, delay=0.01)
    h.service.submit(job)
    h.wait_step(job.job_id, 20)
    h.service.stop(job.job_id)
    assert h.service.job(job.job_id).state == "stopping"
    stopped = h.wait_final(job.job_id)
    assert stopped.state == "stopped", stopped.error_message
    assert stopped.resumable and 20 <= stopped.checkpoint_step < 200
    assert any(isinstance(e, CheckpointEvent) for j, e in h.checkpoints if j == job.job_id)
    assert h.db_row(job.job_id).state == "stopped"
    at = stopped.checkpoint_step
    # the newest checkpoint is usable as the character's LoRA (issue 11, item 16)
    assert stopped.lora_path and Path(stopped.lora_path).name.endswith(f"-step{at}.safetensors")
    h.qtbot.waitUntil(lambda: any(f"-step{at}" in lo.path
                                  for lo in h.library.loras(job.character_id)), timeout=WAIT)

    h.finished.clear()
    resumed = h.service.resume(job.job_id)
    assert resumed.job_id == job.job_id and resumed.state in ("queued", "running")
    done = h.wait_final(job.job_id)
    assert done.state == "completed" and done.step == 200
    assert f"resuming from step {at}" in log_text(h, job.job_id)
    steps = [json.loads(line)["step"] for line in done.paths.events.read_text().splitlines()
             if '"event":"step"' in line]
    assert steps == list(range(1, at + 1)) + list(range(at + 1, 201))
    with pytest.raises(ValueError, match="cannot be resumed"):
        h.service.resume(job.job_id)


def test_cancel_escalates_to_kill_and_takes_the_grandchild(h):
    job = h.job(steps=100_000, delay=0.01, ignore_stop=True, spawn_grandchild=True)
    h.service.submit(job)
    h.wait_step(job.job_id, 5)
    pid_file = h.service.job(job.job_id).job_dir / "grandchild.pid"
    h.qtbot.waitUntil(pid_file.exists, timeout=WAIT)
    grandchild = int(pid_file.read_text())
    trainer = h.service.job(job.job_id).pid
    assert pid_alive(trainer) and pid_alive(grandchild)
    began = time.monotonic()
    h.service.cancel(job.job_id)
    done = h.wait_final(job.job_id)
    assert done.state == "cancelled"
    # it ignored "stop" and SIGTERM: the kill came after cancel grace + kill grace
    assert time.monotonic() - began >= h.service.cancel_grace_s + h.service.kill_grace_s - 0.2
    h.qtbot.waitUntil(lambda: not pid_alive(grandchild) and not pid_alive(trainer), timeout=5000)
    assert not done.resumable


def test_cancel_of_a_queued_job_is_immediate(h):
    first = h.service.submit(h.job(steps=50, delay=0.02))
    second = h.service.submit(h.job(steps=5))
    h.service.cancel(second.job_id)
    assert h.service.job(second.job_id).state == "cancelled"
    h.service.cancel(first.job_id)
    assert h.wait_final(first.job_id).state == "cancelled"
    assert h.service.job(second.job_id).started is None


def test_error_event_fails_the_job_with_its_message(h):
    # SD 1.5 at 512 px: one recovery (384 px, the family's floor), then nothing is left
    job = h.job(steps=20, fail_at=5)
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and done.error_kind == "oom"
    assert done.oom_notes == ("recovered from out-of-memory at step 5: 512 → 384 px",)
    assert done.error_message.startswith(
        "The GPU ran out of memory at step 5, and the job already uses the lowest memory "
        "settings Isengard can choose for it.")
    assert done.error_message.endswith(
        "The trainer said: Out of memory at step 5: lower the batch size.")
    assert [(j, e) for j, e in h.errors] == [
        (job.job_id, ErrorEvent("oom", done.error_message, 5))]
    assert h.db_row(job.job_id).error_kind == "oom"


def test_out_of_memory_recovers_twice_and_finishes_the_same_steps(h):
    """The stand-in runs out of memory at step 7 while the spec asks for more than 512 px or
    a batch above 1: the job resumes from its step-5 checkpoint at 768 px / batch 1, then at
    512 px, and completes its 20 steps. Nothing is reported as an error."""
    job = h.job(steps=20, oom_at=7, oom_above=512, checkpoint_every=5, delay=0.01)
    job.resolution, job.batch_size, job.gradient_checkpointing = 1024, 2, False
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 20 and done.total_steps == 20 and done.error_message is None
    assert done.oom_notes == (
        "recovered from out-of-memory at step 7: 1024 → 768 px, batch 2 → 1 (gradient "
        "accumulation 1 → 2), gradient checkpointing on",
        "recovered from out-of-memory at step 7: 768 → 512 px")
    assert h.errors == []
    assert [r.job_id for r in h.finished] == [job.job_id]       # one end, not three
    spec = TrainingJob.load(done.paths.spec)
    assert (spec.resolution, spec.batch_size, spec.grad_accum, spec.steps) == (512, 1, 2, 20)
    assert spec.gradient_checkpointing and done.spec == spec
    assert log_text(h, job.job_id).count("resuming from step 5") == 2
    row = h.db_row(job.job_id)
    assert json.loads(row.oom_notes) == list(done.oom_notes)
    assert TrainingJob.from_json(row.spec_json).resolution == 512
    # a restart reads the notes back
    again = h.new_service()
    assert again.job(job.job_id).oom_notes == done.oom_notes


def test_a_third_out_of_memory_fails_with_what_was_tried(h):
    job = h.job(steps=20, fail_at=7, checkpoint_every=5)
    job.resolution = 1024
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and done.error_kind == "oom"
    assert len(done.oom_notes) == 2
    text = done.error_message
    assert text.startswith("The GPU ran out of memory at step 7, a third time: Isengard "
                           "lowered the memory settings and resumed twice")
    assert "Tried:\n  • Recovered from out-of-memory at step 7: 1024 → 768 px\n" \
           "  • Recovered from out-of-memory at step 7: 768 → 512 px" in text
    assert "What you can do: close other programs that use the GPU" in text
    assert [(j, e.kind, e.message) for j, e in h.errors] == [(job.job_id, "oom", text)]
    h.qtbot.waitUntil(lambda: h.service.job(job.job_id).resumable, timeout=WAIT)
    assert h.service.job(job.job_id).checkpoint_step == 5
    assert TrainingJob.load(done.paths.spec).resolution == 512



def test_crash_without_error_event_names_the_exit_code(h):
    job = h.job(steps=20, crash_at=5)
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and done.error_kind == "crash"
    assert "exited with code 3" in done.error_message
    assert "RuntimeError: simulated crash" in done.error_message
    assert "stderr.log" in done.error_message
    assert h.errors and h.errors[0][1].kind == "crash"


def test_program_that_cannot_start_fails_clearly(h, tmp_path):
    job = h.job(steps=5, _program=str(tmp_path / "no-such-python"))
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed"
    assert "could not be started" in done.error_message
    assert "no-such-python" in done.error_message
    # the queue goes on
    nxt = h.service.submit(h.job(steps=3))
    assert h.wait_final(nxt.job_id).state == "completed"


def test_invalid_specs_are_refused_naming_the_field(h):
    with pytest.raises(SpecError, match="steps"):
        h.service.submit(h.job(steps=0))
    bad = h.job()
    bad.backend = "onetrainer"
    with pytest.raises(SpecError, match="backend: no trainer backend 'onetrainer'"):
        h.service.submit(bad)
    not_set_up = h.job()
    not_set_up.backend = "kohya"      # registered, but no sd-scripts folder in the settings
    with pytest.raises(SpecError, match="backend: kohya sd-scripts cannot run here: .*folder"):
        h.service.submit(not_set_up)
    assert not_set_up.job_id not in {r.job_id for r in h.service.jobs()}
    ok = h.job(steps=2)
    h.service.submit(ok)
    with pytest.raises(SpecError, match="job_id"):
        h.service.submit(ok)
    h.wait_final(ok.job_id)


@pytest.mark.skipif(sys.platform == "win32",
                    reason="kills the trainer through its POSIX process group (Windows: Job "
                           "Objects, tests/integration/test_windows_process_tree.py)")
def test_killed_from_outside_then_app_restart_is_interrupted_and_resumable(h, qtbot):
    job = h.job(steps=300, delay=0.01, checkpoint_every=10)
    h.service.submit(job)
    h.wait_step(job.job_id, 25)
    qtbot.waitUntil(lambda: h.db_row(job.job_id).pid is not None, timeout=WAIT)
    record = h.service.job(job.job_id)
    # the app "crashes": this service never hears of the process again
    run = h.service._runs[job.job_id]
    run.blockSignals(True)
    run.proc.blockSignals(True)
    os.killpg(record.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: not pid_alive(record.pid), timeout=5000)
    assert h.db_row(job.job_id).state == "running"

    h.finished.clear()
    service = h.service = h.new_service()     # the next app start, same ISENGARD_HOME
    again = service.job(job.job_id)
    assert again.state == "interrupted" and again.resumable
    assert again.checkpoint_step >= 20
    assert "closed or crashed" in again.error_message
    assert h.db_row(job.job_id).state == "interrupted"

    service.resume(job.job_id)
    done = h.wait_final(job.job_id)
    assert done.state == "completed" and done.step == 300


@pytest.mark.skipif(sys.platform == "win32",
                    reason="kills the trainer through its POSIX process group (Windows: Job "
                           "Objects, tests/integration/test_windows_process_tree.py)")
def test_a_still_running_orphan_is_watched_and_can_be_cancelled(h, qtbot):
    job_id = new_job_id()
    job_dir = h.paths.jobs / job_id
    job_dir.mkdir(parents=True)
    spec = h.job(steps=10)
    spec.job_id = job_id
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", job_id],
                              start_new_session=True)
    try:
        row = JobRow(job_id=job_id, character_id=h.character.id, backend="fake",
                     family="sd15", preset="", state="running", spec_json=spec.to_json(),
                     job_dir=str(job_dir), created="2026-01-01T00:00:00+00:00",
                     pid=orphan.pid, step=3, total_steps=10)

        def save(conn):
            JobsRepository(conn, h.paths.data).save(row)
            return WriteResult(None, ChangeSet(jobs=True))

        h.library.database.write(save)
        h.service.shutdown()
        service = h.service = h.new_service()
        assert service.job(job_id).state == "running"
        queued = service.submit(h.job(steps=2))
        assert service.job(queued.job_id).state == "queued"   # the orphan holds the GPU
        service.cancel(job_id)
        done = h.wait_final(job_id, timeout=10_000)
        assert done.state == "cancelled"
        assert orphan.wait(5) is not None
        assert h.wait_final(queued.job_id).state == "completed"
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_shutdown_stops_children_and_marks_them_interrupted(h, qtbot):
    job = h.job(steps=10_000, delay=0.01)
    h.service.submit(job)
    h.wait_step(job.job_id, 5)
    pid = h.service.job(job.job_id).pid
    h.service.shutdown()
    record = h.service.job(job.job_id)
    assert record.state == "interrupted"
    assert not pid_alive(pid)
    service = h.service = h.new_service()
    again = service.job(job.job_id)
    assert again.state == "interrupted" and again.resumable   # the stop saved a checkpoint


def test_events_reload_and_rerun(h):
    job = h.job(steps=12)
    h.service.submit(job)
    h.wait_final(job.job_id)
    loaded: list = []
    h.service.events(job.job_id, loaded.append)
    h.qtbot.waitUntil(lambda: bool(loaded), timeout=WAIT)
    events = loaded[0]
    assert [e.step for e in events if isinstance(e, StepEvent)] == list(range(1, 13))
    assert isinstance(events[0], PhaseEvent) and isinstance(events[-1], DoneEvent)
    empty: list = []
    h.service.events("nope", empty.append)
    assert empty == [[]]

    again = h.service.rerun(job.job_id)
    assert again.job_id != job.job_id and again.spec.steps == 12
    assert again.job_dir != h.service.job(job.job_id).job_dir
    assert h.wait_final(again.job_id).state == "completed"


def test_the_launchers_context_line_is_not_shown_in_the_log(h):
    """External trainers' launcher prints a long ``[isengard] context {...}`` line for the
    parser: the log view (live and reloaded from stdout.log) does not show it."""
    from isengard_desktop.core.training.protocol import is_hidden_line
    from isengard_desktop.ui.training.training_tab import read_log_tail

    context = '[isengard] context {"job_dir":"/jobs/x","output_dir":"/jobs/x/output","steps":5}'
    job = h.job(steps=5, print_line=context)
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    shown = log_text(h, job.job_id)
    assert "[isengard] context" not in shown
    assert "INFO: HF_TOKEN present: yes" in shown          # the other lines still are
    assert context in done.paths.stdout.read_text()        # the raw log keeps it
    tail = dict(read_log_tail(done.paths.root))
    assert tail["stdout"] and not any("[isengard] context" in line for line in tail["stdout"])
    assert is_hidden_line("stdout", context) and not is_hidden_line("stderr", context)
    assert not is_hidden_line("stdout", '[isengard] note {"level":"info","message":"x"}')


@pytest.mark.skipif(sys.platform == "win32",
                    reason="reads the trainer's command line from /proc (Linux)")
def test_debug_bundle_is_complete_and_has_no_secret(h, tmp_path):
    job = h.job(steps=30, delay=0.01, echo_env="HF_TOKEN")
    h.service.submit(job)
    h.qtbot.waitUntil(lambda: h.service.job(job.job_id).pid is not None, timeout=WAIT)
    pid = h.service.job(job.job_id).pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert SECRET.encode() not in cmdline
    done = h.wait_final(job.job_id)
    assert "HF_TOKEN present: yes" in log_text(h, job.job_id)   # it did get the secret
    assert SECRET not in log_text(h, job.job_id)
    assert "careless library says [REDACTED]" in done.paths.stderr.read_text()
    assert SECRET not in done.paths.stderr.read_text()
    (done.paths.samples).mkdir(exist_ok=True)
    (done.paths.samples / "step_10.png").write_bytes(b"\x89PNG fake")

    out: list = []
    dest = tmp_path / "bundle.zip"
    h.service.export_debug_bundle(job.job_id, dest, out.append)
    h.qtbot.waitUntil(lambda: bool(out), timeout=WAIT)
    assert out == [dest]
    with zipfile.ZipFile(dest) as zf:
        names = set(zf.namelist())
        assert {"job.json", "record.json", "events.jsonl", "stdout.log", "stderr.log",
                "configs/fake.json", "samples/step_10.png", "checkpoints.json",
                "environment.json"} <= names
        for name in names:
            assert SECRET.encode() not in zf.read(name), name
        env = json.loads(zf.read("environment.json"))
        assert env["packages"]["PySide6-Essentials"] and "python" in env
        assert json.loads(zf.read("record.json"))["state"] == "completed"
        spec_text = zf.read("job.json").decode()
        assert str(Path.home()) not in spec_text and "~/models/base.safetensors" in spec_text
    failures: list = []
    h.service.export_debug_bundle("nope", dest, out.append, failures.append)
    assert failures and isinstance(failures[0], KeyError)


@pytest.mark.timeout(240)
def test_builtin_trainer_through_the_runner_stop_resume_complete(h, tmp_path):
    """The real built-in trainer (tiny random SD1.5-like model, CPU) through the default
    registry: progress, Stop & save over stdin, resume, the LoRA in the library.

    It trains on the character's photos in the database only (issue 11, item 3): of the 5
    photos in the character's folder 3 have rows, 2 were copied in by hand; a photo added
    while the job is stopped is not in the resumed run (the list saved at its start)."""
    from isengard_desktop.training_runtime import tiny_models as tiny

    model = tiny.build_sd15(tmp_path / "sd15")
    data = tiny.make_dataset(tmp_path / "data", count=6)
    photos = sorted(data.glob("*.png"))
    h.library.import_photos(h.character.id, photos[:3])
    h.qtbot.waitUntil(lambda: h.library.image_count(h.character.id) == 3, timeout=WAIT)
    folder = h.library.character_folder(h.character)
    for extra in photos[3:5]:      # on disk, no row: never trained on
        shutil.copy(extra, folder / extra.name)
        shutil.copy(extra.with_suffix(".txt"), folder / f"{extra.stem}.txt")
    on_disk = [p for p in folder.iterdir() if p.suffix == ".png"]
    assert len(on_disk) == 5
    recorded = {str(i.path) for i in h.library.images(h.character.id)}
    job = TrainingJob(job_id=new_job_id(), character_id=h.character.id,
                      character_name=h.character.name, trigger_word="sks", family="sd15",
                      base_model=str(model), dataset_dir=str(folder), output_name="alice_lora",
                      backend="builtin", resolution=64, rank=4, alpha=8.0, learning_rate=5e-3,
                      steps=16, batch_size=2, sample_every=0, checkpoint_every=0,
                      gradient_checkpointing=False)
    h.service.submit(job)
    h.qtbot.waitUntil(lambda: h.service.job(job.job_id).step >= 4, timeout=150_000)
    h.service.stop(job.job_id)
    stopped = h.wait_final(job.job_id, timeout=150_000)
    assert stopped.state == "stopped", stopped.error_message
    assert stopped.resumable and stopped.checkpoint_step >= 4
    phases = [e.phase for j, e in h.phases if j == job.job_id]
    assert phases[0] == "loading_model" and "training" in phases
    listed = json.loads(stopped.paths.dataset_list.read_text(encoding="utf-8"))["images"]
    assert {i["path"] for i in listed} == recorded
    # a photo imported while the job is stopped: the resumed run keeps the saved list
    h.library.import_photos(h.character.id, [photos[5]])
    h.qtbot.waitUntil(lambda: h.library.image_count(h.character.id) == 4, timeout=WAIT)

    h.finished.clear()
    h.service.resume(job.job_id)
    done = h.wait_final(job.job_id, timeout=150_000)
    assert done.state == "completed", done.error_message
    assert done.step == 16 and Path(done.lora_path).is_file()
    meta = safetensors_metadata(Path(done.lora_path))
    assert meta["ss_num_train_images"] == "3"           # 3 rows, not 5 (or 6) files
    tags = json.loads(meta["ss_tag_frequency"])[folder.name]
    assert {t for t in tags if t.startswith("a red square")} == {
        f"a red square and a blue disc {i}" for i in range(3)}
    # the stop left its own LoRA (<name>-step<N>, issue 11 item 16); this is the final one
    def final() -> list[Path]:
        return [Path(lo.path) for lo in h.library.loras(h.character.id)
                if Path(lo.path).name == Path(done.lora_path).name]
    h.qtbot.waitUntil(lambda: bool(final()), timeout=WAIT)
    published = final()[0]
    assert published.read_bytes() == Path(done.lora_path).read_bytes()
    stdout = done.paths.stdout.read_text()
    assert all(line.startswith("{") or line.startswith("=====") for line in
               stdout.splitlines() if line.strip())


@pytest.mark.timeout(240)
def test_builtin_trainer_recovers_from_an_injected_out_of_memory(h, tmp_path, monkeypatch):
    """The real built-in trainer (tiny SD1.5-like model, CPU) runs out of memory before step
    5 (the runtime's test hook): it saves step 4, the job resumes from there at batch 1 with
    gradient checkpointing on, and completes its 8 steps with a LoRA."""
    from isengard_desktop.training_runtime import tiny_models as tiny

    monkeypatch.setenv("ISENGARD_TEST_OOM_AT_STEP", "5")
    model = tiny.build_sd15(tmp_path / "sd15")
    data = tiny.make_dataset(tmp_path / "data", count=3)
    h.library.import_photos(h.character.id, sorted(data.glob("*.png")))
    h.qtbot.waitUntil(lambda: h.library.image_count(h.character.id) == 3, timeout=WAIT)
    job = TrainingJob(job_id=new_job_id(), character_id=h.character.id,
                      character_name=h.character.name, trigger_word="sks", family="sd15",
                      base_model=str(model), dataset_dir=str(data), output_name="alice_lora",
                      backend="builtin", resolution=64, rank=4, alpha=8.0, learning_rate=5e-3,
                      steps=8, batch_size=2, checkpoint_every=3, gradient_checkpointing=False,
                      extra={"test_hooks": True})
    h.service.submit(job)
    done = h.wait_final(job.job_id, timeout=200_000)
    assert done.state == "completed", done.error_message
    assert done.step == 8 and done.total_steps == 8 and Path(done.lora_path).is_file()
    assert done.oom_notes == ("recovered from out-of-memory at step 5: batch 2 → 1 (gradient "
                              "accumulation 1 → 2), gradient checkpointing on",)
    assert h.errors == []
    # the step before the failed one was saved when memory ran out, and resumed from
    assert [e.step for j, e in h.checkpoints if j == job.job_id] == [3, 4, 6, 8]
    log = log_text(h, job.job_id)
    assert "CUDA out of memory" in log and "injected by ISENGARD_TEST_OOM_AT_STEP" in log
    assert "Resuming from checkpoint-" in log and "(step 4 of 8)" in log
    spec = TrainingJob.load(done.paths.spec)
    assert (spec.batch_size, spec.grad_accum, spec.gradient_checkpointing) == (1, 2, True)
    events = [json.loads(line) for line in done.paths.events.read_text().splitlines()]
    errors = [e for e in events if e.get("event") == "error"]
    assert [(e["kind"], e["step"]) for e in errors] == [("oom", 5)]


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (8-byte length + JSON)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        return json.loads(fh.read(size))["__metadata__"]


USER_SECRET = "wandb-v1-Planted0User0Key0abc123"  # in the user's environment only


def test_a_crash_message_quoting_a_secret_from_the_environment_is_redacted(h, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", USER_SECRET)
    job = h.job(steps=20, crash_at=3, crash_echo_env="WANDB_API_KEY")
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and "was rejected" in done.error_message
    assert USER_SECRET not in done.error_message
    assert USER_SECRET not in (h.db_row(job.job_id).error_message or "")
    assert all(USER_SECRET not in e.message for _, e in h.errors)
    assert USER_SECRET not in done.paths.stderr.read_text()


def test_a_secret_split_across_a_read_boundary_is_redacted_in_the_logs(h):
    job = h.job(steps=3, split_env="HF_TOKEN")
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    for path in (done.paths.stdout, done.paths.stderr):
        text = path.read_text()
        assert " value [REDACTED] end" in text, path
        assert SECRET not in text and SECRET[:8] not in text, path
    assert SECRET not in log_text(h, job.job_id)


@pytest.mark.skipif(sys.platform == "win32",
                    reason="kills the trainer through its POSIX process group (Windows: Job "
                           "Objects, tests/integration/test_windows_process_tree.py)")
def test_the_checkpoint_step_is_persisted_when_the_checkpoint_arrives(h, qtbot):
    h.service.persist_interval_s = 3600.0        # no periodic persisting during the run
    job = h.job(steps=300, delay=0.02, checkpoint_every=10)
    h.service.submit(job)
    qtbot.waitUntil(lambda: (h.service.job(job.job_id).checkpoint_step or 0) >= 10,
                    timeout=WAIT)
    record = h.service.job(job.job_id)
    run = h.service._runs[job.job_id]
    run.blockSignals(True)                        # the app "crashes" right after
    run.proc.blockSignals(True)
    os.killpg(record.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: not pid_alive(record.pid), timeout=5000)
    assert h.db_row(job.job_id).step >= record.checkpoint_step >= 10


def test_after_resume_the_job_keeps_its_first_start_and_counts_only_running_time(h, qtbot):
    from isengard_desktop.ui.training.job_panel import job_duration, to_epoch

    job = h.job(steps=200, delay=0.01)
    h.service.submit(job)
    h.wait_step(job.job_id, 10)
    first_start = h.service.job(job.job_id).started
    h.service.stop(job.job_id)
    stopped = h.wait_final(job.job_id)
    first_run = job_duration(stopped)
    qtbot.wait(1500)                              # the job is not running meanwhile
    h.finished.clear()
    h.service.resume(job.job_id)
    done = h.wait_final(job.job_id)
    assert done.state == "completed"
    assert done.started == first_start and h.db_row(job.job_id).started == first_start
    total = job_duration(done)
    assert total is not None and first_run is not None and total > first_run
    assert total <= to_epoch(done.finished) - to_epoch(first_start) - 1.4


def test_compare_checkpoints_fills_the_gaps_with_the_trainers_own_sampler(h, qtbot, tmp_path):
    """The checkpoint comparison's "fill the gaps" (issue 16 item 4): a built-in job saved
    checkpoints but made no samples; from the dialog, "Make the missing pictures" runs the
    trainer's ``sample`` command on the saved steps (same prompts and seeds), and the grid then
    has a picture per step (different weights → different pictures); the job's own events
    are left as they were."""
    from PySide6.QtCore import Qt

    from isengard_desktop.training_runtime import tiny_models as tiny
    from isengard_desktop.ui.training.training_tab import TrainingTab

    model = tiny.build_sd15(tmp_path / "sd15")
    data = tiny.make_dataset(tmp_path / "data", count=4)
    h.library.import_photos(h.character.id, sorted(data.glob("*.png")))
    h.qtbot.waitUntil(lambda: h.library.image_count(h.character.id) == 4, timeout=WAIT)
    job = TrainingJob(job_id=new_job_id(), character_id=h.character.id,
                      character_name=h.character.name, trigger_word="sks", family="sd15",
                      base_model=str(model), dataset_dir=str(h.library.character_folder(
                          h.character)), output_name="alice_lora", backend="builtin",
                      resolution=64, rank=4, alpha=8.0, learning_rate=5e-3, steps=8,
                      batch_size=2, sample_every=0, checkpoint_every=4, keep_checkpoints=3,
                      sample_prompts=["a portrait", "in a park"], sample_steps=2,
                      gradient_checkpointing=False)
    h.service.submit(job)
    done = h.wait_final(job.job_id, timeout=150_000)
    assert done.state == "completed", done.error_message
    events_before = done.paths.events.read_bytes()

    tab = TrainingTab(h.library, h.service, lambda callback: callback([]))
    qtbot.addWidget(tab)
    dialog = tab.compare_checkpoints(job.job_id)
    assert dialog is not None
    qtbot.waitUntil(lambda: bool(dialog.grid.rows), timeout=WAIT)
    assert [r.step for r in dialog.grid.rows] == [4, 8]
    assert dialog.grid.prompts == ("sks, a portrait", "sks, in a park")
    assert dialog.grid.gaps == [4, 8] and dialog.fill_button.isEnabled()
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    assert not dialog.fill_button.isEnabled()
    messages: list[str] = []
    tab.message_posted.connect(messages.append)
    qtbot.waitUntil(lambda: messages or (dialog.grid.gaps == [] and dialog.grid.rows
                                         and all(c is not None for r in dialog.grid.rows
                                                 for c in r.cells)), timeout=150_000)
    assert messages == [], messages
    four, eight = (dialog.grid.row(s) for s in (4, 8))
    assert [c.name for c in four.cells] == ["step000004_0.png", "step000004_1.png"]
    from PIL import Image

    pixels = [Image.open(p).tobytes() for p in (four.cells[0], eight.cells[0])]
    assert pixels[0] != pixels[1]                       # the weights of each step
    assert done.paths.events.read_bytes() == events_before
    assert not dialog.fill_button.isEnabled()           # nothing left to make
