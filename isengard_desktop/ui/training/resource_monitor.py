"""The resource monitor in the job panel: one live summary line (GPU, VRAM, temperature, power,
CPU, RAM, free disk) that opens into small charts of the last two minutes.

Fed by the resource monitor service's ``sampled`` signal, and told the running job's GPUs by
its ``job_gpus_changed`` (both connected in ``app.py``). With several GPUs it follows the ones
the job trains on (every GPU when no job runs or they are unknown): the summary line names
each (or sums them up past two), and a GPU picker chooses which one the GPU and VRAM charts
show — every followed GPU's last two minutes are kept, so switching shows them at once.
Collapsed by default so it never pushes the loss chart off a 900×600 window. pyqtgraph loads
when the charts are first opened. No signals.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QSizePolicy,
                               QToolButton, QVBoxLayout, QWidget)

from ...core.hardware.monitor import GB, GpuSample, ResourceSample

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
SUMMARY_GPUS = 2     # more followed GPUs than this are summed up in one phrase


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} %"


def followed_gpus(sample: ResourceSample, wanted: Sequence[int] | None) -> list[GpuSample]:
    """The GPUs of ``sample`` that ``wanted`` names (the job's), in its order; every GPU when
    ``wanted`` is None or names none of them."""
    present = {gpu.index: gpu for gpu in sample.gpus}
    chosen = [present[i] for i in wanted or () if i in present]
    return chosen or list(sample.gpus)


def _gpu_words(gpu: GpuSample, numbered: bool) -> str:
    words = [f"GPU {gpu.index}: {_pct(gpu.util_pct)}" if numbered else f"GPU {_pct(gpu.util_pct)}"]
    if gpu.vram_used is not None and gpu.vram_total:
        words.append(f"VRAM {gpu.vram_used / GB:.1f}/{gpu.vram_total / GB:.0f} GB")
    if gpu.temp_c is not None:
        words.append(f"{gpu.temp_c:.0f} °C" + (" (throttling)" if gpu.thermal_throttle else ""))
    if gpu.power_w is not None:
        words.append(f"{gpu.power_w:.0f} W")
    return " ".join(words)


def _gpus_summed(gpus: list[GpuSample]) -> str:
    """Several GPUs in one phrase: the range of their use, the fullest VRAM, the hottest,
    their power together."""
    utils = [g.util_pct for g in gpus if g.util_pct is not None]
    words = [f"{len(gpus)} GPUs ({','.join(str(g.index) for g in gpus)})"]
    if utils:
        low, high = min(utils), max(utils)
        words.append(f"{low:.0f} %" if round(low) == round(high)
                     else f"{low:.0f}–{high:.0f} %")
    fractions = [g.vram_fraction for g in gpus if g.vram_fraction is not None]
    if fractions:
        words.append(f"VRAM up to {max(fractions) * 100:.0f} %")
    temps = [g.temp_c for g in gpus if g.temp_c is not None]
    if temps:
        hot = [g.index for g in gpus if g.thermal_throttle]
        words.append(f"up to {max(temps):.0f} °C"
                     + (f" (GPU {','.join(map(str, hot))} throttling)" if hot else ""))
    power = [g.power_w for g in gpus if g.power_w is not None]
    if power:
        words.append(f"{sum(power):.0f} W")
    return " ".join(words)


def summary_text(sample: ResourceSample, gpus: Sequence[int] | None = None) -> str:
    """One line: the followed GPUs' numbers (``gpus``: the job's; None: all), or why there are
    none, then CPU, RAM, disk."""
    parts = []
    followed = followed_gpus(sample, gpus)
    if len(followed) > SUMMARY_GPUS:
        parts.append(_gpus_summed(followed))
    elif followed:
        numbered = len(sample.gpus) > 1
        parts.extend(_gpu_words(gpu, numbered) for gpu in followed)
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

    def show_values(self, values: deque[float], latest: float | None,
                    label: str = "") -> None:
        self.title.setText(f"{label or SERIES[self.key][0]} {_pct(latest)}")
        if self.curve is not None:
            n = len(values)
            self.curve.setData(list(range(-n + 1, 1)), list(values))


class ResourceMonitorWidget(QWidget):
    """The summary line, a toggle, and (opened) four mini charts; no GPU → the GPU charts are
    replaced by a line saying why. With several followed GPUs a picker chooses the GPU whose
    utilisation and VRAM are charted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # CPU and RAM; each GPU's series live in gpu_history (NVML index -> key -> values)
        self.history: dict[str, deque[float]] = {
            key: deque(maxlen=HISTORY_SECONDS) for key in SERIES if key not in GPU_SERIES}
        self.gpu_history: dict[int, dict[str, deque[float]]] = {}
        self.gpu_names: dict[int, str] = {}
        self.wanted_gpus: tuple[int, ...] | None = None
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
        self.gpu_picker = QComboBox()
        self.gpu_picker.setObjectName("GpuPicker")
        self.gpu_picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.gpu_picker.setToolTip("Which GPU the GPU and VRAM charts show. The list holds "
                                   "the GPUs the running job trains on (its GPU ids), or "
                                   "every GPU when no job runs; each one is sampled, so "
                                   "switching shows its last two minutes at once.")
        self.gpu_picker.setVisible(False)
        self.gpu_picker.currentIndexChanged.connect(lambda _i: self._redraw())
        self.no_gpu_label = QLabel("")
        self.no_gpu_label.setProperty("subtle", True)
        self.no_gpu_label.setWordWrap(True)
        self.no_gpu_label.setVisible(False)
        self.body = QWidget()
        grid = QGridLayout(self.body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        grid.addWidget(self.gpu_picker, 0, 0, 1, len(GPU_SERIES),
                       Qt.AlignmentFlag.AlignLeft)
        for column, key in enumerate(SERIES):
            grid.addWidget(self.charts[key], 1, column)
            grid.setColumnStretch(column, 1)
        grid.addWidget(self.no_gpu_label, 2, 0, 1, len(SERIES))
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

    @property
    def picked_gpu(self) -> int | None:
        """The NVML index of the GPU the GPU and VRAM charts show (None: no GPU)."""
        data = self.gpu_picker.currentData()
        return int(data) if data is not None else None

    def pick_gpu(self, index: int) -> None:
        """Chart GPU ``index`` (one of the picker's)."""
        row = self.gpu_picker.findData(index)
        if row >= 0:
            self.gpu_picker.setCurrentIndex(row)

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

    def set_gpus(self, gpus: Sequence[int] | None) -> None:
        """Follow these GPUs (the running job's, from ``ResourceMonitor.job_gpus_changed``);
        None: every GPU."""
        self.wanted_gpus = tuple(gpus) if gpus is not None else None
        if self.latest is not None:
            self._show_gpus(self.latest)
        self._redraw()

    def add_sample(self, sample: ResourceSample) -> None:
        """Append one sample (from ``ResourceMonitor.sampled``)."""
        self.latest = sample
        values = {
            "cpu": sample.cpu_pct,
            "ram": sample.ram_fraction * 100 if sample.ram_fraction is not None else None,
        }
        for key, value in values.items():
            self.history[key].append(float("nan") if value is None else float(value))
        present = {gpu.index: gpu for gpu in sample.gpus}
        for index in present.keys() | self.gpu_history.keys():
            gpu = present.get(index)
            series = self.gpu_history.setdefault(
                index, {key: deque(maxlen=HISTORY_SECONDS) for key in GPU_SERIES})
            util = gpu.util_pct if gpu is not None else None
            vram = gpu.vram_fraction if gpu is not None else None
            series["gpu"].append(float("nan") if util is None else float(util))
            series["vram"].append(float("nan") if vram is None else vram * 100)
            if gpu is not None:
                self.gpu_names[index] = gpu.name
        self._show_gpus(sample)
        has_gpu = bool(sample.gpus)
        for key in GPU_SERIES:
            self.charts[key].setVisible(has_gpu)
        self.no_gpu_label.setVisible(not has_gpu)
        if not has_gpu:
            self.no_gpu_label.setText("GPU charts: no NVIDIA GPU to read. "
                                      + (sample.gpu_note or ""))
        self._redraw()

    def _show_gpus(self, sample: ResourceSample) -> None:
        """The summary line and the picker's GPUs for the followed GPUs."""
        self.summary.setText(summary_text(sample, self.wanted_gpus))
        followed = [gpu.index for gpu in followed_gpus(sample, self.wanted_gpus)]
        listed = [self.gpu_picker.itemData(i) for i in range(self.gpu_picker.count())]
        if listed != followed:
            picked = self.picked_gpu
            self.gpu_picker.blockSignals(True)
            self.gpu_picker.clear()
            for index in followed:
                self.gpu_picker.addItem(f"GPU {index} · {self.gpu_names.get(index, '')}",
                                        index)
            row = self.gpu_picker.findData(picked) if picked is not None else -1
            self.gpu_picker.setCurrentIndex(max(0, row) if followed else -1)
            self.gpu_picker.blockSignals(False)
        self.gpu_picker.setVisible(len(followed) > 1)

    def _redraw(self) -> None:
        sample = self.latest
        if sample is None or not self.expanded:
            return
        picked = self.picked_gpu
        several = self.gpu_picker.count() > 1
        for key, chart in self.charts.items():
            label = ""
            if key in GPU_SERIES:
                if picked is None or picked not in self.gpu_history:
                    continue
                values = self.gpu_history[picked][key]
                if several:
                    label = f"{SERIES[key][0]} {picked}:"
            else:
                values = self.history[key]
            latest = values[-1] if values and values[-1] == values[-1] else None
            chart.show_values(values, latest, label)

    def clear(self) -> None:
        for values in self.history.values():
            values.clear()
        self.gpu_history.clear()
        self.latest = None
