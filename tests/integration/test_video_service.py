"""The video service against the ComfyUI double: real uploads, real runs of the video
workflows, real MP4/WebM clips downloaded through /view, joined keyframe sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shiboken6
from PIL import Image

from isengard_desktop.core.comfy.client import ComfyClient
from isengard_desktop.core.video import container
from isengard_desktop.core.video.specs import VideoRequest, frames_for
from isengard_desktop.services.video import VideoService
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401  (fixture)
from tests.helpers.service_harness import run_on_loop, start_library

WAIT = 30_000
VIDEO_MODELS = {
    "diffusion_models": ["wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors",
                         "wan2.1_flf2v_720p_14B_fp8_e4m3fn.safetensors",
                         "wan2.1_t2v_1.3B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl_fp16.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
    "checkpoints": ["ltx-video-2b-v0.9.5.safetensors"],
}
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (40, 50, 210)


def picture(path, color, size=(64, 48)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def near(frame: np.ndarray, color, tol=30) -> bool:
    return bool(np.all(np.abs(frame.reshape(-1, 3).mean(axis=0) - np.array(color)) < tol))


@pytest.fixture
def video(qtbot, qt_asyncio_loop, make_comfy_double, tmp_path):  # noqa: F811
    def build(**double_options):
        double_options.setdefault("models", VIDEO_MODELS)
        double = make_comfy_double(**double_options)
        paths, _library = start_library(qtbot, WAIT)
        client = ComfyClient(double.url, timeout=10.0, reconnect_delays=(0.05, 0.1))
        service = VideoService(paths, lambda: client)
        made.append((service, client))
        return double, service

    made: list = []
    yield build
    for service, client in made:
        run_on_loop(qtbot, service.aclose(), WAIT, qt_asyncio_loop)
        run_on_loop(qtbot, client.aclose(), WAIT, qt_asyncio_loop)
        shiboken6.delete(service)


def run_job(qtbot, service, request):
    finished, failed, progress = [], [], []
    service.job_finished.connect(lambda job_id, clip: finished.append(clip))
    service.job_failed.connect(lambda job_id, message: failed.append(message))
    service.job_progress.connect(progress.append)
    service.submit(request)
    qtbot.waitUntil(lambda: bool(finished or failed), timeout=WAIT)
    return finished, failed, progress


def test_one_picture_becomes_a_playable_mp4_reproducible_from_its_record(qtbot, video, tmp_path):
    double, service = video(preview_method="auto", step_delay=0.05)   # 8 steps: 0.4 s
    start = picture(tmp_path / "me.png", RED)
    request = VideoRequest(prompt="alice, turns and smiles", keyframes=(start,), seconds=1.0,
                           fps=16.0, width=64, height=48, seed=1234, steps=8)
    finished, failed, progress = run_job(qtbot, service, request)
    assert failed == []
    clip = finished[0]
    assert clip.path.parent == service.clips_dir and clip.path.suffix == ".mp4"
    info = container.probe(clip.path)
    assert info.codec == "h264"
    assert info.frames == frames_for(1.0, 16.0, 4) == 17
    assert info.fps == pytest.approx(16.0) and info.duration_s == pytest.approx(17 / 16)
    frames = container.read_frames(clip.path)
    assert near(frames[0], RED)                       # the clip starts on the picture
    # the parameters and the graph are stored twice: container metadata and the sidecar
    meta = json.loads(info.metadata["isengard"])
    graph = json.loads(info.metadata["prompt"])
    assert meta["prompt"] == "alice, turns and smiles" and meta["seed"] == 1234
    assert graph["7"]["inputs"]["text"] == "alice, turns and smiles"
    assert graph["11"]["inputs"]["seed"] == 1234 and graph["9"]["inputs"]["length"] == 17
    record = container.read_clip_record(clip.path)
    assert record.source == "sidecar" and record.graph == graph
    again = VideoRequest.from_json(record.parameters)
    assert again.prompt == request.prompt and again.seed == 1234 and again.keyframes == (start,)
    # live progress (coalesced to ~10/s) with sampler steps and preview frames
    assert any(p.total == 8 for p in progress) and any(p.preview for p in progress)
    assert progress[-1].overall is not None


@pytest.mark.parametrize("family,fps", [("wan21", 16.0), ("ltxv", 24.0)])
def test_three_keyframes_make_one_continuous_clip(qtbot, video, tmp_path, family, fps):
    double, service = video()
    keys = tuple(picture(tmp_path / f"k{i}.png", c) for i, c in enumerate((RED, GREEN, BLUE)))
    request = VideoRequest(prompt="walks across the room", family=family, keyframes=keys,
                           seconds=2.0, fps=fps, width=64, height=64, seed=5, steps=2)
    finished, failed, _ = run_job(qtbot, service, request)
    assert failed == []
    clip = finished[0]
    segs = clip.parameters["segment_frames"]
    assert len(segs) == 2 and clip.parameters["runs"] == [f"{family}-flf2v"] * 2
    frames = container.read_frames(clip.path)
    assert len(frames) == clip.frames == sum(segs) - 1          # the shared frame appears once
    assert near(frames[0], RED) and near(frames[segs[0] - 1], GREEN) and near(frames[-1], BLUE)
    record = container.read_clip_record(clip.path)
    assert isinstance(record.graph, list) and len(record.graph) == 2


def test_webm_and_frames_on_request(qtbot, video, tmp_path):
    double, service = video()
    request = VideoRequest(prompt="waves", keyframes=(picture(tmp_path / "a.png", GREEN),),
                           seconds=0.5, width=64, height=48, steps=1, container="webm",
                           save_frames=True)
    finished, failed, _ = run_job(qtbot, service, request)
    assert failed == []
    clip = finished[0]
    assert clip.path.suffix == ".webm" and container.probe(clip.path).codec == "vp9"
    pngs = sorted(clip.path.with_name(clip.path.stem + "_frames").glob("*.png"))
    assert len(pngs) == clip.frames == frames_for(0.5, 16.0, 4)


def test_a_server_without_the_first_last_node_is_named(qtbot, video, tmp_path):
    double, service = video(remove_nodes={"WanFirstLastFrameToVideo"})
    keys = tuple(picture(tmp_path / f"k{i}.png", c) for i, c in enumerate((RED, BLUE)))
    finished, failed, _ = run_job(qtbot, service, VideoRequest(prompt="x", keyframes=keys))
    assert finished == []
    assert "WanFirstLastFrameToVideo" in failed[0] and double.url in failed[0]


def test_missing_model_and_missing_keyframe_are_named(qtbot, video, tmp_path):
    double, service = video(models={k: v for k, v in VIDEO_MODELS.items() if k != "clip_vision"})
    _, failed, _ = run_job(qtbot, service, VideoRequest(
        prompt="x", keyframes=(picture(tmp_path / "a.png", RED),)))
    assert "CLIP vision" in failed[0]
    double.set_models(VIDEO_MODELS)
    _, failed, _ = run_job(qtbot, service, VideoRequest(prompt="x",
                                                        keyframes=(str(tmp_path / "gone.png"),)))
    assert "gone.png" in failed[0]


def test_cancel_stops_the_run_and_says_so(qtbot, video, tmp_path):
    double, service = video(step_delay=0.2)
    started: list = []
    service.job_progress.connect(lambda p: started.append(p) if p.total else None)
    failed: list = []
    service.job_failed.connect(lambda job_id, message: failed.append(message))
    job_id = service.submit(VideoRequest(prompt="x", keyframes=(picture(tmp_path / "a.png", RED),),
                                         width=64, height=48, steps=50))
    qtbot.waitUntil(lambda: bool(started), timeout=WAIT)      # the sampler is stepping
    service.cancel(job_id)
    qtbot.waitUntil(lambda: bool(failed), timeout=WAIT)
    assert failed == ["Video generation cancelled."]
    assert service.active_jobs() == [] and list(service.clips_dir.glob("*.mp4")) == []


def test_model_check_names_what_a_job_would_miss_and_coalesces(qtbot, video, tmp_path):
    no_i2v = dict(VIDEO_MODELS, diffusion_models=VIDEO_MODELS["diffusion_models"][1:])
    double, service = video(models=no_i2v)
    checks: list = []
    service.models_checked.connect(checks.append)
    for _ in range(3):                      # asked three times at once: one check, then one more
        service.check_models("wan21-i2v")
    assert service.checks_running == 1
    qtbot.waitUntil(lambda: service.checks_running == 0, timeout=WAIT)
    assert len(checks) == 2
    check = checks[-1]
    assert (check.workflow, check.server, check.error) == ("wan21-i2v", double.url, "")
    assert check.missing == ("no Wan 2.1 I2V diffusion model (wan2.1_i2v_480p_14B_fp8_e4m3fn."
                             "safetensors) in models/diffusion_models (or models/unet)",)
    assert check.models_missing
    # a job says the same before it starts
    _, failed, _ = run_job(qtbot, service, VideoRequest(
        prompt="x", keyframes=(picture(tmp_path / "a.png", RED),)))
    assert check.missing[0] in failed[0] and double.url in failed[0]
    # the other Wan workflows are fine; an unknown workflow is named
    service.check_models("wan21-t2v")
    service.check_models("nope")
    qtbot.waitUntil(lambda: len(checks) == 4, timeout=WAIT)
    by_name = {c.workflow: c for c in checks[2:]}
    assert by_name["wan21-t2v"].missing == () and by_name["wan21-t2v"].server == double.url
    assert by_name["nope"].error.startswith("There is no workflow named 'nope'")
    assert by_name["nope"].missing == ()


def test_without_a_trainer_runtime_the_finished_render_says_where_clips_are_made(
        qtbot, video, tmp_path, monkeypatch):
    double, service = video()
    monkeypatch.setenv("ISENGARD_USE_RUNTIME", "1")     # ignore this checkout's interpreter
    _, failed, _ = run_job(qtbot, service, VideoRequest(
        prompt="x", keyframes=(picture(tmp_path / "a.png", RED),), width=64, height=48,
        seconds=0.5, steps=1))
    assert failed[0].startswith("Video files are read in the trainer runtime.")
    assert "Help → Set-up assistant → Trainer runtime" in failed[0]
    assert list(service.clips_dir.glob("*.mp4")) == []
    assert list(service.paths.tmp.glob("video-*")) == []          # the segments were removed
