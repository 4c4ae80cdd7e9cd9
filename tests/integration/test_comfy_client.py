"""ComfyClient against the ComfyUI double (tests/helpers/comfy_double.py) over real sockets."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from isengard_desktop.core.comfy.client import ComfyClient
from isengard_desktop.core.comfy.errors import (ComfyConnectionError, ComfyExecutionError,
                                                ComfyHTTPError, ComfyInterrupted,
                                                ComfyValidationError)
from isengard_desktop.core.comfy.types import (ImageRef, NodeExecuted, NodeProgress, NodesCached,
                                               NodeStarted, PreviewImage, RunStarted)
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401  (fixture)

CKPT = "isengard_tiny_sd15.safetensors"
FAST = {"reconnect_delays": (0.05, 0.1, 0.2), "liveness_interval": 0.5, "timeout": 5.0}


def blur_graph(color: int = 0x3366CC, radius: int = 3, batch: int = 2, prefix: str = "isengard_test"):
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 64, "height": 64, "batch_size": batch, "color": color}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": radius,
                                                    "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def ksampler_graph(seed: int = 42, steps: int = 6):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dark tower", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "isengard_ks"}},
    }


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def started_node(events, node: str | None = None, timeout: float = 10.0):
    await wait_for(lambda: any(isinstance(e, NodeStarted) and (node is None or e.node == node)
                               for e in events), timeout, f"node {node} to start")


# ---------------------------------------------------------------------- success and cache

@pytest.mark.asyncio
async def test_success_events_images_and_extra_data(make_comfy_double):
    double = make_comfy_double()
    async with ComfyClient(double.url, **FAST) as client:
        events = []
        extra = {"isengard": {"correlation_id": "c-1", "job_id": "j-1"}}
        result = await client.run(blur_graph(), prompt_id="my-own-id", extra_data=extra,
                                  on_event=events.append)
        assert result.prompt_id == "my-own-id"
        assert [i.filename for i in result.images] == ["isengard_test_00001_.png",
                                                       "isengard_test_00002_.png"]
        assert all(i.type == "output" and i.subfolder == "" for i in result.images)
        assert result.cached == () and result.history["status"]["status_str"] == "success"
        pid = "my-own-id"
        assert events[:5] == [RunStarted(pid), NodesCached(pid, ()),
                              NodeStarted(pid, "1", "EmptyImage"), NodeStarted(pid, "2", "ImageBlur"),
                              NodeStarted(pid, "3", "SaveImage")]
        assert events[5] == NodeExecuted(pid, "3", result.images)
        for ref in result.images:
            data = await client.fetch_image(ref)
            assert data.startswith(b"\x89PNG")
        with pytest.raises(ComfyHTTPError, match="has no image output/missing.png"):
            await client.fetch_image(ImageRef("missing.png"))
        sent = double.prompts[-1]
        assert sent["prompt_id"] == pid and sent["client_id"] == client.client_id
        assert sent["extra_data"] == extra
        assert client.server_features.get("supports_preview_metadata") is True
        assert double.ws_connects.count(client.client_id) == 1


@pytest.mark.asyncio
async def test_cached_run_reports_cached_nodes_and_same_files(make_comfy_double):
    double = make_comfy_double()
    async with ComfyClient(double.url, **FAST) as client:
        first = await client.run(blur_graph())
        events = []
        second = await client.run(blur_graph(), on_event=events.append)
        assert second.cached == ("1", "2", "3")
        assert second.images == first.images
        assert not any(isinstance(e, NodeStarted) for e in events)
        assert any(isinstance(e, NodeExecuted) for e in events)
        partial = await client.run(blur_graph(radius=5))
        assert partial.cached == ("1",)


@pytest.mark.asyncio
async def test_two_runs_in_flight_on_one_client(make_comfy_double):
    double = make_comfy_double(node_delay=0.05)
    async with ComfyClient(double.url, **FAST) as client:
        ev_a, ev_b = [], []
        a, b = await asyncio.gather(
            client.run(blur_graph(color=1, prefix="a"), on_event=ev_a.append),
            client.run(blur_graph(color=2, prefix="b"), on_event=ev_b.append))
        assert all(i.filename.startswith("a_") for i in a.images) and len(a.images) == 2
        assert all(i.filename.startswith("b_") for i in b.images) and len(b.images) == 2
        assert {e.prompt_id for e in ev_a} == {a.prompt_id}
        assert {e.prompt_id for e in ev_b} == {b.prompt_id}
        assert double.ws_connects.count(client.client_id) == 1


# ---------------------------------------------------------------------- validation errors

def _with(graph, node, **inputs):
    graph = copy.deepcopy(graph)
    graph[node]["inputs"].update(inputs)
    return graph


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["unknown_node", "missing_input", "bad_type", "above_max",
                                  "below_min", "not_in_list", "no_outputs"])
async def test_validation_error_shapes(make_comfy_double, case):
    double = make_comfy_double(models={"checkpoints": [CKPT]})
    good = blur_graph()
    if case == "unknown_node":
        graph = copy.deepcopy(good)
        graph["2"]["class_type"] = "ImageBlurDoesNotExist"
        expect = ("invalid_prompt", None,
                  "Cannot execute because node ImageBlurDoesNotExist does not exist. (Node ID '#2')")
    elif case == "missing_input":
        graph = copy.deepcopy(good)
        del graph["1"]["inputs"]["width"]
        expect = ("prompt_outputs_failed_validation", ("1", "EmptyImage", "width", None),
                  "Node 1 (EmptyImage): required input 'width' is missing.")
    elif case == "bad_type":
        graph = _with(good, "1", width="abc")
        expect = ("prompt_outputs_failed_validation", ("1", "EmptyImage", "width", "abc"),
                  "Node 1 (EmptyImage): input 'width' = 'abc' is not a valid INT value.")
    elif case == "above_max":
        graph = _with(good, "1", width=99999)
        expect = ("prompt_outputs_failed_validation", ("1", "EmptyImage", "width", 99999),
                  "Node 1 (EmptyImage): input 'width' = 99999 is above the maximum 16384.")
    elif case == "below_min":
        graph = _with(good, "1", width=0)
        expect = ("prompt_outputs_failed_validation", ("1", "EmptyImage", "width", 0),
                  "Node 1 (EmptyImage): input 'width' = 0 is below the minimum 1.")
    elif case == "not_in_list":
        graph = _with(ksampler_graph(), "4", ckpt_name="does_not_exist.safetensors")
        expect = ("prompt_outputs_failed_validation",
                  ("4", "CheckpointLoaderSimple", "ckpt_name", "does_not_exist.safetensors"),
                  f"is not available on this server; the server offers '{CKPT}'")
    else:
        graph = {k: v for k, v in good.items() if k != "3"}
        expect = ("prompt_no_outputs", None, "it has no output node")
    async with ComfyClient(double.url, **FAST) as client:
        with pytest.raises(ComfyValidationError) as info:
            await client.run(graph)
    error = info.value
    error_type, problem, fragment = expect
    assert error.error_type == error_type
    assert fragment in str(error) and double.url in str(error)
    if problem is None:
        assert error.problems == ()
    else:
        (p,) = error.problems
        assert (p.node_id, p.class_type, p.input_name, p.received_value) == problem
        assert p.message in str(error)
    assert double.completed == []


@pytest.mark.asyncio
async def test_partly_valid_prompt_is_refused_and_taken_back(make_comfy_double):
    double = make_comfy_double(node_delay=0.2)
    graph = blur_graph(color=0x00FF00, prefix="isengard_partial_valid")
    graph["5"] = {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": "abc",
                                                        "sigma": 1.0}}
    graph["6"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0],
                                                        "filename_prefix": "isengard_bad_branch"}}
    async with ComfyClient(double.url, **FAST) as client:
        with pytest.raises(ComfyValidationError) as info:
            await client.run(graph, prompt_id="partly")
        error = info.value
        assert "refused part of the workflow" in str(error)
        (p,) = error.problems
        assert (p.node_id, p.class_type, p.input_name, p.received_value) == \
            ("5", "ImageBlur", "blur_radius", "abc")
        double.wait_idle(10)
        entry = double.history().get("partly")
        # Either deleted before it ran (no history) or interrupted: never a finished half.
        assert entry is None or entry["status"]["status_str"] == "error"
        assert double.queue_state() == ([], [])


@pytest.mark.asyncio
async def test_runtime_error_names_node_and_exception(make_comfy_double):
    double = make_comfy_double()
    async with ComfyClient(double.url, **FAST) as client:
        name = await client.upload_image(b"this is not an image", "isengard_corrupt.png")
        assert name == "isengard_corrupt.png"
        sub = await client.upload_image(b"also not", "x.png", subfolder="isengard")
        assert sub == "isengard/x.png"
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 2,
                                                        "sigma": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                        "filename_prefix": "isengard_test"}},
        }
        with pytest.raises(ComfyExecutionError) as info:
            await client.run(graph)
    error = info.value
    assert (error.node_id, error.node_type) == ("1", "LoadImage")
    assert error.exception_type == "PIL.UnidentifiedImageError"
    assert "node 1 (LoadImage)" in str(error) and "cannot identify image file" in str(error)
    assert "\n" not in str(error)


# ---------------------------------------------------------------------- cancel

@pytest.mark.asyncio
async def test_cancel_running_prompt_interrupts_it(make_comfy_double):
    double = make_comfy_double()
    double.hang_next_prompt = True
    async with ComfyClient(double.url, **FAST) as client:
        events = []
        task = asyncio.create_task(client.run(blur_graph(), prompt_id="run-1",
                                              on_event=events.append))
        await started_node(events)
        await client.cancel("run-1")
        with pytest.raises(ComfyInterrupted) as info:
            await asyncio.wait_for(task, 10)
        assert info.value.node_id is not None
        assert f"node {info.value.node_id} (" in str(info.value)
        assert double.interrupts[-1] == {"prompt_id": "run-1"}
        # The client keeps working afterwards.
        result = await client.run(blur_graph(color=7))
        assert len(result.images) == 2


@pytest.mark.asyncio
async def test_cancel_queued_prompt_deletes_it(make_comfy_double):
    double = make_comfy_double()
    double.hold_queue = True
    async with ComfyClient(double.url, **FAST) as client:
        task = asyncio.create_task(client.run(blur_graph(), prompt_id="waiting"))
        await wait_for(lambda: double.queue_state()[1] == ["waiting"], what="pending prompt")
        started = time.monotonic()
        await client.cancel("waiting")
        with pytest.raises(ComfyInterrupted) as info:
            await asyncio.wait_for(task, 10)
        assert time.monotonic() - started < 2
        assert info.value.node_id is None and "before" in str(info.value)
        assert double.queue_state() == ([], [])
        assert double.requests_by_method["POST /queue"] >= 1
        assert double.interrupts == []
        double.hold_queue = False
        assert "waiting" not in double.history()


# ---------------------------------------------------------------------- previews

@pytest.mark.asyncio
@pytest.mark.parametrize("metadata", [False, True], ids=["event1", "event4"])
async def test_binary_previews(make_comfy_double, metadata):
    double = make_comfy_double(models={"checkpoints": [CKPT]}, preview_method="auto")
    async with ComfyClient(double.url, preview_metadata=metadata, **FAST) as client:
        events = []
        result = await client.run(ksampler_graph(), on_event=events.append)
        assert len(result.images) == 1
        previews = [e for e in events if isinstance(e, PreviewImage)]
        progress = [e for e in events if isinstance(e, NodeProgress)]
        assert [(p.node, p.value, p.max) for p in progress] == [("3", float(i), 6.0)
                                                                for i in range(1, 7)]
        assert len(previews) == 6
        assert all(p.prompt_id == result.prompt_id and p.node == "3" and p.mime == "image/jpeg"
                   and p.data[:2] == b"\xff\xd8" for p in previews)
        assert ("supports_preview_metadata" in client.server_features) is metadata


@pytest.mark.asyncio
async def test_save_image_websocket_frames_are_previews(make_comfy_double):
    double = make_comfy_double()
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64,
                                                          "batch_size": 2, "color": 0}},
             "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    async with ComfyClient(double.url, **FAST) as client:
        events = []
        await client.run(graph, on_event=events.append)
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert len(previews) == 2
    assert all(p.mime == "image/png" and p.data.startswith(b"\x89PNG") and p.node == "2"
               for p in previews)


# ---------------------------------------------------------------------- robustness

@pytest.mark.asyncio
async def test_socket_drop_mid_run_reconnects_and_reconciles(make_comfy_double):
    double = make_comfy_double(node_delay=0.3)
    async with ComfyClient(double.url, **FAST) as client:
        events = []
        task = asyncio.create_task(client.run(blur_graph(), on_event=events.append))
        await started_node(events, "1")
        double.drop_sockets()
        result = await asyncio.wait_for(task, 15)
        assert len(result.images) == 2
        assert client.reconnects == 1
        assert double.ws_connects.count(client.client_id) == 2
        # the new socket works for the next run (no reconnect quirk)
        events.clear()
        again = await client.run(blur_graph(color=9), on_event=events.append)
        assert len(again.images) == 2 and any(isinstance(e, NodeStarted) for e in events)


@pytest.mark.asyncio
async def test_socket_drop_when_the_run_ends_meanwhile_is_reconciled_from_history(make_comfy_double):
    double = make_comfy_double(node_delay=0.2)
    async with ComfyClient(double.url, reconnect_delays=(0.8,), liveness_interval=5.0,
                           timeout=5.0) as client:
        events = []
        task = asyncio.create_task(client.run(blur_graph(), on_event=events.append))
        await started_node(events, "1")
        double.drop_sockets()     # the run finishes while we wait to reconnect
        result = await asyncio.wait_for(task, 10)
        assert len(result.images) == 2 and client.reconnects == 1


@pytest.mark.asyncio
async def test_server_killed_mid_run_fails_fast_with_clear_error(make_comfy_double):
    double = make_comfy_double()
    double.hang_next_prompt = True
    async with ComfyClient(double.url, **FAST) as client:
        events = []
        task = asyncio.create_task(client.run(blur_graph(), on_event=events.append))
        await started_node(events)
        started = time.monotonic()
        double.kill()
        with pytest.raises(ComfyConnectionError) as info:
            await asyncio.wait_for(task, 15)
        assert time.monotonic() - started < 5
        text = str(info.value)
        assert double.url in text and "stopped answering while running node 1 (EmptyImage)" in text
        # A later call says the server cannot be reached.
        with pytest.raises(ComfyConnectionError, match="Cannot reach ComfyUI at .*connection refused"):
            await client.system_stats()


@pytest.mark.asyncio
async def test_server_restarted_mid_run_reports_the_lost_job(make_comfy_double):
    double = make_comfy_double()
    double.hang_next_prompt = True
    async with ComfyClient(double.url, reconnect_delays=(0.3, 0.5, 1, 2),
                           liveness_interval=0.5, timeout=5.0) as client:
        events = []
        task = asyncio.create_task(client.run(blur_graph(), on_event=events.append))
        await started_node(events)
        double.restart()
        with pytest.raises(ComfyConnectionError, match="no longer knows this job") as info:
            await asyncio.wait_for(task, 15)
        assert "restarted" in str(info.value)
        result = await client.run(blur_graph(color=3))     # works again on the new server
        assert len(result.images) == 2


@pytest.mark.asyncio
async def test_http_500_answers(make_comfy_double):
    double = make_comfy_double()
    async with ComfyClient(double.url, **FAST) as client:
        await client.connect()
        double.fail_500 = {"/prompt"}
        with pytest.raises(ComfyHTTPError) as info:
            await client.run(blur_graph())
        assert info.value.status == 500
        assert "answered POST /prompt with HTTP 500" in str(info.value)
        assert "Server got itself in trouble" in info.value.body
        double.fail_500 = {"/system_stats", "/object_info"}
        with pytest.raises(ComfyHTTPError, match="HTTP 500"):
            await client.system_stats()
        with pytest.raises(ComfyHTTPError):
            await client.object_info()
        double.fail_500 = False
        assert len((await client.run(blur_graph())).images) == 2


@pytest.mark.asyncio
async def test_unreachable_server_names_the_url():
    async with ComfyClient("http://127.0.0.1:9", **FAST) as client:
        with pytest.raises(ComfyConnectionError, match=r"http://127\.0\.0\.1:9 \(connection refused\)"):
            await client.run(blur_graph())
        with pytest.raises(ComfyConnectionError, match="Cannot reach ComfyUI at http://127.0.0.1:9"):
            await client.queue()


# ---------------------------------------------------------------------- plain endpoints

@pytest.mark.asyncio
async def test_system_stats_object_info_models_queue(make_comfy_double):
    double = make_comfy_double(models={"loras": ["me.safetensors"]}, gpu_name="NVIDIA GeForce RTX 4090",
                               vram_total=24 * 2**30, vram_free=20 * 2**30)
    async with ComfyClient(double.url, **FAST) as client:
        stats = await client.system_stats()
        assert stats.comfyui_version == "0.3.64"
        assert "RTX 4090" in stats.gpu_name and stats.devices[0].type == "cuda"
        assert (stats.vram_total, stats.vram_free) == (24 * 2**30, 20 * 2**30)
        info = await client.object_info()
        assert "KSampler" in info
        assert await client.object_info() is info
        assert double.requests["/object_info"] == 1
        await client.object_info(refresh=True)
        assert double.requests["/object_info"] == 2
        assert await client.models("loras") == ["me.safetensors"]
        assert await client.models("no_such_folder") == []
        state = await client.queue()
        assert state.length == 0
        double.hold_queue = True
        task = asyncio.create_task(client.run(blur_graph(), prompt_id="q1"))
        await wait_for(lambda: double.queue_state()[1] == ["q1"], what="pending")
        state = await client.queue()
        assert (state.running, state.pending, state.length) == ((), ("q1",), 1)
        double.hold_queue = False
        assert len((await task).images) == 2


@pytest.mark.asyncio
async def test_silently_orphaned_socket_is_covered_by_liveness_polls(make_comfy_double):
    """Reconnect quirk from the other side: another socket with our client id takes the
    messages over and then closes, so ComfyUI forgets the id and our open socket hears
    nothing more. The run still ends, through /history, within the liveness interval."""
    from websockets.asyncio.client import connect

    double = make_comfy_double(node_delay=0.2)
    async with ComfyClient(double.url, **FAST) as client:
        events = []
        task = asyncio.create_task(client.run(blur_graph(), on_event=events.append))
        await started_node(events, "1")
        async with connect(double.ws_url + f"?clientId={client.client_id}",
                           compression=None) as thief:
            await thief.recv()
        result = await asyncio.wait_for(task, 10)
        assert len(result.images) == 2
        assert not any(isinstance(e, NodeExecuted) for e in events)   # the socket missed it
        # The silent socket was replaced: the next run hears its messages again.
        events.clear()
        again = await asyncio.wait_for(client.run(blur_graph(color=5), on_event=events.append), 10)
        assert len(again.images) == 2 and any(isinstance(e, NodeExecuted) for e in events)


@pytest.mark.asyncio
async def test_cancel_while_the_post_is_still_in_flight(make_comfy_double):
    double = make_comfy_double(latency=0.3)
    double.hold_queue = True
    async with ComfyClient(double.url, **FAST) as client:
        await client.connect()
        task = asyncio.create_task(client.run(blur_graph(), prompt_id="early"))
        await asyncio.sleep(0.1)                 # POST /prompt has not answered yet
        await client.cancel("early")
        with pytest.raises(ComfyInterrupted):
            await asyncio.wait_for(task, 10)
        assert double.queue_state() == ([], [])
        double.hold_queue = False
        assert "early" not in double.history()
        await client.cancel("early")             # already gone: nothing happens
        await client.cancel("never-existed")


@pytest.mark.asyncio
async def test_aclose_fails_runs_in_flight(make_comfy_double):
    double = make_comfy_double()
    double.hang_next_prompt = True
    client = ComfyClient(double.url, **FAST)
    events = []
    task = asyncio.create_task(client.run(blur_graph(), on_event=events.append))
    await started_node(events)
    await client.aclose()
    with pytest.raises(ComfyConnectionError, match="closed by the app while running node 1"):
        await asyncio.wait_for(task, 5)
    await client.aclose()                        # twice is fine
    with pytest.raises(ComfyConnectionError, match="already closed"):
        await client.queue()
    double.release_hang()
