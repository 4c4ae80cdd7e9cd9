"""Live loss chart: raw loss (thin, faint) and its smoothed curve (EMA, bold).

pyqtgraph draws it (QtCharts stalled the window at 10k points; see STACK-NOTES). pyqtgraph
and numpy cost ~200 ms to import, so they load when the first points arrive, not at app
start. Points are kept in ``array('d')`` buffers, so appending a batch costs one ``setData``
per curve. A step that is not after the last one (a resumed run restarting from its
checkpoint) rewinds the chart to that step, so the curve always shows the run as it continued.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from ...services.throttle import Throttler

if TYPE_CHECKING:
    import numpy as np

BACKGROUND = "#14161b"
AXIS = "#3a4150"
AXIS_TEXT = "#8b93a3"
RAW = (91, 141, 239, 80)      # theme blue, faint
SMOOTH = "#8fb3ff"
DEFAULT_SMOOTHING = 0.9


REDRAW_INTERVAL_MS = 500


class LossChartWidget(QWidget):
    """A dark loss-over-steps chart with an empty-state hint. No signals."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        self.smoothing = smoothing
        self._steps = array("d")
        self._loss = array("d")
        self._ema = array("d")
        # debiased EMA state per point: (biased ema, weight) lets a rewind resume exactly
        self._biased = array("d")
        self._weight = array("d")
        self.plot: Any = None          # pyqtgraph PlotWidget, made with the first points
        self.raw_curve: Any = None
        self.smooth_curve: Any = None

        self.empty_label = QLabel("The loss appears here once training starts.\n"
                                  "Lower is better; the bold line is the trend.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setProperty("subtle", True)
        self.empty_label.setStyleSheet(f"background: {BACKGROUND}; border-radius: 6px;")
        self._stack = QStackedLayout(self)
        self._stack.setContentsMargins(0, 0, 0, 0)
        self._stack.addWidget(self.empty_label)
        self.setMinimumHeight(160)
        # Redraws are throttled to REDRAW_INTERVAL_MS: progress arrives at ~10 Hz and each
        # pyqtgraph repaint costs ~3 ms of the UI thread that the trainer shares the CPU with.
        self._redraw_throttle: Throttler[None] = Throttler(lambda _: self._redraw(),
                                                           REDRAW_INTERVAL_MS, parent=self)
        self._total_steps = 0

    def _ensure_plot(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

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
            axis.enableAutoSIPrefix(False)   # "loss (x0.001)" reads badly
        item.setLabel("bottom", "step", color=AXIS_TEXT)
        item.setLabel("left", "loss", color=AXIS_TEXT)
        self.plot.setMouseEnabled(x=True, y=False)
        self.raw_curve = self.plot.plot(pen=pg.mkPen(color=RAW, width=1), name="loss",
                                        connect="finite")
        self.smooth_curve = self.plot.plot(pen=pg.mkPen(color=SMOOTH, width=2.2),
                                           name="smoothed", connect="finite")
        self._stack.addWidget(self.plot)
        if self._total_steps:
            self.plot.setXRange(0, self._total_steps, padding=0.02)

    # -- data ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._steps)

    def steps(self) -> np.ndarray:
        import numpy as np

        return np.array(self._steps)

    def losses(self) -> np.ndarray:
        import numpy as np

        return np.array(self._loss)

    def smoothed(self) -> np.ndarray:
        import numpy as np

        return np.array(self._ema)

    def last_step(self) -> int | None:
        return int(self._steps[-1]) if self._steps else None

    def clear(self) -> None:
        self._truncate(0)
        self._redraw()

    def set_history(self, points: Iterable[tuple[int, float]]) -> None:
        """Replace everything with ``points`` ((step, loss) in the order they happened)."""
        self._truncate(0)
        self.append_points(points)
        if not self._steps:
            self._redraw()

    def append_points(self, points: Iterable[tuple[int, float]]) -> None:
        """Add (step, loss) points; NaN/inf losses leave a gap and do not move the trend."""
        changed = False
        for step, loss in points:
            step = int(step)
            if self._steps and step <= self._steps[-1]:
                self._truncate(bisect_left(self._steps, step))
            self._push(step, float(loss) if loss is not None else math.nan)
            changed = True
        if changed:
            self._redraw_soon()

    def set_total_steps(self, total: int) -> None:
        """Fix the x axis to 0…total so new points never rescale it (fewer repaints)."""
        if total > 0 and total != self._total_steps:
            self._total_steps = total
            if self.plot is not None:
                self.plot.setXRange(0, total, padding=0.02)

    def _redraw_soon(self) -> None:
        self._redraw_throttle.submit(None)

    def _truncate(self, n: int) -> None:
        for buf in (self._steps, self._loss, self._ema, self._biased, self._weight):
            del buf[n:]

    def _push(self, step: int, loss: float) -> None:
        biased, weight = (self._biased[-1], self._weight[-1]) if self._steps else (0.0, 0.0)
        if math.isfinite(loss):
            s = self.smoothing
            biased = s * biased + (1 - s) * loss
            weight = s * weight + (1 - s)
        self._steps.append(step)
        self._loss.append(loss)
        self._biased.append(biased)
        self._weight.append(weight)
        self._ema.append(biased / weight if weight > 0 else math.nan)

    def _redraw(self) -> None:
        if not self._steps:
            self._stack.setCurrentWidget(self.empty_label)
            if self.plot is not None:
                self.raw_curve.setData([], [])
                self.smooth_curve.setData([], [])
            return
        self._ensure_plot()
        import numpy as np

        x = np.array(self._steps)   # copies: pyqtgraph keeps the arrays it is given
        self.raw_curve.setData(x, np.array(self._loss))
        self.smooth_curve.setData(x, np.array(self._ema))
        self._stack.setCurrentWidget(self.plot)
