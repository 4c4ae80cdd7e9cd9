"""The Generate tab's live view: what the running job is doing (node, step/total, a bar), the
latest preview image, and errors inline (naming the node, input and value).

Previews arrive as small JPEG/PNG bytes at most ~10 times a second and are decoded here; the
finished image is shown from the thumbnail cache.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from ...core.types import Progress


def progress_words(p: Progress, server: str = "") -> str:
    """``KSampler (node 3) · step 12 of 30 · on studio-pc``"""
    what = p.label
    node = f" (node {p.node})" if p.node else ""
    steps = f" · step {p.done} of {p.total}" if p.total and p.total > 1 else ""
    server = server or p.server
    where = f" · on {server}" if server else ""
    return f"{what}{node}{steps}{where}"


class PreviewLabel(QLabel):
    """Shows one image scaled to fit, re-scaled when the widget resizes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("GeneratePreview")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(QSize(160, 160))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._source: QPixmap | None = None

    def set_image(self, pix: QPixmap | None) -> None:
        self._source = pix if pix is not None and not pix.isNull() else None
        self._rescale()

    def has_image(self) -> bool:
        return self._source is not None

    def _rescale(self) -> None:
        if self._source is None:
            self.clear()
            return
        self.setPixmap(self._source.scaled(self.size() - QSize(12, 12),
                                           Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._source is not None:
            self._rescale()


class GenerationProgressWidget(QFrame):
    """Idle, running or failed: one status line, a bar, the preview and an inline error."""

    READY = "Ready. Write a prompt and press Generate."

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("GenerateProgress")
        self.status = QLabel(self.READY)
        self.status.setObjectName("GenerateStatus")
        self.status.setWordWrap(True)
        self.detail = QLabel("")
        self.detail.setProperty("subtle", True)
        self.detail.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.bar.setVisible(False)
        self.preview = PreviewLabel()
        self.preview.setText("The preview appears here while a picture is being made.")
        self.preview.setProperty("subtle", True)
        self.error = QLabel("")
        self.error.setObjectName("ErrorText")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail)
        layout.addWidget(self.error)
        layout.addWidget(self.preview, 1)
        self.last_progress: Progress | None = None
        self._idle = True

    def set_idle_text(self, problem: str | None) -> None:
        """Before the first job: say what is needed (a server) or that all is ready."""
        if self._idle:
            self.status.setText(f"Nothing can be made yet. {problem}" if problem else self.READY)

    # -- states ----------------------------------------------------------------------------------
    def job_queued(self, text: str) -> None:
        self._idle = False
        self.show_error("")
        self.status.setText(text)
        self.detail.setText("Waiting for a ComfyUI server to take the job…")
        self.bar.setVisible(True)
        self.bar.setRange(0, 0)     # busy until the first progress arrives

    def update_progress(self, p: Progress, server: str = "") -> None:
        self.last_progress = p
        self.bar.setVisible(True)
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(max(0.0, min(1.0, p.fraction)) * 1000))
        self.detail.setText(progress_words(p, server))
        if p.preview:
            image = QImage.fromData(p.preview)
            if not image.isNull():
                self.preview.set_image(QPixmap.fromImage(image))

    def job_done(self, text: str, image: QPixmap | None = None) -> None:
        self.status.setText(text)
        self.detail.setText("")
        self.bar.setVisible(False)
        if image is not None:
            self.preview.set_image(image)

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))
        if text:
            self.bar.setVisible(False)
            self.detail.setText("")
