"""The face findings judge a cropped photo in its crop (the picture the trainer sees): the
face's size relative to the crop, a face cut by the crop's edge, and the framing variety."""

from __future__ import annotations

from isengard_desktop.core.dataset.crops import CropRect
from isengard_desktop.core.faces.checks import FaceCheckImage, face_findings
from tests.unit.test_face_identity import _face, _photo

SHA = "1" * 64


def _kinds(crop: CropRect | None, face_box=(300, 300, 390, 390), resolution=1024):
    image = FaceCheckImage(1, "a.png", 7, SHA, crop)
    report = face_findings([image], {SHA: _photo(SHA, _face(box=face_box))}, {}, resolution)
    return {f.kind: f.message for f in report.findings}, report


def test_a_small_face_in_a_close_crop_is_not_too_small():
    # 90 px in an 800 px photo is 115 px at 1024: too small on the whole photo ...
    whole, _ = _kinds(None)
    assert "face_too_small" in whole and "115 px" in whole["face_too_small"]
    # ... but the trainer sees the 400 px crop around it: 90/400 x 1024 = 230 px
    cropped, _ = _kinds(CropRect(200, 200, 400, 400))
    assert "face_too_small" not in cropped and "face_cut" not in cropped


def test_a_wide_crop_still_flags_the_small_face_and_says_so():
    kinds, _ = _kinds(CropRect(0, 0, 800, 700))
    # short side 700: 90/700 x 1024 = 132 px is kept; at 512 it is 66 px (64 kept) ...
    assert "face_too_small" not in kinds
    kinds, _ = _kinds(CropRect(0, 0, 800, 760), face_box=(300, 300, 380, 380))
    # 80/760 x 1024 = 108 px
    assert "108 px at the training resolution (1024 px, in its crop)" in kinds["face_too_small"]
    assert "crop closer" in kinds["face_too_small"]


def test_a_face_cut_by_the_crop_is_cut_though_whole_in_the_photo():
    whole, _ = _kinds(None, face_box=(100, 100, 300, 300))
    assert "face_cut" not in whole
    kinds, _ = _kinds(CropRect(0, 0, 250, 800), face_box=(100, 100, 300, 300))
    assert kinds["face_cut"].startswith("face cut by the crop (right edge)")
    assert "move or widen the crop" in kinds["face_cut"]
    # a crop that leaves the face out altogether: cut on the side it lies beyond
    kinds, _ = _kinds(CropRect(400, 0, 400, 800), face_box=(100, 100, 300, 300))
    assert "left edge" in kinds["face_cut"]


def test_framing_variety_counts_the_face_in_its_crop():
    images, results = [], {}
    for i in range(6):
        sha = f"{i + 1:064x}"
        crop = CropRect(250, 250, 200, 200) if i < 3 else None
        images.append(FaceCheckImage(i + 1, f"{i}.png", 3, sha, crop))
        results[sha] = _photo(sha, _face(box=(300, 300, 400, 400)))
    card = face_findings(images, results, {}, 512).datasets[3]
    # 100 px of an 800 px photo is a wide shot; of a 200 px crop a close-up
    assert card.framing == {"close-up": 3, "medium": 0, "wide": 3}


def test_photos_without_any_face_get_their_finding_and_no_crash():
    """A character none of whose analysed photos shows a face has no identity centre: each
    photo is "no face", nothing is scored (the findings raised ValueError from a strict zip
    of the photos with an empty score list)."""
    images = [FaceCheckImage(i + 1, f"{i}.png", 5, f"{i + 1:064x}") for i in range(3)]
    results = {img.sha256: _photo(img.sha256) for img in images}
    report = face_findings(images, results, {}, 1024)
    assert sorted(f.image_id for f in report.findings if f.kind == "no_face") == [1, 2, 3]
    assert all(s.face_index is None for s in report.scores.values()) or not report.scores
