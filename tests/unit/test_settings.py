"""Settings: defaults, round trip, corrupt files kept aside, migrations, newer files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loguru import logger

from isengard_desktop.core import settings as settings_mod
from isengard_desktop.core.settings import (
    SETTINGS_VERSION, Settings, load_settings, save_settings,
)


@pytest.fixture
def warnings_seen():
    seen: list[str] = []
    handler_id = logger.add(lambda m: seen.append(str(m)), level="WARNING",
                            format="{level} {message}")
    yield seen
    logger.remove(handler_id)


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "settings.json"


def test_missing_file_gives_defaults(settings_file: Path) -> None:
    s = load_settings(settings_file)
    assert s == Settings()
    assert s.version == SETTINGS_VERSION == 1
    assert s.model_folders == [] and s.remote_servers == [] and s.theme == "dark"
    assert not settings_file.exists()
    # list defaults are not shared between instances
    s.model_folders.append("/x")
    assert Settings().model_folders == []


def test_round_trip(settings_file: Path) -> None:
    s = Settings(model_folders=["/models/a", "/mnt/b ü"], comfyui_models_folder="/c/models",
                 comfyui_folder="/c", comfyui_python="/c/venv/bin/python",
                 remote_servers=["http://10.0.0.2:8188"], theme="light")
    save_settings(settings_file, s)
    assert load_settings(settings_file) == s
    text = settings_file.read_text(encoding="utf-8")
    assert text.startswith("{\n  ")                   # pretty
    assert json.loads(text)["version"] == SETTINGS_VERSION
    assert "ü" in text
    assert [p.name for p in settings_file.parent.iterdir()] == ["settings.json"]  # no temp left


@pytest.mark.parametrize("content", [
    b"{ not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b'{"version": "one"}',
])
def test_corrupt_file_is_kept_aside(settings_file: Path, content: bytes,
                                    warnings_seen: list[str]) -> None:
    settings_file.parent.mkdir(parents=True)
    settings_file.write_bytes(content)
    s = load_settings(settings_file)
    assert s == Settings()
    assert not settings_file.exists()
    kept = list(settings_file.parent.glob("settings.json.corrupt-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == content           # never silently lost
    assert any("could not be read" in w and kept[0].name in w for w in warnings_seen)


def test_two_corrupt_files_in_a_row_both_kept(settings_file: Path, warnings_seen) -> None:
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text("{", encoding="utf-8")
    load_settings(settings_file)
    settings_file.write_text("{{", encoding="utf-8")
    load_settings(settings_file)
    kept = sorted(p.read_text() for p in settings_file.parent.glob("settings.json.corrupt-*"))
    assert kept == ["{", "{{"]


def test_bad_field_values_fall_back_per_field(settings_file: Path, warnings_seen) -> None:
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps({
        "version": 1, "model_folders": "/not/a/list", "comfyui_folder": "/ok",
        "theme": "neon", "remote_servers": ["http://a:8188"], "unknown_key": 5,
    }), encoding="utf-8")
    s = load_settings(settings_file)
    assert s.model_folders == []
    assert s.theme == "dark"
    assert s.comfyui_folder == "/ok"
    assert s.remote_servers == ["http://a:8188"]
    assert not hasattr(s, "unknown_key")
    assert any("model_folders" in w for w in warnings_seen)
    assert any("theme" in w for w in warnings_seen)


def test_migration_from_fake_v0(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def v0_to_v1(data: dict) -> dict:
        calls.append(dict(data))
        data["model_folders"] = [data.pop("models_dir")]
        return data

    monkeypatch.setattr(settings_mod, "MIGRATIONS", {0: v0_to_v1})
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps({"version": 0, "models_dir": "/old/models"}),
                             encoding="utf-8")
    s = load_settings(settings_file)
    assert calls == [{"version": 0, "models_dir": "/old/models"}]
    assert s.model_folders == ["/old/models"]
    assert s.version == SETTINGS_VERSION
    save_settings(settings_file, s)
    assert json.loads(settings_file.read_text())["version"] == SETTINGS_VERSION


def test_failing_migration_keeps_the_file(settings_file: Path, monkeypatch, warnings_seen) -> None:
    def broken(data: dict) -> dict:
        raise KeyError("models_dir")

    monkeypatch.setattr(settings_mod, "MIGRATIONS", {0: broken})
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text('{"version": 0}', encoding="utf-8")
    assert load_settings(settings_file) == Settings()
    kept = list(settings_file.parent.glob("settings.json.corrupt-*"))
    assert [p.read_text() for p in kept] == ['{"version": 0}']
    assert any("could not be upgraded" in w for w in warnings_seen)


def test_newer_version_keeps_a_copy(settings_file: Path, warnings_seen) -> None:
    settings_file.parent.mkdir(parents=True)
    original = json.dumps({"version": 7, "theme": "light", "future_thing": {"a": 1}})
    settings_file.write_text(original, encoding="utf-8")
    s = load_settings(settings_file)
    assert s.theme == "light"
    copies = list(settings_file.parent.glob("settings.json.v7-*"))
    assert [c.read_text() for c in copies] == [original]
    assert settings_file.read_text() == original
    assert any("newer" in w for w in warnings_seen)


def test_wizard_completed_round_trips_and_defaults_to_false(tmp_path):
    """The set-up assistant's flag: absent in older files (it then opens once), kept when
    saved, and a non-boolean value is refused (the default is used)."""
    import json

    from isengard_desktop.core.settings import Settings, load_settings, save_settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "theme": "dark"}))
    assert load_settings(path).wizard_completed is False
    save_settings(path, Settings(wizard_completed=True))
    assert load_settings(path).wizard_completed is True
    path.write_text(json.dumps({"version": 1, "wizard_completed": "yes"}))
    assert load_settings(path).wizard_completed is False


def test_runtime_device_override_round_trips_and_bad_values_fall_back(tmp_path) -> None:
    from isengard_desktop.core.runtime.status import RuntimeDevice
    from isengard_desktop.core.settings import DEVICE_OVERRIDES

    assert tuple(DEVICE_OVERRIDES) == ("", *(d.value for d in RuntimeDevice))
    path = tmp_path / "settings.json"
    assert load_settings(path).runtime_device_override == ""
    save_settings(path, Settings(runtime_device_override="cu126"))
    assert load_settings(path).runtime_device_override == "cu126"
    path.write_text(json.dumps({"version": 1, "runtime_device_override": "cu118"}))
    assert load_settings(path).runtime_device_override == ""


def test_ollama_fields_default_roundtrip_and_reject_bad_values(tmp_path):
    from isengard_desktop.core.settings import (Settings, load_settings, save_settings,
                                                valid_ollama_model, valid_ollama_url)
    path = tmp_path / "settings.json"
    assert Settings().ollama_url == "http://127.0.0.1:11434"
    save_settings(path, Settings(ollama_url="http://10.0.0.5:11434", ollama_model="qwen2.5:7b"))
    loaded = load_settings(path)
    assert (loaded.ollama_url, loaded.ollama_model) == ("http://10.0.0.5:11434", "qwen2.5:7b")
    path.write_text('{"version": 1, "ollama_url": "localhost", "ollama_model": "a b"}')
    loaded = load_settings(path)
    assert (loaded.ollama_url, loaded.ollama_model) == (Settings().ollama_url,
                                                        Settings().ollama_model)
    assert valid_ollama_model("library/llama3.2:3b-instruct-q4_K_M")
    assert not valid_ollama_url("ftp://x") and valid_ollama_url("https://ollama.lan")
