"""The checkpoint comparison's "fill the gaps" through ComfyUI (issue 16, item 4): a finished
job of an external trainer (the fake trainer under the key "ai-toolkit": a checkpoint folder at
step 10, a sample of the first prompt at step 20 only) compared in the dialog; the missing cells
are rendered by the ComfyUI double over real sockets (its upload node receives each step's
LoRA), one prompt per cell with that step's LoRA, the cell's prompt and seed, the job's sample
size and steps; then the grid shows the pictures. Without a ComfyUI that has the base model the
dialog says why nothing can fill the gaps; a stop keeps what was finished."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from isengard_desktop.core.training.checkpoint_grid import COMPARE_EVENTS
from isengard_desktop.core.training.fill_cells import staged_lora_name
from isengard_desktop.core.training.job_files import read_events
from isengard_desktop.core.training.protocol import SampleEvent
from isengard_desktop.core.training.spec import TrainingJob, new_job_id
from tests.gui.test_training_tab import SAMPLER, make_backend, write_sd15_model
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401
from tests.helpers.comfy_double_upload import DEFAULT_TOKEN
from tests.helpers.generation_harness import WAIT, Harness

BASE = "dreamshaper_8.safetensors"
PROMPTS = ["ohwx in a park", "ohwx as an oil painting"]


@pytest.fixture
def harness(qtbot, qt_asyncio_loop):
    h = Harness(qtbot, qt_asyncio_loop)
    yield h
    h.close()


@pytest.fixture
def finished_job(make_finished_job):
    """A completed "ai-toolkit" (fake) job: 20 steps, a checkpoint at 10, one sample (the
    first prompt) at 20. Returns (training service, record)."""
    return make_finished_job()


@pytest.fixture
def make_finished_job(qtbot, harness, tmp_path):
    """make(**spec changes) -> (training service, record) of a completed "ai-toolkit" (fake)
    job as ``finished_job`` describes, with ``changes`` to its spec (once per test)."""
    made = []

    def make(**changes):
        return _finish_job(qtbot, harness, tmp_path, changes, made)

    yield make
    for service in made:
        service.shutdown()


def _finish_job(qtbot, harness, tmp_path, changes, made):
    from dataclasses import replace

    from isengard_desktop.plugins.registry import TrainerRegistry
    from isengard_desktop.services.training.service import TrainingService

    lib = harness.library
    photos = []
    for i in range(3):
        path = tmp_path / "photos" / f"p{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 96), (40 * i, 90, 160)).save(path)
        photos.append(path)
    lib.import_photos(harness.character.id, photos)
    qtbot.waitUntil(lambda: lib.image_count(harness.character.id) == 3, timeout=WAIT)
    script = tmp_path / "sampling_fake_trainer.py"
    script.write_text(SAMPLER, encoding="utf-8")
    registry = TrainerRegistry()
    backend = make_backend(script, "ai-toolkit", ["--delay", "0.01"])
    launch = backend.build_launch      # ai-toolkit's own options (extra "fields") are not the
    backend.build_launch = lambda job, paths, resume: launch(    # fake trainer's arguments
        replace(job, extra={k: v for k, v in job.extra.items() if k != "fields"}), paths, resume)
    registry.register("ai-toolkit", lambda: backend, backend.label)
    service = TrainingService(harness.paths, lib, lambda: {}, registry)
    made.append(service)
    service.bundle_probe_torch = False
    service.start()
    qtbot.waitUntil(lambda: service.is_ready, timeout=WAIT)
    model = write_sd15_model(tmp_path / "models" / BASE)
    ch = harness.character
    job = TrainingJob(job_id=new_job_id(), character_id=ch.id, character_name=ch.name,
                      trigger_word="ohwx", family="sd15", base_model=str(model),
                      dataset_dir=str(lib.character_folder(ch)), output_name="alice_lora",
                      backend="ai-toolkit", resolution=384, steps=20, sample_every=20,
                      checkpoint_every=10, sample_prompts=list(PROMPTS), sample_steps=3,
                      seed=1000)
    job = replace(job, **changes)
    with qtbot.waitSignal(service.job_finished, timeout=WAIT) as done:
        service.submit(job)
    record = done.args[0]
    assert record.state == "completed", record.error_message
    return service, record


def open_compare(qtbot, harness, service, record):
    from isengard_desktop.services.generation.checkpoint_fill import CheckpointFiller
    from isengard_desktop.ui.training.training_tab import TrainingTab

    tab = TrainingTab(harness.library, service, lambda callback: callback([]))
    qtbot.addWidget(tab)
    tab.checkpoint_filler = CheckpointFiller(harness.service)
    messages: list[str] = []
    tab.message_posted.connect(messages.append)
    dialog = tab.compare_checkpoints(record.job_id)
    assert dialog is not None
    qtbot.waitUntil(lambda: len(dialog.grid.rows) == 2, timeout=WAIT)
    return tab, dialog, messages


def graph_of(prompt: dict) -> tuple[str, str, int, int, int]:
    """(lora_name, positive text, seed, steps, width) of an sd15-lora graph as the double got
    it (node ids: workflows/manifest.yaml sd15-lora)."""
    g = prompt["prompt"]
    return (g["10"]["inputs"]["lora_name"], g["6"]["inputs"]["text"], g["3"]["inputs"]["seed"],
            g["3"]["inputs"]["steps"], g["5"]["inputs"]["width"])


def sampling_of(prompt: dict) -> tuple[float, str, str, str]:
    """(cfg, sampler_name, scheduler, negative text) of an sd15-lora graph as the double got
    it."""
    g = prompt["prompt"]
    return (g["3"]["inputs"]["cfg"], g["3"]["inputs"]["sampler_name"],
            g["3"]["inputs"]["scheduler"], g["7"]["inputs"]["text"])


def test_fill_the_gaps_of_an_external_job_through_comfyui(qtbot, harness, finished_job,
                                                          make_comfy_double):  # noqa: F811
    service, record = finished_job
    double = make_comfy_double(models={"checkpoints": [BASE]}, with_upload_node=True)
    gen = harness.start([double.url])
    gen.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    tab, dialog, messages = open_compare(qtbot, harness, service, record)
    grid = dialog.grid
    assert grid.prompts == tuple(PROMPTS)
    ten, twenty = grid.rows
    assert (ten.step, twenty.step) == (10, 20)
    assert ten.cells == (None, None) and twenty.cells[0] is not None and twenty.cells[1] is None
    assert "ComfyUI on" in dialog.route_label.text() and BASE in dialog.route_label.text()
    assert ("Sampling as the trainer did: 3 steps, CFG 7, sampler ddpm, scheduler normal."
            in dialog.route_label.text())
    assert "Differs from the trainer's samples: timesteps" in dialog.route_label.text()
    assert dialog.fill_button.isEnabled()
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    assert not dialog.fill_button.isEnabled()
    qtbot.waitUntil(lambda: messages or (dialog.grid.rows and all(
        c is not None for r in dialog.grid.rows for c in r.cells)), timeout=WAIT)
    assert messages == []

    # one prompt per missing cell, in row order, each with its step's LoRA, prompt and seed
    sent = [graph_of(p) for p in double.accepted_prompts]
    name10 = staged_lora_name("alice_lora", record.job_id, 10)
    name20 = staged_lora_name("alice_lora", record.job_id, 20)
    assert sent == [(f"isengard/{name10}", PROMPTS[0], 1000, 3, 384),
                    (f"isengard/{name10}", PROMPTS[1], 1001, 3, 384),
                    (f"isengard/{name20}", PROMPTS[1], 1001, 3, 384)]
    # with the sampler settings ai-toolkit samples an SD1.5 job with (ddpm, guidance 7), not
    # the Standard preset's (dpmpp_2m, karras)
    assert {sampling_of(p)[:3] for p in double.accepted_prompts} == {(7.0, "ddpm", "normal")}
    store = double.upload_node.store.folder
    assert (store / name10).read_bytes() == ten.lora.read_bytes()
    assert (store / name20).read_bytes() == twenty.lora.read_bytes()
    assert ten.lora.name == "lora.safetensors"         # the checkpoint folder's file

    # the pictures are where the grid reads them, named as the trainer's sampler names them
    ten, twenty = dialog.grid.rows
    assert [c.name for c in ten.cells] == ["step000010_0.png", "step000010_1.png"]
    assert twenty.cells[1].name == "step000020_1.png"
    assert twenty.cells[0].name == "step00020.png"      # the trainer's own sample stays
    recorded = read_events(Path(record.job_dir) / COMPARE_EVENTS)
    assert [(e.step, Path(e.path).name, e.prompt) for e in recorded
            if isinstance(e, SampleEvent)] == [(10, "step000010_0.png", PROMPTS[0]),
                                               (10, "step000010_1.png", PROMPTS[1]),
                                               (20, "step000020_1.png", PROMPTS[1])]
    assert gen.gallery() == []                          # comparison pictures stay out of it
    qtbot.waitUntil(lambda: not dialog.table.item(0, 1).icon().isNull(), timeout=WAIT)
    assert not dialog.table.item(1, 1).icon().isNull()
    assert dialog.grid.gaps == [] and not dialog.fill_button.isEnabled()


def test_without_a_comfyui_that_has_the_base_model_the_dialog_says_why(
        qtbot, harness, finished_job, make_comfy_double):  # noqa: F811
    service, record = finished_job
    double = make_comfy_double(models={"checkpoints": ["other-sd15.safetensors"]})
    harness.start([double.url])
    _tab, dialog, _messages = open_compare(qtbot, harness, service, record)
    assert dialog.grid.gaps == [10, 20]
    text = dialog.route_label.text()
    assert dialog.route_label.isVisibleTo(dialog)
    assert f"no ComfyUI with {BASE}" in text and "this trainer has no sampler here" in text
    assert not dialog.fill_button.isEnabled()
    assert dialog.fill_button.toolTip() == text


def test_stop_keeps_the_pictures_already_made(qtbot, harness, finished_job,
                                              make_comfy_double):  # noqa: F811
    service, record = finished_job
    double = make_comfy_double(models={"checkpoints": [BASE]}, with_upload_node=True)
    gen = harness.start([double.url])
    gen.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    tab, dialog, messages = open_compare(qtbot, harness, service, record)

    def progressed(done: int, _total: int) -> None:
        if done == 1:       # before the second prompt is sent: it will hang on the server
            double.hang_next_prompt = True

    filler = tab.checkpoint_filler
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    assert len(filler.runs) == 1
    run = filler.runs[0]
    run.progressed.connect(progressed)
    qtbot.waitUntil(lambda: len(double.accepted_prompts) == 2 and run.done == 1, timeout=WAIT)
    assert dialog.stop_fill_button.isVisible()
    qtbot.waitUntil(lambda: bool(double.queue_state()[0]), timeout=WAIT)   # running there
    qtbot.mouseClick(dialog.stop_fill_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(messages), timeout=WAIT)
    assert messages == ["Stopped: the pictures made so far are kept."]
    assert double.interrupts                              # the running picture was stopped
    qtbot.waitUntil(lambda: dialog.grid.row(10).cells[0] is not None, timeout=WAIT)
    ten, twenty = dialog.grid.rows
    assert ten.cells[1] is None and twenty.cells[1] is None
    recorded = read_events(Path(record.job_dir) / COMPARE_EVENTS)
    assert [(e.step, Path(e.path).name) for e in recorded] == [(10, "step000010_0.png")]
    assert not (Path(record.job_dir) / "samples" / "step000010_1.png").exists()
    assert dialog.route_label.text() == "Stopped: the pictures made so far are kept."
    assert dialog.fill_button.isEnabled() and not dialog.stop_fill_button.isVisible()
    assert len(double.accepted_prompts) == 2              # nothing sent after the stop


def test_a_comfyui_that_lists_the_apps_lora_folder_gets_the_loras_there(
        qtbot, harness, finished_job, make_comfy_double):  # noqa: F811
    """A managed or linked ComfyUI lists the app's LoRA folder (extra_model_paths): each
    step's LoRA is placed there under ``compare/`` and the server's list is read again, so the
    graph names it as that server lists it; nothing is uploaded."""
    service, record = finished_job
    loras = harness.paths.loras

    def listed() -> dict[str, list[str]]:     # as ComfyUI lists a folder: relative, "/"
        return {"checkpoints": [BASE],
                "loras": sorted(p.relative_to(loras).as_posix() for p in loras.rglob("*")
                                if p.is_file())}

    double = make_comfy_double(models_provider=listed)
    harness.start([double.url])
    _tab, dialog, messages = open_compare(qtbot, harness, service, record)
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: messages or dialog.grid.gaps == [], timeout=WAIT)
    assert messages == []
    name10 = staged_lora_name("alice_lora", record.job_id, 10)
    name20 = staged_lora_name("alice_lora", record.job_id, 20)
    assert [graph_of(p)[0] for p in double.accepted_prompts] == [
        f"compare/{name10}", f"compare/{name10}", f"compare/{name20}"]
    ten, twenty = dialog.grid.rows
    assert (loras / "compare" / name10).read_bytes() == ten.lora.read_bytes()
    assert (loras / "compare" / name20).read_bytes() == twenty.lora.read_bytes()
    assert double.uploads == [] and double.requests["/isengard/lora"] == 0


def test_quitting_stops_the_run_quietly_and_interrupts_its_picture(
        qtbot, harness, finished_job, make_comfy_double):  # noqa: F811
    service, record = finished_job
    double = make_comfy_double(models={"checkpoints": [BASE]}, with_upload_node=True)
    gen = harness.start([double.url])
    gen.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    double.hang_next_prompt = True                  # the first picture never ends by itself
    tab, dialog, messages = open_compare(qtbot, harness, service, record)
    filler = tab.checkpoint_filler
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    run = filler.runs[0]
    ended: list[tuple] = []
    run.finished.connect(lambda ok, message: ended.append((ok, message)))
    qtbot.waitUntil(lambda: bool(double.queue_state()[0]), timeout=WAIT)
    filler.shutdown()                                # what AppContext.aclose does
    qtbot.waitUntil(lambda: bool(double.interrupts), timeout=WAIT)
    qtbot.waitUntil(lambda: not run.is_running, timeout=WAIT)
    assert ended == [] and messages == [] and run.done == 0
    assert not (Path(record.job_dir) / COMPARE_EVENTS).exists()
    assert len(double.accepted_prompts) == 1


def test_a_fixed_size_or_step_count_out_of_range_is_refused_by_name(
        qtbot, harness, make_comfy_double):  # noqa: F811
    from tests.helpers.generation_harness import SD15, request

    double = make_comfy_double(models={"checkpoints": [SD15]})
    gen = harness.start([double.url])
    kind, _, message = harness.outcome(gen.submit(request(width=40, height=512)))
    assert kind == "failed" and "64 to 4096 pixels" in message and "40×512" in message
    kind, _, message = harness.outcome(gen.submit(request(steps=500)))
    assert kind == "failed" and "sampler steps must be 1 to 200, not 500" in message
    kind, _, message = harness.outcome(gen.submit(request(cfg=150.0)))
    assert kind == "failed" and "CFG scale must be 0 to 100, not 150.0" in message
    kind, _, message = harness.outcome(gen.submit(request(sampler="no_such_sampler")))
    assert kind == "failed" and "no_such_sampler" in message
    kind, _, message = harness.outcome(gen.submit(request(target="compare")))
    assert kind == "failed" and "output_path" in message
    assert double.accepted_prompts == []


def test_a_trigger_placeholder_becomes_the_trigger_word_and_the_jobs_guidance_is_used(
        qtbot, harness, make_finished_job, make_comfy_double):  # noqa: F811
    """``[trigger]`` in a sample prompt is the trigger word, as ai-toolkit and kohya render it
    (plugins/ai_toolkit/backend.py _prompts + the sample events' prompt.replace); the job's own
    ai-toolkit sample guidance is the CFG."""
    service, record = make_finished_job(
        sample_prompts=["[trigger] in a park", "close-up of [trigger], studio light"],
        sample_every=0, extra={"fields": {"sample_guidance": 4.5}})
    double = make_comfy_double(models={"checkpoints": [BASE]}, with_upload_node=True)
    gen = harness.start([double.url])
    gen.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    _tab, dialog, messages = open_compare(qtbot, harness, service, record)
    assert dialog.grid.prompts == ("ohwx in a park", "close-up of ohwx, studio light")
    assert "CFG 4.5" in dialog.route_label.text()
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: messages or dialog.grid.gaps == [], timeout=WAIT)
    assert messages == []
    sent = [(graph_of(p)[1], sampling_of(p)[:3]) for p in double.accepted_prompts]
    assert sent == [("ohwx in a park", (4.5, "ddpm", "normal")),
                    ("close-up of ohwx, studio light", (4.5, "ddpm", "normal"))] * 2
    assert all("[trigger]" not in e.prompt
               for e in read_events(Path(record.job_dir) / COMPARE_EVENTS))


def test_the_route_follows_the_servers_while_the_dialog_is_open(
        qtbot, harness, finished_job, make_comfy_double):  # noqa: F811
    """The ComfyUI that has the base model goes away after the dialog opened: the dialog says
    nothing can fill the gaps; it comes back: ComfyUI again, and the fill runs there."""
    service, record = finished_job
    double = make_comfy_double(models={"checkpoints": [BASE]}, with_upload_node=True)
    gen = harness.start([double.url])
    gen.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    _tab, dialog, messages = open_compare(qtbot, harness, service, record)
    assert "ComfyUI on" in dialog.route_label.text() and dialog.fill_button.isEnabled()

    double.kill()
    qtbot.waitUntil(lambda: "Nothing can make the missing pictures" in
                    dialog.route_label.text(), timeout=WAIT)
    assert not dialog.fill_button.isEnabled()
    assert dialog.fill_button.toolTip() == dialog.route_label.text()

    double.start()
    qtbot.waitUntil(lambda: "ComfyUI on" in dialog.route_label.text(), timeout=WAIT)
    assert dialog.fill_button.isEnabled()
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: messages or dialog.grid.gaps == [], timeout=WAIT)
    assert messages == [] and len(double.accepted_prompts) == 3


def test_closing_the_dialog_stops_the_run(qtbot, harness, finished_job,
                                          make_comfy_double):  # noqa: F811
    """The run's progress and Stop live only in the dialog: closing it stops the run (the
    picture being made is interrupted on the server), nothing more is sent."""
    service, record = finished_job
    double = make_comfy_double(models={"checkpoints": [BASE]}, with_upload_node=True)
    gen = harness.start([double.url])
    gen.set_upload_tokens(lambda url: DEFAULT_TOKEN)
    double.hang_next_prompt = True                  # the first picture never ends by itself
    tab, dialog, messages = open_compare(qtbot, harness, service, record)
    filler = tab.checkpoint_filler
    qtbot.mouseClick(dialog.fill_button, Qt.MouseButton.LeftButton)
    run = filler.runs[0]
    qtbot.waitUntil(lambda: bool(double.queue_state()[0]), timeout=WAIT)
    dialog.close()
    qtbot.waitUntil(lambda: bool(double.interrupts), timeout=WAIT)
    qtbot.waitUntil(lambda: not run.is_running, timeout=WAIT)
    assert len(double.accepted_prompts) == 1 and run.done == 0
    assert messages == ["Stopped: the pictures made so far are kept."]
