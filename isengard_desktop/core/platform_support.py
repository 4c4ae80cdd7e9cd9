"""Small differences between Linux, Windows and macOS that several layers need (Qt-free).

* :func:`windows_crash_words`: a Windows child's exit code that is an NTSTATUS crash code
  (3221225477) in words ("access violation (0xC0000005)");
* :func:`no_window_flags` / :func:`run_text`: ``subprocess`` calls that open no console
  window on Windows and decode their output as UTF-8 whatever the system code page;
* :data:`MONOSPACE_FAMILIES`: fixed-width fonts that exist on each system ("monospace" is
  only a fontconfig alias on Linux);
* :func:`deepest_job_paths`: the longest paths a training job creates (Windows refuses paths
  of :data:`WINDOWS_MAX_PATH` characters or more unless long paths are enabled).

Each takes a ``windows`` flag (None: this OS) so tests drive the Windows branch anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CREATE_NO_WINDOW", "KILLED_BY_APP", "MONOSPACE_FAMILIES", "NTSTATUS_WORDS",
           "WINDOWS_MAX_PATH", "deepest_job_paths", "no_window_flags", "run_text",
           "windows_crash_words", "windows_end_phrase"]

WINDOWS = sys.platform == "win32"
CREATE_NO_WINDOW = 0x08000000
MONOSPACE_FAMILIES = ("Consolas", "Menlo", "DejaVu Sans Mono", "monospace")

KILLED_BY_APP = 0xF291   # the exit code QProcess.kill() (TerminateProcess) gives on Windows

# What a Windows process's exit code means when the process crashed (NTSTATUS values).
NTSTATUS_WORDS: dict[int, str] = {
    0xC0000005: "access violation (a native library read or wrote memory it does not own)",
    0xC00000FD: "stack overflow",
    0xC0000409: "fatal error in a native library (stack buffer overrun / fail-fast)",
    0xC0000374: "heap corruption",
    0xC000001D: "illegal instruction (the processor lacks an instruction this build needs)",
    0xC0000094: "integer division by zero",
    0xC0000017: "out of memory",
    0xC000012D: "out of virtual memory (the paging file is too small)",
    0xC0000135: "a DLL was not found",
    0xC0000139: "a DLL lacks a function it needs (mismatched DLL versions)",
    0xC0000142: "a DLL failed to initialise",
    0xC000013A: "ended by Ctrl+C or the console closing",
    KILLED_BY_APP: "ended by the app",   # QProcess.kill() and the app's Job Object
}


def windows_crash_words(code: int | None) -> str | None:
    """``code`` in words when it is a Windows crash code ("access violation (0xC0000005)"),
    else None (a normal exit code or a POSIX signal number). Accepts the code signed or
    unsigned (Qt gives it as a signed int)."""
    if code is None:
        return None
    unsigned = code & 0xFFFFFFFF
    words = NTSTATUS_WORDS.get(unsigned)
    if words is not None:
        return f"{words} (0x{unsigned:X})"
    if unsigned >= 0xC0000000:
        return f"Windows error status 0x{unsigned:X}"
    return None


def windows_end_phrase(code: int | None) -> str | None:
    """How a Windows child with exit code ``code`` ended, for "The trainer …": "crashed:
    access violation (0xC0000005)", "was ended by the app (0xF291)"; None when ``code`` is no
    Windows crash code."""
    words = windows_crash_words(code)
    if words is None:
        return None
    if code is not None and code & 0xFFFFFFFF == KILLED_BY_APP:
        return f"was {words}"
    return f"crashed: {words}"


def no_window_flags(windows: bool | None = None) -> int:
    """``creationflags`` for ``subprocess``: CREATE_NO_WINDOW on Windows (a console program
    started from the windowed app would flash a console window), 0 elsewhere."""
    return CREATE_NO_WINDOW if (WINDOWS if windows is None else windows) else 0


def run_text(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
             windows: bool | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` of a helper Python whose output the app reads: captured, decoded
    as UTF-8 with undecodable bytes replaced (Windows would decode with the ANSI code page),
    the child told to write UTF-8 (``PYTHONIOENCODING``, unless ``env`` sets it), and no
    console window on Windows. ``env``: the whole environment (None: this process's).
    Raises what ``subprocess.run`` raises."""
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONIOENCODING", "utf-8")
    return subprocess.run(list(argv), capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=timeout, check=False, env=child_env,
                          creationflags=no_window_flags(windows), **kwargs)


WINDOWS_MAX_PATH = 260   # MAX_PATH, the terminating NUL included: 259 characters usable

# The deepest files the trainers write under jobs/<job id>/ (from their output layouts; the
# numbers are the widest their step counters get). {name} is the job's output name.
_DEEP_JOB_FILES = (
    # ai-toolkit: output/<name>/<name>_<9-digit step>.safetensors (+ optimizer.pt)
    ("output", "{name}", "{name}_000000500.safetensors"),
    # kohya sd-scripts: output/<name>-step<8 digits>-state/random_states_0.pkl
    ("output", "{name}-step00000500-state", "random_states_0.pkl"),
    # ai-toolkit Chroma: a job-local Hugging Face cache of ostris/Flex.1-alpha
    ("hf_cache", "models--ostris--Flex.1-alpha", "snapshots", "0" * 40, "text_encoder_2",
     "model-00001-of-00002.safetensors"),
    # diffusion-pipe: <UTC time>/global_step<N>/ DeepSpeed states
    ("diffusion-pipe", "20261206_07-15-00", "global_step100000",
     "zero_pp_rank_0_mp_rank_00_optim_states.pt"),
    # built-in trainer: checkpoints/checkpoint-<N>/training_state.pt and the stopped LoRA
    ("checkpoints", "checkpoint-100000", "training_state.pt"),
    ("{name}-step100000.safetensors",),
)


def deepest_job_paths(job_dir: str, output_name: str) -> list[str]:
    """The longest paths a job in ``job_dir`` (a Windows path string) creates, longest
    first; compare their lengths with :data:`WINDOWS_MAX_PATH`."""
    paths = ["\\".join([job_dir.rstrip("\\"), *(part.format(name=output_name)
                                                    for part in parts)])
             for parts in _DEEP_JOB_FILES]
    return sorted(paths, key=len, reverse=True)
