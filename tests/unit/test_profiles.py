"""Training profiles: reading, checking (field-level errors), writing, import/export round
trips, comparing, applying, and the user profiles' change history."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from isengard_desktop.core.training.profile_store import (ProfileStore, default_shipped_dir)
from isengard_desktop.core.training.profiles import (MIGRATIONS, PROFILE_VERSION, TRAIN_KEYS,
                                                     Profile, ProfileError, apply, diff, dumps,
                                                     export_profile, import_profile, load_profile,
                                                     loads, validate)
from isengard_desktop.core.training.profile_fields import FieldError, check_field_values
from isengard_desktop.core.training.spec import TrainingJob

SHIPPED = Path(__file__).resolve().parents[2] / "profiles"
JOB_DEFAULTS = dict(job_id="j1", character_id=1, character_name="Anna", trigger_word="anr_x",
                    family="sdxl", base_model="/models/chroma.safetensors",
                    dataset_dir="/data/anna", output_name="anna")


def shipped(name: str) -> Profile:
    return next(p for p in ProfileStore(Path("/nonexistent"), SHIPPED).profiles()
                if p.name == name)


def messages(errors: list[FieldError]) -> dict[str, str]:
    return {e.field: e.message for e in errors}


# -- shipped profiles ------------------------------------------------------------------------------
def test_every_shipped_profile_loads_validates_and_round_trips(tmp_path):
    files = sorted(SHIPPED.glob("*.toml"))
    assert len(files) >= 9
    scan = ProfileStore(tmp_path / "user", SHIPPED).scan()
    assert scan.broken == []
    assert len(scan.profiles) == len(files)
    names = [p.name for p in scan.profiles]
    assert len(set(names)) == len(names)
    for profile in scan.profiles:
        assert profile.shipped and profile.version == PROFILE_VERSION
        assert validate(profile) == [], profile.name
        assert loads(dumps(profile)) == profile          # canonical writer: value-identical
        for key, spec in profile.fields.items():          # paths are fields, never values
            if spec["kind"] in ("file", "folder"):
                assert "default" not in spec, (profile.name, key)
        for value in _leaves(profile.options):
            assert not (isinstance(value, str) and value.startswith(("/", "~", "C:"))), value
    # one per use: families and VRAM tiers
    tiers = {(p.family, p.vram_gb, p.backend) for p in scan.profiles}
    assert {("sd15", 8, "builtin"), ("sdxl", 12, "builtin"), ("sdxl", 24, "builtin"),
            ("flux-dev", 12, "kohya"), ("flux-dev", 24, "ai-toolkit"),
            ("flux-schnell", 24, "ai-toolkit"), ("chroma", 24, "builtin"),
            ("chroma", 24, "diffusion-pipe")} <= tiers
    kohya = shipped("Flux dev · 12 GB (kohya)")
    assert kohya.options["blocks_to_swap"] > 0 and kohya.options["fp8_base"] is True
    assert shipped("Flux dev · 24 GB (ai-toolkit)").train["quantize_base"] == "float8"
    assert shipped("Flux schnell · 24 GB (ai-toolkit)").fields["assistant_lora"]["required"]


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def test_the_two_chroma_e6ai_profiles():
    p512, p1024 = shipped("Chroma E6AI 512"), shipped("Chroma E6AI 1024")
    for p in (p512, p1024):
        assert validate(p) == []
        assert (p.backend, p.family, p.model_type) == ("diffusion-pipe", "chroma", "chroma")
        assert p.train["rank"] == 32 and p.train["learning_rate"] == pytest.approx(2.5e-4)
        assert p.train["warmup_steps"] == 100
        opt = p.options      # the diffusion-pipe backend's own option names
        assert opt["optimizer_type"] == "adamw_optimi"
        assert (opt["beta1"], opt["beta2"]) == (0.9, 0.99)
        assert opt["weight_decay"] == pytest.approx(0.01)
        assert (opt["enable_ar_bucket"], opt["min_ar"], opt["max_ar"], opt["num_ar_buckets"]) \
            == (True, 0.5, 2.0, 9)
        assert opt["cache_shuffle_num"] > 0                # shuffled tags
        assert p.train["quantize_base"] == "float8"
        assert p.fields["caption_prefix"]["kind"] == "text"
        required = {k for k, s in p.fields.items() if s.get("required")}
        assert required == {"transformer_path", "diffusers_path"}
    assert p512.train["resolution"] == 512 and "v47" in p512.fields["transformer_path"]["label"]
    assert p1024.train["resolution"] == 1024 and p1024.train["batch_size"] == 1
    assert "v50" in p1024.fields["transformer_path"]["label"]

    # unfilled fields are fine for the profile itself; applying names the missing paths only
    with pytest.raises(ProfileError) as info:
        apply(p512, JOB_DEFAULTS, {})
    assert {e.field for e in info.value.errors} == {"transformer_path", "diffusers_path"}
    assert "Chroma transformer (chroma-unlocked-v47) is required: choose the file" in \
        str(info.value)
    assert "choose the folder" in str(info.value)

    filled = {"transformer_path": "/m/chroma-unlocked-v47.safetensors",
              "diffusers_path": "/m/FLUX.1-schnell"}
    kwargs = apply(p512, JOB_DEFAULTS, filled)
    job = TrainingJob(**kwargs)
    job.validate()
    assert job.backend == "diffusion-pipe" and job.family == "chroma"
    assert job.preset == "Chroma E6AI 512" and job.resolution == 512 and job.rank == 32
    assert job.learning_rate == pytest.approx(2.5e-4) and isinstance(job.alpha, float)
    assert job.extra["fields"] == {**filled, "caption_prefix": "[trigger], "}
    assert job.extra["model_type"] == "chroma" and job.extra["profile"] == "Chroma E6AI 512"
    assert (job.extra["beta1"], job.extra["beta2"]) == (0.9, 0.99)
    assert job.extra["num_ar_buckets"] == 9 and job.extra["optimizer_type"] == "adamw_optimi"
    assert job.trigger_word == "anr_x" and job.dataset_dir == "/data/anna"   # untouched
    # the profile itself is not changed by applying it
    assert "fields" not in p512.options
    # options named like the backend's own fields also go where it reads fields
    kwargs = apply(p512, JOB_DEFAULTS, {**filled, "num_ar_buckets": 5},
                   backend_fields=["num_ar_buckets", "beta2", "not_an_option"])
    assert kwargs["extra"]["fields"]["beta2"] == 0.99
    assert kwargs["extra"]["fields"]["num_ar_buckets"] == 5          # filled in wins
    assert "not_an_option" not in kwargs["extra"]["fields"]


def test_default_shipped_dir_and_env_override(tmp_path):
    assert default_shipped_dir({}) == SHIPPED
    assert default_shipped_dir({"ISENGARD_PROFILES": str(tmp_path)}) == tmp_path


# -- validation ------------------------------------------------------------------------------------
BAD = """
version = 1
colour = "blue"

[profile]
name = "Broken"
backend = "sd-next"
family = "sd3"
vram_gb = -4
author = "me"

[train]
rank = 0
steps = "many"
learning_rate = 2.0
resolution = 500
optimizr = "adamw"
base_model = "/home/me/model.safetensors"
gradient_checkpointing = 1

[backend]
wandb_api_key = "abc"
[backend.paths]
vae = "/home/me/vae.safetensors"

[fields.transformer_path]
label = ""
kind = "path"
required = "yes"
default = "/home/me/x"
colour = 1

[fields.choice_thing]
label = "Pick"
kind = "choice"
default = "c"
choices = ["a", "b"]

[fields.Bad-Key]
label = "x"
"""


def test_validation_names_every_bad_field():
    profile = loads(BAD)
    errors = messages(validate(profile))
    assert errors["colour"].startswith("unknown key")
    assert errors["profile.author"].startswith("unknown key")
    assert "unknown trainer backend 'sd-next'" in errors["profile.backend"]
    assert "unknown model family 'sd3'" in errors["profile.family"]
    assert "between 1 and 1024" in errors["profile.vram_gb"]
    # TrainingJob's own range rules
    assert errors["train.rank"] == "must be between 1 and 1024 (got 0)"
    assert errors["train.learning_rate"] == "must be between 0 and 1 (got 2.0)"
    assert errors["train.resolution"].startswith("must be a multiple of 64")
    # types
    assert errors["train.steps"] == "must be a whole number (got 'many')"
    assert errors["train.gradient_checkpointing"] == "must be true or false (got 1)"
    # unknown and not-for-profiles keys
    assert "unknown training setting" in errors["train.optimizr"]
    assert "not a training setting a profile can hold" in errors["train.base_model"]
    # no secrets, no machine paths
    assert errors["backend.wandb_api_key"].startswith("secrets never go in a profile")
    assert "is a path on one machine" in errors["backend.paths.vae"]
    # field declarations
    assert errors["fields.transformer_path.label"] == "cannot be empty"
    assert errors["fields.transformer_path.kind"].startswith("must be one of file, folder")
    assert errors["fields.transformer_path.required"] == "must be true or false (got 'yes')"
    assert errors["fields.transformer_path.colour"].startswith("unknown key")
    assert "must be one of a, b" in errors["fields.choice_thing.default"]
    assert "lower-case" in errors["fields.Bad-Key"]
    # str() of an error starts with the field name
    first = validate(profile)[0]
    assert str(first).startswith(f"{first.field}: ")
    # a file field may not carry a default path
    path_default = loads('[profile]\nname = "x"\nfamily = "sdxl"\n'
                         '[fields.model]\nlabel = "Model"\nkind = "file"\ndefault = "/a/b"\n')
    assert "has no default" in messages(validate(path_default))["fields.model.default"]
    # applying an invalid profile refuses, with the same errors
    with pytest.raises(ProfileError) as info:
        apply(profile, JOB_DEFAULTS, {})
    assert "train.rank" in {e.field for e in info.value.errors}


def test_unreadable_and_newer_files_say_why(tmp_path):
    with pytest.raises(ProfileError) as info:
        loads("version = 1\n[profile\nname='x'")
    assert info.value.errors[0].field == "file" and "not a valid TOML" in str(info.value)
    with pytest.raises(ProfileError) as info:
        loads(f"version = {PROFILE_VERSION + 1}\n")
    assert info.value.errors[0].field == "version" and "newer" in str(info.value)
    with pytest.raises(ProfileError) as info:
        loads("train = 3\n")
    assert info.value.errors[0].field == "train"
    bad = tmp_path / "bad.toml"
    bad.write_text("rank = = 3", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        import_profile(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(ProfileError):
        import_profile(tmp_path / "missing.toml")
    half = tmp_path / "half.toml"
    half.write_text('[profile]\nname = "x"\nbackend = "builtin"\nfamily = "sdxl"\n'
                    '[train]\nrank = 0\n', encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        import_profile(half)
    assert "train.rank" in str(info.value) and info.value.errors[0].field == "train.rank"


def test_migrations_table_upgrades_old_versions(monkeypatch):
    def v1_to_v2(doc):
        doc.setdefault("profile", {})["description"] = "migrated"
        return doc

    monkeypatch.setattr("isengard_desktop.core.training.profiles.PROFILE_VERSION", 2)
    monkeypatch.setitem(MIGRATIONS, 1, v1_to_v2)
    profile = loads('version = 1\n[profile]\nname = "old"\nfamily = "sd15"\n')
    assert profile.version == 2 and profile.description == "migrated"


def test_field_values_are_checked_by_kind_and_model_type():
    specs = [{"key": "ckpt", "label": "Checkpoint", "kind": "file", "required": True,
              "model_types": ["sdxl"]},
             {"key": "steps_x", "label": "Extra steps", "kind": "int"},
             {"key": "mode", "label": "Mode", "kind": "choice", "choices": ["a", "b"]},
             {"key": "lr2", "label": "LR 2", "kind": "float"}]
    assert check_field_values(specs, {}, "chroma") == []            # ckpt is not shown
    errors = check_field_values(specs, {"steps_x": "ten", "mode": "c", "lr2": "1e-4"}, "sdxl")
    assert [e.field for e in errors] == ["ckpt", "steps_x", "mode"]
    assert errors[0].message == "Checkpoint is required: choose the file"
    assert "Extra steps (steps_x) must be a whole number" in errors[1].message


# -- writing, import and export ----------------------------------------------------------------
def test_dumps_loads_round_trip_of_every_value_kind():
    profile = Profile(name='Odd "name" \\ ünïcode', description="two\nlines\ttab",
                      backend="kohya", family="flux-dev", vram_gb=10.5, model_type="flux",
                      train={"learning_rate": 1e-5, "alpha": 8, "sample_prompts": ["a", "b"],
                             "gradient_checkpointing": False},
                      options={"x y": 1, "nested": {"deeper": {"v": [1.5, -2]}, "n": 3},
                               "inline": [{"a": 1}], "big": 1e16},
                      fields={"p": {"label": "P", "kind": "folder", "required": True}})
    text = dumps(profile)
    assert loads(text) == profile
    assert dumps(loads(text)) == text
    tomllib.loads(text)


def test_import_export_round_trip_is_byte_identical(tmp_path):
    store = ProfileStore(tmp_path / "user", SHIPPED)
    for src in sorted(SHIPPED.glob("*.toml")):
        profile = import_profile(src)
        out = export_profile(profile, tmp_path / "out" / src.name)
        assert out.read_bytes() == src.read_bytes()          # comments and layout kept
    # through the store: import into the user profiles, export again
    src = SHIPPED / "chroma-e6ai-512.toml"
    renamed = tmp_path / "mine.toml"
    renamed.write_text(src.read_text(encoding="utf-8").replace(
        'name = "Chroma E6AI 512"', 'name = "My Chroma"'), encoding="utf-8")
    imported = store.import_file(renamed)
    assert imported.name == "My Chroma" and not imported.shipped
    assert imported.source.parent == store.user_dir
    assert imported.source.read_bytes() == renamed.read_bytes()
    back = store.export(imported, tmp_path / "back.toml")
    assert back.read_bytes() == renamed.read_bytes()
    # a changed profile is written in the canonical layout, and still round-trips by value
    changed = replace(imported, description="changed")
    export_profile(changed, tmp_path / "changed.toml")
    assert load_profile(tmp_path / "changed.toml") == changed
    # a shipped name cannot be imported over
    with pytest.raises(ProfileError) as info:
        store.import_file(src)
    assert info.value.errors[0].field == "profile.name"


# -- compare ---------------------------------------------------------------------------------------
def test_diff_lists_only_differing_settings():
    a, b = shipped("Chroma E6AI 512"), shipped("Chroma E6AI 1024")
    rows = diff(a, b)
    fields = [r.field for r in rows]
    assert fields[0] == "profile.name"
    assert ("train.resolution", 512, 1024) in rows
    assert ("train.batch_size", 2, 1) in rows
    assert "fields.transformer_path.label" in fields
    assert "train.rank" not in fields and "backend.optimizer_type" not in fields
    assert diff(a, a) == []
    c = replace(a, train={**a.train, "alpha": 32})   # 32 == 32.0: not a difference
    assert diff(a, c) == []
    d = replace(a, options={k: v for k, v in a.options.items() if k != "min_ar"})
    missing = {r.field: r for r in diff(a, d)}
    assert missing["backend.min_ar"].b is None and missing["backend.min_ar"].a == 0.5


# -- user profiles and history -------------------------------------------------------------------
def test_save_history_restore_and_delete(tmp_path):
    store = ProfileStore(tmp_path / "user", SHIPPED)
    base = replace(shipped("SDXL · 12 GB"), name="Anna SDXL", source_text=None)
    first = store.save(base)
    assert first.source == store.user_dir / "anna-sdxl.toml"
    assert store.get("Anna SDXL") == first and not store.get("Anna SDXL").shipped
    assert store.history("Anna SDXL") == []
    names = [p.name for p in store.profiles()]
    assert names.index("Anna SDXL") > names.index("Chroma E6AI 512")   # shipped first

    second = store.save(replace(first, train={**first.train, "rank": 24}))
    store.save(second)                                   # unchanged: no new history entry
    third = store.save(replace(second, train={**second.train, "steps": 900}))
    history = store.history("Anna SDXL")
    assert len(history) == 2
    assert history[0].when >= history[1].when
    assert store.load_version(history[0]).train["rank"] == 24         # newest first
    assert store.load_version(history[1]).train["rank"] == 16
    assert third.train["steps"] == 900

    restored = store.restore(history[1])
    assert restored.train["rank"] == 16 and store.get("Anna SDXL").train["steps"] == 1600
    assert len(store.history("Anna SDXL")) == 3                       # the 900-step one kept
    assert store.load_version(store.history("Anna SDXL")[0]).train["steps"] == 900
    assert len(list(store.user_dir.glob("*.toml"))) == 1

    # invalid or shipped-named profiles are refused with field errors
    with pytest.raises(ProfileError) as info:
        store.save(replace(first, train={"rank": 5000}))
    assert info.value.errors[0].field == "train.rank"
    with pytest.raises(ProfileError) as info:
        store.save(replace(first, name="SDXL · 12 GB"))
    assert "shipped profile" in str(info.value)

    # delete keeps the last version in the history; restore brings it back
    store.delete("Anna SDXL")
    assert "Anna SDXL" not in [p.name for p in store.profiles()]
    entries = store.history("Anna SDXL")
    assert entries and store.load_version(entries[0]).train["rank"] == 16
    store.restore(entries[0])
    assert store.get("Anna SDXL").train["rank"] == 16
    with pytest.raises(KeyError):
        store.delete("SDXL · 12 GB")


def test_broken_user_files_are_reported_not_fatal(tmp_path):
    store = ProfileStore(tmp_path / "user", tmp_path / "none")
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "bad.toml").write_text("x = = 1", encoding="utf-8")
    store.save(Profile(name="Ok", family="sd15", train={"steps": 10}))
    scan = store.scan()
    assert [p.name for p in scan.profiles] == ["Ok"]
    assert scan.broken and scan.broken[0][0].name == "bad.toml"
    assert "not a valid TOML" in scan.broken[0][1]


def test_train_keys_are_training_settings_only():
    assert "steps" in TRAIN_KEYS and "sample_prompts" in TRAIN_KEYS
    for key in ("job_id", "base_model", "dataset_dir", "extra", "backend", "family",
                "trigger_word", "tokenizer_dir"):
        assert key not in TRAIN_KEYS
