"""The Generate tab: backend bar, prompt form with presets/LoRA/extras, live progress, gallery and
the staging strip. Exports :class:`GenerateTab` (built on first open)."""

from .generate_tab import GenerateTab

__all__ = ["GenerateTab"]
