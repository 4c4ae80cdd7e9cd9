"""The Video tab: a character's picture (or several keyframes) becomes a short clip through
ComfyUI, and the clips made so far play in a gallery beside the form.

Form: character (its trigger word is put in the prompt), keyframes (:class:`KeyframeStripWidget`),
model family, prompt, presets per VRAM tier (resolution), length in seconds, fps, seed, output
format and "also save frames"; advanced (collapsed): negative prompt, steps, model file.
Generate sends a :class:`~...core.video.specs.VideoRequest` to the video service; its progress
(with preview frames) shows under the button. Gallery: the clips of ``outputs/video``; the player
(:class:`ClipPlayerWidget`) plays, loops and scrubs; Reuse parameters fills the form from the
clip's stored record; Open folder; Save frames; Delete (to the trash).

When the server (with none ready: the model folders) lacks the files of the workflow the
form would run (the service's :meth:`~...services.video.VideoService.check_models`, the check
a job makes before it starts), a banner says so and offers the catalogue's video set for it:
its button emits ``setup_requested("base_models:<set id>")`` (the app opens the set-up
assistant there).

The app connects the service's signals to the ``on_*`` slots (``app.py: connect_video``).

Signals:
    setup_requested(str page): the banner's button: open the set-up assistant at ``page``.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QSplitter,
                               QToolButton, QVBoxLayout, QWidget)

from ...core.dataset.captions import with_trigger
from ...core.model_sets import video_offer
from ...core.types import Progress
from ...core.video.specs import TIERS, VIDEO_FAMILIES, VideoRequest, frames_for, workflow_for
from ..widgets.notice_banner import NoticeBannerWidget
from .clip_player import ClipPlayerWidget
from .keyframe_strip import KeyframeStripWidget

__all__ = ["VideoTab"]

MAX_SEED = 2**50 - 1


class VideoTab(QWidget):
    """See the module docstring."""

    setup_requested = Signal(str)

    def __init__(self, service: Any, library: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._service = service
        self._library = library
        self.job_id = ""
        self._clips: list[Any] = []
        self.model_check: Any = None          # the latest ModelCheck for the form's workflow
        self._asked = ""                      # the workflow last asked about
        self.setup_banner = NoticeBannerWidget("missing", self)
        self.setup_banner.setObjectName("VideoSetupBanner")
        self.setup_banner.action_requested.connect(self.setup_requested)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self._build_form())
        splitter.addWidget(self._build_gallery())
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.setup_banner)
        layout.addWidget(splitter)
        self.refresh_characters()
        self._on_family_changed()
        service.refresh()

    # -- building ----------------------------------------------------------------------------
    def _build_form(self) -> QWidget:
        box = QWidget(self)
        form = QFormLayout()
        self.character_combo = QComboBox(box)
        self.character_combo.setToolTip("Whose clip this is: its trigger word goes in the prompt "
                                        "and '+ keyframe' opens its photo folder.")
        self.character_combo.currentIndexChanged.connect(self._on_character_changed)
        form.addRow("Character", self.character_combo)
        self.keyframes = KeyframeStripWidget(box)
        self.keyframes.changed.connect(self._update_plan)
        self.keyframes.changed.connect(self._workflow_maybe_changed)
        form.addRow("Keyframes", self.keyframes)
        self.family_combo = QComboBox(box)
        for fam in VIDEO_FAMILIES.values():
            self.family_combo.addItem(fam.label, fam.id)
        self.family_combo.setToolTip("Wan 2.1: 16 fps, frames in 4n+1, best motion; needs ~16 GB "
                                     "for image to video. LTX-Video: 25 fps, frames in 8n+1, "
                                     "fast, runs on ~12 GB.")
        self.family_combo.currentIndexChanged.connect(self._on_family_changed)
        form.addRow("Model", self.family_combo)
        self.prompt_edit = QPlainTextEdit(box)
        self.prompt_edit.setPlaceholderText("What happens, e.g. “turns and smiles”")
        self.prompt_edit.setFixedHeight(70)
        form.addRow("Prompt", self.prompt_edit)
        self.tier_combo = QComboBox(box)
        self.tier_combo.addItems(TIERS)
        self.tier_combo.setCurrentIndex(len(TIERS) - 1)
        self.tier_combo.setToolTip("Your GPU's memory: picks a resolution that fits (rules of "
                                   "thumb with ComfyUI's offloading, not measured).")
        self.tier_combo.currentIndexChanged.connect(self._apply_tier)
        form.addRow("GPU memory", self.tier_combo)
        self.width_spin, self.height_spin = QSpinBox(box), QSpinBox(box)
        for spin in (self.width_spin, self.height_spin):
            spin.setRange(64, 2048)
            spin.setSingleStep(16)
            spin.setToolTip("Frame size in pixels; rounded down to the model's multiple "
                            "(16 for Wan, 32 for LTX-Video).")
        size = QHBoxLayout()
        size.addWidget(self.width_spin)
        size.addWidget(QLabel("×", box))
        size.addWidget(self.height_spin)
        form.addRow("Resolution", size)
        self.seconds_spin = QDoubleSpinBox(box)
        self.seconds_spin.setRange(0.25, 30.0)
        self.seconds_spin.setSingleStep(0.5)
        self.seconds_spin.setValue(3.0)
        self.seconds_spin.setSuffix(" s")
        self.seconds_spin.setToolTip("Clip length. The frame count is rounded to what the model "
                                     "makes (4n+1 or 8n+1 frames); a sequence shares it between "
                                     "its segments.")
        self.seconds_spin.valueChanged.connect(self._update_plan)
        self.fps_spin = QDoubleSpinBox(box)
        self.fps_spin.setRange(1.0, 60.0)
        self.fps_spin.setDecimals(1)
        self.fps_spin.setToolTip("Frames per second of the clip (Wan is trained at 16, "
                                 "LTX-Video at 25).")
        self.fps_spin.valueChanged.connect(self._update_plan)
        timing = QHBoxLayout()
        timing.addWidget(self.seconds_spin)
        timing.addWidget(QLabel("at", box))
        timing.addWidget(self.fps_spin)
        timing.addWidget(QLabel("fps", box))
        form.addRow("Length", timing)
        self.plan_label = QLabel(box)
        form.addRow("", self.plan_label)
        self.seed_spin = QSpinBox(box)
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("The noise seed: the same seed and settings make the same clip.")
        self.random_seed = QCheckBox("Random", box)
        self.random_seed.setChecked(True)
        self.random_seed.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.seed_spin.setEnabled(False)
        seed = QHBoxLayout()
        seed.addWidget(self.seed_spin)
        seed.addWidget(self.random_seed)
        form.addRow("Seed", seed)
        self.container_combo = QComboBox(box)
        self.container_combo.addItem("MP4 (H.264)", "mp4")
        self.container_combo.addItem("WebM (VP9)", "webm")
        self.container_combo.setToolTip("MP4 plays everywhere; WebM is smaller and open.")
        self.frames_box = QCheckBox("Also save the frames as PNG", box)
        output = QHBoxLayout()
        output.addWidget(self.container_combo)
        output.addWidget(self.frames_box)
        form.addRow("Output", output)
        # advanced, collapsed
        self.advanced_button = QToolButton(box)
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced = QGroupBox(box)
        adv = QFormLayout(self.advanced)
        self.negative_edit = QPlainTextEdit(self.advanced)
        self.negative_edit.setFixedHeight(50)
        self.negative_edit.setToolTip("What to avoid; empty keeps the workflow's own negative prompt.")
        adv.addRow("Negative prompt", self.negative_edit)
        self.steps_spin = QSpinBox(self.advanced)
        self.steps_spin.setRange(0, 200)
        self.steps_spin.setSpecialValueText("workflow default")
        self.steps_spin.setToolTip("Sampler steps; 0 keeps the workflow's (Wan 20, LTX-Video 30).")
        adv.addRow("Steps", self.steps_spin)
        self.model_edit = QLineEdit(self.advanced)
        self.model_edit.setPlaceholderText("picked from the server")
        self.model_edit.setToolTip("The diffusion model / checkpoint file as the server lists it; "
                                   "empty picks the workflow's file or one whose name fits.")
        adv.addRow("Model file", self.model_edit)
        self.advanced.setVisible(False)
        self.advanced_button.toggled.connect(self._toggle_advanced)
        # generate
        self.generate_button = QPushButton("Generate", box)
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel", box)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar(box)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.status_label = QLabel(box)
        self.status_label.setWordWrap(True)
        self.preview_label = QLabel(box)
        self.preview_label.setFixedHeight(160)
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        run = QHBoxLayout()
        run.addWidget(self.generate_button)
        run.addWidget(self.cancel_button)
        layout = QVBoxLayout(box)
        layout.addLayout(form)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self.advanced)
        layout.addLayout(run)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.preview_label)
        layout.addStretch(1)
        return box

    def _build_gallery(self) -> QWidget:
        box = QWidget(self)
        self.clip_list = QListWidget(box)
        self.clip_list.setMaximumHeight(180)
        self.clip_list.currentRowChanged.connect(self._on_clip_selected)
        self.player = ClipPlayerWidget(box, previews=self._service.preview)
        self.reuse_button = QPushButton("Reuse parameters", box)
        self.reuse_button.setToolTip("Fill the form with this clip's stored settings and seed.")
        self.reuse_button.clicked.connect(self.reuse_parameters)
        self.folder_button = QPushButton("Open folder", box)
        self.folder_button.clicked.connect(self.open_folder)
        self.frames_button = QPushButton("Save frames", box)
        self.frames_button.setToolTip("Write every frame as a PNG into <clip>_frames/ beside it.")
        self.frames_button.clicked.connect(self.save_frames)
        self.delete_button = QPushButton("Delete", box)
        self.delete_button.setToolTip("Move the clip, its parameters and frames to the trash.")
        self.delete_button.clicked.connect(self.delete_clip)
        buttons = QHBoxLayout()
        for b in (self.reuse_button, self.folder_button, self.frames_button, self.delete_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(box)
        layout.addWidget(QLabel("Clips", box))
        layout.addWidget(self.clip_list)
        layout.addWidget(self.player, 1)
        layout.addLayout(buttons)
        self._update_clip_buttons()
        return box

    # -- form --------------------------------------------------------------------------------
    def refresh_characters(self) -> None:
        current = self.character_combo.currentData()
        self.character_combo.blockSignals(True)
        self.character_combo.clear()
        self.character_combo.addItem("(no character)", None)
        for ch in (self._library.characters() if self._library is not None else []):
            self.character_combo.addItem(ch.name, ch.id)
        index = self.character_combo.findData(current)
        self.character_combo.setCurrentIndex(max(0, index))
        self.character_combo.blockSignals(False)
        self._on_character_changed()

    def select_character(self, character_id: int) -> None:
        """Choose ``character_id`` (its trigger word goes in the prompt); unknown ids are
        ignored."""
        index = self.character_combo.findData(character_id)
        if index >= 0:
            self.character_combo.setCurrentIndex(index)

    def _character(self) -> Any:
        cid = self.character_combo.currentData()
        return self._library.character(cid) if cid is not None and self._library else None

    def _on_character_changed(self, *_: object) -> None:
        ch = self._character()
        paths = self._service.paths
        folders = [paths.characters / ch.folder] if ch is not None and ch.folder else []
        self.keyframes.start_folders = folders + [paths.outputs]   # then the generated gallery

    def _on_family_changed(self, *_: object) -> None:
        fam = VIDEO_FAMILIES[self.family_combo.currentData()]
        self.fps_spin.setValue(fam.fps)
        for spin in (self.width_spin, self.height_spin):
            spin.setSingleStep(fam.size_step)
        self._apply_tier()
        self._workflow_maybe_changed()

    def _apply_tier(self, *_: object) -> None:
        fam = VIDEO_FAMILIES[self.family_combo.currentData()]
        w, h = fam.sizes[self.tier_combo.currentText()]
        self.width_spin.setValue(w)
        self.height_spin.setValue(h)
        self._update_plan()

    def _update_plan(self, *_: object) -> None:
        fam = VIDEO_FAMILIES[self.family_combo.currentData()]
        frames = frames_for(self.seconds_spin.value(), self.fps_spin.value(), fam.step)
        n = len(self.keyframes.paths())
        what = f"{frames} frames ({frames / self.fps_spin.value():.2f} s)"
        if n >= 3:
            what += f" in {n - 1} segments joined at the keyframes"
        self.plan_label.setText(what)

    # -- does the server have the models? -----------------------------------------------------
    def current_workflow(self) -> str:
        """The workflow Generate would run now (family + number of keyframes)."""
        return workflow_for(self.family_combo.currentData(), len(self.keyframes.paths()))

    def _workflow_maybe_changed(self, *_: object) -> None:
        if self.current_workflow() != self._asked:
            self.check_models()

    def check_models(self) -> None:
        """Ask the service again what the server lacks for the current workflow (the app
        calls it when the servers or the downloads change); the answer arrives in
        :meth:`on_models_checked`."""
        self._asked = self.current_workflow()
        self._service.check_models(self._asked)

    def on_models_checked(self, check: Any) -> None:
        """Show or clear the "get the model" banner for the form's workflow."""
        if check.workflow != self.current_workflow():
            return                              # an answer about a workflow left since
        self.model_check = check
        if not check.missing:
            self.setup_banner.clear()
            return
        reasons = "; ".join(check.missing)
        offer = video_offer(check.workflow) if check.models_missing else None
        if offer is None:                       # only nodes are missing (or no set serves it)
            who = f"ComfyUI at {check.server}" if check.server else "This computer"
            self.setup_banner.show_notice(
                f"{who} cannot run {check.title}: {reasons}. Update ComfyUI or install the "
                "node pack named.")
            return
        group, size = offer
        label = group.video.label
        if check.server:
            head = f"The ComfyUI server has no {label} model."
            tail = f"What {check.server} lacks: {reasons}."
        else:                                   # no server to ask: the model folders said
            head = f"The model folders have no {label} model (and no ComfyUI server is ready)."
            tail = f"Missing: {reasons}."
        self.setup_banner.show_notice(
            f"{head} Get it (≈ {size}) into the app's models folder (every ComfyUI the app "
            f"starts lists it), or link the folders of models you already have. {tail}",
            f"Get {label}…", f"base_models:{group.video.id}",
            "Open the set-up assistant's Base models page with this video set ticked (size, "
            "VRAM and licence shown); files you already have are not fetched again.")

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def request(self) -> VideoRequest:
        """The request the form describes now."""
        ch = self._character()
        prompt = self.prompt_edit.toPlainText().strip()
        trigger = ch.trigger_word if ch is not None else ""
        if trigger:
            prompt = with_trigger(prompt, trigger)
        return VideoRequest(
            prompt=prompt, family=self.family_combo.currentData(),
            keyframes=tuple(self.keyframes.paths()), negative=self.negative_edit.toPlainText(),
            seconds=self.seconds_spin.value(), fps=self.fps_spin.value(),
            width=self.width_spin.value(), height=self.height_spin.value(),
            seed=None if self.random_seed.isChecked() else self.seed_spin.value(),
            steps=self.steps_spin.value() or None, model=self.model_edit.text().strip(),
            container=self.container_combo.currentData(), save_frames=self.frames_box.isChecked(),
            character_id=ch.id if ch is not None else None, trigger=trigger)

    def apply_request(self, request: VideoRequest) -> None:
        """Fill the form from a stored request (Reuse parameters)."""
        index = self.family_combo.findData(request.family)
        if index >= 0:
            self.family_combo.setCurrentIndex(index)
        if request.character_id is not None:
            found = self.character_combo.findData(request.character_id)
            if found >= 0:
                self.character_combo.setCurrentIndex(found)
        self.prompt_edit.setPlainText(request.prompt)
        self.negative_edit.setPlainText(request.negative)
        self.keyframes.set_paths(list(request.keyframes))
        self.width_spin.setValue(request.width)
        self.height_spin.setValue(request.height)
        self.seconds_spin.setValue(request.seconds)
        self.fps_spin.setValue(request.fps)
        if request.seed is not None:
            self.random_seed.setChecked(False)
            self.seed_spin.setValue(int(request.seed) % (self.seed_spin.maximum() + 1))
        self.steps_spin.setValue(request.steps or 0)
        self.model_edit.setText(request.model)
        self.container_combo.setCurrentIndex(max(0, self.container_combo.findData(request.container)))
        self.frames_box.setChecked(request.save_frames)
        self._update_plan()

    # -- jobs --------------------------------------------------------------------------------
    def generate(self) -> None:
        request = self.request()
        if not request.prompt.strip():
            self.status_label.setText("Write a prompt first: what should happen in the clip?")
            return
        self.job_id = self._service.submit(request)
        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setValue(0)
        self.status_label.setText("Starting…")

    def cancel(self) -> None:
        if self.job_id:
            self._service.cancel(self.job_id)
            self.status_label.setText("Cancelling…")

    def on_job_started(self, job_id: str) -> None:
        if job_id == self.job_id:
            self.status_label.setText("Sending to ComfyUI…")

    def on_job_progress(self, progress: Progress) -> None:
        if progress.job_id != self.job_id:
            return
        if progress.overall is not None:
            self.progress_bar.setValue(int(max(0.0, min(1.0, progress.overall)) * 1000))
        self.status_label.setText(progress.label + (f" ({progress.node_class})"
                                                    if progress.node_class else ""))
        if progress.preview:
            pix = QPixmap()
            if pix.loadFromData(progress.preview):
                self.preview_label.setPixmap(pix.scaledToHeight(150))

    def on_job_finished(self, job_id: str, clip: Any) -> None:
        if job_id != self.job_id:
            return
        self._job_ended(f"Done: {clip.path.name} ({clip.frames} frames, {clip.duration_s:.2f} s).")
        self.on_clips_changed()
        self.clip_list.setCurrentRow(0)

    def on_job_failed(self, job_id: str, message: str) -> None:
        if job_id == self.job_id:
            self._job_ended(message)

    def _job_ended(self, text: str) -> None:
        self.job_id = ""
        self.generate_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.setValue(1000)
        self.status_label.setText(text)

    # -- gallery -----------------------------------------------------------------------------
    def on_clips_changed(self) -> None:
        selected = self.current_clip()
        self._clips = self._service.clips()
        self.clip_list.blockSignals(True)
        self.clip_list.clear()
        for clip in self._clips:
            prompt = str(clip.parameters.get("prompt", ""))[:60]
            item = QListWidgetItem(f"{clip.path.name} — {clip.duration_s:.1f} s — {prompt}")
            item.setToolTip(str(clip.path))
            self.clip_list.addItem(item)
        row = next((i for i, c in enumerate(self._clips)
                    if selected is not None and c.path == selected.path), -1)
        self.clip_list.setCurrentRow(row)
        self.clip_list.blockSignals(False)
        if row < 0:
            self.player.load(None)
        self._update_clip_buttons()

    def on_service_failed(self, message: str) -> None:
        self.status_label.setText(message)

    def current_clip(self) -> Any:
        row = self.clip_list.currentRow()
        return self._clips[row] if 0 <= row < len(self._clips) else None

    def _on_clip_selected(self, _row: int) -> None:
        clip = self.current_clip()
        self.player.load(clip.path if clip is not None else None)
        self._update_clip_buttons()

    def _update_clip_buttons(self) -> None:
        on = self.current_clip() is not None
        for b in (self.reuse_button, self.frames_button, self.delete_button):
            b.setEnabled(on)

    def reuse_parameters(self) -> None:
        clip = self.current_clip()
        if clip is None:
            return
        if not clip.parameters:
            self.status_label.setText(f"{clip.path.name} has no stored parameters.")
            return
        self.apply_request(VideoRequest.from_json(clip.parameters))
        self.status_label.setText(f"Parameters of {clip.path.name} loaded (seed "
                                  f"{clip.parameters.get('seed')}).")

    def open_folder(self) -> None:
        clip = self.current_clip()
        folder = clip.path.parent if clip is not None else self._service.clips_dir
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def save_frames(self) -> None:
        clip = self.current_clip()
        if clip is not None:
            self._service.export_frames(clip.path, lambda paths: self.status_label.setText(
                f"{len(paths)} frames saved in {clip.path.stem}_frames."))

    def delete_clip(self) -> None:
        clip = self.current_clip()
        if clip is not None:
            self.player.load(None)
            self._service.delete(clip.path)
