"""The double's video nodes answer in ComfyUI's shape (see comfy_double_video.py for the source
lines): ``executed`` and ``/history`` carry ``{"images": [...], "animated": [true]}``, the files
are real clips, and the client marks them as videos."""

from __future__ import annotations

import json

import httpx
import pytest

from isengard_desktop.core.comfy.client import ComfyClient
from isengard_desktop.core.comfy.types import NodeExecuted
from isengard_desktop.core.video import container
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401  (fixture)


def frames_graph(save: dict, batch: int = 9) -> dict:
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 48, "batch_size": batch, "color": 0x3366CC}},
            **save}


@pytest.mark.asyncio
async def test_save_video_webm_and_animated_webp_shapes(make_comfy_double, tmp_path):  # noqa: F811
    double = make_comfy_double()
    graphs = {
        "mp4": frames_graph({
            "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 16.0}},
            "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix":
                                                        "clips/test", "format": "auto",
                                                        "codec": "auto"}}}),
        "webm": frames_graph({
            "3": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix":
                                                       "clips/test", "codec": "vp9", "fps": 12.0,
                                                       "crf": 32.0}}}),
        "webp": frames_graph({
            "3": {"class_type": "SaveAnimatedWEBP", "inputs": {
                "images": ["1", 0], "filename_prefix": "clips/test", "fps": 6.0,
                "lossless": False, "quality": 80, "method": "default"}}}),
    }
    async with ComfyClient(double.url, timeout=10.0) as client:
        for counter, (ext, graph) in enumerate(graphs.items(), start=1):
            events: list = []
            result = await client.run(graph, on_event=events.append)
            executed = [e for e in events if isinstance(e, NodeExecuted)]
            assert len(executed) == 1 and executed[0].node == "3"
            ref = executed[0].images[0]
            # the counter runs across extensions, as folder_paths.get_save_image_path does
            assert (ref.filename, ref.subfolder, ref.type) == (f"test_{counter:05}_.{ext}",
                                                               "clips", "output")
            assert ref.animated and ref.is_video and result.images == (ref,)
            out = result.history["outputs"]["3"]
            assert out == {"images": [{"filename": ref.filename, "subfolder": "clips",
                                       "type": "output"}], "animated": [True]}
            data = await client.fetch_image(ref)
            path = tmp_path / ref.filename
            path.write_bytes(data)
            if ext != "webp":
                info = container.probe(path)
                assert info.frames == 9 and info.codec == {"mp4": "h264", "webm": "vp9"}[ext]
                assert json.loads(info.metadata["prompt"])["3"]["class_type"] == \
                    graph["3"]["class_type"]
    # GET /history as it comes over the wire (no client in between)
    history = httpx.get(f"{double.url}/history").json()
    outputs = [entry["outputs"]["3"] for entry in history.values()]
    assert all(o["animated"] == [True] for o in outputs)


@pytest.mark.asyncio
async def test_a_single_frame_webp_is_not_animated(make_comfy_double):  # noqa: F811
    double = make_comfy_double()
    graph = frames_graph({"3": {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": ["1", 0], "filename_prefix": "one", "fps": 6.0, "lossless": True,
        "quality": 80, "method": "default"}}}, batch=1)
    async with ComfyClient(double.url, timeout=10.0) as client:
        result = await client.run(graph)
    assert result.history["outputs"]["3"]["animated"] == [False]
    assert not result.images[0].is_video
