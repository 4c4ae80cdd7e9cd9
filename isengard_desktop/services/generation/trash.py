"""Moving generated images to the OS trash, one move at a time (used by the generation service).

Every Discard (staging) and Delete (gallery) goes through one single-thread executor: two
quick clicks never run send2trash at the same time (on first use both would create the
trash folders, and one failed with "File exists"). A move that still meets
``FileExistsError`` is tried once more.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Callable, Iterable

from loguru import logger
from ..ops import run_in_executor
from ..trash_support import to_trash

__all__ = ["TrashMover", "move_to_trash"]


def move_to_trash(path: str) -> None:
    """(worker thread) ``path`` to the OS trash; a file already gone counts as moved.
    ``FileExistsError`` (a trash folder or name made at the same moment) is retried once.
    A file on a drive without a Recycle Bin (Windows) is left in place (``NoRecycleBin``)."""
    if not Path(path).exists():
        return
    try:
        to_trash(path)
    except FileExistsError as exc:
        logger.info("moving {} to the trash met {}; trying once more", path, exc)
        if Path(path).exists():
            to_trash(path)


class TrashMover:
    """The single trash thread. :meth:`move` reports ``(moved keys, problems)`` on the main
    thread; a problem is ``"<path>: <why>"``."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="generation-trash")
        self._closed = False

    def move(self, files: Iterable[tuple[int, str]],
             done: Callable[[tuple[list[int], list[str]]], None],
             failed: Callable[[BaseException], None]) -> None:
        """Move each ``(key, path)`` to the trash, in order."""
        files = list(files)
        if self._closed or not files:
            return

        def work() -> tuple[list[int], list[str]]:
            gone, problems = [], []
            for key, path in files:
                try:
                    move_to_trash(path)
                    gone.append(key)
                except OSError as exc:
                    problems.append(f"{path}: {exc.strerror or exc}")
            return gone, problems

        run_in_executor(self._executor, work, done, failed)

    def shutdown(self) -> None:
        """Finish the move in progress (a few files), drop the queued ones."""
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
