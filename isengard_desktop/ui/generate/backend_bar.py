"""The Generate tab's backend bar: one chip per ComfyUI server (this computer's managed one and
remote ones) with its state, GPU, VRAM and queue; a calm empty state when none is set up.

Signals:
    settings_requested(): the user wants Settings → ComfyUI.
    refresh_requested(): read the servers' node, model and LoRA lists again.
    restart_requested(): restart the managed ComfyUI (shown when it stopped or failed).
    log_requested(): open the managed ComfyUI's log file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton,
                               QVBoxLayout, QWidget)

from ...core.comfy.jobs import ServerStatus

STATE_WORDS = {"stopped": "Stopped", "starting": "Starting…", "ready": "Ready", "busy": "Busy",
               "offline": "Offline", "error": "Error"}
STATE_COLORS = {"stopped": "#7d8596", "starting": "#d6b25e", "ready": "#6fbf73",
                "busy": "#5b8def", "offline": "#d07a7a", "error": "#e06c6c"}


def gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


def gpu_words(name: str) -> str:
    """ComfyUI's device name without its plumbing: ``cuda:0 NVIDIA GeForce RTX 4090 :
    cudaMallocAsync`` → ``NVIDIA GeForce RTX 4090``."""
    name = re.sub(r"^[a-z]+:\d+\s+", "", name.strip())
    return re.sub(r"\s+:\s+\w+$", "", name).strip()


def server_line(s: ServerStatus) -> str:
    """``Ready · RTX 4090 · 18.2 of 24.0 GB free · queue 2``"""
    bits = [STATE_WORDS.get(s.state, s.state)]
    if s.gpu_name:
        bits.append(gpu_words(s.gpu_name))
    if s.vram_total:
        bits.append(f"{gib(s.vram_free)} of {gib(s.vram_total)} GB free")
    if s.state in ("ready", "busy"):
        bits.append(f"queue {s.queue_length}" if s.queue_length else "queue empty")
    return " · ".join(bits)


def server_tooltip(s: ServerStatus) -> str:
    kind = ("ComfyUI on this computer, started and stopped by Isengard" if s.kind == "managed"
            else "A ComfyUI server on your network")
    lines = [f"{s.label} — {kind}", s.url or "(no address yet)", server_line(s)]
    if s.tier:     # Settings → Servers & tiers
        lines.append(f"Tier: {s.tier} (takes {s.tier} jobs; change it in Settings → "
                     "Servers & tiers)")
    if s.message:
        lines.append(s.message)
    return "\n".join(lines)


class ServerChipWidget(QFrame):
    """One server: a coloured state dot, its name and one line of facts."""

    def __init__(self, status: ServerStatus, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ServerChip")
        self.dot = QLabel("●")
        self.dot.setObjectName("ServerDot")
        self.name = QLabel("")
        self.name.setObjectName("ServerName")
        self.facts = QLabel("")
        self.facts.setProperty("subtle", True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 12, 4)
        layout.setSpacing(6)
        layout.addWidget(self.dot)
        layout.addWidget(self.name)
        layout.addWidget(self.facts)
        self.update_status(status)

    def update_status(self, status: ServerStatus) -> None:
        self.status = status
        self.dot.setStyleSheet(f"color: {STATE_COLORS.get(status.state, '#7d8596')};")
        self.name.setText(status.label)
        self.facts.setText(server_line(status))
        self.setToolTip(server_tooltip(status))
        self.setProperty("state", status.state)


class BackendBarWidget(QFrame):
    settings_requested = Signal()
    find_requested = Signal()
    refresh_requested = Signal()
    restart_requested = Signal()
    log_requested = Signal()
    REFRESH_TIP = ("Read the servers' model and LoRA lists again (after you copy a model or a "
                   "LoRA onto a server).")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("BackendBar")
        self.chips: dict[str, ServerChipWidget] = {}
        self.servers: tuple[ServerStatus, ...] = ()
        self.title = QLabel("ComfyUI")
        self.title.setObjectName("BackendTitle")
        self.empty_label = QLabel(
            "No ComfyUI server is set up yet. Find the ComfyUI already on this computer (the "
            "set-up assistant links it and your models in one step), or point Isengard at a "
            "ComfyUI server on your network in Settings → ComfyUI.")
        self.empty_label.setObjectName("BackendEmpty")
        self.empty_label.setWordWrap(True)
        self.find_button = QPushButton("Find ComfyUI…")
        self.find_button.setObjectName("BackendFind")
        self.find_button.setToolTip("Open the set-up assistant's page that finds ComfyUI installs "
                                    "and model folders on this computer and links them.")
        self.settings_button = QPushButton("Open Settings…")
        self.settings_button.setObjectName("BackendSettings")
        self.settings_button.setToolTip("Settings → ComfyUI: the ComfyUI folder and Python for "
                                        "this computer, and the addresses of remote servers.")
        self.refresh_button = QToolButton()
        self.refresh_button.setObjectName("BackendRefresh")
        self.refresh_button.setText("↻")
        self.refresh_button.setAutoRaise(True)
        self.restart_button = QPushButton("Restart")
        self.restart_button.setObjectName("BackendRestart")
        self.restart_button.setToolTip("Start the ComfyUI on this computer again (after fixing "
                                       "what its message says).")
        self.log_button = QPushButton("Log")
        self.log_button.setObjectName("BackendLog")
        self.log_button.setToolTip("Open the log of the ComfyUI on this computer: its last "
                                   "lines say why it stopped.")
        self._chips_row = QHBoxLayout()
        self._chips_row.setSpacing(8)
        self.problem_label = QLabel("")
        self.problem_label.setObjectName("BackendProblem")
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem_label.setVisible(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 6, 10, 6)
        outer.setSpacing(4)
        layout = QHBoxLayout()
        layout.setSpacing(10)
        outer.addLayout(layout)
        outer.addWidget(self.problem_label)
        layout.addWidget(self.title)
        layout.addLayout(self._chips_row)
        layout.addWidget(self.empty_label, 1)
        layout.addStretch(0)
        layout.addWidget(self.restart_button)
        layout.addWidget(self.log_button)
        layout.addWidget(self.refresh_button)
        layout.addWidget(self.find_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.settings_button, 0, Qt.AlignmentFlag.AlignRight)
        self.settings_button.clicked.connect(self.settings_requested)
        self.find_button.clicked.connect(self.find_requested)
        self.refresh_button.clicked.connect(self.refresh_requested)
        self.restart_button.clicked.connect(self.restart_requested)
        self.log_button.clicked.connect(self.log_requested)
        self.set_servers(())

    def set_servers(self, servers: Sequence[ServerStatus]) -> None:
        self.servers = tuple(servers)
        keys = [s.key for s in self.servers]
        for key in list(self.chips):
            if key not in keys:
                gone = self.chips.pop(key)
                self._chips_row.removeWidget(gone)
                gone.deleteLater()
        for n, status in enumerate(self.servers):
            chip = self.chips.get(status.key)
            if chip is None:
                chip = ServerChipWidget(status)
                self.chips[status.key] = chip
                self._chips_row.insertWidget(n, chip)
            else:
                chip.update_status(status)
        empty = not self.servers
        self.empty_label.setVisible(empty)
        self.find_button.setVisible(empty)
        troubles = [f"{s.label}: {s.message}" for s in self.servers
                    if s.state in ("offline", "error") and s.message]
        self.problem_label.setText("\n".join(troubles))
        self.problem_label.setVisible(bool(troubles))
        self.refresh_button.setVisible(not empty)
        managed = next((s for s in self.servers if s.kind == "managed"), None)
        troubled = managed is not None and managed.state in ("stopped", "error", "offline")
        self.restart_button.setVisible(troubled)
        self.log_button.setVisible(managed is not None and managed.state != "ready"
                                   and managed.state != "busy")
        self.refresh_button.setEnabled(bool(self.healthy()))
        self.refresh_button.setToolTip(self.REFRESH_TIP if self.healthy() else
                                       "No server is ready to ask; they are checked every few "
                                       "seconds.")
        self.setProperty("empty", empty)
        self.style().unpolish(self)
        self.style().polish(self)
        self.settings_button.setText("Settings…")
        self.settings_button.style().unpolish(self.settings_button)
        self.settings_button.style().polish(self.settings_button)

    def healthy(self) -> list[ServerStatus]:
        return [s for s in self.servers if s.state in ("ready", "busy")]

    def problem(self) -> str | None:
        """Why nothing can be generated now (None when a server is ready)."""
        if not self.servers:
            return "No ComfyUI server is set up: open Settings → ComfyUI."
        if self.healthy():
            return None
        starting = [s for s in self.servers if s.state == "starting"]
        if starting:
            return f"Waiting for {starting[0].label} to start…"
        s = self.servers[0]
        why = s.message or STATE_WORDS.get(s.state, s.state)
        return f"No ComfyUI server is ready. {s.label}: {why}"
