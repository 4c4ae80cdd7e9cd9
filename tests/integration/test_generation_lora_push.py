"""Generate on a remote ComfyUI that has our upload node: the LoRA is pushed once, then named
``isengard/<file>`` in the workflow (GenerationService + the ComfyUI double over real sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.comfy_double import make_comfy_double  # noqa: F401
from tests.helpers.comfy_double_upload import DEFAULT_TOKEN
from tests.helpers.generation_harness import LORA, SD15, Harness, request


@pytest.fixture
def qloop(qt_asyncio_loop):
    return qt_asyncio_loop


@pytest.fixture
def harness(qtbot, qloop):
    h = Harness(qtbot, qloop)
    yield h
    h.close()


def lora_names(double) -> list[str]:
    return [p["prompt"]["10"]["inputs"]["lora_name"] for p in double.accepted_prompts]


def test_lora_is_uploaded_once_and_named_in_the_workflow(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True)
    service = harness.start([double.url])
    asked: list[str] = []

    def token(url: str) -> str:
        asked.append(url)
        return DEFAULT_TOKEN

    service.set_upload_tokens(token)
    lora = harness.lora()
    kind, job, items = harness.outcome(service.submit(request(lora=lora)))
    assert kind == "finished", items
    assert set(asked) == {double.url}       # (the job, and the probe after set_upload_tokens)
    assert double.upload_node.posts == 1
    stored = double.upload_node.store.folder / LORA
    assert stored.read_bytes() == Path(lora.path).read_bytes()
    assert lora_names(double) == [f"isengard/{LORA}"]
    uploads = [p for p in harness.progress(job) if p.label.startswith("Uploading")]
    # (coalesced to ~10 a second with the run's progress: the first one is always shown)
    assert uploads and uploads[0].total == stored.stat().st_size and uploads[0].job_id == job
    assert uploads[0].server == double.url
    # the second job: nothing uploaded again, same name in the graph
    kind, _, items = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "finished", items
    assert double.upload_node.posts == 1
    assert double.requests_by_method["POST /isengard/lora"] == 1
    assert lora_names(double) == [f"isengard/{LORA}"] * 2


def test_a_fresh_session_checks_and_does_not_upload_again(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True)
    double.upload_node.store.folder.mkdir(parents=True)
    lora = harness.lora()
    (double.upload_node.store.folder / LORA).write_bytes(Path(lora.path).read_bytes())
    service = harness.start([double.url])
    service.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    kind, _, items = harness.outcome(service.submit(request(lora=lora)))
    assert kind == "finished", items
    assert double.requests_by_method["GET /isengard/lora"] >= 1    # asked (probe + check)
    assert double.requests_by_method["POST /isengard/lora"] == 0
    assert double.upload_node.posts == 0
    assert lora_names(double) == [f"isengard/{LORA}"]


def test_without_a_token_the_manual_message_stays(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True)
    service = harness.start([double.url])
    service.set_upload_tokens(lambda url: None)
    kind, _, message = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "failed" and "models/loras" in message and "copy" in message
    assert double.requests["/isengard/lora"] == 0


def test_without_the_node_the_manual_message_stays(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    service.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    kind, _, message = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "failed" and "models/loras" in message and "copy" in message
    assert "LoRA upload" not in message                 # no node: nothing to report


def test_a_wrong_token_is_named_in_the_failure(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True)
    service = harness.start([double.url])
    service.set_upload_tokens(lambda url: "not-the-token")
    kind, _, message = harness.outcome(service.submit(request(lora=harness.lora())))
    assert kind == "failed"
    assert "refused the upload token" in message and "Upload token" in message
    assert double.upload_node.posts == 0


def test_a_different_file_of_that_name_is_never_overwritten(harness, make_comfy_double):
    double = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True)
    folder = double.upload_node.store.folder
    folder.mkdir(parents=True)
    (folder / LORA).write_bytes(b"someone else's LoRA")
    service = harness.start([double.url])
    service.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    kind, _, message = harness.outcome(service.submit(request(lora=harness.lora())))
    # the server lists isengard/<name> but it is not ours: the job is refused, named
    assert kind == "failed", message
    assert "different" in message and LORA in message
    assert (folder / LORA).read_bytes() == b"someone else's LoRA"
    assert double.accepted_prompts == []


def test_the_lora_counts_as_available_where_it_can_be_pushed(harness, make_comfy_double):
    """The Generate tab enables Generate from lora_visibility: a server with the node and its
    token counts (the LoRA is pushed before the job); a refused token is named."""
    good = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True)
    bad = make_comfy_double(models={"checkpoints": [SD15]}, with_upload_node=True,
                            upload_token="another-token")
    plain = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([good.url, bad.url, plain.url])
    path = str(harness.lora().path)
    rows = service.lora_visibility(path)
    assert [r[1] for r in rows] == [False, False, False]        # no tokens yet
    service.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    harness.qtbot.waitUntil(lambda: service.lora_visibility(path)[0][1], timeout=10_000)
    harness.qtbot.waitUntil(lambda: "(upload node:" in service.lora_visibility(path)[1][2],
                            timeout=10_000)
    first, second, third = service.lora_visibility(path)
    assert first[2] == f"isengard/{LORA} (uploaded before the first job)"
    assert not second[1] and "refused the upload token" in second[2] and "copy" in second[2]
    assert not third[1] and "copy" in third[2] and "(upload node:" not in third[2]
    assert good.upload_node.posts == 0                          # asking uploads nothing
