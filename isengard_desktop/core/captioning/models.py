"""The captioning models we know (``resources/captioning/models.toml``) and where they live.

A model is a transformers folder in ``<models>/LLM/<folder>`` (the folder ComfyUI's Florence-2
nodes use). :func:`model_ready` says whether a folder can be loaded (config.json and a
``.safetensors`` file). Qt-free; :func:`installed_models` reads the disk.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CaptionModel", "MODELS_FILE", "installed_models", "load_models", "model_dir",
           "model_ready"]

MODELS_FILE = Path(__file__).resolve().parents[3] / "resources" / "captioning" / "models.toml"
LLM_FOLDER = "LLM"


@dataclass(frozen=True)
class CaptionModel:
    id: str
    label: str
    repo: str
    page: str
    folder: str
    params: str
    approx_size: str
    licence: str
    min_vram_gb: float
    batch_size: int
    revision: str = "main"      # the repo revision "Download" fetches (see models.toml)

    def describe(self) -> str:
        """One line for a tooltip: size, licence, VRAM."""
        return (f"{self.label}: {self.params} parameters, about {self.approx_size}, licence "
                f"{self.licence}; from {self.repo}. Suits GPUs with {self.min_vram_gb:g} GB or "
                f"more; also runs on the CPU (slowly).")


def _models_path() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    return (Path(bundle) / "resources" / "captioning" / MODELS_FILE.name if bundle
            else MODELS_FILE)


def load_models(path: Path | None = None) -> tuple[CaptionModel, ...]:
    """The catalogue of captioning models; a broken file raises ``ValueError`` naming the
    file, the entry and the field."""
    path = path or _models_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the captioning models ({exc})") from exc
    out = []
    for i, entry in enumerate(data.get("models", [])):
        where = f"{path.name}: models[{i}]"
        try:
            out.append(CaptionModel(
                id=str(entry["id"]), label=str(entry["label"]), repo=str(entry["repo"]),
                page=str(entry["page"]), folder=str(entry["folder"]),
                params=str(entry["params"]), approx_size=str(entry["approx_size"]),
                licence=str(entry["licence"]), min_vram_gb=float(entry["min_vram_gb"]),
                batch_size=int(entry["batch_size"]),
                revision=str(entry.get("revision", "main"))))
        except KeyError as exc:
            raise ValueError(f"{where}: field {exc.args[0]!r} is missing") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: a field has the wrong type ({exc})") from exc
        if not out[-1].revision.strip():
            raise ValueError(f"{where}: field 'revision' is empty (a branch, tag or commit)")
        if "/" in out[-1].folder or "\\" in out[-1].folder or out[-1].folder in ("", ".", ".."):
            raise ValueError(f"{where}: field 'folder' must be a plain folder name")
    if not out:
        raise ValueError(f"{path.name}: no [[models]] entries")
    return tuple(out)


def model_dir(models_root: Path, model: CaptionModel) -> Path:
    return Path(models_root) / LLM_FOLDER / model.folder


def model_ready(folder: Path) -> bool:
    """Whether ``folder`` looks like a loadable model (config.json + safetensors weights)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def installed_models(models_root: Path) -> dict[str, Path]:
    """The catalogue's models present under ``models_root``, by id."""
    return {m.id: model_dir(models_root, m) for m in load_models()
            if model_ready(model_dir(models_root, m))}
