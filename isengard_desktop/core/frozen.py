"""What the frozen (PyInstaller) app must undo before it starts another program.

The bundle's bootloader points ``LD_LIBRARY_PATH`` at the bundle's own ``_internal`` folder (its
Qt, OpenSSL, libpython …) and sets private ``_PYI_*`` variables. A child that is *not* this
bundle — the trainer runtime's Python, ComfyUI's Python, an external trainer — would inherit
them and load the bundle's libraries instead of its own (crashes or "version not found" errors
far from the cause). PyInstaller keeps the user's own value as ``LD_LIBRARY_PATH_ORIG``; children
get that back (or no variable at all). Outside a frozen app nothing changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["BOOTLOADER_PATH_VARS", "child_environ", "is_frozen"]

# set by the bootloader on Linux/BSD; macOS builds use rpaths and leave DYLD_* alone
BOOTLOADER_PATH_VARS = ("LD_LIBRARY_PATH", "LIBPATH")


def is_frozen() -> bool:
    """True inside the PyInstaller bundle (``sys.frozen`` is set by its bootloader)."""
    return bool(getattr(sys, "frozen", False))


def child_environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (None: this process's environment) fit for a child program that is not
    this bundle: in a frozen app each bootloader library path is restored from its ``*_ORIG``
    copy (or dropped when the user had none) and the ``_PYI_*`` variables are dropped."""
    out = dict(os.environ if env is None else env)
    if not is_frozen():
        return out
    for name in BOOTLOADER_PATH_VARS:
        original = out.pop(f"{name}_ORIG", None)
        if original is not None:
            out[name] = original
        else:
            out.pop(name, None)
    for name in [k for k in out if k.startswith("_PYI_") or k == "_MEIPASS2"]:
        del out[name]
    return out
