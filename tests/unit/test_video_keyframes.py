"""Keyframe sequences: segment planning, frame-count snapping and joining at shared frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isengard_desktop.core.video.keyframes import (join_frames, joined_length, plan_segments,
                                                   segment_lengths, snap_length)


def render(first: str, last: str, n: int) -> list[str]:
    """A stand-in render: first frame is the start keyframe, last is the end keyframe."""
    return [first] + [f"{first}->{last}#{i}" for i in range(1, n - 1)] + [last]


def test_three_keyframes_make_two_segments_joined_once_at_the_shared_frame():
    keys = ["A", "B", "C"]
    segs = plan_segments(keys, 5)
    assert [(s.first, s.last, s.frames) for s in segs] == [(0, 1, 5), (1, 2, 5)]
    rendered = [render(keys[s.first], keys[s.last], s.frames) for s in segs]
    assert rendered[0][-1] == rendered[1][0] == "B"
    clip = join_frames(rendered)
    assert clip.count("B") == 1
    assert clip[0] == "A" and clip[-1] == "C" and clip[4] == "B"
    assert len(clip) == joined_length([5, 5]) == 9


@given(st.lists(st.integers(min_value=2, max_value=40), min_size=1, max_size=8))
def test_joined_length_is_exact_and_every_keyframe_appears_once(lengths):
    keys = [f"K{i}" for i in range(len(lengths) + 1)]
    segs = plan_segments(keys, lengths)
    clip = join_frames([render(keys[s.first], keys[s.last], s.frames) for s in segs])
    assert len(clip) == joined_length(lengths) == sum(lengths) - len(lengths) + 1
    for k in keys:
        assert clip.count(k) == 1
    positions = [clip.index(k) for k in keys]
    assert positions == sorted(positions)


@pytest.mark.parametrize("frames,step,want", [(81, 4, 81), (80, 4, 81), (83, 4, 85), (1, 4, 5),
                                              (97, 8, 97), (100, 8, 97), (3, 8, 9)])
def test_snap_length_gives_step_n_plus_one(frames, step, want):
    assert snap_length(frames, step) == want


@given(st.integers(min_value=1, max_value=2000), st.integers(min_value=1, max_value=10),
       st.sampled_from([4, 8]))
def test_segment_lengths_are_model_lengths_and_sum_close_to_wanted(total, segments, step):
    lengths = segment_lengths(total, segments, step)
    assert len(lengths) == segments
    assert all((n - 1) % step == 0 and n >= step + 1 for n in lengths)
    joined = joined_length(lengths)
    assert (joined - 1) % step == 0
    assert abs(joined - max(total, segments * step + 1)) <= step


def test_bad_sequences_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least two keyframes"):
        plan_segments(["A"], 5)
    with pytest.raises(ValueError, match="3 keyframes make 2 segments, but 3 lengths"):
        plan_segments(["A", "B", "C"], [5, 5, 5])
    with pytest.raises(ValueError, match="segment 2 needs at least 2 frames"):
        plan_segments(["A", "B", "C"], [5, 1])
    with pytest.raises(ValueError, match="segment 2 has no frames"):
        join_frames([["A", "B"], []])
