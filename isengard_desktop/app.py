"""Composition root: builds the services and the main window and connects them.

This is the one place where widgets and services meet (ARCHITECTURE.md §2.3).
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loguru import logger
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from .core import logging as applog
from .core.hardware.monitor import ResourceSampler
from .core.models import model_search_folders
from .core.paths import AppPaths, resolve_paths
from .core.settings import Settings
from .services.background import shutdown_background_work, start_background_work
from .services.crops import CropService
from .services.captioning import CaptionService
from .services.dataset_checks import DatasetChecksService
from .services.face_analysis import FaceAnalysisService
from .services.downloads import DownloadService
from .services.gpu_probe import GpuProbe
from .services.generation import GenerationService
from .services.library import LibraryService
from .services.resource_monitor import ResourceMonitor
from .services.ops import init_main_thread_bridge
from .services.prompt_refine import PromptRefineService
from .services.generation.checkpoint_fill import CheckpointFiller
from .services.generation.comfy_install import ComfyInstallService
from .services.video import VideoService
from .services.runtime import RuntimeService
from .services.settings_service import SettingsService
from .services.thumbnails import ThumbnailService
from .services.training import TrainingService
from .ui.main_window import MainWindow
from .ui.characters import CharactersTab
from .ui.dataset import DatasetTab
from .ui.video import VideoTab
from .ui.widgets.lazy_tab import LazyTabWidget
from .ui.theme import app_icon, apply_dark_theme

if TYPE_CHECKING:
    from .core.comfy_install.layout import ComfyInstallStatus
    from .core.hardware.locks import LockChoice
    from .core.hardware.machine import MachineInfo
    from .core.downloads import HostTokens
    from .core.secrets import SecretStore
    from .ui.dialogs.downloads import DownloadsDialog
    from .ui.dialogs.saving_jobs import SavingJobsDialog
    from .ui.generate import GenerateTab
    from .ui.training import TrainingTab
    from .ui.wizard import FirstRunWizard

HEADLESS_PLATFORMS = ("offscreen", "minimal")


@dataclass
class AppContext:
    """Everything the running app is made of; ``await aclose()`` (once, on the running
    loop: ``__main__``) stops it cleanly."""

    paths: AppPaths
    settings: SettingsService
    _secrets: SecretStore | None
    library: LibraryService
    thumbnails: ThumbnailService
    training: TrainingService
    generation: GenerationService
    window: MainWindow
    checks: DatasetChecksService
    tabs: dict[str, QWidget] = field(default_factory=dict)
    gpu_probe: GpuProbe | None = None
    runtime: RuntimeService | None = None
    wizard: FirstRunWizard | None = None     # the set-up assistant while it is open
    downloads: DownloadService | None = None
    comfy_install: ComfyInstallService | None = None
    resources: ResourceMonitor | None = None   # GPU/CPU/RAM/disk at 1 Hz (Training tab, jobs)
    prompt_refine: PromptRefineService | None = None
    crops: CropService | None = None   # face-centred crops (Dataset tab, training lists)
    video: VideoService | None = None        # Video tab jobs and clips (issue 18)
    faces: FaceAnalysisService | None = None   # face checks + identity scores (analysis child)
    captioning: CaptionService | None = None   # auto-caption suggestions (Dataset tab)
    checkpoint_filler: CheckpointFiller | None = None   # comparison gaps through ComfyUI
    _closed: bool = False

    @property
    def training_tab(self) -> TrainingTab:
        """The Training tab's page (built on first use)."""
        return self.tabs["Training"].page  # type: ignore[attr-defined]

    @property
    def generate_tab(self) -> GenerateTab:
        """The Generate tab's page (built on first use)."""
        return self.tabs["Generate"].page  # type: ignore[attr-defined]

    @property
    def secrets(self) -> SecretStore:
        """The OS keyring wrapper, made on first use (finding a backend takes ~60 ms)."""
        if self._secrets is None:
            from .core.secrets import SecretStore

            self._secrets = SecretStore()
        return self._secrets

    async def aclose(self) -> None:
        """Stop the app, in order; idempotent. Await it on the running loop, after the
        window closed: the network clients close through their own ``aclose()``."""
        if self._closed:
            return
        self._closed = True
        if self.gpu_probe is not None:
            self.gpu_probe.stop()        # a probe still importing PyTorch is ended
        if self.resources is not None:
            self.resources.shutdown()    # sampling ends; NVML closes on its worker
        if self.wizard is not None:
            self.wizard.close_for_quit()     # quitting is not skipping: it opens next time
        if self.runtime is not None:
            self.runtime.shutdown()      # an install child is stopped (downloads are kept)
        if self.comfy_install is not None:
            self.comfy_install.shutdown()    # its uv child / check server stopped
        if self.captioning is not None:
            self.captioning.shutdown()   # a captioning child keeps what it finished
        self.training.shutdown()      # trainers save and exit; final states go through the DB
        if self.checkpoint_filler is not None:
            self.checkpoint_filler.shutdown()   # comparison pictures made so far are kept
        if self.video is not None:
            await self.video.aclose()    # video prompts stop before their clients close
        await self.generation.aclose()   # prompts cancelled, managed ComfyUI tree stopped,
        #                                  then every HTTP client and websocket closed
        if self.prompt_refine is not None:
            await self.prompt_refine.aclose()   # a refinement stream stops, its socket closed
        if self.downloads is not None:
            await self.downloads.aclose()   # fetches stop; their rows resume at the next start
        self.thumbnails.shutdown()
        shutdown_background_work()   # widgets' queued ops dropped; running ones end
        self.checks.shutdown()
        if self.crops is not None:
            self.crops.shutdown()        # a proposal run ends (its write is dropped)
        if self.faces is not None:
            self.faces.shutdown()        # an analysis child is stopped (its cache is kept)
        self.library.shutdown()
        self.settings.shutdown()
        logger.info("shut down")


def build_app(paths: AppPaths | None = None, *, secrets: SecretStore | None = None,
              install_excepthook: bool = True) -> AppContext:
    """Create services and the window (a QApplication must exist). Call it on the running
    asyncio loop (``lifecycle``): the generation service starts its network work at once."""
    paths = (paths or resolve_paths()).ensure()
    applog.setup_logging(paths)
    logger.info("starting; data folder {}", paths.data)
    init_main_thread_bridge()
    app = QApplication.instance()
    assert isinstance(app, QApplication), "create the QApplication first"
    apply_dark_theme(app)
    app.setWindowIcon(app_icon())

    background = start_background_work()   # the shared worker pool widgets' ops run on
    settings = SettingsService(paths)
    library = LibraryService(paths)
    thumbnails = ThumbnailService(paths.thumbnails)
    holder: list[AppContext] = []
    gpu_probe = GpuProbe(paths)          # no child until the Training tab is first shown
    # samples from the Training tab's first showing or the first running job on
    resources = ResourceMonitor(ResourceSampler(paths.data))
    # Secrets reach trainer children only through their environment (read at launch).
    training = TrainingService(paths, library, lambda: holder[0].secrets.env_for_child())
    generation = GenerationService(paths, settings, library)
    # a remote ComfyUI's LoRA upload token, read from the keyring on the generation io thread
    generation.set_upload_tokens(lambda url: holder[0].secrets.server_token(url))
    characters = CharactersTab(library, thumbnails)
    checks = DatasetChecksService()
    # face crops: proposals ask crops' face source (the face analysis connects it with
    # crops.set_face_source); each job's dataset.json gets the photos' crops
    crops = CropService(library)
    training.crop_of = crops.rect
    faces = FaceAnalysisService(paths)
    # crop proposals centre on the face the face checks found (their cache)
    crops.set_face_source(faces.face_box_source(library.image),
                          missing="no face found (or not checked yet: run the checks with "
                                  "“Check faces”)")
    captioning = CaptionService(paths, library)
    dataset = DatasetTab(library, thumbnails, checks, crops, faces=faces,
                         captioning=captioning, models_root=paths.models)

    def identity_scorer(character_id: int) -> Any:
        """Pictures scored against a character's photos (None: the character has none)."""
        photos = library.images(character_id)
        return faces.similarity_scorer(photos) if photos else None

    checkpoint_filler = CheckpointFiller(generation)

    def make_training_tab() -> QWidget:
        from .ui.training import TrainingTab   # its imports load with the page, too

        tab = TrainingTab(library, training, lambda done: settings.scan_models(None, done))
        # the checkpoint comparison scores each sample's face against the character's photos
        tab.identity_scorer = identity_scorer
        # its "fill the gaps" goes through ComfyUI when a ready server has the base model
        tab.checkpoint_filler = checkpoint_filler
        gpu_probe.found.connect(tab.set_gpu_status)
        gpu_probe.start()                    # cached: PyTorch starts at most once a day
        return tab

    training_tab = LazyTabWidget(make_training_tab)

    # local prompt refinement: no network until the Generate tab is shown
    prompt_refine = PromptRefineService(lambda: settings.settings)

    # video jobs run on the generation service's first healthy ComfyUI server; with none, the
    # tab's model check looks in the model folders the wizard searches
    def video_model_folders() -> list[Path]:
        s = settings.settings
        return [Path(f) for f in model_search_folders(paths.models, s.model_folders,
                                                       s.comfyui_models_folder)]

    video = VideoService(paths, lambda: next((s.client for s in generation.pool.healthy()
                                              if s.client is not None), None),
                         model_folders=video_model_folders)

    def make_generate_tab() -> QWidget:
        from .ui.generate import GenerateTab

        tab = GenerateTab(generation, library, thumbnails, refine=prompt_refine)
        tab.identity_scorer = identity_scorer
        return tab

    tabs: dict[str, QWidget] = {
        "Characters": characters,
        "Dataset": dataset,
        "Training": training_tab,
        "Generate": LazyTabWidget(make_generate_tab),
        "Video": LazyTabWidget(lambda: VideoTab(video, library)),
    }
    window = MainWindow(tabs)
    background.task_started.connect(window.progress.track)   # ops shown with_progress
    downloads = DownloadService(paths.db_file, lambda: download_tokens(holder[0]))
    dataset.set_downloads(downloads)       # the caption dialog downloads missing models
    ctx = AppContext(paths, settings, secrets, library, thumbnails, training, generation,
                     window, checks, tabs, gpu_probe, RuntimeService(paths),
                     downloads=downloads, comfy_install=ComfyInstallService(paths),
                     resources=resources, prompt_refine=prompt_refine, crops=crops,
                     video=video, faces=faces, captioning=captioning,
                     checkpoint_filler=checkpoint_filler)
    holder.append(ctx)
    _connect_signals(ctx)
    if install_excepthook:
        install_error_hook(window)
    library.start()
    crops.start()           # reads after the library's open, on the same writer
    training.start()
    # one managed ComfyUI per GPU on a multi-GPU machine: they start once the GPUs are known
    generation.detect_gpus(lambda: read_machine(paths)[0].gpus)
    generation.start()
    return ctx


def _connect_signals(ctx: AppContext) -> None:
    library, window = ctx.library, ctx.window
    characters: CharactersTab = ctx.tabs["Characters"]  # type: ignore[assignment]
    dataset: DatasetTab = ctx.tabs["Dataset"]  # type: ignore[assignment]
    library.data_changed.connect(characters.on_data_changed)
    library.data_changed.connect(dataset.on_data_changed)
    library.failed.connect(window.show_error)
    if ctx.crops is not None:
        ctx.crops.failed.connect(window.show_error)
    library.import_started.connect(window.progress.track)
    if ctx.captioning is not None:
        ctx.captioning.run_started.connect(window.progress.track)
        ctx.captioning.failed.connect(window.show_error)
    dataset.message_posted.connect(window.show_message)
    if ctx.faces is not None:   # the face checks' dataset scores, also on each character's page
        faces = ctx.faces
        faces.finished.connect(
            lambda outcome: characters.set_dataset_scores(outcome.report.datasets))
        faces.run_started.connect(window.progress.track)   # in the status bar, with Cancel
        # once the library is ready: drop the cached faces of photos it no longer has
        library.ready.connect(lambda: faces.prune_cache(
            lambda: {r.sha256 for r in library.images()}))
    lazy_training: LazyTabWidget = ctx.tabs["Training"]  # type: ignore[assignment]

    resources = ctx.resources
    if resources is not None:
        ctx.training.job_updated.connect(resources.on_job_updated)
        ctx.training.job_updated.connect(
            lambda record: resources.start() if record.state == "running" else None)
        # warnings raised while a job runs are kept in its record (shown in the History)
        resources.job_alerts_raised.connect(ctx.training.note_resource_alerts)

    def training_tab_built(tab: TrainingTab) -> None:
        if resources is not None:
            resources.sampled.connect(tab.panel.monitor.add_sample)
            resources.alerts_changed.connect(tab.panel.show_resource_alerts)
            resources.job_gpus_changed.connect(tab.panel.monitor.set_gpus)
            tab.panel.monitor.set_gpus(resources.job_gpus)
            if resources.latest is not None:
                tab.panel.monitor.add_sample(resources.latest)
            tab.panel.show_resource_alerts(resources.alerts)
            resources.start()
        tab.message_posted.connect(window.show_message)
        tab.notify_requested.connect(window.notify)
        tab.setup_requested.connect(lambda page: open_wizard(ctx, page))
        ctx.settings.settings_changed.connect(lambda _: tab.refresh_models())
        check_trainer_python(ctx, tab)
        if ctx.runtime is not None:         # an install or repair ended: say so again
            ctx.runtime.finished.connect(lambda _: check_trainer_python(ctx, tab))

    lazy_training.built.connect(training_tab_built)
    _connect_generate(ctx)
    _connect_video(ctx)
    ctx.settings.failed.connect(window.show_error)
    ctx.training.apply_settings(ctx.settings.settings)   # external trainers' installs
    ctx.settings.settings_changed.connect(ctx.training.apply_settings)
    window.open_data_action.triggered.connect(lambda: window.open_folder(ctx.paths.data))
    window.open_logs_action.triggered.connect(lambda: window.open_folder(ctx.paths.app_logs))

    if ctx.comfy_install is not None:
        ctx.comfy_install.finished.connect(lambda status: use_managed_comfy(ctx, status))
    window.settings_action.triggered.connect(lambda: open_settings(ctx))
    window.setup_action.triggered.connect(lambda: open_wizard(ctx))
    window.set_quit_guard(lambda: running_job_summary(ctx.training),
                          lambda: stop_and_quit(ctx))
    _connect_downloads(ctx)


def download_tokens(ctx: AppContext) -> HostTokens:
    """The Hugging Face / Civitai tokens by host (runs off the UI thread: keyring reads)."""
    from .core.downloads import HostTokens

    return HostTokens.from_secrets(ctx.secrets)


def _connect_downloads(ctx: AppContext) -> None:
    """Status-bar button -> Downloads panel <-> download service. The queue opens once the
    library has opened (and migrated) the database; unfinished items resume then."""
    downloads, window = ctx.downloads, ctx.window
    assert downloads is not None
    holder: list[DownloadsDialog] = []

    def open_panel() -> None:
        if not holder:
            from .ui.dialogs.downloads import DownloadsDialog

            dialog = DownloadsDialog(window)
            downloads.items_changed.connect(dialog.set_items)
            dialog.pause_requested.connect(downloads.pause)
            dialog.resume_requested.connect(downloads.resume)
            dialog.cancel_requested.connect(downloads.cancel)
            dialog.retry_requested.connect(downloads.retry)
            dialog.clear_requested.connect(downloads.clear_finished)
            dialog.set_items(downloads.views())
            holder.append(dialog)
        holder[0].show()
        holder[0].raise_()

    window.downloads_button.clicked.connect(open_panel)
    downloads.count_changed.connect(window.set_download_count)
    downloads.item_failed.connect(window.show_error)
    ctx.library.ready.connect(downloads.start)


def running_job_summary(training: TrainingService) -> str | None:
    """What quitting now would interrupt (for the confirm dialog), or None."""
    running = [record for record in training.jobs() if record.is_active]
    if not running:
        return None
    record = running[0]
    at = f", step {record.step} of {record.total_steps}" if record.total_steps else ""
    return f"{record.character_name} is training{at}."


def stop_and_quit(ctx: AppContext) -> SavingJobsDialog:
    """"Stop & save and quit": Stop & save every running job, show "Saving the job…" while
    the trainers save (the window stays responsive), then close. The wait is bounded: the
    stop ladder terminates a trainer ``stop_grace_for(job)`` after the request (longer for
    slow CPU steps) and kills it ``kill_grace_s`` later; after that (plus a margin for
    recording the job) the app closes whatever happened, and "Quit now" closes at once."""
    import time

    from PySide6.QtCore import QTimer

    from .ui.dialogs.saving_jobs import SavingJobsDialog

    training, window = ctx.training, ctx.window
    stopping = training.stop_for_quit()

    def text() -> str:
        parts = []
        for job_id in stopping:
            record = training.job(job_id)
            if record is not None and not record.is_final:
                parts.append(f"{record.character_name} (step {record.step} of "
                             f"{record.total_steps})")
        if not parts:
            return "Recording the stopped job and its LoRA…"
        return ("Waiting for the trainer to finish its step and save a checkpoint and LoRA: "
                + ", ".join(parts) + ". The app quits when it is saved.")

    dialog = SavingJobsDialog(text(), window)
    grace = max((training.stop_grace_for(job_id) for job_id in stopping),
                default=training.stop_grace_s)
    deadline = time.monotonic() + grace + training.kill_grace_s + 10.0
    timer = QTimer(dialog)
    timer.setInterval(100)

    def close(reason: str) -> None:
        timer.stop()
        logger.info("quitting after Stop & save: {}", reason)
        dialog.done(0)
        window.close_without_asking()

    def check() -> None:
        if training.is_settled:
            close("the jobs are saved")
        elif time.monotonic() > deadline:
            close("the trainer did not end in time")
        else:
            dialog.set_text(text())

    timer.timeout.connect(check)
    dialog.quit_now_requested.connect(lambda: close("Quit now"))
    timer.start()
    dialog.open()
    return dialog


def open_settings(ctx: AppContext, page: str = "") -> None:
    """Open the Settings dialog (on ``page``: "comfyui" for the ComfyUI page, "machine" for
    This machine: GPUs and the trainer build)."""
    from .services.selftest_runner import SelfTestService
    from .ui.settings import SettingsDialog

    dialog = SettingsDialog(ctx.paths, ctx.secrets, ctx.settings.settings, ctx.window,
                            scan_models=ctx.settings.scan_models,
                            selftest_factory=lambda: SelfTestService(ctx.paths),
                            comfy_install=ctx.comfy_install)
    dialog.settings_saved.connect(ctx.settings.update)
    dialog.wizard_requested.connect(lambda: open_wizard(ctx))
    if page == "comfyui":
        dialog.tabs.setCurrentWidget(dialog.comfyui_page)
    elif page == "machine":
        dialog.tabs.setCurrentWidget(dialog.machine_page)
    dialog.open()


def use_managed_comfy(ctx: AppContext, status: ComfyInstallStatus) -> None:
    """An install of the managed ComfyUI ended READY: it becomes the ComfyUI the app starts
    (the user asked for it with "Install ComfyUI for me" / "Update")."""
    from .core.runtime.status import RuntimeState

    if status.state != RuntimeState.READY or status.comfy is None or status.python is None:
        return
    current = ctx.settings.settings
    if (current.comfyui_folder, current.comfyui_python) != (str(status.comfy),
                                                            str(status.python)):
        ctx.settings.update(replace(current, comfyui_folder=str(status.comfy),
                                    comfyui_python=str(status.python)))


def check_trainer_python(ctx: AppContext, tab: TrainingTab) -> None:
    """Tell the Training tab, off the UI thread, whether a trainer Python is usable (its
    banner offers the set-up assistant when not)."""
    from .core.runtime.python import trainer_python
    from .services.background import BackgroundOp

    def failed(exc: BaseException) -> None:
        logger.warning("could not find out which Python trains: {!r}", exc)

    BackgroundOp(parent=tab, op=lambda: trainer_python(ctx.paths)) \
        .success(tab.set_trainer_python).failure(failed).supersede("trainer-python").run()


def read_machine(paths: AppPaths) -> tuple[MachineInfo, LockChoice]:
    """GPU detection and the lock it selects (blocks up to a few seconds: off the UI
    thread)."""
    from .core.hardware.gpu import detect_machine
    from .core.hardware.locks import choose_lock

    machine = detect_machine(paths.data)
    return machine, choose_lock(machine)


def should_show_first_run(settings: Settings, *, smoke_test: bool = False,
                          platform: str = "") -> bool:
    """Whether the set-up assistant opens by itself at start: once (until finished or
    skipped), never in the smoke test or on a headless platform (tests, CI)."""
    return not (settings.wizard_completed or smoke_test or platform in HEADLESS_PLATFORMS)


def open_wizard(ctx: AppContext, page: str = "") -> FirstRunWizard:
    """Show the set-up assistant (one at a time), at ``page`` (``ui.wizard.PAGES``: "machine",
    "runtime", "models", …; "" = where it is, or the start)."""
    from .core.discovery import discover
    from .core.runtime.python import trainer_python
    from .ui.wizard import FirstRunWizard

    wizard = ctx.wizard
    if wizard is None:
        assert ctx.runtime is not None
        paths = ctx.paths
        wizard = FirstRunWizard(
            paths, lambda: ctx.settings.settings, ctx.settings.update, ctx.runtime,
            lambda: read_machine(paths), lambda: trainer_python(paths), discover,
            parent=ctx.window, downloads=ctx.downloads, comfy_install=ctx.comfy_install)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.create_character_requested.connect(lambda: _create_first_character(ctx))
        # finished (not destroyed: deletion waits for the event loop's next turn)
        wizard.finished.connect(lambda _: setattr(ctx, "wizard", None))
        ctx.wizard = wizard
    if page:
        wizard.go_to(page)
    wizard.show()           # not modal: the app stays usable behind it
    wizard.raise_()
    wizard.activateWindow()
    return wizard


def _create_first_character(ctx: AppContext) -> None:
    characters: CharactersTab = ctx.tabs["Characters"]  # type: ignore[assignment]
    ctx.window.tabs.setCurrentWidget(characters)
    characters.open_create_dialog()


def connect_video(service: VideoService, tab: VideoTab) -> None:
    """The video service's signals -> the Video tab's slots."""
    service.job_started.connect(tab.on_job_started)
    service.job_progress.connect(tab.on_job_progress)
    service.job_finished.connect(tab.on_job_finished)
    service.job_failed.connect(tab.on_job_failed)
    service.clips_changed.connect(tab.on_clips_changed)
    service.failed.connect(tab.on_service_failed)
    service.models_checked.connect(tab.on_models_checked)


def _connect_video(ctx: AppContext) -> None:
    """The Video tab (built on first open) <-> the video service; new characters reach its list;
    it asks again what the server lacks when a server comes or goes, its model lists are
    re-read or the downloads end; its "Get …" banner opens the set-up assistant."""
    video = ctx.video
    lazy = ctx.tabs.get("Video")
    if video is None or not isinstance(lazy, LazyTabWidget):
        return

    def built(tab: QWidget) -> None:
        assert isinstance(tab, VideoTab)
        connect_video(video, tab)
        ctx.library.data_changed.connect(lambda _change: tab.refresh_characters())
        # asked again when a server comes or goes or its model lists are re-read; not on
        # every VRAM / queue change (each check fetches /object_info)
        seen: list[tuple] = [()]

        def servers_changed(servers: tuple) -> None:
            key = tuple((s.url, s.state) for s in servers)
            if key != seen[0]:
                seen[0] = key
                tab.check_models()

        ctx.generation.servers_changed.connect(servers_changed)
        ctx.generation.pool.models_changed.connect(lambda _key: tab.check_models())
        if ctx.downloads is not None:     # the last download ended: maybe a model arrived
            ctx.downloads.count_changed.connect(lambda n: tab.check_models() if n == 0 else None)
        tab.setup_requested.connect(lambda page: open_wizard(ctx, page))

    lazy.built.connect(built)


def send_to_video(ctx: AppContext, path: str, character_id: int | None = None) -> None:
    """A Generate gallery picture becomes the Video tab's next keyframe (the first one: its
    start picture); the tab opens, on the picture's character when it has one."""
    lazy = ctx.tabs.get("Video")
    if not isinstance(lazy, LazyTabWidget):
        return
    ctx.window.tabs.setCurrentWidget(lazy)
    tab = lazy.page
    assert isinstance(tab, VideoTab)
    if character_id is not None and not tab.keyframes.paths():
        tab.select_character(character_id)
    tab.keyframes.add_paths([Path(path)])
    count = len(tab.keyframes.paths())
    ctx.window.show_message("Start picture set for a clip." if count == 1 else
                            f"Keyframe {count} added: the clip passes through all {count}.")


def _connect_generate(ctx: AppContext) -> None:
    """The Generate tab (built on first open) <-> the generation service; Characters'
    "Generate for dataset" opens the tab in staging mode."""
    generation, window = ctx.generation, ctx.window
    lazy: LazyTabWidget = ctx.tabs["Generate"]  # type: ignore[assignment]
    characters: CharactersTab = ctx.tabs["Characters"]  # type: ignore[assignment]

    def built(tab: GenerateTab) -> None:
        generation.servers_changed.connect(tab.on_servers_changed)
        generation.job_started.connect(tab.on_job_started)
        generation.job_progress.connect(tab.on_job_progress)
        generation.job_finished.connect(tab.on_job_finished)
        generation.job_failed.connect(tab.on_job_failed)
        generation.gallery_changed.connect(tab.on_gallery_changed)
        generation.failed.connect(tab.on_service_failed)
        ctx.library.data_changed.connect(tab.on_data_changed)
        tab.message_posted.connect(window.show_message)
        tab.settings_requested.connect(lambda: open_settings(ctx, "comfyui"))
        tab.setup_requested.connect(lambda page: open_wizard(ctx, page))
        tab.video_requested.connect(lambda path, character_id: send_to_video(
            ctx, path, character_id))

    lazy.built.connect(built)
    generation.failed.connect(window.show_error)
    # a server skipped (which file is missing where), overflow, a picture moved to another
    # server: shown in the status bar while the job runs
    generation.job_notice.connect(lambda _job, text: window.show_message(text, 12000))

    def generate_for_dataset(character_id: int) -> None:
        window.tabs.setCurrentWidget(lazy)
        ctx.generate_tab.start_staging(character_id)

    characters.generate_for_dataset_requested.connect(generate_for_dataset)


def install_error_hook(parent: QWidget | None) -> None:
    """One excepthook: log with the correlation id, then show a calm dialog."""
    showing = [False]

    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        ref = applog.current_correlation_id() or applog.new_correlation_id()
        with applog.correlation(ref):
            logger.opt(exception=(exc_type, exc, tb)).error("unexpected error (reference {})",
                                                            ref)
        if showing[0] or QApplication.instance() is None:
            return
        showing[0] = True
        box = QMessageBox(QMessageBox.Icon.Warning, "Something went wrong",
                          "Something unexpected happened and that action did not finish.\n\n"
                          "Your photos, captions and settings are safe. The details were "
                          f"written to the log (Help → Open logs folder).\n\nReference: {ref}",
                          QMessageBox.StandardButton.Ok, parent)
        box.setDetailedText(applog.redact("".join(
            traceback.format_exception_only(exc_type, exc))))
        box.finished.connect(lambda _: showing.__setitem__(0, False))
        box.open()

    sys.excepthook = hook
