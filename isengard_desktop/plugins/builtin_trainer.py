"""The built-in trainer backend: ``python -m isengard_desktop.training_runtime train ...``.

The child writes protocol JSON lines (``core/training/protocol.py``) on stdout and everything
else on stderr. This module only builds the command line and parses; it never imports torch
(``available`` uses ``importlib.util.find_spec``).

Several GPUs: a job whose ``extra["num_processes"]`` is N > 1 (optionally with
``extra["gpu_ids"]``, e.g. ``"0,1"``; ``core/training/parallel.py``) is started as
``python -m accelerate.commands.launch --multi_gpu --num_processes N … -m
isengard_desktop.training_runtime train …`` with N data-parallel workers
(``training_runtime/distributed.py``); on a CPU-only machine the same launcher runs the
workers with gloo.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Any

from ..core.training.parallel import accelerate_launch_args, free_port, gpu_ids, num_processes
from ..core.training.protocol import Event, LogEvent, parse_event
from ..core.training.spec import FAMILIES, JobPaths, TrainingJob
from ..core.paths import resolve_paths
from ..core.runtime.python import PythonSource, trainer_python
from .interface import Launch
from ..core.console_text import LineSplitter, Stream

__all__ = ["BuiltinTrainer", "ProtocolParser", "stderr_level"]

RUNTIME_MODULE = "isengard_desktop.training_runtime"
ACCELERATE_LAUNCH = "accelerate.commands.launch"
_REQUIRED = ("torch", "diffusers", "peft", "transformers", "safetensors")

_ERRORISH = re.compile(
    r"(?i)^\s*(traceback \(most recent call last\)|fatal|critical)|\b(error|exception)\b"
    r"|^\s*[\w.]*(error|exception)\s*:")
_WARNISH = re.compile(r"(?i)warning|\bwarn\b|deprecat")


def stderr_level(line: str) -> str | None:
    """``"error"`` or ``"warning"`` for stderr lines that look like one, else None."""
    if _ERRORISH.search(line):
        return "error"
    if _WARNISH.search(line):
        return "warning"
    return None


class ProtocolParser:
    """JSON protocol lines on stdout become events; on stderr, lines that look like warnings
    or errors become :class:`LogEvent` (``"warning"`` / ``"error"``). Progress-bar redraws
    and plain stderr text give no events (the runner still shows them in the log view)."""

    def __init__(self) -> None:
        self._split = {"stdout": LineSplitter(), "stderr": LineSplitter()}

    def feed(self, stream: Stream, text: str) -> list[Event]:
        events: list[Event] = []
        if stream == "stdout":
            for line in self._split["stdout"].feed(text):
                event = parse_event(line)
                if event is not None:
                    events.append(event)
            return events
        for line, redraw in self._split["stderr"].feed_marked(text):
            if redraw:
                continue
            level = stderr_level(line)
            if level is not None:
                events.append(LogEvent(level, line.strip()))
        return events


class BuiltinTrainer:
    """Trains with our own runtime (diffusers + peft + torch) in a child Python."""

    key = "builtin"
    label = "Built-in (diffusers + peft)"

    def available(self) -> tuple[bool, str]:
        python = trainer_python(resolve_paths())
        if python.source == PythonSource.NONE:
            return False, python.problem
        if python.source == PythonSource.RUNTIME:
            return True, ""     # the runtime passed its own check when it was installed
        missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
        if missing:
            return False, (f"The built-in trainer needs {', '.join(missing)}, which "
                           f"{'is' if len(missing) == 1 else 'are'} not installed in "
                           f"{sys.executable}. Reinstall Isengard Desktop (or pip install "
                           f"{' '.join(missing)}).")
        if importlib.util.find_spec(RUNTIME_MODULE) is None:
            return False, f"The trainer module {RUNTIME_MODULE} is missing; reinstall the app."
        return True, ""

    def capabilities(self) -> dict[str, Any]:
        return {
            "families": list(FAMILIES),
            "resume": True,
            "samples": True,
            "checkpoints": True,
            "quantize_base": ["none", "int8", "float8", "nf4"],
            "stop": "stdin",
            "multi_gpu": "accelerate",   # data parallel: extra num_processes / gpu_ids
        }

    def build_launch(self, job: TrainingJob, paths: JobPaths, resume: bool) -> Launch:
        python = trainer_python(resolve_paths())
        if python.executable is None:
            raise RuntimeError(python.problem)
        n = num_processes(job)
        launcher = ["-m", RUNTIME_MODULE]
        if n > 1:
            launcher = ["-m", ACCELERATE_LAUNCH,
                        *accelerate_launch_args(n, gpu_ids(job), free_port()),
                        "-m", RUNTIME_MODULE]
        argv = [str(python.executable), *launcher, "train",
                "--job", str(paths.spec), "--job-dir", str(paths.root)]
        if resume:
            argv.append("--resume")
        # A checkout's child finds the package through PYTHONPATH (the source tree first); a
        # runtime's child gets none, so only what the runtime installed is imported.
        env = python.child_env()
        return Launch(argv=argv, env={"PYTHONPATH": env.get("PYTHONPATH", "")},
                      cwd=str(paths.root), files={}, stop="stdin")

    def make_parser(self) -> ProtocolParser:
        return ProtocolParser()
