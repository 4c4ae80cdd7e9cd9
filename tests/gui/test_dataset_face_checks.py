"""The Dataset tab's face checks, end to end in the real app: photos imported into a
character, "Run checks" with "Check faces" on, the real analysis child with dlib's models;
the panel lists the face findings by file name and the Dataset score card sums them up (on
the tab and on the character's page)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.helpers import face_photos as fp


def test_checks_panel_names_face_problems_and_scores_the_dataset(qtbot, make_app, tmp_path):
    ctx = make_app()
    src = tmp_path / "faces"
    fp.save(src, fp.same_person_variants()[:5])
    fp.save(src, [("stranger.png", fp.stranger()), ("tiny_0.png", fp.tiny_face(0)),
                  ("group.png", fp.group_photo()), ("shapes.png", fp.no_face(4))])
    ctx.library.create_character("Eileen", "eileenc")
    qtbot.waitUntil(lambda: bool(ctx.library.characters()), timeout=10_000)
    ch = ctx.library.characters()[0]
    ctx.library.import_photos(ch.id, [src])
    qtbot.waitUntil(lambda: len(ctx.library.images(ch.id)) == 9, timeout=30_000)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 9)
    assert tab.faces_box.isChecked() and tab.faces_box.isEnabled()
    assert tab.face_family.toolTip() and tab.faces_box.toolTip()
    with qtbot.waitSignal(ctx.faces.finished, timeout=120_000):
        qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.checks_button.isEnabled(), timeout=30_000)

    tree = tab.checks_tree
    groups = {tree.topLevelItem(i).text(0): [tree.topLevelItem(i).child(j).text(0)
                                             for j in range(tree.topLevelItem(i).childCount())]
              for i in range(tree.topLevelItemCount())}

    def lines(title: str) -> list[tuple[str, str]]:
        """(stem as imported, message) of each line under the group titled ``title``; the
        library stores a photo as <stem>-<hash><ext>."""
        items = next(v for k, v in groups.items() if k.startswith(title))
        return [(t.split(" — ")[0].rsplit("-", 1)[0], t.split(" — ", 1)[1]) for t in items]

    outliers = lines("May be a different person")
    assert [n for n, _ in outliers] == ["stranger"]
    assert outliers[0][1].startswith("may be a different person (similarity 0.")
    assert [n for n, m in lines("Face too small") if m.startswith("face is")] == ["tiny_0"]
    assert [n for n, m in lines("Several faces") if m.startswith("2 faces")] == ["group"]
    assert [n for n, _ in lines("No face found")] == ["shapes"]
    assert "Faces: 9 analysed" in tab.checks_summary.text()
    card = tab.score_box.text()
    assert "Eileen" in card and "of 9 photos usable" in card and "faces found in 8" in card
    # the same card on the character's page
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Characters"])
    ctx.tabs["Characters"].open_character(ch.id)
    assert ctx.tabs["Characters"].detail.score_card.text() == \
        tab.score_box.text().split("<br><br>")[0]
    # clicking a face finding selects that photo
    group = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                 if tree.topLevelItem(i).text(0).startswith("May be a different person"))
    child = group.child(0)
    tree.scrollToItem(child)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton,
                     pos=tree.visualItemRect(child).center())
    assert ctx.library.image(tab.grid.selected_ids()[0]).filename.startswith("stranger")


def test_without_the_trainer_runtime_the_panel_says_what_to_install(qtbot, make_app, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("ISENGARD_USE_RUNTIME", "1")    # as the frozen app: no checkout torch
    ctx = make_app()
    fp.save(tmp_path / "p", [("astro.png", fp.astronaut())])
    ctx.library.create_character("Solo", "soloc")
    qtbot.waitUntil(lambda: bool(ctx.library.characters()), timeout=10_000)
    ch = ctx.library.characters()[0]
    ctx.library.import_photos(ch.id, [tmp_path / "p"])
    qtbot.waitUntil(lambda: len(ctx.library.images(ch.id)) == 1, timeout=30_000)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 1)
    with qtbot.waitSignal(ctx.faces.finished, timeout=30_000):
        qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.checks_button.isEnabled(), timeout=30_000)
    summary = tab.checks_summary.text()
    assert "Face analysis runs in the trainer runtime" in summary
    assert "Set-up assistant" in summary
    assert not [f for f in tab.findings() if f.kind in ("no_face", "several_faces")]


def test_a_photo_damaged_after_import_is_listed_once(qtbot, make_app, tmp_path):
    ctx = make_app()
    fp.save(tmp_path / "p", [("astro.png", fp.astronaut()), ("other.png", fp.stranger())])
    ctx.library.create_character("Dana", "danac")
    qtbot.waitUntil(lambda: bool(ctx.library.characters()), timeout=10_000)
    ch = ctx.library.characters()[0]
    ctx.library.import_photos(ch.id, [tmp_path / "p"])
    qtbot.waitUntil(lambda: len(ctx.library.images(ch.id)) == 2, timeout=30_000)
    broken = next(r for r in ctx.library.images(ch.id) if r.filename.startswith("astro"))
    broken.path.write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 2)
    with qtbot.waitSignal(ctx.faces.finished, timeout=60_000):
        qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.checks_button.isEnabled(), timeout=30_000)
    about_broken = [f.kind for f in tab.findings() if f.image_id == broken.id]
    assert about_broken == ["unreadable"]
    assert "1 analysed" in tab.checks_summary.text()
