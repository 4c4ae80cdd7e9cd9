"""Drive the real Characters and Dataset tabs: create by drop, captions, search, filter,
multi-select, bulk operations, checks, and a restart on the same ISENGARD_HOME."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from isengard_desktop.core.dataset.captions import sidecar_path
from tests.helpers.photos import make_photo, make_photos
from tests.helpers.qt import close_app, drop_files
from tests.helpers.trash import trashed_names


def _yes(monkeypatch):
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))


def _create_character(qtbot, ctx, name, photos, trigger=None):
    tab = ctx.tabs["Characters"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.mouseClick(tab.new_button, Qt.MouseButton.LeftButton)
    dialog = tab.create_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClicks(dialog.name_edit, name)
    if trigger:
        dialog.trigger_edit.clear()
        qtbot.keyClicks(dialog.trigger_edit, trigger)
    if photos:
        assert drop_files(dialog.drop_zone, photos)
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(c.name == name for c in ctx.library.characters()),
                    timeout=10_000)
    ch = next(c for c in ctx.library.characters() if c.name == name)
    return ch


def _wait_images(qtbot, ctx, character_id, count):
    qtbot.waitUntil(lambda: len(ctx.library.images(character_id)) == count, timeout=20_000)


def test_create_character_by_dropping_files_into_dialog(qtbot, make_app, tmp_path):
    ctx = make_app()
    src = tmp_path / "phone"
    photos = make_photos(src, 3)
    nested = make_photos(src / "holiday" / "day1", 2, prefix="beach", start_seed=50)
    # a folder and a single file dropped together; the folder is walked recursively
    ch = _create_character(qtbot, ctx, "Anna", [src / "holiday", photos[0], photos[1]])
    assert not ctx.tabs["Characters"].create_dialog.isVisible()
    _wait_images(qtbot, ctx, ch.id, 4)
    images = ctx.library.images(ch.id)
    folder = ctx.paths.characters / ch.folder
    for img in images:
        assert img.path.parent == folder and img.path.exists()
        assert sidecar_path(img.path).read_text(encoding="utf-8") == ""
    names = sorted(i.source for i in images)
    assert names == sorted(str(p) for p in [photos[0], photos[1], *nested])
    # the trigger word was suggested and kept, the card shows the count
    assert ch.trigger_word and " " not in ch.trigger_word
    model = ctx.tabs["Characters"].cards_model
    assert model.rowCount() == 1 and model.index(0).data() == "Anna"
    assert ctx.library.image_count(ch.id) == 4
    assert not ctx.library.is_trained(ch.id)


def test_duplicate_name_is_refused_in_dialog(qtbot, make_app):
    ctx = make_app()
    _create_character(qtbot, ctx, "Bob", [])
    tab = ctx.tabs["Characters"]
    qtbot.mouseClick(tab.new_button, Qt.MouseButton.LeftButton)
    dialog = tab.create_dialog
    qtbot.keyClicks(dialog.name_edit, "bob")
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert "already exists" in dialog.error_label.text()
    assert len(ctx.library.characters()) == 1


def test_detail_view_caption_edit_drop_and_delete(qtbot, make_app, tmp_path, monkeypatch):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Cleo", make_photos(tmp_path / "a", 2))
    _wait_images(qtbot, ctx, ch.id, 2)
    tab = ctx.tabs["Characters"]
    tab.open_character(ch.id)
    detail = tab.detail
    assert detail.title.text() == "Cleo" and detail.trigger_chip.text() == ch.trigger_word

    # drop more photos on the grid of the detail view
    more = make_photos(tmp_path / "b", 2, start_seed=10)
    assert drop_files(detail.grid.viewport(), more)
    _wait_images(qtbot, ctx, ch.id, 4)
    qtbot.waitUntil(lambda: detail.grid.grid_model.rowCount() == 4)

    # select one image by clicking its checkbox, edit and save the caption
    grid = detail.grid
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.checkbox_point(0))
    assert len(grid.selected_ids()) == 1
    image_id = grid.selected_ids()[0]
    detail.caption_editor.edit.setPlainText("red scarf, park, smiling")
    qtbot.mouseClick(detail.caption_editor.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.library.image(image_id).caption == "red scarf, park, smiling")
    record = ctx.library.image(image_id)
    assert sidecar_path(record.path).read_text(encoding="utf-8") == "red scarf, park, smiling"

    # tick a second checkbox: both stay selected; delete them with confirmation
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.checkbox_point(1))
    ids = grid.selected_ids()
    assert len(ids) == 2
    paths = [ctx.library.image(i).path for i in ids]
    _yes(monkeypatch)
    qtbot.mouseClick(detail.delete_images_button, Qt.MouseButton.LeftButton)
    _wait_images(qtbot, ctx, ch.id, 2)
    for p in paths:
        assert not p.exists() and not sidecar_path(p).exists()
    assert {p.name for p in paths} <= trashed_names()


def test_rename_and_delete_character(qtbot, make_app, tmp_path, monkeypatch):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Dora", make_photos(tmp_path / "a", 1))
    _wait_images(qtbot, ctx, ch.id, 1)
    tab = ctx.tabs["Characters"]
    tab.open_character(ch.id)
    from PySide6.QtWidgets import QInputDialog

    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *a, **k: ("Dora Explorer", True)))
    qtbot.mouseClick(tab.detail.rename_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.library.character(ch.id).name == "Dora Explorer")
    assert tab.detail.title.text() == "Dora Explorer"
    folder = ctx.paths.characters / ch.folder
    assert folder.exists()
    _yes(monkeypatch)
    qtbot.mouseClick(tab.detail.delete_character_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.library.character(ch.id) is None)
    assert not folder.exists()
    assert ctx.library.images() == []
    assert tab.stack.currentIndex() == 0


def test_dataset_search_filter_select_bulk_ops_and_restart(qtbot, make_app, tmp_path,
                                                           monkeypatch):
    ctx = make_app()
    a = _create_character(qtbot, ctx, "Ann", make_photos(tmp_path / "ann", 3), trigger="ann_zq")
    b = _create_character(qtbot, ctx, "Ben", make_photos(tmp_path / "ben", 3, start_seed=20),
                          trigger="ben_zq")
    _wait_images(qtbot, ctx, a.id, 3)
    _wait_images(qtbot, ctx, b.id, 3)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 6)

    # caption one of Ben's photos, then find it by caption search
    ben_img = ctx.library.images(b.id)[0]
    ctx.library.set_caption(ben_img.id, "wearing a green hat")
    qtbot.waitUntil(lambda: ctx.library.image(ben_img.id).caption == "wearing a green hat")
    qtbot.keyClicks(tab.search_edit, "GREEN hat")
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 1)
    assert tab.grid.grid_model.record(0).id == ben_img.id
    # search by character name
    tab.search_edit.clear()
    qtbot.keyClicks(tab.search_edit, "ann")
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 3)
    assert {r.character_id for r in tab.grid.grid_model.records()} == {a.id}
    tab.search_edit.clear()
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 6)

    # filter by character
    tab.character_filter.setCurrentIndex(tab.character_filter.findText("Ben"))
    assert tab.grid.grid_model.rowCount() == 3
    tab.character_filter.setCurrentIndex(0)
    assert tab.grid.grid_model.rowCount() == 6

    # multi-select with checkboxes across characters, prepend trigger word
    grid = tab.grid
    for row in (0, 3, 4):
        qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.checkbox_point(row))
    chosen = grid.selected_ids()
    assert len(chosen) == 3
    assert "3 selected" in tab.count_label.text()
    qtbot.mouseClick(tab.prepend_button, Qt.MouseButton.LeftButton)

    def all_prefixed():
        for i in chosen:
            img = ctx.library.image(i)
            trig = ctx.library.character(img.character_id).trigger_word
            if not img.caption.startswith(trig):
                return False
        return True

    qtbot.waitUntil(all_prefixed)
    assert ctx.library.image(ben_img.id).caption in ("wearing a green hat",
                                                     "ben_zq, wearing a green hat")
    # find/replace on the selection
    qtbot.keyClicks(tab.find_edit, "_zq")
    qtbot.keyClicks(tab.replace_edit, "_zz")
    qtbot.mouseClick(tab.replace_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: all("_zz" in ctx.library.image(i).caption for i in chosen))
    for i in chosen:
        img = ctx.library.image(i)
        assert sidecar_path(img.path).read_text(encoding="utf-8") == img.caption

    # bulk delete two of them with confirmation
    grid.clearSelection()
    for row in (1, 5):
        qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.checkbox_point(row))
    doomed = grid.selected_ids()
    assert len(doomed) == 2
    _yes(monkeypatch)
    qtbot.mouseClick(tab.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(ctx.library.images()) == 4)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 4)
    remaining = {i.id: (i.caption, str(i.path)) for i in ctx.library.images()}

    # restart on the same ISENGARD_HOME: everything is still there
    close_app(qtbot, ctx)
    ctx2 = make_app()
    assert sorted(c.name for c in ctx2.library.characters()) == ["Ann", "Ben"]
    assert {i.id: (i.caption, str(i.path)) for i in ctx2.library.images()} == remaining
    tab2 = ctx2.tabs["Dataset"]
    qtbot.waitUntil(lambda: tab2.grid.grid_model.rowCount() == 4)
    for i in doomed:
        assert ctx2.library.image(i) is None


def test_import_summary_names_rejected_and_duplicate_files(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Eve", make_photos(tmp_path / "ok", 2))
    _wait_images(qtbot, ctx, ch.id, 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("not an image")
    good = make_photos(bad, 1, prefix="new", start_seed=99)
    dup = make_photos(tmp_path / "ok", 1)  # same bytes as an existing photo
    tab = ctx.tabs["Characters"]
    tab.open_character(ch.id)
    with qtbot.waitSignal(ctx.library.import_started, timeout=5000) as started:
        assert drop_files(tab.detail.drop_zone, [bad, dup[0]])
    task = started.args[0]
    qtbot.waitUntil(lambda: task.outcome is not None, timeout=20_000)
    _wait_images(qtbot, ctx, ch.id, 3)
    summary = ctx.window.progress.last_summary
    assert "empty.jpg" in summary and "notes.jpg" in summary
    assert "1 imported" in summary.lower() or "1 photo" in summary.lower()
    assert any(s.source.endswith(dup[0].name) for s in task.outcome.report.skipped)
    assert good[0].name in {Path(i.source).name for i in ctx.library.images(ch.id)}


def test_checks_panel_names_problem_images(qtbot, make_app, tmp_path):
    ctx = make_app()
    src = tmp_path / "mix"
    make_photo(src / "sharp.jpg", (640, 800), seed=1)
    make_photo(src / "small.jpg", (300, 400), seed=2)
    make_photo(src / "blurry.jpg", (640, 800), seed=3, blur=12)
    make_photo(src / "banner.jpg", (2000, 520), seed=4)
    make_photo(src / "twin.png", (640, 800), seed=1, fmt="PNG")  # near duplicate of sharp.jpg
    ch = _create_character(qtbot, ctx, "Finn", [src])
    _wait_images(qtbot, ctx, ch.id, 5)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 5)
    with qtbot.waitSignal(ctx.checks.finished, timeout=30_000):
        qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
    # the run ends when the face analysis has too (it redraws the findings list then)
    qtbot.waitUntil(tab.checks_button.isEnabled, timeout=30_000)
    by_kind = {}
    for f in tab.findings():
        by_kind.setdefault(f.kind, set()).add(Path(ctx.library.image(f.image_id).source).name)
    assert "small.jpg" in by_kind["low_resolution"]
    assert "blurry.jpg" in by_kind["blurry"]
    assert "banner.jpg" in by_kind["extreme_aspect"]
    assert {"sharp.jpg", "twin.png"} & by_kind["near_duplicate"]
    assert "sharp.jpg" not in by_kind.get("blurry", set())
    # the panel lists them by file name; clicking one selects that photo in the grid
    tree = tab.checks_tree
    texts = [tree.topLevelItem(i).child(j).text(0) for i in range(tree.topLevelItemCount())
             for j in range(tree.topLevelItem(i).childCount())]
    assert any("small" in t for t in texts)
    child = tree.topLevelItem(0).child(0)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton,
                     pos=tree.visualItemRect(child).center())
    assert tab.grid.selected_ids() == [child.data(0, Qt.ItemDataRole.UserRole)]


def test_main_window_tabs_and_the_video_tab_loads(qtbot, make_app):
    from isengard_desktop.ui.video import VideoTab

    ctx = make_app()
    assert ctx.window.tab_names() == ["Characters", "Dataset", "Training", "Generate", "Video"]
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Video"])
    qtbot.waitUntil(lambda: ctx.tabs["Video"].findChildren(VideoTab) != [], timeout=10_000)


def test_cancel_import_from_status_bar_keeps_finished_files(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Hana", [])
    photos = make_photos(tmp_path / "many", 80, size=(900, 1200))
    tab = ctx.tabs["Characters"]
    tab.open_character(ch.id)
    panel = ctx.window.progress
    with qtbot.waitSignal(ctx.library.import_started, timeout=5000) as started:
        assert drop_files(tab.detail.grid.viewport(), [tmp_path / "many"])
    task = started.args[0]
    qtbot.waitUntil(lambda: panel.cancel_button.isVisible(), timeout=5000)
    with qtbot.waitSignal(task.progressed, timeout=10_000):
        pass
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: task.outcome is not None, timeout=30_000)
    report = task.outcome.report
    assert report.cancelled
    assert 0 < len(report.imported) < len(photos)
    qtbot.waitUntil(lambda: len(ctx.library.images(ch.id)) == len(report.imported))
    folder = ctx.paths.characters / ch.folder
    images = {p.name for p in folder.iterdir() if p.suffix != ".txt"}
    assert images == {i.path.name for i in ctx.library.images(ch.id)}
    assert not [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part"]
    assert not panel.cancel_button.isVisible()
    assert "cancel" in panel.last_summary.lower()


def test_training_tab_is_built_when_first_opened_and_gets_notifications(make_app):
    from isengard_desktop.ui.training.training_tab import TrainingTab

    ctx = make_app()
    lazy = ctx.tabs["Training"]
    assert not lazy.is_built                      # not paid for at start-up
    ctx.window.tabs.setCurrentWidget(lazy)
    assert lazy.is_built and isinstance(ctx.training_tab, TrainingTab)
    ctx.training_tab.notify_requested.emit("LoRA ready", "Anna finished")
    assert "LoRA ready: Anna finished" in ctx.window.status_message.text()


def test_a_caption_set_before_the_import_ends_is_kept(qtbot, make_app, tmp_path, monkeypatch):
    """Photos reach the library twice — from their batch's own callback and from the import's
    end. A caption typed (or a photo deleted) in between must survive the second one (a CI run
    lost the caption this way: the import's end put the old record back)."""
    import threading

    from isengard_desktop.core.dataset import importer

    release = threading.Event()
    real = importer.import_files

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        report = real(*args, **kwargs)     # every batch is recorded (on_stored) by now
        release.wait(20)                   # …and the import's end waits for the test
        return report

    monkeypatch.setattr(importer, "import_files", held)
    made = []
    assert ctx_create(ctx := make_app(), "Cleo", made) is None
    qtbot.waitUntil(lambda: bool(made))
    ended = []
    ctx.library.import_photos(made[0].id, make_photos(tmp_path / "cleo", 3),
                              on_done=ended.append)
    qtbot.waitUntil(lambda: len(ctx.library.images(made[0].id)) == 3, timeout=20_000)
    first, second = ctx.library.images(made[0].id)[:2]
    ctx.library.set_caption(first.id, "a red scarf")
    qtbot.waitUntil(lambda: ctx.library.image(first.id).caption == "a red scarf")
    _yes(monkeypatch)
    ctx.library.delete_images([second.id])
    qtbot.waitUntil(lambda: ctx.library.image(second.id) is None)
    release.set()
    qtbot.waitUntil(lambda: bool(ended), timeout=20_000)
    qtbot.wait(50)
    assert ctx.library.image(first.id).caption == "a red scarf"
    assert ctx.library.image(second.id) is None
    assert len(ctx.library.images(made[0].id)) == 2


def ctx_create(ctx, name, made):
    return ctx.library.create_character(name, name.lower() + "_zq", on_created=made.append)
