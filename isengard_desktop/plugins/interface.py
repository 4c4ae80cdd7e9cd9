"""The contract between the training runner and a trainer backend (Qt-free).

A backend turns a :class:`TrainingJob` into a :class:`Launch` (argv, env, cwd, config files,
how to ask it to stop) and supplies a :class:`LineParser` that turns the child's output into
protocol events (``core/training/protocol.py``). The runner (``services/training/service.py``) owns
the process, its process group, the log files and the job state; a backend never starts or
watches a process itself.

Backends are looked up by key in ``plugins/registry.py``; the UI never imports one.

:class:`LineSplitter` is the shared helper for parsers: it joins partial reads into lines,
treats ``\\r`` redraws (tqdm) as lines of their own and strips ANSI escape codes. It lives in
``core/console_text.py`` (the process wrapper uses it too); parsers import it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..core.console_text import Stream

if TYPE_CHECKING:
    from ..core.training.protocol import Event
    from ..core.training.spec import JobPaths, TrainingJob

__all__ = ["Launch", "LineParser", "TrainerBackend"]

StopMethod = Literal["stdin", "file", "signal"]

@dataclass(frozen=True)
class Launch:
    """How to start one trainer process.

    Attributes:
        argv: program and arguments. Never contains a secret (secrets go in the env the
            runner adds from the keyring).
        env: variables added to the runner's environment (which already has os.environ,
            PYTHONUNBUFFERED, PYTHONIOENCODING, HF_HUB_OFFLINE and the secrets).
        cwd: working folder (usually the job folder).
        files: config files (path -> text) the runner writes atomically before launch.
        stop: how to ask for a graceful stop (save a checkpoint, then exit):
            ``"stdin"`` writes a line ``stop``; ``"file"`` creates ``stop_file``;
            ``"signal"`` sends SIGTERM to the process group.
        stop_file: the file to create when ``stop == "file"``.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    files: dict[Path, str] = field(default_factory=dict)
    stop: StopMethod = "stdin"
    stop_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("Launch.argv cannot be empty")
        if self.stop not in ("stdin", "file", "signal"):
            raise ValueError(f"Launch.stop must be stdin, file or signal (got {self.stop!r})")
        if self.stop == "file" and self.stop_file is None:
            raise ValueError("Launch.stop_file is required when stop == 'file'")


@runtime_checkable
class LineParser(Protocol):
    """Turns a child's output into protocol events. One instance per process run.

    ``feed`` gets text exactly as read (decoded UTF-8, any chunking): it must keep partial
    lines between calls, treat ``\\r`` redraws and ANSI escapes sensibly, and return the
    events completed by this chunk. At exit the runner feeds ``"\\n"`` on each stream so a
    last unterminated line completes.
    """

    def feed(self, stream: Stream, text: str) -> list[Event]: ...


@runtime_checkable
class TrainerBackend(Protocol):
    """One way of training a LoRA (built-in runtime, ai-toolkit, diffusion-pipe, kohya).

    Attributes:
        key: registry key, stored in job specs (``TrainingJob.backend``).
        label: human name for pickers.
    """

    key: str
    label: str

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` when it can run here, else ``(False, what is missing and what to
        do)``. Must be cheap: no heavy imports (find_spec, file checks)."""
        ...

    def capabilities(self) -> dict[str, Any]:
        """What it supports, e.g. ``{"families": [...], "resume": True, "samples": True}``."""
        ...

    def build_launch(self, job: TrainingJob, paths: JobPaths, resume: bool) -> Launch:
        """The launch for ``job`` in ``paths``; ``resume`` continues from the newest
        checkpoint. Raise ``SpecError``/``ValueError`` naming the field that cannot work."""
        ...

    def make_parser(self) -> LineParser:
        """A fresh parser for one process run."""
        ...
