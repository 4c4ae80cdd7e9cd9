"""Child processes by pid: is one still alive, and signalling its whole process group (Qt-free).

Every child the app starts goes through :class:`~.child_process.ChildProcess`, in its own
session, so its pid is also its process group id and one signal to the group reaches every
grandchild. These helpers also serve processes of an earlier app instance
(``services/training/orphans.py``), which have no QProcess here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pid_alive", "signal_group"]

_POSIX = os.name == "posix"


def pid_alive(pid: int | None, marker: str = "") -> bool:
    """Whether ``pid`` is a live (non-zombie) process; on Linux also that its command line
    contains ``marker`` (guards against a reused pid after a reboot)."""
    if not pid or pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X") or int(fields[6]) & 0x00200000:  # zombie / kernel thread
                return False
            if marker:
                cmdline = (proc / "cmdline").read_bytes()
                # empty for a moment right after exec: the process is there, so alive
                return not cmdline or marker.encode() in cmdline.replace(b"\0", b" ")
            return True
        except (OSError, IndexError, ValueError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def signal_group(pid: int | None, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False if nothing was there."""
    if not _POSIX or not pid:
        return False
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
