"""The face maths without the models: yaw from landmarks, the Laplacian, the cache, the
robust identity centre and the face findings' rules (sizes, edges, outliers, variety) on
constructed faces. The real models on real photos are in tests/integration/test_face_analysis.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isengard_desktop.core.faces.cache import FaceCache
from isengard_desktop.core.faces.checks import (FaceCheckImage, face_findings, min_face_px)
from isengard_desktop.core.faces.measures import (laplacian_variance, light_side,
                                                  torso_colour, yaw_degrees)
from isengard_desktop.core.faces.records import ANALYSIS_VERSION, Face, PhotoFaces, RecordError
from isengard_desktop.core.identity import (SAME_PERSON_DISTANCE, identity_centre,
                                            identity_scores, main_face, rank_by_identity)

RNG = np.random.default_rng(15)
PERSON = RNG.normal(0, 0.09, 128)          # dlib descriptors have a norm near 1
STRANGER = RNG.normal(0, 0.09, 128)


def _emb(base: np.ndarray, spread: float = 0.012) -> tuple[float, ...]:
    return tuple(float(v) for v in base + RNG.normal(0, spread, 128))


def _face(box=(100, 100, 300, 300), emb=None, yaw_shift=0.0, brightness=128.0,
          score=1.0, size=(800, 800), side=0.0, torso=(40.0, 60.0, 200.0)) -> Face:
    left, top, right, bottom = box
    w = right - left
    cy = top + (bottom - top) * 0.4
    marks = ((left + 0.8 * w, cy), (left + 0.65 * w, cy), (left + 0.2 * w, cy),
             (left + 0.35 * w, cy), (left + 0.5 * w + yaw_shift, top + 0.65 * (bottom - top)))
    return Face(box=tuple(map(float, box)), landmarks=marks, score=score,  # type: ignore[arg-type]
                rel_size=min(w, bottom - top) / min(size), sharpness=100.0,
                yaw=yaw_degrees(marks), brightness=brightness,
                embedding=emb if emb is not None else _emb(PERSON), light_side=side,
                torso_rgb=torso)


def _photo(sha: str, *faces: Face, size=(800, 800)) -> PhotoFaces:
    return PhotoFaces(sha256=sha, width=size[0], height=size[1], faces=tuple(faces))


def test_yaw_is_zero_when_the_nose_is_centred_and_signed_by_its_side():
    assert abs(_face().yaw) < 1e-9
    right, left = _face(yaw_shift=30).yaw, _face(yaw_shift=-30).yaw
    assert right > 10 and left < -10 and right == pytest.approx(-left)
    assert abs(_face(yaw_shift=120).yaw) > abs(right)
    with pytest.raises(ValueError, match="5 landmarks"):
        yaw_degrees([(0, 0)] * 68)


def test_laplacian_variance_tells_sharp_from_flat():
    noise = RNG.integers(0, 255, (64, 64))
    assert laplacian_variance(noise) > 1000
    assert laplacian_variance(np.full((64, 64), 9)) == 0
    assert laplacian_variance(np.zeros((2, 2))) == 0


def test_cache_round_trips_and_ignores_broken_or_other_version_files(tmp_path):
    cache = FaceCache(tmp_path)
    sha = "ab" * 32
    photo = _photo(sha, _face())
    assert cache.get(sha) is None
    cache.put(photo)
    again = cache.get(sha)
    assert again is not None and again.faces[0].box == photo.faces[0].box
    assert len(again.faces[0].embedding) == 128
    path = cache.path_for(sha)
    assert (path.parent.parent.parent.name, path.parent.parent.name) == \
        (f"v{ANALYSIS_VERSION}", "hog")
    assert FaceCache(tmp_path, "cnn").get(sha) is None       # detectors are cached apart
    data = json.loads(path.read_text())
    data["version"] = ANALYSIS_VERSION + 1
    path.write_text(json.dumps(data))
    assert cache.get(sha) is None
    path.write_text("{half")
    assert cache.get(sha) is None
    with pytest.raises(ValueError, match="not a sha256"):
        cache.path_for("../../etc/passwd")
    with pytest.raises(RecordError, match="embedding 128"):
        Face.from_json({**_face().to_json(), "embedding": [0.0] * 3})


def test_centre_is_robust_to_a_stranger_and_ranks_it_last():
    photos = [_photo(f"{i:064x}", _face(emb=_emb(PERSON))) for i in range(8)]
    photos.append(_photo("f" * 64, _face(emb=_emb(STRANGER))))
    plain_mean = np.mean([p.faces[0].embedding for p in photos], axis=0)
    centre = identity_centre([p.faces[0].embedding for p in photos])
    assert centre is not None and centre.members == 8 and centre.faces == 9
    assert np.linalg.norm(np.array(centre.vector) - PERSON) < \
        np.linalg.norm(plain_mean - PERSON)
    ranked = rank_by_identity(identity_scores(photos[:8], photos))
    assert ranked[-1].sha256 == "f" * 64 and not ranked[-1].same_person
    assert all(s.distance < SAME_PERSON_DISTANCE for s in ranked[:-1])


def test_main_face_is_the_one_closest_to_the_centre_not_the_largest():
    big_stranger = _face(box=(0, 0, 400, 400), emb=_emb(STRANGER))
    small_subject = _face(box=(500, 100, 640, 240), emb=_emb(PERSON))
    centre = identity_centre([_emb(PERSON) for _ in range(5)])
    assert main_face([big_stranger, small_subject], None) == 0
    assert main_face([big_stranger, small_subject], centre) == 1
    assert main_face([], centre) is None
    assert identity_scores([], [_photo("a" * 64, small_subject)])[0].face_index is None


def test_face_size_rule_follows_the_training_resolution():
    assert (min_face_px(512), min_face_px(1024)) == (64, 128)
    # a 100 px face in an 800 px photo: 64 px at 512 (kept), 128 px at 1024 — just kept;
    # a 90 px one is 115 px at 1024: too small there, 58 px at 512: too small there too
    images = [FaceCheckImage(1, "a.png", 7, "1" * 64), FaceCheckImage(2, "b.png", 7, "2" * 64)]
    results = {"1" * 64: _photo("1" * 64, _face(box=(300, 300, 400, 400))),
               "2" * 64: _photo("2" * 64, _face(box=(300, 300, 390, 390)))}
    small = {f.image_id for f in face_findings(images, results, {}, 1024).findings
             if f.kind == "face_too_small"}
    assert small == {2}
    report = face_findings(images, results, {}, 512)
    msg = [f.message for f in report.findings if f.kind == "face_too_small"]
    assert len(msg) == 1 and "58 px at the training resolution (512 px); 64 px" in msg[0]


def test_cut_faces_unanalysed_photos_and_low_scores():
    images = [FaceCheckImage(i, f"{i}.png", 1, f"{i:064x}") for i in range(1, 6)]
    results = {
        f"{1:064x}": _photo(f"{1:064x}", _face(box=(-20, 200, 200, 420))),        # left edge
        f"{2:064x}": _photo(f"{2:064x}", _face(box=(300, 600, 500, 800))),        # bottom edge
        f"{3:064x}": _photo(f"{3:064x}", _face(), _face(box=(500, 500, 580, 580),
                                                         emb=_emb(STRANGER), score=0.1)),
        f"{4:064x}": _photo(f"{4:064x}", _face()),
    }
    report = face_findings(images, results, {f"{5:064x}": "5.png: the file is missing"}, 1024)
    kinds = {(f.image_id, f.kind) for f in report.findings}
    assert (1, "face_cut") in kinds and (2, "face_cut") in kinds
    assert "left edge" in next(f.message for f in report.findings if f.image_id == 1)
    assert not any(i == 3 for i, _ in kinds)      # a 0.1 detection is not a second face
    assert (5, "face_analysis_failed") in kinds
    assert "5.png: the file is missing" in next(f.message for f in report.findings
                                                 if f.image_id == 5)


def test_light_side_and_torso_colour_measures():
    even = np.full((40, 40), 120.0)
    lit = even.copy()
    lit[:, 20:] = 200.0
    assert light_side(even) == 0 and light_side(lit) > 0.4 and light_side(lit[:, ::-1]) < -0.4
    rgb = np.zeros((400, 300, 3), dtype=np.uint8)
    rgb[200:, :] = (200, 30, 30)                       # a red top under the face
    colour = torso_colour(rgb, (100, 100, 200, 200))
    assert colour is not None and colour[0] > 150 > colour[1]
    assert torso_colour(rgb, (100, 300, 200, 400)) is None       # chin at the bottom edge


def test_variety_summary_counts_and_says_what_to_add():
    images, results = [], {}
    for i in range(6):
        sha = f"{i:064x}"
        images.append(FaceCheckImage(i, f"{i}.png", 3, sha))
        results[sha] = _photo(sha, _face(brightness=128))
    card = face_findings(images, results, {}, 1024).datasets[3]
    assert card.pose["frontal"] == 6 and card.light == {"medium even": 6}
    assert card.outfit == {"colour 1": 6}
    assert card.usable == 6 and card.with_face == 6 and card.varied == 0
    assert any("6 of 6 faces are frontal" in a and "three-quarter" in a for a in card.advice)
    assert any("6 of 6 faces are lit medium even" in a for a in card.advice)
    assert any("6 of 6 photos show clothes of one colour" in a for a in card.advice)
    assert any("add 9 more usable photos" in a for a in card.advice)
    assert "pose: 6 frontal" in card.variety_text()
    # turned heads, mixed light and other clothes: those axes are no longer flagged
    looks = [(45, 40, 0.0, (200, 20, 20)), (-45, 220, 0.4, (20, 200, 20)),
             (60, 40, -0.4, (230, 230, 230)), (0, 220, 0.0, (10, 10, 10)),
             (-60, 128, 0.5, (200, 20, 20)), (50, 200, 0.0, (20, 200, 20))]
    for i, (shift, light, side, torso) in enumerate(looks):
        sha = f"{i + 10:064x}"
        images.append(FaceCheckImage(i + 10, f"{i + 10}.png", 3, sha))
        results[sha] = _photo(sha, _face(yaw_shift=shift, brightness=light, side=side,
                                         torso=tuple(map(float, torso))))
    card = face_findings(images, results, {}, 1024).datasets[3]
    assert not any(w in a for a in card.advice
                   for w in ("frontal", "faces are lit", "clothes of one"))
    assert any("12 of 12 faces are medium shots" in a for a in card.advice)
    assert card.varied == 3 and card.score > 0
    assert sum(card.outfit.values()) == 12 and len(card.outfit) == 5
