"""The trainer runtime: a Python environment under ``<data>/runtime/<version>-<device>/`` made by
``uv`` from a committed lock per device, where trainer children run. Exports
:class:`RuntimeStatus` and :func:`trainer_python`."""

from .layout import inspect, runtime_folder
from .locks import lock_file
from .python import PythonSource, TrainerPython, trainer_python
from .status import InstallPhase, RuntimeDevice, RuntimeState, RuntimeStatus

__all__ = ["InstallPhase", "PythonSource", "RuntimeDevice", "RuntimeState", "RuntimeStatus",
           "TrainerPython", "inspect", "lock_file", "runtime_folder", "trainer_python"]
