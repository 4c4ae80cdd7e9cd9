"""The first-run set-up assistant: a dialog with a list of steps on the left and one page at a
time on the right. Every step can be skipped; closing it in any way marks it as seen
(``Settings.wizard_completed``) so it does not open by itself again.

Everything it needs is injected (``app.py: open_wizard`` passes the real ones, tests pass
fakes): the settings getter and saver, the runtime service, ``read_machine`` (GPU detection
and the lock choice), ``find_python`` (``core.runtime.trainer_python``) and ``discover``
(``core.discovery``), and the download service for the "Base models" page. Detection and
disk reads run off the UI thread (BackgroundOp).

Signals:
    create_character_requested(): the last step's button: open Characters → New character.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QListWidget, QPushButton, QStackedWidget,
                               QVBoxLayout, QWidget)

from ... import APP_NAME
from ...core.hardware.locks import LockChoice
from ...core.hardware.machine import MachineInfo
from ...core.paths import AppPaths
from ...core.runtime.status import RuntimeDevice
from ...core.settings import Settings
from .base_models_page import BaseModelsPage
from .common import WizardPage
from .links_page import Discover, LinksPage
from .pages import CharacterPage, DataFolderPage, MachinePage, ReadMachine, WelcomePage
from .runtime_page import FindPython, RuntimePage

__all__ = ["PAGES", "FirstRunWizard"]

# the dark palette draws an unchecked radio button almost black on black: give it a ring
RADIO_STYLE = (
    "QRadioButton::indicator { width: 12px; height: 12px; border-radius: 7px; "
    "border: 1px solid #6b7384; background: #111318; }"
    "QRadioButton::indicator:checked { border: 1px solid #5b8def; background: qradialgradient("
    "cx:0.5, cy:0.5, radius:0.5, fx:0.5, fy:0.5, stop:0 #7ea6f5, stop:0.5 #7ea6f5, "
    "stop:0.6 #111318, stop:1 #111318); }"
    # the same for tick boxes (the Base models page): a ring when off, filled blue when on
    "QCheckBox::indicator { width: 12px; height: 12px; border-radius: 3px; "
    "border: 1px solid #6b7384; background: #111318; }"
    "QCheckBox::indicator:checked { border: 1px solid #5b8def; background: #5b8def; }"
    "QCheckBox::indicator:disabled { border: 1px solid #3a3f4a; background: #1a1d23; }")
PAGES = ("welcome", "machine", "data", "runtime", "models", "base_models", "character")
SIZE = QSize(900, 600)


class FirstRunWizard(QDialog):
    create_character_requested = Signal()

    def __init__(self, paths: AppPaths, settings: Callable[[], Settings],
                 save_settings: Callable[[Settings], None], runtime: Any,
                 read_machine: ReadMachine, find_python: FindPython, discover: Discover,
                 download_sizes: Mapping[RuntimeDevice, int] | None = None,
                 parent: QWidget | None = None, downloads: Any = None,
                 comfy_install: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName("first_run_wizard")
        self.setWindowTitle(f"Set up {APP_NAME}")
        self.setMinimumSize(QSize(760, 520))
        self.resize(SIZE)
        self.setStyleSheet(RADIO_STYLE)
        self._settings = settings
        self._save = save_settings
        self._quitting = False

        self.welcome = WelcomePage()
        self.machine = MachinePage(read_machine)
        self.data = DataFolderPage(paths)
        self.runtime = RuntimePage(runtime, find_python, download_sizes)
        self.links = LinksPage(discover, settings, save_settings, paths=paths,
                               comfy_install=comfy_install)
        self.base_models = BaseModelsPage(paths, settings, downloads)
        self.character = CharacterPage()
        self.pages: list[WizardPage] = [self.welcome, self.machine, self.data, self.runtime,
                                        self.links, self.base_models, self.character]
        assert tuple(p.key for p in self.pages) == PAGES

        self.steps = QListWidget()
        self.steps.setObjectName("wizard_steps")
        self.steps.setFixedWidth(190)
        self.steps.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.steps.setToolTip("The set-up steps; click one to go there. Each can be skipped.")
        self.steps.setStyleSheet("QListWidget { background: #14161b; border: none; "
                                 "padding-top: 12px; } QListWidget::item { padding: 8px 14px; }"
                                 " QListWidget::item:selected { background: #223152; "
                                 "color: #eef1f6; }")
        self.stack = QStackedWidget()
        for page in self.pages:
            self.steps.addItem(page.title)
            self.stack.addWidget(page)
            page.completeness_changed.connect(self._update_steps)

        self.skip_all = QPushButton("Skip set-up")
        self.skip_all.setObjectName("wizard_skip_all")
        self.skip_all.setToolTip("Close the assistant. Help → Set-up assistant… opens it "
                                 "again; the tabs say what is still missing.")
        self.back_button = QPushButton("Back")
        self.next_button = QPushButton("Next")
        self.next_button.setObjectName("wizard_next")
        self.next_button.setProperty("primary", True)
        self.next_button.setDefault(True)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(24, 8, 24, 16)
        buttons.setSpacing(8)
        buttons.addWidget(self.skip_all)
        buttons.addStretch(1)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.next_button)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(0)
        right.addWidget(self.stack, 1)
        right.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.steps)
        layout.addLayout(right, 1)

        self.steps.currentRowChanged.connect(self._show_row)
        self.skip_all.clicked.connect(self.reject)
        self.back_button.clicked.connect(lambda: self.go_to(self.stack.currentIndex() - 1))
        self.next_button.clicked.connect(self._next)
        self.machine.machine_read.connect(self._on_machine_read)
        self.finished.connect(self._mark_seen)

        # Enter means Next, whichever button has the focus (a focused "Skip set-up" would
        # otherwise become the default button and Enter would close the assistant)
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)
        self.next_button.setDefault(True)
        self.machine.refresh()          # both start now, off the UI thread: ready when shown
        self.links.refresh()
        self.go_to("welcome")

    # -- navigation ----------------------------------------------------------------------------
    def current_page(self) -> str:
        return self.pages[self.stack.currentIndex()].key

    def go_to(self, page: str | int) -> None:
        """Show ``page`` (a key from :data:`PAGES`, or an index); unknown keys show the
        first page. ``"base_models:sdxl"`` also ticks that family there, and
        ``"base_models:wan21-i2v"`` that video set."""
        if isinstance(page, str) and ":" in page:
            page, _, family = page.partition(":")
            if page == "base_models" and family:
                self.base_models.want_family(family)
        index = PAGES.index(page) if isinstance(page, str) and page in PAGES else page
        if not isinstance(index, int):
            index = 0
        index = max(0, min(index, len(self.pages) - 1))
        self.steps.setCurrentRow(index)     # → _show_row

    def _show_row(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        self.next_button.setFocus()
        self.pages[row].entered()
        self._update_steps()

    def _next(self) -> None:
        row = self.stack.currentIndex()
        if row == len(self.pages) - 1:
            self._create_character()
        else:
            self.go_to(row + 1)

    def _update_steps(self) -> None:
        row = self.stack.currentIndex()
        for i, page in enumerate(self.pages):
            mark = "✓ " if page.has_goal and page.complete else ""
            self.steps.item(i).setText(f"{mark}{page.title}")
        page = self.pages[row]
        self.back_button.setEnabled(row > 0)
        last = row == len(self.pages) - 1
        self.skip_all.setText("Close" if last else "Skip set-up")
        if last:
            self.next_button.setText("Create my first character")
            self.next_button.setToolTip("Close the assistant and open Characters → New "
                                        "character.")
        elif row == 0:
            self.next_button.setText("Start")
            self.next_button.setToolTip("Go to the first step.")
        else:
            self.next_button.setText(page.next_text())
            self.next_button.setToolTip("Go to the next step." if page.complete else
                                        "Go on without this step; you can come back later "
                                        "(Help → Set-up assistant…).")

    # -- results -------------------------------------------------------------------------------
    def _on_machine_read(self, machine: MachineInfo, lock: LockChoice) -> None:
        self.runtime.set_lock(lock)
        gpu = machine.best_gpu
        self.base_models.set_vram(gpu.vram_mb / 1024 if gpu is not None and gpu.vram_mb
                                  else None)

    def _create_character(self) -> None:
        self.accept()
        self.create_character_requested.emit()

    def close_for_quit(self) -> None:
        """Close because the app quits: not "skipped", so it opens again next time."""
        self._quitting = True
        self.close()

    def _mark_seen(self, _result: int) -> None:
        """Finished or skipped: the assistant no longer opens by itself."""
        if self._quitting:
            return
        current = self._settings()
        if not current.wizard_completed:
            self._save(dataclasses.replace(current, wizard_completed=True))
