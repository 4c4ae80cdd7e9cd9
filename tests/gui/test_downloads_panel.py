"""The Downloads panel and status-bar button driving the real download service on the app's
loop against a local download host."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import shiboken6
from PySide6.QtWidgets import QApplication

from isengard_desktop.core.db.schema import connect
from isengard_desktop.core.downloads import FetchConfig, HostTokens, part_path
from isengard_desktop.core.models_catalogue import CatalogueFile
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.downloads import DownloadService
from isengard_desktop.ui.dialogs.downloads import DownloadsDialog
from tests.helpers.download_host import DownloadHost, HostedFile, generated_bytes
from tests.helpers.service_harness import run_on_loop

SIZE = 3 * 1024 * 1024
WAIT = 20_000


@pytest.fixture
def host() -> Iterator[DownloadHost]:
    with DownloadHost() as h:
        yield h


@pytest.fixture
def service(qtbot, qt_asyncio_loop) -> Iterator[DownloadService]:
    # as __main__ does: closing the panel (pytest-qt closes it after the test) must not quit
    # the app, which would stop the loop the service still closes on
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    quit_on_close = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    paths = resolve_paths().ensure()
    connect(paths.db_file).close()
    svc = DownloadService(paths.db_file, lambda: HostTokens(),
                          config=FetchConfig(chunk_size=128 * 1024, stall_s=1, retries=0,
                                             backoff_s=0.01))
    svc.start()
    yield svc
    run_on_loop(qtbot, svc.aclose(), WAIT, qt_asyncio_loop)
    shiboken6.delete(svc)
    app.setQuitOnLastWindowClosed(quit_on_close)


def panel_for(qtbot, service: DownloadService) -> DownloadsDialog:
    dialog = DownloadsDialog()
    qtbot.addWidget(dialog)
    service.items_changed.connect(dialog.set_items)
    dialog.pause_requested.connect(service.pause)
    dialog.resume_requested.connect(service.resume)
    dialog.cancel_requested.connect(service.cancel)
    dialog.retry_requested.connect(service.retry)
    dialog.clear_requested.connect(service.clear_finished)
    dialog.show()
    return dialog


def test_panel_shows_progress_and_pause_resume_work(qtbot, host, service, tmp_path):
    hosted = host.add("/m.bin", HostedFile(size=SIZE, piece_delay_s=0.03))
    dialog = panel_for(qtbot, service)
    counts: list[int] = []
    service.count_changed.connect(counts.append)
    dest = tmp_path / "models" / "m.bin"
    service.enqueue(host.url("/m.bin"), dest, size=SIZE, sha256=hosted.sha256)
    qtbot.waitUntil(lambda: 1 in dialog.rows and "ETA" in dialog.rows[1].detail.text(),
                    timeout=WAIT)
    row = dialog.rows[1]
    assert "of 3.0 MB" in row.detail.text() and "MB/s" in row.detail.text()
    assert "Downloading" in row.title.text() and row.pause.isVisible()
    assert not row.retry.isVisible() and counts[-1] == 1
    qtbot.waitUntil(lambda: part_path(dest).exists()
                    and part_path(dest).stat().st_size > 400_000, timeout=WAIT)
    row.pause.click()
    qtbot.waitUntil(lambda: "Paused" in row.title.text(), timeout=WAIT)
    assert row.resume.isVisible() and not row.pause.isVisible() and counts[-1] == 0
    kept = part_path(dest).stat().st_size
    hosted.piece_delay_s = 0
    row.resume.click()
    qtbot.waitUntil(lambda: "Done" in row.title.text(), timeout=WAIT)
    assert dest.read_bytes() == generated_bytes(SIZE)
    assert host.requests[-1].range_start == kept
    assert row.bar.value() == 1000 and not row.cancel.isVisible()
    dialog.clear_button.click()
    qtbot.waitUntil(lambda: not dialog.rows and dialog.empty.isVisible(), timeout=WAIT)
    assert dest.exists()                                  # the file stays


def test_failed_item_shows_its_error_and_retry_finishes_it(qtbot, host, service, tmp_path):
    hosted = host.add("/m.bin", HostedFile(size=SIZE, fail_500=5))
    dialog = panel_for(qtbot, service)
    errors: list[str] = []
    service.item_failed.connect(errors.append)
    service.enqueue(host.url("/m.bin"), tmp_path / "m.bin", label="SDXL base")
    qtbot.waitUntil(lambda: 1 in dialog.rows and "Failed" in dialog.rows[1].title.text(),
                    timeout=WAIT)
    row = dialog.rows[1]
    assert "SDXL base" in row.error.text() and row.error.isVisible() and row.retry.isVisible()
    assert errors and "SDXL base" in errors[0]
    hosted.fail_500 = 0
    row.retry.click()
    qtbot.waitUntil(lambda: "Done" in row.title.text(), timeout=WAIT)
    assert not row.error.isVisible() and (tmp_path / "m.bin").stat().st_size == SIZE


def test_cancel_deletes_the_part(qtbot, host, service, tmp_path):
    host.add("/m.bin", HostedFile(size=SIZE, piece_delay_s=0.05))
    dialog = panel_for(qtbot, service)
    dest = tmp_path / "m.bin"
    service.enqueue(host.url("/m.bin"), dest)
    qtbot.waitUntil(lambda: part_path(dest).exists() and 1 in dialog.rows, timeout=WAIT)
    dialog.rows[1].cancel.click()
    qtbot.waitUntil(lambda: "Cancelled" in dialog.rows[1].title.text(), timeout=WAIT)
    assert not part_path(dest).exists() and dialog.rows[1].retry.isVisible()


def test_catalogue_file_goes_to_its_comfyui_folder(qtbot, host, service, tmp_path):
    hosted = host.add("/org/vae/resolve/main/ae.safetensors", HostedFile(size=SIZE))
    item = CatalogueFile(
        id="flux-ae", name="ae.safetensors", folder="vae",
        urls=(host.url("/org/vae/resolve/main/ae.safetensors"),), page="", sha256=hosted.sha256,
        size=SIZE, approx_size="3 MB", licence="Apache-2.0", non_commercial=False, gated=False,
        min_vram_gb=0)
    dest = service.enqueue_catalogue_file(item, tmp_path / "models")
    assert dest == tmp_path / "models" / "vae" / "ae.safetensors"
    qtbot.waitUntil(lambda: any(v.state == "done" for v in service.views()), timeout=WAIT)
    assert dest.read_bytes() == generated_bytes(SIZE)


def test_a_catalogue_file_without_a_hash_is_checked_against_the_hubs(qtbot, host, service,
                                                                     tmp_path):
    """A catalogue entry with ``sha256 = ""`` whose URL is a Hub ``resolve/`` URL gets the
    Hub's LFS SHA-256 (paths-info) before it is queued: a damaged transfer is refused."""
    from tests.helpers.hub_double import HubRepo

    weights = generated_bytes(SIZE, seed=5)
    hub = HubRepo(host, "org/vae", {"ae.safetensors": weights, ".gitattributes":
                                    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}).serve()
    hub.hosted["ae.safetensors"].corrupt = True
    item = CatalogueFile(
        id="flux-ae", name="ae.safetensors", folder="vae",
        urls=(host.url("/org/vae/resolve/main/ae.safetensors"),), page="", sha256="",
        size=0, approx_size="3 MB", licence="Apache-2.0", non_commercial=False, gated=False,
        min_vram_gb=0)
    dest = service.enqueue_catalogue_file(item, tmp_path / "models")
    qtbot.waitUntil(lambda: any(v.state == "failed" for v in service.views()), timeout=WAIT)
    failed = service.views()[0]
    assert "ae.safetensors: the downloaded file is damaged" in failed.error
    assert not dest.exists()
    row = service.queue.items()[0]
    assert row.sha256 == hashlib.sha256(weights).hexdigest() and row.size == SIZE
    hub.hosted["ae.safetensors"].corrupt = False
    service.retry(failed.id)
    qtbot.waitUntil(lambda: any(v.state == "done" for v in service.views()), timeout=WAIT)
    assert dest.read_bytes() == weights


def test_status_bar_button_opens_the_panel(qtbot, make_app, qt_asyncio_loop):
    ctx = make_app()
    button = ctx.window.downloads_button
    assert button.text() == "Downloads"
    qtbot.waitUntil(lambda: ctx.downloads.queue is not None, timeout=WAIT)
    button.click()
    dialogs = [w for w in ctx.window.findChildren(DownloadsDialog)]
    assert len(dialogs) == 1 and dialogs[0].isVisible() and dialogs[0].empty.isVisible()
    ctx.window.set_download_count(2)
    assert button.text() == "Downloads (2)"


def test_old_failures_are_listed_but_not_announced_again(qtbot, qt_asyncio_loop, tmp_path):
    from isengard_desktop.core.downloads import DownloadsRepository

    paths = resolve_paths().ensure()
    repo = DownloadsRepository(connect(paths.db_file))
    row = repo.add("https://huggingface.co/a/b/resolve/main/x.bin", str(tmp_path / "x.bin"))
    repo.update(row.id, state="failed", error="x.bin: the download failed 6 times",
                error_kind="network")
    repo.conn.close()
    svc = DownloadService(paths.db_file, lambda: HostTokens())
    errors: list[str] = []
    svc.item_failed.connect(errors.append)
    svc.start()
    try:
        qtbot.waitUntil(lambda: len(svc.views()) == 1, timeout=WAIT)
        view = svc.views()[0]
        assert view.state == "failed" and view.can_retry and "6 times" in view.error
        assert errors == []
    finally:
        run_on_loop(qtbot, svc.aclose(), WAIT, qt_asyncio_loop)
        shiboken6.delete(svc)
