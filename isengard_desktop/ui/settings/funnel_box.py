"""Settings → ComfyUI: the sizes of the Generate tab's draft funnel ("Explore": drafts made,
then how many the user keeps for the standard and the final stage).

Values are clamped and kept decreasing by :class:`~...core.comfy.funnel.FunnelSizes`.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFormLayout, QGroupBox, QSpinBox, QWidget

from ...core.comfy.funnel import FunnelSizes
from ...core.settings import Settings

__all__ = ["FunnelSizesBox"]


class FunnelSizesBox(QGroupBox):
    """Three spin boxes: drafts, kept for standard, kept for final."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Explore (draft funnel)", parent)
        self.setToolTip("Generate → Explore makes many quick drafts, you keep the best, they "
                        "are made again at standard quality with the same seeds, you keep a "
                        "few for the final quality (upscaled), and pick one.")
        form = QFormLayout(self)
        self.spins: dict[str, QSpinBox] = {}
        rows = (("drafts", "Drafts", settings.funnel_drafts,
                 "How many drafts Explore makes (quick: Draft quality, smaller size, one "
                 "fixed seed each)."),
                ("standard", "Keep for standard", settings.funnel_standard,
                 "How many drafts you are asked to keep; they are made again at Standard "
                 "quality and full size with the same seeds."),
                ("final", "Keep for final", settings.funnel_final,
                 "How many standard pictures you are asked to keep; they are made at High "
                 "quality (upscaled when a server has an upscale model). You keep one."))
        for key, label, value, tip in rows:
            spin = QSpinBox()
            spin.setObjectName(f"funnel_{key}")
            lo, hi = FunnelSizes.LIMITS[key]
            spin.setRange(lo, hi)
            spin.setValue(value)
            spin.setToolTip(tip)
            self.spins[key] = spin
            form.addRow(label, spin)

    def sizes(self) -> FunnelSizes:
        """The sizes shown, clamped and kept decreasing."""
        return FunnelSizes.from_values(self.spins["drafts"].value(),
                                       self.spins["standard"].value(),
                                       self.spins["final"].value())
