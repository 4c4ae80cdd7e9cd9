"""File work of a training job folder, run on executors (Qt-free, never on the UI thread).

* :func:`read_events`: the protocol events of ``events.jsonl`` (history, chart reload).
* :func:`write_launch_files`: a backend's config files, written atomically before launch.
* :func:`write_debug_bundle`: a redacted zip of what is needed to debug a job.
* :func:`mask_secrets`: :func:`~isengard_desktop.core.logging.redact` plus exact secret values.
* :func:`publish_lora`: a finished job's LoRA into the app's LoRA folder (hard link or copy).

The GUI process never imports torch: :func:`environment_report` asks a short child process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from ..fsutil import atomic_output, atomic_write_text, link_or_copy
from ..platform_support import run_text
from ..logging import REDACTED, redact
from ..paths import AppPaths, resolve_paths
from ..runtime.python import trainer_python
from .checkpoints import list_checkpoints
from .protocol import Event, parse_event
from .spec import JobPaths

__all__ = ["environment_report", "mask_secrets", "publish_lora", "read_events",
           "secret_env_values",
           "write_debug_bundle", "write_launch_files"]


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` redacted, with every exact secret value masked too."""
    for value in secrets:
        if value and len(value) >= 4 and value in text:
            text = text.replace(value, REDACTED)
    return redact(text)


# an environment variable whose name contains one of these words holds a secret
_SECRET_ENV_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")


def secret_env_values(env: Mapping[str, str]) -> list[str]:
    """The values of ``env``'s variables whose names say they hold a secret
    (``WANDB_API_KEY``, ``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``…): a child inherits the
    user's environment, and may print any of them."""
    return [value for name, value in env.items()
            if value and any(word in name.upper() for word in _SECRET_ENV_WORDS)]


def write_launch_files(files: dict[Path, str]) -> None:
    for path, text in files.items():
        atomic_write_text(Path(path), text)


def publish_lora(loras_dir: Path, source: Path, job_id: str) -> Path:
    """Put the LoRA ``source`` of job ``job_id`` into ``loras_dir`` (the app's LoRA folder,
    which a managed ComfyUI lists through extra_model_paths); returns where it now is.

    Named like the source; ``<stem>-<job_id><suffix>`` when that name is taken (another job
    used the same output name). A hard link is instant (same disk); otherwise an atomic
    copy. OSError when neither works."""
    source = Path(source)
    target = Path(loras_dir) / source.name
    if target.exists():
        target = Path(loras_dir) / f"{source.stem}-{job_id}{source.suffix}"
    link_or_copy(source, target)
    return target


def read_events(path: Path) -> list[Event]:
    """Every protocol event in an ``events.jsonl`` (missing file: none)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [e for e in (parse_event(line) for line in text.splitlines()) if e is not None]


_PACKAGES = ("isengard-desktop", "torch", "diffusers", "transformers", "peft", "accelerate",
             "safetensors", "torchao", "bitsandbytes", "PySide6-Essentials", "numpy")
MAX_BUNDLE_TEXT = 20 << 20   # a log longer than this goes in as its last 20 MB


def environment_report(probe_torch: bool = True, timeout_s: float = 60.0,
                       paths: AppPaths | None = None) -> dict[str, Any]:
    """Python, platform and package versions; torch/CUDA from a short child process (the GUI
    process never imports torch)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    report: dict[str, Any] = {
        "python": sys.version, "executable": sys.executable, "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": versions,
    }
    if probe_torch:
        try:
            # the trainer runtime's own probe (torch, CUDA, VRAM) in a child process
            python = trainer_python(paths or resolve_paths())
            report["trainer_python"] = {"executable": str(python.executable or ""),
                                        "source": python.source.value,
                                        "problem": python.problem}
            if python.executable is None:
                raise OSError(python.problem)
            done = run_text([str(python.executable), "-m",
                             "isengard_desktop.training_runtime", "probe"],
                            timeout=timeout_s, env=dict(python.child_env(), HF_HUB_OFFLINE="1"))
            lines = done.stdout.strip().splitlines()
            report["torch_probe"] = json.loads(lines[-1]) if lines else {
                "error": f"exit code {done.returncode}: {done.stderr[-2000:]}"}
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            report["torch_probe"] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def _read_text_tail(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size > MAX_BUNDLE_TEXT:
            fh.seek(size - MAX_BUNDLE_TEXT)
            head = f"[… first {size - MAX_BUNDLE_TEXT} bytes left out]\n"
        else:
            head = ""
        return head + fh.read().decode("utf-8", errors="replace")


_TEXT_SUFFIXES = {".json", ".jsonl", ".log", ".txt", ".toml", ".yaml", ".yml", ".cfg", ".ini",
                  ".md", ".csv"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
MAX_BUNDLE_SAMPLES = 24      # newest sample images per place (the app's, the trainer's)
# where external trainers write their sample images under <job>/output/: ai-toolkit
# output/<name>/samples/, kohya sd-scripts output/sample/
_TOOL_SAMPLE_FOLDERS = ("samples", "sample")


def _newest_images(paths: Iterable[Path], limit: int = MAX_BUNDLE_SAMPLES) -> list[Path]:
    """The newest ``limit`` image files of ``paths`` (by modification time, then name)."""
    found = []
    for path in paths:
        try:
            if path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file():
                found.append((path.stat().st_mtime, path.as_posix(), path))
        except OSError:
            continue
    found.sort(reverse=True)
    return sorted((p for _, _, p in found[:limit]), key=lambda p: p.as_posix())


def _tool_samples(output: Path) -> list[Path]:
    """Sample images an external trainer wrote under the job's ``output/`` folder."""
    if not output.is_dir():
        return []
    return _newest_images(p for p in output.rglob("*")
                          if p.parent.name in _TOOL_SAMPLE_FOLDERS)


def write_debug_bundle(paths: JobPaths, dest: Path, record: dict[str, Any],
                       secrets: Iterable[str], probe_torch: bool = True) -> Path:
    """Zip what is needed to debug a job, with every text redacted; returns ``dest``.

    Contents: job.json, record.json (the job's state), events.jsonl, stdout.log,
    resources.jsonl (the resource monitor's samples while it ran),
    stderr.log, configs/, samples/ (its texts and newest :data:`MAX_BUNDLE_SAMPLES` images),
    the newest :data:`MAX_BUNDLE_SAMPLES` sample images an external trainer wrote under
    output/ (ai-toolkit's ``output/<name>/samples/``, sd-scripts' ``output/sample/``),
    checkpoints.json (what was saved, verified by size), environment.json. Never
    checkpoints or the LoRA itself, never secrets.
    """
    secrets = tuple(s for s in secrets if s)
    dest = Path(dest)

    def text(zf: zipfile.ZipFile, name: str, content: str) -> None:
        zf.writestr(name, mask_secrets(content, secrets))

    with atomic_output(dest) as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("job.json", "events.jsonl", "stdout.log", "stderr.log", "resources.jsonl"):
            path = paths.root / name
            if path.is_file():
                text(zf, name, _read_text_tail(path))
        text(zf, "record.json", json.dumps(record, indent=2, default=str))
        for folder in (paths.configs, paths.samples):
            if not folder.is_dir():
                continue
            files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
            if folder == paths.samples:   # its texts, and only the newest images
                images = set(_newest_images(files))
                files = [p for p in files if p.suffix.lower() not in _IMAGE_SUFFIXES
                         or p in images]
            for path in files:
                name = path.relative_to(paths.root).as_posix()
                if path.suffix.lower() in _TEXT_SUFFIXES:
                    text(zf, name, _read_text_tail(path))
                else:
                    zf.write(path, name)
        for path in _tool_samples(paths.root / "output"):
            zf.write(path, path.relative_to(paths.root).as_posix())
        checkpoints = [asdict(c) | {"path": c.path.name}
                       for c in list_checkpoints(paths.root)]
        text(zf, "checkpoints.json", json.dumps(checkpoints, indent=2))
        text(zf, "environment.json",
             json.dumps(environment_report(probe_torch), indent=2, default=str))
    return dest
