"""The collapsed Advanced section of the Generate form (:class:`AdvancedWidget`): the
negative prompt and the seed (random or fixed, reuse the last one, copy).

Its toggle shows a summary ("fixed seed 42") so a hidden setting is never a surprise.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (QApplication, QComboBox, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout, QWidget)

MAX_SEED = 2**64 - 1   # KSampler's seed range in ComfyUI


class AdvancedWidget(QWidget):
    """The collapsed section: negative prompt and seed (random or fixed, reuse last, copy).
    Its toggle shows a summary ("fixed seed 42") so a hidden setting is never a surprise.

    Signals:
        changed(): the seed or negative prompt changed.
        message_posted(str): "Seed 42 copied."
    """

    changed = Signal()
    message_posted = Signal(str)

    NEGATIVE_TIP = ("What the picture should not show. SD 1.5 and SDXL use it; Flux and "
                    "Chroma mostly ignore it.")
    SEED_TIP = ("The seed decides the noise a picture starts from. Random gives a new picture "
                "each time; a fixed seed with the same settings makes the same picture again, "
                "so you can vary one thing at a time.")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.last_seed: int | None = None
        self.toggle = QToolButton()
        self.toggle.setObjectName("AdvancedToggle")
        self.toggle.setCheckable(True)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Negative prompt and seed.")
        self.body = QWidget()
        self.body.setObjectName("AdvancedSection")
        self.negative_edit = QPlainTextEdit()
        self.negative_edit.setObjectName("NegativeEdit")
        self.negative_edit.setPlaceholderText("What to keep out: blurry, extra fingers, text…")
        self.negative_edit.setFixedHeight(60)
        self.negative_edit.setToolTip(self.NEGATIVE_TIP)
        self.seed_mode = QComboBox()
        self.seed_mode.addItem("Random", "random")
        self.seed_mode.addItem("Fixed", "fixed")
        self.seed_mode.setToolTip(self.SEED_TIP)
        self.seed_edit = QLineEdit()
        self.seed_edit.setObjectName("SeedEdit")
        self.seed_edit.setValidator(QRegularExpressionValidator(r"\d{0,20}"))
        self.seed_edit.setPlaceholderText("seed")
        self.reuse_button = QPushButton("Reuse last")
        self.copy_button = QPushButton("Copy")
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_mode)
        seed_row.addWidget(self.seed_edit, 1)
        seed_row.addWidget(self.reuse_button)
        seed_row.addWidget(self.copy_button)
        negative_label = QLabel("Negative prompt")
        negative_label.setToolTip(self.NEGATIVE_TIP)
        seed_label = QLabel("Seed")
        seed_label.setToolTip(self.SEED_TIP)
        body = QVBoxLayout(self.body)
        body.setContentsMargins(14, 2, 0, 6)
        body.addWidget(negative_label)
        body.addWidget(self.negative_edit)
        body.addWidget(seed_label)
        body.addLayout(seed_row)
        self.body.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self.set_expanded)
        self.seed_mode.currentIndexChanged.connect(lambda _: self._on_mode())
        self.seed_edit.textChanged.connect(lambda _: self._on_edit())
        self.negative_edit.textChanged.connect(self._on_edit)
        self.reuse_button.clicked.connect(self.reuse_last_seed)
        self.copy_button.clicked.connect(self.copy_seed)
        self._on_mode()

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(expanded)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)

    def negative(self) -> str:
        return self.negative_edit.toPlainText().strip()

    def set_negative(self, text: str) -> None:
        self.negative_edit.setPlainText(text)

    def seed(self) -> int | None:
        if self.seed_mode.currentData() != "fixed":
            return None
        text = self.seed_edit.text().strip()
        return int(text) if text else None

    def set_seed(self, seed: int | None) -> None:
        if seed is None:
            self.seed_mode.setCurrentIndex(self.seed_mode.findData("random"))
        else:
            self.seed_mode.setCurrentIndex(self.seed_mode.findData("fixed"))
            self.seed_edit.setText(str(seed))

    def set_last_seed(self, seed: int) -> None:
        self.last_seed = seed
        self._refresh()

    def reuse_last_seed(self) -> None:
        if self.last_seed is not None:
            self.set_seed(self.last_seed)

    def copy_seed(self) -> None:
        text = self.seed_edit.text().strip() if self.seed_mode.currentData() == "fixed" else ""
        text = text or (str(self.last_seed) if self.last_seed is not None else "")
        if text:
            QApplication.clipboard().setText(text)
            self.message_posted.emit(f"Seed {text} copied.")

    def problem(self) -> str | None:
        if self.seed_mode.currentData() == "fixed":
            text = self.seed_edit.text().strip()
            if not text:
                return "Type a seed, or set the seed back to Random (Advanced)."
            if int(text) > MAX_SEED:
                return f"The seed must be at most {MAX_SEED}."
        return None

    def _on_mode(self) -> None:
        fixed = self.seed_mode.currentData() == "fixed"
        if fixed and not self.seed_edit.text() and self.last_seed is not None:
            self.seed_edit.setText(str(self.last_seed))
        self._on_edit()

    def _on_edit(self) -> None:
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        fixed = self.seed_mode.currentData() == "fixed"
        self.seed_edit.setEnabled(fixed)
        self.seed_edit.setToolTip(self.SEED_TIP if fixed else
                                  "Random seed: a new one for every picture. Choose Fixed to "
                                  "type one.")
        has_last = self.last_seed is not None
        self.reuse_button.setEnabled(has_last)
        self.reuse_button.setToolTip(
            f"Use the last picture's seed ({self.last_seed}) as a fixed seed." if has_last
            else "No picture made yet in this session: there is no last seed to reuse.")
        can_copy = (fixed and bool(self.seed_edit.text())) or has_last
        self.copy_button.setEnabled(can_copy)
        self.copy_button.setToolTip("Copy the seed to the clipboard." if can_copy else
                                    "No seed yet: type one or make a picture first.")
        bits = []
        if fixed and self.seed_edit.text():
            bits.append(f"fixed seed {self.seed_edit.text()}")
        if self.negative():
            bits.append("negative prompt set")
        self.toggle.setText("Advanced · " + ", ".join(bits) if bits
                            else "Advanced (negative prompt, seed)")
