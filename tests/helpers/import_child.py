"""A child process for tests/integration/test_import_crash.py: the real library service on
this process's ISENGARD_HOME imports one folder into a new character "Anna".

Run as ``python -m tests.helpers.import_child SOURCE_FOLDER``. Prints one line per event on
stdout: ``character <id>``, ``rows <n>`` after each recorded batch (``data_changed``), and
``done <added>`` when the import finished (then it exits 0). The test kills it with SIGKILL
somewhere in between.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.library import LibraryService
from isengard_desktop.services.ops import init_main_thread_bridge


def main(source: Path) -> int:
    app = QCoreApplication([])
    init_main_thread_bridge()
    library = LibraryService(resolve_paths().ensure())
    ids: list[int] = []

    def say(*words: object) -> None:
        print(*words, flush=True)

    def created(character) -> None:  # type: ignore[no-untyped-def]
        ids.append(character.id)
        say("character", character.id)
        library.import_photos(character.id, [source],
                              on_done=lambda outcome: (say("done", len(outcome.added)),
                                                       app.quit()))

    library.ready.connect(lambda: library.create_character("Anna", "anx", on_created=created))
    library.data_changed.connect(
        lambda change: ids and change.images and say("rows", library.image_count(ids[0])))
    library.start()
    app.exec()
    library.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
