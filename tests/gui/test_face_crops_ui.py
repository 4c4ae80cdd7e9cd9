"""Drive the Dataset tab's face crops in the real app (issue 15 item 3): "Propose face
crops" (faces injected through the crop service's face source, as the face analysis will
connect it), the skipped list, the overlay on the tiles, and the editor: a drag moves the
frame, a corner drag resizes it with the bucket's aspect kept, Save stores it, Reset removes
it; the photo's file never changes."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtTest import QTest

from isengard_desktop.core.dataset.crops import CropRect, FaceBox
from isengard_desktop.core.db.crops import CropsRepository
from isengard_desktop.ui.dataset.crop_editor import bucket_label
from isengard_desktop.ui.widgets.image_grid import CropRole, paint_crop_overlay
from tests.helpers.characters import add_character

WAIT = 20_000


def stored(qtbot, ctx) -> dict:
    out: list = []
    ctx.library.database.read(lambda conn: CropsRepository(conn).list_crops(), out.append)
    qtbot.waitUntil(lambda: bool(out), timeout=WAIT)
    return out[0]


def drag(canvas, start: QPoint, end: QPoint) -> None:
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    middle = QPoint((start.x() + end.x()) // 2, (start.y() + end.y()) // 2)
    QTest.mouseMove(canvas, middle)
    QTest.mouseMove(canvas, end)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)


def test_propose_show_adjust_and_reset_crops(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = add_character(qtbot, ctx.library, "Anna", photos=3, photo_root=tmp_path,
                       size=(640, 800))
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 3, timeout=WAIT)
    records = sorted(ctx.library.images(ch.id), key=lambda r: r.id)
    files = {r.id: r.path.read_bytes() for r in records}
    panel = tab.crop_panel
    assert panel.isVisible() and panel.family() == "sdxl"

    # the face checks have not run (the app's face source finds nothing in their cache):
    # every photo is listed as skipped, saying what to do
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.skipped_list.count() == 3, timeout=WAIT)
    assert all("not checked yet: run the checks with “Check faces”"
               in panel.skipped_list.item(i).text() for i in range(3))
    assert stored(qtbot, ctx) == {}

    first, second, third = records
    ctx.crops.set_face_source({first.id: FaceBox(270, 200, 100, 120),
                               second.id: FaceBox(60, 300, 110, 130)}.get)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.skipped_list.count() == 1 and panel.propose_button.isEnabled(),
                    timeout=WAIT)
    assert panel.skipped_list.item(0).text() == f"{third.filename} — no face found"
    assert panel.summary.text() == ("Crops: 2 proposed (SDXL), 2 under 1024 px on the short "
                                    "side (training upscales them), 1 skipped.")
    proposed = ctx.crops.crop(first.id)
    assert proposed is not None and proposed.bucket == (896, 1152)
    assert stored(qtbot, ctx)[first.id] == proposed
    # clicking a skipped photo selects it
    qtbot.mouseClick(panel.skipped_list.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.skipped_list.visualItemRect(panel.skipped_list.item(0)).center())
    assert tab.grid.selected_ids() == [third.id]

    # the tiles carry the crop for the overlay
    model = tab.grid.grid_model
    rows = {r.id: i for i, r in enumerate(model.records())}
    assert model.index(rows[first.id]).data(CropRole) == proposed.rect
    assert model.index(rows[third.id]).data(CropRole) is None
    assert "Cropped to" in model.index(rows[first.id]).data(Qt.ItemDataRole.ToolTipRole)

    # double-click the first photo: the editor opens on its crop
    index = model.index(rows[first.id])
    tab.grid.scrollTo(index)
    tile = tab.grid.visualRect(index).center()
    # a real double-click: press and release, then the double-click (Qt 6's mouseDClick
    # sends only the last)
    QTest.mouseClick(tab.grid.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, tile)
    QTest.mouseDClick(tab.grid.viewport(), Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier, tile)
    qtbot.waitUntil(lambda: tab.crop_dialog is not None and tab.crop_dialog.isVisible(),
                    timeout=WAIT)
    dialog = tab.crop_dialog
    qtbot.waitExposed(dialog)
    canvas = dialog.canvas
    before = canvas.crop()
    assert before == proposed.rect

    # drag inside the frame: it moves by the pointer's travel in photo pixels
    centre = canvas.widget_point(before.x + before.width / 2, before.y + before.height / 2)
    # (the proposal (30, 0, 579, 744) can move 30 px left and 56 px down in the photo)
    scale = canvas.picture_rect().width() / 640
    dx, dy = round(-12 * scale), round(30 * scale)
    drag(canvas, centre, centre + QPoint(dx, dy))
    moved = canvas.crop()
    assert (moved.width, moved.height) == (before.width, before.height)
    assert abs((moved.x - before.x) - dx / scale) <= 2
    assert abs((moved.y - before.y) - dy / scale) <= 2
    assert moved != before

    # drag the top-left corner inwards: smaller, bottom-right kept, aspect kept
    drag(canvas, canvas.corner_point("tl"), canvas.corner_point("tl") + QPoint(40, 40))
    resized = canvas.crop()
    assert resized.height < moved.height
    assert (resized.right, resized.bottom) == (moved.right, moved.bottom)
    assert abs(resized.width - resized.height * 896 / 1152) <= 0.5
    assert dialog.size_label.text().startswith(f"{resized.width} × {resized.height} px")

    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: (c := ctx.crops.crop(first.id)) is not None
                    and c.rect == resized, timeout=WAIT)
    saved = stored(qtbot, ctx)[first.id]
    assert saved.rect == resized and saved.source == "manual" and saved.bucket == (896, 1152)
    qtbot.waitUntil(lambda: model.index(rows[first.id]).data(CropRole) == resized,
                    timeout=WAIT)

    # a crop adjusted by hand survives another proposal
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "1 adjusted by hand kept" in panel.summary.text(), timeout=WAIT)
    assert ctx.crops.rect(first.id) == resized

    # "Adjust crop…" on the selected photo, another bucket, then Reset: no crop
    tab.grid.select_ids([second.id])
    assert panel.adjust_button.isEnabled()
    qtbot.mouseClick(panel.adjust_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.crop_dialog is not None and tab.crop_dialog is not dialog
                    and tab.crop_dialog.isVisible(), timeout=WAIT)
    dialog = tab.crop_dialog
    square = dialog.bucket_combo.findText(bucket_label((1024, 1024)))
    assert square >= 0
    dialog.bucket_combo.setCurrentIndex(square)
    assert dialog.canvas.crop().width == dialog.canvas.crop().height
    qtbot.mouseClick(dialog.reset_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.crops.crop(second.id) is None, timeout=WAIT)
    assert second.id not in stored(qtbot, ctx)

    # "Reset crop" for a selection
    tab.grid.select_ids([first.id])
    qtbot.mouseClick(panel.reset_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.crops.crop(first.id) is None, timeout=WAIT)
    assert stored(qtbot, ctx) == {}
    assert {r.id: r.path.read_bytes() for r in records} == files   # photos never touched


def test_the_overlay_dims_outside_the_crop_only():
    image = QImage(200, 100, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    # a 400x200 photo drawn at 200x100: the crop (100, 50, 200, 100) is (50, 25, 100, 50)
    inner = paint_crop_overlay(painter, QRect(0, 0, 200, 100), (400, 200),
                               CropRect(100, 50, 200, 100))
    painter.end()
    assert inner == QRect(50, 25, 100, 50)
    for x, y in ((10, 10), (190, 90), (20, 50), (180, 50), (100, 10), (100, 90)):
        assert QColor(image.pixel(x, y)).lightness() < 150, (x, y)     # dimmed
    for x, y in ((60, 35), (100, 50), (140, 65)):
        assert QColor(image.pixel(x, y)).lightness() == 255, (x, y)    # untouched
