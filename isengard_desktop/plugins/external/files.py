"""Files of the external-trainer backends (Qt-free, torch-free). Used by ``_external.py``,
``ai_toolkit.py`` and ``kohya.py``; EXT-B's diffusion-pipe backend may use them too.

* Checkpoint pointers. The runner decides "resumable" with
  :func:`~isengard_desktop.core.training.checkpoints.latest_complete`, which reads
  ``jobs/<id>/checkpoints/checkpoint-<step>/manifest.json``. External tools save in their own
  layout, so each complete save they make is recorded as a small pointer folder in that format:
  ``checkpoint-<step>/external.json`` (``{"version", "tool", "step", "lora", "state"}``) plus a
  manifest listing it. :func:`record_checkpoint` writes one, :func:`forget_checkpoint` removes
  one (when the tool deletes that save), :func:`external_checkpoints` lists the complete ones
  whose files still exist, newest first.
* :class:`OutputScanner`: new files in a tool's output folder (samples), by regex on the name.
* The launcher (``external/trainer_shim.py``): :func:`launcher_files` gives its argv and files.
* :func:`dump_toml`: TOML text (core.toml_text; escapes Windows paths, unlike the ``toml`` package).
* :func:`require_path` (``build_launch``: a path that must exist, else a SpecError naming the
  field); :func:`check_job` (the first checks of ``build_launch`` in ai-toolkit and kohya).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.fsutil import atomic_write_text, link_or_copy
from ...core import toml_text
from ...core.training.checkpoints import (
    CHECKPOINTS_DIR,
    MANIFEST_NAME,
    list_checkpoints,
    write_manifest,
)
from ...core.training.spec import JobPaths, SpecError, TrainingJob, stopped_lora_name

__all__ = [
    "CONTEXT_NAME",
    "POINTER_NAME",
    "SHIM_NAME",
    "STOP_PATTERN",
    "ExternalCheckpoint",
    "OutputScanner",
    "check_job",
    "dump_toml",
    "export_stopped_lora",
    "stage_job_dataset",
    "external_checkpoints",
    "forget_checkpoint",
    "forget_pointers_to",
    "launcher_files",
    "record_checkpoint",
    "require_path",
    "shim_source",
]

POINTER_NAME = "external.json"
SHIM_NAME = "isengard_shim.py"
CONTEXT_NAME = "isengard_context.json"
STOP_PATTERN = "isengard-*.stop"   # one name per launch: a stale file never stops a new run
_SHIM_SOURCE = Path(__file__).with_name("trainer_shim.py")


@dataclass(frozen=True)
class ExternalCheckpoint:
    """A complete save of an external tool: the LoRA file of that step and, where the tool
    resumes from a separate state folder (kohya), that folder."""

    step: int
    lora: str
    state: str = ""
    resumable: bool = True


def _pointer_folder(job_dir: str | Path, step: int) -> Path:
    return Path(job_dir) / CHECKPOINTS_DIR / f"checkpoint-{int(step)}"


def record_checkpoint(job_dir: str | Path, step: int, tool: str, lora: str, state: str = "",
                      resumable: bool = True) -> ExternalCheckpoint:
    """Write the pointer of a complete save (only when ``resumable``); OSError on failure."""
    found = ExternalCheckpoint(int(step), str(lora), str(state), resumable)
    if not resumable:
        return found
    # A tool may write a later save under an earlier save's name (sd-scripts after
    # --skip_until_initial_step): those files now hold this save, so the older pointer goes.
    forget_pointers_to(job_dir, [p for p in (lora, state) if p], keep_step=int(step))
    folder = _pointer_folder(job_dir, step)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / POINTER_NAME, json.dumps(
        {"version": 1, "tool": tool, "step": int(step), "lora": str(lora), "state": str(state)},
        indent=1, sort_keys=True))
    write_manifest(folder, int(step))
    return found


def forget_checkpoint(job_dir: str | Path, step: int) -> None:
    """Remove the pointer of ``step`` (our two files only, never a built-in checkpoint)."""
    folder = _pointer_folder(job_dir, step)
    if not (folder / POINTER_NAME).is_file():
        return
    for name in (MANIFEST_NAME, POINTER_NAME):
        try:
            (folder / name).unlink()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def forget_pointers_to(job_dir: str | Path, paths: Iterable[str],
                       keep_step: int | None = None) -> None:
    """Remove every pointer whose LoRA or state is one of ``paths`` (the file was removed or
    overwritten), except the one of ``keep_step``. Checkpoints are keyed by step, never by the
    tool's file name alone."""
    wanted = {os.path.normpath(str(p)) for p in paths}
    root = Path(job_dir) / CHECKPOINTS_DIR
    try:
        folders = list(root.iterdir())
    except OSError:
        return
    for folder in folders:
        data = _read_pointer(folder)
        if data is None:
            continue
        targets = {os.path.normpath(str(data.get(k) or "")) for k in ("lora", "state")}
        if targets & wanted and data.get("step") != keep_step:
            forget_checkpoint(job_dir, int(data.get("step", -1)))


def _read_pointer(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / POINTER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def external_checkpoints(job_dir: str | Path, tool: str) -> list[ExternalCheckpoint]:
    """Complete pointers of ``tool`` whose files still exist, newest first."""
    out = []
    for info in list_checkpoints(Path(job_dir), deep=False):
        if not info.complete:
            continue
        data = _read_pointer(info.path)
        if data is None or data.get("tool") != tool:
            continue
        lora, state = str(data.get("lora") or ""), str(data.get("state") or "")
        if not lora or not Path(lora).is_file() or (state and not Path(state).is_dir()):
            continue
        out.append(ExternalCheckpoint(info.step, lora, state, True))
    return out


class OutputScanner:
    """Files under ``folder`` whose name matches ``pattern`` and that were not reported yet.
    :meth:`prime` marks what is there already (files of an earlier run). :meth:`scan` lists
    the folder at most every ``interval_s`` and skips files changed in the last ``settle_s``
    (still being written) unless ``force``."""

    def __init__(self, folder: str | Path, pattern: re.Pattern[str], interval_s: float = 1.0,
                 settle_s: float = 0.3) -> None:
        self.folder = Path(folder)
        self.pattern = pattern
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._seen: set[str] = set()
        self._last = 0.0

    def _matches(self) -> list[tuple[Path, re.Match[str]]]:
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:
            return []
        out = []
        for name in names:
            match = self.pattern.fullmatch(name)
            if match is not None:
                out.append((self.folder / name, match))
        return out

    def prime(self) -> None:
        self._seen.update(str(path) for path, _ in self._matches())

    def scan(self, force: bool = False) -> list[tuple[Path, re.Match[str]]]:
        """New complete matching files, in name order."""
        now = time.time()
        if not force and time.monotonic() - self._last < self.interval_s:
            return []
        self._last = time.monotonic()
        out = []
        for path, match in self._matches():
            key = str(path)
            if key in self._seen:
                continue
            try:
                info = path.stat()
            except OSError:
                continue
            if info.st_size == 0 or (not force and now - info.st_mtime < self.settle_s):
                continue  # still being written
            self._seen.add(key)
            out.append((path, match))
        return out


def shim_source() -> str:
    return _SHIM_SOURCE.read_text(encoding="utf-8")


def launcher_files(paths: JobPaths, python: str, script: str | Path, args: list[str],
                   context: dict[str, Any]) -> tuple[list[str], dict[Path, str], Path]:
    """``(argv, files, stop_file)`` to run ``script args`` through the launcher.
    ``context`` gets ``stop_file`` (a new name each launch) and ``job_dir`` added."""
    stop_file = paths.root / STOP_PATTERN.replace("*", secrets.token_hex(4))
    context = dict(context, job_dir=str(paths.root), stop_file=str(stop_file))
    shim = paths.configs / SHIM_NAME
    context_file = paths.configs / CONTEXT_NAME
    argv = [python, str(shim), str(context_file), "--", str(script), *args]
    files = {shim: shim_source(),
             context_file: json.dumps(context, indent=1, ensure_ascii=False) + "\n"}
    return argv, files, stop_file


def check_job(job: TrainingJob, *, tool: str, families: Iterable[str], configured: bool,
              setup_name: str, gpu: str = "a CUDA GPU") -> None:
    """The checks ``build_launch`` of a tool whose model types are its families makes first:
    family, model type, device, base model, dataset folder, install; :class:`SpecError` on the
    first that fails. ``tool`` names it in messages, ``setup_name`` in the install one."""
    families = list(families)
    if job.family not in families:
        raise SpecError(f"family: {tool} here trains {', '.join(families)} "
                        f"(got {job.family!r})")
    model_type = job.extra.get("model_type")
    if model_type and model_type != job.family:
        raise SpecError(f"model_type: {model_type!r} does not match the family "
                        f"{job.family!r} ({tool} model types are the families)")
    if job.device == "cpu":
        raise SpecError(f"device: {tool} trains on {gpu}, not on the CPU")
    require_path("base_model", job.base_model, "the base model")
    require_path("dataset_dir", job.dataset_dir, "the dataset folder", folder=True)
    if not configured:
        raise SpecError(f"backend: {setup_name} is not set up (Settings → Trainers)")


# what ai-toolkit and kohya read from the staged folder (the importer stores these)
STAGED_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def stage_job_dataset(job: TrainingJob, paths: JobPaths) -> dict[Path, str]:
    """(worker thread, ``build_launch``) The job's photo list (``jobs/<id>/dataset.json``,
    from the database: never a folder scan) hard-linked into ``<job>/dataset`` for
    ai-toolkit and kohya, by the one staging function the diffusion-pipe backend uses too
    (:func:`~...core.training.dataset_list.stage_dataset`); returns the ``<stem>.txt``
    caption files to write (the trigger word in front, as the built-in trainer puts it).
    The tools then never write caches into, nor read stray files from, the app's own
    dataset folder. SpecError naming the list when it is missing, empty or names a photo
    that is gone."""
    from ...core.dataset.captions import with_trigger
    from ...core.training.dataset_list import read_dataset_list, stage_dataset

    trigger = job.trigger_word.strip()
    captions = stage_dataset(read_dataset_list(paths.root), paths.root / "dataset",
                             lambda caption: with_trigger(caption, trigger),
                             suffixes=STAGED_IMAGE_SUFFIXES)
    if not any(p.suffix.lower() in STAGED_IMAGE_SUFFIXES
               for p in (paths.root / "dataset").iterdir()):
        raise SpecError(f"dataset.json: {paths.dataset_list} lists no "
                        f"{'/'.join(STAGED_IMAGE_SUFFIXES)} photos")
    return captions


def export_stopped_lora(job_dir: str | Path | None, output_name: str, source: str | Path,
                        step: int) -> str:
    """A stopped external job's newest saved LoRA ``source`` as the job's result, the way the
    built-in trainer leaves it (issue 11, item 16): hard-linked (or copied) to
    ``<job>/<output_name>-step<step>.safetensors``. Returns that path; ``source`` itself when
    there is no job folder or name, or the link and copy fail; "" when ``source`` is not a
    file (nothing usable was saved)."""
    source = Path(source)
    if not str(source) or not source.is_file():
        return ""
    if not job_dir or not output_name:
        return str(source)
    target = Path(job_dir) / f"{stopped_lora_name(output_name, step)}{source.suffix}"
    try:
        if not (target.exists() and os.path.samefile(source, target)):
            link_or_copy(source, target)
    except OSError:
        return str(source)
    return str(target)


def require_path(field: str, value: str, what: str, *, folder: bool = False) -> str:
    """``value`` when it names an existing file (or folder), else :class:`SpecError` naming
    ``field``."""
    if not value or not str(value).strip():
        raise SpecError(f"{field}: {what} is not set")
    path = Path(value).expanduser()
    ok = path.is_dir() if folder else path.exists()
    if not ok:
        raise SpecError(f"{field}: {what} {path} does not exist")
    return str(path)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def dump_toml(data: dict[str, Any]) -> str:
    """TOML text of ``data`` (core.toml_text.dumps: scalars, lists of scalars, tables and
    arrays of tables; strings escaped as TOML basic strings, so Windows paths survive).
    ``None`` values are left out."""
    return toml_text.dumps(_without_none(data))
