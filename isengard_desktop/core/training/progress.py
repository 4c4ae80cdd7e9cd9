"""A training job's progress as the one progress type (:class:`core.types.Progress`).

The trainer's ``phase`` and ``step`` events stay the versioned wire protocol (``protocol.py``);
what reaches a progress bar is a :class:`Progress` made here. While the ``training`` phase runs,
steps drive the bar (its phase event carries no count worth showing).
"""

from __future__ import annotations

from ..types import Progress
from .protocol import PhaseEvent, StepEvent

__all__ = ["PHASE_WORDS", "TRAINING_PHASE", "phase_progress", "phase_words", "step_progress"]

TRAINING_PHASE = "training"
PHASE_WORDS = {
    "loading_model": "Loading the base model",
    "caching": "Preparing photos and captions",
    TRAINING_PHASE: "Training",
    "saving": "Saving the LoRA",
    "sampling": "Making samples",
}


def phase_words(phase: str) -> str:
    """``loading_model`` → "Loading the base model" (unknown phases: their name, readable)."""
    return PHASE_WORDS.get(phase, phase.replace("_", " ").capitalize())


def phase_progress(event: PhaseEvent) -> Progress:
    """A phase's progress: ``done``/``total`` of its work (``total`` 0: nothing to count yet)."""
    return Progress(label=phase_words(event.phase), done=event.done, total=event.total,
                    detail=event.detail)


def step_progress(event: StepEvent, known_total: int = 0) -> Progress:
    """Training steps: step of total (``known_total`` when the event has none; at least 1)."""
    total = max(1, event.total or known_total)
    return Progress(label=PHASE_WORDS[TRAINING_PHASE], done=event.step, total=total)
