"""Plain SQL for the ``image_crops`` table (migration 7): each photo's face-centred crop.

A row is a rectangle in pixels of the stored photo, the bucket (width, height) whose aspect
it has, and whether it was proposed (``"proposed"``) or set in the editor (``"manual"``).
No row: the photo is not cropped. Deleting the image deletes its crop (foreign key).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from ..dataset.crops import CropRect
from .repository import now_iso
from .transaction import transaction

__all__ = ["CROP_SOURCES", "CropsRepository", "ImageCrop"]

CROP_SOURCES = ("proposed", "manual")


@dataclass(frozen=True)
class ImageCrop:
    """A stored crop: the rectangle, the bucket whose aspect it has, and its source."""

    rect: CropRect
    bucket: tuple[int, int]
    source: str = "proposed"     # one of CROP_SOURCES

    @property
    def manual(self) -> bool:
        return self.source == "manual"


class CropsRepository:
    """Reads and writes of ``image_crops`` for one connection (the writer's, for writes)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def list_crops(self) -> dict[int, ImageCrop]:
        rows = self.conn.execute("SELECT * FROM image_crops ORDER BY image_id")
        return {r["image_id"]: ImageCrop(CropRect(r["x"], r["y"], r["width"], r["height"]),
                                         (r["bucket_width"], r["bucket_height"]), r["source"])
                for r in rows}

    def set_crops(self, crops: Mapping[int, ImageCrop | None]) -> list[int]:
        """Store (or, for None, remove) each image's crop in one transaction; returns the ids
        of the images that still exist (a crop of a photo deleted meanwhile is dropped)."""
        stamp = now_iso()
        done: list[int] = []
        with transaction(self.conn):
            for image_id, crop in crops.items():
                if not self.conn.execute("SELECT 1 FROM images WHERE id=?",
                                         (image_id,)).fetchone():
                    continue
                if crop is None:
                    self.conn.execute("DELETE FROM image_crops WHERE image_id=?", (image_id,))
                else:
                    if crop.source not in CROP_SOURCES:
                        raise ValueError(f"source must be one of {CROP_SOURCES}, "
                                         f"not {crop.source!r}")
                    r = crop.rect
                    self.conn.execute(
                        "INSERT OR REPLACE INTO image_crops(image_id, x, y, width, height, "
                        "bucket_width, bucket_height, source, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                        (image_id, r.x, r.y, r.width, r.height, crop.bucket[0], crop.bucket[1],
                         crop.source, stamp))
                done.append(image_id)
        return done
