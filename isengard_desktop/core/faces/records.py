"""What face analysis found in one photo: :class:`Face` and :class:`PhotoFaces`, and their
JSON form (the analysis child's ``photo`` events and the cache files carry the same dict).

Coordinates are pixels of the upright photo at full size (the child analyses a downscaled
copy and scales them back). Landmarks are dlib's 5 points, in its order: the two corners of
the eye on the image's right (outer, inner), the two corners of the other eye (outer, inner),
the bottom of the nose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ANALYSIS_VERSION", "EMBEDDING_SIZE", "Face", "PhotoFaces", "RecordError"]

# Bump when what is measured or how changes: cached results of another version are redone.
ANALYSIS_VERSION = 2          # 2: light_side and torso_rgb
EMBEDDING_SIZE = 128


class RecordError(ValueError):
    """A face record (event line or cache file) that is not what this version writes."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: (left, top, right, bottom) in photo pixels (may reach past the border).
        landmarks: five (x, y) points, see the module docstring.
        score: the detector's confidence (dlib HOG: > 0 is a detection; higher is surer).
        rel_size: the box's short side over the photo's short side.
        sharpness: variance of the Laplacian of the face crop at 128 px (higher = sharper).
        yaw: rough head turn in degrees from the landmarks (0 frontal; sign: toward the
            image's right is positive).
        brightness: mean luminance of the face crop, 0..255.
        embedding: 128 numbers (dlib's identity descriptor; same person: distance < 0.6).
        light_side: side lighting of the face crop, about -1..1 (0: even light).
        torso_rgb: mean colour under the face (the clothes), None when out of frame.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    rel_size: float
    sharpness: float
    yaw: float
    brightness: float
    embedding: tuple[float, ...]
    light_side: float = 0.0
    torso_rgb: tuple[float, float, float] | None = None

    @property
    def short_side(self) -> float:
        left, top, right, bottom = self.box
        return min(right - left, bottom - top)

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box],
                "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
                "score": round(self.score, 4), "rel_size": round(self.rel_size, 4),
                "sharpness": round(self.sharpness, 2), "yaw": round(self.yaw, 1),
                "brightness": round(self.brightness, 1),
                "light_side": round(self.light_side, 3),
                "torso_rgb": (None if self.torso_rgb is None
                              else [round(v, 1) for v in self.torso_rgb]),
                "embedding": [round(v, 6) for v in self.embedding]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Face:
        try:
            box = tuple(float(v) for v in data["box"])
            marks = tuple((float(p[0]), float(p[1])) for p in data["landmarks"])
            emb = tuple(float(v) for v in data["embedding"])
            torso = data.get("torso_rgb")
            torso_rgb = None if torso is None else tuple(float(v) for v in torso)
            if torso_rgb is not None and len(torso_rgb) != 3:
                raise ValueError("torso_rgb needs 3 numbers")
            face = cls(box=box, landmarks=marks,  # type: ignore[arg-type]
                       score=float(data["score"]), rel_size=float(data["rel_size"]),
                       sharpness=float(data["sharpness"]), yaw=float(data["yaw"]),
                       brightness=float(data["brightness"]), embedding=emb,
                       light_side=float(data.get("light_side", 0.0)),
                       torso_rgb=torso_rgb)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordError(f"face record: {exc!r}") from exc
        if len(box) != 4 or len(marks) != 5 or len(emb) != EMBEDDING_SIZE:
            raise RecordError("face record: box needs 4 numbers, landmarks 5 points, "
                              f"embedding {EMBEDDING_SIZE} numbers")
        return face


@dataclass(frozen=True)
class PhotoFaces:
    """The faces of one photo (content ``sha256``), upright size ``width`` × ``height``."""

    sha256: str
    width: int
    height: int
    faces: tuple[Face, ...] = field(default_factory=tuple)
    version: int = ANALYSIS_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "width": self.width,
                "height": self.height, "faces": [f.to_json() for f in self.faces]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PhotoFaces:
        try:
            return cls(sha256=str(data["sha256"]), width=int(data["width"]),
                       height=int(data["height"]),
                       faces=tuple(Face.from_json(f) for f in data["faces"]),
                       version=int(data.get("version", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"photo record: {exc!r}") from exc
