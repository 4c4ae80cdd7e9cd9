"""Live loss chart: raw loss (thin, faint) and its smoothed curve (EMA, bold).

pyqtgraph draws it (QtCharts stalled the window at 10k points; see STACK-NOTES). Points are
kept in growing numpy buffers, so appending a batch costs one ``setData`` per curve. A step
that is not after the last one (a resumed run restarting from its checkpoint) rewinds the
chart to that step, so the curve always shows the run as it continued.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

BACKGROUND = "#14161b"
AXIS = "#3a4150"
AXIS_TEXT = "#8b93a3"
RAW = (91, 141, 239, 80)      # theme blue, faint
SMOOTH = "#8fb3ff"
DEFAULT_SMOOTHING = 0.9


class LossChartWidget(QWidget):
    """A dark loss-over-steps chart with an empty-state hint. No signals."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        self.smoothing = smoothing
        self._n = 0
        self._steps = np.empty(1024, dtype=np.float64)
        self._loss = np.empty(1024, dtype=np.float64)
        self._ema = np.empty(1024, dtype=np.float64)
        # debiased EMA state per point: (biased ema, weight) lets a rewind resume exactly
        self._biased = np.empty(1024, dtype=np.float64)
        self._weight = np.empty(1024, dtype=np.float64)

        self.plot = pg.PlotWidget(background=BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.12)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        font = QFont()
        font.setPointSizeF(8.5)
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(AXIS))
            axis.setTextPen(pg.mkPen(AXIS_TEXT))
            axis.setStyle(tickFont=font)
        item.setLabel("bottom", "step", color=AXIS_TEXT)
        item.setLabel("left", "loss", color=AXIS_TEXT)
        self.plot.setMouseEnabled(x=True, y=False)
        self.raw_curve = self.plot.plot(pen=pg.mkPen(color=RAW, width=1), name="loss",
                                        connect="finite")
        self.smooth_curve = self.plot.plot(pen=pg.mkPen(color=SMOOTH, width=2.2),
                                           name="smoothed", connect="finite")

        self.empty_label = QLabel("The loss appears here once training starts.\n"
                                  "Lower is better; the bold line is the trend.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setProperty("subtle", True)
        self.empty_label.setStyleSheet(f"background: {BACKGROUND}; border-radius: 6px;")
        self._stack = QStackedLayout(self)
        self._stack.setContentsMargins(0, 0, 0, 0)
        self._stack.addWidget(self.empty_label)
        self._stack.addWidget(self.plot)
        self.setMinimumHeight(160)

    # -- data ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def steps(self) -> np.ndarray:
        return self._steps[: self._n].copy()

    def losses(self) -> np.ndarray:
        return self._loss[: self._n].copy()

    def smoothed(self) -> np.ndarray:
        return self._ema[: self._n].copy()

    def last_step(self) -> int | None:
        return int(self._steps[self._n - 1]) if self._n else None

    def clear(self) -> None:
        self._n = 0
        self._redraw()

    def set_history(self, points: Iterable[tuple[int, float]]) -> None:
        """Replace everything with ``points`` ((step, loss) in the order they happened)."""
        self._n = 0
        self.append_points(points)

    def append_points(self, points: Iterable[tuple[int, float]]) -> None:
        """Add (step, loss) points; NaN/inf losses leave a gap and do not move the trend."""
        changed = False
        for step, loss in points:
            step = int(step)
            if self._n and step <= self._steps[self._n - 1]:
                self._n = int(np.searchsorted(self._steps[: self._n], step, side="left"))
            self._push(step, float(loss) if loss is not None else math.nan)
            changed = True
        if changed:
            self._redraw()

    def _push(self, step: int, loss: float) -> None:
        if self._n == len(self._steps):
            for name in ("_steps", "_loss", "_ema", "_biased", "_weight"):
                old = getattr(self, name)
                new = np.empty(len(old) * 2, dtype=np.float64)
                new[: self._n] = old[: self._n]
                setattr(self, name, new)
        i = self._n
        biased, weight = (self._biased[i - 1], self._weight[i - 1]) if i else (0.0, 0.0)
        if math.isfinite(loss):
            s = self.smoothing
            biased = s * biased + (1 - s) * loss
            weight = s * weight + (1 - s)
        self._steps[i], self._loss[i] = step, loss
        self._biased[i], self._weight[i] = biased, weight
        self._ema[i] = biased / weight if weight > 0 else math.nan
        self._n += 1

    def _redraw(self) -> None:
        n = self._n
        self._stack.setCurrentWidget(self.plot if n else self.empty_label)
        if not n:
            self.raw_curve.setData([], [])
            self.smooth_curve.setData([], [])
            return
        x = self._steps[:n]
        self.raw_curve.setData(x, self._loss[:n])
        self.smooth_curve.setData(x, self._ema[:n])
