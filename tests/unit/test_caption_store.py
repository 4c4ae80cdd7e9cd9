"""The captioning job file, its event lines, the suggestion store and the models list."""

from __future__ import annotations

import json
import re

import pytest

from isengard_desktop.core.captioning.job import (CaptionImage, CaptionJob, JobError,
                                                  caption_event_line, parse_caption_event)
from isengard_desktop.core.captioning.models import (installed_models, load_models, model_dir,
                                                     model_ready)
from isengard_desktop.core.captioning.store import (Decision, DecisionStatus, RawCaption,
                                                    append_raw, pending_keys, read_raw,
                                                    read_review, review_file,
                                                    suggestions_file, write_review)


def _job(**kw):
    base = {"model": "/m", "output": "/o/s.jsonl",
            "images": (CaptionImage("k1", "/p/1.jpg"), CaptionImage("k2", "/p/2.jpg"))}
    return CaptionJob(**{**base, **kw})


def test_job_round_trip():
    job = _job(batch_size=4, device="cpu", task="<CAPTION>")
    assert CaptionJob.from_json(job.to_json()) == job


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("task", "<OD>", "task"),
    ("device", "tpu", "device"),
    ("batch_size", 0, "batch_size"),
    ("batch_size", True, "batch_size"),
    ("max_new_tokens", 5000, "max_new_tokens"),
    ("model", "", "model"),
    ("images", [{"key": "k"}], "images[0]"),
    ("v", 2, "'v'"),
])
def test_bad_job_names_the_field(field, value, needle):
    data = json.loads(_job().to_json())
    data[field] = value
    with pytest.raises(JobError, match=r"caption_job\.json.*" + re.escape(needle)):
        CaptionJob.from_json(json.dumps(data), source="caption_job.json")


def test_event_lines_round_trip_and_unknown_lines_are_ignored():
    line = caption_event_line("caption", key="k", image="/p.jpg", raw="a dog", done=1, total=2)
    event = parse_caption_event(line)
    assert event is not None and event.event == "caption"
    assert event.data == {"key": "k", "image": "/p.jpg", "raw": "a dog", "done": 1, "total": 2}
    assert parse_caption_event("loading weights 50%") is None
    assert parse_caption_event('{"v":2,"event":"caption"}') is None
    assert parse_caption_event('{"v":1,"event":"step"}') is None
    assert parse_caption_event('{"v":1,') is None
    with pytest.raises(ValueError):
        caption_event_line("nonsense")


def test_suggestions_append_and_torn_last_line(tmp_path):
    path = suggestions_file(tmp_path / "Anna")
    assert path.parent.name == ".captioning" and read_raw(path) == {}
    append_raw(path, RawCaption("k1", "/p/1.jpg", "a woman", "tiny"))
    append_raw(path, RawCaption("k2", "/p/2.jpg", "a man"))
    append_raw(path, RawCaption("k1", "/p/1.jpg", "a woman again"))   # the latest wins
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"v":1,"key":"k3","ima')          # a crash mid-line
    got = read_raw(path)
    assert sorted(got) == ["k1", "k2"]
    assert got["k1"].raw == "a woman again" and got["k2"].model == ""
    assert pending_keys(["k1", "k3", "k2", "k3", "k4"], got) == ["k3", "k4"]


def test_review_round_trip_and_broken_file(tmp_path):
    path = review_file(tmp_path / "Anna")
    assert read_review(path) == {}
    decisions = {"k1": Decision(DecisionStatus.ACCEPTED, "ohwx, a woman"),
                 "k2": Decision(DecisionStatus.SKIPPED), "k3": Decision(None, "edited")}
    write_review(path, decisions)
    assert read_review(path) == decisions
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="review.json"):
        read_review(path)
    path.write_text('{"v":1}', encoding="utf-8")
    with pytest.raises(ValueError, match="decisions"):
        read_review(path)


def test_models_list_and_readiness(tmp_path):
    models = load_models()
    assert [m.id for m in models] == ["florence-2-base", "florence-2-large"]
    assert all(m.licence == "MIT" and m.repo.startswith("florence-community/") for m in models)
    base = models[0]
    folder = model_dir(tmp_path, base)
    assert folder == tmp_path / "LLM" / "Florence-2-base"
    assert not model_ready(folder) and installed_models(tmp_path) == {}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    assert not model_ready(folder)
    (folder / "model.safetensors").write_bytes(b"x")
    assert model_ready(folder) and installed_models(tmp_path) == {"florence-2-base": folder}
    assert "MIT" in base.describe() and "0.23B" in base.describe()


def test_broken_models_file_names_entry_and_field(tmp_path):
    bad = tmp_path / "models.toml"
    bad.write_text('schema = 1\n[[models]]\nid = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"models\.toml: models\[0\].*label"):
        load_models(bad)


def test_models_name_a_revision_and_an_empty_one_is_refused(tmp_path):
    assert all(m.revision == "main" for m in load_models())
    entry = ('schema = 1\n[[models]]\nid = "x"\nlabel = "X"\nrepo = "o/x"\npage = "p"\n'
             'folder = "X"\nparams = "1B"\napprox_size = "2 GB"\nlicence = "MIT"\n'
             'min_vram_gb = 4\nbatch_size = 2\n')
    plain = tmp_path / "plain.toml"
    plain.write_text(entry, encoding="utf-8")
    assert load_models(plain)[0].revision == "main"          # the default
    pinned = tmp_path / "pinned.toml"
    pinned.write_text(entry + 'revision = "' + "ab" * 20 + '"\n', encoding="utf-8")
    assert load_models(pinned)[0].revision == "ab" * 20
    empty = tmp_path / "models.toml"
    empty.write_text(entry + 'revision = " "\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"models\.toml: models\[0\]: field 'revision'"):
        load_models(empty)
