"""The library service: the one writer of characters, images and captions.

All SQL runs on one writer thread; file work (imports, trash, sidecars) runs on an I/O pool.
The service keeps an in-memory snapshot of the library so widgets can read it without touching
the disk, and emits ``data_changed`` after every write.

Signals:
    ready(): the snapshot is loaded; emitted once after :meth:`start`.
    data_changed(ChangeSet): something was written; the snapshot is already updated.
    failed(str): an expected failure the user must see (names the thing and what to do).
    import_started(ImportTask): an import began; connect it to a progress display.
    checks_finished(list[Finding]): dataset checks ended (see :meth:`run_checks`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from collections.abc import Callable, Iterable, Sequence

from loguru import logger
from PySide6.QtCore import QObject, Signal
from send2trash import send2trash

from ..core import logging as applog
from ..core.dataset import captions as caption_ops
from ..core.db.records import Character, ImageRecord, LoraRecord
from ..core.db.repository import DuplicateNameError, Repository
from ..core.db.schema import connect
from ..core.naming import folder_slug, suggest_trigger, validate_trigger
from ..core.paths import AppPaths
from ..core.types import Progress
from .ops import call_in_main_thread, run_in_executor

if TYPE_CHECKING:  # decoding pulls in numpy, pillow-heif and ImageHash: loaded on first use
    from ..core.dataset.checks import Finding
    from ..core.dataset.importer import ImportedImage, ImportReport


T = TypeVar("T")

IMPORT_WORKERS = max(2, min(6, (os.cpu_count() or 2) + 1))


@dataclass(frozen=True)
class ChangeSet:
    """What a write changed, so each view can decide whether to refresh."""

    characters: bool = False
    images: bool = False
    loras: bool = False
    character_ids: frozenset[int] = frozenset()
    everything: bool = False


SYNTHETIC_SOURCE = "synthetic"


@dataclass(frozen=True)
class SyntheticOutcome:
    """What :meth:`LibraryService.add_synthetic_images` did, keyed by the source path."""

    character_id: int
    added: dict[str, ImageRecord]
    skipped: dict[str, str]      # already in the dataset (duplicate): the reason
    rejected: dict[str, str]     # could not be added: the reason


@dataclass(frozen=True)
class ImportOutcome:
    character_id: int
    report: ImportReport
    added: tuple[ImageRecord, ...] = ()


class ImportTask(QObject):
    """One running import. Cancel stops after the current file; finished files are kept.

    Signals:
        progressed(Progress): throttled to ~10 Hz.
        finished(ImportOutcome): the import ended (completed or cancelled).
    """

    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, character_id: int, label: str) -> None:
        super().__init__()
        self.character_id = character_id
        self.label = label
        self._cancel = threading.Event()
        self._last_emit = 0.0
        self.outcome: ImportOutcome | None = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _report(self, progress: Progress) -> None:
        """Called on the worker thread; forwards at most ~10 updates a second."""
        now = time.monotonic()
        if now - self._last_emit >= 0.1 or progress.done >= progress.total:
            self._last_emit = now
            call_in_main_thread(lambda: self.progressed.emit(progress))


class LibraryService(QObject):
    ready = Signal()
    data_changed = Signal(object)
    failed = Signal(str)
    import_started = Signal(object)
    checks_progressed = Signal(object)
    checks_finished = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
        self._io = ThreadPoolExecutor(2, thread_name_prefix="library-io")
        self._repo: Repository | None = None
        self._characters: dict[int, Character] = {}
        self._images: dict[int, ImageRecord] = {}
        self._loras: list[LoraRecord] = []
        self.is_ready = False
        self._tasks: set[ImportTask] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open and migrate the database off the UI thread, then load the snapshot."""

        def load() -> tuple[list[Character], list[ImageRecord], list[LoraRecord]]:
            self._repo = Repository(connect(self.paths.db_file), self.paths.data)
            return (self._repo.list_characters(), self._repo.list_images(),
                    self._repo.list_loras())

        def loaded(result: tuple[list[Character], list[ImageRecord], list[LoraRecord]]) -> None:
            chars, images, loras = result
            self._characters = {c.id: c for c in chars}
            self._images = {i.id: i for i in images}
            self._loras = loras
            self.is_ready = True
            logger.info("library loaded: {} characters, {} images", len(chars), len(images))
            self.ready.emit()
            self.data_changed.emit(ChangeSet(everything=True, characters=True, images=True,
                                             loras=True))

        run_in_executor(self._writer, load, loaded)

    def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._io.shutdown(wait=True, cancel_futures=True)

        def close() -> None:
            if self._repo is not None:
                self._repo.conn.close()

        self._writer.submit(close)
        self._writer.shutdown(wait=True)

    # -- reads (memory only, safe on the UI thread) ------------------------------------------
    def characters(self) -> list[Character]:
        return sorted(self._characters.values(), key=lambda c: c.name.lower())

    def character(self, character_id: int) -> Character | None:
        return self._characters.get(character_id)

    def images(self, character_id: int | None = None) -> list[ImageRecord]:
        if character_id is None:
            return list(self._images.values())
        return [i for i in self._images.values() if i.character_id == character_id]

    def image(self, image_id: int) -> ImageRecord | None:
        return self._images.get(image_id)

    def image_count(self, character_id: int) -> int:
        return sum(1 for i in self._images.values() if i.character_id == character_id)

    def is_trained(self, character_id: int) -> bool:
        return any(lora.character_id == character_id for lora in self._loras)

    def loras(self, character_id: int | None = None) -> list[LoraRecord]:
        return [lora for lora in self._loras
                if character_id is None or lora.character_id == character_id]

    def suggest_trigger(self, name: str) -> str:
        return suggest_trigger(name, [c.trigger_word for c in self._characters.values()])

    def character_folder(self, character: Character) -> Path:
        return self.paths.characters / character.folder

    # -- writes ----------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        logger.warning("user-facing failure: {}", message)
        self.failed.emit(message)

    def create_character(self, name: str, trigger_word: str, description: str = "",
                         on_created: Callable[[Character], None] | None = None) -> str | None:
        """Create a character; returns a validation problem (and writes nothing) or None."""
        name, trigger_word = name.strip(), trigger_word.strip()
        if not name:
            return "The name cannot be empty."
        if any(c.name.lower() == name.lower() for c in self._characters.values()):
            return f"A character named “{name}” already exists."
        problem = validate_trigger(trigger_word)
        if problem:
            return problem
        folder = folder_slug(name, [c.folder for c in self._characters.values()])
        with applog.correlation():
            logger.info("create character {!r} (folder {})", name, folder)

            def write() -> Character:
                assert self._repo is not None
                (self.paths.characters / folder).mkdir(parents=True, exist_ok=True)
                return self._repo.create_character(name, trigger_word, description, folder)

            def done(character: Character) -> None:
                self._characters[character.id] = character
                self.data_changed.emit(ChangeSet(characters=True,
                                                 character_ids=frozenset({character.id})))
                if on_created:
                    on_created(character)

            run_in_executor(self._writer, write, done, self._known_failure(
                f"Could not create “{name}”"))
        return None

    def update_character(self, character_id: int, *, name: str | None = None,
                         trigger_word: str | None = None,
                         description: str | None = None) -> str | None:
        """Rename or edit a character; returns a validation problem or None."""
        if name is not None:
            name = name.strip()
            if not name:
                return "The name cannot be empty."
            if any(c.name.lower() == name.lower() and c.id != character_id
                   for c in self._characters.values()):
                return f"A character named “{name}” already exists."
        if trigger_word is not None:
            trigger_word = trigger_word.strip()
            problem = validate_trigger(trigger_word)
            if problem:
                return problem
        with applog.correlation():
            logger.info("update character {}", character_id)

            def write() -> Character:
                assert self._repo is not None
                return self._repo.update_character(character_id, name=name,
                                                   trigger_word=trigger_word,
                                                   description=description)

            def done(character: Character) -> None:
                self._characters[character.id] = character
                self.data_changed.emit(ChangeSet(characters=True,
                                                 character_ids=frozenset({character.id})))

            run_in_executor(self._writer, write, done,
                            self._known_failure("Could not save the character"))
        return None

    def delete_character(self, character_id: int) -> None:
        """Move the character's folder to the OS trash and forget the character."""
        character = self._characters.get(character_id)
        if character is None:
            return
        folder = self.character_folder(character)
        with applog.correlation():
            logger.info("delete character {} ({})", character_id, character.name)

            def write() -> None:
                assert self._repo is not None
                if folder.exists():
                    send2trash(str(folder))
                self._repo.delete_character(character_id)

            def done(_: None) -> None:
                self._characters.pop(character_id, None)
                self._images = {k: v for k, v in self._images.items()
                                if v.character_id != character_id}
                self._loras = [lora for lora in self._loras if lora.character_id != character_id]
                self.data_changed.emit(ChangeSet(characters=True, images=True,
                                                 character_ids=frozenset({character_id})))

            run_in_executor(self._writer, write, done, self._known_failure(
                f"Could not delete “{character.name}” (nothing was removed)"))

    def set_caption(self, image_id: int, caption: str) -> None:
        self.set_captions({image_id: caption})

    def set_captions(self, captions: dict[int, str]) -> None:
        """Save captions to the database and mirror them to ``<image>.txt`` sidecars."""
        captions = {i: c for i, c in captions.items() if i in self._images}
        if not captions:
            return
        targets = {i: self._images[i].path for i in captions}
        with applog.correlation():
            logger.info("save {} caption(s)", len(captions))

            def write() -> None:
                assert self._repo is not None
                self._repo.set_captions(captions)
                for image_id, caption in captions.items():
                    caption_ops.write_sidecar(targets[image_id], caption)

            def done(_: None) -> None:
                from dataclasses import replace

                for image_id, caption in captions.items():
                    if image_id in self._images:
                        self._images[image_id] = replace(self._images[image_id], caption=caption)
                ids = frozenset(self._images[i].character_id for i in captions
                                if i in self._images)
                self.data_changed.emit(ChangeSet(images=True, character_ids=ids))

            run_in_executor(self._writer, write, done,
                            self._known_failure("Could not save the caption"))

    def prepend_trigger(self, image_ids: Iterable[int]) -> None:
        """Put each image's character trigger word at the start of its caption."""
        updates = {}
        for image_id in image_ids:
            image = self._images.get(image_id)
            character = image and self._characters.get(image.character_id)
            if image and character:
                new = caption_ops.prepend_trigger(image.caption, character.trigger_word)
                if new != image.caption:
                    updates[image_id] = new
        self.set_captions(updates)

    def find_replace(self, image_ids: Iterable[int], find: str, replace: str,
                     case_sensitive: bool = True) -> int:
        """Replace text in captions; returns how many captions change."""
        if not find:
            return 0
        updates = {}
        for image_id in image_ids:
            image = self._images.get(image_id)
            if image:
                new = caption_ops.find_replace(image.caption, find, replace,
                                               case_sensitive=case_sensitive)
                if new != image.caption:
                    updates[image_id] = new
        self.set_captions(updates)
        return len(updates)

    def delete_images(self, image_ids: Iterable[int]) -> None:
        """Move images (and their caption sidecars) to the OS trash, then forget them."""
        records = [self._images[i] for i in image_ids if i in self._images]
        if not records:
            return
        with applog.correlation():
            logger.info("delete {} image(s)", len(records))

            def write() -> tuple[list[int], list[str]]:
                assert self._repo is not None
                gone, problems = [], []
                for record in records:
                    try:
                        for path in (record.path, caption_ops.sidecar_path(record.path)):
                            if path.exists():
                                send2trash(str(path))
                        gone.append(record.id)
                    except OSError as exc:
                        problems.append(f"{record.filename}: {exc.strerror or exc}")
                self._repo.delete_images(gone)
                return gone, problems

            def done(result: tuple[list[int], list[str]]) -> None:
                gone, problems = result
                ids = frozenset(self._images[i].character_id for i in gone if i in self._images)
                for image_id in gone:
                    self._images.pop(image_id, None)
                self.data_changed.emit(ChangeSet(images=True, character_ids=ids))
                if problems:
                    self._fail("Some images could not be moved to the trash and were kept:\n"
                               + "\n".join(problems))

            run_in_executor(self._writer, write, done,
                            self._known_failure("Could not delete the images"))

    def add_lora(self, character_id: int, path: str, family: str, steps: int) -> None:
        """Record a trained LoRA for a character (used by the training service)."""

        def write() -> LoraRecord:
            assert self._repo is not None
            return self._repo.add_lora(character_id, path, family, steps)

        def done(lora: LoraRecord) -> None:
            self._loras.append(lora)
            self.data_changed.emit(ChangeSet(loras=True, characters=True,
                                             character_ids=frozenset({character_id})))

        run_in_executor(self._writer, write, done)

    def add_synthetic_images(self, character_id: int,
                             items: Sequence[tuple[Path | str, str]],
                             on_done: Callable[[SyntheticOutcome], None] | None = None,
                             on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Add generated image files to a character's dataset (Keep in the staging area).

        Each ``(path, caption)`` is copied into the character's folder the way imports store
        photos (checked, de-duplicated by content, thumbnailed), gets a ``<image>.txt``
        sidecar with ``caption`` and a row with ``source = "synthetic"``; then
        ``data_changed`` is emitted. ``on_done(SyntheticOutcome)`` runs on the main thread
        (a duplicate of an image already in the dataset counts as skipped, not failed).
        """
        character = self._characters.get(character_id)
        if character is None:
            exc = KeyError(f"character {character_id} no longer exists")
            if on_failure is not None:
                on_failure(exc)
            else:
                self._fail("That character no longer exists; nothing was added.")
            return
        dest = self.character_folder(character)
        known = {i.sha256: i.filename for i in self._images.values()
                 if i.character_id == character_id}
        captions = {os.fspath(Path(p)): c for p, c in items}
        with applog.correlation():
            logger.info("add {} synthetic image(s) to character {}", len(captions), character_id)
            from ..core.dataset.importer import import_files

            def work() -> ImportReport:
                report = import_files([Path(p) for p in captions], dest, known,
                                      thumbnail_dir=self.paths.thumbnails)
                for item in report.imported:
                    caption_ops.write_sidecar(item.stored_path, captions.get(item.source, ""))
                return report

            def store(report: ImportReport) -> None:
                def write() -> list[ImageRecord]:
                    assert self._repo is not None
                    return self._repo.add_images(character_id, [
                        (i.stored_path, i.sha256, i.width, i.height,
                         captions.get(i.source, ""), SYNTHETIC_SOURCE)
                        for i in report.imported])

                def done(added: list[ImageRecord]) -> None:
                    by_path = {r.path: r for r in added}
                    for record in added:
                        self._images[record.id] = record
                    if added:
                        self.data_changed.emit(ChangeSet(images=True,
                                                         character_ids=frozenset({character_id})))
                    outcome = SyntheticOutcome(
                        character_id,
                        {i.source: by_path[i.stored_path] for i in report.imported
                         if i.stored_path in by_path},
                        {s.source: s.reason for s in report.skipped},
                        {r.source: r.reason for r in report.rejected})
                    if on_done is not None:
                        on_done(outcome)

                run_in_executor(self._writer, write, done,
                                on_failure or self._known_failure(
                                    "Could not add the images to the dataset"))

            run_in_executor(self._io, work, store,
                            on_failure or self._known_failure(
                                "Could not add the images to the dataset"))

    def run_db(self, fn: Callable[[sqlite3.Connection], T],
               on_success: Callable[[T], None] | None = None,
               on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Run ``fn(connection)`` on the one writer thread (for other tables, e.g. ``jobs``).

        Call after :meth:`start`; callbacks run on the main thread; without ``on_failure`` an
        exception goes to ``sys.excepthook``. ``fn`` must not touch widgets or services.
        """

        def work() -> T:
            if self._repo is None:
                raise RuntimeError("the database is not open yet (LibraryService.start first)")
            return fn(self._repo.conn)

        run_in_executor(self._writer, work, on_success, on_failure)

    # -- import ------------------------------------------------------------------------------
    def import_photos(self, character_id: int, paths: Sequence[Path | str]) -> ImportTask | None:
        """Import files and folders into a character off the UI thread.

        Returns the running task (also announced by ``import_started``).
        """
        character = self._characters.get(character_id)
        if character is None:
            self._fail("That character no longer exists; nothing was imported.")
            return None
        dest = self.character_folder(character)
        known = {i.sha256: i.filename for i in self._images.values()
                 if i.character_id == character_id}
        task = ImportTask(character_id, f"Importing into {character.name}")
        self._tasks.add(task)
        cid = applog.new_correlation_id()
        with applog.correlation(cid):
            logger.info("import {} path(s) into character {}", len(paths), character_id)

            from ..core.dataset.importer import ImportReport, import_files
            from ..core.dataset.thumbnails import ensure_thumbnail

            def side_files(item: ImportedImage) -> None:
                caption_ops.write_sidecar(item.stored_path, item.caption or "")
                try:
                    ensure_thumbnail(item.stored_path, self.paths.thumbnails, item.sha256)
                except (OSError, ValueError) as exc:  # made during import; the grid retries
                    logger.warning("thumbnail failed for {}: {}", item.stored_path.name, exc)

            def work() -> ImportReport:
                report = import_files(list(paths), dest, known, report=task._report,
                                      cancelled=lambda: task.is_cancelled,
                                      workers=IMPORT_WORKERS,
                                      thumbnail_dir=self.paths.thumbnails)
                n = len(report.imported)
                with ThreadPoolExecutor(IMPORT_WORKERS, thread_name_prefix="sidecars") as pool:
                    for done, _ in enumerate(pool.map(side_files, report.imported), start=1):
                        task._report(Progress("Writing captions and thumbnails", done, n))
                return report

            def store(report: ImportReport) -> None:
                def write() -> list[ImageRecord]:
                    assert self._repo is not None
                    return self._repo.add_images(character_id, [
                        (i.stored_path, i.sha256, i.width, i.height, i.caption or "", i.source)
                        for i in report.imported])

                def done(added: list[ImageRecord]) -> None:
                    for record in added:
                        self._images[record.id] = record
                    self._tasks.discard(task)
                    task.outcome = ImportOutcome(character_id, report, tuple(added))
                    logger.info("import finished: {} added, {} skipped, {} rejected{}",
                                len(added), len(report.skipped), len(report.rejected),
                                " (cancelled)" if report.cancelled else "")
                    if added:
                        self.data_changed.emit(ChangeSet(images=True,
                                                         character_ids=frozenset({character_id})))
                    task.finished.emit(task.outcome)

                def write_failed(exc: BaseException) -> None:
                    self._tasks.discard(task)
                    task.outcome = ImportOutcome(character_id, report, ())
                    self._fail(f"The photos were copied but could not be recorded: {exc}")
                    task.finished.emit(task.outcome)

                run_in_executor(self._writer, write, done, write_failed)

            def work_failed(exc: BaseException) -> None:
                self._tasks.discard(task)
                task.outcome = ImportOutcome(character_id, ImportReport([], [], [], True), ())
                task.finished.emit(task.outcome)
                if isinstance(exc, OSError):
                    self._fail(f"Import into {character.name} stopped: {exc}")
                else:
                    _unexpected(exc)

            run_in_executor(self._io, work, store, work_failed)
        self.import_started.emit(task)
        return task

    # -- checks ------------------------------------------------------------------------------
    def run_checks(self, image_ids: Iterable[int] | None = None) -> None:
        """Check images (all when None) off the UI thread; emits ``checks_finished``."""
        from ..core.dataset.checks import CheckImage, run_checks

        records = [self._images[i] for i in image_ids if i in self._images] \
            if image_ids is not None else list(self._images.values())
        items = [CheckImage(r.id, r.path, r.sha256, r.width, r.height) for r in records]
        last = [0.0]

        def report(progress: Progress) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1 or progress.done >= progress.total:
                last[0] = now
                call_in_main_thread(lambda: self.checks_progressed.emit(progress))

        def work() -> list[Finding]:
            return run_checks(items, report=report)

        with applog.correlation():
            logger.info("dataset checks on {} image(s)", len(items))
            run_in_executor(self._io, work, self.checks_finished.emit)

    def _known_failure(self, what: str) -> Callable[[BaseException], None]:
        """Failure handler: expected errors become a message, others go to the excepthook."""

        def handle(exc: BaseException) -> None:
            if isinstance(exc, (DuplicateNameError, OSError, KeyError, ValueError)):
                detail = getattr(exc, "strerror", None) or str(exc)
                self._fail(f"{what}: {detail}")
            else:
                _unexpected(exc)

        return handle


def _unexpected(exc: BaseException) -> None:
    import sys

    sys.excepthook(type(exc), exc, exc.__traceback__)
