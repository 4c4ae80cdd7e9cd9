"""Plays a clip in the Video tab: preview frames made off the UI thread, shown at the clip's rate.

QtMultimedia (``QMediaPlayer`` + ``QVideoWidget``) lives in PySide6-Addons, which the app does
not ship, and on this Linux image it cannot load (``libpulse.so.0`` missing). The GUI process
does not decode video either (PyAV's FFmpeg carries GPL x264/x265): ``previews`` (the video
service's :meth:`~...services.video.VideoService.preview`) gives the clip's preview frames, at
most 640 px JPEGs made by the clips child and cached; the player reads them with Pillow on a
background worker (:class:`~...services.background.BackgroundOp`) and paints them with a timer:
play/pause, loop, scrub. It works offscreen.

Signals:
    loaded(int): frame count of the clip now shown (0 when it could not be read).
    failed(str): the clip could not be decoded (names the file).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider,
                               QVBoxLayout, QWidget)

from ...services.background import BackgroundOp, alive

__all__ = ["ClipPlayerWidget"]

# previews(path, done(PreviewInfo), failed(message)): see VideoService.preview
PreviewSource = Callable[[Path, Callable[[Any], None], Callable[[str], None]], None]


def _read_frames(frame_paths: list[Path]) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for p in frame_paths:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def _pixmap(frame: np.ndarray) -> QPixmap:
    h, w = frame.shape[:2]
    image = QImage(frame.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class ClipPlayerWidget(QWidget):
    """See the module docstring."""

    loaded = Signal(int)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None, *,
                 previews: PreviewSource | None = None) -> None:
        super().__init__(parent)
        self._previews = previews
        self.path: Path | None = None
        self._frames: list[np.ndarray] = []
        self.fps = 0.0
        self._index = 0
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        self.view = QLabel("No clip selected", self)
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(320, 200)
        self.view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.play_button = QPushButton("Play", self)
        self.play_button.setEnabled(False)
        self.play_button.clicked.connect(self.toggle)
        self.loop_box = QCheckBox("Loop", self)
        self.loop_box.setChecked(True)
        self.loop_box.setToolTip("Start again from the first frame when the clip ends.")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Scrub: drag to any frame.")
        self.slider.valueChanged.connect(self.seek)
        self.time_label = QLabel("0.00 / 0.00 s", self)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.time_label)
        controls.addWidget(self.loop_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addLayout(controls)

    # -- state -------------------------------------------------------------------------------
    @property
    def frame_count(self) -> int:
        return len(self._frames)

    @property
    def position(self) -> int:
        return self._index

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    # -- loading -----------------------------------------------------------------------------
    def load(self, path: Path | None) -> None:
        """Show ``path`` (None clears); its preview frames are made and read off the UI
        thread."""
        self.stop()
        self.path = Path(path) if path is not None else None
        self._frames, self._index = [], 0
        self.play_button.setEnabled(False)
        self.slider.setEnabled(False)
        if self.path is None:
            self.view.setText("No clip selected")
            self.time_label.setText("0.00 / 0.00 s")
            return
        self.view.setText(f"Loading {self.path.name}…")
        target = self.path
        if self._previews is None:
            self._on_failed(target, "no video service")
            return
        self._previews(target, lambda info: self._on_preview(target, info),
                       lambda message: self._on_failed(target, message))

    def _on_preview(self, path: Path, info: Any) -> None:
        if not alive(self) or path != self.path:
            return
        frame_paths = info.frame_paths()
        (BackgroundOp(parent=self, op=lambda: _read_frames(frame_paths)).supersede("clip")
         .success(lambda frames: self._on_decoded(path, (frames, info.fps)))
         .failure(lambda exc: self._on_failed(path, exc)).run())

    def _on_decoded(self, path: Path, result: tuple[list[np.ndarray], float]) -> None:
        if path != self.path:
            return
        self._frames, self.fps = result
        self.fps = self.fps or 16.0
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.frame_count - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        ok = self.frame_count > 0
        self.slider.setEnabled(ok)
        self.play_button.setEnabled(ok)
        self._show(0)
        self.loaded.emit(self.frame_count)

    def _on_failed(self, path: Path, reason: BaseException | str) -> None:
        if not alive(self) or path != self.path:
            return
        text = str(reason)
        message = (f"{path.name} cannot be played: "
                   f"{text.removeprefix(path.name).lstrip(': ') if path.name in text else text}")
        self.view.setText(message)
        self.loaded.emit(0)
        self.failed.emit(message)

    # -- playback ----------------------------------------------------------------------------
    def play(self) -> None:
        if not self._frames:
            return
        if self._index >= self.frame_count - 1:
            self._show(0)
        self._timer.start(max(1, round(1000 / self.fps)))
        self.play_button.setText("Pause")

    def stop(self) -> None:
        self._timer.stop()
        self.play_button.setText("Play")

    def toggle(self) -> None:
        if self.playing:
            self.stop()
        else:
            self.play()

    def seek(self, index: int) -> None:
        if self._frames:
            self._show(max(0, min(index, self.frame_count - 1)))

    def _advance(self) -> None:
        nxt = self._index + 1
        if nxt >= self.frame_count:
            if not self.loop_box.isChecked():
                self.stop()
                return
            nxt = 0
        self._show(nxt)

    def _show(self, index: int) -> None:
        self._index = index
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        if self._frames:
            self.view.setPixmap(_pixmap(self._frames[index]))
        self.time_label.setText(f"{index / self.fps if self.fps else 0:.2f} / "
                                f"{self.duration_s:.2f} s")
