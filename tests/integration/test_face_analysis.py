"""The face analysis child with the real dlib models (dlib-bin + face_recognition_models from
the package index) on real face photos (scikit-image's astronaut and LFW faces), driven
through :class:`FaceAnalysisService` as the app drives it: boxes and landmarks, no face,
several faces, the "Done when" set in miniature, the cache, cancel and the identity API."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from isengard_desktop.core.db.records import ImageRecord
from isengard_desktop.core.faces.cache import FaceCache
from isengard_desktop.core.faces.records import EMBEDDING_SIZE, PhotoFaces
from isengard_desktop.core.identity import rank_by_identity
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.face_analysis import AnalysisResult, FaceAnalysisService
from tests.helpers import face_photos as fp


def _records(paths: list[Path], character_id: int = 1, start: int = 1) -> list[ImageRecord]:
    out = []
    for i, p in enumerate(paths, start=start):
        out.append(ImageRecord(id=i, character_id=character_id, path=p,
                               sha256=hashlib.sha256(p.read_bytes()).hexdigest(), width=0,
                               height=0, caption="", source=str(p), created=""))
    return out


@pytest.fixture
def service(qtbot):
    svc = FaceAnalysisService(resolve_paths().ensure())
    yield svc
    svc.shutdown()


def _run(qtbot, service, records, resolution=1024):
    with qtbot.waitSignal(service.finished, timeout=120_000) as blocker:
        service.run(records, resolution)
    return blocker.args[0]


def test_child_finds_the_astronaut_face_with_landmarks_and_embedding(tmp_path):
    photos = fp.save(tmp_path / "in", [("astro.png", fp.astronaut()),
                                       ("shapes.png", fp.no_face(3)),
                                       ("group.png", fp.group_photo())])
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    photos.append(tmp_path / "in" / "broken.jpg")
    lines = "".join(json.dumps({"path": str(p), "sha256": hashlib.sha256(
        p.read_bytes()).hexdigest()}) + "\n" for p in photos)
    result = subprocess.run([sys.executable, "-m", "isengard_desktop.analysis_runtime", "faces",
                             "--cache", str(tmp_path / "cache")], input=lines,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["v"] == 1 for e in events)
    assert events[0] == {"v": 1, "event": "start", "total": 4, "cached": 0, "to_analyse": 4,
                         "detector": "hog"}    # auto: the PyPI dlib has no CUDA
    by_name = {Path(e["path"]).name: e for e in events if e["event"] in ("photo", "photo_error")}
    astro = PhotoFaces.from_json(by_name["astro.png"]["result"])
    assert len(astro.faces) >= 1
    face = max(astro.faces, key=lambda f: f.score)
    left, top, right, bottom = face.box
    assert all(left <= x <= right and top <= y <= bottom for x, y in face.landmarks)
    assert len(face.embedding) == EMBEDDING_SIZE
    assert abs(face.yaw) < 15 and face.sharpness > 0 and 0 < face.rel_size < 1
    assert PhotoFaces.from_json(by_name["shapes.png"]["result"]).faces == ()
    group = PhotoFaces.from_json(by_name["group.png"]["result"])
    assert len([f for f in group.faces if f.score > 0.25]) == 2
    error = by_name["broken.jpg"]
    assert error["event"] == "photo_error" and "broken.jpg" in error["message"]
    assert events[-1] == {"v": 1, "event": "done", "analysed": 3, "cached": 0, "failed": 1}


def test_done_when_25_photos_name_each_problem_and_rank_the_stranger_last(
        qtbot, service, tmp_path):
    """The issue's "Done when": 25 photos, one stranger, three tiny faces and one group
    photo get those five named and the stranger ranked last (plus a no-face picture)."""
    sets = fp.done_when_set(tmp_path / "set", full=True)
    shapes = fp.save(tmp_path / "set", [("shapes.png", fp.no_face(7))])
    everything = [p for key in ("same", "stranger", "tiny", "group") for p in sets[key]]
    assert len(everything) == 25
    records = _records(everything + shapes)
    name = {r.id: r.path.name for r in records}
    outcome = _run(qtbot, service, records)
    assert outcome.analysis.problem == "" and not outcome.analysis.cancelled
    assert outcome.analysis.analysed == len(records)
    kinds: dict[str, set[str]] = {}
    for f in outcome.report.findings:
        kinds.setdefault(f.kind, set()).add(name[f.image_id])
    assert kinds["identity_outlier"] == {"stranger.png"}
    assert kinds["face_too_small"] == {"tiny_0.png", "tiny_1.png", "tiny_2.png"}
    assert kinds["several_faces"] == {"group.png"}
    assert kinds["no_face"] == {"shapes.png"}
    flagged = set().union(*kinds.values())
    assert not flagged & {p.name for p in sets["same"]}, kinds
    ranked = rank_by_identity(list(outcome.report.scores.values()))
    by_sha = {r.sha256: r.path.name for r in records}
    assert by_sha[ranked[-1].sha256] == "stranger.png"
    # the group photo's subject is the astronaut (left), not the stranger beside her
    group = next(r for r in records if r.path.name == "group.png")
    score = outcome.report.scores[group.id]
    assert score.same_person
    message = next(f.message for f in outcome.report.findings if f.image_id == group.id)
    assert "on the left" in message
    card = outcome.report.datasets[1]
    assert card.photos == len(records) and card.with_face == len(records) - 1
    assert card.usable == len(sets["same"]) + 1     # the twenty and the group photo
    assert any("frontal" in a for a in card.advice)


def test_second_run_analyses_nothing_and_one_new_photo_analyses_one(qtbot, service, tmp_path):
    photos = fp.save(tmp_path / "c", fp.same_person_variants()[:3] + [("s.png", fp.no_face(2))])
    records = _records(photos)
    first = _run(qtbot, service, records)
    assert (first.analysis.analysed, first.analysis.cached) == (4, 0)
    second = _run(qtbot, service, records)
    assert (second.analysis.analysed, second.analysis.cached) == (0, 4)
    assert second.report.findings == first.report.findings
    more = fp.save(tmp_path / "c", [("stranger.png", fp.stranger())])
    third = _run(qtbot, service, records + _records(more, start=10))
    assert (third.analysis.analysed, third.analysis.cached) == (1, 4)


def test_cancel_ends_the_child_and_keeps_what_it_finished(qtbot, service, tmp_path):
    photos = []
    for i in range(10):                   # ten distinct files (one pixel each differs)
        im = fp.astronaut()
        im.putpixel((i, 0), (i, 0, 0))
        photos += fp.save(tmp_path / "many", [(f"a{i}.png", im)])
    records = _records(photos)
    with qtbot.waitSignal(service.progressed, timeout=60_000):
        service.run(records, 1024)
    with qtbot.waitSignal(service.finished, timeout=30_000) as blocker:
        service.cancel()
    outcome = blocker.args[0]
    assert outcome.analysis.cancelled and outcome.analysis.problem == ""
    finished = outcome.analysis.analysed
    assert 1 <= finished < len(records)
    assert len(outcome.report.scores) == finished       # findings for what was measured
    cache = FaceCache(resolve_paths().cache)
    assert sum(cache.get(r.sha256) is not None for r in records) >= finished


def test_identity_score_api_scores_the_stranger_below_the_character(qtbot, service, tmp_path):
    dataset = _records(fp.save(tmp_path / "ds", fp.same_person_variants()[:6]))
    candidates = fp.save(tmp_path / "new", [("same.png", fp.same_person_variants()[7][1]),
                                            ("other.png", fp.stranger()),
                                            ("empty.png", fp.no_face(9))])
    shas = [(p, hashlib.sha256(p.read_bytes()).hexdigest()) for p in candidates]
    got: list[tuple[list, AnalysisResult]] = []
    service.score_identity(dataset, shas, lambda scores, result: got.append((scores, result)))
    qtbot.waitUntil(lambda: bool(got), timeout=120_000)
    scores, result = got[0]
    assert result.problem == ""
    same, other, empty = scores
    assert same.same_person and not other.same_person
    assert same.similarity > other.similarity
    assert empty.face_index is None


def test_without_a_trainer_runtime_the_run_says_what_to_install(qtbot, service, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("ISENGARD_USE_RUNTIME", "1")   # as a frozen app: no checkout torch
    records = _records(fp.save(tmp_path / "x", [("a.png", fp.astronaut())]))
    outcome = _run(qtbot, service, records)
    assert "trainer runtime" in outcome.analysis.problem
    assert "Set-up assistant" in outcome.analysis.problem
    assert outcome.report.findings == ()


def test_missing_model_files_are_named(tmp_path):
    photo = fp.save(tmp_path, [("a.png", fp.astronaut())])[0]
    line = json.dumps({"path": str(photo), "sha256": "0" * 64}) + "\n"
    (tmp_path / "models").mkdir()
    result = subprocess.run([sys.executable, "-m", "isengard_desktop.analysis_runtime", "faces",
                             "--cache", str(tmp_path / "cache"), "--models",
                             str(tmp_path / "models")], input=line, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    event = json.loads(result.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["kind"] == "model_missing"
    assert "shape_predictor_5_face_landmarks.dat" in event["message"]
    assert str(tmp_path / "models") in event["message"]
    bad = subprocess.run([sys.executable, "-m", "isengard_desktop.analysis_runtime", "faces",
                          "--cache", str(tmp_path / "cache")], input="{\"path\": 1}\n",
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "stdin line 1" in json.loads(bad.stdout.splitlines()[-1])["message"]


def test_shutdown_mid_run_ends_the_child_and_emits_nothing(qtbot, tmp_path):
    import psutil

    service = FaceAnalysisService(resolve_paths().ensure())
    photos = []
    for i in range(8):
        im = fp.astronaut()
        im.putpixel((i, 1), (0, i, 0))
        photos += fp.save(tmp_path / "q", [(f"q{i}.png", im)])
    ended: list[object] = []
    service.finished.connect(ended.append)
    with qtbot.waitSignal(service.progressed, timeout=60_000):
        service.run(_records(photos), 1024)

    def analysis_children() -> list[psutil.Process]:
        found = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE and \
                        "isengard_desktop.analysis_runtime" in " ".join(p.cmdline()):
                    found.append(p)
            except psutil.Error:      # gone (or a zombie) while we looked
                continue
        return found

    assert analysis_children()
    service.shutdown()
    assert not analysis_children() and not service.is_running
    qtbot.wait(300)
    assert ended == []


def test_cnn_detector_finds_the_astronaut_and_caches_apart(tmp_path):
    """The optional CNN detector (mmod_human_face_detector.dat; ~4 s a photo on a CPU)."""
    photo = fp.save(tmp_path, [("a.png", fp.astronaut())])[0]
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    line = json.dumps({"path": str(photo), "sha256": sha}) + "\n"

    def run(detector: str) -> list[dict]:
        result = subprocess.run([sys.executable, "-m", "isengard_desktop.analysis_runtime",
                                 "faces", "--cache", str(tmp_path / "cache"), "--detector",
                                 detector], input=line, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return [json.loads(x) for x in result.stdout.splitlines()]

    hog = PhotoFaces.from_json(run("hog")[1]["result"])
    cnn_events = run("cnn")
    assert cnn_events[0]["detector"] == "cnn" and cnn_events[0]["cached"] == 0
    cnn = PhotoFaces.from_json(cnn_events[1]["result"])
    assert len(cnn.faces) == 1
    a, b = hog.faces[0].box, cnn.faces[0].box
    overlap = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * \
        max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    assert overlap > 0.5 * (a[2] - a[0]) * (a[3] - a[1])       # the same face
    assert FaceCache(tmp_path / "cache", "cnn").get(sha) is not None
    assert FaceCache(tmp_path / "cache", "hog").get(sha) is not None


def test_sample_pictures_are_scored_and_the_checkpoint_grid_recommends_the_likeness(
        qtbot, service, tmp_path):
    """The checkpoint comparison's scorer (issue 16 item 4 on issue 15's identity score): a
    job's sample pictures scored against the character's photos; the step whose picture is
    the character is recommended over a stranger's and a faceless one."""
    from isengard_desktop.core.training.checkpoint_grid import build_grid, with_scores
    from isengard_desktop.core.training.protocol import CheckpointEvent, SampleEvent

    dataset = _records(fp.save(tmp_path / "ds", fp.same_person_variants()[:6]))
    samples = fp.save(tmp_path / "samples", [("step000010_0.png", fp.stranger()),
                                             ("step000020_0.png", fp.same_person_variants()[7][1]),
                                             ("step000030_0.png", fp.no_face(4))])
    events = []
    for step, picture in zip((10, 20, 30), samples, strict=True):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "lora.safetensors").write_bytes(b"x")
        events += [SampleEvent(step, str(picture), "a portrait"),
                   CheckpointEvent(step, str(folder), True)]
    got: list[dict] = []
    service.similarity_scorer(dataset)(samples, got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=120_000)
    scores = got[0]
    assert scores[samples[2]] is None                       # no face: no score
    assert scores[samples[1]] > 0.4 > scores[samples[0]]    # same person / a stranger
    grid = with_scores(build_grid(events), scores)
    assert grid.recommended is not None and grid.recommended.step == 20


def test_face_box_source_gives_the_crop_proposals_the_analysed_face(qtbot, service, tmp_path):
    """Crops centre on the face the analysis found (its cache): the astronaut's box, five
    landmarks, and a proposal that keeps it; a photo not analysed yet has none."""
    from isengard_desktop.core.dataset.crops import propose_crop
    from isengard_desktop.core.training.buckets import family_buckets

    records = _records(fp.save(tmp_path / "p", [("a.png", fp.astronaut()),
                                                ("b.png", fp.no_face(2))]))
    later = _records(fp.save(tmp_path / "q", [("c.png", fp.same_person_variants()[1][1])]),
                     start=3)
    _run(qtbot, service, records)
    by_id = {r.id: r for r in records + later}
    source = service.face_box_source(by_id.get)
    box = source(1)
    assert box is not None and len(box.landmarks) == 5
    left, top, right, bottom = fp.ASTRONAUT_FACE
    assert abs(box.x - left) < 12 and abs(box.y - top) < 12
    assert abs(box.x + box.width - right) < 12 and abs(box.y + box.height - bottom) < 12
    assert source(2) is None and source(3) is None and source(99) is None
    proposal = propose_crop(512, 512, box, family_buckets("sdxl"))
    assert proposal is not None
    r = proposal.rect
    assert r.x <= box.x and r.y <= box.y
    assert r.x + r.width >= box.x + box.width and r.y + r.height >= box.y + box.height
