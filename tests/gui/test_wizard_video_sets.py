"""The wizard's Base models page offers the Video tab's model sets in a "Video (optional)"
group: never ticked for the card, sizes / VRAM / licence shown, Download queues exactly the
missing files of the ticked set, and ``go_to("base_models:<set>")`` ticks that set."""

from __future__ import annotations

from PySide6.QtCore import Qt

from isengard_desktop.core.discovery import discover
from isengard_desktop.core.models_catalogue import load_catalogue
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.ui.wizard import FirstRunWizard
from tests.gui.test_wizard_base_models import RTX_4090, FakeDownloads, make_page, ticked
from tests.helpers.wizard_fakes import FakeRuntime, SettingsStore, lock_for, machine, \
    trainer_python_none

VIDEO = ["wan21-i2v", "wan21-flf2v", "wan21-t2v", "ltxv-2b"]


def video_ticked(page) -> set[str]:
    return {k for k, b in page.video_boxes.items() if b.isChecked()}


def test_video_group_is_unticked_with_totals_and_download_queues_only_missing_files(qtbot):
    cat = load_catalogue()
    paths = resolve_paths().ensure()
    # the UMT5 text encoder is already in the app's models folder (its size is not in the
    # catalogue, so its name counts)
    (paths.models / "text_encoders").mkdir(parents=True, exist_ok=True)
    (paths.models / "text_encoders" / cat.files["umt5-xxl-fp8"].name).write_bytes(b"x")
    downloads = FakeDownloads()
    page, _ = make_page(qtbot, downloads=downloads)
    page.set_vram(24.0)                           # a big card ticks Flux dev, never a video set
    assert ticked(page) == {"flux-dev"}
    assert list(page.video_boxes) == VIDEO and video_ticked(page) == set()
    title = page.findChild(type(page.status), "base_models_video_title")
    assert title is not None and title.text() == "Video (optional)"
    assert page.video_boxes["wan21-i2v"].text() == "Wan 2.1 image-to-video 480p (14B) — 24.6 GB"
    assert page.video_boxes["ltxv-2b"].text() == "LTX-Video 2B — 16.1 GB"
    detail = page.video_details["wan21-i2v"].text()
    assert "needs 16 GB VRAM" in detail and "licence: Apache-2.0, MIT" in detail
    assert "already have 1 of 4 files; 17.9 GB to download" in detail
    assert "needs 8 GB VRAM" in page.video_details["wan21-t2v"].text()
    assert "OpenRAIL-M" in page.video_details["ltxv-2b"].text()
    assert "wan21-i2v" in page.video_boxes["wan21-i2v"].toolTip()
    page.boxes["flux-dev"].setChecked(False)
    assert page.total.text() == "Nothing ticked to download."
    page.video_boxes["wan21-i2v"].setChecked(True)
    assert page.total.text() == "To download: 3 file(s), 17.9 GB"
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert [c[0] for c in downloads.calls] == ["wan21-i2v-480p", "wan21-vae", "clip-vision-h"]
    assert {c[1] for c in downloads.calls} == {paths.models}
    assert video_ticked(page) == set() and page.complete
    # the first-last-frame set shares the encoder, VAE and CLIP vision: only its model is left
    page.video_boxes["wan21-flf2v"].setChecked(True)
    assert page.total.text() == "To download: 1 file(s), 16.4 GB"
    # a 12 GB card is told that the 14B sets need more; the 1.3B and LTX sets fit
    page.set_vram(12.0)
    assert "more than this card's 12 GB" in page.video_details["wan21-i2v"].text()
    assert "more than this card" not in page.video_details["wan21-t2v"].text()
    assert "more than this card" not in page.video_details["ltxv-2b"].text()


def test_a_video_set_already_here_cannot_be_ticked(qtbot):
    cat = load_catalogue()
    paths = resolve_paths().ensure()
    for fid in cat.video_sets["ltxv-2b"].files:
        item = cat.files[fid]
        (paths.models / item.folder).mkdir(parents=True, exist_ok=True)
        (paths.models / item.folder / item.name).write_bytes(b"x")
    page, _ = make_page(qtbot, downloads=FakeDownloads())
    page.want_family("ltxv-2b")
    page.refresh()
    qtbot.waitUntil(lambda: "ltxv-2b" in page.video_boxes, timeout=5000)
    assert not page.video_boxes["ltxv-2b"].isEnabled()
    assert not page.video_boxes["ltxv-2b"].isChecked()
    assert "already have all files" in page.video_details["ltxv-2b"].text()


def test_go_to_a_video_set_ticks_it(qtbot, tmp_path):
    info = machine(RTX_4090)
    store = SettingsStore()
    home = tmp_path / "empty-home"
    home.mkdir()
    wizard = FirstRunWizard(resolve_paths().ensure(), store.get, store.update,
                            FakeRuntime(tmp_path / "rt"), lambda: (info, lock_for(info)),
                            trainer_python_none, lambda: discover(home, env={}, os_name="Linux"),
                            downloads=FakeDownloads())
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.go_to("base_models:wan21-t2v")        # before the catalogue has been read
    page = wizard.base_models
    assert wizard.current_page() == "base_models"
    qtbot.waitUntil(lambda: page.machine_known and "wan21-t2v" in page.video_boxes,
                    timeout=5000)
    assert video_ticked(page) == {"wan21-t2v"}
    assert ticked(page) == {"flux-dev"}
    wizard.go_to("base_models:ltxv-2b")          # after: ticked at once
    assert video_ticked(page) == {"wan21-t2v", "ltxv-2b"}
    # Flux dev 4 files + Wan T2V 3 + LTX 2, the T5-XXL fp16 of Flux dev and LTX counted once
    assert page.total.text().startswith("To download: 8 file(s)")
