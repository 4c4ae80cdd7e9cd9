"""Getting a captioning model from Hugging Face in the auto-caption dialog, on the real app
(its download service on the app's loop) against the Hub double over real HTTP
(``tests/helpers/hub_double.py``): Download lists the repo, queues the transformers files into
``LLM/<folder>`` with the listed sizes and SHA-256, shows progress, and the model turns ready;
a damaged weight file is refused and named; a gated repo is named with what to do."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt

from isengard_desktop.core.captioning.models import model_ready
from isengard_desktop.core.downloads import part_path
from tests.helpers.characters import add_character
from tests.helpers.download_host import DownloadHost
from tests.helpers.hub_double import HubRepo

REPO = "florence-community/Florence-2-base"      # the catalogue's default model
WAIT = 20_000
WEIGHTS = bytes(range(256)) * 3000                 # 768 kB, in LFS
FILES = {
    "config.json": b'{"model_type": "florence2", "architectures": ["Florence2"]}',
    "preprocessor_config.json": b'{"image_processor_type": "CLIPImageProcessor"}',
    "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
    "merges.txt": b"#version: 0.2\nh e\n",
    "model.safetensors": WEIGHTS,
    "pytorch_model.bin": b"pickle" * 100,           # left on the Hub: safetensors exist
    "README.md": b"# Florence-2",
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                      b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
                      b"*.onnx filter=lfs diff=lfs merge=lfs -text\n",
    "onnx/vision_encoder.onnx": b"onnx" * 100,
}
NEEDED = {"config.json", "preprocessor_config.json", "tokenizer.json", "merges.txt",
          "model.safetensors"}


@pytest.fixture
def host() -> Iterator[DownloadHost]:
    with DownloadHost() as h:
        yield h


def _dialog(qtbot, ctx, tmp_path, host):
    ctx.downloads.hub_endpoint = host.url("")
    qtbot.waitUntil(lambda: ctx.downloads.queue is not None, timeout=WAIT)
    ch = add_character(qtbot, ctx.library, "Gina", photos=1, photo_root=tmp_path,
                       size=(120, 90))
    tab = ctx.tabs["Dataset"]
    tab.character_filter.setCurrentIndex(tab.character_filter.findData(ch.id))
    dialog = tab.open_captioning()
    assert dialog is not None
    return dialog, ctx.paths.models / "LLM" / "Florence-2-base"


def test_download_fills_the_model_folder_and_the_model_turns_ready(
        qt_asyncio_loop, host, qtbot, make_app, tmp_path):
    hub = HubRepo(host, REPO, dict(FILES), page_size=3).serve()
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    assert dialog.model_combo.currentText().endswith("— not downloaded")
    widget = dialog.download
    assert widget.isVisible() and widget.button.text() == "Download (≈ 0.5 GB)"
    assert REPO in widget.button.toolTip() and "revision main" in widget.button.toolTip()

    qtbot.mouseClick(widget.button, Qt.MouseButton.LeftButton)
    assert not widget.button.isEnabled()               # listing: no second click
    qtbot.waitUntil(lambda: dialog.model_combo.currentText() == "Florence-2 base (default)",
                    timeout=WAIT)
    assert dialog.status.text() == "Florence-2 base (default) is downloaded and ready."
    assert not widget.isVisible()
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == NEEDED                           # no README, .bin, onnx/, .part
    for name in NEEDED:
        assert (folder / name).read_bytes() == FILES[name]
    assert model_ready(folder)
    # every file came from the commit "main" pointed at, weights checked by SHA-256
    fetched = [r.path for r in host.requests if "/resolve/" in r.path]
    assert sorted(fetched) == sorted(f"/{REPO}/resolve/{hub.commit}/{n}" for n in NEEDED)
    rows = {row.label: row for row in ctx.downloads.queue.items()}
    weights = rows["Florence-2-base/model.safetensors"]
    assert weights.state == "done"
    assert weights.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert weights.size == len(WEIGHTS)
    assert rows["Florence-2-base/config.json"].sha256 == hashlib.sha256(
        FILES["config.json"]).hexdigest()              # no Hub SHA-256: the one computed


def test_a_damaged_weight_file_is_refused_and_named_then_try_again_works(
        qt_asyncio_loop, host, qtbot, make_app, tmp_path):
    hub = HubRepo(host, REPO, dict(FILES)).serve()
    hub.hosted["model.safetensors"].corrupt = True     # one byte flipped in transit
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    widget = dialog.download
    qtbot.mouseClick(widget.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.button.text() == "Try again", timeout=WAIT)
    text = widget.status_text()
    assert "Florence-2-base/model.safetensors: the downloaded file is damaged" in text, text
    assert "Try again" in text and widget.button.isEnabled()
    assert not (folder / "model.safetensors").exists()
    assert not part_path(folder / "model.safetensors").exists()
    assert "not downloaded" in dialog.model_combo.currentText()

    hub.hosted["model.safetensors"].corrupt = False
    qtbot.mouseClick(widget.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.model_combo.currentText().endswith("not downloaded"),
                    timeout=WAIT)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    # the files already there were kept, not fetched again
    config_gets = [r for r in host.requests if r.path.endswith("/config.json")]
    assert len(config_gets) == 1


def test_a_gated_repo_names_the_repo_and_what_to_do(qt_asyncio_loop, host, qtbot, make_app,
                                                    tmp_path):
    HubRepo(host, REPO, dict(FILES), gated=True, token="hf_x").serve()
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    qtbot.mouseClick(dialog.download.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.download.button.text() == "Try again", timeout=WAIT)
    text = dialog.download.status_text()
    assert text.startswith(f"{REPO}: Hugging Face refused the file list (HTTP 401)"), text
    assert "accept its licence" in text and "Settings → Hugging Face token" in text
    assert not folder.exists() or not any(folder.iterdir())


def test_an_open_listing_with_gated_files_names_the_file_and_the_licence(
        qt_asyncio_loop, host, qtbot, make_app, tmp_path):
    HubRepo(host, REPO, dict(FILES), gated=True, gated_api=False, token="hf_x").serve()
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    qtbot.mouseClick(dialog.download.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.download.button.text() == "Try again", timeout=WAIT)
    text = dialog.download.status_text()
    assert "Florence-2-base/config.json: Hugging Face refused the download (HTTP 401)" in text
    assert f"/{REPO} while logged in, accept its licence" in text, text
    qtbot.waitUntil(lambda: "(4 more files failed too.)" in dialog.download.status_text(),
                    timeout=WAIT)
    assert not (folder / "config.json").exists()


def test_a_dialog_opened_again_follows_the_download_still_going(
        qt_asyncio_loop, host, qtbot, make_app, tmp_path):
    hub = HubRepo(host, REPO, dict(FILES)).serve()
    hub.hosted["model.safetensors"].piece_delay_s = 1.5      # 3 pieces: about 4.5 s
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    qtbot.mouseClick(dialog.download.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(r.path.endswith("/model.safetensors") for r in host.requests),
                    timeout=WAIT)
    again = ctx.tabs["Dataset"].open_captioning()     # closes the first dialog, opens anew
    assert again is not None and again is not dialog
    assert again.model_combo.currentText().endswith("not downloaded")
    text = again.download.status_text()
    assert text.startswith("Downloading ") and REPO in text, text
    assert again.download.isVisible() and not again.download.button.isEnabled()
    qtbot.waitUntil(lambda: again.model_combo.currentText() == "Florence-2 base (default)",
                    timeout=WAIT)
    assert model_ready(folder) and (folder / "model.safetensors").read_bytes() == WEIGHTS


def test_a_file_paused_in_the_downloads_panel_is_said_paused_and_resume_finishes(
        qt_asyncio_loop, host, qtbot, make_app, tmp_path):
    hub = HubRepo(host, REPO, dict(FILES)).serve()
    hub.hosted["model.safetensors"].piece_delay_s = 1.0
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    qtbot.mouseClick(dialog.download.button, Qt.MouseButton.LeftButton)
    def weights_row():
        return [v for v in ctx.downloads.views() if v.dest.endswith("model.safetensors")]

    qtbot.waitUntil(lambda: [v.state for v in weights_row()] == ["running"], timeout=WAIT)
    [weights] = weights_row()
    ctx.downloads.pause(weights.id)                     # what the panel's Pause does
    qtbot.waitUntil(lambda: dialog.download.status_text().startswith("Paused: 1 file"),
                    timeout=WAIT)
    assert "Downloads panel" in dialog.download.status_text()
    hub.hosted["model.safetensors"].piece_delay_s = 0
    ctx.downloads.resume(weights.id)
    qtbot.waitUntil(lambda: dialog.model_combo.currentText() == "Florence-2 base (default)",
                    timeout=WAIT)
    assert model_ready(folder) and (folder / "model.safetensors").read_bytes() == WEIGHTS


def test_a_dialog_opened_again_while_the_repo_is_listed_follows_the_download(
        qt_asyncio_loop, host, qtbot, make_app, tmp_path, monkeypatch):
    import asyncio

    import isengard_desktop.services.downloads as downloads_module

    HubRepo(host, REPO, dict(FILES)).serve()
    gate = asyncio.Event()
    real_list = downloads_module.list_repo

    async def slow_list(*args, **kwargs):
        await gate.wait()                       # the listing is still going ...
        return await real_list(*args, **kwargs)

    monkeypatch.setattr(downloads_module, "list_repo", slow_list)
    ctx = make_app()
    dialog, folder = _dialog(qtbot, ctx, tmp_path, host)
    qtbot.mouseClick(dialog.download.button, Qt.MouseButton.LeftButton)
    again = ctx.tabs["Dataset"].open_captioning()   # ... when the dialog is opened again
    assert again is not None and again is not dialog
    gate.set()
    qtbot.waitUntil(lambda: again.model_combo.currentText() == "Florence-2 base (default)",
                    timeout=WAIT)
    assert model_ready(folder)
