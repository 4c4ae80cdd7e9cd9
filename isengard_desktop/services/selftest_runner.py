"""The self-test: "is my setup broken?", answered by really training a tiny model.

:class:`SelfTestService` runs, without blocking the UI thread:

1. an environment probe in a child Python (``training_runtime probe``: Python, PyTorch,
   CUDA with a test multiplication on the GPU, library versions) — the app process never
   imports torch;
2. disk checks on a worker thread (free space in the data folder; write, fsync, rename and
   read back in the data folder and in the self-test's folder);
3. a tiny random SD1.5-like model and dataset built in a child (``make-selftest-model``);
4. a few training steps of that model through the real runner: a :class:`TrainingService`
   with its own :class:`LibraryService` on a sandbox :class:`AppPaths` rooted in
   ``<app tmp>/selftest-<stamp>/`` (the user's library is never touched), launching the
   built-in trainer as a QProcess child exactly like a real job;
5. a header-only check of the LoRA it wrote (kohya keys and alphas).

Afterwards the sandbox is emptied except the job folder (LoRA, events, stdout/stderr logs)
and the two helper logs, so the user can look at them; the three newest self-test folders
are kept. The result (:class:`~isengard_desktop.core.selftest_report.SelfTestResult`) is what the
CLI prints and the Settings page shows.

Signals:
    progressed(Progress): the current stage (label), ``done``/``total`` stages, and a detail
        such as the training step and loss.
    check_finished(Check): one finding, as soon as it is known.
    finished(SelfTestResult): the end (after cancel or failure too).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from collections.abc import Callable

from loguru import logger
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from .. import __version__
from ..core import logging as applog
from ..core.paths import AppPaths
from ..core.selftest_report import (Check, SelfTestResult, disk_checks, environment_checks, lora_check,
                             prune_old_runs, remove_sandbox_extras, selftest_folder_name,
                             training_device)
from ..core.training.protocol import ErrorEvent, PhaseEvent, StepEvent
from ..core.training.spec import TrainingJob, new_job_id
from ..core.types import Progress
from .library import LibraryService
from .ops import run_in_executor
from .child_process import StopIntent
from .runtime_helpers import HelperOutcome, HelperProcess
from .training.service import TrainingService

__all__ = ["SelfTestService", "sandbox_paths"]

STAGES = 5
DEFAULT_STEPS = 20
_PHASE_WORDS = {"loading_model": "loading the model", "caching": "caching latents and text",
                "training": "training", "saving": "saving the LoRA", "sampling": "sampling"}


def sandbox_paths(root: Path) -> AppPaths:
    """Folders like the app's, all under ``root`` (the self-test's own ISENGARD_HOME)."""
    root = Path(root)
    return AppPaths(data=root / "data", models=root / "models", outputs=root / "outputs",
                    logs=root / "logs", tmp=root / "scratch", cache=root / "cache",
                    config=root / "config", portable=True)


class SelfTestService(QObject):
    """Runs the self-test asynchronously; see the module docstring for stages and signals.

    One run at a time: :meth:`start` while running is ignored. :meth:`cancel` ends the
    current stage (killing its child) and finishes with ``cancelled=True``.
    """

    progressed = Signal(object)
    check_finished = Signal(object)
    finished = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths                 # the app's folders: data (disk check), tmp (sandbox)
        self.probe_timeout_s = 180.0
        self.model_timeout_s = 300.0
        self.training_timeout_s = 900.0
        self.result: SelfTestResult | None = None
        self._running = False
        self._files = ThreadPoolExecutor(1, thread_name_prefix="selftest")
        self._reset()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def _reset(self) -> None:
        self._checks: list[Check] = []
        self._probe: dict[str, Any] | None = None
        self._child: HelperProcess | None = None
        self._library: LibraryService | None = None
        self._training: TrainingService | None = None
        self._job: TrainingJob | None = None
        self._job_dir: Path | None = None
        self._character_id: int | None = None
        self._dataset: Path | None = None   # the test photos (imported into the test character)
        self._submitted = False
        self._cancelled = False
        self._losses: list[float] = []
        self._lora: str | None = None
        self._train_began = 0.0
        self._train_timer: QTimer | None = None
        self._stage = 0
        self._root: Path | None = None
        self._timed_out = False

    # -- public ----------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._running

    def start(self, steps: int = DEFAULT_STEPS, device: str = "auto") -> None:
        """Begin a run (returns at once). ``device``: ``auto``, ``cpu`` or ``cuda``."""
        if self._running:
            return
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda (got {device!r})")
        if not 1 <= steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000 (got {steps})")
        self._reset()
        self._running = True
        self._steps, self._device = steps, device
        self._began = time.monotonic()
        self._cid = applog.new_correlation_id()
        tmp = self.paths.tmp
        name = selftest_folder_name()
        root = tmp / name
        n = 2
        while root.exists():
            root, n = tmp / f"{name}-{n}", n + 1
        self._root = root
        with applog.correlation(self._cid):
            logger.info("self-test started ({} steps, device {}) in {}", steps, device, root)

        def prepare() -> None:
            root.mkdir(parents=True)
            prune_old_runs(tmp)

        run_in_executor(self._files, prepare, lambda _: self._run_probe(),
                        lambda exc: self._abort(Check(
                            "disk_write", False, f"Could not create the self-test folder {root}: "
                            f"{getattr(exc, 'strerror', None) or exc}",
                            "Check that the app's tmp folder is on a drive with free space that "
                            "you may write to (Settings → Folders).")))

    def cancel(self) -> None:
        """Stop the run; :attr:`finished` follows with ``cancelled=True``."""
        if not self._running or self._cancelled:
            return
        self._cancelled = True
        logger.info("self-test cancelled")
        if self._child is not None:
            self._child.kill(StopIntent.CANCEL, "the self-test was cancelled")
        elif self._training is not None and self._job is not None and self._submitted:
            self._training.cancel(self._job.job_id)
        elif self._training is not None or self._library is not None:
            self._finish()

    def shutdown(self) -> None:
        """App quit: end any child now (blocks briefly)."""
        if self._child is not None:
            self._child.kill(StopIntent.SHUTDOWN, "the app was closed")
            self._child.wait()
        if self._training is not None:
            self._training.shutdown()
            self._training = None
        if self._library is not None:
            self._library.shutdown()
            self._library = None
        self._files.shutdown(wait=False, cancel_futures=True)

    # -- stages ----------------------------------------------------------------------------
    def _progress(self, label: str, detail: str = "") -> None:
        self.progressed.emit(Progress(label, self._stage, STAGES, detail))

    def _add(self, check: Check) -> None:
        self._checks.append(check)
        with applog.correlation(self._cid):
            (logger.info if check.ok else logger.warning)(
                "self-test {}: {} — {}", check.name, "ok" if check.ok else "FAILED",
                check.detail)
        self.check_finished.emit(check)

    def _spawn(self, args: list[str], log_name: str, timeout_s: float,
               on_done: Callable[[dict | None, str], None]) -> None:
        assert self._root is not None
        child = HelperProcess(args, self._root / log_name, timeout_s, self, paths=self.paths)

        def done(outcome: HelperOutcome) -> None:
            self._child = None
            child.deleteLater()
            if self._cancelled:
                self._finish()
            else:
                on_done(outcome.data, outcome.why)

        child.finished.connect(done)
        self._child = child
        child.start()

    def _run_probe(self) -> None:
        if self._cancelled:
            self._finish()
            return
        self._stage = 0
        self._progress("Checking Python, PyTorch and the GPU…")
        self._spawn(["probe"], "probe.log", self.probe_timeout_s, self._on_probe)

    def _on_probe(self, data: dict | None, why: str) -> None:
        self._probe = data
        for check in environment_checks(data, self._device, why):
            self._add(check)
        self._stage = 1
        self._progress("Checking the disk…")
        assert self._root is not None
        data_dir, root = self.paths.data, self._root
        run_in_executor(self._files, lambda: disk_checks(data_dir, root), self._on_disk,
                        lambda exc: self._on_disk([Check(
                            "disk_write", False, f"The disk check failed: {exc}",
                            "Check the drive of the data folder.")]))

    def _on_disk(self, checks: list[Check]) -> None:
        for check in checks:
            self._add(check)
        if self._cancelled:
            self._finish()
            return
        blocking = [c for c in self._checks if not c.ok
                    and c.name in ("torch", "cuda", "libraries", "disk_space")]
        if blocking:
            names = ", ".join(c.title for c in blocking)
            self._add(Check("training", False,
                            f"Not run: it cannot work until the failed check"
                            f"{'s' if len(blocking) > 1 else ''} above ({names}) "
                            f"{'are' if len(blocking) > 1 else 'is'} fixed.",
                            "Fix the problems above, then run the self-test again."))
            self._finish()
            return
        self._stage = 2
        self._progress("Building a tiny random test model…",
                       "this loads diffusers and transformers in a child process")
        self._model_began = time.monotonic()
        assert self._root is not None
        self._spawn(["make-selftest-model", str(self._root / "assets")], "model.log",
                    self.model_timeout_s, self._on_model)

    def _on_model(self, data: dict | None, why: str) -> None:
        if data is None or not data.get("model") or not data.get("dataset"):
            self._add(Check("tiny_model", False,
                            f"The tiny test model could not be built: {why or 'no answer'}",
                            "The training libraries do not load. Reinstall Isengard Desktop; "
                            f"details are in {self._root / 'model.log' if self._root else ''}."))
            self._add(Check("training", False, "Not run: there is no test model.",
                            "Fix the problem above, then run the self-test again."))
            self._finish()
            return
        took = time.monotonic() - self._model_began
        self._add(Check("tiny_model", True, f"Built a tiny random SD1.5-like model and 4 "
                                            f"captioned 64 px images in {took:.1f} s "
                                            "(diffusers and transformers load)"))
        self._start_training(Path(data["model"]), Path(data["dataset"]))

    def _start_training(self, model: Path, dataset: Path) -> None:
        assert self._root is not None
        self._dataset = dataset
        self._stage = 3
        self._progress("Training the tiny model through the trainer…", "starting the trainer")
        # One watchdog for set-up and training: nothing may hang the self-test.
        self._train_began = time.monotonic()
        self._train_timer = QTimer(self)
        self._train_timer.setSingleShot(True)
        self._train_timer.timeout.connect(self._on_training_timeout)
        self._train_timer.start(int(self.training_timeout_s * 1000))
        try:
            paths = sandbox_paths(self._root).ensure()
        except OSError as exc:
            self._add(Check("training", False, f"The test job's folders could not be made in "
                                               f"{self._root}: {exc.strerror or exc}",
                            "Check that the app's tmp folder is writable."))
            self._finish()
            return
        self._library = LibraryService(paths, self)
        self._library.failed.connect(self._on_library_failed)
        self._library.start()
        self._training = TrainingService(paths, self._library, dict, parent=self)
        self._training.bundle_probe_torch = False
        self._training.jobs_changed.connect(self._maybe_submit)
        self._training.phase_changed.connect(self._on_phase)
        self._training.progressed.connect(self._on_step)
        self._training.job_finished.connect(self._on_job_finished)
        self._training.start()
        self._job = TrainingJob(
            job_id=new_job_id(), character_id=0, character_name="Self-test",
            trigger_word="sks", family="sd15", base_model=str(model),
            dataset_dir=str(dataset), output_name="selftest_lora", resolution=64, rank=4,
            alpha=4.0, learning_rate=5e-3, steps=self._steps, batch_size=2,
            caption_dropout=0.0, sample_every=0, checkpoint_every=0,
            gradient_checkpointing=False, device=self._device, preset="Self-test", seed=1234)
        problem = self._library.create_character("Self-test", "sks", "Made by the self-test.",
                                                 on_created=self._on_character)
        if problem:
            self._on_library_failed(problem)

    def _on_library_failed(self, message: str) -> None:
        if self._submitted or self._job is None:
            return
        self._add(Check("training", False, f"The test job could not be set up: {message}",
                        "Check that the app's tmp folder is writable."))
        self._finish()

    def _on_character(self, character: Any) -> None:
        """The test character exists: import the test photos into it (a job trains on its
        character's photos in the database, never on a folder), then submit."""
        if self._library is None or self._job is None or self._dataset is None:
            return
        self._job.dataset_dir = str(self._library.character_folder(character))

        def imported(outcome: Any) -> None:
            if not outcome.added:
                self._on_library_failed("none of the test photos could be imported")
                return
            self._character_id = character.id
            self._maybe_submit()

        self._library.import_photos(
            character.id, [self._dataset], announce=False, on_done=imported,
            on_failure=lambda exc: self._on_library_failed(
                f"the test photos could not be imported: {exc}"))

    def _maybe_submit(self) -> None:
        if (self._submitted or self._job is None or self._character_id is None
                or self._training is None or not self._training.is_ready):
            return
        if self._cancelled:
            self._finish()
            return
        self._submitted = True
        self._job.character_id = self._character_id
        try:
            record = self._training.submit(self._job)
        except ValueError as exc:
            self._add(Check("training", False, f"The test job was refused: {exc}",
                            "This is a bug; send the report to support."))
            self._finish()
            return
        self._job_dir = record.job_dir

    def _on_training_timeout(self) -> None:
        if not self._running:
            return
        self._timed_out = True
        if self._training is not None and self._job is not None and self._submitted:
            self._training.cancel(self._job.job_id)
            return
        self._add(Check("training", False, f"The test job could not be set up within "
                                           f"{self.training_timeout_s:.0f} s",
                        "Look at the app log (Help → Open logs folder) and send it to "
                        "support."))
        self._finish()

    def _on_phase(self, job_id: str, event: PhaseEvent) -> None:
        if self._job is None or job_id != self._job.job_id:
            return
        words = _PHASE_WORDS.get(event.phase, event.phase)
        detail = f"{words}: {event.detail}" if event.detail else words
        self._progress("Training the tiny model through the trainer…", detail)

    def _on_step(self, job_id: str, event: StepEvent) -> None:
        if self._job is None or job_id != self._job.job_id:
            return
        self._progress("Training the tiny model through the trainer…",
                       f"step {event.step} of {event.total}, loss {event.loss:.4f}")

    def _on_job_finished(self, record: Any) -> None:
        if self._job is None or record.job_id != self._job.job_id:
            return
        if self._train_timer is not None:
            self._train_timer.stop()
        took = time.monotonic() - self._train_began
        if self._cancelled and record.state != "completed":
            self._finish()
            return
        if record.state != "completed":
            if self._timed_out:
                detail = (f"The trainer did not finish {self._steps} steps within "
                          f"{self.training_timeout_s:.0f} s and was stopped")
                fix = "The computer may be overloaded; close other programs and try again."
            else:
                kind = record.error_kind or "crash"
                detail = f"The trainer failed ({kind}): {record.error_message or 'no message'}"
                fix = {"oom": "Close other programs that use the GPU or memory, then retry.",
                       "disk_full": "Free space on the drive of the app's tmp folder.",
                       "config": "Check the device choice; the message above says what is wrong.",
                       }.get(kind, f"Look at {record.paths.stderr} for details and send the "
                                   "report to support.")
            self._add(Check("training", False, detail, fix))
            self._finish()
            return
        self._lora = record.lora_path
        sec = record.sec_per_step
        device = training_device(self._probe, self._device)

        def loaded(events: list) -> None:
            self._losses = [e.loss for e in events if isinstance(e, StepEvent)]
            errors = [e for e in events if isinstance(e, ErrorEvent)]
            finite = [x for x in self._losses if math.isfinite(x)]
            if not self._losses or len(finite) != len(self._losses) or errors:
                self._add(Check("training", False,
                                f"The trainer finished but its losses are not usable "
                                f"({len(finite)} finite of {len(self._losses)})",
                                f"Look at {record.paths.stderr} and send the report to "
                                "support."))
            else:
                speed = f", {sec * 1000:.0f} ms a step" if sec else ""
                self._add(Check("training", True,
                                f"Trained {len(self._losses)} steps on {device.upper()} through "
                                f"the app's trainer in {took:.1f} s with start-up{speed}; loss "
                                f"{self._losses[0]:.4f} → {self._losses[-1]:.4f}"))
            self._stage = 4
            self._progress("Checking the LoRA file…")
            lora = self._lora
            run_in_executor(self._files, lambda: lora_check(lora), self._on_lora,
                            lambda exc: self._on_lora(Check("lora", False, str(exc))))

        if self._training is not None:
            self._training.events(record.job_id, loaded)

    def _on_lora(self, check: Check) -> None:
        self._add(check)
        self._finish()

    def _abort(self, check: Check) -> None:
        self._add(check)
        self._finish()

    # -- the end ---------------------------------------------------------------------------
    def _finish(self) -> None:
        if not self._running:
            return
        if self._train_timer is not None:
            self._train_timer.stop()
        training, library = self._training, self._library
        self._training = self._library = None
        if training is not None:
            training.shutdown()
            training.deleteLater()
        if library is not None:
            library.shutdown()
            library.deleteLater()
        root = self._root
        keep = [p for p in (self._job_dir, root / "probe.log" if root else None,
                            root / "model.log" if root else None) if p is not None]
        self._stage = STAGES
        self._progress("Tidying up…")

        def tidy() -> None:
            if root is not None:
                remove_sandbox_extras(root, keep)

        def tidy_failed(exc: BaseException) -> None:
            logger.warning("self-test: could not tidy {}: {}", root, exc)
            self._emit_result()

        run_in_executor(self._files, tidy, lambda _: self._emit_result(), tidy_failed)

    def _emit_result(self) -> None:
        probe = self._probe or {}
        cuda = probe.get("cuda") or {}
        losses = self._losses
        lora = self._lora if self._lora and Path(self._lora).is_file() else None
        ok = bool(self._checks) and all(c.ok for c in self._checks) and not self._cancelled \
            and any(c.name == "training" for c in self._checks)
        result = SelfTestResult(
            ok=ok, checks=tuple(self._checks), torch=probe.get("torch"),
            cuda=bool(cuda.get("available")), gpu=cuda.get("device_name"),
            device=training_device(self._probe, self._device) if self._probe else None,
            first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
            steps=len(losses), lora=lora,
            folder=str(self._root) if self._root and self._root.exists() else None,
            seconds=time.monotonic() - self._began, cancelled=self._cancelled,
            app_version=__version__, probe=probe)
        self.result = result
        self._running = False
        with applog.correlation(self._cid):
            logger.info("self-test finished: ok={} in {:.1f} s", result.ok, result.seconds)
        self.finished.emit(result)
