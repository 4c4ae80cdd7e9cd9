"""The committed trainer-runtime locks (issue 12, item 1): locks.toml names every device, the
compiled requirement files pin what it says with hashes, and requirements.in covers every
third-party module the trainer children import."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from isengard_desktop.core.runtime.status import RuntimeDevice

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "resources" / "runtime"
PACKAGE = ROOT / "isengard_desktop"

# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "google": "protobuf", "pi_heif": "pi-heif",
                 "dlib": "dlib-bin"}
# imported only when present, never required (loop.py/probe_tools.py check for them)
OPTIONAL = {"bitsandbytes"}


def locks() -> dict:
    return tomllib.loads((RUNTIME / "locks.toml").read_text(encoding="utf-8"))


def requirements() -> dict[str, str]:
    """``name -> version`` of requirements.in (comments dropped)."""
    out = {}
    for line in (RUNTIME / "requirements.in").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def pins(text: str) -> dict[str, tuple[str, int]]:
    """``name -> (version, number of hashes)`` of a requirement file made by uv."""
    out: dict[str, tuple[str, int]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            current = m.group(1).lower()
            out[current] = (m.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, n = out[current]
            out[current] = (version, n + 1)
    return out


def entries() -> list[tuple[str, dict]]:
    """Every lock entry: each device's main one and its per-platform ones (``windows``)."""
    out = []
    for name, entry in locks()["devices"].items():
        out.append((name, entry))
        out += [(f"{name}-{k}", v) for k, v in entry.items() if isinstance(v, dict)]
    return out


def test_every_device_has_an_entry() -> None:
    data = locks()
    assert data["version"] == 1 and data["python"] == "3.11"
    assert set(data["devices"]) == {d.value for d in RuntimeDevice}
    for name, entry in entries():
        assert entry["file"] == f"{name}.txt", name
        assert entry["index_urls"] and all(u.startswith("https://") for u in entry["index_urls"])
        assert entry["torch"].startswith("2.13.0"), name
        assert isinstance(entry["compiled"], bool) and entry["notes"].strip()
        # a lock not compiled here is not pretended to be: no file for it
        assert (RUNTIME / entry["file"]).is_file() == entry["compiled"], name


def test_compiled_locks_pin_torch_and_hash_every_package() -> None:
    wanted = requirements()
    for name, entry in entries():
        if not entry["compiled"]:
            continue
        pinned = pins((RUNTIME / entry["file"]).read_text(encoding="utf-8"))
        assert pinned["torch"][0] == entry["torch"], name
        for dist, version in wanted.items():
            assert dist in pinned, f"{entry['file']} lacks {dist}"
            if dist != "torch":
                assert pinned[dist][0] == version, f"{entry['file']}: {dist}"
        unhashed = [p for p, (_, n) in pinned.items() if n == 0]
        assert not unhashed, f"{entry['file']}: no hashes for {unhashed}"
        assert "pyside6" not in pinned and "pyside6-essentials" not in pinned


def test_the_cpu_lock_takes_the_cpu_build_and_cu130_the_cuda_13_one() -> None:
    cpu = pins((RUNTIME / "cpu.txt").read_text())
    assert cpu["torch"] == ("2.13.0+cpu", 1)            # exactly the one local wheel
    assert not [p for p in cpu if p.startswith(("nvidia-", "cuda-"))]
    windows = pins((RUNTIME / "cpu-windows.txt").read_text())
    assert windows["torch"][0] == "2.13.0" and "colorama" in windows     # a Windows resolution
    assert not [p for p in windows if p.startswith(("nvidia-", "cuda-", "triton"))]
    cu130 = pins((RUNTIME / "cu130.txt").read_text())
    assert cu130["cuda-toolkit"][0].startswith("13.0.")
    assert "nvidia-cudnn-cu13" in cu130 and not [p for p in cu130 if p.endswith("-cu12")]


def test_requirements_pin_what_the_app_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    app = {d.split("==")[0].lower(): d.split("==")[1].split(";")[0].strip()
           for d in project["dependencies"] if "==" in d}
    for name, version in requirements().items():
        assert app.get(name) == version, f"requirements.in {name}=={version} vs pyproject"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            rel = ".".join(base.relative_to(ROOT).parts + ((node.module,) if node.module else ()))
            names.add(rel)
    return names


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def test_requirements_cover_what_the_trainer_children_import() -> None:
    """Every module under training_runtime/ and analysis_runtime/ and every app module they
    reach, statically, lazy imports inside functions included."""
    todo = [*(PACKAGE / "training_runtime").rglob("*.py"),
            *(PACKAGE / "analysis_runtime").rglob("*.py")]
    seen: set[Path] = set()
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "isengard_desktop":
                found = _module_file(name)
                if found is not None:
                    todo.append(found)
                    # a package's __init__ runs on the way down
                    todo.extend(p / "__init__.py" for p in found.parents
                                if PACKAGE in (p, *p.parents) and (p / "__init__.py").is_file())
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    wanted = set(requirements())
    needed = {DISTRIBUTIONS.get(t, t).lower() for t in third_party} - OPTIONAL
    assert needed <= wanted, f"requirements.in lacks {sorted(needed - wanted)}"
    assert {"torch", "diffusers", "peft", "transformers", "safetensors", "dlib-bin"} <= needed
    assert not any(p.name == "__init__.py" and p.parent.name == "ui" for p in seen)
