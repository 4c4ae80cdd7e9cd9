"""Settings page "Servers & tiers": the tier (Final / Standard / Draft) of every ComfyUI server.

Rows: one managed ComfyUI per GPU when this machine has two or more (from ``detect``, run on
a worker thread the first time the page is shown), else the single managed one, then every
remote server of the ComfyUI page (read again each time the page is shown). Each row's tier
starts at Settings' choice, else the default from the cards
(:func:`~...core.comfy.tiers.default_tiers`: most VRAM = Final). Only choices that differ
from the default are saved (:meth:`TiersPageWidget.tiers`), so a new card later gets its own
default; choices for servers not shown now (GPUs not detected yet) are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ...core.comfy.tiers import (OVERFLOW_LOAD, SERVER_TIERS, TIER_LABELS, default_tiers,
                                 gpu_server_key)
from ...services.background import BackgroundOp

__all__ = ["TIER_TIPS", "TiersPageWidget"]

TIER_TIPS = {
    "final": "Final: the big card. Final-quality pictures and upscales go here.",
    "standard": "Standard: ordinary pictures (the Generate tab's Standard quality).",
    "draft": "Draft: quick, small drafts (the Generate tab's Draft quality, the funnel's "
             "first stage).",
}
LOCAL_KEY = "local"


def _remote_key(url: str) -> str:
    from ...core.comfy.api import normalize_url

    try:
        return normalize_url(url)
    except ValueError:
        return url.strip()


class TiersPageWidget(QWidget):
    """The tier of each ComfyUI server; see the module docstring."""

    def __init__(self, tiers: dict[str, str], detect: Callable[[], Any],
                 remote_servers: Callable[[], list[str]], parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self._saved = dict(tiers)
        self._detect = detect
        self._remotes = remote_servers
        self._gpus: tuple[Any, ...] = ()
        self._detected = False
        self._started = False
        self._rows: list[tuple[str, str]] = []          # (key, default tier)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Each ComfyUI server has a tier. A job goes to the servers of its tier (the "
            "Generate tab's quality: Draft → Draft, Standard → Standard, High → Final); a "
            "batch is spread over them. When every server of a tier already has "
            f"{OVERFLOW_LOAD} or more prompts of other work, the next tier up helps. With "
            "several GPUs, Isengard starts one ComfyUI per GPU.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.status = QLabel("Detecting GPUs…")
        self.status.setObjectName("tiers_status")
        layout.addWidget(self.status)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("tiers_table")
        self.table.setHorizontalHeaderLabels(["Server", "Tier"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table)

    # -- detection and rows ------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._started:
            self._started = True
            BackgroundOp(parent=self, op=self._detect).success(self.set_machine) \
                .failure(self._detect_failed).supersede("tiers-detect").run()
        self._fill()

    def set_machine(self, machine: Any) -> None:
        """Detection finished: ``machine`` is a MachineInfo (or anything with ``gpus``)."""
        self._gpus = tuple(sorted(getattr(machine, "gpus", ()) or (),
                                  key=lambda g: int(g.index)))
        self._detected = True
        count = len(self._gpus)
        self.status.setText(f"{count} GPU{'s' if count != 1 else ''} found: "
                            + ("one managed ComfyUI per GPU." if count >= 2
                               else "one managed ComfyUI."))
        self._fill()

    def _detect_failed(self, exc: BaseException) -> None:
        self._detected = True
        self.status.setText(f"GPU detection failed ({exc}); the managed ComfyUI is one "
                            "server.")
        self._fill()

    def _remember(self) -> None:
        """Keep the rows' choices before the rows are rebuilt."""
        for row, (key, default) in enumerate(self._rows):
            combo = self.table.cellWidget(row, 1)
            if not isinstance(combo, QComboBox):
                continue
            if combo.currentData() == default:
                self._saved.pop(key, None)
            else:
                self._saved[key] = str(combo.currentData())

    def _fill(self) -> None:
        self._remember()
        defaults = default_tiers(self._gpus)
        rows: list[tuple[str, str, str]] = []        # key, label, default
        if len(self._gpus) >= 2:
            for gpu in self._gpus:
                gb = f" · {gpu.vram_mb / 1024:.0f} GB" if gpu.vram_mb else ""
                key = gpu_server_key(gpu.index)
                rows.append((key, f"This computer · GPU {gpu.index} ({gpu.name}{gb})",
                             defaults[key]))
        else:
            rows.append((LOCAL_KEY, "This computer (managed ComfyUI)", "final"))
        for url in self._remotes():
            key = _remote_key(url)
            if key not in {r[0] for r in rows}:
                rows.append((key, key, "standard"))
        if [(k, d) for k, _label, d in rows] == self._rows:
            return                               # same servers: keep the rows as they are
        for row in range(self.table.rowCount()):
            widget = self.table.cellWidget(row, 1)
            if widget is not None:               # replaced below; deleted later by Qt
                widget.setObjectName("")
        self.table.setRowCount(len(rows))
        self._rows = []
        for row, (key, label, default) in enumerate(rows):
            item = QTableWidgetItem(label)
            item.setToolTip(key)
            self.table.setItem(row, 0, item)
            combo = QComboBox()
            combo.setObjectName(f"tier_{key}")
            for tier in SERVER_TIERS:
                text = TIER_LABELS[tier] + (" (default)" if tier == default else "")
                combo.addItem(text, tier)
                combo.setItemData(combo.count() - 1, TIER_TIPS[tier],
                                  Qt.ItemDataRole.ToolTipRole)
            combo.setCurrentIndex(SERVER_TIERS.index(self._saved.get(key, default)
                                                     if self._saved.get(key) in SERVER_TIERS
                                                     else default))
            combo.setToolTip("Which jobs this server takes. " + " ".join(TIER_TIPS.values()))
            self.table.setCellWidget(row, 1, combo)
            self._rows.append((key, default))

    # -- result ------------------------------------------------------------------------------
    def tier_of(self, key: str) -> str:
        """The tier shown for server ``key`` ("" when it has no row)."""
        for row, (k, _default) in enumerate(self._rows):
            if k == key:
                combo = self.table.cellWidget(row, 1)
                assert isinstance(combo, QComboBox)
                return str(combo.currentData())
        return ""

    def tiers(self) -> dict[str, str]:
        """Settings' ``server_tiers``: the choices that differ from the defaults (rows
        shown), plus earlier choices for servers without a row now."""
        shown = {k for k, _ in self._rows}
        # a remote server removed on the ComfyUI page loses its tier with it
        out = {k: v for k, v in self._saved.items() if k not in shown and "://" not in k}
        for row, (key, default) in enumerate(self._rows):
            combo = self.table.cellWidget(row, 1)
            if isinstance(combo, QComboBox) and combo.currentData() != default:
                out[key] = str(combo.currentData())
        return out
