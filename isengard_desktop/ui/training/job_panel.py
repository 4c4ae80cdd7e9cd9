"""The selected training job as the Training tab shows it (:class:`JobPanelWidget`), and the
words used for job states, phases and errors.

A plain widget: it emits requests and the Training tab turns those into calls on the training
service. Nothing here touches the disk or a service.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QSplitter,
                               QVBoxLayout, QWidget)

from ...core.models import FAMILY_LABELS
from ...core.training.job_warnings import warning_lines
from ...core.training.presets import format_clock, format_duration
from ...core.types import Progress
from ...core.training.progress import (PHASE_WORDS, TRAINING_PHASE, phase_progress,
                                       phase_words, step_progress)
from ...core.training.protocol import (CheckpointEvent, ErrorEvent, PhaseEvent, SampleEvent,
                                       StepEvent)
from ..widgets.log_view import LogViewWidget
from ..widgets.loss_chart import LossChartWidget
from ..widgets.samples_strip import SamplesStripWidget
from .resource_monitor import ResourceMonitorWidget

ACTIVE = ("queued", "running", "stopping")
# states Resume can continue from, given a checkpoint (records.RESUMABLE_STATES)
RESUMABLE = ("failed", "cancelled", "interrupted", "stopped")
STATE_WORDS = {
    "queued": "Waiting to start",
    "running": "Running",
    "stopping": "Stopping (saving a checkpoint)…",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "interrupted": "Interrupted",
    "stopped": "Stopped (saved)",
}
STATE_COLORS = {
    "running": "#8fb3ff", "queued": "#aab2c0", "stopping": "#ead9a8", "completed": "#8fd6a8",
    "failed": "#f0a3a3", "cancelled": "#9aa3b2", "interrupted": "#ead9a8", "stopped": "#ead9a8",
}
ERROR_WORDS = {
    "oom": ("Out of GPU memory",
            "Lower the resolution or the batch size, keep gradient checkpointing on, or keep "
            "the base model in 8-bit (Advanced), then Resume or re-run."),
    "config": ("A setting cannot work",
               "Change the setting named above (Advanced) and re-run."),
    "model_missing": ("A model file is missing",
                      "Check the base model file and the model folders in Settings."),
    "nan_loss": ("Training became unstable (the loss is no longer a number)",
                 "Lower the learning rate (Advanced) and re-run."),
    "disk_full": ("The disk is full",
                  "Free some space on the drive that holds the data folder, then Resume."),
    "crash": ("The trainer stopped unexpectedly",
              "The log below shows the last lines; export a debug bundle if it happens again."),
}


def describe_error(kind: str | None, message: str | None) -> tuple[str, str]:
    """(headline, what to do) for an error kind and the trainer's message."""
    title, hint = ERROR_WORDS.get(kind or "", ("Training failed", ERROR_WORDS["crash"][1]))
    message = (message or "").strip()
    if "What you can do:" in message:     # the message says it already (after OOM recovery)
        hint = ""
    return (f"{title}: {message}" if message else title), hint


def family_label(family: str | None) -> str:
    return FAMILY_LABELS.get(family, family or "unknown")


def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch from a float, a datetime or an ISO string (None if unknown)."""
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def job_duration(record: Any, now: float | None = None) -> float | None:
    start = to_epoch(getattr(record, "started", None))
    if start is None:
        return None
    end = to_epoch(getattr(record, "finished", None))
    if end is None:
        if getattr(record, "state", "") not in ACTIVE:
            return None
        end = now if now is not None else time.time()
    # a resumed job: its first start, less the time between its runs
    return max(0.0, end - start - float(getattr(record, "paused_seconds", 0.0) or 0.0))


def fmt_loss(loss: float | None) -> str:
    if loss is None or not isinstance(loss, (int, float)):
        return "—"
    return "NaN" if math.isnan(loss) else f"{loss:.4g}"


def fmt_when(value: Any) -> str:
    epoch = to_epoch(value)
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M") if epoch else "—"


class JobPanelWidget(QWidget):
    """The selected job: state, phase, progress, numbers, loss chart, samples and log.

    Signals:
        stop_requested(str job_id), cancel_requested(str job_id), resume_requested(str job_id),
        rerun_requested(str job_id) (a job that cannot be resumed, again as a new job)
    """

    stop_requested = Signal(str)
    cancel_requested = Signal(str)
    resume_requested = Signal(str)
    rerun_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job_id: str | None = None
        self.record: Any = None
        self._total = 0
        self.backend_labels: dict[str, str] = {}   # trainer key -> name, set by the tab

        self.title_label = QLabel("No training job yet")
        self.title_label.setObjectName("Title")
        self.title_label.setWordWrap(True)   # a long name wraps instead of being cut at 900 px
        self.state_label = QLabel("")
        self.state_label.setObjectName("JobState")
        self.summary_label = QLabel("Set up a job on the left and press Start.")
        self.summary_label.setProperty("subtle", True)
        self.summary_label.setWordWrap(True)
        self.phase_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.step_label = QLabel("")
        self.eta_label = QLabel("")
        self.lr_label = QLabel("")
        self.loss_label = QLabel("")
        self.checkpoint_label = QLabel("")
        for w in (self.eta_label, self.lr_label, self.loss_label, self.checkpoint_label):
            w.setProperty("subtle", True)
        self.eta_label.setToolTip("Time left, from the recent step times.")
        self.lr_label.setToolTip("The learning rate now (it changes with warmup and the "
                                 "schedule).")
        self.loss_label.setToolTip("The loss of the last step. It is noisy: watch the bold "
                                   "trend line in the chart.")
        self.recovery_label = QLabel("")
        self.recovery_label.setObjectName("RecoveryNote")
        self.recovery_label.setWordWrap(True)
        self.recovery_label.setStyleSheet("color: #ead9a8;")
        self.recovery_label.setToolTip(
            "The trainer ran out of GPU memory. Isengard resumed the job from its last "
            "checkpoint with lower memory settings (same total steps); it does this at most "
            "twice.")
        self.recovery_label.setVisible(False)
        # the disk / VRAM / heat warnings a finished job met while it ran (from its record)
        self.warnings_label = QLabel("")
        self.warnings_label.setObjectName("JobResourceWarnings")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setStyleSheet("color: #ead9a8;")
        self.warnings_label.setToolTip("Warnings the resource monitor raised while this job "
                                       "ran, with when each began (kept with the job).")
        self.warnings_label.setVisible(False)
        self.error_label = QLabel("")
        self.error_label.setObjectName("Banner")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setVisible(False)
        # the resource monitor's warnings (disk, VRAM, heat): about the machine, not one job,
        # so they stay when another job is selected
        self.alerts_label = QLabel("")
        self.alerts_label.setObjectName("ResourceAlerts")
        self.alerts_label.setWordWrap(True)
        self.alerts_label.setStyleSheet("background: #2a261c; border: 1px solid #5c5030; "
                                        "color: #ead9a8; padding: 4px;")
        self.alerts_label.setVisible(False)
        self.monitor = ResourceMonitorWidget()

        self.stop_button = QPushButton("Stop && save")
        self.stop_button.setToolTip("Save a checkpoint and stop. Resume continues from it.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setProperty("danger", True)
        self.cancel_button.setToolTip("Stop now without saving. Checkpoints already saved "
                                      "are kept.")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue from the newest checkpoint, up to the planned "
                                      "number of steps.")
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("Start a new job with exactly the same settings.")
        self.rerun_button.setVisible(False)

        head = QHBoxLayout()
        head.addWidget(self.title_label, 1)
        head.addSpacing(8)
        head.addWidget(self.state_label)
        head.addWidget(self.stop_button)
        head.addWidget(self.cancel_button)
        head.addWidget(self.resume_button)
        head.addWidget(self.rerun_button)
        numbers = QHBoxLayout()
        numbers.addWidget(self.step_label)
        numbers.addSpacing(14)
        numbers.addWidget(self.eta_label)
        numbers.addSpacing(14)
        numbers.addWidget(self.lr_label)
        numbers.addSpacing(14)
        numbers.addWidget(self.loss_label)
        numbers.addStretch(1)
        numbers.addWidget(self.checkpoint_label)

        self.chart = LossChartWidget()
        self.samples = SamplesStripWidget()
        self.log = LogViewWidget()
        charts = QWidget()
        cl = QVBoxLayout(charts)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.chart, 1)
        cl.addWidget(self.samples)
        self.body = QSplitter(Qt.Orientation.Vertical)
        self.body.addWidget(charts)
        self.body.addWidget(self.log)
        self.body.setStretchFactor(0, 3)
        self.body.setStretchFactor(1, 2)
        self.body.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.recovery_label)
        layout.addWidget(self.warnings_label)
        layout.addWidget(self.error_label)
        layout.addWidget(self.alerts_label)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.progress)
        layout.addLayout(numbers)
        layout.addWidget(self.monitor)
        layout.addWidget(self.body, 1)

        self.stop_button.clicked.connect(lambda: self._request(self.stop_requested))
        self.cancel_button.clicked.connect(lambda: self._request(self.cancel_requested))
        self.resume_button.clicked.connect(lambda: self._request(self.resume_requested))
        self.rerun_button.clicked.connect(lambda: self._request(self.rerun_requested))
        self._update_buttons()

    def _request(self, signal: Any) -> None:
        if self.job_id:
            signal.emit(self.job_id)

    # -- the job ---------------------------------------------------------------------------
    def show_job(self, record: Any) -> None:
        """Show ``record`` (a JobRecord); switching to another job clears the live views."""
        self.progress.setVisible(record is not None)
        if record is None:
            self.job_id, self.record = None, None
            self._reset_views()
            self.title_label.setText("No training job yet")
            self.summary_label.setText("Set up a job on the left and press Start.")
            self.state_label.setText("")
            self._update_buttons()
            return
        if record.job_id != self.job_id:
            self.job_id = record.job_id
            self._reset_views()
        self.update_record(record)

    def update_record(self, record: Any) -> None:
        if record.job_id != self.job_id:
            return
        previous = getattr(self.record, "state", None)
        self.record = record
        spec = getattr(record, "spec", None)
        preset = record.preset or "custom settings"
        self.title_label.setText(f"{record.character_name} · {family_label(record.family)}")
        color = STATE_COLORS.get(record.state, "#aab2c0")
        self.state_label.setText(STATE_WORDS.get(record.state, record.state))
        self.state_label.setStyleSheet(f"color: {color}; font-weight: 600;")
        parts = [preset]
        if spec is not None:
            parts.append(f"{spec.resolution} px, rank {spec.rank}, lr {spec.learning_rate:g}")
            parts.append(Path(spec.base_model).name)
        backend = getattr(record, "backend", "") or ""
        parts.append(f"trainer: {self.backend_labels.get(backend, backend or 'unknown')}")
        self.summary_label.setText(" · ".join(parts))
        notes = recovery_lines(record)
        if self.recovery_label.text() != notes:
            self.recovery_label.setText(notes)
        self.recovery_label.setVisible(bool(notes))
        # while it runs the live alerts say it; afterwards what it met stays readable here
        met = "" if record.state in ("running", "stopping") else "\n".join(
            warning_lines(getattr(record, "resource_warnings", ()) or ()))
        if self.warnings_label.text() != met:
            self.warnings_label.setText(met)
        self.warnings_label.setVisible(bool(met))
        self._total = record.total_steps or self._total
        if record.total_steps:
            self._show_step(Progress(label=PHASE_WORDS[TRAINING_PHASE], done=record.step,
                                     total=record.total_steps))
        if record.last_loss is not None:
            self.loss_label.setText(f"loss {fmt_loss(record.last_loss)}")
        if record.state == "completed":
            self.phase_label.setText("Finished: " + (Path(record.lora_path).name
                                                       if record.lora_path else "LoRA saved"))
            self.progress.setRange(0, max(1, record.total_steps or 1))
            self.progress.setValue(max(1, record.total_steps or 1))
            self.eta_label.setText(_took(record))
        elif record.state == "queued":
            self.phase_label.setText("Waiting for the GPU (one job runs at a time)")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        elif record.state == "running" and previous != "running":
            self.phase_label.setText("Starting the trainer…")
            self.eta_label.setText("")
        elif record.state == "stopping" and previous != "stopping":
            self.phase_label.setText(STATE_WORDS["stopping"])
        elif record.state not in ACTIVE:
            self.eta_label.setText(_took(record))
            where = f" at step {record.step} of {record.total_steps}" if record.step else ""
            self.phase_label.setText(
                STATE_WORDS.get(record.state, record.state).split(" (")[0] + where
                + _resume_note(record))
        if record.state == "failed" or record.error_kind:
            self.show_error(record.error_kind, record.error_message)
        elif record.state in ACTIVE:
            self.error_label.setVisible(False)
        self._update_buttons()

    def _update_buttons(self) -> None:
        state = getattr(self.record, "state", None)
        self.stop_button.setEnabled(state == "running")
        self.cancel_button.setEnabled(state in ACTIVE)
        self.resume_button.setEnabled(bool(self.record is not None and state not in ACTIVE
                                           and getattr(self.record, "resumable", False)))
        self.rerun_button.setVisible(_cannot_resume(self.record))

    def _reset_views(self) -> None:
        self._total = 0
        self.chart.clear()
        self.samples.clear()
        self.log.clear()
        self.error_label.setVisible(False)
        self.error_label.setText("")
        self.recovery_label.setVisible(False)
        self.recovery_label.setText("")
        self.warnings_label.setVisible(False)
        self.warnings_label.setText("")
        for w in (self.phase_label, self.step_label, self.eta_label, self.lr_label,
                  self.loss_label, self.checkpoint_label):
            w.setText("")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    # -- live events ---------------------------------------------------------------------------
    def on_phase(self, event: PhaseEvent) -> None:
        """The phase line (the bar follows :meth:`show_progress`)."""
        words = phase_words(event.phase)
        if event.total and event.phase != TRAINING_PHASE:   # steps are counted below the bar
            words += f" ({event.done} / {event.total})"
        if event.detail:
            words += f" — {event.detail}"
        self.phase_label.setText(words)

    def show_progress(self, progress: Progress) -> None:
        """The bar: ``done`` of ``total``, or busy while there is nothing to count."""
        if progress.total:
            self.progress.setRange(0, progress.total)
            self.progress.setValue(min(progress.done, progress.total))
            self.progress.setFormat("%p%")
        else:
            self.progress.setRange(0, 0)   # busy: nothing to count yet

    def _show_step(self, progress: Progress) -> None:
        self.show_progress(progress)
        self.step_label.setText(f"step {progress.done} / {progress.total}")

    def on_step(self, event: StepEvent) -> None:
        """Step, time left, learning rate, loss and the chart (the bar follows
        :meth:`show_progress`)."""
        self._total = event.total or self._total
        if self.phase_label.text() != PHASE_WORDS[TRAINING_PHASE]:
            self.phase_label.setText(PHASE_WORDS[TRAINING_PHASE])
        self.step_label.setText(f"step {event.step} / {max(1, self._total)}")
        if event.eta_sec and event.eta_sec > 0:
            self.eta_label.setText(f"{format_duration(event.eta_sec)} left")
            self.eta_label.setToolTip(f"Time left: {format_clock(event.eta_sec)}, from "
                                      f"{event.sec_per_step:.2f} s per step recently.")
        self.lr_label.setText(f"lr {event.lr:.2e}" if event.lr else "")
        self.loss_label.setText(f"loss {fmt_loss(event.loss)}")
        self.chart.set_total_steps(event.total)
        self.chart.append_points([(event.step, event.loss)])


    def on_sample(self, event: SampleEvent) -> None:
        self.samples.add_sample(event.step, event.path, event.prompt)

    def on_checkpoint(self, event: CheckpointEvent) -> None:
        self.checkpoint_label.setText(f"checkpoint saved at step {event.step}")

    def show_error(self, kind: str | None, message: str | None) -> None:
        headline, hint = describe_error(kind, message)
        self.error_label.setText(f"{headline}\n{hint}" if hint else headline)
        self.error_label.setStyleSheet("background: #2a1c1f; border: 1px solid #5c2f35; "
                                       "color: #f3c4c4;")
        self.error_label.setVisible(True)

    def show_resource_alerts(self, alerts: Iterable[Any]) -> None:
        """The resource monitor's alerts (``ResourceAlert``), one a line; none hides them."""
        lines = [f"⚠ {alert.message}" for alert in alerts]
        self.alerts_label.setText("\n".join(lines))
        self.alerts_label.setVisible(bool(lines))

    def load_events(self, events: Iterable[Any]) -> None:
        """Rebuild chart, samples, numbers and phase from a job's recorded events (the log
        comes from the job's log files)."""
        points, samples = [], []
        last_step: StepEvent | None = None
        last_phase: PhaseEvent | None = None
        last_ckpt: CheckpointEvent | None = None
        error: ErrorEvent | None = None
        for event in events:
            if isinstance(event, StepEvent):
                points.append((event.step, event.loss))
                last_step = event
            elif isinstance(event, SampleEvent):
                samples.append((event.step, event.path, event.prompt))
            elif isinstance(event, PhaseEvent):
                last_phase = event
            elif isinstance(event, CheckpointEvent):
                last_ckpt = event
            elif isinstance(event, ErrorEvent):
                error = event
        self.chart.set_history(points)
        self.samples.set_samples(samples)
        if last_phase is not None and getattr(self.record, "state", "") in ACTIVE:
            self.on_phase(last_phase)
            if last_phase.phase != TRAINING_PHASE:
                self.show_progress(phase_progress(last_phase))
        if last_step is not None:
            self._total = last_step.total or self._total
            self._show_step(step_progress(last_step, self._total))
            self.lr_label.setText(f"lr {last_step.lr:.2e}" if last_step.lr else "")
            self.loss_label.setText(f"loss {fmt_loss(last_step.loss)}")
        if last_ckpt is not None:
            self.on_checkpoint(last_ckpt)
        state = getattr(self.record, "state", "")
        # an out-of-memory error the job recovered from is no error of the job
        recovered = (error is not None and error.kind == "oom" and state != "failed"
                     and bool(getattr(self.record, "oom_notes", ())))
        if error is not None and state not in ACTIVE and not recovered:
            self.show_error(error.kind, error.message)
        if self.record is not None:
            self.update_record(self.record)


def recovery_lines(record: Any) -> str:
    """The job's out-of-memory recoveries, one line each ("" when none)."""
    notes = getattr(record, "oom_notes", ()) or ()
    return "\n".join(f"⚠ {n[0].upper()}{n[1:]}" for n in notes if n)


def _cannot_resume(record: Any) -> bool:
    """An unfinished job that Resume cannot continue: no complete checkpoint was saved."""
    return (record is not None and getattr(record, "state", None) in RESUMABLE
            and not getattr(record, "resumable", False))


def _resume_note(record: Any) -> str:
    if getattr(record, "resumable", False):
        return ". Resume continues from the newest checkpoint."
    if _cannot_resume(record):
        return (". It cannot be resumed: no checkpoint was saved before it ended. "
                "Re-run starts it again with the same settings.")
    return "."


def _took(record: Any) -> str:
    took = job_duration(record)
    return f"took {format_clock(took)}" if took is not None else ""
