"""The versioned training job spec shared by the app, backends and the trainer child.

A :class:`TrainingJob` is written to ``jobs/<job_id>/job.json`` before launch and resume
reuses it; it changes only when the job recovers from running out of memory (one memory tier
lower, :mod:`.oom`). Secrets are never part of it: they reach children
only through environment variables.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ..naming import is_windows_reserved

SPEC_VERSION = 1

FAMILIES = ("sd15", "sdxl", "flux-dev", "flux-schnell", "chroma")
SCHEDULERS = ("constant", "cosine", "linear")
OPTIMIZERS = ("adamw", "adamw8bit")
PRECISIONS = ("auto", "bf16", "fp16", "no")
QUANTIZE = ("none", "int8", "float8", "nf4")
DEVICES = ("auto", "cpu", "cuda")

# version N -> function(raw dict at version N) -> raw dict at version N+1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class SpecError(ValueError):
    """A job spec that cannot be used; the message names the field."""


# characters no file name may contain on Windows (or "/" anywhere); control characters too
_NOT_IN_FILE_NAMES = set('/\\:*?"<>|') | {chr(c) for c in range(32)}


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class TrainingJob:
    """Everything a backend needs to train one LoRA. Paths are absolute strings."""

    job_id: str
    character_id: int
    character_name: str
    trigger_word: str
    family: str                    # one of FAMILIES
    base_model: str                # diffusers folder or single .safetensors file
    dataset_dir: str               # the character's folder (the photos: jobs/<id>/dataset.json)
    output_name: str               # LoRA file stem
    version: int = SPEC_VERSION
    backend: str = "builtin"
    resolution: int = 512
    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    steps: int = 1000
    batch_size: int = 1
    grad_accum: int = 1
    repeats: int = 1
    caption_dropout: float = 0.05
    lr_scheduler: str = "constant"  # one of SCHEDULERS
    warmup_steps: int = 0
    optimizer: str = "adamw"        # adamw8bit needs bitsandbytes and CUDA, else falls back
    mixed_precision: str = "auto"   # auto: bf16/fp16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = True
    seed: int = 42
    sample_every: int = 0           # 0: no samples during training
    sample_prompts: list[str] = field(default_factory=list)
    sample_steps: int = 20
    checkpoint_every: int = 0       # 0: only at the end / on stop
    keep_checkpoints: int = 3
    quantize_base: str = "none"     # Flux/Chroma frozen base in 8-bit (int8, float8) or 4-bit (nf4)
    device: str = "auto"
    tokenizer_dir: str = ""         # optional: where tokenizers live (e.g. a ComfyUI install)
    preset: str = ""                # Quick / Balanced / High Quality, for display
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific options

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first bad field."""
        checks = [
            ("family", self.family in FAMILIES, f"must be one of {', '.join(FAMILIES)}"),
            ("lr_scheduler", self.lr_scheduler in SCHEDULERS, f"must be one of {SCHEDULERS}"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {OPTIMIZERS}"),
            ("mixed_precision", self.mixed_precision in PRECISIONS, f"must be one of {PRECISIONS}"),
            ("quantize_base", self.quantize_base in QUANTIZE, f"must be one of {QUANTIZE}"),
            ("device", self.device in DEVICES, f"must be one of {DEVICES}"),
            ("steps", self.steps >= 1, "must be at least 1"),
            ("rank", 1 <= self.rank <= 1024, "must be between 1 and 1024"),
            ("alpha", self.alpha > 0, "must be positive"),
            ("learning_rate", 0 < self.learning_rate < 1, "must be between 0 and 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("grad_accum", self.grad_accum >= 1, "must be at least 1"),
            ("repeats", self.repeats >= 1, "must be at least 1"),
            ("resolution", 64 <= self.resolution <= 4096 and self.resolution % 64 == 0,
             "must be a multiple of 64 between 64 and 4096"),
            ("caption_dropout", 0 <= self.caption_dropout < 1, "must be between 0 and 1"),
            ("warmup_steps", self.warmup_steps >= 0, "cannot be negative"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "must be at least 1"),
            ("trigger_word", bool(self.trigger_word.strip()), "cannot be empty"),
            ("output_name", bool(self.output_name.strip())
             and not set(self.output_name) & _NOT_IN_FILE_NAMES
             and self.output_name.rstrip(". ") == self.output_name
             and not is_windows_reserved(self.output_name),
             "must be a plain file name that Windows accepts too (no / \\ : * ? \" < > |, "
             "no device name like CON or NUL, no trailing dot or space)"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise SpecError(f"{name}: {why} (got {getattr(self, name)!r})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingJob:
        version = int(data.get("version", 1))
        if version > SPEC_VERSION:
            raise SpecError(f"version: job spec version {version} is newer than this app "
                            f"({SPEC_VERSION})")
        while version < SPEC_VERSION:
            data = MIGRATIONS[version](dict(data))
            version += 1
            data["version"] = version
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name in _REQUIRED and f.name not in data]
        if missing:
            raise SpecError(f"{missing[0]}: missing from the job spec")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> TrainingJob:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"job spec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError("job spec must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Path) -> TrainingJob:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


_REQUIRED = ("job_id", "character_id", "character_name", "trigger_word", "family", "base_model",
             "dataset_dir", "output_name")


@dataclass(frozen=True)
class JobPaths:
    """The files of one job folder (``jobs/<job_id>/``)."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "job.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def stdout(self) -> Path:
        return self.root / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr.log"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def dataset_list(self) -> Path:
        """The photos the job trains on (:mod:`.dataset_list`), written at its first start."""
        return self.root / "dataset.json"

    def lora(self, output_name: str) -> Path:
        return self.root / f"{output_name}.safetensors"


def stopped_lora_name(output_name: str, step: int) -> str:
    """The LoRA a stopped job leaves (its newest checkpoint's weights): ``<name>-step<N>``."""
    return f"{output_name}-step{step}"
