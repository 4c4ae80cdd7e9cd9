"""Staging flags a synthetic picture of the wrong face before it can enter the dataset
(issue 15 item 5): each staged picture's face is scored by the real face analysis against
the character's photos (scikit-image's astronaut as the character, an LFW face as the
stranger, a picture without a face)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from isengard_desktop.core.comfy.jobs import GalleryItem
from isengard_desktop.core.db.records import ImageRecord
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.face_analysis import FaceAnalysisService
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.services.thumbnails import ThumbnailService
from isengard_desktop.ui.widgets.staging import StagingStripWidget
from tests.helpers import face_photos as fp


def _item(item_id: int, path: Path) -> GalleryItem:
    return GalleryItem(id=item_id, job_id="j", path=str(path), prompt="alc, a portrait",
                       negative="", seed=item_id, width=512, height=512, workflow="sdxl-lora",
                       model="m", lora_path="", lora_strength=1.0, character_id=1,
                       status="staging")


def test_staged_pictures_show_their_likeness_and_flag_another_face(qtbot, tmp_path):
    init_main_thread_bridge()
    paths = resolve_paths().ensure()
    faces = FaceAnalysisService(paths)
    thumbs = ThumbnailService(paths.thumbnails)
    try:
        photos = fp.save(tmp_path / "ds", fp.same_person_variants()[:6])
        dataset = [ImageRecord(id=i, character_id=1, path=p,
                               sha256=hashlib.sha256(p.read_bytes()).hexdigest(), width=0,
                               height=0, caption="", source="", created="")
                   for i, p in enumerate(photos, start=1)]
        staged = fp.save(tmp_path / "staged", [("same.png", fp.same_person_variants()[8][1]),
                                               ("other.png", fp.stranger()),
                                               ("empty.png", fp.no_face(5))])
        strip = StagingStripWidget(thumbs)
        qtbot.addWidget(strip)
        strip.set_scorer(faces.similarity_scorer(dataset))
        strip.set_items([_item(i, p) for i, p in enumerate(staged, start=1)])
        qtbot.waitUntil(lambda: all(t.scored for t in strip.tiles), timeout=120_000)
        same, other, empty = (strip.tile(i) for i in (1, 2, 3))
        assert same.likeness.text().startswith("Likeness ")
        assert same.likeness.property("warning") is False and same.identity > 0.4
        assert other.likeness.text().startswith("May be a different person (")
        assert other.likeness.property("warning") is True and other.identity < 0.4
        assert "wrong face" in other.likeness.toolTip()
        assert empty.likeness.text() == "No face found" and empty.identity is None
        # a picture staged later is scored too; the others are not asked again
        more = fp.save(tmp_path / "more", [("later.png", fp.same_person_variants()[9][1])])
        strip.set_items([_item(i, p) for i, p in enumerate(staged + more, start=1)])
        qtbot.waitUntil(lambda: strip.tile(4) is not None and strip.tile(4).scored,
                        timeout=120_000)
        assert strip.tile(4).identity is not None and strip.tile(4).identity > 0.4
    finally:
        faces.shutdown()
        thumbs.shutdown()
