"""The face checks' thresholds, import-free so the UI can quote them without loading numpy
(their reasons are in ``checks.py``'s docstring)."""

from __future__ import annotations

__all__ = ["MIN_FACE_FRACTION", "MIN_FACE_SCORE", "min_face_px"]

MIN_FACE_FRACTION = 1 / 8     # face box short side over the training side, at least
MIN_FACE_SCORE = 0.25         # dlib HOG detections scoring less are ignored


def min_face_px(resolution: int) -> int:
    """The smallest face box short side, in pixels at ``resolution``, not flagged."""
    return round(resolution * MIN_FACE_FRACTION)
