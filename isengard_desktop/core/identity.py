"""Identity maths, pure numpy: how close a face is to a character's dataset.

Embeddings are dlib's 128-D face descriptors (``core/faces/records.py``), compared by
euclidean distance: dlib's documentation gives 0.6 as its same-person threshold
(:data:`SAME_PERSON_DISTANCE`). The similarity shown to users is ``1 - distance``, so 0.4 and
above reads "same person" and the bottom of a ranking is the least alike.

The **centre** of a set is robust to a few strangers in it: the medoid (the face with the
smallest median distance to the others) picks the bulk of the set, then the centre is the
mean of the faces within :data:`SAME_PERSON_DISTANCE` of the medoid (the medoid alone when
none are). A stranger or two never moves it much, unlike a plain mean.

The **main face** of a photo with several faces is the one closest to the centre; with no
centre yet (first pass), the largest face.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .faces.records import Face, PhotoFaces

__all__ = ["SAME_PERSON_DISTANCE", "IdentityCentre", "IdentityScore", "centre_of_photos",
           "distances", "identity_centre", "identity_scores", "main_face", "rank_by_identity", "score_faces",
           "scores_by_sha", "similarity"]

SAME_PERSON_DISTANCE = 0.6
MIN_FACES_FOR_CENTRE = 3


@dataclass(frozen=True)
class IdentityCentre:
    """A set's robust identity centre: ``vector`` (128 numbers) made of ``members`` faces out
    of ``faces`` given."""

    vector: tuple[float, ...]
    members: int
    faces: int


@dataclass(frozen=True)
class IdentityScore:
    """How alike one photo's main face is to the centre: ``distance`` (euclidean; < 0.6 same
    person), ``similarity`` = 1 - distance; ``face_index`` into the photo's faces, or None
    (and NaN numbers) when the photo has no face."""

    sha256: str
    face_index: int | None
    distance: float
    similarity: float

    @property
    def same_person(self) -> bool:
        return self.face_index is not None and self.distance < SAME_PERSON_DISTANCE


def _matrix(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    m = np.asarray(vectors, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError("embeddings must be a list of equal-length vectors")
    return m


def distances(vectors: Sequence[Sequence[float]], centre: Sequence[float]) -> np.ndarray:
    """Euclidean distance of each vector to ``centre``."""
    if not len(vectors):
        return np.zeros(0)
    return np.linalg.norm(_matrix(vectors) - np.asarray(centre, dtype=np.float64), axis=1)


def similarity(distance: float) -> float:
    """The user-facing similarity of a distance (1 - distance)."""
    return 1.0 - float(distance)


def identity_centre(vectors: Sequence[Sequence[float]]) -> IdentityCentre | None:
    """The robust centre of ``vectors`` (see the module docstring); None when empty."""
    if not len(vectors):
        return None
    m = _matrix(vectors)
    if len(m) == 1:
        return IdentityCentre(tuple(float(v) for v in m[0]), 1, 1)
    sq = np.einsum("ij,ij->i", m, m)   # pairwise distances via the Gram matrix (n² memory)
    pair = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (m @ m.T), 0.0))
    np.fill_diagonal(pair, np.nan)
    medoid = int(np.nanargmin(np.nanmedian(pair, axis=1)))
    near = np.flatnonzero(np.nan_to_num(pair[medoid], nan=0.0) < SAME_PERSON_DISTANCE)
    chosen = m[near] if len(near) else m[[medoid]]
    return IdentityCentre(tuple(float(v) for v in chosen.mean(axis=0)), len(chosen), len(m))


def main_face(faces: Sequence[Face], centre: IdentityCentre | None) -> int | None:
    """Index of the photo's subject: closest to ``centre``, or the largest without one."""
    if not faces:
        return None
    if centre is None:
        return max(range(len(faces)), key=lambda i: faces[i].short_side)
    d = distances([f.embedding for f in faces], centre.vector)
    return int(np.argmin(d))


def centre_of_photos(photos: Sequence[PhotoFaces]) -> IdentityCentre | None:
    """The centre of a set of photos: first from each photo's largest face, then again from
    each photo's face closest to that first centre (so group photos add their subject)."""
    first = identity_centre([p.faces[i].embedding for p in photos
                             if (i := main_face(p.faces, None)) is not None])
    if first is None or first.faces < MIN_FACES_FOR_CENTRE:
        return first
    return identity_centre([p.faces[i].embedding for p in photos
                            if (i := main_face(p.faces, first)) is not None])


def score_faces(photos: Sequence[PhotoFaces], centre: IdentityCentre) -> list[IdentityScore]:
    """Each photo's main face scored against ``centre``, in the order given."""
    out = []
    for p in photos:
        i = main_face(p.faces, centre)
        if i is None:
            out.append(IdentityScore(p.sha256, None, float("nan"), float("nan")))
            continue
        d = float(distances([p.faces[i].embedding], centre.vector)[0])
        out.append(IdentityScore(p.sha256, i, d, similarity(d)))
    return out


def rank_by_identity(scores: Sequence[IdentityScore]) -> list[IdentityScore]:
    """Scores with a face, most alike first (the bottom ones are the likely strangers)."""
    return sorted((s for s in scores if s.face_index is not None), key=lambda s: s.distance)


def identity_scores(dataset: Sequence[PhotoFaces],
                    candidates: Sequence[PhotoFaces]) -> list[IdentityScore]:
    """The identity score API: each candidate's main face against the robust centre of a
    character's ``dataset`` photos (in the candidates' order). With no face in the dataset
    every score is NaN with ``face_index`` None (nothing to compare with)."""
    centre = centre_of_photos(dataset)
    if centre is None:
        return [IdentityScore(p.sha256, None, float("nan"), float("nan")) for p in candidates]
    return score_faces(candidates, centre)


def scores_by_sha(scores: Sequence[IdentityScore]) -> Mapping[str, IdentityScore]:
    return {s.sha256: s for s in scores}
