"""Training jobs: the queue and records, launch preparation, the QProcess runner, outputs and
orphan adoption. Exports :class:`TrainingService` and :class:`JobRecord`."""

from .records import JobRecord
from .service import TrainingService

__all__ = ["JobRecord", "TrainingService"]
