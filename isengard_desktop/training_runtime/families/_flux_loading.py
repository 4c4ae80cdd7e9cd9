"""Finding and loading the parts of a Flux.1 / Chroma model offline.

A base model is either

* a **diffusers folder** (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder*/``,
  ``tokenizer*/``, ``scheduler/``), loaded with ``from_pretrained(local_files_only=True)``; or
* a **single ``.safetensors``** (ComfyUI style: ``models/diffusion_models/flux1-dev.safetensors``),
  loaded with ``from_single_file(config=<shipped config folder>, local_files_only=True)``. The
  VAE and text encoders then come from ``job.extra`` (``"vae"``, ``"text_encoder"`` = CLIP-L,
  ``"text_encoder_2"`` = T5-XXL; Chroma: ``"text_encoder"`` = T5-XXL), from the same file when it
  bundles them (``vae.*``, ``text_encoders.clip_l.transformer.*``, ...), or from the ComfyUI
  ``models`` folder the file sits in (``vae/ae.safetensors``, ``text_encoders/clip_l*.safetensors``,
  ``text_encoders/t5xxl*.safetensors``; ``clip/`` too).

Tokenizers come from the model folder, from ``job.tokenizer_dir`` (a ComfyUI install, its
``comfy/`` folder or a tokenizer folder itself), from the config folder, or from the ComfyUI
install the single file lives in (``comfy/sd1_tokenizer``, ``comfy/text_encoders/t5_tokenizer``).
Whatever is missing is reported in one :class:`ModelMissing` naming each file and every place
looked.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import torch

from .base import ModelMissing

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
# Parts other than the diffusion model that a full checkpoint may bundle.
BUNDLE_PREFIXES = ("vae.", "first_stage_model.", "text_encoders.", "cond_stage_model.",
                   "conditioner.")


@dataclass(frozen=True)
class EncoderSpec:
    """One text encoder of a family and where its files are usually found."""

    role: str                     # "clip" or "t5"
    label: str                    # for messages: "CLIP-L text encoder"
    subfolder: str                # diffusers folder: text_encoder / text_encoder_2
    tok_subfolder: str            # diffusers folder: tokenizer / tokenizer_2
    extra_key: str                # job.extra key of a single file
    comfy_tokenizer: str          # relative to a ComfyUI root
    file_patterns: tuple[str, ...]
    bundled_prefixes: tuple[str, ...]


def clip_spec(subfolder: str, tok_subfolder: str, extra_key: str) -> EncoderSpec:
    return EncoderSpec("clip", "CLIP-L text encoder", subfolder, tok_subfolder, extra_key,
                       "comfy/sd1_tokenizer", ("clip_l*.safetensors", "clip-l*.safetensors"),
                       ("text_encoders.clip_l.transformer.", "clip_l.transformer.",
                        "cond_stage_model.transformer."))


def t5_spec(subfolder: str, tok_subfolder: str, extra_key: str) -> EncoderSpec:
    return EncoderSpec("t5", "T5-XXL text encoder", subfolder, tok_subfolder, extra_key,
                       "comfy/text_encoders/t5_tokenizer",
                       ("t5xxl*.safetensors", "t5*.safetensors"),
                       ("text_encoders.t5xxl.transformer.", "t5xxl.transformer."))


@dataclass
class Source:
    """A component: a diffusers/transformers folder, or a file (+ key prefix if bundled)."""

    path: Path
    prefix: str = ""
    skip: tuple[str, ...] = ()    # prefixes of other parts bundled in the same file

    @property
    def is_file(self) -> bool:
        return self.path.is_file()


@dataclass
class LoadPlan:
    single_file: bool
    config_dir: Path
    transformer: Source
    vae: Source
    encoders: dict[str, Source] = field(default_factory=dict)     # role -> source
    tokenizers: dict[str, Path] = field(default_factory=dict)     # role -> folder
    scheduler: dict[str, Any] = field(default_factory=dict)


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a safetensors header (stdlib only, reads a few KB)."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return list(header)


def tokenizer_kind(folder: Path) -> set[str]:
    """Which tokenizers (``clip`` BPE / ``t5`` unigram) ``folder`` can provide."""
    kinds: set[str] = set()
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        kinds.add("clip")
    if (folder / "spiece.model").is_file():
        kinds.add("t5")
    tj = folder / "tokenizer.json"
    if tj.is_file():
        try:
            model_type = json.loads(tj.read_text(encoding="utf-8"))["model"]["type"]
        except (OSError, ValueError, KeyError, TypeError):
            model_type = ""
        kinds.add({"BPE": "clip", "Unigram": "t5"}.get(model_type, ""))
    kinds.discard("")
    return kinds


def comfy_models_dir(path: Path) -> Path | None:
    """The ComfyUI ``models`` folder a file lives in (``.../models/diffusion_models/x``)."""
    for parent in path.resolve().parents:
        if parent.name == "models":
            return parent
    return None


def _preferred(files: list[Path]) -> list[Path]:
    """Full-precision files first; ComfyUI's "scaled" fp8 files cannot be loaded here."""
    files = [f for f in files if "scaled" not in f.name.lower()]

    def rank(f: Path) -> tuple[int, str]:
        name = f.name.lower()
        return (0 if any(t in name for t in ("fp16", "bf16", "fp32")) else 1, name)

    return sorted(dict.fromkeys(files), key=rank)


class Resolver:
    """Works out a :class:`LoadPlan` for one family, collecting everything that is missing."""

    def __init__(self, family_key: str, encoders: tuple[EncoderSpec, ...], job: Any) -> None:
        self.family_key = family_key
        self.encoders = encoders
        self.job = job
        self.missing: list[str] = []

    def _miss(self, what: str, looked: Sequence[Path | str]) -> None:
        where = "; ".join(str(p) for p in looked) or "nowhere (no folder to look in)"
        self.missing.append(f"{what} - looked in: {where}")

    def resolve(self) -> LoadPlan:
        base = Path(self.job.base_model).expanduser()
        extra = self.job.extra or {}
        config_dir = Path(extra.get("config_dir") or CONFIGS_DIR / self.family_key)
        if not base.exists():
            raise ModelMissing(f"Base model not found: {base}")
        if base.is_dir():
            plan = self._folder_plan(base, config_dir)
        elif base.suffix.lower() in (".safetensors", ".sft"):
            plan = self._file_plan(base, config_dir)
        else:
            raise ModelMissing(f"Base model {base} is neither a diffusers folder nor a "
                               ".safetensors file")
        self._tokenizers(plan, base)
        sched = base / "scheduler" / "scheduler_config.json" if base.is_dir() else None
        if sched is None or not sched.is_file():
            sched = config_dir / "scheduler" / "scheduler_config.json"
        if sched.is_file():
            plan.scheduler = json.loads(sched.read_text(encoding="utf-8"))
        else:
            self._miss("scheduler config (scheduler/scheduler_config.json)", [sched.parent])
        if self.missing:
            raise ModelMissing(f"{self.family_key}: missing "
                               + (" | ".join(self.missing)))
        return plan

    # ------------------------------------------------------------------ diffusers folder

    def _folder_plan(self, base: Path, config_dir: Path) -> LoadPlan:
        plan = LoadPlan(False, config_dir, Source(base / "transformer"), Source(base / "vae"))
        for what, sub in (("transformer", "transformer"), ("VAE", "vae")):
            if not (base / sub / "config.json").is_file():
                self._miss(f"{what} ({sub}/config.json + weights)", [base / sub])
        for spec in self.encoders:
            folder = base / spec.subfolder
            if (folder / "config.json").is_file():
                plan.encoders[spec.role] = Source(folder)
            else:
                self._miss(f"{spec.label} ({spec.subfolder}/config.json + weights)", [folder])
        return plan

    # ----------------------------------------------------------------------- single file

    def _file_plan(self, base: Path, config_dir: Path) -> LoadPlan:
        extra = self.job.extra or {}
        for sub in ["transformer", "vae"] + [s.subfolder for s in self.encoders]:
            if not (config_dir / sub / "config.json").is_file():
                self._miss(f"config {sub}/config.json for single-file loading", [config_dir / sub])
        keys = safetensors_keys(base)
        models = comfy_models_dir(base)
        plan = LoadPlan(True, config_dir, Source(base), Source(base))
        # VAE
        vae_prefix = next((p for p in ("vae.", "first_stage_model.")
                           if any(k.startswith(p) for k in keys)), None)
        if extra.get("vae"):
            plan.vae = self._existing(Path(extra["vae"]), "VAE (job.extra['vae'])")
        elif vae_prefix:
            plan.vae = Source(base, vae_prefix)
        else:
            looked = [models / "vae"] if models else []
            found = self._search(looked, ("ae.safetensors", "ae.sft", "flux_vae.safetensors",
                                          "flux-vae.safetensors", "*flux*.safetensors"))
            if found:
                plan.vae = Source(found)
            else:
                self._miss("VAE (ae.safetensors, or set it in the job)", looked)
        # text encoders
        for spec in self.encoders:
            prefix = next((p for p in spec.bundled_prefixes
                           if any(k.startswith(p) for k in keys)), None)
            src: Source | None
            if extra.get(spec.extra_key):
                src = self._existing(Path(extra[spec.extra_key]),
                                     f"{spec.label} (job.extra['{spec.extra_key}'])")
            elif prefix:
                src = Source(base, prefix)
            else:
                looked = [models / "text_encoders", models / "clip"] if models else []
                found = self._search(looked, spec.file_patterns)
                src = Source(found) if found else None
                if src is None:
                    self._miss(f"{spec.label} ({' or '.join(spec.file_patterns)}; fp16/bf16, "
                               "not the 'scaled' fp8 files)", looked)
            if src is not None:
                plan.encoders[spec.role] = src
        bundled = tuple(p for p in BUNDLE_PREFIXES if any(k.startswith(p) for k in keys))
        plan.transformer = Source(base, "", bundled)
        return plan

    def _existing(self, path: Path, what: str) -> Source:
        if not path.is_file():
            self._miss(what, [path])
        return Source(path)

    @staticmethod
    def _search(folders: list[Path], patterns: tuple[str, ...]) -> Path | None:
        for pattern in patterns:
            for folder in folders:
                if folder.is_dir():
                    hits = _preferred([p for p in folder.rglob(pattern) if p.is_file()])
                    if hits:
                        return hits[0]
        return None

    # ------------------------------------------------------------------------ tokenizers

    def _tokenizers(self, plan: LoadPlan, base: Path) -> None:
        tok_dir = Path(self.job.tokenizer_dir).expanduser() if self.job.tokenizer_dir else None
        models = comfy_models_dir(base) if base.is_file() else None
        for spec in self.encoders:
            rel = Path(spec.comfy_tokenizer)
            candidates: list[Path] = []
            if base.is_dir():
                candidates.append(base / spec.tok_subfolder)
            if tok_dir is not None:
                candidates += [tok_dir, tok_dir / spec.tok_subfolder, tok_dir / rel,
                               tok_dir / rel.relative_to("comfy"), tok_dir / rel.name]
            candidates.append(plan.config_dir / spec.tok_subfolder)
            if models is not None:
                candidates.append(models.parent / rel)
            candidates = list(dict.fromkeys(candidates))
            found = next((c for c in candidates if c.is_dir() and spec.role in tokenizer_kind(c)),
                         None)
            if found is None and spec.role == "clip":
                from ..shipped_vocab import shipped_clip_tokenizer_dir

                found = shipped_clip_tokenizer_dir()
            if found is None:
                files = ("vocab.json + merges.txt" if spec.role == "clip"
                         else "tokenizer.json or spiece.model")
                self._miss(f"{spec.label} tokenizer ({files}; a ComfyUI install has it in "
                           f"{spec.comfy_tokenizer} - set the tokenizer folder)", candidates)
            else:
                plan.tokenizers[spec.role] = found


# ----------------------------------------------------------------------------- loading


def load_state_dict(src: Source) -> dict[str, torch.Tensor]:
    """The tensors of a file component, with its bundle prefix removed."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    with safe_open(str(src.path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
            if key.startswith(src.prefix) and not (src.skip and key.startswith(src.skip)):
                out[key[len(src.prefix):]] = f.get_tensor(key)
    return out


def load_text_encoder(spec: EncoderSpec, src: Source, config_dir: Path, dtype: torch.dtype):
    """CLIPTextModel / T5EncoderModel from a transformers folder or a single file (ComfyUI's
    ``clip_l.safetensors`` / ``t5xxl_fp16.safetensors`` are already in transformers layout)."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    cls, config_cls = ((CLIPTextModel, CLIPTextConfig) if spec.role == "clip"
                       else (T5EncoderModel, T5Config))
    if not src.is_file:
        model = cls.from_pretrained(str(src.path), dtype=dtype, local_files_only=True)
    else:
        from accelerate import init_empty_weights

        state = load_state_dict(src)
        if any("scale_weight" in k or k == "scaled_fp8" for k in state):
            raise ModelMissing(f"{src.path} is a ComfyUI 'scaled' fp8 {spec.label}; use the "
                               "fp16/bf16 file instead")
        config = config_cls.from_pretrained(str(config_dir / spec.subfolder))
        with init_empty_weights(include_buffers=False):
            model = cls(config)  # type: ignore[arg-type]  # cls matches config_cls per spec
        model.load_state_dict(state, strict=False, assign=True)
        model.tie_weights()
        left = [n for n, p in model.named_parameters() if p.is_meta]
        if left:
            raise ModelMissing(f"{src.path} is not a {spec.label} in the expected layout "
                               f"(missing {len(left)} tensors, e.g. {left[0]})")
        model = model.to(dtype)  # type: ignore[arg-type]  # transformers' .to stub
    model.requires_grad_(False)
    return model.eval()


def load_tokenizer(spec: EncoderSpec, folder: Path):
    from transformers import CLIPTokenizer, T5Tokenizer

    cls = CLIPTokenizer if spec.role == "clip" else T5Tokenizer
    return cls.from_pretrained(str(folder), local_files_only=True)


def _single_file_source(src: Source) -> Any:
    """What ``from_single_file`` gets: the path, or the tensors when the file bundles other
    parts (only this part's keys) or is a ``.sft`` (which diffusers would unpickle)."""
    if src.prefix or src.skip or src.path.suffix.lower() != ".safetensors":
        return load_state_dict(src)
    return str(src.path)


def _load_frozen(cls: Any, src: Source, single_file: bool, subfolder: str, plan: LoadPlan,
                 dtype: torch.dtype):
    """A diffusers model from its folder, or from a single file with the shipped config."""
    if not single_file:
        model = cls.from_pretrained(str(src.path), torch_dtype=dtype, local_files_only=True)
    else:
        model = cls.from_single_file(_single_file_source(src), config=str(plan.config_dir),
                                     subfolder=subfolder, torch_dtype=dtype,
                                     local_files_only=True)
    model.requires_grad_(False)
    return model


def load_vae(plan: LoadPlan, dtype: torch.dtype):
    from diffusers import AutoencoderKL

    return _load_frozen(AutoencoderKL, plan.vae, plan.vae.is_file, "vae", plan, dtype).eval()


def load_transformer(cls: Any, plan: LoadPlan, dtype: torch.dtype):
    return _load_frozen(cls, plan.transformer, plan.single_file, "transformer", plan, dtype)
