"""Explore (the draft funnel) driven as a user would, on the real app and GenerationService,
against the ComfyUI test double over real sockets (a remote server in Settings).

6 drafts (funnel sizes from Settings: 6 → 3 → 1) with fixed distinct seeds at the Draft
preset and a smaller size → keyboard triage (K, D, arrows, digits) → Next stage makes the 3
kept drafts again at Standard with the SAME seeds (image to image from each draft; the graphs
the double received are checked) → "More like this" inside the stage (nearby seeds, low
denoise, the children in the same stage) → keep 1 → Final (High preset, upscaled) → keep it:
it joins the gallery with its lineage tree. A restart on the same data folder shows the same
lineage, and the exploration re-opens at any stage with its decisions. Also: funnel sizes from
Settings, a final without an upscaler, Next pressed twice, a concept sent straight to Explore.
"""

from __future__ import annotations

import sqlite3

import pytest
from PySide6.QtCore import Qt

from isengard_desktop.core.comfy.metadata import read_metadata
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.settings import Settings, save_settings
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401 - fixture
from tests.helpers.generate_ui import CHECKPOINTS, click, open_generate, wait_ready
from tests.helpers.qt import close_app

UPSCALER = "4x-UltraSharp.pth"
SEED = 5000


@pytest.fixture
def double(make_comfy_double):  # noqa: F811 - the fixture imported above
    return make_comfy_double(models={"checkpoints": CHECKPOINTS,
                                     "upscale_models": [UPSCALER]}, step_delay=0.0)


def sampler_of(graph: dict) -> dict:
    [inputs] = [n["inputs"] for n in graph.values() if n["class_type"] == "KSampler"]
    return inputs


def graphs_since(double, start: int) -> list[dict]:
    return [body["prompt"] for body in double.accepted_prompts[start:]]


def lineage_texts(tree) -> list[tuple[int, str]]:
    return tree.texts()


def test_explore_six_keep_three_then_one_with_lineage_that_survives_a_restart(
        make_app, qt_asyncio_loop, qtbot, double):
    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(remote_servers=[double.url], funnel_drafts=6,
                                                funnel_standard=3, funnel_final=1))
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    form, view = tab.form, tab.funnel
    wait_ready(qtbot, tab)
    assert form.explore_button.text() == "Explore (6)" and form.explore_button.toolTip()
    assert not form.explore_button.isEnabled()                 # no prompt yet
    qtbot.keyClicks(form.prompt_edit, "a lighthouse in a storm")
    form.advanced.set_seed(SEED)

    # -- drafts: 6 pictures, seeds SEED … SEED+5, Draft preset, 3/4 of the SDXL side -----------
    start = len(double.accepted_prompts)
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, form.explore_button)
        assert tab.lower_stack.currentWidget() is view
    drafts = list(finished.args[1])
    assert [d.seed for d in drafts] == list(range(SEED, SEED + 6))
    assert {d.stage for d in drafts} == {"draft"} and len({d.funnel_id for d in drafts}) == 1
    assert all(d.parent_id is None and (d.width, d.height) == (768, 768) for d in drafts)
    for graph, seed in zip(graphs_since(double, start), range(SEED, SEED + 6), strict=True):
        assert sampler_of(graph)["seed"] == seed and sampler_of(graph)["steps"] == 15
        assert "VAEEncode" not in {n["class_type"] for n in graph.values()}
    meta = read_metadata(drafts[0].path)["isengard"]
    assert (meta["stage"], meta["server_tier"], meta["funnel_id"]) == \
        ("draft", "draft", drafts[0].funnel_id)                 # the router's tier
    qtbot.waitUntil(lambda: len(view.tiles) == 6, timeout=5000)
    assert tab.gallery.items() == []                      # drafts stay in Explore
    assert view.stage_buttons["draft"].isChecked()
    assert "6 drafts · keep 3 for standard · 0 kept" in view.count_label.text()
    assert not view.next_button.isEnabled() and "Keep at least one" in \
        view.next_button.toolTip()

    # -- triage by keyboard: K, D, →, K, digits toggle ------------------------------------
    ids = view.item_ids()
    assert view.current_id == ids[0]
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_K)                    # keep 1 → 2 is current
    assert view.current_id == ids[1]
    qtbot.keyClick(view, Qt.Key.Key_D)                    # discard 2 → 3
    assert view.current_id == ids[2]
    qtbot.keyClick(view, Qt.Key.Key_Right)                # → 4
    qtbot.keyClick(view, Qt.Key.Key_K)                    # keep 4 → 5 (the next undecided one)
    assert view.current_id == ids[4]
    qtbot.keyClick(view, Qt.Key.Key_6)                    # toggle 6: kept
    qtbot.keyClick(view, Qt.Key.Key_1)                    # toggle 1: undecided again
    assert view.tile(ids[0]).item.pick == ""
    qtbot.keyClick(view, Qt.Key.Key_1)                    # and kept again
    assert [view.tile(i).item.pick for i in ids] == ["keep", "discard", "", "keep", "", "keep"]
    assert view.tile(ids[3]).caption.text() == "4 · Kept"
    assert view.tile(ids[3]).seed_label.text() == f"seed {SEED + 3}"
    assert "3 kept" in view.count_label.text() and view.next_button.isEnabled()
    # the mouse does the same: Discard on picture 5, pressed again → undecided
    tile5 = view.tile(ids[4])
    assert tile5.keep_button.toolTip() and tile5.discard_button.toolTip()
    click(qtbot, tile5.discard_button)
    assert tile5.item.pick == "discard" and tile5.discard_button.isChecked()
    click(qtbot, tile5.discard_button)
    assert tile5.item.pick == "" and not tile5.discard_button.isChecked()
    assert view.tile(ids[0]).keep_button.isChecked()
    kept = [ids[0], ids[3], ids[5]]
    kept_seeds = [SEED, SEED + 3, SEED + 5]

    def picks_in_db() -> dict[int, str]:
        conn = sqlite3.connect(ctx.paths.db_file)
        try:
            return dict(conn.execute("SELECT id, pick FROM generations WHERE stage='draft'"))
        finally:
            conn.close()

    qtbot.waitUntil(lambda: picks_in_db() == {ids[0]: "keep", ids[1]: "discard", ids[2]: "",
                                              ids[3]: "keep", ids[4]: "", ids[5]: "keep"},
                    timeout=10_000)

    # -- Next stage: the kept drafts again at Standard with the SAME seeds -------------------
    start = len(double.accepted_prompts)
    done: list = []
    failures: list[str] = []
    ctx.generation.job_finished.connect(lambda _j, items: done.extend(items))
    ctx.generation.job_failed.connect(lambda _j, message: failures.append(message))
    assert view.next_button.text() == "Next stage: Standard ▸"
    click(qtbot, view.next_button)
    assert view.stage_buttons["standard"].isChecked()
    qtbot.waitUntil(lambda: len(done) == 3 or bool(failures), timeout=60_000)
    assert failures == []
    standard = sorted(done, key=lambda i: i.parent_id)
    assert [s.parent_id for s in standard] == kept
    assert [s.seed for s in standard] == kept_seeds
    assert all(s.stage == "standard" and (s.width, s.height) == (1024, 1024) for s in standard)
    sent = graphs_since(double, start)
    assert sorted(sampler_of(g)["seed"] for g in sent) == kept_seeds
    for graph in sent:
        assert sampler_of(graph)["denoise"] == 0.55 and sampler_of(graph)["steps"] == 30
        assert {"LoadImage", "VAEEncode"} <= {n["class_type"] for n in graph.values()}
    meta = read_metadata(standard[0].path)["isengard"]
    assert (meta["parent_id"], meta["server_tier"]) == (kept[0], "standard")
    qtbot.waitUntil(lambda: len(view.tiles) == 3, timeout=5000)
    assert "3 standard · keep 1 for final" in view.count_label.text()
    # Next stage again: nothing new to make (every kept draft has its standard picture)
    view.stage_buttons["draft"].click()
    assert len(view.tiles) == 6 and view.tile(ids[1]).item.pick == "discard"
    before = len(double.accepted_prompts)
    click(qtbot, view.next_button)
    assert len(ctx.generation.active_jobs()) == 0
    assert len(double.accepted_prompts) == before
    assert view.stage_buttons["standard"].isChecked() and len(view.tiles) == 3

    # -- More like this inside the stage: nearby seeds, low denoise, same stage ----------------
    source = standard[0]          # (the standard pictures finish in any order)
    view.set_current(source.id)
    view.more.slider.setValue(25)
    view.more.count.setValue(2)
    start = len(double.accepted_prompts)
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, view.more.button)
    more = list(finished.args[1])
    assert [m.seed for m in more] == [source.seed + 1, source.seed + 2]
    assert all(m.parent_id == source.id and m.stage == "standard" for m in more)
    for graph, seed in zip(graphs_since(double, start), [source.seed + 1, source.seed + 2],
                           strict=True):
        assert sampler_of(graph)["denoise"] == 0.25 and sampler_of(graph)["seed"] == seed
    qtbot.waitUntil(lambda: len(view.tiles) == 5, timeout=5000)

    # -- keep 1 → Final: High preset, upscaled, same seed --------------------------------------
    chosen = standard[2]
    view.setFocus()
    qtbot.keyClick(view, getattr(Qt.Key, f"Key_{view.item_ids().index(chosen.id) + 1}"))
    assert view.kept() and view.kept()[0].id == chosen.id
    done.clear()
    start = len(double.accepted_prompts)
    click(qtbot, view.next_button)
    qtbot.waitUntil(lambda: len(done) == 1, timeout=60_000)
    [final] = done
    assert (final.parent_id, final.seed, final.stage) == (chosen.id, chosen.seed, "final")
    [graph] = graphs_since(double, start)
    assert sampler_of(graph)["denoise"] == 0.35 and sampler_of(graph)["steps"] == 40
    assert sampler_of(graph)["seed"] == chosen.seed
    assert {"UpscaleModelLoader", "ImageUpscaleWithModel"} <= {n["class_type"]
                                                               for n in graph.values()}
    assert (final.width, final.height) == (2048, 2048)        # 4× upscaler, rescaled by 0.5
    assert read_metadata(final.path)["isengard"]["server_tier"] == "final"
    qtbot.waitUntil(lambda: len(view.tiles) == 1, timeout=5000)
    assert not view.next_button.isVisible()
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_K)

    # the chosen final joins the gallery; its details show the lineage tree
    qtbot.waitUntil(lambda: [i.id for i in tab.gallery.items()] == [final.id], timeout=10_000)
    click(qtbot, view.back_button)
    assert tab.lower_stack.currentIndex() == 0
    tab.gallery.select_item(final.id)
    tree = tab.gallery.details.lineage
    expected = [(0, f"#{kept[2]} · Drafts · seed {SEED + 5} · kept"),
                (1, f"#{chosen.id} · Standard · seed {SEED + 5} · denoise 0.55 · kept"),
                (2, f"#{final.id} · Final · seed {SEED + 5} · denoise 0.35 · kept")]
    qtbot.waitUntil(lambda: lineage_texts(tree) == expected, timeout=10_000)
    assert tree.isVisible() and tree.currentItem().text(0).startswith(f"#{final.id} ")
    assert "Final · kept" in tab.gallery.details.text.text()

    # -- restart on the same data folder: the lineage and the exploration are still there ----
    close_app(qtbot, ctx)
    ctx2 = make_app()
    tab2 = open_generate(qtbot, ctx2)
    qtbot.waitUntil(lambda: [i.id for i in tab2.gallery.items()] == [final.id], timeout=15_000)
    tab2.gallery.select_item(final.id)
    qtbot.waitUntil(lambda: lineage_texts(tab2.gallery.details.lineage) == expected,
                    timeout=10_000)
    # the source of "more like this" shows its children in its tree
    assert tab2.open_explore_button.isVisible()
    click(qtbot, tab2.open_explore_button)
    view2 = tab2.funnel
    assert tab2.lower_stack.currentWidget() is view2
    assert view2.stage_buttons["final"].isChecked() and len(view2.tiles) == 1
    view2.stage_buttons["standard"].click()
    assert len(view2.tiles) == 5
    view2.set_current(source.id)
    qtbot.waitUntil(lambda: any("more like this · denoise 0.25" in text
                                for _d, text in lineage_texts(view2.lineage)), timeout=10_000)
    view2.stage_buttons["draft"].click()
    assert [t.item.pick for t in view2.tiles] == ["keep", "discard", "", "keep", "", "keep"]

    # more like this from the gallery: the new picture joins the gallery, the final its parent
    click(qtbot, view2.back_button)
    wait_ready(qtbot, tab2)
    tab2.gallery.select_item(final.id)
    tab2.gallery.details.more.count.setValue(1)
    ended: list = []
    ctx2.generation.job_finished.connect(lambda _j, items: ended.append(("ok", items)))
    ctx2.generation.job_failed.connect(lambda _j, message: ended.append(("failed", message)))
    click(qtbot, tab2.gallery.details.more.button)
    qtbot.waitUntil(lambda: bool(ended), timeout=60_000)
    assert ended[0][0] == "ok", ended
    [child] = ended[0][1]
    assert (child.parent_id, child.seed, child.stage, child.funnel_id) == \
        (final.id, final.seed + 1, "", "")
    qtbot.waitUntil(lambda: {i.id for i in tab2.gallery.items()} == {final.id, child.id},
                    timeout=10_000)
    tab2.gallery.select_item(child.id)
    grown = expected + [(3, f"#{child.id} · picture · seed {final.seed + 1} · more like this "
                            "· denoise 0.35")]
    qtbot.waitUntil(lambda: lineage_texts(tab2.gallery.details.lineage) == grown,
                    timeout=10_000)


def test_funnel_sizes_in_settings_reach_the_explore_button(make_app, qt_asyncio_loop, qtbot):
    from PySide6.QtWidgets import QDialogButtonBox

    from isengard_desktop.core.settings import load_settings
    from isengard_desktop.ui.settings.settings_dialog import SettingsDialog

    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    assert tab.form.explore_button.text() == "Explore (20)"        # the default 20 → 8 → 3
    click(qtbot, tab.backends.settings_button)
    qtbot.waitUntil(lambda: ctx.window.findChild(SettingsDialog) is not None, timeout=5000)
    dialog = ctx.window.findChild(SettingsDialog)
    box = dialog.comfyui_page.funnel_box
    assert [box.spins[k].value() for k in ("drafts", "standard", "final")] == [20, 8, 3]
    assert all(spin.toolTip() for spin in box.spins.values())
    box.spins["drafts"].setValue(10)
    box.spins["standard"].setValue(12)     # more than the drafts: kept to 10
    box.spins["final"].setValue(2)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    s = ctx.settings.settings
    assert (s.funnel_drafts, s.funnel_standard, s.funnel_final) == (10, 10, 2)
    assert tab.form.explore_button.text() == "Explore (10)"
    qtbot.waitUntil(lambda: load_settings(ctx.paths.settings_file).funnel_drafts == 10,
                    timeout=5000)


def test_final_without_an_upscaler_says_so_and_next_twice_makes_each_picture_once(
        make_app, qt_asyncio_loop, qtbot, make_comfy_double):  # noqa: F811
    double = make_comfy_double(models={"checkpoints": CHECKPOINTS}, step_delay=0.05)
    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(remote_servers=[double.url], funnel_drafts=2,
                                                funnel_standard=1, funnel_final=1))
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    view = tab.funnel
    wait_ready(qtbot, tab)
    qtbot.keyClicks(tab.form.prompt_edit, "a quiet harbour")
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000):
        click(qtbot, tab.form.explore_button)
    qtbot.waitUntil(lambda: len(view.tiles) == 2, timeout=5000)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_2)                     # keep the second draft only
    done: list = []
    ctx.generation.job_finished.connect(lambda _j, items: done.extend(items))
    start = len(double.accepted_prompts)
    click(qtbot, view.next_button)
    view.stage_buttons["draft"].click()                    # back to the drafts, Next again
    click(qtbot, view.next_button)                         # (the first one still runs)
    qtbot.waitUntil(lambda: len(done) == 1, timeout=60_000)
    qtbot.wait(300)
    assert len(double.accepted_prompts) == start + 1 and ctx.generation.active_jobs() == []
    qtbot.waitUntil(lambda: len(view.tiles) == 1, timeout=5000)
    messages: list[str] = []
    tab.message_posted.connect(messages.append)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_K)
    done.clear()
    start = len(double.accepted_prompts)
    click(qtbot, view.next_button)
    assert any("made without upscaling" in m and "upscale_models" in m for m in messages), \
        messages
    qtbot.waitUntil(lambda: len(done) == 1, timeout=60_000)
    [graph] = graphs_since(double, start)
    classes = {n["class_type"] for n in graph.values()}
    assert "UpscaleModelLoader" not in classes and "VAEEncode" in classes
    assert done[0].stage == "final" and (done[0].width, done[0].height) == (1024, 1024)


def test_a_concept_goes_straight_into_the_funnel(make_app, qt_asyncio_loop, qtbot, double):
    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(remote_servers=[double.url], funnel_drafts=3))
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    wait_ready(qtbot, tab)
    dialog = tab.open_concepts()
    qtbot.waitUntil(lambda: dialog._lists != {}, timeout=10_000)
    assert dialog.explore_button.isVisible() and not dialog.explore_button.isEnabled()
    dialog.edits["setting"].setText("a lighthouse at night")
    assert dialog.explore_button.isEnabled()
    prompt = dialog.prompt()
    with qtbot.waitSignal(ctx.generation.job_finished, timeout=60_000) as finished:
        click(qtbot, dialog.explore_button)
    drafts = finished.args[1]
    assert len(drafts) == 3 and {d.stage for d in drafts} == {"draft"}
    assert tab.form.prompt_edit.toPlainText() == prompt and "lighthouse at night" in prompt
    assert all(d.prompt == prompt for d in drafts)
    assert tab.lower_stack.currentWidget() is tab.funnel
