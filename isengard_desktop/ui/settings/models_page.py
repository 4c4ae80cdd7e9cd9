"""Settings page listing the base models found in the model folders, with their family.

Scanning reads only safetensors headers and runs on a worker thread (through the injected
``scan`` callable); results come back on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from ...core.models import ModelInfo

ScanModels = Callable[[list[str], Callable[[list[ModelInfo]], None]], None]


def _size_text(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # pragma: no cover


class ModelsPageWidget(QWidget):
    def __init__(self, scan: ScanModels, folders: Callable[[], list[str]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scan = scan
        self._folders = folders
        self.summary = QLabel("Press Rescan to look for models.")
        self.summary.setWordWrap(True)
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Look through the model folders (Folders page) and the "
                                      "ComfyUI models folder again. Only file headers are read.")
        self.tree = QTreeWidget()
        self.tree.setObjectName("models_tree")
        self.tree.setHeaderLabels(["Model", "Family", "Size", "Location"])
        self.tree.setRootIsDecorated(False)
        self.tree.setToolTip("Base models the Training tab can use. 'unknown' files are not a "
                             "family the built-in trainer supports (or not a base model).")
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.rescan_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        self.rescan_button.clicked.connect(self.rescan)
        self.models: list[ModelInfo] = []

    def rescan(self) -> None:
        folders = [f for f in self._folders() if f]
        if not folders:
            self.summary.setText("No model folders yet: add one on the Folders page.")
            self.tree.clear()
            return
        self.rescan_button.setEnabled(False)
        self.summary.setText(f"Scanning {len(folders)} folder(s)…")
        self._scan(folders, self._on_scanned)

    def _on_scanned(self, models: list[ModelInfo]) -> None:
        self.models = models
        self.rescan_button.setEnabled(True)
        self.tree.clear()
        for m in models:
            item = QTreeWidgetItem([m.path.name, m.label, _size_text(m.size), str(m.path.parent)])
            item.setToolTip(0, str(m.path))
            self.tree.addTopLevelItem(item)
        for col in range(3):
            self.tree.resizeColumnToContents(col)
        usable = sum(1 for m in models if m.family)
        self.summary.setText(f"{len(models)} model(s) found, {usable} usable for training."
                             if models else "No models found in these folders.")
