"""Numbers derived from one face, numpy only (the analysis child computes them; tests check
them on plain arrays)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["SHARPNESS_SIDE", "NOSE_DEPTH_RATIO", "TORSO_MIN_INSIDE", "brightness",
           "laplacian_variance", "light_side", "torso_colour", "yaw_degrees"]

SHARPNESS_SIDE = 128     # the face crop is resized to this square before the Laplacian
# Nose tip depth in front of the eye line over the distance between the eye centres, for a
# typical adult head (~2.5 cm over ~6.3 cm). Used only to turn the landmark offset into an
# angle; the yaw is an estimate (±10° is typical), good enough to sort poses into frontal,
# three-quarter and profile.
NOSE_DEPTH_RATIO = 0.4
TORSO_MIN_INSIDE = 0.25   # torso box share that must lie inside the photo to be measured


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a 2-D array (higher = sharper)."""
    a = np.asarray(gray, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def brightness(gray: np.ndarray) -> float:
    """Mean of a 2-D 8-bit luminance array (0..255); 0 for an empty one."""
    a = np.asarray(gray, dtype=np.float64)
    return float(a.mean()) if a.size else 0.0


def light_side(gray: np.ndarray) -> float:
    """Side lighting of a face crop: (mean of its right half - mean of its left half) over
    its mean, about -1..1; near 0 for even light."""
    a = np.asarray(gray, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 2 or not a.size:
        return 0.0
    half = a.shape[1] // 2
    mean = float(a.mean())
    return 0.0 if mean <= 1.0 else float(a[:, -half:].mean() - a[:, :half].mean()) / mean


def torso_colour(rgb: np.ndarray, box: tuple[int, int, int, int]
                 ) -> tuple[float, float, float] | None:
    """Mean colour of the clothes under a face: the region from the chin down 1.5 face
    heights, half a face width wider on each side (``box`` = left, top, right, bottom of the
    face in ``rgb``'s pixels). None when less than :data:`TORSO_MIN_INSIDE` of it is in the
    photo (a close-up shows no clothes)."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    x0, x1 = left - w // 2, right + w // 2
    y0, y1 = bottom, bottom + int(1.5 * h)
    full = max(1, (x1 - x0) * (y1 - y0))
    height, width = rgb.shape[:2]
    cx0, cx1, cy0, cy1 = max(0, x0), min(width, x1), max(0, y0), min(height, y1)
    if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < TORSO_MIN_INSIDE * full:
        return None
    mean = np.asarray(rgb[cy0:cy1, cx0:cx1], dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return (float(mean[0]), float(mean[1]), float(mean[2]))


def yaw_degrees(landmarks: Sequence[tuple[float, float]]) -> float:
    """Head turn estimate from dlib's 5 points: the nose's horizontal offset from the middle
    of the two eye centres, over the distance between them, turned into an angle with
    :data:`NOSE_DEPTH_RATIO` (offset = depth · tan(yaw) in that ratio). 0 is frontal;
    positive when the nose points toward the image's right."""
    if len(landmarks) != 5:
        raise ValueError(f"5 landmarks expected, got {len(landmarks)}")
    pts = np.asarray(landmarks, dtype=np.float64)
    eye_a = pts[0:2].mean(axis=0)
    eye_b = pts[2:4].mean(axis=0)
    axis = eye_a - eye_b
    dist = float(np.hypot(*axis))
    if dist <= 1e-6:
        return 0.0
    unit = axis / dist
    offset = float(np.dot(pts[4] - (eye_a + eye_b) / 2.0, unit)) / dist
    return math.degrees(math.atan(offset / NOSE_DEPTH_RATIO))
