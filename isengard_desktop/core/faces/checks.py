"""Face findings for the dataset checks panel, and each character's dataset score. Pure.

Each finding names one photo (``core/dataset/checks.py`` :class:`Finding`). Kinds:

* ``no_face``: the analysis found no face (the HOG detector finds frontal and three-quarter
  faces down to ~40 px; a profile may count as no face).
* ``several_faces``: more than one face; the message says which one is taken as the subject
  (the one closest to the character's identity centre, ``core/identity.py``).
* ``face_too_small``: the subject's face box short side, at the family's training resolution,
  is under :data:`MIN_FACE_FRACTION` of that resolution (64 px at 512, 128 px at 1024). The
  photo is scaled so its short side is the training side (bucketing keeps about that area),
  so the face's size there is ``rel_size × side``. Why 1/8: the VAE works on 8×8 pixel
  cells, so such a face spans under 8 cells (SD1.5) / 16 cells (SDXL, Flux) across; dlib's box
  spans brows to chin, so this is a head about a fifth of the frame — a wide shot that
  teaches the outfit, not the face.
* ``face_cut``: the subject's box touches the photo's edge or a landmark lies outside it.

When a photo has a stored crop (:class:`FaceCheckImage` ``crop``, table ``image_crops``), the
crop is the picture the trainer sees (it crops before bucketing): the face's size is then
its box's short side over the crop's short side, and "cut" means cut by the crop's edge (a
face the crop leaves out is cut too: the edge it lies beyond).
* ``identity_outlier``: the subject's distance to the character's centre is at least dlib's
  same-person threshold 0.6 (similarity ≤ 0.4): "may be a different person", with the score
  and the set's range.
* ``face_analysis_failed``: the analysis child could not read the photo.

Detections scoring under :data:`MIN_FACE_SCORE` are ignored (kept in the cache, so the rule
can change without analysing again): dlib's HOG scored the real faces of our test photos 0.4
to 1.6 and its false positives on the astronaut's suit (``skimage.data.astronaut()``) 0.05
to 0.12.

Variety (a summary per character, never a per-photo finding), four axes:

* pose: frontal |yaw| < 15°, three-quarter < 40°, else side;
* light: the face's level (mean luminance < 85 dark, > 170 bright, else medium) and direction
  ("side-lit" when one half of the face is 25 % brighter than the other, else "even");
* framing: face box ≥ 35 % of the short side close-up, < 15 % wide, else medium;
* outfit: the mean colour under the chin (``torso_rgb``), grouped greedily: a colour within
  :data:`OUTFIT_DISTANCE` (RGB) of a group's first colour joins it. A rough hint, not a
  clothing model: a background of the clothes' colour, or one outfit in different light, can
  fool it; close-ups (no clothes in frame) are not counted.

One bucket holding :data:`VARIETY_DOMINANT` or more of at least :data:`VARIETY_MIN_FACES` faces
is "too little variety" and says what to add.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..dataset.checks import Finding
from ..dataset.crops import CropRect
from ..identity import (SAME_PERSON_DISTANCE, IdentityCentre, IdentityScore, centre_of_photos,
                        score_faces)
from .records import Face, PhotoFaces
from .rules import MIN_FACE_FRACTION, MIN_FACE_SCORE, min_face_px

__all__ = ["FACE_KINDS", "MIN_FACE_FRACTION", "RECOMMENDED_PHOTOS", "DatasetScore",
           "FaceCheckImage", "FaceReport", "MIN_FACE_SCORE", "confident_faces", "face_findings",
           "min_face_px"]

FACE_KINDS = ("face_analysis_failed", "no_face", "several_faces", "identity_outlier",
              "face_too_small", "face_cut")
RECOMMENDED_PHOTOS = 15
VARIETY_DOMINANT = 0.8
VARIETY_MIN_FACES = 5
FRONTAL_YAW = 15.0
THREE_QUARTER_YAW = 40.0
DARK, BRIGHT = 85.0, 170.0
SIDE_LIT = 0.25
OUTFIT_DISTANCE = 60.0
CLOSE_UP, WIDE = 0.35, 0.15


@dataclass(frozen=True)
class FaceCheckImage:
    """A photo to judge: its library id, file name, character and content hash, and its
    stored crop (None: the whole photo is trained)."""

    id: int
    name: str
    character_id: int
    sha256: str
    crop: CropRect | None = None


@dataclass(frozen=True)
class DatasetScore:
    """One character's dataset at a glance (the "Dataset score" card).

    ``score`` (0–100) = 100 × usable/photos × (0.6 + 0.1 × varied), ``varied`` being how
    many of the four variety axes (pose, light, framing, outfit) are not dominated by one
    bucket: a rough guide, not a prediction of the LoRA's quality. ``advice`` says what to
    add."""

    character_id: int
    photos: int
    usable: int
    with_face: int
    pose: Mapping[str, int]
    light: Mapping[str, int]
    framing: Mapping[str, int]
    outfit: Mapping[str, int]
    varied: int
    score: int
    advice: tuple[str, ...]

    def variety_text(self) -> str:
        def part(title: str, counts: Mapping[str, int]) -> str:
            return f"{title}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        axes = (("pose", self.pose), ("light", self.light), ("framing", self.framing),
                ("outfit colours", self.outfit))
        return " · ".join(part(t, c) for t, c in axes if any(c.values()))


@dataclass(frozen=True)
class FaceReport:
    """Findings (ordered by photo, then :data:`FACE_KINDS`), identity scores by image id and
    dataset scores by character id."""

    findings: tuple[Finding, ...]
    scores: Mapping[int, IdentityScore] = field(default_factory=dict)
    datasets: Mapping[int, DatasetScore] = field(default_factory=dict)


def _where(face: Face, width: int) -> str:
    left, _, right, _ = face.box
    centre = (left + right) / 2 / max(1, width)
    return "on the left" if centre < 1 / 3 else "on the right" if centre > 2 / 3 else \
        "in the middle"


def _cut_edges(face: Face, frame: tuple[int, int, int, int]) -> list[str]:
    """The edges of ``frame`` (left, top, right, bottom: the photo or its crop) that cut the
    face's box, or "outside (landmarks)" when only a landmark lies outside it."""
    x0, y0, x1, y1 = frame
    left, top, right, bottom = face.box
    edges = []
    if left <= x0:
        edges.append("left")
    if top <= y0:
        edges.append("top")
    if right >= x1 - 1:
        edges.append("right")
    if bottom >= y1 - 1:
        edges.append("bottom")
    if not edges and any(not (x0 <= x < x1 and y0 <= y < y1) for x, y in face.landmarks):
        edges.append("outside (landmarks)")
    return edges


def _as_trained(face: Face, crop: CropRect | None) -> Face:
    """``face`` with its size relative to the crop the trainer sees (as it is without one)."""
    if crop is None:
        return face
    return replace(face, rel_size=face.short_side / max(1, min(crop.width, crop.height)))


def _bucket_pose(face: Face) -> str:
    yaw = abs(face.yaw)
    return "frontal" if yaw < FRONTAL_YAW else "three-quarter" if yaw < THREE_QUARTER_YAW \
        else "side"


def _bucket_light(face: Face) -> str:
    level = "dark" if face.brightness < DARK else "bright" if face.brightness > BRIGHT \
        else "medium"
    return f"{level} side-lit" if abs(face.light_side) >= SIDE_LIT else f"{level} even"


def _outfit_groups(faces: Sequence[Face]) -> Counter[str]:
    """How many faces fall in each clothing-colour group (see the module docstring)."""
    firsts: list[tuple[float, float, float]] = []
    counts: Counter[str] = Counter()
    for face in faces:
        if face.torso_rgb is None:
            continue
        for i, first in enumerate(firsts):
            if math.dist(first, face.torso_rgb) <= OUTFIT_DISTANCE:
                counts[f"colour {i + 1}"] += 1
                break
        else:
            firsts.append(face.torso_rgb)
            counts[f"colour {len(firsts)}"] += 1
    return counts


def _bucket_framing(face: Face) -> str:
    return "close-up" if face.rel_size >= CLOSE_UP else "wide" if face.rel_size < WIDE \
        else "medium"


ADD_TEXT = {
    "pose": "add three-quarter and side views",
    "light": "add photos in other light (daylight, indoor, evening)",
    "framing": "add a mix of close-ups, half-body and wider shots",
    "outfit": "add photos in other clothes",
}
AXIS_WORDS = {"pose": "faces are {}", "light": "faces are lit {}",
              "framing": "faces are {} shots", "outfit": "photos show clothes of one {}"}


def confident_faces(photo: PhotoFaces) -> PhotoFaces:
    """``photo`` with only the detections scoring :data:`MIN_FACE_SCORE` or more."""
    kept = tuple(f for f in photo.faces if f.score >= MIN_FACE_SCORE)
    return photo if len(kept) == len(photo.faces) else replace(photo, faces=kept)


def face_findings(images: Sequence[FaceCheckImage], results: Mapping[str, PhotoFaces],
                  errors: Mapping[str, str], resolution: int) -> FaceReport:
    """Judge each photo's faces (see the module docstring) for training at ``resolution``.

    ``results`` and ``errors`` are keyed by sha256 (a photo missing from both was not
    analysed, e.g. a cancelled run, and gets no finding). The identity centre is made per
    character from that character's photos."""
    results = {sha: confident_faces(p) for sha, p in results.items()}
    per_image: dict[int, list[Finding]] = {}
    scores: dict[int, IdentityScore] = {}
    datasets: dict[int, DatasetScore] = {}
    min_px = min_face_px(resolution)
    by_character: dict[int, list[FaceCheckImage]] = {}
    for img in images:
        by_character.setdefault(img.character_id, []).append(img)

    for cid, members in by_character.items():
        analysed = [img for img in members if img.sha256 in results]
        photos = [results[img.sha256] for img in analysed]
        centre = centre_of_photos(photos)
        # no face in any analysed photo of the character: no centre, so nothing is scored
        # (each photo still gets its "no face" finding below)
        member_scores = score_faces(photos, centre) if centre is not None else []
        score_of = ({img.id: s for img, s in zip(analysed, member_scores, strict=True)}
                    if centre is not None else {})
        scores.update(score_of)
        valid = [s.similarity for s in member_scores if s.face_index is not None]
        usable = 0
        chosen: list[Face] = []
        for img in members:
            found: list[Finding] = []
            if img.sha256 in errors and img.sha256 not in results:
                found.append(Finding(img.id, "face_analysis_failed",
                                     f"face analysis failed: {errors[img.sha256]}"))
            elif img.sha256 in results:
                found = _photo_findings(img, results[img.sha256], score_of.get(img.id),
                                        centre, resolution, min_px, valid)
                sub = score_of.get(img.id)
                if sub is not None and sub.face_index is not None:
                    chosen.append(_as_trained(results[img.sha256].faces[sub.face_index],
                                              img.crop))
                elif centre is None and results[img.sha256].faces:
                    chosen.append(_as_trained(results[img.sha256].faces[0], img.crop))
                if not found or all(f.kind == "several_faces" for f in found):
                    usable += 1
            per_image[img.id] = found
        datasets[cid] = _dataset_score(cid, len(members), usable, chosen,
                                       sum(1 for p in photos if p.faces))

    order = {k: i for i, k in enumerate(FACE_KINDS)}
    findings = [f for img in images
                for f in sorted(per_image.get(img.id, []), key=lambda f: order[f.kind])]
    return FaceReport(tuple(findings), scores, datasets)


def _photo_findings(img: FaceCheckImage, photo: PhotoFaces, score: IdentityScore | None,
                    centre: IdentityCentre | None, resolution: int, min_px: int,
                    sims: Sequence[float]) -> list[Finding]:
    if not photo.faces:
        return [Finding(img.id, "no_face", "no face found — the LoRA learns the face only "
                                           "from photos that show it")]
    out: list[Finding] = []
    index = score.face_index if score is not None and score.face_index is not None else 0
    face = photo.faces[index]
    if len(photo.faces) > 1:
        how = "closest to the character's identity" if centre is not None else "the largest"
        out.append(Finding(img.id, "several_faces",
                           f"{len(photo.faces)} faces; the subject is taken to be the one "
                           f"{_where(face, photo.width)} ({how}) — crop the others out"))
    if score is not None and score.face_index is not None and \
            score.distance >= SAME_PERSON_DISTANCE and len(sims) >= 3:
        out.append(Finding(img.id, "identity_outlier",
                           f"may be a different person (similarity {score.similarity:.2f}; "
                           f"this character's photos score {statistics.median(sims):.2f} on "
                           f"median; the same person scores over "
                           f"{1 - SAME_PERSON_DISTANCE:.1f})"))
    crop = img.crop
    # the trained picture (the crop, if any) is scaled so its short side is the side
    px = _as_trained(face, crop).rel_size * resolution
    frame = (0, 0, photo.width, photo.height) if crop is None else crop.box()
    if px < min_px:
        fix = "crop closer" if crop is not None else "use a closer photo or crop"
        out.append(Finding(img.id, "face_too_small",
                           f"face is {px:.0f} px at the training resolution ({resolution} px"
                           f"{', in its crop' if crop is not None else ''}); "
                           f"{min_px} px or more teaches the face — {fix}"))
    edges = _cut_edges(face, frame)
    if edges:
        plural = "s" if len(edges) > 1 else ""
        out.append(Finding(img.id, "face_cut",
                           f"face cut by the crop ({', '.join(edges)} edge{plural}) — move or "
                           f"widen the crop" if crop is not None else
                           f"face cut by the frame ({', '.join(edges)} edge{plural}) — use an "
                           f"uncropped photo"))
    return out


def _dataset_score(cid: int, photos: int, usable: int, faces: Sequence[Face],
                   with_face: int) -> DatasetScore:
    axes: dict[str, Counter[str]] = {
        "pose": Counter({"frontal": 0, "three-quarter": 0, "side": 0}),
        "light": Counter(),
        "framing": Counter({"close-up": 0, "medium": 0, "wide": 0}),
        "outfit": _outfit_groups(faces),
    }
    for face in faces:
        axes["pose"][_bucket_pose(face)] += 1
        axes["light"][_bucket_light(face)] += 1
        axes["framing"][_bucket_framing(face)] += 1
    advice: list[str] = []
    varied = 0
    for axis, counts in axes.items():
        total = sum(counts.values())
        bucket, top = counts.most_common(1)[0] if total else ("", 0)
        if total >= VARIETY_MIN_FACES and top / total >= VARIETY_DOMINANT:
            what = AXIS_WORDS[axis].format("colour" if axis == "outfit" else bucket)
            advice.append(f"too little variety: {top} of {total} {what} — {ADD_TEXT[axis]}")
        elif total >= VARIETY_MIN_FACES:
            varied += 1
    if usable < RECOMMENDED_PHOTOS:
        advice.insert(0, f"add {RECOMMENDED_PHOTOS - usable} more usable photo"
                         f"{'s' if RECOMMENDED_PHOTOS - usable != 1 else ''} of the face "
                         f"({RECOMMENDED_PHOTOS} or more recommended)")
    score = 0 if photos == 0 else math.floor(100 * usable / photos * (0.6 + 0.1 * varied))
    return DatasetScore(cid, photos, usable, with_face, dict(axes["pose"]),
                        dict(axes["light"]), dict(axes["framing"]), dict(axes["outfit"]),
                        varied, score, tuple(advice))
