"""GenerationService against ComfyUI doubles over real sockets (pytest-qt + qasync loop)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from isengard_desktop.core.comfy.metadata import read_metadata
from isengard_desktop.core.dataset.captions import read_sidecar
from isengard_desktop.services.generation.service import GenerationService
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401
from tests.helpers.generation_harness import (
    LORA,
    OTHER,
    SD15,
    WAIT,
    Harness,
    request,
)
from tests.helpers.service_harness import close_generation_service, run_on_loop
from tests.unit.test_models import SDXL, write_header_only
from tests.helpers.trash import trashed_names


@pytest.fixture
def qloop(qt_asyncio_loop):
    return qt_asyncio_loop


@pytest.fixture
def harness(qtbot, qloop):
    h = Harness(qtbot, qloop)
    yield h
    h.close()


def test_submit_progress_images_metadata_gallery(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15], "loras": [LORA]},
                               step_delay=0.01, preview_method="auto",
                               gpu_name="NVIDIA GeForce RTX 4090")
    service = harness.start([double.url])
    status = service.servers()[0]
    assert status.kind == "remote" and status.state == "ready"
    assert "RTX 4090" in status.gpu_name and status.url == double.url
    assert service.model_choices("sd15") == [SD15]

    lora = harness.lora()
    job = service.submit(request(lora=lora, batch=2))
    kind, job_id, items = harness.outcome(job)
    assert kind == "finished", items
    assert ("started", job) in harness.events
    steps = [p for p in harness.progress(job) if p.total]
    assert steps and steps[-1].node_class == "KSampler" and steps[-1].total == 15
    assert any(p.preview for p in harness.progress(job))
    assert 0 < harness.progress(job)[-1].fraction <= 1
    assert len(items) == 2
    first = items[0]
    assert Path(first.path).is_file()
    assert Path(first.path).parent.parent == harness.paths.outputs / "generations"
    assert first.prompt == "ohwx, a portrait in the rain"        # trigger once, at the start
    assert (first.seed, first.width, first.height) == (1234, 512, 512)
    assert first.workflow == "sd15-lora" and first.model == SD15
    assert first.lora_path == lora.path and first.lora_strength == 0.8
    assert first.status == "gallery" and first.server == double.url
    meta = read_metadata(first.path)
    assert "Seed: 1234" in meta["parameters"] and "<lora:" in meta["parameters"]
    assert meta["prompt"]["3"]["class_type"] == "KSampler"
    assert meta["isengard"]["seed"] == 1234
    assert meta["isengard"]["character_id"] == harness.character.id
    # the file's name and hash, never its absolute path (the user's home in a shared file)
    assert "path" not in meta["isengard"]["lora"]
    assert meta["isengard"]["lora"]["file"] == Path(lora.path).name
    assert meta["isengard"]["lora"]["sha256"] == hashlib.sha256(
        Path(lora.path).read_bytes()).hexdigest()
    assert str(Path(lora.path).parent) not in json.dumps(meta["isengard"])
    assert meta["isengard"]["workflow"] == "sd15-lora"
    # each picture has its own seed, the one that reproduces it alone (issue 11, item 17):
    # ComfyUI draws a latent batch's noise from one generator, so a batch is N prompts
    second = items[1]
    assert second.seed == 1235 and second.params["seed"] == 1235
    meta2 = read_metadata(second.path)
    assert "Seed: 1235" in meta2["parameters"] and meta2["isengard"]["seed"] == 1235
    assert meta2["prompt"]["3"]["inputs"]["seed"] == 1235
    seeds = [(p["prompt"]["3"]["inputs"]["seed"], p["prompt"]["5"]["inputs"]["batch_size"])
             for p in double.accepted_prompts]
    assert seeds == [(1234, 1), (1235, 1)]
    # what the server got: our prompt id, extra_data with the job id, the LoRA as it lists it
    sent = double.accepted_prompts[0]
    assert sent["prompt_id"] == first.prompt_id
    assert sent["extra_data"]["isengard"]["job_id"] == job
    assert sent["prompt"]["10"]["inputs"]["lora_name"] == LORA
    assert sent["prompt"]["6"]["inputs"]["text"] == "ohwx, a portrait in the rain"
    assert [i.id for i in service.gallery()][:2] == sorted((i.id for i in items), reverse=True)
    conn = sqlite3.connect(harness.paths.db_file)
    try:
        rows = conn.execute("SELECT job_id, status, seed FROM generations").fetchall()
    finally:
        conn.close()
    assert sorted(rows) == [(job, "gallery", 1234), (job, "gallery", 1235)]


def test_gallery_is_reloaded_from_the_database(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    job = service.submit(request(seed=None))
    kind, _, items = harness.outcome(job)
    assert kind == "finished" and 0 <= items[0].seed < 2**50      # random seed
    again = GenerationService(harness.paths, harness.settings, harness.library)
    again.pool.poll_interval_s = 60
    again.start()
    harness.qtbot.waitUntil(lambda: again.is_ready, timeout=WAIT)
    try:
        assert [i.id for i in again.gallery()] == [items[0].id]
        assert again.gallery()[0].params["tier"] == "Draft"
    finally:
        close_generation_service(harness.qtbot, again, WAIT)


def test_validation_gap_is_named(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]}, remove_nodes=["VAEDecode"])
    service = harness.start([double.url])
    kind, _, message = harness.outcome(service.submit(request()))
    assert kind == "failed"
    assert "VAEDecode" in message and double.url.split("//")[1] in message
    assert double.requests["/prompt"] == 0          # never sent


def test_missing_model_and_lora_are_named_with_a_fix(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15], "loras": []})
    service = harness.start([double.url])
    kind, _, message = harness.outcome(service.submit(request(model="nope.safetensors")))
    assert kind == "failed" and "checkpoint 'nope.safetensors' is missing" in message
    kind, _, message = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "failed"
    assert f"LoRA '{LORA}' is missing" in message and "models/loras" in message
    [(label, visible, how)] = service.lora_visibility(str(harness.paths.loras / LORA))
    assert not visible and "copy" in how
    double.set_models({"checkpoints": [SD15], "loras": [LORA]})   # the user copied it
    kind, _, items = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "finished", items                 # model lists were refreshed on demand
    assert service.lora_visibility(str(harness.paths.loras / LORA))[0][1] is True


def test_two_servers_route_by_models(harness, make_comfy_double):
    a = make_comfy_double(models={"checkpoints": [SD15], "loras": [LORA]})
    b = make_comfy_double(models={"checkpoints": [SD15, OTHER], "loras": []})
    service = harness.start([a.url, b.url])
    assert service.model_choices("sd15") == [OTHER, SD15]
    kind, _, items = harness.outcome(service.submit(request(model=OTHER)))
    assert kind == "finished" and items[0].server == b.url
    assert (len(a.accepted_prompts), len(b.accepted_prompts)) == (0, 1)
    # B now has... OTHER loaded; an SD15 LoRA job still must go to A (only A has the LoRA)
    kind, _, items = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "finished" and items[0].server == a.url
    # a plain SD15 job goes to the server that ran SD15 last: A
    kind, _, items = harness.outcome(service.submit(request()))
    assert items[0].server == a.url
    assert [s.label for s in service.servers()] == [a.url.split("//")[1], b.url.split("//")[1]]


def test_server_killed_mid_run_is_retried_once_on_the_other(harness, make_comfy_double):
    a = make_comfy_double(models={"checkpoints": [SD15]}, step_delay=0.05)
    b = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([a.url, b.url])
    a.hang_next_prompt = True
    job = service.submit(request())
    harness.qtbot.waitUntil(lambda: bool(a.queue_state()[0]), timeout=WAIT)
    a.kill()
    kind, _, items = harness.outcome(job)
    assert kind == "finished", items
    assert items[0].server == b.url
    assert len(b.accepted_prompts) == 1
    harness.qtbot.waitUntil(lambda: service.servers()[0].state == "offline", timeout=WAIT)
    assert service.servers()[0].message


def test_server_killed_with_no_other_server_fails_clearly(harness, make_comfy_double):
    a = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([a.url])
    a.hang_next_prompt = True
    job = service.submit(request())
    harness.qtbot.waitUntil(lambda: bool(a.queue_state()[0]), timeout=WAIT)
    a.kill()
    kind, _, message = harness.outcome(job)
    assert kind == "failed" and a.url in message and "No other server" in message


def test_cancel_a_running_job(harness, make_comfy_double):
    a = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([a.url])
    a.hang_next_prompt = True
    job = service.submit(request())
    harness.qtbot.waitUntil(lambda: bool(a.queue_state()[0]), timeout=WAIT)
    service.cancel(job)
    kind, _, message = harness.outcome(job)
    assert (kind, message) == ("failed", "Generation cancelled.")
    assert a.interrupts and a.interrupts[-1].get("prompt_id")
    assert service.gallery() == []


def test_staging_keep_and_discard(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15], "loras": [LORA]})
    service = harness.start([double.url])
    alice = harness.character.id
    job = service.submit(request(lora=harness.lora(), batch=2, target="staging",
                                 character_id=alice))
    kind, _, items = harness.outcome(job)
    assert kind == "finished" and [i.status for i in items] == ["staging", "staging"]
    assert service.gallery() == []
    assert sorted(i.id for i in service.staging(alice)) == sorted(i.id for i in items)
    keep, drop = items
    changes = []
    harness.library.data_changed.connect(changes.append)
    service.keep([keep.id])
    harness.qtbot.waitUntil(lambda: len(service.staging(alice)) == 1, timeout=WAIT)
    [image] = harness.library.images(alice)
    assert image.source == "synthetic"
    assert image.caption == "ohwx, a portrait in the rain"
    assert image.path.parent == harness.paths.characters / harness.character.folder
    assert read_sidecar(image.path) == "ohwx, a portrait in the rain"
    assert any(alice in c.character_ids for c in changes)
    service.discard([drop.id])
    harness.qtbot.waitUntil(lambda: service.staging(alice) == [], timeout=WAIT)
    assert not os.path.exists(drop.path)          # in the (test) OS trash
    assert Path(drop.path).name in trashed_names()
    conn = sqlite3.connect(harness.paths.db_file)
    try:
        rows = dict(conn.execute("SELECT id, status FROM generations").fetchall())
    finally:
        conn.close()
    assert rows == {keep.id: "kept", drop.id: "discarded"}


def test_staging_without_lora_is_refused(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    kind, _, message = harness.outcome(service.submit(request(target="staging",
                                                              character_id=1)))
    assert kind == "failed" and "LoRA" in message


def test_img2img_and_controlnet_upload_their_images(harness, make_comfy_double, tmp_path):
    from PIL import Image

    double = make_comfy_double(models={"checkpoints": [SD15], "controlnet": ["cn.safetensors"]})
    service = harness.start([double.url])
    init, pose = tmp_path / "init.png", tmp_path / "pose.png"
    Image.new("RGB", (96, 96), (200, 10, 10)).save(init)
    Image.new("RGB", (96, 96), (10, 200, 10)).save(pose)
    job = service.submit(request(features=frozenset({"img2img", "controlnet"}),
                                 parent_image=str(init),
                                 feature_inputs={"controlnet_image": str(pose),
                                                 "controlnet_model": "cn.safetensors",
                                                 "denoise": "0.55"}))
    kind, _, items = harness.outcome(job)
    assert kind == "finished", items
    assert items[0].workflow == "sd15-img2img" and items[0].parent_image == str(init)
    graph = double.accepted_prompts[-1]["prompt"]
    loads = sorted(n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage")
    assert len(loads) == 2 and all(name.startswith("isengard/") for name in loads)
    assert len(double.uploads) == 2
    assert any(n["class_type"] == "ControlNetLoader"
               and n["inputs"]["control_net_name"] == "cn.safetensors" for n in graph.values())
    assert any(n["class_type"] == "KSampler" and n["inputs"]["denoise"] == 0.55
               for n in graph.values())


def test_feature_support_names_what_is_missing(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15], "controlnet": ["cn.safetensors"]})
    service = harness.start([double.url])
    assert service.feature_support("sd15", "controlnet", False) == (True, "")
    ok, why = service.feature_support("sd15", "upscale", False)
    assert not ok and "models/upscale_models" in why
    ok, why = service.feature_support("sd15", "facedetailer", True)
    assert not ok and "FaceDetailer" in why
    ok, why = service.feature_support("chroma", "controlnet", False)
    assert not ok and "Chroma" in why
    # the files of one model folder across the ready servers (the tab's ControlNet picker)
    assert service.models("controlnet") == ["cn.safetensors"]
    assert service.models("checkpoints") == [SD15]
    assert service.models("upscale_models") == []


def test_servers_changed_only_when_something_changes(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    seen: list = []
    service.servers_changed.connect(seen.append)
    harness.qtbot.wait(1200)                       # ~6 polls of an unchanged server
    assert seen == []
    double.kill()
    harness.qtbot.waitUntil(lambda: bool(seen) and seen[-1][0].state == "offline",
                            timeout=WAIT)
    assert double.url in seen[-1][0].message
    double.start()
    harness.qtbot.waitUntil(lambda: seen[-1][0].state == "ready", timeout=WAIT)


def test_trigger_word_goes_in_once_at_the_start():
    from isengard_desktop.core.dataset.captions import with_trigger

    assert with_trigger("a cat", "ohwx") == "ohwx, a cat"
    assert with_trigger("ohwx, a cat", "ohwx") == "ohwx, a cat"
    assert with_trigger("photo of ohwx in rain", "ohwx") == "photo of ohwx in rain"
    assert with_trigger("ohwxman in rain", "ohwx") == "ohwx, ohwxman in rain"
    assert with_trigger("", "ohwx") == "ohwx"
    assert with_trigger("  , a dog ", "ohwx") == "ohwx, a dog"
    assert with_trigger("a dog", "") == "a dog"


def test_refresh_reads_the_lists_after_it_was_asked(harness, make_comfy_double):
    """A refresh right after a change (a LoRA copied to the server, the user clicks ↻) must
    not end with the answer of a read that was already under way."""
    models = {"checkpoints": [SD15]}
    gate, arrived, release = [False], threading.Event(), threading.Event()

    def provider() -> dict:
        snapshot = {k: list(v) for k, v in models.items()}
        if gate[0]:                    # the first read after arming answers late, but old
            gate[0] = False
            arrived.set()
            release.wait(10)
        return snapshot

    double = make_comfy_double(models_provider=provider)
    service = harness.start([double.url])
    pool = service.pool
    [server] = pool.healthy()
    gate[0] = True
    first = pool.fetch_object_info(server)                       # a read under way...
    harness.qtbot.waitUntil(arrived.is_set, timeout=WAIT)        # ...saw the old lists
    models["checkpoints"] = [SD15, OTHER]                        # the server gets a model
    refresh = asyncio.ensure_future(pool.refresh())              # and the user clicks ↻
    release.set()
    harness.qtbot.waitUntil(refresh.done, timeout=WAIT)
    refresh.result()
    assert first.done()
    assert service.model_choices("sd15") == [OTHER, SD15]


def test_trash_moves_run_one_at_a_time(harness, make_comfy_double, monkeypatch):
    """Quick Discards on first use collided in send2trash ("File exists"): the moves run on
    one thread, one after the other, and a FileExistsError is retried once."""
    from isengard_desktop.services import trash_support

    real = trash_support.send2trash
    lock, active, most, calls, threads = threading.Lock(), [0], [0], [], set()

    def slow_send2trash(path: str) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            calls.append(path)
            threads.add(threading.get_ident())
            first = len(calls) == 1
        try:
            time.sleep(0.15)
            if first:        # what the first-use race raised
                raise FileExistsError(17, "File exists", path)
            real(path)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(trash_support, "send2trash", slow_send2trash)
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    kind, _, items = harness.outcome(service.submit(request(batch=3)))
    assert kind == "finished" and len(items) == 3
    problems: list[str] = []
    service.failed.connect(problems.append)
    for item in items:                       # three quick clicks
        service.discard([item.id])
    harness.qtbot.waitUntil(lambda: service.gallery() == [], timeout=WAIT)
    assert problems == []
    assert most[0] == 1 and len(threads) == 1
    assert calls[0] == calls[1] and len(calls) == 4          # the first one retried once
    assert not any(os.path.exists(i.path) for i in items)


def test_delete_sends_to_the_trash_and_removes_the_row(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    kind, _, items = harness.outcome(service.submit(request(batch=2)))
    assert kind == "finished"
    gone, kept = items
    changed: list[bool] = []
    service.gallery_changed.connect(lambda: changed.append(True))
    service.delete([gone.id])
    harness.qtbot.waitUntil(lambda: [i.id for i in service.gallery()] == [kept.id],
                            timeout=WAIT)
    assert changed and service.item(gone.id) is None
    assert not os.path.exists(gone.path) and os.path.exists(kept.path)
    assert Path(gone.path).name in trashed_names()
    conn = sqlite3.connect(harness.paths.db_file)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM generations")]
    finally:
        conn.close()
    assert ids == [kept.id]


def test_queue_is_read_again_when_a_job_ends(harness, make_comfy_double):
    """The chip must not say "busy · queue 1" until the next poll once a job is done."""
    double = make_comfy_double(models={"checkpoints": [SD15]}, step_delay=0.05)
    service = harness.start([double.url], poll_interval=600)     # no timed polls
    job = service.submit(request())
    harness.qtbot.waitUntil(lambda: bool(double.queue_state()[0]), timeout=WAIT)
    service.pool.poll_all()                                      # one poll while it runs
    harness.qtbot.waitUntil(lambda: service.servers()[0].queue_length == 1, timeout=WAIT)
    assert service.servers()[0].state == "busy"
    kind, _, _ = harness.outcome(job)
    assert kind == "finished"
    harness.qtbot.waitUntil(
        lambda: (service.servers()[0].state, service.servers()[0].queue_length) == ("ready", 0),
        timeout=WAIT)


def test_aclose_closes_every_connection_at_once(harness, make_comfy_double):
    """App quit awaits ``aclose()`` on the running loop (``__main__``; the loop outlives the
    app): the clients close through their own APIs at once, nothing is left to warn about."""
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    kind, _, _ = harness.outcome(service.submit(request()))          # socket + HTTP in use
    assert kind == "finished" and double.connected_clients()
    began = time.monotonic()
    run_on_loop(harness.qtbot, service.aclose(), WAIT)
    run_on_loop(harness.qtbot, service.aclose(), WAIT)               # twice is harmless
    assert time.monotonic() - began < 5
    harness.qtbot.waitUntil(lambda: not double.connected_clients(), timeout=WAIT)
    gc.collect()          # nothing unclosed left to warn about (warnings are errors)


def test_model_choices_hold_only_the_family_and_the_unknown(harness, make_comfy_double):
    """Issue 10, item 13: with an SD 1.5 and an SDXL checkpoint on the server and SD 1.5
    chosen, the SDXL file is not offered; a file whose family cannot be told is."""
    double = make_comfy_double(models={"checkpoints": [SD15, "sd_xl_base_1.0.safetensors",
                                                       "mystery.safetensors"], "loras": []})
    service = harness.start([double.url])
    assert service.model_choices("sd15") == [SD15, "mystery.safetensors"]
    assert service.model_choices("sdxl") == ["sd_xl_base_1.0.safetensors",
                                             "mystery.safetensors"]
    kind, _, _ = harness.outcome(service.submit(request()))
    assert kind == "finished"


def test_the_model_library_tells_the_family_of_a_file_its_name_does_not(harness, make_comfy_double,
                                                                        tmp_path):
    """Issue 10, item 13: a server file whose name says nothing is placed by what the model
    library read from the same file's header (here an SDXL checkpoint called mystery)."""
    folder = tmp_path / "models"
    write_header_only(folder / "mystery.safetensors", SDXL)
    harness.settings.settings = replace(harness.settings.settings, model_folders=[str(folder)])
    double = make_comfy_double(models={"checkpoints": [SD15, "sd_xl_base_1.0.safetensors",
                                                       "mystery.safetensors"], "loras": []})
    service = harness.start([double.url])
    harness.qtbot.waitUntil(lambda: "mystery.safetensors" not in service.model_choices("sd15"),
                            timeout=WAIT)
    assert service.model_choices("sd15") == [SD15]
    assert service.model_choices("sdxl") == ["mystery.safetensors", "sd_xl_base_1.0.safetensors"]
