"""Auto-captioning from the Dataset tab, on the real app with the real captioning child and a
tiny random Florence-2: suggestions appear for review; Edit + Accept writes the edited text to
the caption and its sidecar; Accept all never replaces a caption the user wrote unless asked;
suggestions survive a restart."""

from __future__ import annotations

from PySide6.QtCore import Qt

from isengard_desktop.core.dataset.captions import read_sidecar
from tests.helpers.captioning import tiny_florence
from tests.helpers.characters import add_character
from tests.helpers.qt import close_app

__all__ = ["tiny_florence"]   # the session fixture, used by name

RUN_TIMEOUT_MS = 180_000


def _open_dialog(qtbot, ctx, character_id, model):
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    tab.character_filter.setCurrentIndex(tab.character_filter.findData(character_id))
    qtbot.mouseClick(tab.caption_button, Qt.MouseButton.LeftButton)
    dialog = tab.caption_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.add_model_folder(model)
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    dialog.tokens_spin.setValue(24)   # random weights always write the longest text
    return dialog


def _row_of(dialog, image_id):
    keys = [s.key for s in dialog.shown_suggestions()]
    wanted = next(s.key for s in dialog.shown_suggestions() if s.image_id == image_id)
    return keys.index(wanted)


def test_review_flow_keeps_the_users_own_caption(qtbot, make_app, tmp_path, tiny_florence):
    ctx = make_app()
    ch = add_character(qtbot, ctx.library, "Anna", trigger="ohwx", photos=3,
                       photo_root=tmp_path, size=(120, 90))
    own, to_edit, plain = (i.id for i in ctx.library.images(ch.id))
    ctx.library.set_caption(own, "my own words")
    qtbot.waitUntil(lambda: ctx.library.image(own).caption == "my own words")

    dialog = _open_dialog(qtbot, ctx, ch.id, tiny_florence)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert ctx.captioning.is_running
    qtbot.waitUntil(lambda: not ctx.captioning.is_running, timeout=RUN_TIMEOUT_MS)
    assert "3 photos captioned" in dialog.status.text(), dialog.status.text()

    # suggestions appear, one per photo, nothing written yet
    qtbot.waitUntil(lambda: dialog.list.count() == 3)
    assert ctx.library.image(own).caption == "my own words"
    assert ctx.library.image(plain).caption == ""
    suggested = {s.image_id: s for s in dialog.shown_suggestions()}
    assert all(s.text.startswith("ohwx") for s in suggested.values())   # trigger at the start
    dialog.list.setCurrentRow(_row_of(dialog, own))
    assert dialog.current_view.toPlainText() == "my own words"
    assert dialog.suggestion_edit.toPlainText() == suggested[own].text
    assert "(1 photo with a caption you wrote)" in dialog.summary.text()

    # Edit + Accept: the edited text is the caption, in the sidecar too
    dialog.list.setCurrentRow(_row_of(dialog, to_edit))
    qtbot.mouseClick(dialog.edit_button, Qt.MouseButton.LeftButton)
    assert not dialog.suggestion_edit.isReadOnly()
    dialog.suggestion_edit.setPlainText("ohwx, a woman in a green coat, edited")
    qtbot.mouseClick(dialog.accept_button, Qt.MouseButton.LeftButton)
    edited = "ohwx, a woman in a green coat, edited"
    qtbot.waitUntil(lambda: ctx.library.image(to_edit).caption == edited)
    assert read_sidecar(ctx.library.image(to_edit).path) == edited
    qtbot.waitUntil(lambda: dialog.list.count() == 2)

    # Accept all: the photo with the user's caption keeps it; the other one takes its suggestion
    assert not dialog.replace_own_box.isChecked()
    qtbot.mouseClick(dialog.accept_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.library.image(plain).caption == suggested[plain].text)
    assert read_sidecar(ctx.library.image(plain).path) == suggested[plain].text
    assert ctx.library.image(own).caption == "my own words"
    assert read_sidecar(ctx.library.image(own).path) == "my own words"
    assert "1 photo kept the caption you wrote" in dialog.status.text()
    qtbot.waitUntil(lambda: [s.image_id for s in dialog.shown_suggestions()] == [own])
    dialog.close()

    # after a restart the pending suggestion is still there; ticking the box replaces it
    close_app(qtbot, ctx)
    ctx2 = make_app()
    dialog2 = _open_dialog(qtbot, ctx2, ch.id, tiny_florence)
    qtbot.waitUntil(lambda: dialog2.list.count() == 1)
    assert dialog2.shown_suggestions()[0].image_id == own
    assert ctx2.library.image(to_edit).caption == edited
    dialog2.replace_own_box.setChecked(True)
    qtbot.mouseClick(dialog2.accept_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx2.library.image(own).caption == suggested[own].text)
    assert read_sidecar(ctx2.library.image(own).path) == suggested[own].text
    qtbot.waitUntil(lambda: dialog2.list.count() == 0)

    # a new run skips every photo that already has a suggestion (resume)
    qtbot.mouseClick(dialog2.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not ctx2.captioning.is_running, timeout=RUN_TIMEOUT_MS)
    assert "0 photos captioned, 3 already had a suggestion" in dialog2.status.text()


def test_identity_mode_and_placement_change_the_shown_suggestion(qtbot, make_app, tmp_path):
    """The review re-renders unedited suggestions when the options change (store written as
    the child writes it, so no model run is needed here)."""
    from isengard_desktop.core.captioning.store import RawCaption, append_raw, suggestions_file

    ctx = make_app()
    ch = add_character(qtbot, ctx.library, "Bea", trigger="ohwx", photos=1,
                       photo_root=tmp_path, size=(120, 90))
    image = ctx.library.images(ch.id)[0]
    folder = ctx.library.character_folder(ch)
    append_raw(suggestions_file(folder), RawCaption(
        image.sha256, str(image.path),
        "The image shows a young woman with long blonde hair wearing a red dress."))
    tab = ctx.tabs["Dataset"]
    tab.character_filter.setCurrentIndex(tab.character_filter.findData(ch.id))
    dialog = tab.open_captioning()
    qtbot.waitUntil(lambda: dialog.list.count() == 1)
    assert dialog.suggestion_edit.toPlainText() == "ohwx, a woman wearing a red dress."
    dialog.placement_combo.setCurrentIndex(dialog.placement_combo.findData("after_class"))
    qtbot.waitUntil(lambda: dialog.suggestion_edit.toPlainText()
                    == "a woman ohwx wearing a red dress.")
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData("general"))
    qtbot.waitUntil(lambda: dialog.suggestion_edit.toPlainText()
                    == "a young woman ohwx with long blonde hair wearing a red dress.")
    assert ctx.library.image(image.id).caption == ""   # nothing written without Accept

    # Skip puts the suggestion aside (kept in review.json), the caption stays as it was
    from isengard_desktop.core.captioning.store import DecisionStatus, read_review, review_file

    qtbot.mouseClick(dialog.skip_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.list.count() == 0)
    qtbot.waitUntil(lambda: review_file(folder).exists())
    assert read_review(review_file(folder))[image.sha256].status == DecisionStatus.SKIPPED
    assert ctx.library.image(image.id).caption == ""
    assert not dialog.accept_button.isEnabled() and not dialog.accept_all_button.isEnabled()


def test_cancel_keeps_finished_suggestions_and_a_new_run_goes_on(qtbot, make_app, tmp_path,
                                                                 tiny_florence):
    ctx = make_app()
    ch = add_character(qtbot, ctx.library, "Cleo", trigger="ohwx", photos=6,
                       photo_root=tmp_path, size=(120, 90))
    dialog = _open_dialog(qtbot, ctx, ch.id, tiny_florence)
    outcomes = []
    ctx.captioning.run_started.connect(lambda run: run.finished.connect(outcomes.append))
    # one photo a batch, each a full generation (random weights never stop early): the stop
    # reaches the child while it works on a later photo
    run = ctx.captioning.start(ch.id, tiny_florence, device="cpu", batch_size=1,
                               max_new_tokens=64, num_beams=3)
    assert run is not None and dialog.cancel_button.isEnabled()
    assert not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: run.captioned >= 1, timeout=RUN_TIMEOUT_MS)
    # shown in the status bar like an import, with its cancel button
    panel = ctx.window.progress
    assert panel.label.text().startswith("Captioning Cleo") and panel.cancel_button.isVisible()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(outcomes), timeout=RUN_TIMEOUT_MS)
    outcome = outcomes[0]
    assert outcome.cancelled and not outcome.error
    assert 1 <= outcome.captioned < 6
    assert dialog.status.text().startswith("Cancelled:")
    assert not panel.cancel_button.isVisible()
    log = ctx.library.character_folder(ch) / ".captioning" / "last_run.log"
    qtbot.waitUntil(log.exists)
    assert "[captioning] batch of 1" in log.read_text(encoding="utf-8")
    qtbot.waitUntil(lambda: dialog.list.count() == outcome.captioned)
    assert all(i.caption == "" for i in ctx.library.images(ch.id))   # nothing written

    assert dialog.start_button.isEnabled()
    ctx.captioning.start(ch.id, tiny_florence, device="cpu", batch_size=8, max_new_tokens=8,
                         num_beams=1)
    qtbot.waitUntil(lambda: len(outcomes) == 2, timeout=RUN_TIMEOUT_MS)
    assert outcomes[1].skipped == outcome.captioned
    assert outcomes[1].captioned == 6 - outcome.captioned
    qtbot.waitUntil(lambda: dialog.list.count() == 6)


def test_missing_model_is_named_with_where_to_put_it(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = add_character(qtbot, ctx.library, "Dora", photos=1, photo_root=tmp_path,
                       size=(120, 90))
    tab = ctx.tabs["Dataset"]
    tab.character_filter.setCurrentIndex(tab.character_filter.findData(ch.id))
    dialog = tab.open_captioning()
    assert "not downloaded" in dialog.model_combo.currentText()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    text = dialog.status.text()
    assert "florence-community/Florence-2-base" in text
    assert str(ctx.paths.models / "LLM" / "Florence-2-base") in text
    assert not ctx.captioning.is_running


def test_quitting_during_a_run_stops_the_child_and_keeps_its_work(qtbot, make_app, tmp_path,
                                                                 tiny_florence):
    import os

    from isengard_desktop.core.captioning.store import read_raw, suggestions_file

    ctx = make_app()
    errors: list[str] = []
    ctx.captioning.failed.connect(errors.append)
    ch = add_character(qtbot, ctx.library, "Eli", photos=6, photo_root=tmp_path,
                       size=(120, 90))
    run = ctx.captioning.start(ch.id, tiny_florence, device="cpu", batch_size=1,
                               max_new_tokens=64, num_beams=3)
    assert run is not None
    qtbot.waitUntil(lambda: run.captioned >= 1, timeout=RUN_TIMEOUT_MS)
    pid = ctx.captioning.child_pid
    assert pid is not None
    close_app(qtbot, ctx)
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
    assert errors == []           # quitting is not a failure
    folder = ctx.library.character_folder(ch)
    kept = read_raw(suggestions_file(folder))
    assert 1 <= len(kept) < 6 and (folder / ".captioning" / "last_run.log").exists()

    ctx2 = make_app()
    ctx2.captioning.load(ch.id)
    qtbot.waitUntil(lambda: ctx2.captioning.is_loaded(ch.id))
    from isengard_desktop.core.captioning.postprocess import CaptionOptions

    assert len(ctx2.captioning.suggestions(ch.id, CaptionOptions())) == len(kept)
