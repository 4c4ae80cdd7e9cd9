"""Real MP4 (H.264) and WebM (VP9) clips through PyAV: encode, probe, decode, metadata, sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isengard_desktop.core.video.container import (VideoFileError, export_frames, probe,
                                                   read_clip_record, read_frames,
                                                   rewrite_metadata, sidecar_path, write_clip,
                                                   write_sidecar)


def frames(n=9, w=64, h=48):
    return [np.full((h, w, 3), (i * 25) % 256, np.uint8) for i in range(n)]


@pytest.mark.parametrize("ext,codec", [("mp4", "h264"), ("webm", "vp9")])
def test_clip_round_trip_keeps_frames_fps_and_metadata(tmp_path, ext, codec):
    graph = {"1": {"class_type": "SaveVideo", "inputs": {}}}
    path = write_clip(tmp_path / f"c.{ext}", frames(9), 16,
                      metadata={"prompt": graph, "isengard": {"seed": 7, "prompt": "turns"}})
    info = probe(path)
    assert (info.width, info.height, info.frames, info.codec) == (64, 48, 9, codec)
    assert info.fps == pytest.approx(16)
    assert info.duration_s == pytest.approx(9 / 16)
    got = read_frames(path)
    assert len(got) == 9
    assert abs(int(got[4].mean()) - 100) <= 3      # the 5th frame's grey level survived
    record = read_clip_record(path)
    assert record.source == "container"
    assert record.parameters == {"seed": 7, "prompt": "turns"} and record.graph == graph


def test_sidecar_wins_over_container_and_bad_sidecar_names_its_field(tmp_path):
    path = write_clip(tmp_path / "c.mp4", frames(3), 8, metadata={"isengard": {"seed": 1}})
    write_sidecar(path, {"seed": 2}, [{"1": {}}, {"2": {}}])
    record = read_clip_record(path)
    assert (record.source, record.parameters["seed"], len(record.graph)) == ("sidecar", 2, 2)
    sidecar_path(path).write_text(json.dumps({"version": 1, "parameters": []}))
    with pytest.raises(VideoFileError, match="c.mp4.json: field 'parameters'"):
        read_clip_record(path)


def test_rewrite_metadata_copies_without_reencoding(tmp_path):
    src = write_clip(tmp_path / "a.mp4", frames(5), 10, metadata={"prompt": {"9": {}}})
    dest = rewrite_metadata(src, tmp_path / "b.mp4", {"isengard": {"seed": 3}})
    info = probe(dest)
    assert info.frames == 5
    assert json.loads(info.metadata["isengard"]) == {"seed": 3}
    assert json.loads(info.metadata["prompt"]) == {"9": {}}


def test_odd_sizes_are_cropped_and_frames_export_as_png(tmp_path):
    path = write_clip(tmp_path / "odd.mp4", frames(3, 33, 21), 8)
    assert (probe(path).width, probe(path).height) == (32, 20)
    pngs = export_frames(path, tmp_path / "frames")
    assert [p.name for p in pngs] == ["odd_00001.png", "odd_00002.png", "odd_00003.png"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(VideoFileError, match="x.avi: cannot write"):
        write_clip(tmp_path / "x.avi", frames(2), 8)
    with pytest.raises(VideoFileError, match="empty.mp4: no frames"):
        write_clip(tmp_path / "empty.mp4", [], 8)
    assert not (tmp_path / "empty.mp4").exists()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoFileError, match="bad.mp4 cannot be read"):
        probe(bad)
