"""Child processes by pid: is one still alive, and ending its whole tree (Qt-free).

Every child the app starts goes through :class:`~.child_process.ChildProcess`, in its own
session on POSIX, so its pid is also its process group id and one signal to the group reaches
every grandchild. These helpers also serve processes of an earlier app instance
(``services/training/orphans.py``), which have no QProcess here.

Liveness reads ``/proc`` on Linux and asks the OS through psutil elsewhere (never
``os.kill(pid, 0)``: on Windows signal 0 is CTRL_C_EVENT, sent to the whole console).
Windows has no process groups: :func:`end_tree` ends the process and its descendants there.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

__all__ = ["end_tree", "pid_alive", "signal_group"]

_POSIX = os.name == "posix"
_PROCFS = Path("/proc/self").exists()   # seam: tests clear it to drive the psutil branch


def pid_alive(pid: int | None, marker: str = "") -> bool:
    """Whether ``pid`` is a live (non-zombie) process; when ``marker`` is given also that its
    command line contains it (guards against a reused pid after a reboot)."""
    if not pid or pid <= 0:
        return False
    if not _PROCFS:
        return _pid_alive_psutil(pid, marker)
    proc = Path(f"/proc/{pid}")
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


def _pid_alive_psutil(pid: int, marker: str) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if not marker:
            return True
        try:
            cmdline = process.cmdline()
        except psutil.AccessDenied:
            return True            # someone else's process with this pid: it is there
        return not cmdline or marker in " ".join(cmdline)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def end_tree(pid: int | None, *, force: bool) -> bool:
    """End the process tree led by ``pid``: on POSIX SIGTERM (SIGKILL with ``force``) to its
    process group; elsewhere the process and all its descendants are terminated (on Windows
    terminate and kill are the same ``TerminateProcess``). False if nothing was there."""
    if not pid:
        return False
    if _POSIX:
        return signal_group(pid, getattr(signal, "SIGKILL", signal.SIGTERM) if force
                            else signal.SIGTERM)
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    for process in tree:
        try:
            process.kill() if force else process.terminate()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
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
