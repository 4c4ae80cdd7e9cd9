"""The contract between the training runner and a trainer backend (Qt-free).

A backend turns a :class:`TrainingJob` into a :class:`Launch` (argv, env, cwd, config files,
how to ask it to stop) and supplies a :class:`LineParser` that turns the child's output into
protocol events (``core/training/protocol.py``). The runner (``services/training/service.py``) owns
the process, its process group, the log files and the job state; a backend never starts or
watches a process itself.

Backends are looked up by key in ``plugins/registry.py``; the UI never imports one.

:class:`LineSplitter` is the shared helper for parsers: it joins partial reads into lines,
treats ``\\r`` redraws (tqdm) as lines of their own and strips ANSI escape codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..core.training.protocol import Event
    from ..core.training.spec import JobPaths, TrainingJob

__all__ = ["Launch", "LineParser", "LineSplitter", "Stream", "TrainerBackend", "strip_ansi"]

Stream = Literal["stdout", "stderr"]
StopMethod = Literal["stdin", "file", "signal"]

# CSI sequences (colours, cursor moves), OSC sequences (titles, links), and 2-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_BREAK = re.compile(r"\r\n|\n|\r")
_MAX_LINE = 1 << 20  # a "line" this long without a break is cut (protects memory)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


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


class LineSplitter:
    """Joins chunks into lines. ``\\n`` and ``\\r\\n`` end a line; a bare ``\\r`` ends a
    *redraw* (a tqdm bar overwriting itself). ANSI escapes are removed and blank lines
    dropped. A ``\\r`` at the very end of a chunk waits for the next chunk (it may be half
    of ``\\r\\n``)."""

    def __init__(self) -> None:
        self._buf = ""

    def feed_marked(self, text: str) -> list[tuple[str, bool]]:
        """Completed ``(line, is_redraw)`` pairs."""
        buf = self._buf + text
        if not buf:
            return []
        hold = ""
        if buf.endswith("\r"):
            buf, hold = buf[:-1], "\r"
        out: list[tuple[str, bool]] = []
        pos = 0
        for match in _BREAK.finditer(buf):
            line = buf[pos:match.start()]
            pos = match.end()
            if "\x1b" in line:
                line = strip_ansi(line)
            if line.strip():
                out.append((line.rstrip(), match.group() == "\r"))
        rest = buf[pos:]
        if len(rest) > _MAX_LINE:
            out.append((strip_ansi(rest).rstrip(), False))
            rest = ""
        self._buf = rest + hold
        return out

    def feed(self, text: str) -> list[str]:
        """Completed lines (redraws included)."""
        return [line for line, _ in self.feed_marked(text)]

    @property
    def pending(self) -> str:
        """Text received but not yet ended by a line break."""
        return self._buf
