"""Face-centred crops (issue 15, item 3): one crop per photo, at the aspect of one of the
family's training buckets, that keeps the face and the shoulders.

Crops are non-destructive: a crop is a rectangle stored per image (table ``image_crops``,
:mod:`~..db.crops`); the photo's file never changes. The built-in trainer crops while it loads
a photo, before bucketing; staging for an external trainer writes cropped copies.

* :class:`CropRect`: a rectangle in pixels of the stored (upright) image.
* :class:`FaceBox`: the subject's face in the same pixels, with dlib's 5 landmarks if known.
  :data:`FaceBoxSource` (image id → face box or None) is what the proposal asks; the face
  analysis provides one.
* :func:`propose_crop`: the proposal for one photo (see its docstring for the rule).
* :func:`move_crop`, :func:`resize_crop`, :func:`crop_for_bucket`: the editor's geometry
  (aspect locked, always inside the image).

Pure: no Qt, no torch, no file access.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EYE_LINE", "MIN_FACE_HEIGHTS", "CropProposal", "CropRect", "FaceBox",
           "FaceBoxSource", "crop_for_bucket", "move_crop", "propose_crop", "resize_crop"]

# Where the eyes go, as a fraction of the crop's height from its top (the "rule of thirds").
EYE_LINE = 1 / 3
# The crop is at least this many face heights tall where the photo allows (face + shoulders).
MIN_FACE_HEIGHTS = 3.0
# Without landmarks, the eye line is taken this far down a detector's face box. dlib's HOG
# and CNN boxes run from the eyebrows to the chin; the eyes sit at about 40 % of the box.
# (An estimate, used only when no landmarks are given.)
EYES_IN_BOX = 0.4

Bucket = tuple[int, int]


@dataclass(frozen=True)
class CropRect:
    """A crop: left, top, width and height in pixels of the stored (upright) image."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), as PIL's ``Image.crop`` takes it."""
        return self.x, self.y, self.right, self.bottom

    def fits(self, width: int, height: int) -> bool:
        """Lies inside a ``width`` × ``height`` image and is not empty."""
        return (self.x >= 0 and self.y >= 0 and self.width > 0 and self.height > 0
                and self.right <= width and self.bottom <= height)

    def problem(self, width: int, height: int) -> str | None:
        """Why this crop cannot be used on a ``width`` × ``height`` image, or None."""
        if self.fits(width, height):
            return None
        return (f"the crop {self.width}×{self.height} at ({self.x}, {self.y}) lies outside the "
                f"photo ({width}×{height}); adjust or reset it in the Dataset tab")

    def to_json(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, data: Any, where: str) -> CropRect:
        """From ``{"x":…, "y":…, "width":…, "height":…}``; ValueError naming ``where`` (the
        file and field) when it is not that, with whole non-negative numbers and a size."""
        keys = ("x", "y", "width", "height")
        if (not isinstance(data, dict) or set(data) != set(keys)
                or not all(type(data[k]) is int and data[k] >= 0 for k in keys)
                or data["width"] < 1 or data["height"] < 1):
            raise ValueError(f"{where} must be {{\"x\", \"y\", \"width\", \"height\"}} in whole "
                             f"pixels (x, y ≥ 0; width, height ≥ 1), not {data!r}")
        return cls(data["x"], data["y"], data["width"], data["height"])


@dataclass(frozen=True)
class FaceBox:
    """The subject's face: a box in pixels of the stored (upright) image, and optionally its
    five landmarks in dlib's 5-point order (``shape_predictor_5_face_landmarks``: points 0–1
    the corners of one eye, 2–3 of the other, 4 the base of the nose)."""

    x: float
    y: float
    width: float
    height: float
    landmarks: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.landmarks and len(self.landmarks) != 5:
            raise ValueError(f"landmarks: 5 points in dlib's order, not {len(self.landmarks)}")

    def eyes(self) -> tuple[float, float]:
        """(x, y) of the point between the eyes: from the landmarks, else estimated from the
        box (centred, :data:`EYES_IN_BOX` down)."""
        if self.landmarks:
            corners = self.landmarks[:4]
            return (sum(p[0] for p in corners) / 4, sum(p[1] for p in corners) / 4)
        return self.x + self.width / 2, self.y + self.height * EYES_IN_BOX


FaceBoxSource = Callable[[int], FaceBox | None]
"""Given an image id, the subject's face box (with landmarks if known), or None when no face
was found or the photo was not analysed yet. Called off the UI thread."""


@dataclass(frozen=True)
class CropProposal:
    """A proposed crop and the bucket (width, height) whose aspect it has."""

    rect: CropRect
    bucket: Bucket


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _width_for(height: int, bucket: Bucket) -> int:
    """The crop width with ``bucket``'s aspect at ``height`` (rounded to the nearest pixel)."""
    bw, bh = bucket
    return (2 * height * bw + bh) // (2 * bh)


def _max_height(width: int, height: int, bucket: Bucket) -> int:
    """The tallest crop with ``bucket``'s aspect inside a ``width`` × ``height`` image."""
    bw, bh = bucket
    return min(height, width * bh // bw)


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


def propose_crop(width: int, height: int, face: FaceBox,
                 buckets: Sequence[Bucket]) -> CropProposal | None:
    """The face-centred crop of a ``width`` × ``height`` photo.

    The aspect is that of the bucket closest to the photo's own (the next closest when the
    face cannot fit in it). The crop puts the point between the eyes in the middle
    horizontally and at :data:`EYE_LINE` from the top, and is the largest rectangle that does
    so inside the photo; when that rectangle is shorter than :data:`MIN_FACE_HEIGHTS` face
    heights (the face is near an edge), the crop is that tall (or as tall as the photo
    allows) and slid as little as possible to stay inside the photo. It always holds the
    whole face box (clipped to the photo). None when the face box lies outside the photo or
    fits no bucket's aspect (it fills the photo: there is nothing to crop)."""
    if width < 1 or height < 1 or not buckets:
        return None
    left, top = max(0, math.floor(face.x)), max(0, math.floor(face.y))
    right = min(width, math.ceil(face.x + face.width))
    bottom = min(height, math.ceil(face.y + face.height))
    if right <= left or bottom <= top:
        return None
    fw, fh = right - left, bottom - top
    ex, ey = face.eyes()
    ex, ey = min(max(ex, left), right), min(max(ey, top), bottom)
    photo = math.log(width / height)
    ordered = sorted(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - photo), -b[0] * b[1]))
    for bucket in ordered:
        bw, bh = bucket
        tallest = _max_height(width, height, bucket)
        needed = max(fh, _ceil_div(fw * bh, bw))
        if needed > tallest:
            continue
        aspect = bw / bh
        ideal = min(2 * ex / aspect, 2 * (width - ex) / aspect, ey / EYE_LINE,
                    (height - ey) / (1 - EYE_LINE), tallest)
        least = min(tallest, max(needed, math.ceil(MIN_FACE_HEIGHTS * fh)))
        h = max(math.floor(ideal), least)
        w = _width_for(h, bucket)
        x = _clamp(ex - w / 2, max(0, right - w), min(left, width - w))
        y = _clamp(ey - EYE_LINE * h, max(0, bottom - h), min(top, height - h))
        return CropProposal(CropRect(x, y, w, h), bucket)
    return None


# -- the editor's geometry (aspect locked, inside the image) --------------------------------

def move_crop(rect: CropRect, dx: float, dy: float, width: int, height: int) -> CropRect:
    """``rect`` moved by (dx, dy) pixels, stopped at the image's edges."""
    return CropRect(_clamp(rect.x + dx, 0, width - rect.width),
                    _clamp(rect.y + dy, 0, height - rect.height), rect.width, rect.height)


def resize_crop(rect: CropRect, corner: str, px: float, py: float, bucket: Bucket,
                width: int, height: int, min_height: int = 16) -> CropRect:
    """``rect`` resized by dragging its ``corner`` ("tl", "tr", "bl", "br") to (px, py) with
    ``bucket``'s aspect kept: the opposite corner stays, the new size follows the pointer's
    larger relative movement and is limited by the image's edges."""
    if corner not in ("tl", "tr", "bl", "br"):
        raise ValueError(f"corner must be tl, tr, bl or br, not {corner!r}")
    aspect = bucket[0] / bucket[1]
    ax = rect.x if corner[1] == "r" else rect.right     # the anchor (opposite corner)
    ay = rect.y if corner[0] == "b" else rect.bottom
    room_w = width - ax if corner[1] == "r" else ax
    room_h = height - ay if corner[0] == "b" else ay
    wanted = max(abs(px - ax) / aspect, abs(py - ay))
    limit = min(room_h, math.floor(room_w / aspect))
    h = max(1, min(limit, max(min(min_height, limit), round(wanted))))
    w = max(1, min(room_w, _width_for(h, bucket)))
    x = ax if corner[1] == "r" else ax - w
    y = ay if corner[0] == "b" else ay - h
    return CropRect(x, y, w, h)


def crop_for_bucket(rect: CropRect | None, bucket: Bucket, width: int,
                    height: int) -> CropRect:
    """A crop with ``bucket``'s aspect around ``rect``'s centre (the whole image's centre when
    None), as tall as ``rect`` where it fits (else as tall as the image allows)."""
    tallest = _max_height(width, height, bucket)
    h = tallest if rect is None else min(tallest, rect.height)
    w = _width_for(h, bucket)
    cx = width / 2 if rect is None else rect.x + rect.width / 2
    cy = height / 2 if rect is None else rect.y + rect.height / 2
    return CropRect(_clamp(cx - w / 2, 0, width - w), _clamp(cy - h / 2, 0, height - h), w, h)
