"""The wizard's "Models and ComfyUI" page: finds ComfyUI installs, A1111/Forge and Stability
Matrix model folders on this computer (``core.discovery``, off the UI thread) and links the ones
the user ticks through the existing settings: ``comfyui_folder``/``comfyui_python``/
``comfyui_models_folder`` for ComfyUI, ``model_folders`` for the others. A linked ComfyUI can
also be given the app's models folder: one ``isengard:`` section in its
``extra_model_paths.yaml`` (``core.comfy_extra_paths``, written off the UI thread), so the
ComfyUI the user runs themselves lists the models the app downloads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from loguru import logger
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QListWidget,
                               QListWidgetItem, QPushButton, QWidget)

from ...core.comfy_extra_paths import (FILE_NAME, SECTION, LinkResult, link_comfyui,
                                        unlink_comfyui)
from ...core.discovery import (DESKTOP_ADDRESS, ComfyInstall, Discovery, ModelFolder,
                               in_desktop_app)
from ...core.paths import AppPaths, ensure_model_layout
from ...core.settings import Settings
from ...services.background import BackgroundOp
from ..widgets.comfy_install import ComfyInstallWidget
from .common import WizardPage, heading, note

__all__ = ["LinksPage", "apply_links"]

Discover = Callable[[], Discovery]
ROLE = Qt.ItemDataRole.UserRole


def apply_links(settings: Settings, comfy: ComfyInstall | None,
                folders: list[Path], servers: list[str] | None = None) -> Settings:
    """``settings`` with ``comfy`` as the local ComfyUI (folder, its Python, its models
    folder), ``folders`` added to the model folders and ``servers`` (addresses, e.g. a
    ComfyUI Desktop's) to the ComfyUI servers (each once)."""
    changes: dict[str, object] = {}
    if servers:
        known_servers = list(settings.remote_servers)
        changes["remote_servers"] = known_servers + [s for s in dict.fromkeys(servers)
                                                     if s not in known_servers]
    if comfy is not None:
        changes["comfyui_folder"] = str(comfy.folder)
        changes["comfyui_python"] = str(comfy.python) if comfy.python else ""
        changes["comfyui_models_folder"] = str(comfy.models)
    if folders:
        known = list(settings.model_folders)
        changes["model_folders"] = known + [str(f) for f in folders if str(f) not in known]
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def _linked(settings: Settings, value: ComfyInstall | ModelFolder) -> bool:
    if isinstance(value, ComfyInstall):
        return settings.comfyui_folder == str(value.folder)
    return str(value.folder) in settings.model_folders


class LinksPage(WizardPage):
    key = "models"
    title = "Models and ComfyUI"
    has_goal = True

    def __init__(self, discover: Discover, settings: Callable[[], Settings],
                 save: Callable[[Settings], None], parent: QWidget | None = None,
                 paths: AppPaths | None = None, comfy_install: object = None) -> None:
        """``comfy_install``: the ComfyInstallService; with it the page offers "Install
        ComfyUI for me" (a pinned release in the data folder, set as the local ComfyUI)."""
        super().__init__(parent)
        self._paths = paths
        self._discover = discover
        self._settings = settings
        self._save = save
        self.found: Discovery | None = None
        self.searching = False
        self.layout_.addWidget(heading("Models and ComfyUI"))
        self.layout_.addWidget(note(
            "Already have ComfyUI, Stable Diffusion web UI (A1111 or Forge) or Stability "
            "Matrix? Link them: their models are used where they are, nothing is copied.",
            subtle=True))
        self.status = note("Looking for ComfyUI and model folders…")
        self.status.setObjectName("links_status")
        self.layout_.addWidget(self.status)
        self.list = QListWidget()
        self.list.setObjectName("links_list")
        self.list.setToolTip("Tick what to link. One ComfyUI can be the one the app starts "
                             "for generating; model folders are searched for base models "
                             "(Settings → Folders lists them).")
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSpacing(3)
        self.list.itemChanged.connect(self._on_item_changed)
        self.layout_.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add a folder…")
        self.add_button.setToolTip("Choose a folder of model files (.safetensors) that was not "
                                   "found, e.g. on another disk.")
        self.add_button.clicked.connect(self.add_folder)
        self.search_button = QPushButton("Search again")
        self.search_button.setToolTip("Look through the usual places and your home folder "
                                      "again (a few levels deep).")
        self.search_button.clicked.connect(self.refresh)
        self.link_button = QPushButton("Link selected")
        self.link_button.setObjectName("links_link")
        self.link_button.setProperty("primary", True)
        self.link_button.setToolTip("Save the ticked ComfyUI and model folders in Settings.")
        self.link_button.clicked.connect(self.link_selected)
        row.addWidget(self.add_button)
        row.addWidget(self.search_button)
        row.addStretch(1)
        row.addWidget(self.link_button)
        self.layout_.addLayout(row)
        self.share_box = QCheckBox("Let the linked ComfyUI list this app's models too")
        self.share_box.setObjectName("links_share_models")
        self.share_box.setChecked(True)
        self.share_box.setVisible(paths is not None)
        if paths is not None:
            self.share_box.setToolTip(
                f"Writes one section named '{SECTION}' into {FILE_NAME} in the ComfyUI folder "
                f"(the file is created if it is not there), listing {paths.models} (in "
                f"ComfyUI's layout: checkpoints, vae, loras, …) and {paths.loras}, so models "
                "downloaded here and trained LoRAs show up when you start that ComfyUI "
                "yourself. Your own sections and comments are kept exactly; linking again "
                "replaces only that section.")
        self.unshare_button = QPushButton("Remove it")
        self.unshare_button.setObjectName("links_unshare_models")
        self.unshare_button.setToolTip(
            f"Take the '{SECTION}:' section out of the linked ComfyUI's {FILE_NAME} again "
            "(only that section: the rest of the file is left exactly as it was; a file the "
            "app created with nothing else in it is removed).")
        self.unshare_button.clicked.connect(self.unshare_models)
        share_row = QHBoxLayout()
        share_row.addWidget(self.share_box, 1)
        share_row.addWidget(self.unshare_button)
        self.layout_.addLayout(share_row)
        self.share_note = note(f"Writes one section, '{SECTION}:', into {FILE_NAME} in that "
                               "ComfyUI's folder (created if missing). Your other sections "
                               "and comments stay exactly as they are.", subtle=True)
        self.share_note.setObjectName("links_share_note")
        self.share_note.setVisible(paths is not None)
        self.layout_.addWidget(self.share_note)
        self.message = note("", subtle=True)
        self.message.setObjectName("links_message")
        self.layout_.addWidget(self.message)
        self.install_box: ComfyInstallWidget | None = None
        if comfy_install is not None:
            self.install_box = ComfyInstallWidget(comfy_install, self)
            self.install_box.setTitle("No ComfyUI yet? Install ComfyUI for me")
            self.install_box.installed.connect(self._on_installed)
            self.layout_.addWidget(self.install_box)
        self._update_buttons()

    def _on_installed(self, folder: str, _python: str) -> None:
        # the app saves the managed install as the local ComfyUI (app.py); say so here
        self.message.setText(f"ComfyUI is installed in {folder} and set as the ComfyUI "
                             "Isengard starts.")
        self.completeness_changed.emit()

    @property
    def complete(self) -> bool:
        s = self._settings()
        return bool(s.comfyui_folder or s.model_folders or s.remote_servers)

    def entered(self) -> None:
        if self.found is None and not self.searching:
            self.refresh()

    def refresh(self) -> None:
        """Search again, off the UI thread."""
        self.searching = True
        self.status.setText("Looking for ComfyUI and model folders…")
        self.search_button.setEnabled(False)
        BackgroundOp(parent=self, op=self._discover).success(self._on_found) \
            .failure(self._on_failed).supersede("discover").run()

    def _on_failed(self, exc: BaseException) -> None:
        self.searching = False
        self.search_button.setEnabled(True)
        logger.warning("model folder discovery failed: {!r}", exc)
        self.status.setText(f"The search failed ({exc}). Add a folder by hand.")

    def _on_found(self, found: Discovery) -> None:
        self.searching = False
        self.search_button.setEnabled(True)
        self.found = found
        self.list.blockSignals(True)
        added = [self.list.item(i) for i in range(self.list.count())
                 if self.list.item(i).data(ROLE + 1) == "added"]
        kept = [(item.text(), item.data(ROLE), item.checkState()) for item in added]
        self.list.clear()
        settings = self._settings()
        for n, comfy in enumerate(found.comfy):
            python = f"its Python: {comfy.python}" if comfy.python else \
                "no Python beside it: choose one in Settings → ComfyUI"
            self._add_item(f"{comfy.source} — for generating, and its models\n{comfy.folder}",
                           comfy, _linked(settings, comfy),
                           f"{comfy.folder}\n{python}\nIts models folder {comfy.models} is "
                           "used for training too.")
            if n == 0 and not settings.comfyui_folder:
                self.list.item(self.list.count() - 1).setCheckState(Qt.CheckState.Checked)
        for folder in found.model_folders:
            tip = str(folder.folder)
            if folder.kind == "comfyui-desktop":
                tip += (f"\nComfyUI Desktop's code is inside its app, which was not found. "
                        f"Linking adds these models and ComfyUI Desktop's address "
                        f"({DESKTOP_ADDRESS}) to Settings → ComfyUI's servers: Generate uses "
                        "it while ComfyUI Desktop runs (its settings show the port if it is "
                        "not 8000).")
            self._add_item(f"{folder.label} — models\n{folder.folder}", folder,
                           _linked(settings, folder), tip)
        for text, value, state in kept:
            linked = _linked(settings, value)
            item = self._add_item(text.replace("  ✓ linked", ""), value, linked,
                                  str(value.folder))
            if not linked:
                item.setCheckState(state)
            item.setData(ROLE + 1, "added")
        self.list.blockSignals(False)
        n = len(found.comfy) + len(found.model_folders)
        if n:
            self.status.setText(f"Found {len(found.comfy)} ComfyUI install(s) and "
                                f"{len(found.model_folders)} model folder(s). Tick what to "
                                "link:")
        else:
            self.status.setText("Nothing found in the usual places. Add a folder of models by "
                                "hand, or set up a ComfyUI server in Settings → ComfyUI.")
        if found.truncated:
            self.status.setText(self.status.text() + " (The search stopped early: add a "
                                                     "folder by hand if yours is missing.)")
        self._update_buttons()

    def _add_item(self, text: str, value: ComfyInstall | ModelFolder, linked: bool,
                  tip: str) -> QListWidgetItem:
        title, _, where = text.partition("\n")
        item = QListWidgetItem(title + ("  ✓ linked" if linked else "") + "\n" + where)
        item.setData(ROLE, value)
        item.setToolTip(tip)
        flags = item.flags() | Qt.ItemFlag.ItemIsUserCheckable
        if linked:
            flags &= ~Qt.ItemFlag.ItemIsEnabled
        item.setFlags(flags)
        # model folders are ticked; a ComfyUI only when none is linked (see _on_found)
        item.setCheckState(Qt.CheckState.Checked if linked or isinstance(value, ModelFolder)
                           else Qt.CheckState.Unchecked)
        self.list.addItem(item)
        return item

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        """One ComfyUI at most: ticking one unticks the others."""
        if isinstance(item.data(ROLE), ComfyInstall) and \
                item.checkState() == Qt.CheckState.Checked:
            self.list.blockSignals(True)
            for i in range(self.list.count()):
                other = self.list.item(i)
                if other is not item and isinstance(other.data(ROLE), ComfyInstall) and \
                        other.flags() & Qt.ItemFlag.ItemIsEnabled:
                    other.setCheckState(Qt.CheckState.Unchecked)
            self.list.blockSignals(False)
        self._update_buttons()

    def checked(self) -> list[ComfyInstall | ModelFolder]:
        """The ticked items not linked yet."""
        out = []
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.checkState() == Qt.CheckState.Checked and \
                    item.flags() & Qt.ItemFlag.ItemIsEnabled:
                out.append(item.data(ROLE))
        return out

    def _update_buttons(self) -> None:
        self.link_button.setEnabled(bool(self.checked()))
        self.unshare_button.setVisible(self._paths is not None
                                       and bool(self._settings().comfyui_folder))

    def add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of model files")
        if folder:
            self.add_path(Path(folder))

    def add_path(self, folder: Path) -> None:
        """Offer ``folder`` as a model folder (ticked)."""
        self.list.blockSignals(True)
        item = self._add_item(f"Your folder — models\n{folder}", ModelFolder(folder, "custom",
                                                                    "Your folder"),
                              False, str(folder))
        item.setCheckState(Qt.CheckState.Checked)
        item.setData(ROLE + 1, "added")
        self.list.blockSignals(False)
        self._update_buttons()

    def link_selected(self) -> None:
        chosen = self.checked()
        comfy = next((c for c in chosen if isinstance(c, ComfyInstall)), None)
        folders = [c.folder for c in chosen if isinstance(c, ModelFolder)]
        servers = [DESKTOP_ADDRESS for c in chosen
                   if isinstance(c, ModelFolder) and c.kind == "comfyui-desktop"]
        if comfy is None and not folders:
            return
        self._save(apply_links(self._settings(), comfy, folders, servers))
        said = []
        if comfy is not None:
            said.append(f"ComfyUI at {comfy.folder} (Generate starts it)")
        if folders:
            said.append(f"{len(folders)} model folder(s)")
        if servers:
            said.append(f"ComfyUI Desktop's address {DESKTOP_ADDRESS}")
        self.message.setText("Linked " + " and ".join(said) + ". Settings → Folders and "
                             "ComfyUI show them.")
        if self.found is not None:
            self._on_found(self.found)
        self.completeness_changed.emit()
        if comfy is not None and self._paths is not None and self.share_box.isChecked() \
                and not in_desktop_app(comfy.folder):    # the app's own files: not ours
            self.share_models(comfy.folder)

    def share_models(self, comfy_folder: Path) -> None:
        """Write our section into ``comfy_folder``'s extra_model_paths.yaml (off the UI
        thread); the message says what was written, or why nothing was."""
        paths = self._paths
        assert paths is not None
        said = self.message.text()

        def write() -> LinkResult:
            ensure_model_layout(paths.models)
            return link_comfyui(comfy_folder, paths.models, paths.loras)

        def done(result: LinkResult) -> None:
            what = {"created": "Created", "added": "Added the '{s}:' section to",
                    "replaced": "Updated the '{s}:' section in",
                    "unchanged": "The '{s}:' section is already in"}[result.action]
            self.message.setText(f"{said} {what.format(s=SECTION)} {result.path}: that "
                                 f"ComfyUI now lists {paths.models} too.")

        def failed(exc: BaseException) -> None:
            logger.warning("linking the models folder into {}: {}", comfy_folder, exc)
            self.message.setText(f"{said} Its {FILE_NAME} was not changed: {exc}")

        BackgroundOp(parent=self, op=write).success(done).failure(failed) \
            .supersede("extra-paths").run()

    def unshare_models(self) -> None:
        """Take our section out of the linked ComfyUI's extra_model_paths.yaml (off the UI
        thread)."""
        folder = self._settings().comfyui_folder
        if not folder:
            return
        comfy_folder = Path(folder)

        def done(result: LinkResult) -> None:
            what = {"removed": f"Took the '{SECTION}:' section out of {result.path}.",
                    "deleted": f"Removed {result.path} (the app had created it).",
                    "unchanged": f"{result.path} has no '{SECTION}:' section."}[result.action]
            self.message.setText(what)

        def failed(exc: BaseException) -> None:
            logger.warning("unlinking the models folder from {}: {}", comfy_folder, exc)
            self.message.setText(f"Nothing was changed: {exc}")

        BackgroundOp(parent=self, op=lambda: unlink_comfyui(comfy_folder)).success(done) \
            .failure(failed).supersede("extra-paths").run()
