"""Settings page for ComfyUI: the managed local server (ComfyUI folder + its Python) and the
list of remote ComfyUI servers on the network.

Check (local install) runs on a small executor: it looks for ``main.py``, then asks the chosen
Python which version it is and which of ComfyUI's packages it can find (``find_spec`` only, no
heavy import), with a timeout. Test (remote URL) asks ``/system_stats`` through Qt's own
asynchronous network access, so the dialog never waits on disk, a process or the network.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, QUrl
from PySide6.QtNetwork import QNetworkAccessManager, QNetworkReply, QNetworkRequest
from loguru import logger
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton, QVBoxLayout, QWidget)

from ...core.discovery import in_desktop_app
from ...core.comfy_extra_paths import FILE_NAME, SECTION, LinkResult, link_comfyui, unlink_comfyui
from ...core.paths import AppPaths, ensure_model_layout
from ...core.platform_support import run_text
from ...core.frozen import child_environ
from ...core.secrets import SecretStore
from ...core.settings import Settings, valid_ollama_model, valid_ollama_url
from .funnel_box import FunnelSizesBox
from ...services.generation.comfy_launch import desktop_hint, find_python
from ..generate.backend_bar import gpu_words
from ...services.background import BackgroundOp, alive
from ..widgets.comfy_install import ComfyInstallWidget
from .upload_token import UploadTokenWidget

__all__ = ["ComfyUIPageWidget", "check_local_install", "normalize_server_url",
           "describe_system_stats", "share_models_change"]

# Packages a ComfyUI checkout imports at start-up (module names for find_spec).
COMFY_MODULES = ("torch", "torchvision", "torchsde", "safetensors", "aiohttp", "yaml", "PIL",
                 "einops", "transformers", "scipy", "tqdm", "psutil", "spandrel", "kornia",
                 "av")
CHECK_TIMEOUT_S = 30
TEST_TIMEOUT_MS = 6000

_PROBE = (
    "import importlib.util, json, sys\n"
    f"mods = {list(COMFY_MODULES)!r}\n"
    "missing = [m for m in mods if importlib.util.find_spec(m) is None]\n"
    "print(json.dumps({'version': sys.version.split()[0], 'missing': missing}))\n"
)


def check_local_install(folder: str, python: str) -> tuple[bool, list[str]]:
    """Check a ComfyUI folder and the Python that should run it (any thread; may take a few
    seconds). Returns (ready, lines): each line names one thing that is right or wrong."""
    lines: list[str] = []
    folder = folder.strip()
    python = python.strip()
    if not folder:
        return False, ["Choose the ComfyUI folder: the one that holds main.py, comfy/ and "
                       "models/."]
    root = Path(folder).expanduser()
    if not root.is_dir():
        return False, [f"The ComfyUI folder {root} does not exist (or is not a folder)."]
    if not (root / "main.py").is_file():
        nested = next((p for p in (root / "ComfyUI", root / "comfyui")
                       if (p / "main.py").is_file()), None)
        hint = (f" It looks like ComfyUI is in {nested}: choose that folder." if nested
                else desktop_hint(root)
                or " Choose the folder of a ComfyUI checkout (the one with main.py).")
        return False, [f"{root} has no main.py, so it is not a ComfyUI folder.{hint}"]
    lines.append(f"ComfyUI found: {root / 'main.py'}")
    if not python:
        found = find_python(root)
        hint = (f" There is one at {found}; choose it with Browse." if found
                else " Choose the python executable of the environment ComfyUI was installed "
                     "into (its venv's bin/python).")
        return False, lines + [f"No Python interpreter chosen for ComfyUI.{hint}"]
    exe = Path(python).expanduser()
    if not exe.is_file():
        return False, lines + [f"The Python interpreter {exe} does not exist."]
    if os.name != "nt" and not os.access(exe, os.X_OK):
        return False, lines + [f"{exe} is not executable (check its permissions)."]
    try:
        out = run_text([str(exe), "-c", _PROBE], timeout=CHECK_TIMEOUT_S, cwd=str(root),
                       env=child_environ())
    except subprocess.TimeoutExpired:
        return False, lines + [f"{exe} did not answer within {CHECK_TIMEOUT_S} s."]
    except OSError as exc:
        return False, lines + [f"{exe} could not be started: {exc.strerror or exc}."]
    if out.returncode != 0:
        err = (out.stderr.strip().splitlines() or ["no error output"])[-1]
        return False, lines + [f"{exe} failed to run ({err})."]
    try:
        info = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, lines + [f"{exe} did not print what a Python interpreter prints; is it "
                               "really python?"]
    version = str(info.get("version", "?"))
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor and major_minor < (3, 9):
        return False, lines + [f"{exe} is Python {version}; ComfyUI needs Python 3.9 or newer."]
    lines.append(f"Python {version}: {exe}")
    missing = list(info.get("missing") or [])
    if missing:
        names = ", ".join("pillow" if m == "PIL" else "pyyaml" if m == "yaml" else m
                          for m in missing)
        return False, lines + [f"This Python lacks packages ComfyUI needs: {names}. Install "
                               f"them with: {exe} -m pip install -r "
                               f"{root / 'requirements.txt'}"]
    lines.append("All the packages ComfyUI needs are installed. Ready to start.")
    return True, lines


def _user_run(folder: Path, paths: AppPaths) -> bool:
    """A ComfyUI the user runs themselves: not one inside the app's data folder (the managed
    install gets its model paths on the command line at each start), nor the code inside the
    ComfyUI Desktop app (its files belong to that app)."""
    if in_desktop_app(folder):
        return False
    try:
        return not folder.resolve().is_relative_to(paths.data.resolve())
    except OSError:
        return True


def share_models_change(old: str, new: str, share: bool, paths: AppPaths) -> list[str]:
    """The ComfyUI folder changed from ``old`` to ``new`` (either may be ""): take our
    ``isengard:`` section out of ``old``'s extra_model_paths.yaml and, with ``share``, write it
    into ``new``'s (only a folder with main.py that the user runs themselves). Blocking (a
    worker thread); returns one sentence per file touched. Raises ExtraPathsError (naming the
    file and line) when a file cannot be edited safely; nothing is written to that file."""
    said: list[str] = []
    old_path = Path(old).expanduser() if old else None
    new_path = Path(new).expanduser() if new else None
    if old_path is not None and old_path != new_path and _user_run(old_path, paths):
        result = unlink_comfyui(old_path)
        if result.action != "unchanged":
            said.append(_said(result, paths))
    if (share and new_path is not None and new_path != old_path
            and (new_path / "main.py").is_file() and _user_run(new_path, paths)):
        ensure_model_layout(paths.models)
        said.append(_said(link_comfyui(new_path, paths.models, paths.loras), paths))
    return said


def _said(result: LinkResult, paths: AppPaths) -> str:
    return {"created": f"Created {result.path}, listing {paths.models} for that ComfyUI.",
            "added": f"Added the '{SECTION}:' section to {result.path}: that ComfyUI now "
                     f"lists {paths.models} too.",
            "replaced": f"Updated the '{SECTION}:' section in {result.path}.",
            "unchanged": f"The '{SECTION}:' section is already in {result.path}.",
            "removed": f"Took the '{SECTION}:' section out of {result.path}.",
            "deleted": f"Removed {result.path} (the app had created it)."}[result.action]


def normalize_server_url(text: str) -> tuple[str, str]:
    """(url, problem): ``192.168.1.20:8188`` → ``http://192.168.1.20:8188``; trailing slashes
    removed. ``problem`` is a sentence when the text is not a usable server address."""
    text = text.strip()
    if not text:
        return "", "Type the server's address, e.g. http://192.168.1.20:8188"
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        return "", f"{text}: the address must start with http:// or https://"
    if not parts.hostname:
        return "", f"{text}: there is no host name or IP address in it."
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "", f"{text}: the port must be a number between 1 and 65535."
    if parts.query or parts.fragment:
        return "", f"{text}: give only the server address, without ? or #."
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", ""


def describe_system_stats(url: str, data: object) -> tuple[bool, str]:
    """One sentence about a server from its ``/system_stats`` JSON."""
    if not isinstance(data, dict) or "system" not in data:
        return False, (f"{url} answered, but not like a ComfyUI server (no system stats). "
                       "Check the address and port.")
    system = data.get("system") or {}
    version = system.get("comfyui_version") or "unknown version"
    devices = data.get("devices") or []
    if devices:
        dev = devices[0]
        name = gpu_words(str(dev.get("name", "a device")))
        vram = int(dev.get("vram_total") or 0)
        gpu = f"{name} ({vram / 2**30:.1f} GB)" if vram else name
    else:
        gpu = "no GPU reported"
    return True, f"Reachable: ComfyUI {version} on {gpu}."


def _message(label: QLabel, text: str, *, error: bool) -> None:
    label.setText(text)
    label.setProperty("error", error)
    label.setObjectName("ErrorText" if error else "")
    label.setStyleSheet("color: #f0a3a3;" if error else "color: #9ccfa8;")
    label.setVisible(bool(text))


class ComfyUIPageWidget(QWidget):
    """Settings → ComfyUI. Read the choices with :meth:`comfyui_folder`,
    :meth:`comfyui_python` and :meth:`remote_servers` (the dialog saves them on OK)."""

    def __init__(self, settings: Settings, parent: QWidget | None = None,
                 secrets: SecretStore | None = None, comfy_install: object = None,
                 paths: AppPaths | None = None) -> None:
        """``comfy_install``: the ComfyInstallService; with it the page shows the managed
        install's box (version, Install/Update, progress, log). ``paths``: with them the page
        offers to list the app's models folder in a ComfyUI the user runs themselves
        (:meth:`share_models`, called by the dialog on OK)."""
        super().__init__(parent)
        self._paths = paths
        self.setObjectName("comfyui_page")
        self._net: QNetworkAccessManager | None = None
        self._replies: list[QNetworkReply] = []
        layout = QVBoxLayout(self)

        intro = QLabel("Generate makes pictures through ComfyUI: on this computer (Isengard "
                       "starts and stops it for you) and/or on ComfyUI servers elsewhere on "
                       "your network. Set up either one, or both.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        # -- managed local server -------------------------------------------------------------
        local = QGroupBox("ComfyUI on this computer")
        local.setToolTip("Isengard starts this ComfyUI on 127.0.0.1 when the app starts, makes "
                         "your trained LoRAs visible to it, and stops it when the app quits.")
        lv = QVBoxLayout(local)
        self.folder_edit = QLineEdit(settings.comfyui_folder)
        self.folder_edit.setObjectName("comfyui_folder_input")
        self.folder_edit.setPlaceholderText("e.g. ~/ComfyUI (the folder with main.py)")
        self.folder_edit.setToolTip("The ComfyUI folder: the one that holds main.py, comfy/ and "
                                    "models/.")
        folder_browse = QPushButton("Browse…")
        folder_browse.setObjectName("comfyui_folder_browse")
        folder_browse.setToolTip("Choose the ComfyUI folder.")
        folder_browse.clicked.connect(self._browse_folder)
        self.python_edit = QLineEdit(settings.comfyui_python)
        self.python_edit.setObjectName("comfyui_python_input")
        self.python_edit.setPlaceholderText("e.g. ~/ComfyUI/venv/bin/python")
        self.python_edit.setToolTip("The Python interpreter ComfyUI was installed into (usually "
                                    "its venv's bin/python, or python_embeded\\python.exe in "
                                    "the Windows portable build).")
        python_browse = QPushButton("Browse…")
        python_browse.setObjectName("comfyui_python_browse")
        python_browse.setToolTip("Choose the python executable that runs ComfyUI.")
        python_browse.clicked.connect(self._browse_python)
        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Folder"))
        row1.addWidget(self.folder_edit, 1)
        row1.addWidget(folder_browse)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Python"))
        row2.addWidget(self.python_edit, 1)
        row2.addWidget(python_browse)
        self.check_button = QPushButton("Check")
        self.check_button.setObjectName("comfyui_check")
        self.check_button.setToolTip("Check that the folder is a ComfyUI checkout and that this "
                                     "Python has what ComfyUI needs. Nothing is started.")
        self.check_button.clicked.connect(self.check_local)
        self.check_result = QLabel("")
        self.check_result.setObjectName("comfyui_check_result")
        self.check_result.setWordWrap(True)
        self.check_result.setVisible(False)
        self.check_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row3 = QHBoxLayout()
        row3.addWidget(self.check_button)
        row3.addStretch(1)
        self.install_box: ComfyInstallWidget | None = None
        if comfy_install is not None:
            self.install_box = ComfyInstallWidget(comfy_install, self)
            self.install_box.installed.connect(self.use_installed)
            lv.addWidget(self.install_box)
        lv.addLayout(row1)
        lv.addLayout(row2)
        lv.addLayout(row3)
        lv.addWidget(self.check_result)
        # same wording as the wizard's links page (ui/wizard/links_page.py share_box)
        self.share_box = QCheckBox("Let this ComfyUI list this app's models too")
        self.share_box.setObjectName("comfyui_share_models")
        self.share_box.setChecked(True)
        self.share_note = QLabel("")
        self.share_note.setObjectName("comfyui_share_note")
        self.share_note.setWordWrap(True)
        self.share_result = QLabel("")
        self.share_result.setObjectName("comfyui_share_result")
        self.share_result.setWordWrap(True)
        self.share_result.setVisible(False)
        if paths is not None:
            self.share_box.setToolTip(
                f"On OK, writes one section named '{SECTION}' into {FILE_NAME} in the ComfyUI "
                f"folder chosen above (the file is created if it is not there), listing "
                f"{paths.models} (in ComfyUI's layout: checkpoints, vae, loras, …) and "
                f"{paths.loras}, so models downloaded here and trained LoRAs show up when you "
                "start that ComfyUI yourself. Your own sections and comments are kept exactly. "
                "Changing or clearing the folder takes the section out of the old folder's "
                "file again.")
            self.share_note.setText(
                f"Writes one section, '{SECTION}:', into {FILE_NAME} in that ComfyUI's folder "
                "(created if missing), when the folder changes and you press OK. Your other "
                "sections and comments stay exactly as they are; unlinking the folder removes "
                "the section.")
            lv.addWidget(self.share_box)
            lv.addWidget(self.share_note)
            lv.addWidget(self.share_result)
        else:
            self.share_box.setVisible(False)
            self.share_note.setVisible(False)
        layout.addWidget(local)

        # -- remote servers ------------------------------------------------------------------
        remote = QGroupBox("ComfyUI servers on the network")
        remote.setToolTip("Other computers running ComfyUI (started with --listen). Isengard "
                          "checks them every few seconds and sends each job to a free one "
                          "that has the models it needs.")
        rv = QVBoxLayout(remote)
        self.server_list = QListWidget()
        self.server_list.setObjectName("comfyui_servers_list")
        self.server_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.server_list.setToolTip("Remote ComfyUI servers, by address.")
        self.server_list.addItems(list(settings.remote_servers))
        self.server_list.setMaximumHeight(120)
        self.url_edit = QLineEdit()
        self.url_edit.setObjectName("comfyui_server_input")
        self.url_edit.setPlaceholderText("http://192.168.1.20:8188")
        self.url_edit.setToolTip("The address of a ComfyUI server: http://host:port (8188 is "
                                 "ComfyUI's usual port).")
        self.url_edit.returnPressed.connect(self.add_server)
        self.add_button = QPushButton("Add")
        self.add_button.setObjectName("comfyui_server_add")
        self.add_button.setToolTip("Add this address to the list.")
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(self.add_server)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("comfyui_server_remove")
        self.remove_button.setToolTip("Forget the selected servers (nothing on them changes).")
        self.remove_button.setAutoDefault(False)
        self.remove_button.clicked.connect(self.remove_servers)
        self.test_button = QPushButton("Test")
        self.test_button.setObjectName("comfyui_server_test")
        self.test_button.setToolTip("Ask the selected server (or the address typed) for its "
                                    "version and GPU.")
        self.test_button.setAutoDefault(False)
        self.test_button.clicked.connect(self.test_server)
        add_row = QHBoxLayout()
        add_row.addWidget(self.url_edit, 1)
        add_row.addWidget(self.add_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.test_button)
        buttons.addStretch(1)
        self.server_message = QLabel("")
        self.server_message.setObjectName("comfyui_server_message")
        self.server_message.setWordWrap(True)
        self.server_message.setVisible(False)
        rv.addWidget(self.server_list)
        rv.addLayout(add_row)
        rv.addLayout(buttons)
        rv.addWidget(self.server_message)
        # the selected server's LoRA upload token + how to install our node there
        self.upload_token: UploadTokenWidget | None = None
        if secrets is not None:
            self.upload_token = UploadTokenWidget(secrets, self._selected_server, self)
            rv.addWidget(self.upload_token)
            self.server_list.itemSelectionChanged.connect(self.upload_token.refresh)
            self.upload_token.refresh()
        layout.addWidget(remote)
        layout.addWidget(self._ollama_box(settings))
        self.funnel_box = FunnelSizesBox(settings)
        layout.addWidget(self.funnel_box)
        layout.addStretch(1)

    def _ollama_box(self, settings: Settings) -> QGroupBox:
        box = QGroupBox("Prompt refinement with a local LLM (Ollama, optional)")
        box.setToolTip("Generate → \"Refine with local LLM…\" asks an Ollama server to expand, "
                       "structure and rewrite your prompt. Nothing is contacted until you open "
                       "the Generate tab.")
        form = QFormLayout(box)
        self.ollama_url_edit = QLineEdit(settings.ollama_url)
        self.ollama_url_edit.setObjectName("ollama_url")
        self.ollama_url_edit.setToolTip("The Ollama server's address (its default is "
                                        "http://127.0.0.1:11434).")
        self.ollama_model_edit = QLineEdit(settings.ollama_model)
        self.ollama_model_edit.setObjectName("ollama_model")
        self.ollama_model_edit.setToolTip("An installed Ollama model (`ollama list`), e.g. "
                                          "llama3.2 or qwen2.5:7b; install one with "
                                          "`ollama pull <name>`.")
        self.ollama_message = QLabel("")
        self.ollama_message.setObjectName("ollama_message")
        self.ollama_message.setWordWrap(True)
        self.ollama_message.setVisible(False)
        for edit in (self.ollama_url_edit, self.ollama_model_edit):
            edit.textChanged.connect(self._check_ollama_fields)
        form.addRow("Address", self.ollama_url_edit)
        form.addRow("Model", self.ollama_model_edit)
        form.addRow(self.ollama_message)
        return box

    def _check_ollama_fields(self) -> None:
        problems = []
        if not valid_ollama_url(self.ollama_url_edit.text()):
            problems.append("Address: write http://host:port (e.g. http://127.0.0.1:11434).")
        if not valid_ollama_model(self.ollama_model_edit.text()):
            problems.append("Model: a name like llama3.2 or qwen2.5:7b, without spaces.")
        self.ollama_message.setText(" ".join(problems))
        self.ollama_message.setStyleSheet("color: #f0a3a3;")
        self.ollama_message.setVisible(bool(problems))

    def ollama(self, old: Settings) -> tuple[str, str]:
        """The Ollama address and model typed; an invalid one keeps ``old``'s value."""
        url = self.ollama_url_edit.text().strip()
        model = self.ollama_model_edit.text().strip()
        return (url if valid_ollama_url(url) else old.ollama_url,
                model if valid_ollama_model(model) else old.ollama_model)

    def use_installed(self, folder: str, python: str) -> None:
        """The managed install finished: point the folder and Python at it (OK saves; the
        app has already saved them too)."""
        self.folder_edit.setText(folder)
        self.python_edit.setText(python)

    # -- values ----------------------------------------------------------------------------------
    def comfyui_folder(self) -> str:
        return self.folder_edit.text().strip()

    def comfyui_python(self) -> str:
        return self.python_edit.text().strip()

    def _selected_server(self) -> str:
        selected = self.server_list.selectedItems()
        return selected[0].text() if selected else ""

    def remote_servers(self) -> list[str]:
        return [self.server_list.item(i).text() for i in range(self.server_list.count())]

    # -- our section in a user-run ComfyUI's extra_model_paths.yaml -----------------------
    def share_models(self, old_folder: str) -> None:
        """The dialog's OK: the ComfyUI folder may have changed from ``old_folder``; update
        our section in the old and new folders' extra_model_paths.yaml off the UI thread
        (:func:`share_models_change`). The outcome is logged and shown in
        :attr:`share_result`."""
        paths, new, share = self._paths, self.comfyui_folder(), self.share_box.isChecked()
        if paths is None or old_folder.strip() == new:
            return

        def done(said: list[str]) -> None:
            for line in said:
                logger.info("ComfyUI models link: {}", line)
            _message(self.share_result, " ".join(said), error=False)

        def failed(exc: BaseException) -> None:
            logger.warning("updating {} for the ComfyUI folder: {}", FILE_NAME, exc)
            _message(self.share_result, f"{FILE_NAME} was not changed: {exc}", error=True)

        BackgroundOp(parent=self,
                     op=lambda: share_models_change(old_folder.strip(), new, share, paths)) \
            .success(done).failure(failed).in_lane("comfy-extra-paths").run()

    # -- local install -----------------------------------------------------------------------
    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "ComfyUI folder", self.comfyui_folder())
        if folder:
            self.folder_edit.setText(folder)

    def _browse_python(self) -> None:
        start = self.comfyui_python() or self.comfyui_folder()
        path, _ = QFileDialog.getOpenFileName(self, "Python interpreter for ComfyUI", start)
        if path:
            self.python_edit.setText(path)

    def check_local(self) -> None:
        """Check the folder and Python in the background; the result lands in
        :attr:`check_result`."""
        folder, python = self.comfyui_folder(), self.comfyui_python()
        self.check_button.setEnabled(False)
        _message(self.check_result, "Checking…", error=False)

        def done(result: tuple[bool, list[str]]) -> None:
            ok, lines = result
            self.check_button.setEnabled(True)
            _message(self.check_result, "\n".join(lines), error=not ok)

        def failed(exc: BaseException) -> None:
            done((False, [f"The check could not run: {exc}"]))

        BackgroundOp(parent=self, op=lambda: check_local_install(folder, python)) \
            .success(done).failure(failed).supersede("local-check").run()

    # -- remote servers ----------------------------------------------------------------------
    def add_server(self) -> None:
        url, problem = normalize_server_url(self.url_edit.text())
        if problem:
            _message(self.server_message, problem, error=True)
            return
        if url in self.remote_servers():
            _message(self.server_message, f"{url} is already in the list.", error=False)
            return
        self.server_list.addItem(url)
        self.url_edit.clear()
        _message(self.server_message, f"Added {url}. Press OK to save; Test checks it now.",
                 error=False)

    def remove_servers(self) -> None:
        for item in self.server_list.selectedItems():
            self.server_list.takeItem(self.server_list.row(item))
        _message(self.server_message, "", error=False)

    def test_server(self) -> None:
        """Ask one server for /system_stats; the answer lands in :attr:`server_message`."""
        selected = self.server_list.selectedItems()
        if selected:
            url = selected[0].text()
        else:
            url, problem = normalize_server_url(self.url_edit.text())
            if problem:
                _message(self.server_message, "Select a server in the list or type an address "
                                              "to test.", error=True)
                return
        if self._net is None:
            self._net = QNetworkAccessManager(self)
        request = QNetworkRequest(QUrl(url + "/system_stats"))
        request.setTransferTimeout(TEST_TIMEOUT_MS)
        _message(self.server_message, f"Testing {url}…", error=False)
        self.test_button.setEnabled(False)
        reply = self._net.get(request)
        self._replies.append(reply)
        reply.finished.connect(lambda: self._on_tested(url, reply))

    def _on_tested(self, url: str, reply: QNetworkReply) -> None:
        if reply in self._replies:
            self._replies.remove(reply)
        reply.deleteLater()
        if not alive(self):
            return
        self.test_button.setEnabled(True)
        if reply.error() != QNetworkReply.NetworkError.NoError:
            err = reply.error()
            if err == QNetworkReply.NetworkError.ConnectionRefusedError:
                why = ("the connection was refused. Is ComfyUI running there, started with "
                       "--listen so other computers can reach it?")
            elif err in (QNetworkReply.NetworkError.OperationCanceledError,
                         QNetworkReply.NetworkError.TimeoutError):
                why = (f"no answer within {TEST_TIMEOUT_MS // 1000} s. Check the address, the "
                       "port and any firewall between the two computers.")
            elif err == QNetworkReply.NetworkError.HostNotFoundError:
                why = "that host name is unknown on this network."
            else:
                why = f"{reply.errorString()}."
            _message(self.server_message, f"Could not reach {url}: {why}", error=True)
            return
        try:
            data = json.loads(bytes(reply.readAll().data()).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            data = None
        ok, text = describe_system_stats(url, data)
        _message(self.server_message, text, error=not ok)

    def closeEvent(self, event) -> None:  # noqa: ANN001,D102
        for reply in list(self._replies):
            reply.abort()
        super().closeEvent(event)

