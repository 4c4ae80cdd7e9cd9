"""The Training tab: setup form (presets, backend, advanced fields), the live job panel, history
and the profile manager. Exports :class:`TrainingTab` (built on first open)."""

from .training_tab import TrainingTab

__all__ = ["TrainingTab"]
