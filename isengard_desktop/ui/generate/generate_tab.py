"""The Generate tab: make pictures through ComfyUI with a character's LoRA, watch them being
made, keep them in a gallery, and (staging mode) grow a character's dataset with the best.

Parts: the backend bar (servers), the form (left), the live view (top right) and the gallery
or, in staging mode, the staging strip (bottom right). The tab turns the parts' requests into
calls on the generation service and is fed the service's signals by ``app.py``
(``on_servers_changed`` — also when a server's model lists change —, ``on_job_started``,
``on_job_progress``, ``on_job_finished``, ``on_job_failed``, ``on_gallery_changed``,
``on_service_failed``) and the library's ``on_data_changed``.

Gallery actions: reuse parameters; More like this (image to image from the picture at a low
denoise with nearby seeds; it replaced "Vary"); Delete (to the OS trash, through the service).
The details show the picture's lineage as a small tree (read from the database).

Explore (the form's button, :mod:`.funnel_view`): a draft funnel — N drafts, keep some, "Next
stage" makes them again at standard then final quality with the same seeds; any stage and any
earlier exploration can be re-opened (the rules are in ``core/comfy/funnel.py``).

The UI thread never waits: finished pictures are decoded on a small executor, thumbnails come
from the ThumbnailService.

Signals:
    message_posted(str): a short result for the status bar.
    settings_requested(): the user wants Settings (ComfyUI page).
    setup_requested(str page): the banner's button: open the set-up assistant at ``page``.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any

from loguru import logger
from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter,
                               QStackedWidget, QVBoxLayout, QWidget)

from ...core.comfy.jobs import GalleryItem, GenerationRequest, ServerStatus
from ...core.model_sets import offer_for
from ...core.types import Progress
from ...services.background import BackgroundOp
from ...services.database import ChangeSet
from ...services.library import LibraryService
from ...services.prompt_refine import PromptRefineService
from ...services.thumbnails import ThumbnailService
from ..dialogs.confirm import confirm
from ..widgets.gallery import GalleryWidget, thumb_key
from ..widgets.notice_banner import NoticeBannerWidget
from ..widgets.samples_strip import load_scaled
from ..widgets.run_shortcut import add_run_shortcut
from ..widgets.staging import StagingStripWidget
from ...core.comfy.funnel import STAGE_TITLES, STAGES, next_stage
from .backend_bar import BackendBarWidget
from .funnel_view import FunnelViewWidget
from .form import GenerateFormWidget
from .options import LoraOption
from .concept_dialog import ConceptDialog
from .lora_explorer import LoraExplorerDialog
from .presets import FEATURES, family_label
from .progress import GenerationProgressWidget

PREVIEW_BOX = 768
LORA_HINT_MARGIN = 8   # px kept below the LoRA hint when it is scrolled into view


def lora_options(library: LibraryService) -> list[LoraOption]:
    """Characters with a trained LoRA (the newest one each), by name."""
    out = []
    for ch in library.characters():
        loras = library.loras(ch.id)
        if not loras:
            continue
        newest = max(loras, key=lambda lora: (lora.created, lora.id))
        out.append(LoraOption(ch.id, ch.name, ch.trigger_word, newest.path, newest.family))
    return out


class GenerateTab(QWidget):
    message_posted = Signal(str)
    settings_requested = Signal()
    setup_requested = Signal(str)
    # "To Video" on a gallery picture: (its file, its character id or None)
    video_requested = Signal(str, object)

    def __init__(self, service: Any, library: LibraryService, thumbnails: ThumbnailService,
                 parent: QWidget | None = None, *,
                 refine: PromptRefineService | None = None) -> None:
        super().__init__(parent)
        self._refine = refine
        self.setObjectName("GenerateTab")
        self._service = service
        self._library = library
        self._thumbs = thumbnails
        self.jobs: dict[str, GenerationRequest] = {}
        self.shown_job: str | None = None
        self.staging_character_id: int | None = None
        self.explorer: LoraExplorerDialog | None = None
        # character id → scorer of pictures against their photos (the app sets it from the
        # face analysis); staged pictures of another face are flagged before Keep
        self.identity_scorer: Callable[[int], Any] | None = None
        self.concept_dialog: ConceptDialog | None = None

        self.backends = BackendBarWidget()
        self.form = GenerateFormWidget()
        scroll = QScrollArea()
        scroll.setObjectName("GenerateScroll")
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(360)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(0)
        lv.addWidget(scroll, 1)
        # a picked LoRA's trigger word and hint are scrolled into view (at 1280×800 they sat
        # at the fold, half behind the pinned Generate button)
        hint = self.form.lora.hint
        self.form.lora.changed.connect(lambda: QTimer.singleShot(
            0, scroll, lambda: scroll.ensureWidgetVisible(hint, 0, LORA_HINT_MARGIN)))
        lv.addWidget(self.form.footer)

        self.progress = GenerationProgressWidget()
        self.gallery = GalleryWidget(thumbnails)
        self.staging = StagingStripWidget(thumbnails)
        self.staging_title = QLabel("")
        self.staging_title.setObjectName("SectionLabel")
        self.staging_back = QPushButton("Back to the gallery")
        self.staging_back.setToolTip("Leave staging mode. The pictures waiting here stay until "
                                     "you keep or discard them.")
        staging_page = QWidget()
        sp = QVBoxLayout(staging_page)
        sp.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.staging_title, 1)
        head.addWidget(self.staging_back)
        sp.addLayout(head)
        sp.addWidget(self.staging, 1)
        gallery_page = QWidget()
        gp = QVBoxLayout(gallery_page)
        gp.setContentsMargins(0, 0, 0, 0)
        gallery_title = QLabel("Gallery")
        gallery_title.setObjectName("SectionLabel")
        self.explorer_button = QPushButton("LoRA explorer…")
        self.explorer_button.setToolTip("Compare LoRAs and strengths side by side: a grid of "
                                        "LoRAs × strengths × prompts with one fixed seed, "
                                        "rendered with the form's model and size.")
        self.explorer_button.clicked.connect(self.open_explorer)
        self.open_explore_button = QPushButton("Explorations…")
        self.open_explore_button.setObjectName("OpenExploreButton")
        self.open_explore_button.setToolTip("Re-open an earlier exploration (draft funnel) at "
                                            "any stage.")
        gallery_head = QHBoxLayout()
        gallery_head.addWidget(gallery_title, 1)
        gallery_head.addWidget(self.open_explore_button)
        gallery_head.addWidget(self.explorer_button)
        gp.addLayout(gallery_head)
        gp.addWidget(self.gallery, 1)
        self.funnel = FunnelViewWidget(thumbnails)
        self.lower_stack = QStackedWidget()
        self.lower_stack.addWidget(gallery_page)
        self.lower_stack.addWidget(staging_page)
        self.lower_stack.addWidget(self.funnel)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.progress)
        right.addWidget(self.lower_stack)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 3)
        right.setChildrenCollapsible(False)
        right.setSizes([290, 460])
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([410, 870])
        self.setup_banner = NoticeBannerWidget("missing")
        self.setup_banner.action_requested.connect(self.setup_requested)
        layout = QVBoxLayout(self)
        layout.addWidget(self.setup_banner)
        layout.addWidget(self.backends)
        layout.addWidget(split, 1)

        self.backends.settings_requested.connect(self.settings_requested)
        self.backends.find_requested.connect(lambda: self.setup_requested.emit("models"))
        self.backends.refresh_requested.connect(self._service.refresh_servers)
        self.backends.restart_requested.connect(self._service.restart_local_server)
        self.backends.log_requested.connect(self._open_local_log)
        self.form.generate_requested.connect(self.generate)
        if refine is not None:
            refine.availability.connect(self.form.set_refine_state)
            self.form.refine_requested.connect(self.open_refine)
        self.form.concept_requested.connect(self.open_concepts)
        add_run_shortcut(self, self.form.generate_button)
        self.form.cancel_requested.connect(self.cancel)
        self.form.context_changed.connect(self.refresh_context)
        self.form.message_posted.connect(self.message_posted)
        self.staging_back.clicked.connect(self.leave_staging)
        self.gallery.reuse_requested.connect(self.reuse)
        self.gallery.video_requested.connect(
            lambda item: self.video_requested.emit(item.path, item.character_id))
        self.gallery.more_like_requested.connect(   # (from the gallery: into the gallery)
            lambda item, denoise, count: self.more_like(item.id, denoise, count,
                                                        in_funnel=False))
        self.gallery.lineage_requested.connect(
            lambda item_id: self._show_lineage(item_id, self.gallery.details.lineage,
                                               lambda: self.gallery.details.item))
        self.form.explore_requested.connect(self.explore)
        self.open_explore_button.clicked.connect(lambda: self.show_funnel())
        self.funnel.pick_requested.connect(self._service.set_pick)
        self.funnel.next_requested.connect(self.next_stage)
        self.funnel.stage_requested.connect(self.show_funnel)
        self.funnel.funnel_requested.connect(lambda f: self.show_funnel(f))
        self.funnel.more_like_requested.connect(self.more_like)
        self.funnel.current_changed.connect(
            lambda item_id: self._show_lineage(item_id, self.funnel.lineage,
                                               lambda: self._service.item(
                                                   self.funnel.current_id or -1)))
        self.funnel.back_requested.connect(self.leave_explore)
        self.funnel.delete_requested.connect(self.delete_funnel)
        self.gallery.delete_requested.connect(self.delete)
        self.form.input_image.changed.connect(self._show_input_thumb)
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)
        self.gallery.message_posted.connect(self.message_posted)
        self.staging.keep_requested.connect(self._keep)
        self.staging.discard_requested.connect(self._discard)

        self.form.set_loras(lora_options(library))
        self.form.set_explore_drafts(service.funnel_sizes().drafts)
        settings_service = getattr(service, "settings_service", None)
        if settings_service is not None:     # Settings → ComfyUI changes the funnel sizes
            settings_service.settings_changed.connect(
                lambda _s: self.form.set_explore_drafts(self._service.funnel_sizes().drafts))
        self.on_servers_changed(service.servers())
        self.on_gallery_changed()

    # -- context: servers, models, extras, LoRAs -------------------------------------------------
    def refresh_context(self) -> None:
        """Ask the service again for the family's models and what the extras need."""
        family = self.form.family()
        problem = self.backends.problem()
        self.form.set_server_problem(problem)
        self.progress.set_idle_text(problem)
        if problem is not None:
            self._show_missing(problem)
            self.form.set_models([])
            self.form.set_feature_support({})
            self.form.set_lora_visibility([])
            return
        models = self._service.model_choices(family)
        self._show_missing(None, bool(models))
        self.form.set_models(models)
        option = self.form.lora.option()
        lora = option is not None
        self.form.set_lora_visibility(self._service.lora_visibility(option.path)
                                      if option is not None else [])
        self.form.extras.set_models("controlnet", self._service.models("controlnet"))
        self.form.set_feature_support({key: tuple(self._service.feature_support(family, key,
                                                                                lora))
                                       for key, _label, _tip in FEATURES})

    def _show_missing(self, problem: str | None, has_models: bool = True) -> None:
        """The banner: no ComfyUI set up or reachable, or no model for this family."""
        servers = self.backends.servers
        tip = ("Open the set-up assistant's page that finds ComfyUI installs and model "
               "folders on this computer and links them.")
        if not servers:
            # the backend bar says it once, with both ways: find this computer's ComfyUI
            # (set-up assistant) or add a server (Settings)
            self.setup_banner.clear()
        elif problem is not None and not any(s.state == "starting" for s in servers):
            self.setup_banner.show_notice(
                f"{problem} Check that it runs, or link another ComfyUI.",
                "Set-up assistant…", "models", tip)
        elif problem is None and not has_models:
            family = self.form.family()
            offer = offer_for(family, "generate")
            if offer:
                self.setup_banner.show_notice(
                    f"The ComfyUI server has no {family_label(family)} model. {offer} into "
                    "the app's models folder (every ComfyUI the app starts lists it), or link "
                    "the folders of models you already have.",
                    f"Get {family_label(family)}…", f"base_models:{family}",
                    "Open the set-up assistant's Base models page: pick the families to "
                    "download (size, VRAM and licence shown); files you already have are not "
                    "fetched again.")
            else:
                self.setup_banner.show_notice(
                    f"The ComfyUI server has no {family_label(family)} model. Copy one into "
                    "its models/checkpoints folder, or link the folders of models you already "
                    "have.", "Find models…", "models", tip)
        else:
            self.setup_banner.clear()

    def on_servers_changed(self, servers: tuple[ServerStatus, ...]) -> None:
        self.backends.set_servers(servers)
        self.refresh_context()

    def on_data_changed(self, change: ChangeSet) -> None:
        if change.everything or change.loras or change.characters:
            self.form.set_loras(lora_options(self._library))
        if self.staging_character_id is not None:
            self._update_staging_title()      # the dataset's photo count

    # -- generate and cancel ---------------------------------------------------------------------
    # -- local prompt refinement (Ollama) ------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: ANN001,D102
        super().showEvent(event)
        if self._refine is not None:     # only when the tab is shown: no call at start-up
            self.form.set_refine_state(None)
            self._refine.check()

    def open_concepts(self) -> ConceptDialog:
        """The concept builder for the form's family; its prompt goes into the form."""
        from ...core.concepts import ConceptStore

        refine_ok = self._refine is not None and self.form.refine_button.isEnabled()
        dialog = ConceptDialog(self._library, ConceptStore(self._library.paths.data
                                                           / "concepts.json"),
                               self.form.family(), refine=self._refine,
                               refine_available=refine_ok, parent=self,
                               can_explore=self.staging_character_id is None)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.prompt_chosen.connect(self._use_concept)
        dialog.explore_requested.connect(self._explore_concept)
        self.concept_dialog = dialog
        dialog.show()
        return dialog

    def _use_concept(self, prompt: str, character_id: int | None) -> None:
        if character_id is not None and any(o.character_id == character_id
                                            for o in self.form.lora.options()):
            self.form.lora.select(character_id)
        self.form.set_prompt(prompt)

    def _explore_concept(self, prompt: str, character_id: int | None) -> None:
        """The concept builder's "Explore drafts": the concept in the form, then Explore (or
        why not, when the form cannot start: no server, no model …)."""
        self._use_concept(prompt, character_id)
        problem = self.form.problem()
        if problem is not None:
            self.form.show_error(f"Could not explore: {problem}")
            return
        self.explore()

    def open_refine(self) -> None:
        """The refinement dialog for the prompt as written, the chosen family and trigger."""
        if self._refine is None:
            return
        from .refine_dialog import RefineDialog

        option = self.form.lora.option()
        dialog = RefineDialog(self._refine, self.form.prompt_edit.toPlainText().strip(),
                              family=self.form.family(),
                              trigger=option.trigger if option is not None else "",
                              parent=self)
        dialog.prompt_chosen.connect(self.form.set_prompt)
        dialog.setModal(True)
        self.refine_dialog = dialog
        dialog.show()
        dialog.run()

    def generate(self) -> None:
        request = self.form.request()
        try:
            job_id = self._service.submit(request)
        except (ValueError, KeyError, LookupError) as exc:
            self.form.show_error(f"Could not start: {exc}")
            return
        self.form.show_error("")
        self.jobs[job_id] = request
        self.shown_job = job_id
        self.form.set_running(len(self.jobs))
        n = request.batch
        what = f"{n} picture{'s' if n != 1 else ''}"
        where = " for the dataset" if request.target == "staging" else ""
        self.progress.job_queued(f"Making {what}{where} with {request.model} "
                                 f"({family_label(request.family)}, {request.tier}, "
                                 f"{request.aspect})…")

    def cancel(self) -> None:
        for job_id in list(self.jobs):
            self._service.cancel(job_id)
        if self.jobs:
            self.progress.detail.setText("Cancelling…")

    # -- service signals -------------------------------------------------------------------------
    def on_job_started(self, job_id: str) -> None:
        if job_id in self.jobs:
            self.shown_job = job_id

    def on_job_progress(self, progress: Progress) -> None:
        if progress.job_id in self.jobs and progress.job_id == self.shown_job:
            label = next((s.label for s in self.backends.servers
                          if progress.server in (s.url, s.key)), progress.server)
            self.progress.update_progress(progress, label)

    def on_job_finished(self, job_id: str, items: tuple[GalleryItem, ...]) -> None:
        request = self.jobs.pop(job_id, None)
        self.form.set_running(len(self.jobs))
        self.on_gallery_changed()
        if request is None:
            return
        if items:
            self.form.set_last_seed(items[-1].seed)
        n = len(items)
        if request.funnel_id:
            text = (f"Done: {n} {request.stage or 'explore'} picture{'s' if n != 1 else ''} "
                    "in Explore.")
        elif request.target == "staging":
            text = (f"{n} picture{'s' if n != 1 else ''} waiting in the staging strip: keep "
                    "or discard each one.")
        else:
            text = f"Done: {n} picture{'s' if n != 1 else ''} in the gallery."
            if items:
                self.gallery.select_item(max(items, key=lambda i: i.id).id)
        if job_id == self.shown_job or not self.jobs:
            self.progress.job_done(text)
            if items:
                self._show_final(items[0].path)
        self.message_posted.emit(text)

    def on_job_failed(self, job_id: str, message: str) -> None:
        request = self.jobs.pop(job_id, None)
        self.form.set_running(len(self.jobs))
        if request is None:
            return
        if "cancel" in message.lower() or "interrupt" in message.lower():
            self.progress.job_done(f"Stopped. {message}")
            self.message_posted.emit(message)
            return
        self.progress.job_done("The picture could not be made.")
        self.progress.show_error(message)
        self.form.show_error(message)

    def on_service_failed(self, message: str) -> None:
        """Keep or Discard could not finish: the images stay staged, undecided again."""
        self.progress.show_error(message)
        if self.staging_character_id is not None:
            self.staging.reset_decisions()
            self.staging.set_items(self._service.staging(self.staging_character_id))

    def on_gallery_changed(self) -> None:
        self.gallery.lora_names = {o.path: o.name for o in self.form.lora.options()}
        # an exploration's pictures stay in Explore; its chosen final picture joins the gallery
        self.gallery.set_items([i for i in self._service.gallery()
                                if i.status in ("gallery", "kept")
                                and (not i.funnel_id or (i.stage == "final"
                                                         and i.pick == "keep"))])
        self.open_explore_button.setVisible(bool(self._service.funnels()))
        if self.lower_stack.currentWidget() is self.funnel and self.funnel.funnel_id:
            self.show_funnel(self.funnel.funnel_id, self.funnel.stage)
        if self.staging_character_id is not None:
            self.staging.set_items(self._service.staging(self.staging_character_id))

    def _show_final(self, path: str) -> None:
        def loaded(image: QImage) -> None:
            if not image.isNull():
                self.progress.preview.set_image(QPixmap.fromImage(image))

        BackgroundOp(parent=self, op=lambda: load_scaled(path, PREVIEW_BOX)).success(loaded) \
            .failure(lambda exc: logger.debug("no preview of {}: {}", path, exc)) \
            .supersede("final-preview").run()

    def _open_local_log(self) -> None:
        path = self._service.local_log_path
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.message_posted.emit(f"Nothing opened the ComfyUI log; it is at {path}")

    # -- gallery actions ---------------------------------------------------------------------
    def open_explorer(self) -> LoraExplorerDialog:
        """The LoRA explorer on the form's model, size and quality."""
        dialog = LoraExplorerDialog(self._service, self._library, self.form.request(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show_in_gallery.connect(self._show_in_gallery)
        self.explorer = dialog
        dialog.show()
        return dialog

    def _show_in_gallery(self, item_id: int) -> None:
        if self.staging_character_id is not None:
            self.leave_staging()
        self.on_gallery_changed()
        self.gallery.select_item(item_id)
        self.window().raise_()

    def reuse(self, item: GalleryItem) -> None:
        self.form.fill(item)
        self.refresh_context()
        self.message_posted.emit(f"Parameters of seed {item.seed} are in the form.")

    def more_like(self, item_id: int, denoise: float, count: int,
                  in_funnel: bool = True) -> None:
        """"More like this": image to image from the picture, nearby seeds (service); the
        pictures stay in the picture's Explore stage, or (``in_funnel=False``) go to the
        gallery."""
        item = self._service.item(item_id)
        try:
            job_id = self._service.more_like_this(item_id, denoise, count, in_funnel=in_funnel)
        except ValueError as exc:
            self.message_posted.emit(str(exc))
            return
        request = self._service.job_request(job_id)
        if request is not None:
            self.jobs[job_id] = request
        self.shown_job = job_id
        self.form.set_running(len(self.jobs))
        name = Path(item.path).name if item is not None else f"picture {item_id}"
        text = (f"Making {count} more like {name} (strength {denoise:.2f}, seeds after "
                f"{item.seed if item is not None else '?'})…")
        self.progress.job_queued(text)
        self.message_posted.emit(text)

    # -- Explore (the draft funnel) ------------------------------------------------------------
    def explore(self) -> None:
        """A new exploration from the form: its drafts, shown in the Explore view."""
        try:
            funnel_id, job_id = self._service.explore(self.form.request(),
                                                      self._service.funnel_sizes())
        except (ValueError, KeyError, LookupError) as exc:
            self.form.show_error(f"Could not start: {exc}")
            return
        self.form.show_error("")
        request = self._service.job_request(job_id)
        if request is not None:
            self.jobs[job_id] = request
        self.shown_job = job_id
        self.form.set_running(len(self.jobs))
        n = request.batch if request is not None else self._service.funnel_sizes().drafts
        self.progress.job_queued(f"Exploring: {n} drafts with {self.form.model()}…")
        self.show_funnel(funnel_id, "draft")

    def next_stage(self, funnel_id: str, stage: str) -> None:
        """Make the kept pictures of ``stage`` again for the next stage (same seeds)."""
        after = next_stage(stage)
        if after is None:
            return
        upscale = False
        if after == "final":
            kept = [i for i in self._service.funnel_items(funnel_id, stage) if i.pick == "keep"]
            if kept:
                p = kept[0].params or {}
                upscale, why = self._service.feature_support(
                    str(p.get("family") or "sdxl"), "upscale", bool(p.get("lora")))
                if not upscale:
                    self.message_posted.emit(f"The final pictures are made without upscaling: "
                                             f"{why}.")
        job_ids = self._service.advance(funnel_id, stage, upscale=upscale)
        for job_id in job_ids:
            request = self._service.job_request(job_id)
            if request is not None:
                self.jobs[job_id] = request
        if job_ids:
            self.shown_job = job_ids[0]
            self.form.set_running(len(self.jobs))
            self.progress.job_queued(f"Making {len(job_ids)} picture"
                                     f"{'s' if len(job_ids) != 1 else ''} at "
                                     f"{STAGE_TITLES[after].lower()} quality, same seeds…")
        else:
            self.message_posted.emit(f"Every kept picture already has its "
                                     f"{STAGE_TITLES[after].lower()} picture.")
        self.show_funnel(funnel_id, after)

    def show_funnel(self, funnel_id: str | None = None, stage: str | None = None) -> None:
        """Show (re-open) an exploration at a stage: by default the newest exploration at
        its latest stage with pictures."""
        funnels = self._service.funnels()
        if funnel_id is None:
            funnel_id = self.funnel.funnel_id or (funnels[0][0] if funnels else "")
        if not funnel_id:
            self.message_posted.emit("No exploration yet: write a prompt and press Explore.")
            return
        if stage is None:
            stage = "draft"
            for name in STAGES:
                if self._service.funnel_items(funnel_id, name):
                    stage = name
        running = sum(1 for r in self.jobs.values()
                      if r.funnel_id == funnel_id and r.stage == stage)
        self.funnel.show_stage(funnel_id, stage, self._service.funnel_items(funnel_id, stage),
                               self._service.funnel_sizes(), running)
        self.funnel.set_funnels(funnels)
        if self.lower_stack.currentWidget() is not self.funnel:
            self.lower_stack.setCurrentWidget(self.funnel)
            self.funnel.setFocus(Qt.FocusReason.OtherFocusReason)

    def delete_funnel(self, funnel_id: str) -> None:
        """"Delete this exploration…": asked first; its pictures go to the trash (those kept
        into a dataset stay), then the next exploration is shown, or the gallery."""
        count = len(self._service.funnel_items(funnel_id))
        pictures = f"{count} picture{'s' if count != 1 else ''}"
        text = (f"Move the {pictures} of this exploration (every stage) to the trash and "
                "forget it?\n\nYou can restore the files from the trash. Pictures you kept "
                "into a dataset stay as they are.")
        if not confirm(self, "Delete this exploration", text):
            return
        deleted = self._service.delete_funnel(funnel_id)
        self.message_posted.emit(f"Moving the {deleted} picture{'s' if deleted != 1 else ''} "
                                 "of the exploration to the trash.")
        others = [f for f, _first in self._service.funnels() if f != funnel_id]
        self.funnel.funnel_id = ""
        if others:
            self.show_funnel(others[0])
        else:
            self.leave_explore()

    def leave_explore(self) -> None:
        self.lower_stack.setCurrentIndex(1 if self.staging_character_id is not None else 0)

    def _show_lineage(self, item_id: int, tree: Any, still: Any) -> None:
        """Read ``item_id``'s lineage and show it in ``tree`` if ``still()`` is that item."""
        def shown(rows: list[Any]) -> None:
            current = still()
            if current is not None and current.id == item_id:
                tree.set_rows(rows)

        self._service.lineage(item_id, shown)

    def delete(self, item: GalleryItem) -> None:
        if self.form.input_image.path() == item.path:
            self.form.input_image.clear()
        self._service.delete([item.id])
        self.message_posted.emit(f"Moving {Path(item.path).name} to the trash.")

    def _show_input_thumb(self) -> None:
        path = self.form.input_image.path()
        if path:
            self.form.input_image.set_preview(self._thumbs.pixmap(thumb_key(path), Path(path)))

    def _on_thumbnail_ready(self, key: str, _image: Any) -> None:
        path = self.form.input_image.path()
        if path and key == thumb_key(path):
            self._show_input_thumb()

    # -- staging mode ------------------------------------------------------------------------
    def start_staging(self, character_id: int) -> bool:
        """Generate for a trained character's dataset; False (and a message) if untrained."""
        option = next((o for o in lora_options(self._library)
                       if o.character_id == character_id), None)
        if option is None:
            ch = self._library.character(character_id)
            name = ch.name if ch else "This character"
            self.message_posted.emit(f"{name} has no trained LoRA yet: train one first.")
            return False
        self.staging_character_id = character_id
        self.form.set_staging(option)
        self._update_staging_title()
        # each staged picture's face against the character's photos (face analysis)
        self.staging.set_scorer(self.identity_scorer(character_id)
                                if self.identity_scorer is not None else None)
        self.staging.set_items(self._service.staging(character_id))
        self.lower_stack.setCurrentIndex(1)
        self.staging.setFocus(Qt.FocusReason.OtherFocusReason)
        self.refresh_context()
        return True

    def leave_staging(self) -> None:
        self.staging_character_id = None
        self.form.set_staging(None)
        self.lower_stack.setCurrentIndex(0)
        self.refresh_context()

    def _update_staging_title(self) -> None:
        ch = self._library.character(self.staging_character_id) \
            if self.staging_character_id is not None else None
        if ch is None:
            return
        n = self._library.image_count(ch.id)
        self.staging_title.setText(f"Staging for {ch.name} · dataset has {n} "
                                   f"photo{'s' if n != 1 else ''}")
        self.staging.set_empty_text(f"Nothing waiting. Press Generate: the pictures of "
                                    f"{ch.name} land here to keep or discard.")

    def _keep(self, ids: list[int]) -> None:
        self._service.keep(ids)

    def _discard(self, ids: list[int]) -> None:
        self._service.discard(ids)
