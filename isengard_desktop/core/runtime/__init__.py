"""The trainer runtime: a Python environment under ``<data>/runtime/<version>-<device>/`` made by
``uv`` from a committed lock per device, where trainer children run. Exports
:class:`RuntimeStatus` and :func:`trainer_python`."""

from .python import TrainerPython, trainer_python
from .status import InstallPhase, RuntimeDevice, RuntimeState, RuntimeStatus

__all__ = ["InstallPhase", "RuntimeDevice", "RuntimeState", "RuntimeStatus", "TrainerPython",
           "trainer_python"]
