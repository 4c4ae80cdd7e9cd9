"""Video requests → runs: which workflow, how many frames, and errors that name the field."""

from __future__ import annotations

import pytest

from isengard_desktop.core.video.keyframes import joined_length
from isengard_desktop.core.video.specs import (TIERS, VideoRequest, frames_for, plan_video,
                                               run_params, tier_for)


@pytest.mark.parametrize("keys,kind,runs", [((), "txt2vid", 1), (("a",), "img2vid", 1),
                                            (("a", "b"), "flf2vid", 1),
                                            (("a", "b", "c", "d"), "flf2vid", 3)])
def test_keyframe_count_picks_the_workflow_and_segments(keys, kind, runs):
    request = VideoRequest(prompt="turns", family="ltxv", keyframes=keys, seconds=4, fps=25)
    planned = plan_video(request)
    assert [r.kind for r in planned] == [kind] * runs
    short = {"img2vid": "i2v", "flf2vid": "flf2v", "txt2vid": "t2v"}[kind]
    assert all(r.workflow == f"ltxv-{short}" for r in planned)
    assert joined_length([r.frames for r in planned]) == frames_for(4, 25, 8)
    if len(keys) >= 2:
        assert [r.keyframes for r in planned] == list(zip(keys, keys[1:], strict=False))


def test_run_params_snap_sizes_and_name_uploaded_images():
    request = VideoRequest(prompt="p", family="wan21", keyframes=("/x/a.png", "/x/b.png"),
                           width=650, height=370, seed=10, steps=12, negative="blur")
    run = plan_video(request)[0]
    params = run_params(request, run, 10, {"/x/a.png": "isengard/a.png", "/x/b.png": "isengard/b.png"})
    assert (params["width"], params["height"]) == (640, 368)
    assert params["start_image"] == "isengard/a.png" and params["end_image"] == "isengard/b.png"
    assert params["steps"] == 12 and params["negative"] == "blur" and params["seed"] == 10


def test_bad_requests_name_the_field():
    with pytest.raises(ValueError, match="^prompt:"):
        plan_video(VideoRequest(prompt="  "))
    with pytest.raises(ValueError, match="^family: unknown video model family 'svd'"):
        plan_video(VideoRequest(prompt="x", family="svd"))
    with pytest.raises(ValueError, match="^container:"):
        plan_video(VideoRequest(prompt="x", container="avi"))


def test_tiers_and_round_trip():
    assert [tier_for(v) for v in (None, 8, 12, 16, 24, 80)] == [TIERS[0], TIERS[0], TIERS[0],
                                                                   TIERS[1], TIERS[2], TIERS[2]]
    request = VideoRequest(prompt="x", keyframes=("a", "b"), seed=3, extra={"k": 1})
    data = request.to_json() | {"runs": ["wan21-flf2v"], "created": 1.0}
    assert VideoRequest.from_json(data) == request
