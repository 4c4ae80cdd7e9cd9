""""Delete this exploration…" in Explore (the draft funnel), on the real app and
GenerationService against the ComfyUI test double over real sockets: asked first (No changes
nothing); Yes moves the pictures of every stage to the OS trash through the gallery's Delete
path and removes their rows; the other exploration is untouched and shown; deleting the last
one leaves Explore. A picture of an exploration that was kept into a character's dataset
stays (its row and its file)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from isengard_desktop.core.comfy.funnel import FunnelSizes
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.settings import Settings, save_settings
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401 - fixture
from tests.helpers.generate_ui import CHECKPOINTS, click, open_generate, wait_ready
from tests.helpers.generation_harness import LORA, SD15, WAIT, Harness, request
from tests.helpers.trash import trashed_names


def funnel_rows(db_file: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(db_file)
    try:
        out: dict[str, list[int]] = {}
        for funnel_id, item_id in conn.execute(
                "SELECT funnel_id, id FROM generations ORDER BY id"):
            out.setdefault(funnel_id, []).append(item_id)
        return out
    finally:
        conn.close()


def answer(monkeypatch, button, asked: list[str]) -> None:
    def question(_parent, _title, text, *_args, **_kwargs):
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))


def explore(qtbot, ctx, tab, prompt: str) -> list:
    tab.form.prompt_edit.clear()
    qtbot.keyClicks(tab.form.prompt_edit, prompt)
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, tab.form.explore_button)
    return list(finished.args[1])


def test_delete_an_exploration_after_asking(make_app, qt_asyncio_loop, qtbot, monkeypatch,
                                            make_comfy_double):  # noqa: F811
    double = make_comfy_double(models={"checkpoints": CHECKPOINTS}, step_delay=0.0)
    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(remote_servers=[double.url], funnel_drafts=3,
                                                funnel_standard=1, funnel_final=1))
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    view = tab.funnel
    wait_ready(qtbot, tab)
    first = explore(qtbot, ctx, tab, "a harbour at dawn")
    second = explore(qtbot, ctx, tab, "a forest in fog")
    first_id, second_id = first[0].funnel_id, second[0].funnel_id

    # the first exploration gets a standard picture too (every stage goes)
    tab.show_funnel(first_id, "draft")
    qtbot.waitUntil(lambda: len(view.tiles) == 3 and view.funnel_id == first_id, timeout=5000)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_1)                      # keep the first draft
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, view.next_button)
    [standard] = finished.args[1]
    assert standard.stage == "standard" and standard.funnel_id == first_id
    first_files = [i.path for i in first] + [standard.path]
    assert view.delete_button.isVisible() and view.delete_button.toolTip()

    # No: nothing changes
    asked: list[str] = []
    answer(monkeypatch, QMessageBox.StandardButton.No, asked)
    click(qtbot, view.delete_button)
    assert len(asked) == 1 and "4 pictures" in asked[0] and "trash" in asked[0]
    assert all(os.path.exists(p) for p in first_files)
    assert len(ctx.generation.funnel_items(first_id)) == 4
    assert len(funnel_rows(ctx.paths.db_file)[first_id]) == 4

    # Yes: the pictures of every stage to the trash, the rows removed, the other one shown
    messages: list[str] = []
    tab.message_posted.connect(messages.append)
    answer(monkeypatch, QMessageBox.StandardButton.Yes, asked)
    click(qtbot, view.delete_button)
    qtbot.waitUntil(lambda: ctx.generation.funnel_items(first_id) == [], timeout=WAIT)
    assert not any(os.path.exists(p) for p in first_files)
    assert {Path(p).name for p in first_files} <= trashed_names()
    rows = funnel_rows(ctx.paths.db_file)
    assert first_id not in rows and rows[second_id] == [i.id for i in second]
    assert all(os.path.exists(i.path) for i in second)
    assert view.funnel_id == second_id and tab.lower_stack.currentWidget() is view
    qtbot.waitUntil(lambda: view.funnel_combo.count() == 1, timeout=5000)
    assert view.funnel_combo.itemData(0) == second_id
    assert any("4 pictures" in m and "trash" in m for m in messages), messages

    # the last exploration: Explore is left, its button hidden
    click(qtbot, view.delete_button)
    qtbot.waitUntil(lambda: ctx.generation.funnels() == [], timeout=WAIT)
    assert tab.lower_stack.currentWidget() is not view
    qtbot.waitUntil(lambda: not tab.open_explore_button.isVisible(), timeout=5000)
    assert funnel_rows(ctx.paths.db_file) == {}


@pytest.fixture
def harness(qtbot, qt_asyncio_loop):
    h = Harness(qtbot, qt_asyncio_loop)
    yield h
    h.close()


def test_pictures_kept_into_a_dataset_stay(qtbot, harness, make_comfy_double):  # noqa: F811
    """An exploration made for a character's dataset (staging): the picture kept into the
    dataset keeps its row and file; the others go to the trash and their rows are removed."""
    double = make_comfy_double(models={"checkpoints": [SD15], "loras": [LORA]})
    service = harness.start([double.url])
    base = request(lora=harness.lora(), target="staging", character_id=harness.character.id)
    funnel_id, job_id = service.explore(base, FunnelSizes(drafts=3, standard=1, final=1))
    kind, _, items = harness.outcome(job_id)
    assert kind == "finished" and len(items) == 3
    kept, dropped, other = items
    service.keep([kept.id])                 # into Alice's dataset: leaves the staging strip
    service.discard([dropped.id])           # to the trash; its row stays, "discarded"
    qtbot.waitUntil(lambda: service.item(kept.id) is None and service.item(dropped.id) is None,
                    timeout=WAIT)
    assert harness.library.image_count(harness.character.id) == 1
    assert funnel_rows(harness.paths.db_file) == {funnel_id: [kept.id, dropped.id, other.id]}

    assert service.delete_funnel(funnel_id) == 1
    qtbot.waitUntil(lambda: funnel_rows(harness.paths.db_file) == {funnel_id: [kept.id]},
                    timeout=WAIT)
    assert service.funnel_items(funnel_id) == [] and service.funnels() == []
    assert os.path.exists(kept.path)
    assert not os.path.exists(other.path) and Path(other.path).name in trashed_names()
    conn = sqlite3.connect(harness.paths.db_file)
    try:
        assert conn.execute("SELECT status FROM generations").fetchall() == [("kept",)]
    finally:
        conn.close()
    assert harness.library.image_count(harness.character.id) == 1


def test_deleting_an_exploration_stops_its_running_pictures(qtbot, harness,
                                                             make_comfy_double):  # noqa: F811
    double = make_comfy_double(models={"checkpoints": [SD15]})
    service = harness.start([double.url])
    double.hang_next_prompt = True                  # the first draft never ends by itself
    funnel_id, job_id = service.explore(request(), FunnelSizes(drafts=3, standard=1, final=1))
    qtbot.waitUntil(lambda: bool(double.queue_state()[0]), timeout=WAIT)
    assert service.delete_funnel(funnel_id) == 0    # nothing made yet
    kind, _, message = harness.outcome(job_id)
    assert kind == "failed" and "cancel" in message.lower()
    qtbot.waitUntil(lambda: bool(double.interrupts), timeout=WAIT)
    assert service.funnel_items(funnel_id) == [] and service.funnels() == []
    assert funnel_rows(harness.paths.db_file) == {}
