"""Moving files to the OS trash, and knowing when there is none (Qt-free).

Windows has a Recycle Bin only on fixed local drives. On a USB stick, an SD card or a network
share the shell deletes for good instead, and Send2Trash's Windows backend asks it to do so
silently. So before a delete the app asks :func:`has_recycle_bin`; :func:`to_trash` refuses
(:class:`NoRecycleBin`) unless the user agreed to delete for good (``allow_permanent``), in
which case the file or folder is deleted here, openly. Linux and macOS always have a trash
(Send2Trash makes a per-volume one where needed).

``windows`` and ``drive_type`` are seams: tests drive the Windows branch anywhere.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path, PureWindowsPath

from send2trash import send2trash

__all__ = ["NoRecycleBin", "has_recycle_bin", "to_trash"]

_WINDOWS = sys.platform == "win32"
DRIVE_REMOVABLE, DRIVE_FIXED, DRIVE_REMOTE, DRIVE_CDROM, DRIVE_RAMDISK = 2, 3, 4, 5, 6
_NO_BIN_TYPES = {DRIVE_REMOVABLE, DRIVE_REMOTE, DRIVE_CDROM, DRIVE_RAMDISK}


class NoRecycleBin(OSError):
    """The file is on a drive without a Recycle Bin; it was left in place."""


def _windows_drive_type(root: str) -> int:
    return int(ctypes.windll.kernel32.GetDriveTypeW(root))  # type: ignore[attr-defined,unused-ignore]


def has_recycle_bin(path: Path | str, *, windows: bool | None = None,
                    drive_type: Callable[[str], int] | None = None) -> bool:
    """Whether deleting ``path`` through the OS trash can be undone. Elsewhere than Windows
    always True; on Windows False for network paths and removable, network, optical and RAM
    drives. Asks the OS for the drive's type only (no disk access)."""
    if not (_WINDOWS if windows is None else windows):
        return True
    win = PureWindowsPath(os.path.abspath(path) if windows is None else str(path))
    if win.drive.startswith(("\\\\", "//")):       # \\server\share
        return False
    if not win.drive:
        return True
    kind = (drive_type or _windows_drive_type)(win.drive + "\\")
    return kind not in _NO_BIN_TYPES


def to_trash(path: Path | str, *, allow_permanent: bool = False,
             windows: bool | None = None,
             drive_type: Callable[[str], int] | None = None) -> None:
    """(worker thread) Move ``path`` (a file or folder) to the OS trash. Where there is no
    trash it raises :class:`NoRecycleBin`, or with ``allow_permanent`` (the user agreed)
    deletes it for good."""
    if has_recycle_bin(path, windows=windows, drive_type=drive_type):
        send2trash(str(path))
        return
    if not allow_permanent:
        raise NoRecycleBin(f"{path} is on a drive without a Recycle Bin (removable or network "
                           "drive); it would be deleted for good, so it was left in place")
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
