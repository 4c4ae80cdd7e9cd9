"""Face crops through the real services (issue 15 item 3): the crop service proposes and stores
crops in the database (a face source injected, as the face analysis will connect one), keeps
a crop set by hand, survives a restart, and the training service puts the crops in the job's
``dataset.json``; the real built-in trainer then trains on the cropped photos and writes its
LoRA with the usual metadata and step count."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.core.dataset.crops import CropRect, FaceBox
from isengard_desktop.core.db.crops import CropsRepository, ImageCrop
from isengard_desktop.core.training.spec import TrainingJob, new_job_id
from isengard_desktop.services.crops import NO_FACE_DATA, CropService
from tests.integration.test_training_service import Harness, safetensors_metadata

pytestmark = [pytest.mark.integration]

WAIT = 30_000


@pytest.fixture
def h(qtbot):
    harness = Harness(qtbot)
    yield harness
    harness.close()


def import_photos(h: Harness, tmp_path: Path, sizes: list[tuple[int, int]]) -> list[int]:
    folder = tmp_path / "src"
    folder.mkdir()
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"p{i}.png"
        Image.new("RGB", size, (40 * i, 90, 160)).save(path)
        path.with_suffix(".txt").write_text(f"a photo {i}", encoding="utf-8")
        paths.append(path)
    h.library.import_photos(h.character.id, paths)
    h.qtbot.waitUntil(lambda: h.library.image_count(h.character.id) == len(sizes), timeout=WAIT)
    return [i.id for i in sorted(h.library.images(h.character.id), key=lambda i: i.path.name)]


def stored_crops(h: Harness) -> dict[int, ImageCrop]:
    out: list = []
    h.library.database.read(lambda conn: CropsRepository(conn).list_crops(), out.append)
    h.qtbot.waitUntil(lambda: bool(out), timeout=WAIT)
    return out[0]


def test_proposals_are_stored_manual_crops_kept_and_faceless_photos_skipped(h, tmp_path):
    ids = import_photos(h, tmp_path, [(600, 800), (800, 600), (640, 640)])
    crops = CropService(h.library)
    # before the stored crops are loaded nothing is proposed (a hand-set crop is not known)
    assert not crops.propose(ids, "sdxl") and not crops.is_proposing
    crops.start()
    h.qtbot.waitUntil(lambda: crops.is_ready, timeout=WAIT)
    outcomes: list = []
    crops.proposals_finished.connect(outcomes.append)
    changes: list = []
    h.library.data_changed.connect(changes.append)

    # no face analysis connected yet: every photo is skipped, saying what to do
    assert crops.propose(ids, "sdxl")
    h.qtbot.waitUntil(lambda: bool(outcomes), timeout=WAIT)
    assert outcomes[0].proposed == () and {r for _, r in outcomes[0].skipped} == {NO_FACE_DATA}
    assert stored_crops(h) == {}

    faces = {ids[0]: FaceBox(250, 200, 100, 120), ids[1]: FaceBox(100, 100, 90, 90)}
    crops.set_face_source(faces.get)
    manual = ImageCrop(CropRect(0, 0, 500, 500), (1024, 1024), "manual")
    crops.set_crop(ids[1], manual)
    h.qtbot.waitUntil(lambda: crops.crop(ids[1]) == manual, timeout=WAIT)
    outcomes.clear()
    changes.clear()
    assert crops.propose(ids, "sdxl")
    assert not crops.propose(ids, "sdxl")      # one run at a time
    h.qtbot.waitUntil(lambda: bool(outcomes), timeout=WAIT)
    outcome = outcomes[0]
    assert outcome.proposed == (ids[0],)
    assert outcome.kept_manual == (ids[1],)
    assert outcome.skipped == ((ids[2], "no face found"),)
    assert outcome.small == (ids[0],)          # under SDXL's 1024 px: training upscales it
    proposed = crops.crop(ids[0])
    assert proposed is not None and proposed.source == "proposed"
    assert proposed.rect.fits(600, 800) and proposed.bucket[0] < proposed.bucket[1]
    assert any(c.images and h.character.id in c.character_ids for c in changes)
    # stored in the database, read back by a fresh service (an app restart)
    assert stored_crops(h) == {ids[0]: proposed, ids[1]: manual}
    again = CropService(h.library)
    again.start()
    h.qtbot.waitUntil(lambda: again.is_ready, timeout=WAIT)
    assert again.crop(ids[0]) == proposed and again.rect(ids[1]) == manual.rect
    # Reset = no crop; a crop outside the photo is refused naming it
    failures: list[str] = []
    crops.failed.connect(failures.append)
    crops.set_crop(ids[1], None)
    h.qtbot.waitUntil(lambda: crops.crop(ids[1]) is None, timeout=WAIT)
    crops.set_crop(ids[0], ImageCrop(CropRect(500, 0, 200, 200), (1024, 1024), "manual"))
    assert len(failures) == 1 and re.fullmatch(
        r"p0-\w+\.png: the crop 200×200 at \(500, 0\) lies outside the photo \(600×800\); "
        r"adjust or reset it in the Dataset tab", failures[0])
    # a deleted photo takes its crop with it
    h.library.delete_images([ids[0]], allow_permanent=True)
    h.qtbot.waitUntil(lambda: crops.crop(ids[0]) is None, timeout=WAIT)
    assert stored_crops(h) == {}
    again.shutdown()
    crops.shutdown()


@pytest.mark.timeout(240)
def test_the_built_in_trainer_trains_on_the_crops(h, tmp_path):
    from isengard_desktop.training_runtime import tiny_models as tiny

    model = tiny.build_sd15(tmp_path / "sd15")
    ids = import_photos(h, tmp_path, [(128, 96), (96, 128), (96, 96)])
    crops = CropService(h.library)
    crops.start()
    h.qtbot.waitUntil(lambda: crops.is_ready, timeout=WAIT)
    h.service.crop_of = crops.rect
    tall = ImageCrop(CropRect(20, 0, 64, 96), (64, 96), "manual")   # 2:3 of the 128x96 photo
    crops.set_crop(ids[0], tall)
    h.qtbot.waitUntil(lambda: crops.crop(ids[0]) == tall, timeout=WAIT)
    folder = h.library.character_folder(h.character)
    job = TrainingJob(job_id=new_job_id(), character_id=h.character.id,
                      character_name=h.character.name, trigger_word="sks", family="sd15",
                      base_model=str(model), dataset_dir=str(folder), output_name="alice_lora",
                      backend="builtin", resolution=64, rank=4, alpha=8.0, learning_rate=5e-3,
                      steps=6, batch_size=1, sample_every=0, checkpoint_every=0,
                      gradient_checkpointing=False)
    h.service.submit(job)
    done = h.wait_final(job.job_id, timeout=200_000)
    assert done.state == "completed", done.error_message
    listed = json.loads(done.paths.dataset_list.read_text(encoding="utf-8"))["images"]
    by_name = {Path(i["path"]).name: i for i in listed}
    first = h.library.image(ids[0])
    assert first is not None
    assert by_name[first.path.name]["crop"] == {"x": 20, "y": 0, "width": 64, "height": 96}
    assert sum("crop" in i for i in listed) == 1
    assert done.step == 6 and Path(done.lora_path).is_file()
    meta = safetensors_metadata(Path(done.lora_path))
    assert meta["ss_num_train_images"] == "3" and meta["ss_max_train_steps"] == "6"
    assert "Skipping" not in done.paths.stdout.read_text()     # no photo was left out
    with Image.open(first.path) as img:
        assert img.size == (128, 96)                            # the photo is untouched
    crops.shutdown()
