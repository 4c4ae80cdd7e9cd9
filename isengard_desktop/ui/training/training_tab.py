"""The Training tab: set up a job on the left, watch the selected job on the right, and every
job in the history below it.

The tab owns its parts (setup form with the trainer picker and the profile picker, job panel,
history, the profile manager dialog) and turns their requests into calls on the training
service; it listens to the service's signals and to the library's ``data_changed``. It never
touches the disk on the UI thread: base models come through the injected ``list_models``
callable (which scans on an executor and calls back on the main thread), job logs and
profiles are read on small executors.

Signals:
    message_posted(str): a short result for the status bar.
    notify_requested(str title, str text): a desktop notification (a job finished or failed).
    setup_requested(str page): a banner's button: open the set-up assistant at ``page``
        ("runtime", "models", "machine").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

from loguru import logger
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QFileDialog, QScrollArea, QSplitter, QVBoxLayout,
                               QWidget)

from ...core.model_sets import offer_for, suggested_family
from ...core.models import FAMILY_LABELS, ModelInfo
from ...core.naming import folder_slug
from ...core.runtime.python import PythonSource, TrainerPython
from ...core.selftest_report import GpuStatus
from ...core.training.fill_cells import COMFY, FillRoute, fill_route, trainer_sampling
from ...core.training.presets import CPU_HINT, format_clock
from ...core.training.profile_store import ProfileScan, ProfileStore
from ...core.training.profiles import KNOWN_BACKENDS, Profile
from ...core.training.protocol import LogEvent, is_hidden_line, parse_event
from ...core.training.spec import SpecError, TrainingJob, new_job_id
from ...core.types import Progress
from ...services.background import BackgroundOp, alive, guarded
from ...services.database import ChangeSet
from ...services.library import LibraryService
from ..dialogs.confirm import confirm
from ..widgets.notice_banner import NoticeBannerWidget
from .checkpoint_compare import CheckpointCompareDialog, Scorer
from .history import HistoryWidget
from .backend_fields import BackendChoice, choice_for
from .job_panel import ACTIVE, JobPanelWidget, describe_error, family_label, job_duration
from .profile_manager import ProfileManagerDialog
from .setup_form import SetupFormWidget

if TYPE_CHECKING:
    from ...plugins.registry import TrainerRegistry

ListModels = Callable[[Callable[[list[ModelInfo]], None]], None]
LOG_TAIL_LINES = 2000


def backend_choices(registry: TrainerRegistry | None) -> list[BackendChoice]:
    """Every registered trainer backend for the picker, with ``available()`` and what its
    ``capabilities()`` declare (fields, model types, families); "Built-in" when there is no
    registry."""
    if registry is None:
        try:
            from ...plugins.registry import default_registry
        except ImportError:
            return [BackendChoice("builtin", "Built-in")]
        registry = default_registry()
    choices = []
    for entry in registry.entries():
        try:
            backend = registry.get(entry.key)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tab
            choices.append(BackendChoice(entry.key, entry.label, False,
                                         f"{entry.label} could not be loaded: {exc}"))
            continue
        choices.append(choice_for(entry.key, entry.label, backend))
    return choices or [BackendChoice("builtin", "Built-in")]


OUTPUT_SLUG_CHARS = 24   # keeps the trainers' deepest job paths well under Windows' 260


def output_name(character_name: str, family: str, job_id: str) -> str:
    """``<character-slug>-<family>-<short id>``, a plain file stem. The slug is cut to
    :data:`OUTPUT_SLUG_CHARS`: ai-toolkit puts the name in a path twice
    (``output/<name>/<name>_<step>.safetensors``)."""
    slug = folder_slug(character_name)[:OUTPUT_SLUG_CHARS].rstrip("-") or "character"
    return f"{slug}-{family}-{job_id[:6]}"


def read_log_tail(job_dir: Path, lines: int = LOG_TAIL_LINES) -> list[tuple[str, list[str]]]:
    """The last ``lines`` lines of a job's stdout and stderr logs (any thread)."""
    out = []
    for stream in ("stdout", "stderr"):
        path = job_dir / f"{stream}.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - 400_000))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        tail = []
        for raw in text.split("\n"):
            line = next((part for part in reversed(raw.split("\r")) if part.strip()), "")
            if stream == "stdout" and line.lstrip().startswith("{"):
                event = parse_event(line)   # the trainer's notes read as the live view shows them
                line = f"{event.level.upper()}: {event.message}" \
                    if isinstance(event, LogEvent) else ""
            elif is_hidden_line(stream, line):
                line = ""   # the launcher's context line, as the live view hides it
            if line.strip():
                tail.append(line)
        tail = tail[-lines:]
        if tail:
            out.append((stream, tail))
    return out


class TrainingTab(QWidget):
    message_posted = Signal(str)
    notify_requested = Signal(str, str)
    setup_requested = Signal(str)

    def __init__(self, library: LibraryService, training: Any, list_models: ListModels,
                 parent: QWidget | None = None, *, registry: TrainerRegistry | None = None,
                 backends: Sequence[BackendChoice] | None = None, gpu_hint: str | None = None,
                 vram_gb: float | None = None, profiles: ProfileStore | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._training = training
        self._list_models = list_models
        self._vram_gb = vram_gb
        self.selected_job_id: str | None = None
        # character id → the identity scorer of the checkpoint comparison (the app sets it
        # when the face analysis is available); None: pictures without scores
        self.identity_scorer: Callable[[int], Scorer | None] | None = None
        self.compare_dialog: CheckpointCompareDialog | None = None
        # "fill the gaps" through ComfyUI (services/generation/checkpoint_fill.py
        # CheckpointFiller; the app sets it): server_for(spec) and fill(job_dir, spec, grid)
        self.checkpoint_filler: Any = None
        self._models_asked = False

        self._registry = registry
        self._fixed_backends = backends is not None
        if backends is None:
            backends = backend_choices(registry if registry is not None
                                       else getattr(training, "registry", None))
        self.backend_labels = {c.key: c.label for c in backends}
        # profiles for trainers that are not set up yet still load (their entry is disabled)
        self.known_backends = list(dict.fromkeys([*self.backend_labels, *KNOWN_BACKENDS]))
        self._own_store = profiles is None
        self.profiles = profiles if profiles is not None else ProfileStore(
            library.paths.data / "profiles", backends=self.known_backends)
        self.profile_dialog: ProfileManagerDialog | None = None
        self.form = SetupFormWidget(library, training.measured_sec_per_step, list(backends),
                                    gpu_hint=gpu_hint, vram_gb=vram_gb)
        scroll = QScrollArea()
        scroll.setObjectName("SetupScroll")
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(360)

        self.panel = JobPanelWidget()
        self.panel.backend_labels = dict(self.backend_labels)
        self.history = HistoryWidget()
        self.history.set_backend_labels(self.backend_labels)
        # the job panel scrolls (vertically) when the window is too short for its chart,
        # samples and log, instead of being cut off behind the history (900×600)
        panel_scroll = QScrollArea()
        panel_scroll.setObjectName("JobPanelScroll")
        panel_scroll.setWidget(self.panel)
        panel_scroll.setWidgetResizable(True)
        panel_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        panel_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(panel_scroll)
        right.addWidget(self.history)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        right.setChildrenCollapsible(False)
        right.setSizes([560, 200])
        split = QSplitter()
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 880])
        # what is missing, each with a button to the set-up assistant's page that fixes it
        self.runtime_banner = NoticeBannerWidget("missing")
        self.models_banner = NoticeBannerWidget("missing")
        self.no_gpu_banner = NoticeBannerWidget("warning")
        layout = QVBoxLayout(self)
        for banner in (self.runtime_banner, self.models_banner, self.no_gpu_banner):
            banner.action_requested.connect(self.setup_requested)
            layout.addWidget(banner)
        layout.addWidget(split)

        self.form.start_requested.connect(self._start)
        self.form.models_refresh_requested.connect(self.refresh_models)
        self.form.manage_profiles_requested.connect(self.open_profiles)
        self.panel.stop_requested.connect(self._stop)
        self.panel.cancel_requested.connect(self._cancel)
        self.panel.resume_requested.connect(self._resume)
        self.panel.rerun_requested.connect(self._rerun)
        self.history.job_selected.connect(self.select_job)
        self.history.open_folder_requested.connect(self._open_folder)
        self.history.rerun_requested.connect(self._rerun)
        self.history.resume_requested.connect(self._resume)
        self.history.export_requested.connect(self._export)
        self.history.compare_requested.connect(self.compare_checkpoints)

        library.data_changed.connect(self.on_data_changed)
        training.jobs_changed.connect(self.on_jobs_changed)
        training.job_updated.connect(self.on_job_updated)
        training.job_progress.connect(self.on_job_progress)
        training.phase_changed.connect(self.on_phase_changed)
        training.progressed.connect(self.on_progressed)
        training.sample_added.connect(self.on_sample_added)
        training.checkpoint_saved.connect(self.on_checkpoint_saved)
        training.log_appended.connect(self.on_log_appended)
        training.job_finished.connect(self.on_job_finished)
        training.error_reported.connect(self.on_error_reported)

        self.refresh_models()
        self.refresh_profiles()
        self.on_jobs_changed()

    # -- inputs from outside ---------------------------------------------------------------------
    def set_gpu_status(self, status: GpuStatus) -> None:
        """What the GPU probe found: a banner when no GPU can be used, and the estimate for
        the device that will actually train."""
        if status.usable:
            self.no_gpu_banner.hide()
            self.form.set_gpu_hint(status.hint)
            self.form.set_gpu_count(status.gpu_count)
            return
        self.no_gpu_banner.show_notice(
            f"No usable GPU: {status.why}. Training runs on the CPU, which takes hours for a "
            "real LoRA (Settings → Self-test says more and what to do).",
            "This computer…", "machine",
            "Open the set-up assistant's page about this computer: the GPU, its driver and "
            "the trainer build chosen for it.")
        self.form.set_gpu_hint(CPU_HINT)
        self.form.set_gpu_count(1)

    def set_trainer_python(self, python: TrainerPython) -> None:
        """Which Python trainers run with (``core.runtime.trainer_python``): a banner with an
        Install button when there is none."""
        if python.source != PythonSource.NONE:
            self.runtime_banner.clear()
            return
        self.runtime_banner.show_notice(
            "The trainer runtime is not installed: training needs PyTorch and the training "
            "libraries, installed once (download, or from a folder).", "Install…", "runtime",
            "Open the set-up assistant at the trainer runtime: download it or install it from "
            "an offline folder.")
        self.runtime_banner.label.setToolTip(python.problem)

    def refresh_backends(self) -> None:
        """Check the trainer backends again (their installs may have changed in Settings):
        availability, fields and model types."""
        if self._fixed_backends:
            return
        choices = backend_choices(self._registry if self._registry is not None
                                  else getattr(self._training, "registry", None))
        self.backend_labels = {c.key: c.label for c in choices}
        self.known_backends = list(dict.fromkeys([*self.backend_labels, *KNOWN_BACKENDS]))
        if self._own_store:
            self.profiles.backends = tuple(self.known_backends)
        self.history.set_backend_labels(self.backend_labels)
        self.panel.backend_labels = dict(self.backend_labels)
        self.form.backend_picker.set_backends(choices)
        if self.profile_dialog is not None:
            self.profile_dialog.set_known_backends(self.known_backends)
        self.refresh_profiles()

    def refresh_models(self) -> None:
        """Ask for the base models again and check the trainers again (connect this to
        settings changes)."""
        if self._models_asked:
            self.refresh_backends()
        self._models_asked = True
        self.form.set_models_loading()
        self._list_models(guarded(self, self._on_models, supersede="models"))

    def _on_models(self, models: list[ModelInfo]) -> None:
        self.form.set_models(models)
        if any(m.family for m in models):
            self.models_banner.clear()
            return
        family = suggested_family(self._vram_gb)
        offer = offer_for(family, "train", self._vram_gb)
        if offer:
            label = FAMILY_LABELS.get(family, family)
            self.models_banner.show_notice(
                f"No base model found. {offer}, or link the models you already have "
                "(ComfyUI, A1111/Forge, Stability Matrix) or add a folder in Settings → "
                "Folders.", f"Get {label}…", f"base_models:{family}",
                "Open the set-up assistant's Base models page: pick the families to download "
                "(size, VRAM and licence shown); files you already have are not fetched again. "
                "Its previous page links the models you already have.")
            return
        self.models_banner.show_notice(
            "No base model found. Link the models you already have (ComfyUI, A1111/Forge, "
            "Stability Matrix), or add a folder in Settings → Folders.", "Find models…",
            "models",
            "Open the set-up assistant's page that finds ComfyUI and model folders on this "
            "computer and links them.")

    def refresh_profiles(self) -> None:
        """Read the profiles again (off the UI thread) for the form's profile picker."""
        def got(scan: ProfileScan) -> None:
            self.form.set_profiles(scan.profiles, list(self.backend_labels))

        def failed(exc: BaseException) -> None:
            self.message_posted.emit(f"Could not read the training profiles: {exc}")

        BackgroundOp(parent=self, op=self.profiles.scan).success(got).failure(failed) \
            .supersede("profiles").run()

    def open_profiles(self) -> ProfileManagerDialog:
        """Show the profile manager (one per tab)."""
        if self.profile_dialog is None:
            dialog = ProfileManagerDialog(self.profiles, self.form.profile_from_form,
                                          self.known_backends, self.form.tooltips, self)
            dialog.apply_requested.connect(self._apply_profile)
            dialog.profiles_changed.connect(
                lambda profiles: self.form.set_profiles(profiles, list(self.backend_labels)))
            dialog.message_posted.connect(self.message_posted)
            self.profile_dialog = dialog
        self.profile_dialog.show()
        self.profile_dialog.raise_()
        self.profile_dialog.activateWindow()
        self.profile_dialog.refresh()
        return self.profile_dialog

    def _apply_profile(self, profile: Profile) -> None:
        self.form.apply_profile(profile)
        self.message_posted.emit(f"Profile applied: {profile.name}")

    def on_data_changed(self, change: ChangeSet) -> None:
        if change.everything or change.characters or change.images:
            self.form.refresh_characters()

    # -- start -------------------------------------------------------------------------------
    def build_job(self) -> TrainingJob:
        """The TrainingJob the form describes (not yet submitted)."""
        character = self.form.selected_character()
        if character is None:
            raise SpecError("character_id: pick a character first")
        fields = self.form.job_fields()
        job_id = new_job_id()
        return TrainingJob(
            job_id=job_id, character_id=character.id, character_name=character.name,
            trigger_word=character.trigger_word,
            dataset_dir=str(self._library.character_folder(character)),
            output_name=output_name(character.name, fields["family"] or "model", job_id),
            **fields)

    def _start(self) -> None:
        try:
            job = self.build_job()
            job.validate()
            record = self._training.submit(job)
        except (SpecError, ValueError) as exc:
            self.form.show_error(f"Could not start: {exc}")
            return
        self.form.show_error("")
        self.message_posted.emit(f"Training queued: {job.character_name}, "
                                 f"{family_label(job.family)}, {job.preset}")
        self.on_jobs_changed()
        self.select_job(record.job_id)

    # -- job actions ---------------------------------------------------------------------------
    def _stop(self, job_id: str) -> None:
        self._training.stop(job_id)
        self.message_posted.emit("Stopping: saving a checkpoint first…")

    def _cancel(self, job_id: str) -> None:
        if not confirm(self, "Cancel training",
                       "Stop this job now without saving?\n\nCheckpoints already saved are "
                       "kept; use Stop & save to keep the latest progress."):
            return
        self._training.cancel(job_id)

    def _resume(self, job_id: str) -> None:
        self._act(lambda: self._training.resume(job_id), "Resuming")

    def _rerun(self, job_id: str) -> None:
        self._act(lambda: self._training.rerun(job_id), "Re-running with the same settings")

    def _act(self, call: Callable[[], Any], words: str) -> None:
        try:
            record = call()
        except (SpecError, ValueError, KeyError, OSError) as exc:
            self.message_posted.emit(f"{words} failed: {exc}")
            return
        self.message_posted.emit(f"{words}: {record.character_name}")
        self.on_jobs_changed()
        self.select_job(record.job_id)

    def _open_folder(self, job_id: str) -> None:
        record = self._training.job(job_id)
        if record is None:
            return
        folder = Path(record.job_dir)
        if not folder.is_dir():
            self.message_posted.emit(f"The job folder is gone: {folder}")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def compare_checkpoints(self, job_id: str) -> CheckpointCompareDialog | None:
        """Open the checkpoint comparison of a job."""
        record = self._training.job(job_id)
        if record is None:
            return None
        scorer = None
        if self.identity_scorer is not None and record.character_id is not None:
            scorer = self.identity_scorer(record.character_id)
        # ComfyUI when a ready server has the base model, else the built-in trainer's sampler;
        # chosen again when the servers change while no run is going
        filler = self.checkpoint_filler

        def choose() -> FillRoute:
            server = filler.server_for(record.spec) if filler is not None else None
            return fill_route(server, record.spec.base_model, record.backend == "builtin")

        def texts(route: FillRoute) -> tuple[str, str]:
            """(can_fill, fill_route) of the dialog for ``route``."""
            if not route.can_fill:
                return route.text, ""
            if route.kind == COMFY:
                return "", f"{route.text} {trainer_sampling(record.spec).describe()}"
            return "", route.text

        state: dict[str, Any] = {"route": choose(), "run": None}
        dialog = CheckpointCompareDialog(record.character_name, record.total_steps,
                                         scorer=scorer, parent=self)
        dialog.set_route(*texts(state["route"]))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.compare_dialog = dialog

        def reroute(*_args: Any) -> None:
            if not alive(dialog) or state["run"] is not None:
                return
            route = choose()
            if route != state["route"]:
                state["route"] = route
                dialog.set_route(*texts(route))

        if filler is not None:
            filler.servers_changed.connect(reroute)

            def unwatch(*_args: Any) -> None:
                try:
                    filler.servers_changed.disconnect(reroute)
                except (RuntimeError, TypeError):   # already gone (app quitting)
                    pass

            dialog.finished.connect(unwatch)

        def use(step: int) -> None:
            row = dialog.grid.row(step)
            if row is None or row.lora is None:
                return

            def done(path: Path) -> None:
                self.message_posted.emit(f"Step {step} is now {record.character_name}'s LoRA "
                                         f"({path.name}).")

            def failed(exc: BaseException) -> None:
                self.message_posted.emit(f"Could not use the LoRA of step {step}: {exc}")

            self._training.use_checkpoint(job_id, step, row.lora, done, failed)

        def failed_to_read(exc: BaseException) -> None:
            self.message_posted.emit(f"Could not read the job's events: {exc}")

        def show_grid(grid: Any) -> None:
            if alive(dialog):        # (read off the UI thread: the dialog may be closed by now)
                dialog.set_grid(grid)

        def fill(steps: list[int]) -> None:
            run: Any
            if state["route"].kind == COMFY and filler is not None:
                run = filler.fill(Path(record.job_dir), record.spec, dialog.grid)
            else:
                run = self._training.render_samples(job_id, steps)
            if run is None:
                return
            state["run"] = run
            dialog.set_filling(0, run.total)
            run.progressed.connect(lambda done, total: dialog.set_filling(done, total)
                                   if alive(dialog) else None)
            cancel = dialog.fill_cancel_requested.connect(run.cancel)

            def ended(ok: bool, message: str) -> None:
                state["run"] = None
                if not ok:
                    self.message_posted.emit(message)
                if alive(dialog):
                    dialog.fill_cancel_requested.disconnect(cancel)
                    dialog.set_fill_ended("" if ok else message)
                    self._training.checkpoint_grid(job_id, show_grid, failed_to_read)
                    reroute()          # the servers may have changed during the run

            run.finished.connect(ended)
            run.start()

        def closed(*_args: Any) -> None:
            """Closing the dialog stops a fill run (the pictures made so far are kept): its
            progress and Stop live only in the dialog."""
            if state["run"] is not None:
                state["run"].cancel()

        dialog.finished.connect(closed)
        dialog.use_requested.connect(use)
        dialog.fill_requested.connect(fill)
        self._training.checkpoint_grid(job_id, show_grid, failed_to_read)
        dialog.show()
        return dialog

    def _export(self, job_id: str) -> None:
        record = self._training.job(job_id)
        if record is None:
            return
        suggested = Path.home() / f"isengard-debug-{folder_slug(record.character_name)}-" \
                                  f"{job_id[:6]}.zip"
        path, _ = QFileDialog.getSaveFileName(self, "Export debug bundle", str(suggested),
                                              "Zip archive (*.zip)")
        if not path:
            return
        dest = Path(path)
        if dest.suffix.lower() != ".zip":
            dest = dest.with_name(dest.name + ".zip")
        self.message_posted.emit("Exporting the debug bundle…")

        def done(saved: Path) -> None:
            self.message_posted.emit(f"Debug bundle saved: {saved}")

        def failed(exc: BaseException) -> None:
            self.message_posted.emit(f"Could not export the debug bundle to {dest}: {exc}")

        self._training.export_debug_bundle(job_id, dest, done, failed)

    # -- selection ---------------------------------------------------------------------------
    def _select_initial_job(self) -> None:
        jobs = self._training.jobs()
        active = [j for j in jobs if j.state in ACTIVE]
        if active or jobs:
            self.select_job((active or jobs)[0].job_id)

    def select_job(self, job_id: str) -> None:
        """Show ``job_id`` in the job panel, rebuilt from its recorded events."""
        record = self._training.job(job_id)
        if record is None:
            return
        changed = job_id != self.selected_job_id
        self.selected_job_id = job_id
        self.panel.show_job(record)
        self.history.select_job(job_id, emit=False)
        if changed:
            self._load_past(record)

    def _load_past(self, record: Any) -> None:
        job_id = record.job_id

        def events_loaded(events: list[Any]) -> None:
            if self.selected_job_id == job_id:
                self.panel.load_events(events)

        self._training.events(job_id, guarded(self, events_loaded))
        if record.state == "queued":
            return   # nothing written yet; the log arrives live
        job_dir = Path(record.job_dir)

        def tail_loaded(streams: list[tuple[str, list[str]]]) -> None:
            if self.selected_job_id == job_id:
                self.panel.log.clear()   # the files hold every line shown live so far
                for stream, lines in streams:
                    self.panel.log.append_lines(stream, lines)

        BackgroundOp(parent=self, op=lambda: read_log_tail(job_dir)).success(tail_loaded) \
            .failure(lambda exc: logger.debug("no log tail for job {}: {}", job_id, exc)) \
            .supersede("log-tail").run()

    # -- service signals -------------------------------------------------------------------------
    def on_jobs_changed(self) -> None:
        jobs = self._training.jobs()
        self.history.set_jobs(jobs)
        if self.selected_job_id and not any(j.job_id == self.selected_job_id for j in jobs):
            self.selected_job_id = None
            self.panel.show_job(None)
        if self.selected_job_id is None and jobs:
            self._select_initial_job()   # the service has loaded its history

    def on_job_updated(self, record: Any) -> None:
        self.history.update_job(record)
        if record.job_id == self.selected_job_id:
            self.panel.update_record(record)

    def on_job_progress(self, job_id: str, progress: Progress) -> None:
        if job_id == self.selected_job_id:
            self.panel.show_progress(progress)

    def on_phase_changed(self, job_id: str, event: Any) -> None:
        if job_id == self.selected_job_id:
            self.panel.on_phase(event)

    def on_progressed(self, job_id: str, event: Any) -> None:
        if job_id == self.selected_job_id:
            self.panel.on_step(event)

    def on_sample_added(self, job_id: str, event: Any) -> None:
        if job_id == self.selected_job_id:
            self.panel.on_sample(event)

    def on_checkpoint_saved(self, job_id: str, event: Any) -> None:
        if job_id == self.selected_job_id:
            self.panel.on_checkpoint(event)

    def on_log_appended(self, job_id: str, stream: str, lines: list[str]) -> None:
        if job_id == self.selected_job_id:
            self.panel.log.append_lines(stream, lines)

    def on_error_reported(self, job_id: str, event: Any) -> None:
        if job_id == self.selected_job_id:
            self.panel.show_error(event.kind, event.message)

    def on_job_finished(self, record: Any) -> None:
        self.history.update_job(record)
        self.form.update_estimate()   # a finished job may have measured this machine's speed
        if record.job_id == self.selected_job_id:
            self.panel.update_record(record)
            job_id = record.job_id

            def events_loaded(events: list[Any]) -> None:   # the full curve, not the 10 Hz one
                if self.selected_job_id == job_id:
                    self.panel.load_events(events)

            self._training.events(job_id, guarded(self, events_loaded))
        what = f"{record.character_name} · {family_label(record.family)}"
        took = job_duration(record)
        took_words = f" in {format_clock(took)}" if took is not None else ""
        if record.state == "completed":
            lora = Path(record.lora_path).name if record.lora_path else "the LoRA"
            self.message_posted.emit(f"Training finished: {what} → {lora}")
            self.notify_requested.emit("LoRA ready",
                                       f"{what} finished{took_words}. {lora} is ready to use "
                                       "in Generate.")
        elif record.state == "failed":
            headline, _ = describe_error(record.error_kind, record.error_message)
            headline = headline.splitlines()[0]   # a long message stays in the job panel
            self.message_posted.emit(f"Training failed: {what}. {headline}")
            self.notify_requested.emit("Training failed", f"{what}: {headline}")
        elif record.state == "stopped":
            self.message_posted.emit(f"Training stopped and saved: {what}. Resume continues "
                                     "from the checkpoint.")
        elif record.state == "cancelled":
            self.message_posted.emit(f"Training cancelled: {what}")
