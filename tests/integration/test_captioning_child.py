"""The captioning child end to end on a tiny random Florence-2 (real process, real
transformers ``Florence2ForConditionalGeneration``): batching, events, unreadable photos,
resume, stop, and the errors of a bad job or a missing model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from isengard_desktop.core.captioning.job import CaptionImage, CaptionJob, parse_caption_event
from isengard_desktop.core.captioning.store import read_raw
from tests.helpers.captioning import MODULE, child_env, run_child, tiny_florence, write_job
from tests.helpers.photos import make_photo

__all__ = ["tiny_florence"]   # the session fixture, used by name


def _images(folder, count, start=0):
    return [CaptionImage(f"sha-{i}", str(make_photo(folder / f"p{i}.jpg", (96, 64), seed=i)))
            for i in range(start, start + count)]


def _job(model, out, images, **kw):
    kw = {"max_new_tokens": 8, "num_beams": 1, "batch_size": 2, "device": "cpu", **kw}
    return CaptionJob(model=str(model), model_id="tiny", output=str(out),
                      images=tuple(images), **kw)


def test_batches_events_and_suggestion_file(tiny_florence, tmp_path):
    images = _images(tmp_path / "photos", 5)
    bad = tmp_path / "photos" / "broken.jpg"
    bad.write_bytes(b"not an image")
    gone = tmp_path / "photos" / "gone.jpg"
    images[2:2] = [CaptionImage("sha-bad", str(bad)), CaptionImage("sha-gone", str(gone))]
    out = tmp_path / "char" / ".captioning" / "suggestions.jsonl"
    job_file = write_job(tmp_path / "job.json", _job(tiny_florence, out, images))

    code, events, stderr = run_child(job_file)

    assert code == 0, stderr[-2000:]
    names = [e.event for e in events]
    assert names[0] == "phase" and names[-1] == "done"
    started = next(e for e in events if e.event == "started")
    assert started.get("total") == 7 and started.get("skipped") == 0
    assert started.get("device") == "cpu" and started.get("batch_size") == 2
    captions = [e for e in events if e.event == "caption"]
    assert [e.get("key") for e in captions] == [f"sha-{i}" for i in range(5)]
    assert [e.get("done") for e in captions] == sorted(e.get("done") for e in captions)
    assert captions[-1].get("done") == 7 and all(e.get("total") == 7 for e in captions)
    assert all(isinstance(e.get("raw"), str) for e in captions)
    errors = {e.get("key"): e.get("message") for e in events if e.event == "caption_error"}
    assert "broken.jpg" in errors["sha-bad"] and "cannot be read" in errors["sha-bad"]
    assert "gone.jpg" in errors["sha-gone"] and "gone" in errors["sha-gone"]
    assert events[-1].get("captioned") == 5 and events[-1].get("failed") == 2
    # batches of 2: [p0 p1] [broken gone] (nothing to generate) [p2 p3] [p4]
    assert re.findall(r"batch of (\d+)", stderr) == ["2", "2", "1"]
    stored = read_raw(out)
    assert sorted(stored) == [f"sha-{i}" for i in range(5)]
    assert {k: r.raw for k, r in stored.items()} == {e.get("key"): e.get("raw")
                                                     for e in captions}
    assert all(r.model == "tiny" for r in stored.values())


def test_a_second_run_resumes(tiny_florence, tmp_path):
    out = tmp_path / "s.jsonl"
    first = _images(tmp_path / "photos", 3)
    code, events, _ = run_child(write_job(tmp_path / "job1.json",
                                          _job(tiny_florence, out, first)))
    assert code == 0 and events[-1].get("captioned") == 3
    before = out.read_text(encoding="utf-8")

    more = first + _images(tmp_path / "photos", 2, start=3)
    code, events, _ = run_child(write_job(tmp_path / "job2.json",
                                          _job(tiny_florence, out, more)))
    assert code == 0
    started = next(e for e in events if e.event == "started")
    assert started.get("total") == 2 and started.get("skipped") == 3
    assert [e.get("key") for e in events if e.event == "caption"] == ["sha-3", "sha-4"]
    assert out.read_text(encoding="utf-8").startswith(before)   # appended, nothing rewritten

    code, events, _ = run_child(write_job(tmp_path / "job3.json",
                                          _job(tiny_florence, out, more)))
    assert code == 0 and [e.event for e in events][-2:] == ["started", "done"]
    assert events[-1].get("captioned") == 0
    assert len(read_raw(out)) == 5


def test_stop_on_stdin_keeps_finished_photos_and_resumes(tiny_florence, tmp_path):
    out = tmp_path / "s.jsonl"
    images = _images(tmp_path / "photos", 30)
    job_file = write_job(tmp_path / "job.json",
                         _job(tiny_florence, out, images, batch_size=1, max_new_tokens=200))
    events = []
    with subprocess.Popen([sys.executable, "-m", MODULE, "run", "--job", str(job_file)],
                          env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            for line in proc.stdout:
                event = parse_caption_event(line)
                assert event is not None, line
                events.append(event)
                if event.event == "caption":
                    proc.stdin.write("stop\n")
                    proc.stdin.flush()
                    break
            events += [parse_caption_event(line) for line in proc.stdout]
            assert proc.wait(timeout=120) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert events[-1].event == "stopped"
    done = events[-1].get("captioned")
    assert 1 <= done < 30
    assert len(read_raw(out)) == done   # every reported caption is on disk

    code, events, _ = run_child(write_job(tmp_path / "job2.json",
                                          _job(tiny_florence, out, images, batch_size=8)))
    started = next(e for e in events if e.event == "started")
    assert code == 0 and started.get("total") == 30 - done and started.get("skipped") == done
    assert len(read_raw(out)) == 30


def test_bad_job_and_missing_model_are_named(tiny_florence, tmp_path):
    job_file = tmp_path / "job.json"
    data = json.loads(_job(tiny_florence, tmp_path / "s.jsonl", []).to_json())
    data["task"] = "<OD>"
    job_file.write_text(json.dumps(data), encoding="utf-8")
    code, events, _ = run_child(job_file)
    assert code == 2
    assert events[-1].event == "error" and events[-1].get("kind") == "config"
    assert "task" in events[-1].get("message") and "job.json" in events[-1].get("message")

    missing = tmp_path / "no-model"
    code, events, _ = run_child(write_job(
        tmp_path / "job2.json", _job(missing, tmp_path / "s.jsonl",
                                     _images(tmp_path / "photos", 1))))
    assert code == 1
    assert events[-1].event == "error" and events[-1].get("kind") == "model_missing"
    assert str(missing) in events[-1].get("message")
