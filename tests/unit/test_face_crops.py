"""Face-centred crop proposals and the editor's geometry (core/dataset/crops.py), property
tested: every crop lies inside the photo, holds the face box and has its bucket's aspect."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isengard_desktop.core.dataset.crops import (EYE_LINE, MIN_FACE_HEIGHTS, CropRect, FaceBox,
                                                 crop_for_bucket, move_crop, propose_crop,
                                                 resize_crop)
from isengard_desktop.core.training.buckets import FAMILY_MULTIPLE, family_buckets, nearest_bucket

FAMILIES = sorted(FAMILY_MULTIPLE)


def aspect_ok(rect: CropRect, bucket: tuple[int, int]) -> bool:
    """The crop's width is the bucket's aspect times its height, within rounding."""
    return abs(rect.width - rect.height * bucket[0] / bucket[1]) <= 0.5 + 1e-9


def holds(rect: CropRect, face: FaceBox, width: int, height: int) -> bool:
    left, top = max(0, math.floor(face.x)), max(0, math.floor(face.y))
    right = min(width, math.ceil(face.x + face.width))
    bottom = min(height, math.ceil(face.y + face.height))
    return rect.x <= left and rect.y <= top and rect.right >= right and rect.bottom >= bottom


@st.composite
def photo_and_face(draw):
    width = draw(st.integers(64, 6000))
    height = draw(st.integers(64, 6000))
    fw = draw(st.floats(4, width, allow_nan=False))
    fh = draw(st.floats(4, height, allow_nan=False))
    # boxes may stick out of the photo a little (detectors do that at the edges)
    x = draw(st.floats(-fw / 3, width - 2 * fw / 3, allow_nan=False))
    y = draw(st.floats(-fh / 3, height - 2 * fh / 3, allow_nan=False))
    landmarks = ()
    if draw(st.booleans()):
        pts = st.tuples(st.floats(x, x + fw, allow_nan=False), st.floats(y, y + fh,
                                                                         allow_nan=False))
        landmarks = tuple(draw(pts) for _ in range(5))
    return width, height, FaceBox(x, y, fw, fh, landmarks), draw(st.sampled_from(FAMILIES))


@settings(max_examples=400, deadline=None)
@given(photo_and_face())
def test_a_proposal_is_inside_the_photo_holds_the_face_and_has_a_bucket_aspect(case):
    width, height, face, family = case
    buckets = family_buckets(family)
    proposal = propose_crop(width, height, face, buckets)
    if proposal is None:
        # only when the face fits in no bucket's aspect inside the photo
        for bw, bh in buckets:
            tallest = min(height, width * bh // bw)
            left, top = max(0, math.floor(face.x)), max(0, math.floor(face.y))
            fw = min(width, math.ceil(face.x + face.width)) - left
            fh = min(height, math.ceil(face.y + face.height)) - top
            assert fh > tallest or math.ceil(fw * bh / bw) > tallest
        return
    rect = proposal.rect
    assert proposal.bucket in buckets
    assert rect.fits(width, height)
    assert holds(rect, face, width, height)
    assert aspect_ok(rect, proposal.bucket)


@settings(max_examples=200, deadline=None)
@given(photo_and_face())
def test_a_proposal_is_three_face_heights_tall_where_the_photo_allows(case):
    width, height, face, family = case
    proposal = propose_crop(width, height, face, family_buckets(family))
    if proposal is None:
        return
    bw, bh = proposal.bucket
    tallest = min(height, width * bh // bw)
    fh = min(height, math.ceil(face.y + face.height)) - max(0, math.floor(face.y))
    assert proposal.rect.height >= min(tallest, math.ceil(MIN_FACE_HEIGHTS * fh))


def test_a_centred_portrait_face_gets_eyes_on_the_upper_third_and_centred():
    # 3000x4000 portrait, face 400 px tall with its eyes at (1500, 1300)
    face = FaceBox(1300, 1140, 400, 400)
    proposal = propose_crop(3000, 4000, face, family_buckets("sdxl"))
    assert proposal is not None
    rect = proposal.rect
    bw, bh = proposal.bucket
    assert bw < bh                                         # a portrait bucket for a portrait
    ex, ey = face.eyes()
    assert abs(rect.x + rect.width / 2 - ex) <= 1
    assert abs(rect.y + rect.height * EYE_LINE - ey) <= 1
    assert rect.height >= 3 * 400
    # the largest such crop: here the photo's width limits it (centred face, 7:9 bucket)
    assert (bw, bh) == (896, 1152)
    assert rect.width == 3000 and rect.height == 3000 * 1152 // 896


def test_a_face_at_the_edge_slides_the_crop_but_keeps_it_three_faces_tall():
    face = FaceBox(0, 50, 300, 300)           # top-left corner of a landscape photo
    proposal = propose_crop(4000, 2600, face, family_buckets("flux-dev"))
    assert proposal is not None
    rect = proposal.rect
    assert (rect.x, rect.y) == (0, 0)
    assert rect.height == 900
    assert holds(rect, face, 4000, 2600)


def test_dlib_landmarks_set_the_eye_line():
    # eyes at y=600 (points 0-3), nose at y=700: the box alone would put them at 580
    marks = ((900, 600), (950, 600), (1050, 600), (1100, 600), (1000, 700))
    face = FaceBox(800, 420, 400, 400, marks)
    assert face.eyes() == (1000, 600)
    proposal = propose_crop(2000, 3000, face, family_buckets("sd15"))
    assert proposal is not None
    assert abs(proposal.rect.y + proposal.rect.height * EYE_LINE - 600) <= 1
    with pytest.raises(ValueError, match="5 points"):
        FaceBox(0, 0, 10, 10, ((1, 1),))


def test_no_proposal_for_a_face_outside_the_photo_or_filling_it():
    assert propose_crop(1000, 1000, FaceBox(1200, 10, 100, 100), family_buckets("sd15")) is None
    # a 1000x700 photo whose face box covers it all: no bucket of SD 1.5 (ratio 1.43 is not
    # one of them) can hold it
    assert propose_crop(1000, 700, FaceBox(0, 0, 1000, 700), family_buckets("sd15")) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(64, 3000), st.integers(64, 3000), st.sampled_from(FAMILIES),
       st.data())
def test_the_editor_keeps_the_crop_inside_and_at_the_bucket_aspect(width, height, family,
                                                                  data):
    bucket = data.draw(st.sampled_from(family_buckets(family)))
    rect = crop_for_bucket(None, bucket, width, height)
    assert rect.fits(width, height) and aspect_ok(rect, bucket)
    for _ in range(4):
        if data.draw(st.booleans()):
            rect = move_crop(rect, data.draw(st.floats(-4000, 4000)),
                             data.draw(st.floats(-4000, 4000)), width, height)
        else:
            corner = data.draw(st.sampled_from(["tl", "tr", "bl", "br"]))
            rect = resize_crop(rect, corner, data.draw(st.floats(-500, width + 500)),
                               data.draw(st.floats(-500, height + 500)), bucket, width, height)
        assert rect.fits(width, height), rect
        # a crop squeezed to a few pixels may not hold the aspect to the pixel
        assert aspect_ok(rect, bucket) or rect.width <= 2 or rect.height <= 2, rect
    other = data.draw(st.sampled_from(family_buckets(family)))
    moved = crop_for_bucket(rect, other, width, height)
    assert moved.fits(width, height) and aspect_ok(moved, other)


def test_resizing_from_a_corner_keeps_the_opposite_corner():
    rect = CropRect(100, 100, 400, 600)       # 2:3
    bigger = resize_crop(rect, "br", 700, 1000, (2, 3), 2000, 2000)
    assert (bigger.x, bigger.y) == (100, 100)
    assert (bigger.width, bigger.height) == (600, 900)
    smaller = resize_crop(rect, "tl", 300, 400, (2, 3), 2000, 2000)
    assert (smaller.right, smaller.bottom) == (500, 700)
    assert (smaller.width, smaller.height) == (200, 300)


def test_crop_json_round_trip_and_bad_values_name_the_field():
    rect = CropRect(1, 2, 30, 40)
    assert CropRect.from_json(rect.to_json(), "x") == rect
    for bad in ({"x": -1, "y": 0, "width": 3, "height": 3}, {"x": 0, "y": 0, "width": 0,
                                                             "height": 3},
                {"x": 0, "y": 0, "width": 3}, [0, 0, 3, 3], {"x": 0.5, "y": 0, "width": 3,
                                                               "height": 3}):
        with pytest.raises(ValueError, match=r"images\[2\]\.crop"):
            CropRect.from_json(bad, "images[2].crop")
    assert CropRect(0, 0, 10, 10).problem(10, 10) is None
    assert "outside the photo (8×10)" in (CropRect(0, 0, 10, 10).problem(8, 10) or "")


@pytest.mark.parametrize("family", FAMILIES)
def test_crop_buckets_are_the_built_in_trainers_buckets(family):
    """The proposals use the trainer's own buckets: the family's multiple and native side in
    core are the trainer family's ``latent_multiple`` and ``default_resolution``."""
    from isengard_desktop.training_runtime.data import make_buckets
    from isengard_desktop.training_runtime.families.registry import family_class

    cls = family_class(family)
    assert family_buckets(family) == make_buckets(cls.default_resolution, cls.latent_multiple)
    with pytest.raises(ValueError, match="family: unknown model family 'sd3'"):
        family_buckets("sd3")


@settings(max_examples=300, deadline=None)
@given(photo_and_face())
def test_the_trainer_puts_a_proposed_crop_in_its_own_bucket(case):
    """What the tooltips promise: the built-in trainer's bucketing (nearest aspect) sends a
    proposed crop to the bucket it was made for, so it is scaled, not cut again (crops of a
    realistic size: at least 256 px tall)."""
    width, height, face, family = case
    buckets = family_buckets(family)
    proposal = propose_crop(width, height, face, buckets)
    if proposal is None or proposal.rect.height < 256 or proposal.rect.width < 256:
        return
    assert nearest_bucket(proposal.rect.width, proposal.rect.height, buckets) == proposal.bucket
