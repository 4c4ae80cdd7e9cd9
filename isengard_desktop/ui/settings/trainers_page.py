"""Settings page "Trainers": where ai-toolkit, diffusion-pipe and kohya sd-scripts live.

One box per external trainer: its folder and the Python that runs it (each with Browse), a
Check button and the exact problems it found (folder missing, script missing, interpreter
missing or failing, packages missing, platform). Check runs the interpreter, so it runs on an
executor (through the injected ``check`` callable) and reports back on the UI thread. Below,
the capability matrix: what each backend supports on this computer, and why not.

The page saves nothing itself: :meth:`TrainersPageWidget.installs` gives the values for
``Settings.trainer_installs`` and the dialog hands them to its owner on OK.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QGridLayout, QGroupBox,
                               QHeaderView, QLabel, QLineEdit, QPushButton, QScrollArea,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ...core.training.installs import (TRAINER_KINDS, ExternalInstall, capability_matrix,
                                       current_platform, install_from_settings,
                                       platform_problem, validate_install)
from ...services.background import background_work
from ...services.ops import run_in_executor

__all__ = ["CheckInstall", "TrainersPageWidget", "check_in_background"]

# (kind, install, on_done(problems)) -> None; on_done runs on the UI thread
CheckInstall = Callable[[str, ExternalInstall, Callable[[list[str]], None]], None]

_MATRIX_COLUMNS = ("Trainer", "Runs here", "Sample images", "Resume", "Stop & save", "Models")
_VENV_PYTHONS = ("venv/bin/python", ".venv/bin/python", "venv/Scripts/python.exe",
                 ".venv/Scripts/python.exe")


def check_in_background(kind: str, install: ExternalInstall,
                        on_done: Callable[[list[str]], None]) -> None:
    """The default Check: :func:`validate_install` with the interpreter run, on a worker
    thread; ``on_done(problems)`` on the UI thread (a failure of the check itself is one
    problem, never silent)."""
    run_in_executor(background_work().executor(),
                    lambda: validate_install(kind, install, deep=True, timeout_s=30.0), on_done,
                    lambda exc: on_done([f"The check itself failed: {exc}"]))


class _TrainerBox(QGroupBox):
    """Folder, Python, Check and the result for one trainer."""

    def __init__(self, kind: str, install: ExternalInstall, platform: str,
                 parent: QWidget | None = None) -> None:
        info = TRAINER_KINDS[kind]
        super().__init__(info.label, parent)
        self.kind = kind
        self.setToolTip(f"{info.label}: {info.url}")
        grid = QGridLayout(self)
        self.folder = QLineEdit(install.folder)
        self.folder.setObjectName(f"trainer_folder_{kind}")
        self.folder.setPlaceholderText(f"Folder with {info.scripts[0]}")
        self.folder.setToolTip(f"Choose {info.folder_hint}.")
        self.folder_browse = QPushButton("Browse…")
        self.folder_browse.setObjectName(f"trainer_folder_browse_{kind}")
        self.folder_browse.setToolTip(f"Choose the {info.label} folder.")
        self.folder_browse.setAutoDefault(False)
        self.python = QLineEdit(install.python)
        self.python.setObjectName(f"trainer_python_{kind}")
        self.python.setPlaceholderText("e.g. <folder>/venv/bin/python")
        self.python.setToolTip("The Python interpreter of the environment where you installed "
                               f"{info.label}'s requirements.")
        self.python_browse = QPushButton("Browse…")
        self.python_browse.setObjectName(f"trainer_python_browse_{kind}")
        self.python_browse.setToolTip("Choose the python file of that environment.")
        self.python_browse.setAutoDefault(False)
        self.check_button = QPushButton("Check")
        self.check_button.setObjectName(f"trainer_check_{kind}")
        self.check_button.setToolTip("Check the folder, the script, the interpreter and the "
                                     "packages it needs (runs the interpreter once).")
        self.check_button.setAutoDefault(False)
        self.result = QLabel()
        self.result.setObjectName(f"trainer_result_{kind}")
        self.result.setWordWrap(True)
        grid.addWidget(QLabel("Folder"), 0, 0)
        grid.addWidget(self.folder, 0, 1)
        grid.addWidget(self.folder_browse, 0, 2)
        grid.addWidget(QLabel("Python"), 1, 0)
        grid.addWidget(self.python, 1, 1)
        grid.addWidget(self.python_browse, 1, 2)
        grid.addWidget(self.check_button, 2, 2)
        grid.addWidget(self.result, 2, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        why_not = platform_problem(kind, platform)
        self.show_result(why_not, error=bool(why_not))
        self.folder_browse.clicked.connect(self._browse_folder)
        self.python_browse.clicked.connect(self._browse_python)

    def install(self) -> ExternalInstall:
        return ExternalInstall(self.folder.text().strip(), self.python.text().strip())

    def show_result(self, text: str, *, error: bool) -> None:
        self.result.setText(text)
        self.result.setProperty("error", error)
        self.result.style().unpolish(self.result)
        self.result.style().polish(self.result)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, f"{TRAINER_KINDS[self.kind].label} "
                                                        "folder", self.folder.text())
        if not folder:
            return
        self.folder.setText(folder)
        if not self.python.text().strip():   # the usual venv inside the checkout
            found = next((Path(folder) / p for p in _VENV_PYTHONS
                          if (Path(folder) / p).is_file()), None)
            if found is not None:
                self.python.setText(str(found))

    def _browse_python(self) -> None:
        start = self.python.text() or self.folder.text()
        path, _ = QFileDialog.getOpenFileName(self, f"Python for "
                                                    f"{TRAINER_KINDS[self.kind].label}", start)
        if path:
            self.python.setText(path)


class TrainersPageWidget(QWidget):
    """External trainer installs, their Check, and the capability matrix."""

    def __init__(self, installs: dict[str, dict[str, str]], check: CheckInstall | None = None,
                 platform: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._check = check or check_in_background
        self._platform = platform or current_platform()
        self._closed = {"closed": False}
        closed = self._closed
        self.destroyed.connect(lambda *_: closed.update(closed=True))

        intro = QLabel("Use a trainer you already have installed: choose its folder and the "
                       "Python it runs with, then press Check. The Training tab offers each "
                       "trainer that is set up and can run here.")
        intro.setWordWrap(True)
        inner = QWidget()
        boxes_layout = QVBoxLayout(inner)
        self.boxes: dict[str, _TrainerBox] = {}
        for kind in TRAINER_KINDS:
            box = _TrainerBox(kind, install_from_settings(installs, kind), self._platform)
            box.check_button.clicked.connect(lambda _=False, k=kind: self.check(k))
            self.boxes[kind] = box
            boxes_layout.addWidget(box)
        boxes_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)

        self.matrix = QTableWidget(0, len(_MATRIX_COLUMNS))
        self.matrix.setObjectName("trainer_matrix")
        self.matrix.setHorizontalHeaderLabels(list(_MATRIX_COLUMNS))
        self.matrix.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix.verticalHeader().setVisible(False)
        # every column fits the page: cells wrap and rows grow, no sideways scrolling
        self.matrix.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.matrix.verticalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.matrix.setWordWrap(True)
        self.matrix.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.matrix.setToolTip("What each trainer supports on this computer; hover a row for "
                               "the reason when it cannot run here.")
        self._fill_matrix()

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(scroll, 3)
        layout.addWidget(QLabel("What each trainer can do here"))
        layout.addWidget(self.matrix, 2)

    def _fill_matrix(self) -> None:
        rows = capability_matrix(self._platform)
        self.matrix.setRowCount(len(rows))
        for r, row in enumerate(rows):
            runs = "yes" if row.supported else f"no: {row.reason}"
            for c, text in enumerate((row.label, runs, row.samples, row.resume, row.stop,
                                      row.models)):
                item = QTableWidgetItem(text)
                item.setToolTip(row.reason or text)
                self.matrix.setItem(r, c, item)

    def installs(self) -> dict[str, dict[str, str]]:
        """``Settings.trainer_installs`` as shown (trainers with nothing set are left out)."""
        out = {}
        for kind, box in self.boxes.items():
            install = box.install()
            if install.folder or install.python:
                out[kind] = {"folder": install.folder, "python": install.python}
        return out

    def check(self, kind: str) -> None:
        """Check ``kind``'s install as typed; the problems (or "ready") appear in its box."""
        box = self.boxes[kind]
        install = box.install()
        box.check_button.setEnabled(False)
        box.show_result(f"Checking {TRAINER_KINDS[kind].label}…", error=False)
        closed = self._closed

        def done(problems: list[str]) -> None:
            if closed["closed"]:
                return
            box.check_button.setEnabled(True)
            if problems:
                box.show_result("\n".join(f"• {p}" for p in problems), error=True)
            else:
                box.show_result(f"Ready: {install.folder} runs with {install.python}.",
                                error=False)

        self._check(kind, install, done)
