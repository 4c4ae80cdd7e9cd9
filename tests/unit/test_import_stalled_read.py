"""Issue 11 item 4: a read that never returns (a stalled network share) must not hang an
import, its Cancel or quitting.

What is simulated: a FUSE or NFS mount that stops answering cannot be made here, so the one
function the importer reads a photo's bytes with (``importer._read_source``), or the sidecar
reader it calls (``captions.read_sidecar``), is replaced by one that blocks on a
``threading.Event`` for the chosen file: a thread that calls it is stuck exactly as a thread in
``read()`` on a dead share is (nothing but the Event can wake it). Every other file is read
for real. Each test releases the Event at the end so no thread outlives it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from isengard_desktop.core.dataset import captions, importer
from isengard_desktop.core.dataset.importer import NOT_READ_IN_TIME, import_files
from tests.helpers.photos import make_photos


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[threading.Event, set[str], threading.Event]]:
    """(release, names, entered): reading a photo or sidecar whose name is in ``names`` sets
    ``entered`` and blocks until ``release`` is set."""
    release, entered = threading.Event(), threading.Event()
    names: set[str] = set()
    real_source, real_sidecar = importer._read_source, captions.read_sidecar

    def source(path: Path, *args: object) -> bytes:
        if path.name in names:
            entered.set()
            release.wait()
        return real_source(path, *args)  # type: ignore[arg-type]

    def sidecar(path: Path) -> str | None:
        if Path(path).name in names:
            entered.set()
            release.wait()
        return real_sidecar(path)

    monkeypatch.setattr(importer, "_read_source", source)
    monkeypatch.setattr(captions, "read_sidecar", sidecar)
    yield release, names, entered
    release.set()


def _run(target, *args, **kwargs):  # type: ignore[no-untyped-def]
    box: dict[str, object] = {}

    def run() -> None:
        box["result"] = target(*args, **kwargs)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize("workers", [1, 2])
def test_a_photo_that_cannot_be_read_in_time_is_rejected_by_name(
        tmp_path: Path, stuck, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    release, names, _ = stuck
    monkeypatch.setattr(importer, "READ_STALL_SECONDS", 0.3)
    photos = make_photos(tmp_path / "share", 3)
    names.add(photos[1].name)
    result = import_files(photos, tmp_path / "dest", set(), workers=workers)
    assert not release.is_set()            # the read is still stuck: nobody waited for it
    assert [Path(i.source).name for i in result.imported] == [photos[0].name, photos[2].name]
    assert [(Path(r.source).name, r.reason) for r in result.rejected] == [
        (photos[1].name, NOT_READ_IN_TIME)]
    assert f"{photos[1].name} — {NOT_READ_IN_TIME}" in result.summary()
    assert not list((tmp_path / "dest").glob("*.part"))


def test_a_stuck_sidecar_leaves_the_photo_imported_without_its_caption(
        tmp_path: Path, stuck, monkeypatch: pytest.MonkeyPatch) -> None:
    release, names, _ = stuck
    monkeypatch.setattr(importer, "READ_STALL_SECONDS", 0.3)
    photo = make_photos(tmp_path / "share", 1)[0]
    sidecar = photo.with_suffix(".txt")
    sidecar.write_text("gwn_test smiling")
    names.add(sidecar.name)
    result = import_files([photo], tmp_path / "dest", set())
    assert not release.is_set()
    assert [i.caption for i in result.imported] == [None]
    problem = result.imported[0].caption_problem
    assert problem is not None and sidecar.name in problem and NOT_READ_IN_TIME in problem


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("what", ["photo", "sidecar"])
def test_cancel_ends_the_import_while_a_read_is_stuck(
        tmp_path: Path, stuck, workers: int, what: str) -> None:
    release, names, entered = stuck
    photos = make_photos(tmp_path / "share", 3)
    if what == "photo":
        names.add(photos[1].name)
    else:
        photos[1].with_suffix(".txt").write_text("a caption")
        names.add(photos[1].with_suffix(".txt").name)
    cancel = threading.Event()
    thread, box = _run(import_files, photos, tmp_path / "dest", set(),
                       cancelled=cancel.is_set, workers=workers)
    assert entered.wait(10)                # a decode thread is now stuck in the read
    cancel.set()
    thread.join(1.0)                       # the bound the issue asks of Cancel
    assert not thread.is_alive(), "Cancel waited on the stuck read"
    assert not release.is_set()
    result = box["result"]
    assert result.cancelled                # type: ignore[attr-defined]
    assert photos[1].name not in {Path(i.source).name
                                  for i in result.imported}  # type: ignore[attr-defined]
    assert not list((tmp_path / "dest").glob("*.part"))


def test_a_folder_with_a_stuck_read_gets_a_short_deadline_until_it_answers(
        tmp_path: Path, stuck, monkeypatch: pytest.MonkeyPatch) -> None:
    release, names, _ = stuck
    monkeypatch.setattr(importer, "READ_STALL_SECONDS", 0.3)
    photos = make_photos(tmp_path / "share", 3)
    folder = str(photos[0].parent)
    names.update({photos[0].name, photos[1].name})
    assert importer.read_deadline(folder) == importer.READ_STALL_SECONDS
    result = import_files(photos, tmp_path / "dest", set())
    assert [Path(r.source).name for r in result.rejected] == [photos[0].name, photos[1].name]
    assert [Path(i.source).name for i in result.imported] == [photos[2].name]
    # the share is still not answering: later reads there give up sooner
    assert importer.read_deadline(folder) == importer.READ_STALLED_FOLDER_SECONDS
    assert importer.read_deadline(str(tmp_path)) == importer.READ_STALL_SECONDS
    release.set()                           # the share answers: the stuck reads return
    for _ in range(200):
        if importer.read_deadline(folder) == importer.READ_STALL_SECONDS:
            break
        threading.Event().wait(0.01)
    assert importer.read_deadline(folder) == importer.READ_STALL_SECONDS


def test_a_folder_that_cannot_be_listed_in_time_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: listing the dropped folder blocks (``importer._walk`` waits on an Event, as
    ``os.walk`` on a dead share would)."""
    release = threading.Event()
    share = tmp_path / "share"
    make_photos(share, 2)

    def walk(root: Path, add, visit) -> None:  # type: ignore[no-untyped-def]
        visit(root)
        release.wait()

    monkeypatch.setattr(importer, "_walk", walk)
    monkeypatch.setattr(importer, "READ_STALL_SECONDS", 0.3)
    try:
        result = import_files([share], tmp_path / "dest", set())
        assert not release.is_set()
        assert [(r.source, r.reason) for r in result.rejected] == [
            (str(share), "folder could not be listed in time (network share not answering?); "
                         "nothing was imported")]
        cancel = threading.Event()
        thread, box = _run(import_files, [share], tmp_path / "dest", set(),
                           cancelled=cancel.is_set)
        monkeypatch.setattr(importer, "READ_STALL_SECONDS", 60.0)
        cancel.set()
        thread.join(1.0)
        assert not thread.is_alive() and box["result"].cancelled  # type: ignore[attr-defined]
    finally:
        release.set()
