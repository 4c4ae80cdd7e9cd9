"""Issue 15's loose ends in the real app with the real analysis child: the face checks run
shows in the status-bar progress panel and its Cancel ends it; a photo's stored crop is what
the face-size rule judges; the face cache loses the records of deleted photos at the next
start (and keeps the library's)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from isengard_desktop.core.dataset.crops import CropRect
from isengard_desktop.core.db.crops import ImageCrop
from isengard_desktop.core.faces.cache import FaceCache
from isengard_desktop.core.faces.records import PhotoFaces
from tests.helpers import face_photos as fp
from tests.helpers.qt import close_app

WAIT = 30_000


def _character_with(qtbot, ctx, tmp_path, photos, name="Eileen"):
    src = tmp_path / name
    fp.save(src, photos)
    ctx.library.create_character(name, name.lower() + "x")
    qtbot.waitUntil(lambda: any(c.name == name for c in ctx.library.characters()),
                    timeout=10_000)
    ch = next(c for c in ctx.library.characters() if c.name == name)
    ctx.library.import_photos(ch.id, [src])
    qtbot.waitUntil(lambda: len(ctx.library.images(ch.id)) == len(photos), timeout=WAIT)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == len(photos), timeout=WAIT)
    # the import's own progress has ended before the face checks start
    qtbot.waitUntil(lambda: not ctx.window.progress.cancel_button.isVisible(), timeout=WAIT)
    return ch, tab


def test_face_checks_show_in_the_status_bar_and_cancel_there(qtbot, make_app, tmp_path):
    ctx = make_app()
    photos = []
    for i in range(10):                   # ten distinct files (one pixel each differs)
        im = fp.astronaut()
        im.putpixel((i, 0), (i, 0, 0))
        photos.append((f"a{i}.png", im))
    _ch, tab = _character_with(qtbot, ctx, tmp_path, photos)
    panel = ctx.window.progress
    qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.cancel_button.isVisible()
                    and panel.label.text().startswith("Analysing faces"), timeout=WAIT)
    qtbot.waitUntil(lambda: panel.bar.maximum() == 10, timeout=120_000)   # its progress
    outcomes: list = []
    summaries: list[str] = []
    ctx.faces.finished.connect(outcomes.append)
    panel.summary_ready.connect(summaries.append)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(outcomes) and bool(summaries), timeout=WAIT)
    outcome = outcomes[0]
    assert outcome.analysis.cancelled and outcome.analysis.problem == ""
    assert 1 <= outcome.analysis.analysed < 10
    assert summaries[0].startswith("Face checks cancelled: ") and "analysed" in summaries[0]
    qtbot.waitUntil(lambda: not panel.cancel_button.isVisible(), timeout=WAIT)
    qtbot.waitUntil(lambda: tab.checks_button.isEnabled(), timeout=WAIT)
    assert "Checks cancelled." in tab.checks_summary.text()


def test_a_cropped_photo_is_judged_in_its_crop(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch, tab = _character_with(qtbot, ctx, tmp_path, [("wide_0.png", fp.tiny_face(0)),
                                                     ("wide_1.png", fp.tiny_face(1))])
    records = sorted(ctx.library.images(ch.id), key=lambda r: r.filename)

    def too_small() -> set[int]:
        with qtbot.waitSignal(ctx.faces.finished, timeout=120_000):
            qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: tab.checks_button.isEnabled(), timeout=WAIT)
        return {f.image_id for f in tab.findings() if f.kind == "face_too_small"}

    assert too_small() == {r.id for r in records}        # a ~50 px face in 1024 px
    face = ctx.faces.face_box_source(ctx.library.image)(records[0].id)
    assert face is not None
    side = round(3 * max(face.width, face.height))       # a close crop around the face
    rect = CropRect(round(face.x + face.width / 2 - side / 2),
                    round(face.y + face.height / 2 - side / 2), side, side)
    ctx.crops.set_crop(records[0].id, ImageCrop(rect, (1024, 1024), "manual"))
    qtbot.waitUntil(lambda: ctx.crops.rect(records[0].id) == rect, timeout=WAIT)
    assert too_small() == {records[1].id}                # the trainer sees a close-up
    assert not [f for f in tab.findings() if f.kind == "face_cut"]
    # a crop that cuts the face through is named as such
    cut = CropRect(rect.x, rect.y, round(face.x + face.width / 2) - rect.x, side)
    ctx.crops.set_crop(records[0].id, ImageCrop(cut, (1024, 1024), "manual"))
    qtbot.waitUntil(lambda: ctx.crops.rect(records[0].id) == cut, timeout=WAIT)
    too_small()
    cuts = [f.message for f in tab.findings()
            if f.kind == "face_cut" and f.image_id == records[0].id]
    assert len(cuts) == 1 and cuts[0].startswith("face cut by the crop (right edge)")


def test_the_next_start_prunes_the_face_records_of_deleted_photos(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch, _tab = _character_with(qtbot, ctx, tmp_path, [("a.png", fp.astronaut()),
                                                      ("b.png", fp.stranger())])
    kept, deleted = sorted(ctx.library.images(ch.id), key=lambda r: r.filename)
    cache = FaceCache(ctx.paths.cache)
    cnn = FaceCache(ctx.paths.cache, "cnn")
    for record in (kept, deleted):        # as a face check leaves them
        cache.put(PhotoFaces(record.sha256, 512, 512))
    cnn.put(PhotoFaces(deleted.sha256, 512, 512))
    ctx.library.delete_images([deleted.id])
    qtbot.waitUntil(lambda: ctx.library.image(deleted.id) is None, timeout=WAIT)
    assert cache.get(deleted.sha256) is not None           # nothing is pruned meanwhile
    close_app(qtbot, ctx)

    again = make_app()

    def log() -> str:
        return "".join(p.read_text(errors="replace") for p in again.paths.app_logs.glob("*"))

    # one line from each start: the first found nothing to prune
    qtbot.waitUntil(lambda: log().count("face cache pruned") == 2, timeout=WAIT)
    assert cache.get(deleted.sha256) is None and cnn.get(deleted.sha256) is None
    assert cache.get(kept.sha256) is not None
    line = [x for x in log().splitlines() if "face cache pruned" in x][-1]
    assert "2 record(s) of photos no longer in the library removed" in line
    assert "1 kept" in line and "bytes freed" in line and " 0 bytes" not in line
