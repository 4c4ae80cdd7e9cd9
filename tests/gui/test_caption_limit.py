"""Issue 11 item 7: a caption over the limit is refused where it is typed, naming the photo."""

from __future__ import annotations

from pathlib import Path

from isengard_desktop.core.dataset.captions import MAX_CAPTION_CHARS
from isengard_desktop.core.db.records import ImageRecord
from isengard_desktop.ui.widgets.caption_editor import CaptionEditorWidget


def _record() -> ImageRecord:
    return ImageRecord(id=7, character_id=1, path=Path("/data/photo-1a2b3c4d.jpg"),
                       sha256="0" * 64, width=512, height=512, caption="", source="x",
                       created="2026-01-01")


def test_over_long_caption_cannot_be_saved(qtbot) -> None:  # type: ignore[no-untyped-def]
    editor = CaptionEditorWidget()
    qtbot.addWidget(editor)
    editor.set_image(_record())
    saved: list[tuple[int, str]] = []
    editor.caption_saved.connect(lambda i, t: saved.append((i, t)))
    editor.edit.setPlainText("x" * (MAX_CAPTION_CHARS + 1))
    assert not editor.save_button.isEnabled()
    assert "photo-1a2b3c4d.jpg" in editor.state.text() and "too long" in editor.state.text()
    editor.save()
    assert saved == []
    editor.edit.setPlainText("x" * MAX_CAPTION_CHARS)
    assert editor.save_button.isEnabled()
    editor.save()
    assert saved == [(7, "x" * MAX_CAPTION_CHARS)]
