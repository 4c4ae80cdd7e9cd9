"""The crop service: each photo's face-centred crop (issue 15, item 3), stored without
touching the photo.

Crops live in the ``image_crops`` table (:mod:`~..core.db.crops`), written through the
library's database service (the one writer) with ``ChangeSet(images=True)``, so the library's
``data_changed`` refreshes whatever shows the photos. The service keeps an in-memory snapshot
(:meth:`CropService.crop`) for the grid's overlay and for the training service, which puts
each photo's crop into the job's ``dataset.json`` at its first start.

Face boxes come from a :data:`~..core.dataset.crops.FaceBoxSource` (image id → face box or
None), set with :meth:`CropService.set_face_source`. Until the face analysis provides one,
the default source knows no face, and every photo is skipped with "no face data yet: run the
face check first". The source is called on the service's own worker thread, never on the UI
thread nor on the database writer.

Signals:
    proposals_finished(CropProposalOutcome): a "Propose face crops" run was stored.
    failed(str): a crop could not be stored (names the photo or what to do).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core import logging as applog
from ..core.dataset.crops import CropRect, FaceBox, FaceBoxSource, propose_crop
from ..core.db.crops import CropsRepository, ImageCrop
from ..core.db.records import ImageRecord
from ..core.training.buckets import family_buckets
from ..core.training.presets import min_short_side
from .database import ChangeSet, WriteResult
from .library import LibraryService
from .ops import run_in_executor

__all__ = ["NO_FACE_DATA", "NO_FACE_FOUND", "CropProposalOutcome", "CropService",
           "no_face_data"]

NO_FACE_DATA = "no face data yet: run the face check first"
NO_FACE_FOUND = "no face found"
FACE_FILLS_PHOTO = "the face fills the photo: nothing to crop"


def no_face_data(_image_id: int) -> FaceBox | None:
    """The face source until the face analysis is connected: knows no face."""
    return None


@dataclass(frozen=True)
class CropProposalOutcome:
    """What a "Propose face crops" run did: the photos given a crop (``small``: those whose
    crop's short side is under the family's low-resolution limit, so training upscales them),
    the photos whose crop was set by hand and was kept, and the photos skipped with the
    reason."""

    family: str
    proposed: tuple[int, ...] = ()
    kept_manual: tuple[int, ...] = ()
    skipped: tuple[tuple[int, str], ...] = ()
    small: tuple[int, ...] = ()


class CropService(QObject):
    """Stores, proposes and hands out photo crops; see the module docstring for signals."""

    proposals_finished = Signal(object)
    failed = Signal(str)

    def __init__(self, library: LibraryService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._crops: dict[int, ImageCrop] = {}
        self._source: FaceBoxSource = no_face_data
        self._missing = NO_FACE_DATA
        self._io = ThreadPoolExecutor(1, thread_name_prefix="crops")
        self.is_ready = False
        self.is_proposing = False
        library.data_changed.connect(self._on_library_changed)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Load the stored crops (queued after the library's own start on the writer)."""

        def loaded(crops: dict[int, ImageCrop]) -> None:
            self._crops = crops
            self.is_ready = True
            logger.info("crops loaded: {}", len(crops))

        self._library.database.read(lambda conn: CropsRepository(conn).list_crops(), loaded,
                                    lambda exc: logger.warning("crops not loaded: {}", exc))

    def shutdown(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)

    def _on_library_changed(self, _change: ChangeSet) -> None:
        # a deleted photo's row went with it (foreign key); forget it here too
        gone = [i for i in self._crops if self._library.image(i) is None]
        for image_id in gone:
            del self._crops[image_id]

    # -- face boxes ------------------------------------------------------------------------
    def set_face_source(self, source: FaceBoxSource, missing: str = NO_FACE_FOUND) -> None:
        """Use ``source`` for proposals; ``missing`` is the reason shown for a photo it
        returns None for. The face analysis connects itself here."""
        self._source, self._missing = source, missing

    # -- reads (memory only) ---------------------------------------------------------------
    def crop(self, image_id: int) -> ImageCrop | None:
        return self._crops.get(image_id)

    def rect(self, image_id: int) -> CropRect | None:
        """The crop rectangle of a photo, or None (the whole photo)."""
        crop = self._crops.get(image_id)
        return crop.rect if crop is not None else None

    # -- writes ----------------------------------------------------------------------------
    def set_crop(self, image_id: int, crop: ImageCrop | None) -> None:
        """Store a photo's crop (the editor: ``source`` "manual"), or remove it (None)."""
        record = self._library.image(image_id)
        if record is None:
            return
        if crop is not None:
            problem = crop.rect.problem(record.width, record.height)
            if problem:
                self.failed.emit(f"{record.filename}: {problem}")
                return
        self._store({image_id: crop}, f"Could not save the crop of {record.filename}")

    def clear_crops(self, image_ids: Iterable[int]) -> None:
        """Remove the photos' crops (Reset): the trainer uses the whole photos."""
        crops: dict[int, ImageCrop | None] = {i: None for i in image_ids if i in self._crops}
        if crops:
            self._store(crops, "Could not remove the crops")

    def propose(self, image_ids: Iterable[int], family: str) -> bool:
        """Propose a face-centred crop at ``family``'s bucket aspects for each photo that has
        a face box, off the UI thread; a crop set by hand is kept. Emits
        ``proposals_finished`` once stored. False (nothing started) while a run is going or
        before the stored crops are loaded (a crop set by hand would not be known to keep)."""
        if self.is_proposing or not self.is_ready:
            return False
        buckets = family_buckets(family)
        records = [r for r in (self._library.image(i) for i in image_ids) if r is not None]
        manual = {r.id for r in records if (c := self._crops.get(r.id)) and c.manual}
        source, missing = self._source, self._missing
        self.is_proposing = True
        cid = applog.new_correlation_id()
        with applog.correlation(cid):
            logger.info("propose {} crops for {} photo(s)", family, len(records))

        def work() -> tuple[dict[int, ImageCrop], CropProposalOutcome]:
            crops: dict[int, ImageCrop] = {}
            kept: list[int] = []
            skipped: list[tuple[int, str]] = []
            for record in records:
                if record.id in manual:
                    kept.append(record.id)
                    continue
                found = _propose_one(record, source, buckets)
                if isinstance(found, ImageCrop):
                    crops[record.id] = found
                else:
                    skipped.append((record.id, missing if found is None else found))
            limit = min_short_side(family)
            small = tuple(i for i, c in crops.items()
                          if min(c.rect.width, c.rect.height) < limit)
            return crops, CropProposalOutcome(family, tuple(crops), tuple(kept), tuple(skipped),
                                              small)

        def computed(result: tuple[dict[int, ImageCrop], CropProposalOutcome]) -> None:
            crops, outcome = result

            def stored(ids: list[int]) -> None:
                self.is_proposing = False
                kept = set(ids)
                self.proposals_finished.emit(CropProposalOutcome(
                    family, tuple(i for i in outcome.proposed if i in kept),
                    outcome.kept_manual, outcome.skipped,
                    tuple(i for i in outcome.small if i in kept)))

            self._store(dict(crops), "Could not save the proposed crops", stored,
                        lambda: setattr(self, "is_proposing", False))

        def not_computed(exc: BaseException) -> None:
            self.is_proposing = False
            logger.opt(exception=exc).error("crop proposals failed")
            self.failed.emit(f"The face crops could not be proposed: {exc}")

        with applog.correlation(cid):
            run_in_executor(self._io, work, computed, not_computed)
        return True

    def _store(self, crops: dict[int, ImageCrop | None], what: str,
               on_done: Callable[[list[int]], None] | None = None,
               on_failed: Callable[[], None] | None = None) -> None:
        character_of = {i: r.character_id for i in crops
                        if (r := self._library.image(i)) is not None}

        def op(conn: sqlite3.Connection) -> WriteResult[list[int]]:
            ids = CropsRepository(conn).set_crops(crops)
            characters = frozenset(character_of[i] for i in ids if i in character_of)
            return WriteResult(ids, ChangeSet(images=True, character_ids=characters)
                               if ids else ChangeSet())

        def done(ids: list[int]) -> None:
            for image_id in ids:
                crop = crops[image_id]
                if crop is None:
                    self._crops.pop(image_id, None)
                else:
                    self._crops[image_id] = crop
            if on_done is not None:
                on_done(ids)

        def failed(exc: BaseException) -> None:
            logger.warning("{}: {}", what, exc)
            if on_failed is not None:
                on_failed()
            self.failed.emit(f"{what}: {exc}")

        self._library.database.write(op, done, failed)


def _propose_one(record: ImageRecord, source: FaceBoxSource,
                 buckets: list[tuple[int, int]]) -> ImageCrop | str | None:
    """The proposed crop of one photo; None when the source has no face for it; a reason
    when there is a face but no crop."""
    face = source(record.id)
    if face is None:
        return None
    proposal = propose_crop(record.width, record.height, face, buckets)
    if proposal is None:
        return FACE_FILLS_PHOTO
    return ImageCrop(proposal.rect, proposal.bucket, "proposed")
