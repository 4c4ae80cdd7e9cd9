"""The out-of-memory tier policy (core/training/oom.py) per family and backend, the notes
it writes, the give-up message, and the recovery count stored on a job row (migration 6)."""

from __future__ import annotations

import sqlite3

import pytest

from isengard_desktop.core.db.jobs import JobRow, JobsRepository
from isengard_desktop.core.db.schema import connect
from isengard_desktop.core.training.oom import (MAX_RECOVERIES, give_up_message,
                                                lower_resolution, next_tier)
from isengard_desktop.core.training.spec import TrainingJob

BUILTIN_Q = ["none", "int8", "float8"]
FLOAT8_ONLY = ["none", "float8"]


def job(family: str = "sdxl", backend: str = "builtin", **values) -> TrainingJob:
    base = dict(job_id="j1", character_id=1, character_name="Alice", trigger_word="alc",
                family=family, base_model="/m/base.safetensors", dataset_dir="/d",
                output_name="alice", backend=backend, resolution=1024, batch_size=1,
                gradient_checkpointing=True, steps=1500)
    return TrainingJob(**(base | values))


def walk(start: TrainingJob, quantize=(), swap=None) -> list[TrainingJob]:
    """Every tier below ``start`` until the policy gives up."""
    out, cur = [], start
    while (tier := next_tier(cur, quantize, swap(cur) if swap else None)) is not None:
        out.append(tier.job)
        cur = tier.job
        assert len(out) < 20
    return out


@pytest.mark.parametrize("family, start, expected", [
    ("sdxl", 1024, [768, 512]),
    ("flux-dev", 1024, [768, 512]),
    ("chroma", 1536, [1280, 1024, 768, 512]),
    ("sd15", 768, [512, 384]),
    ("sd15", 640, [512, 384]),
])
def test_resolution_steps_down_bucket_by_bucket_to_the_family_floor(family, start, expected):
    tiers = walk(job(family, resolution=start))
    assert [t.resolution for t in tiers] == expected
    assert lower_resolution(expected[-1], family) == expected[-1]


def test_first_tier_turns_every_saver_on_and_keeps_the_effective_batch_and_steps():
    start = job("sd15", resolution=768, batch_size=2, grad_accum=2,
                gradient_checkpointing=False, steps=3000)
    tier = next_tier(start, BUILTIN_Q)
    assert tier is not None
    new = tier.job
    assert (new.resolution, new.batch_size, new.grad_accum) == (512, 1, 4)
    assert new.gradient_checkpointing and new.steps == 3000
    assert new.quantize_base == "none"            # SD 1.5: no 8-bit base
    assert start.resolution == 768 and start.batch_size == 2   # the input is not changed
    assert tier.note(812) == ("recovered from out-of-memory at step 812: 768 → 512 px, batch "
                              "2 → 1 (gradient accumulation 2 → 4), gradient checkpointing on")


def test_flux_gets_an_8bit_base_from_what_the_backend_can_load():
    builtin = next_tier(job("flux-dev"), BUILTIN_Q)
    assert builtin is not None and builtin.job.quantize_base == "int8"
    assert "base model in 8-bit (int8)" in builtin.changes
    kohya = next_tier(job("flux-dev", "kohya"), FLOAT8_ONLY, (0, 35))
    assert kohya is not None and kohya.job.quantize_base == "float8"
    # a backend that cannot quantize: only the resolution
    other = next_tier(job("chroma", "fake"), ["none"])
    assert other is not None and other.job.quantize_base == "none"
    assert other.changes == ("1024 → 768 px",)
    # SDXL never gets one, whatever the backend offers
    sdxl = next_tier(job("sdxl"), BUILTIN_Q)
    assert sdxl is not None and sdxl.job.quantize_base == "none"


def test_kohya_and_diffusion_pipe_swap_more_blocks_each_tier_up_to_their_ceiling():
    def swap_of(most):
        return lambda j: (int((j.extra.get("fields") or {}).get("blocks_to_swap", 0)), most)

    tiers = walk(job("flux-dev", "kohya", resolution=768, quantize_base="float8",
                     extra={"fields": {"clip_l": "/m/clip_l.safetensors"}}),
                 FLOAT8_ONLY, swap_of(35))
    assert [t.extra["fields"]["blocks_to_swap"] for t in tiers] == [8, 16, 24, 32, 35]
    assert [t.resolution for t in tiers] == [512, 512, 512, 512, 512]
    assert all(t.extra["fields"]["clip_l"] == "/m/clip_l.safetensors" for t in tiers)
    dp = next_tier(job("chroma", "diffusion-pipe"), FLOAT8_ONLY, (4, 20))
    assert dp is not None and dp.job.extra["fields"]["blocks_to_swap"] == 12
    assert "blocks swapped to CPU memory 4 → 12" in dp.changes
    # the built-in trainer and SDXL have no block swap, even when one is passed
    assert "blocks_to_swap" not in next_tier(job("flux-dev"), BUILTIN_Q, (0, 35)).job.extra.get(
        "fields", {})
    assert "fields" not in next_tier(job("sdxl", "kohya"), FLOAT8_ONLY, (0, 35)).job.extra


def test_ai_toolkit_flux_turns_its_low_vram_switch_on_once():
    first = next_tier(job("flux-dev", "ai-toolkit", resolution=512, quantize_base="int8"),
                      BUILTIN_Q)
    assert first is not None and first.changes == ("low-VRAM mode on",)
    assert first.job.extra["fields"]["low_vram"] is True
    assert next_tier(first.job, BUILTIN_Q) is None


def test_nothing_left_to_lower_is_none():
    assert next_tier(job("sdxl", resolution=512)) is None
    assert next_tier(job("sd15", resolution=384)) is None
    # a tiny test model below every bucket: only batch and checkpointing can change
    tiny = next_tier(job("sd15", resolution=64, batch_size=2, gradient_checkpointing=False))
    assert tiny is not None and tiny.job.resolution == 64
    assert next_tier(tiny.job) is None


def test_give_up_message_says_what_was_tried_and_what_to_do():
    notes = ["recovered from out-of-memory at step 812: 1024 → 768 px",
             "recovered from out-of-memory at step 900: 768 → 512 px"]
    text = give_up_message(950, notes, "The GPU ran out of memory.", nothing_left=False)
    assert text.startswith("The GPU ran out of memory at step 950, a third time")
    assert "• Recovered from out-of-memory at step 812: 1024 → 768 px" in text
    assert "• Recovered from out-of-memory at step 900: 768 → 512 px" in text
    assert "What you can do: close other programs that use the GPU" in text
    assert "then Resume" in text and text.endswith("The trainer said: The GPU ran out of memory.")
    lowest = give_up_message(3, [], "", nothing_left=True)
    assert "already uses the lowest memory settings" in lowest and "Tried" not in lowest
    assert MAX_RECOVERIES == 2


def test_the_notes_survive_the_database_and_old_rows_have_none(tmp_path):
    conn = connect(tmp_path / "db.sqlite3")
    repo = JobsRepository(conn, tmp_path)
    row = JobRow(job_id="j1", character_id=None, backend="builtin", family="sdxl",
                 preset="Balanced", state="queued", spec_json=job().to_json(),
                 job_dir=str(tmp_path / "jobs" / "j1"), created="2026-01-01T00:00:00+00:00",
                 oom_notes='["recovered from out-of-memory at step 5: 1024 → 768 px"]')
    repo.save(row)
    assert repo.get("j1").oom_notes == row.oom_notes
    conn.execute("INSERT INTO jobs(job_id, backend, family, preset, state, spec_json, job_dir,"
                 " created) VALUES ('old', 'builtin', 'sdxl', '', 'completed', '{}', 'x', 'y')")
    assert repo.get("old").oom_notes == "[]"
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE jobs SET oom_notes=NULL WHERE job_id='old'")


def test_an_8bit_flux_base_goes_to_4bit_where_the_backend_has_it():
    """The built-in trainer (its capabilities list nf4): an OOM with an 8-bit base takes the
    4-bit base next; a backend without nf4 does not."""
    from isengard_desktop.plugins.builtin_trainer import BuiltinTrainer

    options = BuiltinTrainer().capabilities()["quantize_base"]
    assert "nf4" in options
    tier = next_tier(job("flux-dev", resolution=512, quantize_base="int8"), options)
    assert tier is not None and tier.job.quantize_base == "nf4"
    assert "base model int8 → 4-bit (nf4)" in tier.changes
    other = next_tier(job("flux-dev", resolution=512, quantize_base="int8"), BUILTIN_Q)
    assert other is None or other.job.quantize_base == "int8"
