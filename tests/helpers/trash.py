"""Where the tests' deletions went: the throwaway XDG trash on Linux, the per-test folder of
``tests/conftest.py``'s ``private_trash`` elsewhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def trashed_names() -> set[str]:
    """The names of the files and folders moved to the trash so far."""
    private = os.environ.get("ISENGARD_TEST_TRASH")
    if private:
        return {p.name for p in Path(private).glob("*/*")}
    trash = Path(os.environ["XDG_DATA_HOME"]) / "Trash" / "files"
    return {p.name for p in trash.iterdir()} if trash.is_dir() else set()


def install_private_trash(monkeypatch, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """Send every move to the trash (the app makes them only through
    ``services.trash_support``) into ``folder`` instead, one sub-folder per move."""
    from isengard_desktop.services import trash_support

    monkeypatch.setenv("ISENGARD_TEST_TRASH", str(folder))

    def move(path: str) -> None:
        slot = folder / str(len(list(folder.iterdir())) if folder.is_dir() else 0)
        slot.mkdir(parents=True)
        shutil.move(path, slot / Path(path).name)

    monkeypatch.setattr(trash_support, "send2trash", move)
    return folder
