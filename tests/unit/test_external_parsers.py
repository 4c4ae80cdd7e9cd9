"""The shared external-trainer helpers: tqdm/postfix parsing, error kinds, the base parser's
stream handling and launcher lines, checkpoint pointers, output scanning, TOML writing and the
launcher's own file work (plugins/external/parsing.py, external/files.py, external/trainer_shim.py)."""

from __future__ import annotations

import json
import os
import time
import tomllib
from pathlib import Path

import pytest

from isengard_desktop.core.training.checkpoints import latest_complete
from isengard_desktop.core.training.protocol import (
    ErrorEvent,
    LogEvent,
    PhaseEvent,
    StoppedEvent,
)
from isengard_desktop.core.training.dataset_list import DatasetEntry, write_dataset_list
from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.external import trainer_shim as shim
from isengard_desktop.plugins.external.parsing import (
    ExternalParser,
    classify_error,
    parse_clock,
    parse_postfix,
    parse_tqdm,
)
from isengard_desktop.plugins.external.files import (
    OutputScanner,
    dump_toml,
    external_checkpoints,
    forget_checkpoint,
    record_checkpoint,
    require_path,
    stage_job_dataset,
)


# -- tqdm frames ---------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("my_lora:  13%|█▎        | 250/2000 [02:03<14:21,  2.03it/s, lr: 1.0e-04 loss: "
     "4.123e-01]", ("my_lora", 250, 2000, 123.0, 861.0, 2.03, "lr: 1.0e-04 loss: 4.123e-01")),
    ("steps:  12%|█▏        | 441/3680 [15:02<1:50:30,  2.05s/it, avr_loss=0.312]",
     ("steps", 441, 3680, 902.0, 6630.0, 1 / 2.05, "avr_loss=0.312")),
    ("steps:   0%|          | 0/3680 [00:00<?, ?it/s]", ("steps", 0, 3680, 0.0, None, 0.0, "")),
    (" 33%|███       | 1/3 [00:00<00:00, 67276.64it/s]", ("", 1, 3, 0.0, 0.0, 67276.64, "")),
    ("Generating Images:  50%|█████     | 1/2", ("Generating Images", 1, 2, 0.0, None, 0.0,
                                                 "")),
])
def test_parse_tqdm_real_frames(line, expected):
    frame = parse_tqdm(line)
    assert frame is not None
    desc, n, total, elapsed, remaining, rate, postfix = expected
    assert (frame.desc, frame.n, frame.total, frame.elapsed_s, frame.remaining_s,
            frame.postfix) == (desc, n, total, elapsed, remaining, postfix)
    assert frame.rate == pytest.approx(rate)
    if "s/it" in line:
        assert frame.sec_per_it == pytest.approx(2.05)


@pytest.mark.parametrize("line", ["Saving at step 250", "epoch 1/10", "loss: 0.1",
                                  "100 % done", ""])
def test_parse_tqdm_rejects_other_lines(line):
    assert parse_tqdm(line) is None


def test_parse_clock_and_postfix():
    assert parse_clock("02:03") == 123 and parse_clock("1:02:03") == 3723
    assert parse_clock("?") is None and parse_clock(None) is None and parse_clock("x") is None
    assert parse_postfix("lr: 1.0e-04 loss: 4.123e-01") == {"lr": 1e-4, "loss": 0.4123}
    assert parse_postfix("avr_loss=0.0812") == {"avr_loss": 0.0812}
    assert parse_postfix("loss=0.0912, smooth loss=0.104") == {"loss": 0.0912,
                                                               "smooth loss": 0.104}
    values = parse_postfix("Keys Scaled=3, Average key norm=0.5, avr_loss=nan")
    assert values["keys scaled"] == 3 and values["avr_loss"] != values["avr_loss"]


@pytest.mark.parametrize("line, kind", [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.", "oom"),
    ("RuntimeError: CUDA error: out of memory", "oom"),
    ("OSError: [Errno 28] No space left on device", "disk_full"),
    ("OSError: /m/flux does not appear to have a file named config.json.", "model_missing"),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/m/ae.safetensors'",
     "model_missing"),
    ("# OOM during training step, skipping batch 1/3 #", None),
    ("steps:  12%|█▏ | 441/3680 [15:02<1:50:30,  2.05s/it, avr_loss=0.312]", None),
])
def test_classify_error(line, kind):
    assert classify_error(line) == kind


# -- the base parser -------------------------------------------------------------------------
class Recorder(ExternalParser):
    tool = "tool"

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str, bool]] = []

    def on_line(self, stream, line, redraw, out):
        self.lines.append((stream, line, redraw))


def test_base_parser_splits_redraws_ansi_and_partial_reads():
    parser = Recorder()
    assert parser.feed("stderr", "\x1b[32mstep\x1b[0ms:  1%|") == []
    parser.feed("stderr", "| 1/100 [00:01<01:39, 1.00it/s]\rsteps:  2%|| 2/100 [00:02<")
    parser.feed("stderr", "01:38, 1.00it/s]\r")
    parser.feed("stderr", "\n\x1b[A\x1b[2Kdone\n")
    assert parser.lines == [
        ("stderr", "steps:  1%|| 1/100 [00:01<01:39, 1.00it/s]", True),
        ("stderr", "steps:  2%|| 2/100 [00:02<01:38, 1.00it/s]", False),
        ("stderr", "done", False)]
    # a \r\n split across two reads is one line end, not a redraw plus a blank line
    parser.lines.clear()
    parser.feed("stdout", "a\r")
    parser.feed("stdout", "\nb\n")
    assert [(line, redraw) for _, line, redraw in parser.lines] == [("a", False), ("b", False)]


def test_base_parser_errors_once_and_stderr_levels():
    parser = Recorder()
    events = parser.feed("stderr", "Traceback (most recent call last):\n"
                                   "torch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB\n"
                                   "RuntimeError: CUDA error: out of memory\n"
                                   "/x.py:1: FutureWarning: old\n")
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].kind == "oom"
    assert "CUDA out of memory" in errors[0].message and "GPU ran out of memory" in \
        errors[0].message
    assert LogEvent("warning", "/x.py:1: FutureWarning: old") in events
    # stdout warnings are shown as text by the runner: no duplicate log event
    assert parser.feed("stdout", "WARNING: something\n") == []


def test_base_parser_reads_launcher_lines(tmp_path):
    parser = Recorder()
    context = {"tool": "tool", "job_dir": str(tmp_path), "steps": 100, "name": "n",
               "resume": {"step": 40, "lora": "/o/n_40.safetensors"}}
    events = parser.feed("stdout", "[isengard] context " + json.dumps(context) + "\n"
                         '[isengard] note {"level":"warning","message":"moved 1"}\n'
                         '[isengard] stop {"saving":false}\n')
    assert parser.context["steps"] == 100 and parser.total == 100
    assert parser.last_checkpoint.step == 40
    assert LogEvent("warning", "moved 1") in events
    assert PhaseEvent("saving", 0, 0, "stopping") in events
    parser.step = 55
    events = parser.feed("stdout", '[isengard] stopped {"saved":false,"step":-1}\n')
    assert events[-1] == StoppedEvent(40, "/o/n_40.safetensors")
    assert "resume continues from its newest save, step 40" in events[0].message
    # without any save the job is stopped, not resumable, and the user is told
    parser = Recorder()
    parser.feed("stdout", "[isengard] context " + json.dumps({"job_dir": str(tmp_path)}) + "\n")
    events = parser.feed("stdout", '[isengard] stopped {"saved":false,"step":-1}\n')
    assert events[-1] == StoppedEvent(0, "") and "cannot be resumed" in events[0].message
    events = parser.feed("stdout", '[isengard] error {"kind":"config","message":"no images"}\n')
    assert events == [ErrorEvent("config", "tool: no images")]
    assert parser.feed("stdout", "[isengard] context {broken\n") == []


def test_phase_events_are_throttled():
    parser = Recorder()
    out: list = []
    for done in range(50):
        parser.phase("caching", out, done, 100)
    parser.phase("caching", out, 100, 100)
    assert out[0] == PhaseEvent("caching", 0, 100, "") and out[-1].done == 100
    assert len(out) <= 3
    parser.phase("training", out)
    assert out[-1].phase == "training"


# -- checkpoint pointers -------------------------------------------------------------------------
def test_checkpoint_pointers_make_a_job_resumable(tmp_path):
    job_dir = tmp_path / "job"
    lora = tmp_path / "out" / "x_000000050.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"12345678")
    assert latest_complete(job_dir) is None
    found = record_checkpoint(job_dir, 50, "ai-toolkit", str(lora))
    assert found.step == 50 and found.resumable
    info = latest_complete(job_dir)
    assert info is not None and info.step == 50
    assert [c.step for c in external_checkpoints(job_dir, "ai-toolkit")] == [50]
    assert external_checkpoints(job_dir, "kohya") == []
    state = tmp_path / "out" / "x-step00000060-state"
    record_checkpoint(job_dir, 60, "kohya", str(lora), str(state))
    assert external_checkpoints(job_dir, "kohya") == []          # its state folder is gone
    state.mkdir()
    assert external_checkpoints(job_dir, "kohya")[0].state == str(state)
    record_checkpoint(job_dir, 70, "kohya", str(lora), str(state), resumable=False)
    assert not (job_dir / "checkpoints" / "checkpoint-70").exists()
    forget_checkpoint(job_dir, 60)
    forget_checkpoint(job_dir, 999)
    assert not (job_dir / "checkpoints" / "checkpoint-60").exists()
    lora.unlink()                                                # the tool removed its save
    assert external_checkpoints(job_dir, "ai-toolkit") == []


def test_output_scanner_reports_new_settled_files_once(tmp_path):
    import re

    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "1__000000010_0.jpg").write_bytes(b"old")
    scanner = OutputScanner(folder, re.compile(r"\d+__(?P<step>\d{9})_(?P<i>\d+)\.jpg"),
                            interval_s=0.0, settle_s=0.2)
    scanner.prime()
    assert scanner.scan() == []
    new = folder / "2__000000020_0.jpg"
    new.write_bytes(b"jpeg")
    (folder / "3__000000020_1.jpg").write_bytes(b"")           # still empty
    (folder / "notes.txt").write_text("x")
    assert scanner.scan() == []                                  # too fresh
    old = time.time() - 5
    os.utime(new, (old, old))
    found = scanner.scan()
    assert [(p.name, m.group("step")) for p, m in found] == [(new.name, "000000020")]
    assert scanner.scan() == []
    (folder / "3__000000020_1.jpg").write_bytes(b"done")
    assert [p.name for p, _ in scanner.scan(force=True)] == ["3__000000020_1.jpg"]


def test_dump_toml_round_trips_windows_paths_and_tables():
    data = {"top": "C:\\Users\\me\\lora \"x\"", "n": 3, "lr": 1e-4, "f": 2.0, "on": True,
            "skip": None, "list": [1, 2],
            "general": {"caption_extension": ".txt"},
            "datasets": [{"resolution": 512, "subsets": [{"image_dir": "D:\\data",
                                                          "class_tokens": "ohwx person"}]}]}
    text = dump_toml(data)
    parsed = tomllib.loads(text)
    assert "skip" not in parsed
    data.pop("skip")
    assert parsed == data
    assert "[[datasets.subsets]]" in text and "\n[general]\n" in text


def test_require_path(tmp_path):
    with pytest.raises(SpecError, match="^fields.ae: the AE is not set"):
        require_path("fields.ae", "", "the AE")
    with pytest.raises(SpecError, match="base_model: the base model .* does not exist"):
        require_path("base_model", str(tmp_path / "nope"), "the base model")
    (tmp_path / "f").write_text("x")
    with pytest.raises(SpecError, match="dataset_dir"):
        require_path("dataset_dir", str(tmp_path / "f"), "the dataset", folder=True)
    assert require_path("x", str(tmp_path), "a folder", folder=True) == str(tmp_path)


# -- the launcher's file work ------------------------------------------------------------------
def test_the_job_dataset_is_staged_from_its_photo_list_only(tmp_path):
    """ai-toolkit and kohya get the job's listed photos (the database's rows at its start),
    staged by the app with trigger captions: a photo on disk without a row is not staged
    (issue 11, item 3: folder has 5 photos, the list 3 → 3 staged)."""
    source = tmp_path / "ds"
    source.mkdir()
    names = ["a.png", "b.JPG", "c.webp", "d.png", "e.png"]
    for name in names:
        (source / name).write_bytes(b"img-" + name.encode())
        (source / name).with_suffix(".txt").write_text("stale sidecar", encoding="utf-8")
    (source / "readme.md").write_text("not an image")
    paths = JobPaths(tmp_path / "job")
    listed = [DatasetEntry(str(source / "a.png"), "a woman, smiling"),
              DatasetEntry(str(source / "b.JPG"), "alc in a park"),
              DatasetEntry(str(source / "c.webp"), "")]
    write_dataset_list(paths.root, listed)
    job = TrainingJob(job_id="j", character_id=1, character_name="Alice", trigger_word="alc",
                      family="flux-dev", base_model="/m", dataset_dir=str(source),
                      output_name="alice")
    target = paths.root / "dataset"
    captions = stage_job_dataset(job, paths)
    assert sorted(p.name for p in target.iterdir()) == ["a.png", "b.JPG", "c.webp"]
    assert {p.name: t.strip() for p, t in captions.items()} == {
        "a.txt": "alc, a woman, smiling", "b.txt": "alc in a park", "c.txt": "alc"}
    assert os.path.samefile(source / "a.png", target / "a.png")   # hard link, not a copy
    for path, text in captions.items():
        path.write_text(text, encoding="utf-8")
    # a photo that left the list leaves the staged folder; unchanged captions are not
    # rewritten (a tool's cache keyed on them stays valid)
    write_dataset_list(paths.root, listed[:1])
    assert stage_job_dataset(job, paths) == {}
    assert sorted(p.name for p in target.iterdir()) == ["a.png", "a.txt"]
    assert (source / "b.JPG").exists()
    write_dataset_list(paths.root, [])
    with pytest.raises(SpecError, match="dataset.json: .*lists no photos"):
        stage_job_dataset(job, paths)
    write_dataset_list(paths.root, [DatasetEntry(str(source / "gone.png"), "")])
    with pytest.raises(SpecError, match="dataset.json: the photo .*gone.png is gone"):
        stage_job_dataset(job, paths)
    paths.dataset_list.unlink()
    with pytest.raises(SpecError, match="dataset.json: .* is missing"):
        stage_job_dataset(job, paths)


def test_launcher_sets_aside_saves_the_app_did_not_see_complete(tmp_path):
    folder = tmp_path / "out" / "alice"
    folder.mkdir(parents=True)
    for name in ("alice_000000050.safetensors", "alice_000000100.safetensors",
                 "alice_000000120.safetensors", "optimizer.pt", "loss_log.db"):
        (folder / name).write_bytes(b"x")
    keep = [str(folder / "alice_000000100.safetensors"),
            str(folder / "alice_000000050.safetensors")]
    shim.set_aside({"folder": str(folder), "prefix": "alice", "keep": keep})
    assert sorted(p.name for p in folder.iterdir()) == [
        ".isengard-set-aside", "alice_000000050.safetensors", "alice_000000100.safetensors",
        "loss_log.db", "optimizer.pt"]
    moved = list((folder / ".isengard-set-aside").rglob("*.safetensors"))
    assert [p.name for p in moved] == ["alice_000000120.safetensors"]
    shim.set_aside({"folder": str(folder), "prefix": "alice", "keep": []})   # fresh start
    assert sorted(p.name for p in folder.iterdir()) == [".isengard-set-aside", "loss_log.db"]
    shim.set_aside({"folder": str(tmp_path / "none"), "prefix": "alice", "keep": []})


def test_launcher_refuses_a_bad_command_line(tmp_path, capsys):
    assert shim.main(["ctx.json"]) == 2
    context = tmp_path / "ctx.json"
    context.write_text(json.dumps({"tool": "kohya", "stage_dataset": {
        "source": str(tmp_path / "missing"), "target": str(tmp_path / "t")}}))
    assert shim.main([str(context), "--", str(tmp_path / "train.py")]) == 2
    out = capsys.readouterr().out
    assert '[isengard] error {"kind":"config"' in out and "does not exist" in out
    context.write_text(json.dumps({"tool": "kohya", "stop_file": str(tmp_path / "x.stop")}))
    assert shim.main([str(context), "--", str(tmp_path / "train.py")]) == 2
    assert "train.py does not exist" in capsys.readouterr().out
    assert Path(shim.__file__).read_text().count("import torch") == 0
