"""The tokenizer folder handed to sd-scripts as ``--tokenizer_cache_dir``. Qt-free.

sd-scripts loads its tokenizers by hub id on every run (library/strategy_sd.py:17,
strategy_sdxl.py:24-25, strategy_flux.py:19-27); with the runner's ``HF_HUB_OFFLINE=1`` that
works only from the HF cache — unless ``--tokenizer_cache_dir`` holds
``<id with "/" replaced by "_">/`` (strategy_base.py:54-69, ``_load_tokenizer``). We fill that
folder in the job's ``configs/tokenizers`` from, in order: the base model's diffusers folder
(``tokenizer/``, ``tokenizer_2/``), the job's tokenizer folder (a ComfyUI install, its
``comfy/`` folder, or a tokenizer folder itself), the ComfyUI install the model files live in
(``comfy/sd1_tokenizer``, ``comfy/text_encoders/t5_tokenizer``), and — CLIP only — the CLIP BPE
vocabulary we ship (training_runtime/shipped_vocab.py). A T5 tokenizer found nowhere (and not in
the HF cache) is refused before launch with the places looked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...core.training.spec import JobPaths, SpecError, TrainingJob

TOKENIZERS_DIR = "tokenizers"
Role = Literal["clip", "t5"]
CLIP_L = "openai/clip-vit-large-patch14"
CLIP_G = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
T5_XXL = "google/t5-v1_1-xxl"
# Levels above a model file searched for a ComfyUI install (models/<kind>/<file>).
COMFY_LEVELS = 4
TEXT_SUFFIXES = (".json", ".txt")


@dataclass(frozen=True)
class TokenizerNeed:
    """One tokenizer a script loads: its hub id, kind, diffusers subfolder and ComfyUI path."""

    model_id: str
    role: Role
    label: str
    subfolder: str
    comfy_path: str


CLIP_L_NEED = TokenizerNeed(CLIP_L, "clip", "CLIP-L tokenizer", "tokenizer", "comfy/sd1_tokenizer")
CLIP_G_NEED = TokenizerNeed(CLIP_G, "clip", "CLIP-G tokenizer", "tokenizer_2",
                            "comfy/sd1_tokenizer")
T5_NEED = TokenizerNeed(T5_XXL, "t5", "T5-XXL tokenizer", "tokenizer_2",
                        "comfy/text_encoders/t5_tokenizer")
NEEDS: dict[str, tuple[TokenizerNeed, ...]] = {
    "sd15": (CLIP_L_NEED,), "sdxl": (CLIP_L_NEED, CLIP_G_NEED),
    "flux-dev": (CLIP_L_NEED, T5_NEED), "flux-schnell": (CLIP_L_NEED, T5_NEED),
    "chroma": (CLIP_L_NEED, T5_NEED),  # flux_train_network.py builds FluxTokenizeStrategy
}


def provides(folder: Path, role: Role) -> bool:
    """Whether ``folder`` holds a tokenizer of that kind in files we can copy (text)."""
    if role == "clip":
        return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    tj = folder / "tokenizer.json"       # T5TokenizerFast reads tokenizer.json alone
    if not tj.is_file():
        return False
    try:
        return json.loads(tj.read_text(encoding="utf-8"))["model"]["type"] == "Unigram"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _comfy_roots(paths: list[Path]) -> list[Path]:
    roots: list[Path] = []
    for path in paths:
        roots += list(path.parents)[:COMFY_LEVELS]
    return list(dict.fromkeys(roots))


def candidates(job: TrainingJob, need: TokenizerNeed, model_files: list[str]) -> list[Path]:
    """Where ``need`` is looked for, in order."""
    out: list[Path] = []
    base = Path(job.base_model).expanduser()
    if base.is_dir():
        out.append(base / need.subfolder)
    if job.tokenizer_dir:
        tok = Path(job.tokenizer_dir).expanduser()
        rel = Path(need.comfy_path)
        out += [tok / rel, tok / rel.relative_to("comfy"), tok / rel.name,
                tok / need.subfolder, tok]
    files = [Path(p).expanduser() for p in [job.base_model, *model_files] if p]
    out += [root / need.comfy_path for root in _comfy_roots(files)]
    return list(dict.fromkeys(out))


def in_hf_cache(model_id: str) -> bool:
    """Whether the HF hub cache holds a snapshot of ``model_id`` (sd-scripts then loads it)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(Path.home(), ".cache", "huggingface"), "hub")
    snapshots = Path(hub) / ("models--" + model_id.replace("/", "--")) / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _copy(folder: Path, target: Path) -> dict[Path, str]:
    return {target / p.name: p.read_text(encoding="utf-8")
            for p in sorted(folder.iterdir()) if p.suffix in TEXT_SUFFIXES and p.is_file()}


def _with_pad(files: dict[Path, str], pad: str) -> dict[Path, str]:
    """laion's CLIP-G tokenizer pads with "!" (token 0); the vocabulary is CLIP-L's."""
    out = dict(files)
    for path, text in files.items():
        if path.name in ("tokenizer_config.json", "special_tokens_map.json"):
            data = json.loads(text)
            data["pad_token"] = pad
            out[path] = json.dumps(data)
    return out


def tokenizer_files(job: TrainingJob, paths: JobPaths,
                    model_files: list[str]) -> tuple[Path, dict[Path, str]]:
    """(the ``--tokenizer_cache_dir`` folder, the files to write into it). Raises
    :class:`SpecError` naming the tokenizer and the places looked when one cannot be found."""
    root = paths.configs / TOKENIZERS_DIR
    files: dict[Path, str] = {}
    for need in NEEDS.get(job.family, ()):
        target = root / need.model_id.replace("/", "_")
        looked = candidates(job, need, model_files)
        found = next((c for c in looked if c.is_dir() and provides(c, need.role)), None)
        if found is None and need.role == "clip":
            from ...training_runtime.shipped_vocab import shipped_clip_tokenizer_dir

            found = shipped_clip_tokenizer_dir()
        if found is None:
            if in_hf_cache(need.model_id):
                continue          # sd-scripts finds it in the HF cache
            wanted = "tokenizer.json"
            raise SpecError(
                f"tokenizer_dir: the {need.label} ({need.model_id}) is needed and training "
                f"runs offline; set the tokenizer folder to a ComfyUI install (it has "
                f"{need.comfy_path}) or a folder with {wanted}. Looked in: "
                + ", ".join(str(c) for c in looked))
        copied = _copy(found, target)
        if need.model_id == CLIP_G:
            copied = _with_pad(copied, "!")
        files.update(copied)
    return root, files
