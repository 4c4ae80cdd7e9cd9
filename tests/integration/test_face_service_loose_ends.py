""":class:`FaceAnalysisService` with the real analysis child: the cache prune never removes a
record while a child runs (it waits for the child's end, then removes the records of photos
the library no longer has) and runs once; a checks run's task (what the status bar shows)
ends once, also when a newer run supersedes it."""

from __future__ import annotations

import hashlib

import pytest

from isengard_desktop.core.db.records import ImageRecord
from isengard_desktop.core.faces.cache import FaceCache
from isengard_desktop.core.faces.records import PhotoFaces
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.face_analysis import FaceAnalysisService
from tests.helpers import face_photos as fp

STALE = "5e" * 32


@pytest.fixture
def service(qtbot):
    svc = FaceAnalysisService(resolve_paths().ensure())
    yield svc
    svc.shutdown()


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_prune_waits_for_the_running_child_then_removes_what_no_photo_has(
        qtbot, service, tmp_path):
    cache = FaceCache(resolve_paths().cache)
    cache.put(PhotoFaces(STALE, 10, 10))            # a photo deleted from every character
    photos = fp.save(tmp_path / "p", [("a.png", fp.astronaut()), ("b.png", fp.stranger())])
    keep = {_sha(p) for p in photos}
    seen_at_end: list[bool] = []

    def scored(_scores, result) -> None:
        # the child has ended: until now the stale record must have been left alone
        seen_at_end.append(cache.path_for(STALE).exists())

    service.score_identity([], [(p, _sha(p)) for p in photos], scored)
    with qtbot.waitSignal(service.cache_pruned, timeout=120_000) as blocker:
        service.prune_cache(lambda: keep)
    assert seen_at_end == [True]
    result = blocker.args[0]
    assert result.removed == 1 and result.freed_bytes > 0 and not result.stopped
    assert not cache.path_for(STALE).exists()
    assert all(cache.get(s) is not None for s in keep)       # the child's records stay
    # at most once per start: a second request does nothing
    cache.put(PhotoFaces(STALE, 10, 10))
    with qtbot.assertNotEmitted(service.cache_pruned, wait=500):
        service.prune_cache(lambda: keep)
    assert cache.path_for(STALE).exists()


def test_a_superseded_run_s_task_ends_cancelled_and_the_new_one_reports(
        qtbot, service, tmp_path):
    photos = fp.save(tmp_path / "p", [("a.png", fp.astronaut()), ("b.png", fp.stranger())])
    records = [ImageRecord(id=i, character_id=1, path=p, sha256=_sha(p), width=0, height=0,
                           caption="", source=str(p), created="")
               for i, p in enumerate(photos, start=1)]
    started: list = []
    service.run_started.connect(started.append)
    first = service.run(records, 1024)
    ended_first: list = []
    first.finished.connect(ended_first.append)
    second = service.run(records, 1024)
    assert started == [first, second] and first.label == "Analysing faces"
    assert len(ended_first) == 1 and ended_first[0].analysis.cancelled
    assert ended_first[0].summary().startswith("Face checks restarted")
    with qtbot.waitSignal(second.finished, timeout=120_000) as blocker:
        pass
    outcome = blocker.args[0]
    assert not outcome.analysis.cancelled and outcome.checked == 2
    assert outcome.summary().startswith("Face checks done: ")
    assert "on 2 photos" in outcome.summary() and len(ended_first) == 1
