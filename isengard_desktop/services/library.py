"""The library service: characters, their photos and captions (and the LoRAs trained for them).

Every write goes through the database service (:mod:`.database`: one writer thread, one
transaction per write op, a :class:`~.database.ChangeSet` emitted centrally after it); file
work (imports, trash, sidecars) runs on an I/O pool. The service keeps an in-memory snapshot
of the library so widgets can read it without touching the disk; the snapshot is updated
before the change is announced. Photos and generated images come in through one import
pipeline (:meth:`LibraryService.import_photos`, one :class:`~.import_task.ImportTask` each).

Signals:
    ready(): the snapshot is loaded; emitted once after :meth:`start`.
    data_changed(ChangeSet): characters, images or LoRAs were written (forwarded from the
        database service's ``changed``); the snapshot is already updated.
    failed(str): an expected failure the user must see (names the thing and what to do).
    import_started(ImportTask): an import began; connect it to a progress display.
"""

from __future__ import annotations

import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core import logging as applog
from ..core.dataset import captions as caption_ops
from ..core.db.records import Character, ImageRecord, LoraRecord, NewImage
from ..core.db.repository import DuplicateNameError, Repository
from ..core.naming import (folder_slug, suggest_trigger, validate_character_name,
                           validate_trigger)
from ..core.paths import AppPaths
from .database import ChangeSet, DatabaseService, WriteResult
from .import_task import ImportOutcome, ImportTask
from .ops import run_in_executor
from .trash_support import has_recycle_bin, to_trash

if TYPE_CHECKING:  # decoding pulls in numpy, pillow-heif and ImageHash: loaded on first use
    from ..core.dataset.importer import ImportedImage

__all__ = ["LibraryService", "SYNTHETIC_SOURCE"]

IMPORT_WORKERS = max(2, min(6, (os.cpu_count() or 2) + 1))

SYNTHETIC_SOURCE = "synthetic"

_Snapshot = tuple[list[Character], list[ImageRecord], list[LoraRecord]]


class LibraryService(QObject):
    """Characters, photos, captions and LoRA records; see the module docstring."""

    ready = Signal()
    data_changed = Signal(object)
    failed = Signal(str)
    import_started = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None, *,
                 database: DatabaseService | None = None) -> None:
        """``database``: the database service to write through, opened and closed by its
        owner; without one the library makes its own (opened by :meth:`start`, closed by
        :meth:`shutdown`). Other services reach it as ``library.database``."""
        super().__init__(parent)
        self.paths = paths
        self._owns_database = database is None
        self.database = database if database is not None else DatabaseService(paths.db_file)
        self.database.changed.connect(self._on_database_changed)
        self._io = ThreadPoolExecutor(2, thread_name_prefix="library-io")
        self._characters: dict[int, Character] = {}
        self._images: dict[int, ImageRecord] = {}
        self._loras: list[LoraRecord] = []
        self.is_ready = False
        self._tasks: set[ImportTask] = set()
        # An import records its photos in batches as they land (issue 11 item 3): at most
        # this many files, or what landed in this many seconds, per transaction.
        self.import_batch_files = 32
        self.import_batch_seconds = 0.5

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open and migrate the database off the UI thread, then load the snapshot; then
        reconcile the character folders with it (:meth:`_reconcile_folders`)."""
        data_root = self.paths.data
        started = time.time()

        def load(conn: sqlite3.Connection) -> _Snapshot:
            repo = Repository(conn, data_root)
            return repo.list_characters(), repo.list_images(), repo.list_loras()

        def loaded(result: _Snapshot) -> None:
            chars, images, loras = result
            self._characters = {c.id: c for c in chars}
            self._images = {i.id: i for i in images}
            self._loras = loras
            self.is_ready = True
            logger.info("library loaded: {} characters, {} images", len(chars), len(images))
            self._reconcile_folders(started)
            self.ready.emit()

        if self._owns_database:
            self.database.open(load, loaded)
        else:
            self.database.read(load, loaded)

    def _reconcile_folders(self, started: float) -> None:
        """Repair what an import killed half-way left (issue 11, item 3): photos in a
        character folder with no row are recorded (``source`` "recovered") or, when they
        cannot be used (not a photo, or a second copy), moved to the trash; stale ``.part``
        temp files in character folders and the thumbnail cache are removed. Files written
        since ``started`` (an import running now) are left alone."""
        from ..core.dataset.reconcile import reconcile_folder, remove_stale_temp_files

        thumbnails = self.paths.thumbnails
        Found = tuple[list[ImageRecord], list[Path], list[Path]]

        def op(conn: sqlite3.Connection) -> WriteResult[Found]:
            repo = self._repo(conn)
            images = repo.list_images()
            removed = remove_stale_temp_files(thumbnails, older_than=started, recursive=True)
            added: list[ImageRecord] = []
            trashed: list[Path] = []
            for character in repo.list_characters():
                mine = [i for i in images if i.character_id == character.id]
                found = reconcile_folder(self.character_folder(character),
                                         known_paths=[i.path for i in mine],
                                         known_sha256=[i.sha256 for i in mine],
                                         older_than=started)
                removed += found.removed
                if found.adopt:
                    added += repo.add_images(character.id, found.adopt)
                for path in found.unusable:
                    try:
                        to_trash(path)
                    except OSError as exc:
                        logger.warning("could not trash unusable {}: {}", path, exc)
                    else:
                        trashed.append(path)
            ids = frozenset(r.character_id for r in added)
            return WriteResult((added, removed, trashed), ChangeSet(
                images=True, character_ids=ids) if added else ChangeSet())

        def done(found: Found) -> None:
            added, removed, trashed = found
            for record in added:
                self._images[record.id] = record
            if added or removed or trashed:
                logger.warning("after an interrupted import: {} photo(s) recorded, {} unusable "
                               "file(s) moved to the trash, {} temp file(s) removed",
                               len(added), len(trashed), len(removed))

        self.database.write(op, done, lambda exc: logger.warning(
            "could not reconcile the character folders: {}", exc))

    def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._io.shutdown(wait=True, cancel_futures=True)
        if self._owns_database:
            self.database.shutdown()

    def _on_database_changed(self, change: ChangeSet) -> None:
        if change.touches_library:
            self.data_changed.emit(change)

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

    def _repo(self, conn: sqlite3.Connection) -> Repository:
        return Repository(conn, self.paths.data)

    def create_character(self, name: str, trigger_word: str, description: str = "",
                         on_created: Callable[[Character], None] | None = None) -> str | None:
        """Create a character; returns a validation problem (and writes nothing) or None.
        ``on_created(character)`` runs on the main thread before ``data_changed``."""
        name, trigger_word = name.strip(), trigger_word.strip()
        problem = validate_character_name(name)
        if problem:
            return problem
        if any(c.name.lower() == name.lower() for c in self._characters.values()):
            return f"A character named “{name}” already exists."
        problem = validate_trigger(trigger_word)
        if problem:
            return problem
        folder = folder_slug(name, [c.folder for c in self._characters.values()])
        with applog.correlation():
            logger.info("create character {!r} (folder {})", name, folder)

            def op(conn: sqlite3.Connection) -> WriteResult[Character]:
                (self.paths.characters / folder).mkdir(parents=True, exist_ok=True)
                character = self._repo(conn).create_character(name, trigger_word, description,
                                                              folder)
                return WriteResult(character, ChangeSet(
                    characters=True, character_ids=frozenset({character.id})))

            def done(character: Character) -> None:
                self._characters[character.id] = character
                if on_created:
                    on_created(character)

            self.database.write(op, done, self._known_failure(f"Could not create “{name}”"))
        return None

    def update_character(self, character_id: int, *, name: str | None = None,
                         trigger_word: str | None = None,
                         description: str | None = None) -> str | None:
        """Rename or edit a character; returns a validation problem or None."""
        if name is not None:
            name = name.strip()
            problem = validate_character_name(name)
            if problem:
                return problem
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

            def op(conn: sqlite3.Connection) -> WriteResult[Character]:
                character = self._repo(conn).update_character(
                    character_id, name=name, trigger_word=trigger_word,
                    description=description)
                return WriteResult(character, ChangeSet(
                    characters=True, character_ids=frozenset({character.id})))

            def done(character: Character) -> None:
                self._characters[character.id] = character

            self.database.write(op, done, self._known_failure("Could not save the character"))
        return None

    @property
    def trash_is_permanent(self) -> bool:
        """Deleting a character's files cannot be undone: the data folder is on a drive
        without a Recycle Bin (Windows: removable or network). Ask before deleting, then pass
        ``allow_permanent=True``. Asks the OS for the drive's type only."""
        return not has_recycle_bin(self.paths.characters)

    def delete_character(self, character_id: int, *, allow_permanent: bool = False) -> None:
        """Move the character's folder to the OS trash and forget the character (see
        :attr:`trash_is_permanent` for ``allow_permanent``)."""
        character = self._characters.get(character_id)
        if character is None:
            return
        folder = self.character_folder(character)
        with applog.correlation():
            logger.info("delete character {} ({})", character_id, character.name)

            def op(conn: sqlite3.Connection) -> WriteResult[None]:
                if folder.exists():
                    to_trash(folder, allow_permanent=allow_permanent)
                self._repo(conn).delete_character(character_id)
                return WriteResult(None, ChangeSet(characters=True, images=True,
                                                   character_ids=frozenset({character_id})))

            def done(_: None) -> None:
                self._characters.pop(character_id, None)
                self._images = {k: v for k, v in self._images.items()
                                if v.character_id != character_id}
                self._loras = [lora for lora in self._loras
                               if lora.character_id != character_id]

            self.database.write(op, done, self._known_failure(
                f"Could not delete “{character.name}” (nothing was removed)"))

    def set_caption(self, image_id: int, caption: str) -> None:
        self.set_captions({image_id: caption})

    def set_captions(self, captions: dict[int, str]) -> None:
        """Save captions to the database and mirror them to ``<image>.txt`` sidecars."""
        captions = {i: c for i, c in captions.items() if i in self._images}
        too_long = [p for i, c in captions.items()
                    if (p := caption_ops.caption_problem(c, self._images[i].filename))]
        if too_long:  # the editor refuses these already; nothing reaches a trainer
            self._fail("Captions not saved:\n" + "\n".join(too_long))
            captions = {i: c for i, c in captions.items()
                        if caption_ops.caption_problem(c) is None}
        if not captions:
            return
        targets = {i: self._images[i].path for i in captions}
        ids = frozenset(self._images[i].character_id for i in captions)
        with applog.correlation():
            logger.info("save {} caption(s)", len(captions))

            def op(conn: sqlite3.Connection) -> WriteResult[None]:
                self._repo(conn).set_captions(captions)
                for image_id, caption in captions.items():
                    caption_ops.write_sidecar(targets[image_id], caption)
                return WriteResult(None, ChangeSet(images=True, character_ids=ids))

            def done(_: None) -> None:
                for image_id, caption in captions.items():
                    if image_id in self._images:
                        self._images[image_id] = replace(self._images[image_id], caption=caption)

            self.database.write(op, done, self._known_failure("Could not save the caption"))

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

    def delete_images(self, image_ids: Iterable[int], *, allow_permanent: bool = False) -> None:
        """Move images (and their caption sidecars) to the OS trash, then forget them (see
        :attr:`trash_is_permanent` for ``allow_permanent``)."""
        records = [self._images[i] for i in image_ids if i in self._images]
        if not records:
            return
        with applog.correlation():
            logger.info("delete {} image(s)", len(records))

            def op(conn: sqlite3.Connection) -> WriteResult[tuple[list[int], list[str]]]:
                gone: list[int] = []
                problems: list[str] = []
                for record in records:
                    try:
                        for path in (record.path, caption_ops.sidecar_path(record.path)):
                            if path.exists():
                                to_trash(path, allow_permanent=allow_permanent)
                        gone.append(record.id)
                    except OSError as exc:
                        problems.append(f"{record.filename}: {exc.strerror or exc}")
                self._repo(conn).delete_images(gone)
                removed = set(gone)
                ids = frozenset(r.character_id for r in records if r.id in removed)
                return WriteResult((gone, problems), ChangeSet(images=True, character_ids=ids))

            def done(result: tuple[list[int], list[str]]) -> None:
                gone, problems = result
                for image_id in gone:
                    self._images.pop(image_id, None)
                if problems:
                    self._fail("Some images could not be moved to the trash and were kept:\n"
                               + "\n".join(problems))

            self.database.write(op, done, self._known_failure("Could not delete the images"))

    def add_lora(self, character_id: int, path: str, family: str, steps: int, *,
                 on_done: Callable[[], None] | None = None) -> None:
        """Record a trained LoRA for a character (used by the training service).
        ``on_done()`` runs on the main thread once the row is committed and listed by
        :meth:`loras`, or once the write failed (logged)."""

        def op(conn: sqlite3.Connection) -> WriteResult[LoraRecord]:
            lora = self._repo(conn).add_lora(character_id, path, family, steps)
            return WriteResult(lora, ChangeSet(loras=True, characters=True,
                                               character_ids=frozenset({character_id})))

        def recorded(lora: LoraRecord) -> None:
            self._loras.append(lora)
            if on_done is not None:
                on_done()

        def failed(exc: BaseException) -> None:
            logger.error("the LoRA {} was not recorded: {}", path, exc)
            if on_done is not None:
                on_done()

        self.database.write(op, recorded, failed)

    # -- import ------------------------------------------------------------------------------
    def import_photos(self, character_id: int, paths: Sequence[Path | str], *,
                      captions: Mapping[str, str] | None = None, source: str | None = None,
                      announce: bool = True,
                      on_done: Callable[[ImportOutcome], None] | None = None,
                      on_failure: Callable[[BaseException], None] | None = None
                      ) -> ImportTask | None:
        """Import files and folders into a character off the UI thread: photos a user
        dropped, or generated images kept from the staging area.

        Each file is checked, de-duplicated by content (a file already in the dataset is
        skipped, not failed), copied into the character's folder, thumbnailed, given a
        ``<image>.txt`` sidecar and recorded. Rows are written in batches as the files land
        (:attr:`import_batch_files` files or :attr:`import_batch_seconds`, one transaction
        and one ``data_changed`` each), so a killed import leaves at most one batch of
        files without a row, which the start-up reconcile adopts. Cancel keeps the files
        already added, with their rows.

        ``captions``: the caption of each source path (missing ones get ""); None takes the
        ``<source>.txt`` beside each source, if any. ``source``: what the rows record as
        their source (``SYNTHETIC_SOURCE`` for generated images); None records each original
        path. ``announce``: emit ``import_started`` (a progress display shows the task).
        ``on_done(ImportOutcome)`` runs on the main thread when the files are recorded;
        ``on_failure(exc)`` when the import could not finish (without it the user is told
        through ``failed``). Returns the running task, or None when the character is gone.
        """
        character = self._characters.get(character_id)
        if character is None:
            if on_failure is not None:
                on_failure(KeyError(f"character {character_id} no longer exists"))
            else:
                self._fail("That character no longer exists; nothing was imported.")
            return None
        dest = self.character_folder(character)
        known = {i.sha256: i.filename for i in self._images.values()
                 if i.character_id == character_id}
        given = None if captions is None else {os.fspath(Path(p)): c
                                               for p, c in captions.items()}
        thumbnails = self.paths.thumbnails
        task = ImportTask(character_id, f"Importing into {character.name}")
        self._tasks.add(task)
        cid = applog.new_correlation_id()
        with applog.correlation(cid):
            logger.info("import {} path(s) into character {}", len(paths), character_id)

            from ..core.dataset.importer import ImportReport, import_files
            from ..core.dataset.thumbnails import ensure_thumbnail

            def caption_of(item: ImportedImage) -> str:
                return given.get(item.source, "") if given is not None else item.caption or ""

            def side_files(item: ImportedImage) -> None:
                caption_ops.write_sidecar(item.stored_path, caption_of(item))
                try:
                    ensure_thumbnail(item.stored_path, thumbnails, item.sha256)
                except (OSError, ValueError) as exc:  # made during import; the grid retries
                    logger.warning("thumbnail failed for {}: {}", item.stored_path.name, exc)

            def rows_of(items: list[ImportedImage]) -> list[NewImage]:
                return [NewImage(path=i.stored_path, sha256=i.sha256, width=i.width,
                                 height=i.height, caption=caption_of(i),
                                 source=source if source is not None else i.source)
                        for i in items]

            added: list[ImageRecord] = []
            seen: set[int] = set()

            def remember(records: Iterable[ImageRecord]) -> None:
                """(main thread) Put new photos in the snapshot once: a batch's own callback
                and the import's end both bring them, in either order, and the later one must
                not undo a caption set or a photo deleted in between."""
                for image in records:
                    if image.id not in seen:
                        seen.add(image.id)
                        self._images[image.id] = image

            def record(batch: list[ImportedImage], pool: ThreadPoolExecutor) -> None:
                """(import thread) One batch of stored photos: sidecars and thumbnails,
                then its rows in one transaction, waited for — the importer lands no
                further file until this batch is recorded (crash consistency, issue 11
                item 3). The snapshot and ``data_changed`` follow on the main thread."""
                list(pool.map(side_files, batch))
                rows = rows_of(batch)

                def op(conn: sqlite3.Connection) -> WriteResult[list[ImageRecord]]:
                    new = self._repo(conn).add_images(character_id, rows)
                    return WriteResult(new, ChangeSet(
                        images=True, character_ids=frozenset({character_id}))
                        if new else ChangeSet())

                def stored(new: list[ImageRecord]) -> None:
                    remember(new)

                future = self.database.write(op, stored, lambda exc: None)
                result = future.result()
                added.extend(result.value)

            def work() -> ImportOutcome:
                with ThreadPoolExecutor(IMPORT_WORKERS, thread_name_prefix="sidecars") as pool:
                    try:
                        report = import_files(list(paths), dest, known, report=task._report,
                                              cancelled=lambda: task.is_cancelled,
                                              workers=IMPORT_WORKERS,
                                              thumbnail_dir=thumbnails,
                                              on_stored=lambda b: record(b, pool),
                                              batch_files=self.import_batch_files,
                                              batch_seconds=self.import_batch_seconds)
                    except BaseException as exc:
                        if added:   # the batches recorded so far stay; say how many
                            raise _PartialImport(exc, tuple(added)) from exc
                        raise
                return ImportOutcome(character_id=character_id, report=report,
                                     added=tuple(added))

            def ended(outcome: ImportOutcome) -> None:
                self._tasks.discard(task)
                task._finish(outcome)

            def finished(outcome: ImportOutcome) -> None:
                remember(outcome.added)   # the last batch's own callback may come later
                report = outcome.report
                logger.info("import finished: {} added, {} skipped, {} rejected{}",
                            len(outcome.added), len(report.skipped), len(report.rejected),
                            " (cancelled)" if report.cancelled else "")
                ended(outcome)
                if on_done is not None:
                    on_done(outcome)

            def work_failed(exc: BaseException) -> None:
                if not self.database.is_open:
                    # Quit while this import ran: the files already renamed into the folder
                    # and not recorded are adopted by the start-up reconcile.
                    logger.info("import ended after the database closed ({}); unrecorded "
                                "files are left for the next start", exc)
                    ended(ImportOutcome(character_id=character_id,
                                        report=ImportReport([], [], [], True)))
                    return
                kept: tuple[ImageRecord, ...] = ()
                if isinstance(exc, _PartialImport):
                    kept = exc.added
                    exc = exc.cause
                    logger.warning("import stopped after {} photo(s) were recorded: {}",
                                   len(kept), exc)
                remember(kept)
                ended(ImportOutcome(character_id=character_id,
                                    report=ImportReport([], [], [], True), added=kept))
                if on_failure is not None:
                    on_failure(exc)
                elif isinstance(exc, (OSError, sqlite3.Error)):
                    self._fail(f"Import into {character.name} stopped: {exc}"
                               + (f" ({len(kept)} photo(s) were added before it stopped)"
                                  if kept else ""))
                else:
                    _unexpected(exc)

            run_in_executor(self._io, work, finished, work_failed)
        if announce:
            self.import_started.emit(task)
        return task

    def _known_failure(self, what: str) -> Callable[[BaseException], None]:
        """Failure handler: expected errors become a message, others go to the excepthook."""

        def handle(exc: BaseException) -> None:
            if isinstance(exc, (DuplicateNameError, OSError, KeyError, ValueError)):
                detail = getattr(exc, "strerror", None) or str(exc)
                self._fail(f"{what}: {detail}")
            else:
                _unexpected(exc)

        return handle


class _PartialImport(Exception):
    """An import that failed after some batches were recorded: the cause and those rows."""

    def __init__(self, cause: BaseException, added: tuple[ImageRecord, ...]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.added = added


def _unexpected(exc: BaseException) -> None:
    import sys

    sys.excepthook(type(exc), exc, exc.__traceback__)
