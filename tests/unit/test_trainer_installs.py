"""External trainer installs: exact validation problems, the deeper interpreter check, the
capability matrix per platform, and ``Settings.trainer_installs`` (round trip, bad values)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from loguru import logger

from isengard_desktop.core.settings import Settings, load_settings, save_settings
from isengard_desktop.core.training import installs as installs_mod
from isengard_desktop.core.training.installs import (TRAINER_KINDS, ExternalInstall,
                                                     capability_matrix, current_platform,
                                                     install_from_settings, platform_problem,
                                                     validate_install)


@pytest.fixture
def warnings_seen():
    seen: list[str] = []
    handler_id = logger.add(lambda m: seen.append(str(m)), level="WARNING",
                            format="{level} {message}")
    yield seen
    logger.remove(handler_id)


def fake_python(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def checkout(root: Path, kind: str) -> Path:
    folder = root / kind
    folder.mkdir(parents=True)
    for script in TRAINER_KINDS[kind].scripts:
        (folder / script).write_text("# script\n")
    return folder


def test_every_cheap_problem_is_named_exactly(tmp_path: Path) -> None:
    linux = "linux"
    problems = validate_install("diffusion-pipe", ExternalInstall(), platform=linux)
    assert problems == [
        "No folder is set for diffusion-pipe (tdrussell): choose the diffusion-pipe checkout, "
        "the folder that holds train.py.",
        "No Python interpreter is set for diffusion-pipe (tdrussell): choose the python of the "
        "environment you installed its requirements in (for example venv/bin/python inside its "
        "folder)."]
    missing = tmp_path / "nowhere"
    assert validate_install("ai-toolkit", ExternalInstall(str(missing), sys.executable),
                            platform=linux) == [
        f"The ai-toolkit (ostris) folder {missing} does not exist."]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file, not a folder" in validate_install(
        "kohya", ExternalInstall(str(a_file), sys.executable), platform=linux)[0]
    empty = tmp_path / "sd-scripts"
    empty.mkdir()
    (empty / "train_network.py").write_text("")
    [problem] = validate_install("kohya", ExternalInstall(str(empty), sys.executable),
                                 platform=linux)
    assert problem.startswith(f"{empty} has no sdxl_train_network.py: it is not the "
                              "sd-scripts checkout")
    assert "kohya-ss/sd-scripts" in problem
    folder = checkout(tmp_path, "diffusion-pipe")
    assert validate_install("diffusion-pipe", ExternalInstall(str(folder), sys.executable),
                            platform=linux) == []
    for python, words in ((str(tmp_path / "nope" / "python"), "does not exist"),
                          ("python3", "must be an absolute path"),
                          (str(tmp_path), "is a folder, not a Python interpreter"),
                          (str(a_file), "is not executable")):
        [problem] = validate_install("diffusion-pipe", ExternalInstall(str(folder), python),
                                     platform=linux)
        assert words in problem and "interpreter" in problem


def test_platforms_and_the_capability_matrix() -> None:
    assert current_platform() in ("linux", "wsl", "windows", "macos")
    assert platform_problem("diffusion-pipe", "linux") == ""
    assert platform_problem("diffusion-pipe", "wsl") == ""
    why = platform_problem("diffusion-pipe", "windows")
    assert why.startswith("diffusion-pipe needs Linux or WSL") and "DeepSpeed" in why
    assert platform_problem("kohya", "windows") == ""
    assert "does not run on macOS" in platform_problem("ai-toolkit", "macos")
    assert validate_install("diffusion-pipe", ExternalInstall(), platform="windows")[0] == why
    rows = {r.backend: r for r in capability_matrix("windows")}
    assert list(rows) == ["builtin", "ai-toolkit", "diffusion-pipe", "kohya"]
    assert not rows["diffusion-pipe"].supported and rows["diffusion-pipe"].reason == why
    assert rows["ai-toolkit"].supported and rows["kohya"].supported and rows["builtin"].supported
    assert rows["diffusion-pipe"].samples.startswith("no")
    # how Stop & save really works with the launcher (plugins/external/trainer_shim.py)
    assert rows["ai-toolkit"].stop == "saves the step in progress, then exits"
    assert rows["kohya"].stop == "stops at once; resumes from its newest saved state"
    assert "save_quit" in rows["diffusion-pipe"].stop
    assert all(r.supported and not r.reason for r in capability_matrix("linux"))
    assert all(r.supported for r in capability_matrix("wsl"))
    mac = {r.backend: r.supported for r in capability_matrix("macos")}
    assert mac == {"builtin": True, "ai-toolkit": False, "diffusion-pipe": False,
                   "kohya": False}
    with pytest.raises(ValueError, match="Unknown trainer 'onetrainer'"):
        validate_install("onetrainer", ExternalInstall())


@pytest.mark.skipif(sys.platform == "win32",
                    reason="a #!/bin/sh fake interpreter: Windows cannot run a shell script as a program")
def test_deep_check_runs_the_interpreter(tmp_path: Path) -> None:
    folder = checkout(tmp_path, "diffusion-pipe")
    install = ExternalInstall(str(folder), sys.executable)
    [problem] = validate_install("diffusion-pipe", install, deep=True, platform="linux")
    # this test venv has the built-in trainer's packages, never deepspeed
    missing = [n for n in TRAINER_KINDS["diffusion-pipe"].packages
               if importlib.util.find_spec(n) is None]
    assert "deepspeed" in missing
    assert problem.startswith(f"{sys.executable} lacks the package{'s' if len(missing) > 1 else ''}"
                              f" {', '.join(missing)} that diffusion-pipe (tdrussell) needs.")
    assert f"cd {folder} && {sys.executable} -m pip install -r requirements.txt" in problem
    good = fake_python(tmp_path / "good" / "python",
                       "echo '{\"version\": [3, 11, 7], \"missing\": []}'")
    assert validate_install("diffusion-pipe", ExternalInstall(str(folder), str(good)),
                            deep=True, platform="linux") == []
    own = fake_python(tmp_path / "own" / "python",
                      "echo '{\"version\": [3, 11, 7], \"missing\": [\"toolkit\", \"yaml\"]}'")
    ai = checkout(tmp_path, "ai-toolkit")
    problems = validate_install("ai-toolkit", ExternalInstall(str(ai), str(own)), deep=True,
                                platform="linux")
    assert problems[0].endswith("lacks the package PyYAML that ai-toolkit (ostris) needs. "
                                f"Install its requirements with that Python: cd {ai} && {own} "
                                "-m pip install -r requirements.txt")
    assert "cannot import ai-toolkit (ostris)'s own module 'toolkit'" in problems[1]
    old = fake_python(tmp_path / "old" / "python",
                      "echo '{\"version\": [3, 8, 10], \"missing\": []}'")
    assert "is Python 3.8.10" in validate_install(
        "diffusion-pipe", ExternalInstall(str(folder), str(old)), deep=True,
        platform="linux")[0]
    broken = fake_python(tmp_path / "broken" / "python",
                         "echo 'libpython3.11.so: cannot open shared object file' >&2; exit 127")
    [problem] = validate_install("diffusion-pipe", ExternalInstall(str(folder), str(broken)),
                                 deep=True, platform="linux")
    assert problem == (f"The Python interpreter {broken} failed to run (exit code 127): "
                       "libpython3.11.so: cannot open shared object file")
    slow = fake_python(tmp_path / "slow" / "python", "sleep 5")
    [problem] = validate_install("diffusion-pipe", ExternalInstall(str(folder), str(slow)),
                                 deep=True, platform="linux", timeout_s=0.3)
    assert problem == f"The Python interpreter {slow} did not answer within 0 s."


def test_settings_round_trip_of_trainer_installs(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    assert Settings().trainer_installs == {}
    s = Settings(trainer_installs={
        "diffusion-pipe": {"folder": "/opt/diffusion-pipe", "python": "/opt/dp/venv/bin/python"},
        "ai-toolkit": {"folder": "/opt/ai-toolkit ü", "python": ""}})
    save_settings(path, s)
    loaded = load_settings(path)
    assert loaded == s and loaded.version == 1
    assert install_from_settings(loaded.trainer_installs, "diffusion-pipe") == ExternalInstall(
        "/opt/diffusion-pipe", "/opt/dp/venv/bin/python")
    assert install_from_settings(loaded.trainer_installs, "kohya") == ExternalInstall()
    # an older app's file (no such field) still loads
    data = json.loads(path.read_text())
    del data["trainer_installs"]
    path.write_text(json.dumps(data))
    assert load_settings(path).trainer_installs == {}


def test_bad_trainer_installs_are_logged_and_dropped(tmp_path: Path, warnings_seen) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "theme": "light", "trainer_installs": {
        "diffusion-pipe": {"folder": " /opt/dp ", "python": "/opt/dp/bin/python",
                           "colour": "blue"},
        "kohya": ["/opt/kohya"],
        "ai-toolkit": {"folder": 42, "python": "/x"},
        "onetrainer": {"folder": "/opt/ot", "python": "/opt/ot/python"},
    }}))
    loaded = load_settings(path)
    assert loaded.theme == "light"
    assert loaded.trainer_installs == {"diffusion-pipe": {"folder": "/opt/dp",
                                                          "python": "/opt/dp/bin/python"}}
    text = "\n".join(warnings_seen)
    assert "trainer_installs['kohya'] must be an object" in text
    assert "trainer_installs['ai-toolkit'] must be an object" in text
    assert "unknown trainer 'onetrainer'" in text
    assert "trainer_installs['diffusion-pipe'] has unknown keys ['colour']" in text
    path.write_text(json.dumps({"version": 1, "trainer_installs": "nope"}))
    assert load_settings(path).trainer_installs == {}
    assert "field 'trainer_installs' has an unusable value 'nope'" in "\n".join(warnings_seen)


def test_kinds_match_the_settings_keys() -> None:
    assert list(TRAINER_KINDS) == ["ai-toolkit", "diffusion-pipe", "kohya"]
    assert installs_mod.kind_info("kohya").scripts[0] == "train_network.py"
