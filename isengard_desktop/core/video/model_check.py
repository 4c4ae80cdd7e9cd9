"""What a video workflow lacks: asked of a ComfyUI server's ``/object_info`` (the check a
video job makes before it starts, and the Video tab's "Get …" banner) or, with no server
ready, of the model folders (the files of the catalogue's video set for the workflow).
Qt-free; :func:`missing_here` reads the disk (run it off the UI thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..comfy.graph_check import folder_noun, model_choices, workflow_missing
from ..model_sets import shipped_catalogue
from ..models_catalogue import find_present

__all__ = ["MAIN_MODEL_HINTS", "ModelCheck", "main_model_gap", "missing_here", "pick_main",
           "workflow_gaps"]

# name parts that identify the main model of each workflow among a server's files
MAIN_MODEL_HINTS: Mapping[str, tuple[str, ...]] = {
    "wan21-i2v": ("wan", "i2v"), "wan21-flf2v": ("wan", "flf2v"), "wan21-t2v": ("wan", "t2v"),
    "ltxv-i2v": ("ltx",), "ltxv-flf2v": ("ltx",), "ltxv-t2v": ("ltx",),
}


@dataclass(frozen=True)
class ModelCheck:
    """What the server lacks to run one video workflow. ``server`` is "" when no server was
    ready: then ``missing`` names the files of the workflow's catalogue video set that the
    model folders lack (``find_present``: name and known size). ``error`` says why the server
    could not be asked."""

    workflow: str
    title: str
    server: str
    missing: tuple[str, ...] = ()     # user-facing reasons, as a job's failure names them
    error: str = ""

    @property
    def models_missing(self) -> bool:
        """Some reason is a missing model file (not only a missing node: those start with
        "needs node", ``core/comfy/graph_check.py: _needs_node``)."""
        return any(not m.startswith("needs node") for m in self.missing)


def main_model_gap(spec: Any, info: Mapping) -> str | None:
    """The workflow's main model (its ``model`` param) when the server lists files in its
    folder but none is the workflow's file or fits its name hints (:data:`MAIN_MODEL_HINTS`);
    an empty folder is already named by ``workflow_missing``."""
    p = spec.params.get("model")
    if p is None or p.type != "model":
        return None
    choices = model_choices(info, p.model_folder)
    if not choices or pick_main(spec, choices) is not None:
        return None
    default = spec.graph[p.node]["inputs"][p.input]
    _noun, where = folder_noun(p.model_folder)
    return f"no {p.label or 'model'} ({default}) in {where}"


def pick_main(spec: Any, choices: list[str]) -> str | None:
    """The file among ``choices`` the workflow's ``model`` param takes: its own file, else
    the first whose name has every hint of :data:`MAIN_MODEL_HINTS`; None when none fits."""
    p = spec.params["model"]
    default = spec.graph[p.node]["inputs"][p.input]
    if default in choices:
        return str(default)
    hints = MAIN_MODEL_HINTS.get(spec.name, ())
    for name in choices:
        low = name.lower()
        if hints and all(h in low for h in hints):
            return name
    return None


def workflow_gaps(spec: Any, info: Mapping, model: str = "") -> list[str]:
    """What ``info``'s server lacks to run ``spec``: ``workflow_missing`` (nodes, empty model
    folders, auxiliary models) plus the main model unless the caller names one (``model``)."""
    missing = workflow_missing(spec, info)
    gap = None if model else main_model_gap(spec, info)
    if gap is not None:
        missing.append(gap)
    return missing


def missing_here(workflow: str, folders: list[Path]) -> tuple[str, ...]:
    """(worker thread) The files of the catalogue's video set for ``workflow`` that none of
    ``folders`` holds, as reasons ("no wan_2.1_vae.safetensors in vae/"); () when no set
    serves it."""
    cat = shipped_catalogue()
    video = cat.video_set_for(workflow) if cat is not None else None
    if cat is None or video is None:
        return ()
    files = [cat.files[f] for f in video.files]
    present = find_present(files, [f for f in folders if f.is_dir()])
    return tuple(f"no {f.name} in {f.folder}/" for f in files if f.id not in present)
