"""Numbers derived from one face, numpy only (the analysis child computes them; tests check
them on plain arrays)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["SHARPNESS_SIDE", "NOSE_DEPTH_RATIO", "brightness", "laplacian_variance",
           "yaw_degrees"]

SHARPNESS_SIDE = 128     # the face crop is resized to this square before the Laplacian
# Nose tip depth in front of the eye line over the distance between the eye centres, for a
# typical adult head (~2.5 cm over ~6.3 cm). Used only to turn the landmark offset into an
# angle; the yaw is an estimate (±10° is typical), good enough to sort poses into frontal,
# three-quarter and profile.
NOSE_DEPTH_RATIO = 0.4


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
