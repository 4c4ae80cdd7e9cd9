"""The training service: a persistent job queue and the runner of trainer child processes.

Jobs live in the ``jobs`` table (written through the database service, the one DB writer)
and in ``jobs/<job_id>/`` folders. One GPU job runs at a time by default; the others wait in
the queue. Each run is a :class:`~.runner.JobRun` (a :class:`~..child_process.ChildProcess`
in its own process group). Nothing here blocks the UI thread: folders and history are read
and written on executors, and results come back on the main thread.

This module owns the queue, the commands and the job states. Beside it: the record and its
state changes (:mod:`.training_records`), the steps before a launch (:mod:`.training_launch`),
one child process (:mod:`.training_runner`), processes of an earlier app instance
(:mod:`.training_orphans`), a job's events, debug bundle and LoRA (:mod:`.training_outputs`,
publishing through :func:`~..core.training.job_files.publish_lora`), and binding the external
trainers to their installs (:func:`~..plugins.registry.bind_external_installs`).

Out of memory: a run that ends with an ``oom`` error is queued again at once, one memory
tier lower (:mod:`.recovery`, policy in :mod:`...core.training.oom`), resuming from its last
checkpoint with the same total steps, at most ``max_oom_recoveries`` times; each recovery
adds a note to the record (``oom_notes``). The ``error`` of a recovered run is not reported.

States: ``queued → running → (stopping →) completed | failed | cancelled | interrupted |
stopped``. A job found ``running`` at start whose process is gone becomes ``interrupted``;
one whose process is still alive (an earlier app instance's child) is watched until it ends
and can be stopped through its process group.

Call ``LibraryService.start()`` before :meth:`TrainingService.start`, and
:meth:`TrainingService.shutdown` before ``LibraryService.shutdown()`` (its last writes go
through the library's database service).

Signals:
    jobs_changed(): a job was added or changed state; re-read :meth:`jobs`.
    job_updated(JobRecord): one job's record changed (progress at most ~10 a second).
    job_progress(str, Progress): job id, what a progress bar shows: the current phase's count,
        then steps while training (emitted just before ``phase_changed`` / ``progressed``).
    phase_changed(str, PhaseEvent): job id, the trainer's current phase.
    progressed(str, StepEvent): job id, latest step (loss, lr, time left); ≤ ~10 a second,
        the last step always.
    sample_added(str, SampleEvent): job id, a sample image was written.
    checkpoint_saved(str, CheckpointEvent): job id, a checkpoint was written.
    log_appended(str, str, list): job id, "stdout"/"stderr", display lines (≤ ~10 Hz).
    job_finished(JobRecord): the job reached a final state (completed, failed, cancelled,
        stopped or interrupted — the last when a stop could not save, or on app quit).
    error_reported(str, ErrorEvent): job id, an error to show as a plain message.
"""

from __future__ import annotations

import copy
import sqlite3
import statistics
import time
from datetime import UTC, datetime
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ...core import logging as applog
from ...core.db.jobs import JobRow, JobsRepository
from ...core.fsutil import atomic_write_text
from ...core.paths import AppPaths
from ...core.dataset.crops import CropRect
from ...core.training.checkpoint_grid import CheckpointGrid
from ...core.training.checkpoints import latest_complete
from ...core.training.dataset_list import DatasetEntry
from ...core.training.installs import ExternalInstall
from ...core.training.job_warnings import add_warnings
from ...core.training.oom import MAX_RECOVERIES
from ...core.training.progress import TRAINING_PHASE, phase_progress, step_progress
from ...core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent, Event,
                                      PhaseEvent, SampleEvent, StepEvent)
from ...core.training.spec import JobPaths, SpecError, TrainingJob, new_job_id
from ...plugins.registry import TrainerRegistry, bind_external_installs, default_registry
from ..child_process import StopIntent
from ..database import ChangeSet, WriteResult
from ..library import LibraryService
from ..ops import run_in_executor
from .launch import (child_env, placed_stop_file, prepare_launch, read_secrets,
                              require_backend, usable_backend)
from .orphans import OrphanWatcher
from .fill_samples import SampleRender
from .outputs import JobOutputs
from .recovery import gave_up_record, plan_recovery, recovered_record
from .records import (ACTIVE_STATES, RESUMABLE_STATES, JobRecord, JobState, RunOutcome, examine_rows, finished_record,
                               interrupted_at_start, utc_now, with_step)
from .runner import JobRun

__all__ = ["TrainingService"]


class TrainingService(QObject):
    """Job queue + QProcess runner. See the module docstring for states and signals."""

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

    def __init__(self, paths: AppPaths, library: LibraryService,
                 secrets_env: Callable[[], dict[str, str]],
                 registry: TrainerRegistry | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self.library = library
        self.secrets_env = secrets_env
        self.registry = registry if registry is not None else default_registry()
        # tunables (tests shorten them)
        self.max_running = 1
        self.stop_grace_s = 30.0      # Stop & save: time to save a checkpoint and exit
        self.cancel_grace_s = 5.0     # Cancel: time to exit before SIGTERM
        self.kill_grace_s = 5.0       # SIGTERM -> SIGKILL
        self.shutdown_grace_s = 10.0  # app quit: graceful stop before SIGTERM
        self.persist_interval_s = 3.0
        self.max_oom_recoveries = MAX_RECOVERIES   # out of memory: resume lower, this often
        self.bundle_probe_torch = True
        self.is_ready = False
        # each photo's face crop (image id -> rect or None), put into dataset.json at a job's
        # first start; app.py connects the crop service's ``rect``
        self.crop_of: Callable[[int], CropRect | None] = lambda _image_id: None

        self._records: dict[str, JobRecord] = {}
        self._queue: list[str] = []
        self._runs: dict[str, JobRun] = {}
        self._preparing: set[str] = set()
        self._intent: dict[str, StopIntent] = {}   # job id -> stop, cancel or shutdown
        self._orphans = OrphanWatcher(self)        # an earlier app instance's children
        self._orphans.ended.connect(self._on_orphan_ended)
        self._cids: dict[str, str] = {}
        self._last_persist: dict[str, float] = {}
        self._installs: dict[str, ExternalInstall] = {}   # external backends' installs
        self._shutting_down = False
        self._settling: set[str] = set()   # finished, checkpoint scan not back yet
        self._oom_steps: dict[str, int] = {}   # job id -> step of this run's OOM error
        self._files = ThreadPoolExecutor(1, thread_name_prefix="training-files")
        self._outputs = JobOutputs(paths, library, self._files)
        self._renders: list[SampleRender] = []   # checkpoint comparison "fill the gaps" runs

    # -- lifecycle -------------------------------------------------------------------------
    def _examine(self, rows: list[JobRow]) -> None:
        run_in_executor(self._files, lambda: examine_rows(rows), self._on_loaded)

    def start(self) -> None:
        """Load jobs off the UI thread; running jobs whose process is gone → interrupted."""
        data_root = self.paths.data
        def examine(rows: list[JobRow]) -> None:
            run_in_executor(self._files, lambda: examine_rows(rows), self._on_loaded)

        self.library.database.read(lambda conn: JobsRepository(conn, data_root).list_jobs(),
                                   examine)

    def _on_loaded(self, loaded: list[tuple[JobRecord, bool]]) -> None:
        queued = []
        for record, alive in loaded:
            if record.job_id in self._records:
                continue
            if record.state in ACTIVE_STATES:
                if alive:
                    self._orphans.watch(record.job_id, record.pid or 0)
                    logger.info("job {} is still running from an earlier session (pid {})",
                                record.job_id, record.pid)
                else:
                    record = interrupted_at_start(record)
                    logger.info("job {} was running when the app stopped: interrupted",
                                record.job_id)
                    self._persist(record)
            elif record.state == JobState.QUEUED:
                queued.append(record)
            self._records[record.job_id] = record
        self._queue.extend(r.job_id for r in sorted(queued, key=lambda r: r.created))
        self._orphans.start()
        self.is_ready = True
        self.jobs_changed.emit()
        self._pump()

    def stop_for_quit(self) -> list[str]:
        """"Stop & save and quit": Stop & save every running job (as :meth:`stop`; each ends
        "stopped" with its LoRA, through the usual signals). Returns their ids. The app
        quits once :attr:`is_settled`; nothing here blocks."""
        running = [job_id for job_id, run in self._runs.items() if run.is_running]
        for job_id in running:
            self.stop(job_id)
        return running

    @property
    def is_settled(self) -> bool:
        """No trainer runs, no finished job is still being recorded (checkpoint scan, LoRA
        publish): quitting now loses nothing."""
        return not self._runs and not self._settling and self._outputs.pending == 0

    def shutdown(self) -> None:
        """App quit: stop running children (graceful, then terminate, then kill; this blocks
        for at most ``shutdown_grace_s + kill_grace_s`` plus a little) and mark them
        interrupted. A run already asked to stop (Stop & save and quit, then "Quit now") gets
        no second grace: it is terminated at once. Queued jobs stay queued for the next
        start."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._orphans.stop()
        for render in list(self._renders):   # "fill the gaps" children: what they made is kept
            render.finished.disconnect()
            render.stop_and_wait()
        self._renders.clear()
        runs = list(self._runs.items())
        graces = {}
        for job_id, run in runs:
            graces[job_id] = 0.0 if run.stop_requested else self.shutdown_grace_s
            self._intent[job_id] = StopIntent.SHUTDOWN
            self._refresh_stop_file(job_id, run)
            run.request_stop(StopIntent.SHUTDOWN, graces[job_id], self.kill_grace_s)
        deadline = time.monotonic() + self.shutdown_grace_s
        for job_id, run in runs:
            remaining = min(graces[job_id], max(0.0, deadline - time.monotonic()))
            run.wait_for_exit(StopIntent.SHUTDOWN, remaining, self.kill_grace_s)
            run.release()
        self._files.shutdown(wait=True)
        self._outputs.shutdown()

    def apply_settings(self, settings: Any) -> None:
        """New settings are in effect: the external trainer backends (ai-toolkit,
        diffusion-pipe, kohya) are re-created with the installs in
        ``settings.trainer_installs`` (folder + Python). A running job keeps the backend it
        started with. Finished LoRAs are also placed in ``<comfyui_models_folder>/loras``
        when that folder is set. Connect ``SettingsService.settings_changed`` here."""
        bind_external_installs(self.registry, getattr(settings, "trainer_installs", None),
                               self._installs)
        self._outputs.comfy_models_folder = getattr(settings, "comfyui_models_folder", "")

    # -- reads -----------------------------------------------------------------------------
    def jobs(self) -> list[JobRecord]:
        """Every job, newest first (memory only)."""
        return sorted(self._records.values(), key=lambda r: r.created, reverse=True)

    def job(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def measured_sec_per_step(self, family: str, resolution: int, *, cpu: bool = False,
                              auto_on_cpu: bool = False) -> float | None:
        """Median seconds a step of completed jobs of this family and resolution took here,
        counting only jobs that ran on the same kind of device: with ``cpu`` those whose
        Device was "cpu" (or "auto" when ``auto_on_cpu``: this computer has no usable GPU),
        else the others."""

        def ran_on_cpu(record: JobRecord) -> bool:
            device = getattr(record.spec, "device", "auto")
            return device == "cpu" or (device == "auto" and auto_on_cpu)

        values = [r.sec_per_step for r in self._records.values()
                  if r.state == JobState.COMPLETED and r.family == family
                  and r.spec.resolution == resolution and r.sec_per_step
                  and ran_on_cpu(r) == cpu]
        return float(statistics.median(values)) if values else None

    # -- commands --------------------------------------------------------------------------
    def submit(self, job: TrainingJob) -> JobRecord:
        """Validate, write ``jobs/<id>/job.json``, queue; start it if nothing runs.
        Raises :class:`SpecError` naming the field."""
        job.validate()
        require_backend(self.registry, job.backend)
        if not job.job_id or job.job_id in self._records:
            raise SpecError(f"job_id: {job.job_id!r} is empty or already used")
        job = copy.deepcopy(job)
        paths = JobPaths(self.paths.jobs / job.job_id)
        record = JobRecord(job_id=job.job_id, character_id=job.character_id,
                           character_name=job.character_name, backend=job.backend,
                           family=job.family, preset=job.preset, state=JobState.QUEUED,
                           created=utc_now(), total_steps=job.steps, job_dir=paths.root,
                           spec=job)
        with applog.correlation() as cid:
            self._cids[job.job_id] = cid
            logger.info("job {} queued: {} {} steps for {!r} ({})", job.job_id, job.family,
                        job.steps, job.character_name, job.backend)
            spec_text = job.to_json()
            run_in_executor(self._files, lambda: atomic_write_text(paths.spec, spec_text),
                            None, lambda exc: self._fail_launch(
                                job.job_id, f"Could not write {paths.spec}: {exc}"))
        self._records[job.job_id] = record
        self._queue.append(job.job_id)
        self._changed(record, persist=True)
        self._pump()
        return self._records[job.job_id]

    def stop(self, job_id: str) -> None:
        """Stop & save: the trainer saves a checkpoint and exits (final state "stopped");
        after :meth:`stop_grace_for` its process group is terminated, then killed."""
        self._halt(job_id, StopIntent.STOP, self.stop_grace_for(job_id))

    def stop_grace_for(self, job_id: str) -> float:
        """Seconds Stop & save waits before terminating: ``stop_grace_s``, or longer for a
        job whose steps are slow (a CPU job: the trainer finishes its step, then saves), so
        that the step in progress can always end and be saved."""
        record = self._records.get(job_id)
        per_step = record.sec_per_step if record is not None and record.sec_per_step else 0.0
        return max(self.stop_grace_s, 2.0 * per_step + self.stop_grace_s)

    def cancel(self, job_id: str) -> None:
        """Queued: cancelled at once. Running: graceful stop with a short grace, then
        terminate/kill the whole tree; final state "cancelled"."""
        self._halt(job_id, StopIntent.CANCEL, self.cancel_grace_s)

    def _halt(self, job_id: str, intent: StopIntent, grace_s: float) -> None:
        record = self._records.get(job_id)
        if record is None or record.is_final:
            return
        if record.state == JobState.QUEUED:
            if job_id in self._queue:
                self._queue.remove(job_id)
            self._preparing.discard(job_id)
            logger.info("job {} cancelled before it started", job_id)
            self._finalize(replace(record, state=JobState.CANCELLED, finished=utc_now()))
            return
        run = self._runs.get(job_id)
        if run is None and job_id not in self._orphans:
            return  # preparing counts as queued; otherwise the process already ended
        if intent == StopIntent.CANCEL or job_id not in self._intent:
            self._intent[job_id] = intent
        if run is not None:
            self._refresh_stop_file(job_id, run)
            run.request_stop(self._intent[job_id], grace_s, self.kill_grace_s)
        elif job_id in self._orphans:
            self._orphans.terminate(job_id, self.kill_grace_s)
        if record.state != JobState.STOPPING:
            self._changed(replace(record, state=JobState.STOPPING), persist=True)

    def resume(self, job_id: str) -> JobRecord:
        """Continue a stopped/failed/cancelled/interrupted job from its newest checkpoint
        (same folder and spec); queued if another job runs. ValueError if not resumable."""
        record = self._records.get(job_id)
        if record is None:
            raise ValueError(f"There is no job {job_id}.")
        if not record.resumable:
            raise ValueError(f"Job {job_id} cannot be resumed: it is {record.state}"
                             + ("" if record.state not in RESUMABLE_STATES
                                else " and has no complete checkpoint") + ".")
        with applog.correlation() as cid:
            self._cids[job_id] = cid
            logger.info("job {} resumed from step {}", job_id, record.checkpoint_step)
        record = replace(record, state=JobState.QUEUED, finished=None, error_kind=None,
                         error_message=None, lora_path=None,
                         paused_seconds=record.paused_seconds + _since(record.finished))
        self._queue.append(job_id)
        self._changed(record, persist=True)
        self._pump()
        return self._records[job_id]

    def rerun(self, job_id: str) -> JobRecord:
        """A new job (new id and folder) with the same settings."""
        record = self._records.get(job_id)
        if record is None:
            raise ValueError(f"There is no job {job_id}.")
        spec = TrainingJob.from_dict(asdict(record.spec))
        spec.job_id = new_job_id()
        return self.submit(spec)

    def events(self, job_id: str, on_loaded: Callable[[list[Event]], None]) -> None:
        """Read ``events.jsonl`` off the UI thread (history, chart reload)."""
        self._flush_run(job_id)
        self._outputs.events(self._records.get(job_id), on_loaded)

    def checkpoint_grid(self, job_id: str, on_loaded: Callable[[CheckpointGrid], None],
                        on_failure: Callable[[BaseException], None] | None = None) -> None:
        """The job's checkpoint comparison grid (rows = saved steps, columns = sample
        prompts), read off the UI thread."""
        self._flush_run(job_id)
        self._outputs.checkpoint_grid(self._records.get(job_id), on_loaded, on_failure)

    def render_samples(self, job_id: str, steps: list[int]) -> SampleRender | None:
        """"Fill the gaps" of the checkpoint comparison: the built-in trainer's ``sample``
        child for the saved ``steps`` of a job (None when there is no such job). The caller
        starts it and listens to its signals; quit stops it."""
        record = self._records.get(job_id)
        if record is None:
            return None
        run = SampleRender(self.paths, record, steps, self)
        self._renders.append(run)
        run.finished.connect(lambda _ok, _msg: self._renders.remove(run)
                             if run in self._renders else None)
        return run

    def use_checkpoint(self, job_id: str, step: int, lora: Path,
                       on_done: Callable[[Path], None],
                       on_failure: Callable[[BaseException], None]) -> None:
        """Make step ``step``'s LoRA the character's (it becomes their newest LoRA; the
        others stay on disk). ``on_done(path)`` once it is placed; the library records it
        right after."""
        record = self._records.get(job_id)
        if record is None:
            on_failure(KeyError(f"There is no job {job_id}."))
            return
        if record.character_id is None:
            on_failure(ValueError("This job belongs to no character."))
            return
        self._outputs.use_checkpoint(record, step, lora, on_done, on_failure)

    def export_debug_bundle(self, job_id: str, dest: Path, on_done: Callable[[Path], None],
                            on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Zip spec, events, logs, configs, samples and environment (redacted) to ``dest``."""
        self._flush_run(job_id)
        self._outputs.export_debug_bundle(job_id, self._records.get(job_id), dest,
                                          self.secrets_env, self.bundle_probe_torch, on_done,
                                          on_failure)

    def note_resource_alerts(self, job_id: str, alerts: Any) -> None:
        """The resource monitor raised ``alerts`` (``ResourceAlert`` s that just started)
        while ``job_id`` ran: keep them in its record with the time, so the History shows
        them afterwards (:func:`~...core.training.job_warnings.add_warnings`: one per episode,
        a bounded list). Ignored for a job that is not running."""
        record = self._records.get(job_id)
        if record is None or not record.is_active:
            return
        warnings = add_warnings(record.resource_warnings, alerts, datetime.now(UTC))
        if warnings == record.resource_warnings:
            return
        with applog.correlation(self._cids.get(job_id)):
            for warning in warnings[len(record.resource_warnings):]:
                logger.warning("job {}: resource warning ({}): {}", job_id, warning.kind,
                               warning.message)
        self._changed(replace(record, resource_warnings=warnings), persist=True,
                      structural=False)

    def _flush_run(self, job_id: str) -> None:
        """A running job's files and pending output are written out before they are read."""
        run = self._runs.get(job_id)
        if run is not None:
            run.flush()

    # -- the queue -------------------------------------------------------------------------
    def _busy(self) -> int:
        return len(self._runs) + len(self._preparing) + len(self._orphans)

    def _pump(self) -> None:
        while not self._shutting_down and self._queue and self._busy() < self.max_running:
            job_id = self._queue.pop(0)
            record = self._records.get(job_id)
            if record is not None and record.state == JobState.QUEUED:
                self._launch(record)

    def _launch(self, record: JobRecord) -> None:
        job_id = record.job_id
        with applog.correlation(self._cids.get(job_id)):
            backend, problem = usable_backend(self.registry, record.backend)
            if backend is None:
                self._fail_launch(job_id, problem)
                return
            self._preparing.add(job_id)
            paths, spec = record.paths, record.spec
            # the photos the job trains on: the character's rows now (the library's snapshot
            # of the database), saved in the job folder at its first start
            dataset = [DatasetEntry(str(image.path), image.caption, self.crop_of(image.id))
                       for image in sorted(self.library.images(record.character_id)
                                           if record.character_id is not None else [],
                                           key=lambda i: i.id)]

            def failed(exc: BaseException) -> None:
                if job_id in self._preparing:
                    self._preparing.discard(job_id)
                    self._fail_launch(job_id, f"The trainer could not be prepared: {exc}")

            run_in_executor(self._files, lambda: prepare_launch(backend, spec, paths, dataset),
                            lambda result: self._spawn(job_id, backend, *result), failed)

    def _spawn(self, job_id: str, backend: Any, launch: Any, resume: bool) -> None:
        if job_id not in self._preparing or self._shutting_down:
            return  # cancelled while preparing, or the app is quitting (stays queued)
        self._preparing.discard(job_id)
        record = self._records[job_id]
        cid = self._cids.get(job_id) or applog.new_correlation_id()
        secrets = read_secrets(self.secrets_env, job_id)
        run = JobRun(job_id, record.paths, launch, backend.make_parser(),
                     child_env(launch, cid, secrets), secrets.values(), self)
        run.started.connect(lambda pid: self._on_started(job_id, pid))
        run.event_received.connect(lambda ev: self._on_event(job_id, ev))
        run.progressed.connect(lambda ev: self._on_step(job_id, ev))
        run.lines_appended.connect(lambda stream, lines:
                                   self.log_appended.emit(job_id, stream, lines))
        run.finished.connect(lambda outcome: self._on_finished(job_id, outcome))
        self._runs[job_id] = run
        with applog.correlation(cid):
            logger.info("job {}: launching {} ({})", job_id, record.backend,
                        "resume" if resume else "fresh")
        # a resumed job keeps its first start (the history shows the whole job)
        self._changed(replace(record, state=JobState.RUNNING,
                              started=record.started or utc_now(), finished=None), persist=True)
        try:
            run.start()
        except OSError as exc:  # the log files could not be opened
            self._runs.pop(job_id, None)
            self._fail_launch(job_id, f"Could not open the job's log files: {exc}")

    def _refresh_stop_file(self, job_id: str, run: JobRun) -> None:
        """Before a stop: the stop file goes where the backend says it goes now."""
        record = self._records.get(job_id)
        if record is not None:
            run.launch = placed_stop_file(self.registry, record.backend, record.paths,
                                          run.launch, job_id)

    def _fail_launch(self, job_id: str, message: str) -> None:
        record = self._records.get(job_id)
        if record is None or record.is_final:
            return
        if job_id in self._queue:
            self._queue.remove(job_id)
        logger.warning("job {} failed to launch: {}", job_id, message)
        error = ErrorEvent("config", message)
        self.error_reported.emit(job_id, error)
        self._finalize(replace(record, state=JobState.FAILED, finished=utc_now(),
                               error_kind="config", error_message=message))

    def _on_orphan_ended(self, job_id: str) -> None:
        record = self._records.get(job_id)
        if record is not None and not record.is_final:
            intent = self._intent.pop(job_id, None)
            state = JobState.CANCELLED if intent == StopIntent.CANCEL else JobState.INTERRUPTED
            self._finalize_with_checkpoint(replace(record, state=state, pid=None,
                                                   finished=utc_now()))
        if len(self._orphans) == 0:
            self._pump()

    # -- events from the runner --------------------------------------------------------------
    def _on_started(self, job_id: str, pid: int) -> None:
        record = self._records.get(job_id)
        if record is not None:
            self._changed(replace(record, pid=pid or None), persist=True)

    def _on_step(self, job_id: str, event: StepEvent) -> None:
        record = self._records.get(job_id)
        if record is None:
            return
        record = with_step(record, event)
        due = time.monotonic() - self._last_persist.get(job_id, 0.0) >= self.persist_interval_s
        self._changed(record, persist=due, structural=False)
        self.job_progress.emit(job_id, step_progress(event, record.total_steps))
        self.progressed.emit(job_id, event)

    def _on_event(self, job_id: str, event: Event) -> None:
        record = self._records.get(job_id)
        if record is None:
            return
        if isinstance(event, PhaseEvent):
            if event.phase != TRAINING_PHASE:     # while training, steps drive the bar
                self.job_progress.emit(job_id, phase_progress(event))
            self.phase_changed.emit(job_id, event)
        elif isinstance(event, SampleEvent):
            self.sample_added.emit(job_id, event)
        elif isinstance(event, CheckpointEvent):
            if event.resumable:
                # persisted now: after a crash the history shows at least this step
                self._changed(replace(record, checkpoint_step=event.step,
                                      step=max(record.step, event.step)),
                              persist=True, structural=False)
            self.checkpoint_saved.emit(job_id, event)
        elif isinstance(event, DoneEvent):
            self._changed(replace(record, lora_path=event.lora), structural=False)
        elif isinstance(event, ErrorEvent):
            logger.warning("job {}: trainer error {}: {}", job_id, event.kind, event.message)
            if event.kind == "oom":
                # recovered or reported when the run ends (see _on_finished)
                self._oom_steps[job_id] = event.step or record.step + 1
                return
            self._changed(replace(record, error_kind=event.kind, error_message=event.message),
                          structural=False)
            self.error_reported.emit(job_id, event)

    def _on_finished(self, job_id: str, outcome: RunOutcome) -> None:
        run = self._runs.pop(job_id, None)
        if run is not None:
            run.deleteLater()
        record = self._records.get(job_id)
        if record is None:
            return
        record = finished_record(record, outcome, self._intent.pop(job_id, None),
                                 run.launch.argv[0] if run else "the program")
        oom_step = self._oom_steps.pop(job_id, record.step + 1)
        if record.state == JobState.FAILED and record.error_kind == "oom":
            if self._recover_from_oom(record, oom_step):
                return
            record = gave_up_record(record, oom_step, self.max_oom_recoveries)
            self.error_reported.emit(job_id, ErrorEvent("oom", record.error_message or "",
                                                        oom_step))
        state, message = record.state, record.error_message
        if state == JobState.FAILED and outcome.error is None and record.error_kind != "oom":
            self.error_reported.emit(job_id, ErrorEvent(record.error_kind or "crash",
                                                        message or ""))
        logger.info("job {} {}{}", job_id, state, f": {message}" if message else "")
        if state == JobState.COMPLETED:
            self._finalize(record)
            self._outputs.register_lora(record, outcome.done)
        else:
            self._finalize_with_checkpoint(record)
            if state == JobState.STOPPED and record.lora_path:   # usable at the stop step
                stopped = outcome.stopped
                step = (stopped.lora_step or stopped.step) if stopped else record.step
                self._outputs.register_lora(record, DoneEvent(record.lora_path, step))

    def _recover_from_oom(self, record: JobRecord, step: int) -> bool:
        """Out of memory at ``step``: queue the job again one memory tier lower (its spec
        rewritten, resuming from its last checkpoint, first in the queue). False when it
        was recovered ``max_oom_recoveries`` times already or nothing is left to lower."""
        tier = plan_recovery(self.registry, record, self.max_oom_recoveries)
        if tier is None:
            return False
        job_id = record.job_id
        record = recovered_record(record, tier, step)
        with applog.correlation(self._cids.get(job_id)):
            logger.warning("job {}: {}", job_id, record.oom_notes[-1])
        spec_path, spec_text = record.paths.spec, tier.job.to_json()
        # the same single-thread executor prepares the launch: the spec is written first
        run_in_executor(self._files, lambda: atomic_write_text(spec_path, spec_text),
                        None, lambda exc: self._fail_launch(
                            job_id, f"Could not write {spec_path}: {exc}"))
        self._queue.insert(0, job_id)
        self._changed(record, persist=True)
        self._pump()
        return True

    def _finalize_with_checkpoint(self, record: JobRecord) -> None:
        """Find the newest complete checkpoint (verified by hash, off the UI thread), then
        finalize. At shutdown there is no time: finalize at once."""
        if self._shutting_down:
            self._finalize(record)
            return
        self._persist(record)  # the state is final now; the scan only adds checkpoint_step
        root = record.job_dir
        self._settling.add(record.job_id)

        def found(info: Any) -> None:
            self._settling.discard(record.job_id)
            self._finalize(replace(record, checkpoint_step=info.step if info else None))

        def failed(_exc: BaseException) -> None:
            self._settling.discard(record.job_id)
            self._finalize(record)

        run_in_executor(self._files, lambda: latest_complete(root, deep=True), found, failed)

    def _finalize(self, record: JobRecord) -> None:
        self._last_persist.pop(record.job_id, None)
        self._changed(record, persist=True)
        self.job_finished.emit(record)
        self._pump()

    # -- helpers -----------------------------------------------------------------------------
    def _changed(self, record: JobRecord, *, persist: bool = False,
                 structural: bool = True) -> None:
        """Store a new snapshot, persist it if asked, and tell the UI."""
        previous = self._records.get(record.job_id)
        self._records[record.job_id] = record
        if persist:
            self._persist(record)
        self.job_updated.emit(record)
        if structural or previous is None or previous.state != record.state:
            self.jobs_changed.emit()

    def _persist(self, record: JobRecord) -> None:
        self._last_persist[record.job_id] = time.monotonic()
        row = record.to_row()
        data_root = self.paths.data
        try:
            self.library.database.write(lambda conn: _saved(conn, data_root, row))
        except RuntimeError as exc:  # the writer is already shut down (late app quit)
            logger.warning("job {}: state {} not saved: {}", record.job_id, record.state, exc)


def _since(stamp: str | None) -> float:
    """Seconds from the ISO time ``stamp`` until now (0 when there is none)."""
    if not stamp:
        return 0.0
    try:
        return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds())
    except ValueError:
        return 0.0


def _saved(conn: sqlite3.Connection, data_root: Path, row: JobRow) -> WriteResult[None]:
    """The write op that stores one job row (on the database service's writer thread)."""
    JobsRepository(conn, data_root).save(row)
    return WriteResult(None, ChangeSet(jobs=True))
