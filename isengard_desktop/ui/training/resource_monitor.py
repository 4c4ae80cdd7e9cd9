"""The resource monitor in the job panel: one live summary line (GPU, VRAM, temperature, power,
CPU, RAM, free disk) that opens into small charts of the last two minutes.

Fed by the resource monitor service's ``sampled`` signal (connected in ``app.py``); collapsed
by default so it never pushes the loss chart off a 900×600 window. pyqtgraph loads when the
charts are first opened. No signals.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from ...core.hardware.monitor import GB, ResourceSample

__all__ = ["HISTORY_SECONDS", "ResourceMonitorWidget"]

HISTORY_SECONDS = 120
CHART_HEIGHT = 58
BACKGROUND = "#14161b"
# series key -> (title, colour, tooltip)
SERIES = {
    "gpu": ("GPU", "#8fb3ff", "How busy the GPU is (NVML utilisation). Low while training "
                                "usually means the data loading or the CPU is the bottleneck."),
    "vram": ("VRAM", "#c9a6ff", "GPU memory in use, of the card's total. Above 97 % an "
                                  "out-of-memory error is close."),
    "cpu": ("CPU", "#8fd6a8", "All processor cores together."),
    "ram": ("RAM", "#ead9a8", "System memory in use, of the installed total."),
}
GPU_SERIES = ("gpu", "vram")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} %"


def summary_text(sample: ResourceSample) -> str:
    """One line: the first GPU's numbers (or why there are none), then CPU, RAM, disk."""
    parts = []
    if sample.gpus:
        for gpu in sample.gpus:
            words = [f"GPU{gpu.index if len(sample.gpus) > 1 else ''} {_pct(gpu.util_pct)}"]
            if gpu.vram_used is not None and gpu.vram_total:
                words.append(f"VRAM {gpu.vram_used / GB:.1f}/{gpu.vram_total / GB:.0f} GB")
            if gpu.temp_c is not None:
                words.append(f"{gpu.temp_c:.0f} °C" + (" (throttling)"
                                                       if gpu.thermal_throttle else ""))
            if gpu.power_w is not None:
                words.append(f"{gpu.power_w:.0f} W")
            parts.append(" ".join(words))
    else:
        parts.append("no GPU")
    parts.append(f"CPU {_pct(sample.cpu_pct)}")
    if sample.ram_used is not None and sample.ram_total:
        parts.append(f"RAM {sample.ram_used / GB:.1f}/{sample.ram_total / GB:.0f} GB")
    if sample.disk_free is not None:
        parts.append(f"disk {sample.disk_free / GB:.0f} GB free")
    return " · ".join(parts)


class _Spark(QWidget):
    """A titled 0–100 % mini chart of one series (the title shows the newest value)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        title, self.color, tip = SERIES[key]
        self.key = key
        self.title = QLabel(title)
        self.title.setProperty("subtle", True)
        self.setToolTip(tip)
        self.plot: Any = None
        self.curve: Any = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(1)
        self._layout.addWidget(self.title)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def ensure_plot(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        self.plot = pg.PlotWidget(background=BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        item = self.plot.getPlotItem()
        item.hideAxis("bottom")
        item.hideAxis("left")
        item.setYRange(0, 100, padding=0.04)
        item.setXRange(-HISTORY_SECONDS + 1, 0, padding=0)
        self.plot.setFixedHeight(CHART_HEIGHT)
        self.curve = self.plot.plot(pen=pg.mkPen(self.color, width=1.6), connect="finite")
        self._layout.addWidget(self.plot)

    def show_values(self, values: deque[float], latest: float | None) -> None:
        self.title.setText(f"{SERIES[self.key][0]} {_pct(latest)}")
        if self.curve is not None:
            n = len(values)
            self.curve.setData(list(range(-n + 1, 1)), list(values))


class ResourceMonitorWidget(QWidget):
    """The summary line, a toggle, and (opened) four mini charts; no GPU → the GPU charts are
    replaced by a line saying why."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history: dict[str, deque[float]] = {
            key: deque(maxlen=HISTORY_SECONDS) for key in SERIES}
        self.latest: ResourceSample | None = None
        self.toggle = QToolButton()
        self.toggle.setCheckable(True)
        self.toggle.setText("Resources")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Show or hide charts of the GPU, memory and processor over "
                               "the last two minutes (sampled once a second by the app, not "
                               "the trainer).")
        self.summary = QLabel("Reading the GPU, memory and disk…")
        self.summary.setProperty("subtle", True)
        self.summary.setWordWrap(True)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.toggle)
        head.addWidget(self.summary, 1)

        self.charts = {key: _Spark(key) for key in SERIES}
        self.no_gpu_label = QLabel("")
        self.no_gpu_label.setProperty("subtle", True)
        self.no_gpu_label.setWordWrap(True)
        self.no_gpu_label.setVisible(False)
        self.body = QWidget()
        grid = QGridLayout(self.body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        for column, key in enumerate(SERIES):
            grid.addWidget(self.charts[key], 0, column)
            grid.setColumnStretch(column, 1)
        grid.addWidget(self.no_gpu_label, 1, 0, 1, len(SERIES))
        self.body.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(head)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self.set_expanded)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)     # comes back here through toggled
            return
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded
                                 else Qt.ArrowType.RightArrow)
        if expanded:
            for chart in self.charts.values():
                chart.ensure_plot()
        self.body.setVisible(expanded)
        self._redraw()

    def add_sample(self, sample: ResourceSample) -> None:
        """Append one sample (from ``ResourceMonitor.sampled``)."""
        self.latest = sample
        gpu = sample.gpus[0] if sample.gpus else None
        values = {
            "gpu": gpu.util_pct if gpu else None,
            "vram": gpu.vram_fraction * 100 if gpu and gpu.vram_fraction is not None else None,
            "cpu": sample.cpu_pct,
            "ram": sample.ram_fraction * 100 if sample.ram_fraction is not None else None,
        }
        for key, value in values.items():
            self.history[key].append(float("nan") if value is None else float(value))
        self.summary.setText(summary_text(sample))
        has_gpu = bool(sample.gpus)
        for key in GPU_SERIES:
            self.charts[key].setVisible(has_gpu)
        self.no_gpu_label.setVisible(not has_gpu)
        if not has_gpu:
            self.no_gpu_label.setText("GPU charts: no NVIDIA GPU to read. "
                                      + (sample.gpu_note or ""))
        self._redraw()

    def _redraw(self) -> None:
        sample = self.latest
        if sample is None or not self.expanded:
            return
        for key, chart in self.charts.items():
            values = self.history[key]
            latest = values[-1] if values and values[-1] == values[-1] else None
            chart.show_values(values, latest)

    def clear(self) -> None:
        for values in self.history.values():
            values.clear()
        self.latest = None
