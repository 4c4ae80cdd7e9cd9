"""The main window: five tabs, a menu, and a status bar for activity and errors.

Widgets are built here; services are wired to them in ``app.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (QApplication, QLabel, QMainWindow, QMessageBox, QPushButton,
                               QSystemTrayIcon, QTabWidget, QWidget)

from .. import APP_NAME, __version__
from .dialogs.getting_started import GettingStartedDialog
from .widgets.progress_panel import ProgressPanelWidget

TAB_NAMES = ("Characters", "Dataset", "Training", "Generate", "Video")
PREFERRED_SIZE = QSize(1280, 820)
MINIMUM_SIZE = QSize(900, 600)
WINDOW_FRAME = QSize(0, 40)   # about a title bar and borders


def initial_size(available: QSize | None) -> QSize:
    """The first window size: the preferred one, shrunk to the screen's free area (a 1280×800
    screen cut the bottom of every column off a 820 px tall window), never below the minimum."""
    if available is None or available.isEmpty():
        return PREFERRED_SIZE
    return PREFERRED_SIZE.boundedTo(available).expandedTo(MINIMUM_SIZE)


class MainWindow(QMainWindow):
    def __init__(self, tabs: dict[str, QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(APP_NAME)
        screen = QApplication.primaryScreen()
        # the frame (title bar) is outside the client area: leave room for it
        free = screen.availableGeometry().size() - WINDOW_FRAME if screen else None
        self.resize(initial_size(free))
        self.setMinimumSize(MINIMUM_SIZE)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.tabBar().setDrawBase(False)
        for name in TAB_NAMES:
            self.tabs.addTab(tabs[name], name)
        self.setCentralWidget(self.tabs)

        self.status_message = QLabel("")
        self.status_message.setObjectName("StatusMessage")
        self.status_message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = ProgressPanelWidget()
        self.statusBar().addWidget(self.status_message, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.downloads_button = QPushButton("Downloads")
        self.downloads_button.setFlat(True)
        self.downloads_button.setToolTip("Model downloads: progress, pause, resume, retry.")
        self.statusBar().addPermanentWidget(self.downloads_button)
        self._clear_timer = QTimer(self)
        self._clear_timer.setSingleShot(True)
        self._clear_timer.timeout.connect(lambda: self.status_message.setText(""))

        self.settings_action = QAction("&Settings…", self)
        # the platform's Preferences key (none on most Linux desktops, so Ctrl+, there too)
        self.settings_action.setShortcuts(
            [*QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences),
             QKeySequence("Ctrl+,")])
        self.open_data_action = QAction("Open &data folder", self)
        self.open_logs_action = QAction("Open &logs folder", self)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        about_action = QAction("&About", self)
        about_action.triggered.connect(self._about)
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.settings_action)
        file_menu.addAction(self.open_data_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        self.getting_started_action = QAction("&Getting started", self)
        self.getting_started_action.setShortcut(QKeySequence.StandardKey.HelpContents)
        self.getting_started_action.triggered.connect(self.show_getting_started)
        # app.py connects it to open_wizard (the first-run set-up assistant)
        self.setup_action = QAction("&Set-up assistant…", self)
        self.setup_action.setToolTip("The first-run steps again: this computer, the trainer "
                                     "runtime, linking ComfyUI and models.")
        self.debug_bundle_action = QAction("Export a &debug bundle…", self)
        self.debug_bundle_action.triggered.connect(self._debug_bundle_help)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self.getting_started_action)
        help_menu.addAction(self.setup_action)
        help_menu.addSeparator()
        help_menu.addAction(self.open_logs_action)
        help_menu.addAction(self.debug_bundle_action)
        help_menu.addSeparator()
        help_menu.addAction(about_action)
        self.getting_started: GettingStartedDialog | None = None
        self.progress.summary_ready.connect(lambda s: self.show_message(s.splitlines()[0]))
        self._close_hooks: list = []
        self._tray: QSystemTrayIcon | None = None
        self._quit_guard: Callable[[], str | None] | None = None
        self._stop_and_quit: Callable[[], object] | None = None
        self._force_close = False

    def set_download_count(self, count: int) -> None:
        """The status-bar button shows how many downloads are waiting or running."""
        self.downloads_button.setText(f"Downloads ({count})" if count else "Downloads")

    def tab_names(self) -> list[str]:
        return [self.tabs.tabText(i) for i in range(self.tabs.count())]

    def show_message(self, text: str, timeout_ms: int = 8000) -> None:
        self.status_message.setObjectName("StatusMessage")
        self.status_message.setStyleSheet("")
        self.status_message.setText(text)
        self._clear_timer.start(timeout_ms)

    def show_error(self, text: str) -> None:
        """An expected failure: shown in the status bar (red), full text in the tooltip."""
        first = text.splitlines()[0] if text else ""
        self.status_message.setStyleSheet("color: #f0a3a3;")
        self.status_message.setText(first)
        self.status_message.setToolTip(text)
        self._clear_timer.start(20000)

    def notify(self, title: str, text: str) -> None:
        """A desktop notification (tray balloon where the platform has a tray), and always a
        status-bar message."""
        self.show_message(f"{title}: {text}")
        if QSystemTrayIcon.isSystemTrayAvailable():
            if self._tray is None:
                self._tray = QSystemTrayIcon(self.windowIcon(), self)
                self._tray.show()
            self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 8000)
        QApplication.alert(self)

    def on_close(self, hook) -> None:  # noqa: ANN001
        self._close_hooks.append(hook)

    def set_quit_guard(self, guard: Callable[[], str | None],
                       stop_and_quit: Callable[[], object] | None = None) -> None:
        """``guard()`` says what closing would interrupt ("Alice is training, step 12 of
        40.") or None; when it says something, closing the window asks first. With
        ``stop_and_quit``, "Stop & save and quit" calls it and the window stays open: it is
        expected to stop the jobs, wait for their save and then :meth:`close_without_asking`.
        """
        self._quit_guard = guard
        self._stop_and_quit = stop_and_quit

    def close_without_asking(self) -> None:
        """Close now (SIGTERM, logout, the smoke test): running trainers still save and stop."""
        self._force_close = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        busy = None if self._force_close or self._quit_guard is None else self._quit_guard()
        if busy and not self.confirm_quit(busy):
            event.ignore()
            return
        if busy and self._stop_and_quit is not None:
            event.ignore()              # closed by close_without_asking once jobs have saved
            self._stop_and_quit()
            return
        for hook in self._close_hooks:
            hook()
        super().closeEvent(event)

    def confirm_quit(self, busy: str) -> bool:
        """Ask before quitting while a job runs: True to stop & save and quit."""
        box = QMessageBox(QMessageBox.Icon.Question, f"Quit {APP_NAME}?",
                          f"{busy}\n\nQuitting stops the trainer after it saves a checkpoint; "
                          "Resume continues from there next time.",
                          QMessageBox.StandardButton.NoButton, self)
        quit_button = box.addButton("Stop && save and quit",
                                    QMessageBox.ButtonRole.DestructiveRole)
        keep_button = box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep_button)
        box.setEscapeButton(keep_button)
        box.exec()
        return box.clickedButton() is quit_button

    def open_folder(self, path) -> None:  # noqa: ANN001
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def show_getting_started(self) -> None:
        if self.getting_started is None:
            self.getting_started = GettingStartedDialog(self)
        self.getting_started.show()
        self.getting_started.raise_()

    def _debug_bundle_help(self) -> None:
        """A debug bundle belongs to one training job: go to Training and say where it is."""
        self.tabs.setCurrentIndex(TAB_NAMES.index("Training"))
        self.show_message("Choose a job in History, then Export debug bundle…; "
                          "Help → Open logs folder shows the app's own logs.", 15000)

    def _about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<b>{APP_NAME}</b> {__version__}<br>Identity LoRAs from your photos, "
                          "trained on your own GPU, offline.")
