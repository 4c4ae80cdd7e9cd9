"""Where the tests' deletions went: the throwaway XDG trash on Linux, the per-test folder of
``tests/conftest.py``'s ``private_trash`` elsewhere."""

from __future__ import annotations

import os
from pathlib import Path


def trashed_names() -> set[str]:
    """The names of the files and folders moved to the trash so far."""
    private = os.environ.get("ISENGARD_TEST_TRASH")
    if private:
        return {p.name for p in Path(private).glob("*/*")}
    trash = Path(os.environ["XDG_DATA_HOME"]) / "Trash" / "files"
    return {p.name for p in trash.iterdir()} if trash.is_dir() else set()
