"""The resource monitor: samples GPU/CPU/RAM/disk once a second in the GUI process (never in
the trainer) on its own worker thread — NVML calls can block — and records a compact sample of
the running job into its folder (``resources.jsonl``, which the debug bundle includes).

Signals:
    sampled(ResourceSample): a new sample (main thread).
    alerts_changed(tuple[ResourceAlert, ...]): the alerts changed (disk will not hold the next
        checkpoint, VRAM > 97 %, thermal throttling); an empty tuple when they cleared.
    job_alerts_raised(str, tuple[ResourceAlert, ...]): job id, the alerts that started while
        that job ran (each once while it lasts; GPU alerts only for the job's GPUs), for the
        training service to keep in the job's record.
    job_gpus_changed(object): the GPUs (NVML indices, a tuple) the running job trains on, or
        None when no job runs or its GPUs are unknown (charts then show every GPU). The job's
        GPU numbers are CUDA's: they are taken as NVML indices only where the two orders
        agree (:func:`~..core.hardware.monitor.cuda_numbers_are_nvml`), else unknown.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from loguru import logger
from PySide6.QtCore import QObject, QTimer, Signal

from ..core.hardware.monitor import (ResourceAlert, ResourceSample, ResourceSampler,
                                     cuda_numbers_are_nvml, estimate_checkpoint_bytes,
                                     resource_alerts, sample_record)
from ..core.training.parallel import job_gpu_indices
from .ops import run_in_executor

__all__ = ["RESOURCES_FILE", "ResourceMonitor"]

RESOURCES_FILE = "resources.jsonl"
SAMPLE_INTERVAL_MS = 1000
RECORD_EVERY_S = 10.0


class ResourceMonitor(QObject):
    """Samples at ``interval_ms`` while started. :meth:`set_job` names the running job's
    folder: its samples are appended there every ``record_every_s`` seconds and its checkpoint
    size feeds the disk alert. A sample still running when the next one is due is not
    doubled: that tick is skipped."""

    sampled = Signal(object)
    alerts_changed = Signal(object)
    job_alerts_raised = Signal(str, object)
    job_gpus_changed = Signal(object)

    def __init__(self, sampler: ResourceSampler, parent: QObject | None = None, *,
                 interval_ms: int = SAMPLE_INTERVAL_MS,
                 record_every_s: float = RECORD_EVERY_S,
                 env: Mapping[str, str] | None = None) -> None:
        super().__init__(parent)
        self._sampler = sampler
        self._env: Mapping[str, str] = env if env is not None else os.environ
        self.record_every_s = record_every_s
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="resource-monitor")
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.sample_now)
        self._pending: Future | None = None
        self._job_dir: Path | None = None
        self._job_id: str | None = None
        self._job_gpus: tuple[int, ...] | None = None
        self._spec_gpus: tuple[int, ...] | None = None    # the job's own (CUDA) numbers
        self._job_alert_keys: set[tuple[str, int | None]] = set()   # raised for this job
        # worker-thread state
        self._last_record = 0.0
        self._last_estimate = 0.0
        self._estimated_for: Path | None = None
        self._checkpoint_bytes: int | None = None
        self._closed = False
        self.latest: ResourceSample | None = None
        self.alerts: tuple[ResourceAlert, ...] = ()

    @property
    def is_running(self) -> bool:
        return self._timer.isActive()

    @property
    def job_dir(self) -> Path | None:
        return self._job_dir

    @property
    def job_id(self) -> str | None:
        return self._job_id

    @property
    def job_gpus(self) -> tuple[int, ...] | None:
        """The running job's GPUs (NVML indices); None: no job, or not known."""
        return self._job_gpus

    def start(self) -> None:
        if not self._closed and not self._timer.isActive():
            self._timer.start()
            self.sample_now()

    def set_job(self, job_dir: Path | None, job_id: str | None = None,
                gpus: tuple[int, ...] | None = None) -> None:
        """The folder, id and GPUs of the job that is running now (None: no job runs)."""
        if job_dir is None:
            job_id, gpus = None, None
        if job_dir != self._job_dir or job_id != self._job_id:
            self._job_dir = Path(job_dir) if job_dir is not None else None
            self._job_id = job_id
            self._last_record = 0.0
            self._job_alert_keys = set()    # alerts still on are new to the next job
        self._spec_gpus = gpus
        self._resolve_job_gpus()

    def _resolve_job_gpus(self) -> None:
        """The job's GPUs as NVML indices, once a sample named the cards (see
        ``job_gpus_changed``); emitted when that changes."""
        gpus = self._spec_gpus
        names = [gpu.name for gpu in self.latest.gpus] if self.latest is not None else None
        if gpus is not None and (names is None or not cuda_numbers_are_nvml(names, self._env)):
            gpus = None
        if gpus != self._job_gpus:
            self._job_gpus = gpus
            self.job_gpus_changed.emit(gpus)

    def on_job_updated(self, record: object) -> None:
        """Follow the training service's ``job_updated``: a running job is recorded, and
        recording ends when that job leaves the running state."""
        job_dir = getattr(record, "job_dir", None)
        state = getattr(record, "state", None)
        if state in ("running", "stopping"):
            spec = getattr(record, "spec", None)
            self.set_job(job_dir, getattr(record, "job_id", None),
                         job_gpu_indices(spec) if spec is not None else None)
        elif job_dir is not None and job_dir == self._job_dir:
            self.set_job(None)

    def sample_now(self) -> None:
        """Take one sample on the worker (skipped while the previous one still runs)."""
        if self._closed or (self._pending is not None and not self._pending.done()):
            return
        job_dir, job_id = self._job_dir, self._job_id
        self._pending = run_in_executor(self._executor, lambda: self._work(job_dir),
                                        lambda result: self._deliver(result, job_id),
                                        self._failed)

    def _work(self, job_dir: Path | None) -> tuple[ResourceSample, tuple[ResourceAlert, ...]]:
        sample = self._sampler.sample()
        if job_dir != self._estimated_for or \
                time.monotonic() - self._last_estimate >= self.record_every_s:
            # walks the job folder: every record_every_s, not every second
            self._estimated_for, self._last_estimate = job_dir, time.monotonic()
            self._checkpoint_bytes = (estimate_checkpoint_bytes(job_dir)
                                      if job_dir is not None else None)
        alerts = resource_alerts(sample, self._checkpoint_bytes)
        if job_dir is not None and job_dir.is_dir() \
                and time.monotonic() - self._last_record >= self.record_every_s:
            self._last_record = time.monotonic()
            line = json.dumps(sample_record(sample, alerts), separators=(",", ":"))
            try:
                with open(job_dir / RESOURCES_FILE, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError as exc:      # a full disk is an alert already; do not repeat it
                logger.debug("resources.jsonl not written in {}: {}", job_dir, exc)
        return sample, alerts

    def _deliver(self, result: tuple[ResourceSample, tuple[ResourceAlert, ...]],
                 job_id: str | None = None) -> None:
        if self._closed:
            return
        sample, alerts = result
        known = self.latest is not None and [g.name for g in self.latest.gpus] == \
            [g.name for g in sample.gpus]
        self.latest = sample
        if not known:                  # the cards are known (or changed): map the job's
            self._resolve_job_gpus()
        self.sampled.emit(sample)
        if job_id is not None and job_id == self._job_id:
            self._raise_for_job(job_id, alerts)
        if alerts != self.alerts:
            before = {a.kind for a in self.alerts}
            self.alerts = alerts
            for alert in alerts:
                if alert.kind not in before:     # logged when it starts, not every second
                    logger.warning("resource alert: {}", alert.message)
            self.alerts_changed.emit(alerts)

    def _raise_for_job(self, job_id: str, alerts: tuple[ResourceAlert, ...]) -> None:
        """Emit the job's alerts that were not on at the previous sample (a GPU alert only
        when the job trains on that GPU, or its GPUs are unknown)."""
        gpus = self._job_gpus
        mine = [a for a in alerts if a.gpu is None or gpus is None or a.gpu in gpus]
        started = tuple(a for a in mine if a.key not in self._job_alert_keys)
        self._job_alert_keys = {a.key for a in mine}
        if started:
            self.job_alerts_raised.emit(job_id, started)

    def _failed(self, exc: BaseException) -> None:
        # a sampler bug must not raise a dialog every second: log it once and stop sampling
        logger.opt(exception=exc).error("resource monitor stopped: {}", exc)
        self._timer.stop()

    def stop(self) -> None:
        self._timer.stop()

    def shutdown(self) -> None:
        """Stop sampling and close NVML on the worker (does not wait for it)."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self._executor.submit(self._sampler.close)
        self._executor.shutdown(wait=False, cancel_futures=False)
