"""Replay what a real ComfyUI 0.3.64 sent (tests/fixtures/comfyui/client, copied from the
shared recordings) through the client's message handling and error building."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from isengard_desktop.core.comfy.api import images_from_history, normalize_url
from isengard_desktop.core.comfy.errors import (ComfyExecutionError, ComfyInterrupted,
                                                validation_error_from_body)
from isengard_desktop.core.comfy.messages import Dispatcher, RunTracker, decode_binary
from isengard_desktop.core.comfy.types import (ImageRef, NodeExecuted, NodeProgress, NodesCached,
                                               NodeStarted, PreviewImage, QueueState, RunStarted,
                                               SystemStats, Device)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "client"
SERVER = "http://127.0.0.1:8188"


def load(name: str) -> dict:
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def sample(name: str) -> bytes:
    return (FIX / "binary_samples" / name).read_bytes()


def binary_for(entry: dict) -> bytes:
    """The recorded byte-exact frame of the same kind (the run files keep only a summary)."""
    if entry.get("sample_file"):
        return (FIX / entry["sample_file"]).read_bytes()
    kind = (entry["event_type"], entry.get("image_format"))
    meta = entry.get("metadata") or {}
    if kind == (1, 1):
        return sample("ksA_event1_fmt1.bin")
    if kind == (1, 2):
        return sample("A_event1_fmt2.bin")
    if entry["event_type"] == 4:
        raw = sample("ksB_event4.bin" if meta.get("image_type") == "image/jpeg" else "B_event4.bin")
        (n,) = struct.unpack(">I", raw[4:8])
        body = json.dumps(meta).encode()
        return struct.pack(">II", 4, len(body)) + body + raw[8 + n:]
    raise AssertionError(f"no sample for {entry}")


def replay(messages: list[dict], tracker: RunTracker, dispatcher: Dispatcher | None = None):
    dispatcher = dispatcher or Dispatcher()
    dispatcher.add(tracker)
    events, finished = [], 0
    for entry in messages:
        if entry["kind"] == "text":
            routed = dispatcher.feed_text(entry["msg"])
        elif entry["kind"] == "binary":
            routed = dispatcher.feed_binary(binary_for(entry))
        else:
            continue
        for _tracker, event in routed:
            if event is None:
                finished += 1
            else:
                events.append(event)
    return events, finished, dispatcher


def run_fixture(name: str):
    data = load(name)
    graph = data["post"]["request"]["json"]["prompt"]
    pid = data["post"]["body"]["prompt_id"]
    tracker = RunTracker(pid, graph, SERVER)
    events, finished, dispatcher = replay(data["ws_messages"], tracker)
    return data, tracker, events, finished, dispatcher


def test_normal_run_events_in_order_and_end_on_executing_null():
    data, tracker, events, finished, _ = run_fixture("run_01_normal.json")
    pid = tracker.prompt_id
    images = (ImageRef("isengard_test_00001_.png"), ImageRef("isengard_test_00002_.png"))
    assert events == [RunStarted(pid), NodesCached(pid, ()),
                      NodeStarted(pid, "1", "EmptyImage"), NodeStarted(pid, "2", "ImageBlur"),
                      NodeStarted(pid, "3", "SaveImage"), NodeExecuted(pid, "3", images)]
    assert finished == 1 and tracker.done and tracker.success and tracker.error is None
    history = data["history"]["body"][pid]
    assert images_from_history(history) == images


def test_cached_run_replays_executed_without_executing():
    _, tracker, events, finished, _ = run_fixture("run_02_cached_identical.json")
    pid = tracker.prompt_id
    assert events[:2] == [RunStarted(pid), NodesCached(pid, ("1", "2", "3"))]
    assert not any(isinstance(e, NodeStarted) for e in events)
    assert [e.node for e in events if isinstance(e, NodeExecuted)] == ["3"]
    assert tracker.cached == ["1", "2", "3"] and finished == 1 and tracker.success


def test_partial_cache_with_our_own_prompt_id():
    data, tracker, events, finished, _ = run_fixture("run_03_partial_cache_own_prompt_id.json")
    assert data["post"]["request"]["json"]["prompt_id"] == tracker.prompt_id
    assert tracker.cached == ["1"]
    assert [e.node for e in events if isinstance(e, NodeStarted)] == ["2", "3"]
    assert finished == 1


def test_runtime_error_names_node_class_and_exception():
    _, tracker, events, finished, _ = run_fixture("run_05_runtime_execution_error.json")
    assert finished == 1 and not tracker.success
    error = tracker.error
    assert isinstance(error, ComfyExecutionError)
    assert (error.node_id, error.node_type) == ("1", "LoadImage")
    assert error.exception_type == "PIL.UnidentifiedImageError"
    text = str(error)
    assert "node 1 (LoadImage)" in text and "PIL.UnidentifiedImageError" in text
    assert "cannot identify image file" in text and SERVER in text and "\n" not in text


@pytest.mark.parametrize("name,node,cls", [
    ("run_07_targeted_interrupt.json", "12", "ImageBlur"),
    ("run_ks5_interrupt_mid_sampling.json", "3", "KSampler"),
])
def test_interrupt_is_reported_with_the_node(name, node, cls):
    _, tracker, events, finished, _ = run_fixture(name)
    assert finished == 1
    assert isinstance(tracker.error, ComfyInterrupted)
    assert tracker.error.node_id == node
    assert f"node {node} ({cls})" in str(tracker.error)


def test_ksampler_progress_and_jpeg_previews_from_event_1():
    data, tracker, events, finished, _ = run_fixture("run_ks1_first_run_plain_client.json")
    pid = tracker.prompt_id
    progress = [e for e in events if isinstance(e, NodeProgress)]
    assert [(e.node, e.value, e.max) for e in progress] == [("3", float(i), 6.0) for i in range(1, 7)]
    previews = [e for e in events if isinstance(e, PreviewImage)]
    n_binary = sum(1 for m in data["ws_messages"] if m["kind"] == "binary")
    assert len(previews) == n_binary == 6
    assert all(p.prompt_id == pid and p.node == "3" and p.mime == "image/jpeg"
               and p.data[:2] == b"\xff\xd8" for p in previews)
    assert [(e.node, e.class_type) for e in events if isinstance(e, NodeStarted)] == [
        ("4", "CheckpointLoaderSimple"), ("5", "EmptyLatentImage"), ("7", "CLIPTextEncode"),
        ("6", "CLIPTextEncode"), ("3", "KSampler"), ("8", "VAEDecode"), ("9", "SaveImage")]
    assert finished == 1 and tracker.success


def test_preview_metadata_client_gets_event_4_before_progress():
    _, tracker, events, finished, _ = run_fixture("run_ks4_preview_metadata_client.json")
    kinds = [type(e).__name__ for e in events if isinstance(e, (PreviewImage, NodeProgress))]
    assert kinds[:2] == ["PreviewImage", "NodeProgress"]
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert previews and all(p.node == "3" and p.mime == "image/jpeg" for p in previews)
    assert finished == 1


@pytest.mark.parametrize("name,event_type", [
    ("run_08a_save_image_websocket_plain_client.json", 1),
    ("run_08b_save_image_websocket_preview_metadata_client.json", 4),
])
def test_save_image_websocket_png_frames(name, event_type):
    data, tracker, events, finished, _ = run_fixture(name)
    previews = [e for e in events if isinstance(e, PreviewImage)]
    frames = [m for m in data["ws_messages"] if m["kind"] == "binary"]
    assert frames and all(m["event_type"] == event_type for m in frames)
    assert len(previews) == len(frames)
    assert all(p.mime == "image/png" and p.data.startswith(b"\x89PNG") and p.node == "2"
               for p in previews)
    assert finished == 1


def test_reconnect_quirk_executing_without_prompt_id_is_attributed():
    data = load("run_10_reconnect_same_client_id.json")
    graph = data["post"]["request"]["json"]["prompt"]
    pid = data["post"]["body"]["prompt_id"]
    tracker = RunTracker(pid, graph, SERVER)
    first, done1, dispatcher = replay(data["C1_first_socket"], tracker)
    assert done1 == 0 and tracker.current_node == "10"
    # The second socket starts with `executing {"node":"10"}` without a prompt id.
    second, done2, _ = replay(data["C2_second_socket_same_clientId"], tracker, dispatcher)
    assert not any(isinstance(e, NodeStarted) and e.node == "10" for e in second)  # no duplicate
    assert [e.node for e in second if isinstance(e, NodeStarted)] == ["11", "99"]
    assert done2 == 1 and tracker.success
    # A fresh dispatcher (reconnect after a restart of our side) attributes it to the only run.
    fresh = Dispatcher()
    other = RunTracker(pid, graph, SERVER)
    fresh.add(other)
    routed = fresh.feed_text({"type": "executing", "data": {"node": "10"}})
    assert [e for _, e in routed] == [RunStarted(pid), NodeStarted(pid, "10", "ImageBlur")]


def test_messages_of_other_prompts_are_ignored_and_two_runs_are_separated():
    a = load("run_01_normal.json")
    b = load("run_05_runtime_execution_error.json")
    ta = RunTracker(a["post"]["body"]["prompt_id"], a["post"]["request"]["json"]["prompt"])
    tb = RunTracker(b["post"]["body"]["prompt_id"], b["post"]["request"]["json"]["prompt"])
    dispatcher = Dispatcher()
    dispatcher.add(ta)
    dispatcher.add(tb)
    for entry in a["ws_messages"] + b["ws_messages"]:
        if entry["kind"] == "text":
            dispatcher.feed_text(entry["msg"])
    assert ta.done and ta.success and ta.error is None
    assert tb.done and isinstance(tb.error, ComfyExecutionError)
    # status broadcasts update the queue length only
    assert dispatcher.queue_remaining == 0
    assert dispatcher.feed_text({"type": "executing", "data": {"node": "1", "prompt_id": "x"}}) == []
    assert dispatcher.feed_text("not a dict") == [] and dispatcher.feed_text({"type": 1}) == []


def test_feature_flags_reply_is_recorded():
    dispatcher = Dispatcher()
    dispatcher.feed_text({"type": "feature_flags",
                          "data": {"supports_preview_metadata": True, "max_upload_size": 104857600}})
    assert dispatcher.server_features["supports_preview_metadata"] is True


def test_decode_recorded_binary_frames():
    png = decode_binary(sample("A_event1_fmt2.bin"))
    assert (png.event, png.mime, png.prompt_id, png.node) == (1, "image/png", None, None)
    assert png.data.startswith(b"\x89PNG") and len(png.data) == 238 - 8
    jpeg = decode_binary(sample("ksA_event1_fmt1.bin"))
    assert (jpeg.event, jpeg.mime) == (1, "image/jpeg") and jpeg.data[:2] == b"\xff\xd8"
    meta = decode_binary(sample("B_event4.bin"))
    assert (meta.event, meta.mime, meta.node) == (4, "image/png", "2")
    assert meta.prompt_id == "6489c618-4946-4bf9-9931-ee5b7a9542ca"
    assert meta.data.startswith(b"\x89PNG") and len(meta.data) == 403 - 8 - 165
    ks = decode_binary(sample("ksB_event4.bin"))
    assert (ks.event, ks.mime, ks.node) == (4, "image/jpeg", "3")


def test_malformed_binary_frames_are_dropped():
    assert decode_binary(b"\x00\x00") is None
    assert decode_binary(struct.pack(">II", 4, 500) + b"{}") is None          # length past the end
    assert decode_binary(struct.pack(">II", 4, 2) + b"[]" + b"x") is None      # JSON not an object
    text = decode_binary(struct.pack(">II", 3, 1) + b"5" + "héllo".encode())
    assert (text.event, text.node, text.text) == (3, "5", "héllo")
    dispatcher = Dispatcher()
    dispatcher.add(RunTracker("p"))
    # event 1 while nothing of ours is executing: nobody to attribute it to
    assert dispatcher.feed_binary(sample("A_event1_fmt2.bin")) == []
    assert dispatcher.feed_binary(struct.pack(">II", 3, 1) + b"5x") == []


VALIDATION_CASES = {
    "validation_unknown_node_class.json":
        ("invalid_prompt", 0, "Cannot execute because node ImageBlurDoesNotExist does not exist. "
                              "(Node ID '#2')"),
    "validation_node_without_class_type.json":
        ("invalid_prompt", 0, "missing the class_type property. (Node ID '#2')"),
    "validation_missing_required_input.json":
        ("prompt_outputs_failed_validation", 1, "Node 1 (EmptyImage): required input 'width' is missing."),
    "validation_bad_value_type_width_abc.json":
        ("prompt_outputs_failed_validation", 1, "Node 1 (EmptyImage): input 'width' = 'abc' is not a valid INT value."),
    "validation_value_above_max_width_99999.json":
        ("prompt_outputs_failed_validation", 1,
         "Node 1 (EmptyImage): input 'width' = 99999 is above the maximum 16384."),
    "validation_value_below_min_width_0.json":
        ("prompt_outputs_failed_validation", 1, "Node 1 (EmptyImage): input 'width' = 0 is below the minimum 1."),
    "validation_checkpoint_not_found.json":
        ("prompt_outputs_failed_validation", 1, "Node 4 (CheckpointLoaderSimple): input 'ckpt_name' = "
                                                "'does_not_exist.safetensors' is not available"),
    "validation_checkpoint_not_found_nonempty_list.json":
        ("prompt_outputs_failed_validation", 1, "the server offers 'isengard_tiny_sd15.safetensors'"),
    "validation_combo_value_not_in_list.json":
        ("prompt_outputs_failed_validation", 1, "input 'upscale_method' = 'nope' is not available on this "
                                                "server; the server offers 'nearest-exact'"),
    "validation_load_image_missing_file.json":
        ("prompt_outputs_failed_validation", 1, "Node 1 (LoadImage): input 'image' is not valid: Invalid "
                                                "image file: no_such_upload.png."),
    "validation_link_type_mismatch_latent_into_image.json":
        ("prompt_outputs_failed_validation", 1, "which gives LATENT but IMAGE is needed"),
    "validation_link_to_missing_node.json":
        ("prompt_outputs_failed_validation", 1, "Node 3 (SaveImage): an input links to node 77, which is "
                                                "not in the workflow."),
    "validation_link_bad_output_index.json":
        ("prompt_outputs_failed_validation", 1, "Node 2 (ImageBlur)"),
    "validation_two_bad_values.json":
        ("prompt_outputs_failed_validation", 2, "input 'blur_radius' = 500 is above the maximum 31."),
    "validation_no_output_node.json": ("prompt_no_outputs", 0, "has no output node"),
    "validation_empty_prompt_object.json": ("prompt_no_outputs", 0, "has no output node"),
    "validation_prompt_is_list.json": ("prompt_no_outputs", 0, "has no output node"),
    "validation_no_prompt_key.json": ("no_prompt", 0, "No prompt provided."),
}


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_validation_errors_become_sentences(name):
    data = load(f"errors/{name}")
    assert data["status"] == 400
    graph = (data["request"].get("json") or {}).get("prompt")
    error = validation_error_from_body(SERVER, data["body"], graph if isinstance(graph, dict) else None)
    error_type, n_problems, fragment = VALIDATION_CASES[name]
    assert error.error_type == error_type
    assert len(error.problems) == n_problems
    text = str(error)
    assert fragment in text, text
    assert text.startswith(f"ComfyUI at {SERVER} refused") and text.endswith(".")
    assert "\n" not in text
    for problem, (node_id, entry) in zip(error.problems, data["body"]["node_errors"].items(),
                                          strict=False):
        assert problem.node_id == node_id and problem.class_type == entry["class_type"]
        assert problem.kind == entry["errors"][0]["type"]
        assert problem.message in text


def test_validation_problem_fields():
    data = load("errors/validation_value_above_max_width_99999.json")
    (problem,) = validation_error_from_body(SERVER, data["body"]).problems
    assert (problem.node_id, problem.class_type, problem.input_name, problem.received_value,
            problem.kind) == ("1", "EmptyImage", "width", 99999, "value_bigger_than_max")
    missing = validation_error_from_body(
        SERVER, load("errors/validation_missing_required_input.json")["body"]).problems[0]
    assert missing.input_name == "width" and missing.received_value is None


def test_partly_valid_answer_lists_the_bad_branch():
    data = load("errors/validation_one_good_one_bad_output.json")
    assert data["status"] == 200 and data["body"]["node_errors"]
    error = validation_error_from_body(SERVER, {"node_errors": data["body"]["node_errors"]})
    (problem,) = error.problems
    assert (problem.node_id, problem.class_type, problem.input_name, problem.received_value) == \
        ("5", "ImageBlur", "blur_radius", "abc")


def test_value_types():
    stats = SystemStats("0.3.64", "posix", "3.11.7", "2.14.1", (Device("cuda:0 RTX", "cuda", 0, 24, 20),))
    assert (stats.gpu_name, stats.vram_total, stats.vram_free) == ("cuda:0 RTX", 24, 20)
    cuda = SystemStats("", "", "", "", (Device("cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
                                                "cuda", 0, 1, 1),))
    assert cuda.gpu_label == "NVIDIA GeForce RTX 4090"
    assert SystemStats("", "", "", "", (Device("cpu", "cpu", None, 1, 1),)).gpu_label == "CPU"
    empty = SystemStats("", "", "", "", ())
    assert (empty.gpu_name, empty.vram_total, empty.vram_free) == ("", 0, 0)
    assert QueueState(("a",), ("b", "c")).length == 3
    assert normalize_url("127.0.0.1:8188/") == "http://127.0.0.1:8188"
    assert normalize_url("https://box.lan/comfy/") == "https://box.lan/comfy"
    with pytest.raises(ValueError):
        normalize_url("ftp://x")
    with pytest.raises(ValueError):
        normalize_url("  ")
