"""Small differences between Linux, Windows and macOS that several layers need (Qt-free).

* :func:`windows_crash_words`: a Windows child's exit code that is an NTSTATUS crash code
  (3221225477) in words ("access violation (0xC0000005)");
* :func:`no_window_flags` / :func:`run_text`: ``subprocess`` calls that open no console
  window on Windows and decode their output as UTF-8 whatever the system code page;
* :data:`MONOSPACE_FAMILIES`: fixed-width fonts that exist on each system ("monospace" is
  only a fontconfig alias on Linux).

Each takes a ``windows`` flag (None: this OS) so tests drive the Windows branch anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CREATE_NO_WINDOW", "MONOSPACE_FAMILIES", "NTSTATUS_WORDS", "no_window_flags",
           "run_text", "windows_crash_words"]

WINDOWS = sys.platform == "win32"
CREATE_NO_WINDOW = 0x08000000
MONOSPACE_FAMILIES = ("Consolas", "Menlo", "DejaVu Sans Mono", "monospace")

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
    0xF291: "ended by the app",   # QProcess.kill() and the app's Job Object use this code
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
