"""Console output of child processes as text lines (Qt-free).

Trainers and ComfyUI print tqdm bars with ``\\r`` redraws and ANSI colour codes. Everything
that reads a child's output splits and cleans it here: the process wrapper
(``services/child_process.py``) for display lines and error tails, and the trainer backends'
line parsers (``plugins/``, which import these names from ``plugins/interface.py``).
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["MAX_LINE_CHARS", "LineSplitter", "Stream", "strip_ansi"]

Stream = Literal["stdout", "stderr"]

# CSI sequences (colours, cursor moves), OSC sequences (titles, links), and 2-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_BREAK = re.compile(r"\r\n|\n|\r")
MAX_LINE_CHARS = 1 << 20  # a "line" this long without a break is cut (protects memory)


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


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
        if len(rest) > MAX_LINE_CHARS:
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
