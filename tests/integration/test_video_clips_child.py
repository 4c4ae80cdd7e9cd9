"""The clips child (``python -m isengard_desktop.analysis_runtime clips <op>``) as a real child
process on real MP4 (H.264) and WebM (VP9) files made here: probe, record, finish (copy with
metadata; join a keyframe sequence; WebM; frames), export-frames, preview (cached JPEGs), and
errors that name the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from isengard_desktop.core.video import clip_record
from isengard_desktop.core.video.container import probe, read_frames, write_clip

ROOT = Path(__file__).resolve().parents[2]


def clips(*args: str | Path) -> tuple[int, list[dict], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "isengard_desktop.analysis_runtime", "clips",
                             *map(str, args)], capture_output=True, text=True, env=env,
                            timeout=60)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert all(e["v"] == 1 for e in events), result.stdout
    return result.returncode, events, result.stderr


def image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def solid(color, n=5, w=64, h=48) -> list[np.ndarray]:
    return [np.full((h, w, 3), color, np.uint8) for _ in range(n)]


def ramp(n=9, w=64, h=48) -> list[np.ndarray]:
    return [np.full((h, w, 3), (i * 25) % 256, np.uint8) for i in range(n)]


def test_probe_answers_each_clip_and_names_the_unreadable_one(tmp_path):
    mp4 = write_clip(tmp_path / "a.mp4", ramp(9), 16, metadata={"isengard": {"seed": 4}})
    webm = write_clip(tmp_path / "b.webm", ramp(6, 32, 32), 8)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    rc, events, _ = clips("probe", mp4, webm, bad)
    assert rc == 0
    by_path = {Path(e["path"]).name: e for e in events if "path" in e}
    a = by_path["a.mp4"]["info"]
    assert (a["width"], a["height"], a["frames"], a["codec"]) == (64, 48, 9, "h264")
    assert a["fps"] == 16 and a["duration_s"] == 9 / 16
    assert json.loads(a["metadata"]["isengard"]) == {"seed": 4}
    b = by_path["b.webm"]["info"]
    assert (b["width"], b["height"], b["frames"], b["codec"]) == (32, 32, 6, "vp9")
    assert by_path["bad.mp4"]["event"] == "clip_error"
    assert "bad.mp4" in by_path["bad.mp4"]["message"]
    assert events[-1] == {"v": 1, "event": "done", "ok": 2, "failed": 1}


def test_record_reads_the_sidecar_first_then_the_container(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", ramp(3), 8,
                      metadata={"isengard": {"seed": 1}, "prompt": {"9": {"inputs": {}}}})
    rc, events, _ = clips("record", clip)
    assert rc == 0 and events == [{"v": 1, "event": "record", "path": str(clip),
                                   "parameters": {"seed": 1}, "graph": {"9": {"inputs": {}}},
                                   "source": "container"}]
    clip_record.write_sidecar(clip, {"seed": 2}, [{"1": {}}, {"2": {}}])
    _, events, _ = clips("record", clip)
    assert (events[0]["source"], events[0]["parameters"], len(events[0]["graph"])) == (
        "sidecar", {"seed": 2}, 2)
    clip_record.sidecar_path(clip).write_text(json.dumps({"version": 1, "parameters": []}))
    rc, events, _ = clips("record", clip)
    assert rc == 2 and events[-1]["event"] == "error" and events[-1]["kind"] == "video"
    assert "c.mp4.json: field 'parameters'" in events[-1]["message"]


def finish_spec(tmp_path, segments, dest, **extra) -> Path:
    spec = tmp_path / "finish.json"
    spec.write_text(json.dumps({"version": 1, "segments": [str(s) for s in segments],
                                "dest": str(dest), "fps": 16.0,
                                "parameters": {"prompt": "walks", "seed": 9},
                                "graph": extra.pop("graph", {"7": {"inputs": {"text": "walks"}}}),
                                **extra}))
    return spec


def test_finish_copies_one_segment_with_our_metadata_and_sidecar(tmp_path):
    seg = write_clip(tmp_path / "seg.mp4", ramp(9), 16, metadata={"prompt": {"1": {}}})
    dest = tmp_path / "out" / "clip.mp4"
    rc, events, err = clips("finish", "--spec", finish_spec(tmp_path, [seg], dest))
    assert rc == 0, err
    done = events[-1]
    assert done["event"] == "finished" and done["path"] == str(dest)
    assert done["info"]["frames"] == 9 and done["frames_folder"] is None
    assert [e["phase"] for e in events if e["event"] == "phase"] == ["copying"]
    meta = probe(dest).metadata
    assert json.loads(meta["isengard"]) == {"prompt": "walks", "seed": 9}
    assert json.loads(meta["prompt"]) == {"7": {"inputs": {"text": "walks"}}}
    record = clip_record.read_sidecar(dest)
    assert record is not None and record.parameters["seed"] == 9
    assert record.info_for(dest) is not None and record.info_for(dest)["frames"] == 9


def test_finish_joins_a_keyframe_sequence_at_the_shared_frame_into_webm_with_frames(tmp_path):
    red, green, blue = (220, 30, 30), (30, 200, 40), (40, 50, 210)
    first = write_clip(tmp_path / "s0.mp4", solid(red, 3) + solid(green, 2), 16)
    second = write_clip(tmp_path / "s1.mp4", solid(green, 2) + solid(blue, 3), 16)
    dest = tmp_path / "out" / "seq.webm"
    spec = finish_spec(tmp_path, [first, second], dest, graph=[{"1": {}}, {"2": {}}],
                       save_frames=True)
    rc, events, err = clips("finish", "--spec", spec)
    assert rc == 0, err
    assert [e["phase"] for e in events if e["event"] == "phase"] == [
        "decoding", "decoding", "encoding", "frames"]
    info = events[-1]["info"]
    assert info["codec"] == "vp9" and info["frames"] == 9          # 5 + 5 - the shared one
    frames = read_frames(dest)
    means = [f.reshape(-1, 3).mean(axis=0) for f in frames]
    assert np.abs(means[0] - red).max() < 30 and np.abs(means[4] - green).max() < 30
    assert np.abs(means[-1] - blue).max() < 30
    pngs = sorted(Path(events[-1]["frames_folder"]).glob("*.png"))
    assert [p.name for p in pngs][:2] == ["seq_00001.png", "seq_00002.png"] and len(pngs) == 9


def test_finish_refuses_a_bad_spec_naming_the_field(tmp_path):
    spec = tmp_path / "finish.json"
    spec.write_text(json.dumps({"version": 1, "segments": [], "dest": "x.mp4", "fps": 16,
                                "parameters": {}}))
    rc, events, _ = clips("finish", "--spec", spec)
    assert rc == 2 and events[-1]["kind"] == "config"
    assert "finish.json: field 'segments'" in events[-1]["message"]
    seg = tmp_path / "missing.mp4"
    rc, events, _ = clips("finish", "--spec", finish_spec(tmp_path, [seg], tmp_path / "o.mp4"))
    assert rc == 2 and events[-1]["kind"] == "video" and "missing.mp4" in events[-1]["message"]
    assert not (tmp_path / "o.mp4").exists()


def test_export_frames_writes_every_frame_as_png(tmp_path):
    clip = write_clip(tmp_path / "odd.mp4", ramp(4, 33, 21), 8)
    rc, events, _ = clips("export-frames", clip, "--folder", tmp_path / "f")
    assert rc == 0 and events[-1] == {"v": 1, "event": "frames", "path": str(clip),
                                      "folder": str(tmp_path / "f"), "count": 4}
    pngs = sorted((tmp_path / "f").glob("*.png"))
    assert len(pngs) == 4 and image(pngs[0]).shape == (20, 32, 3)


def test_preview_makes_small_jpegs_once_and_again_when_the_clip_changes(tmp_path):
    clip = write_clip(tmp_path / "big.mp4", ramp(6, 1280, 720), 12)
    cache = tmp_path / "cache"
    rc, events, err = clips("preview", clip, "--cache", cache)
    assert rc == 0, err
    event = events[-1]
    assert event["event"] == "preview" and (event["count"], event["fps"]) == (6, 12.0)
    assert (event["width"], event["height"]) == (640, 360)
    folder = Path(event["folder"])
    assert folder == clip_record.preview_dir(cache, clip)
    info = clip_record.read_preview_info(folder)
    assert info is not None and [p.name for p in info.frame_paths()][0] == "frame_00001.jpg"
    assert image(info.frame_paths()[0]).shape == (360, 640, 3)
    assert abs(image(info.frame_paths()[3]).mean() - 75) < 4     # frame 4's grey level
    stamp = (folder / "info.json").stat().st_mtime_ns
    rc, events, _ = clips("preview", clip, "--cache", cache)      # cached: nothing rewritten
    assert rc == 0 and Path(events[-1]["folder"]) == folder
    assert (folder / "info.json").stat().st_mtime_ns == stamp
    write_clip(clip, ramp(3, 64, 48), 8)                          # the clip changed
    rc, events, _ = clips("preview", clip, "--cache", cache)
    assert Path(events[-1]["folder"]) != folder and events[-1]["count"] == 3


def test_preview_errors_name_the_clip(tmp_path):
    rc, events, _ = clips("preview", tmp_path / "gone.mp4", "--cache", tmp_path / "c")
    assert rc == 2 and events == [{"v": 1, "event": "error", "kind": "video",
                                   "message": "gone.mp4: the file is missing"}]
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1a\x45\xdf\xa3 broken")
    rc, events, _ = clips("preview", bad, "--cache", tmp_path / "c")
    assert rc == 2 and events[-1]["message"].startswith("bad.webm cannot be read")
