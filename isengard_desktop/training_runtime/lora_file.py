"""Writing the finished LoRA: tensors from the family's exporter plus header metadata.

The header follows what kohya's sd-scripts and the SAI model spec write (``ss_*`` and
``modelspec.*``, all strings), so A1111/Forge, ComfyUI managers and civitai show the right
base model, rank, alpha and trigger. The file is written next to its final name and renamed
into place, so a reader never sees half a LoRA.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import APP_NAME, __version__
from ..core.fsutil import SHARED_MODE, atomic_write_bytes
from ..core.training.spec import TrainingJob

NETWORK_MODULE = "networks.lora"


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """How often each comma-separated tag occurs (kohya's ``ss_tag_frequency`` counts)."""
    counts: Counter[str] = Counter()
    for caption in captions:
        for tag in caption.split(","):
            tag = tag.strip()
            if tag:
                counts[tag] += 1
    return dict(counts)


def _num(value: float) -> str:
    return repr(float(value))


def build_metadata(job: TrainingJob, *, architecture: str, base_model_version: str,
                   steps: int, resolution: tuple[int, int], captions: Iterable[str],
                   num_images: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The safetensors header metadata for ``job``'s LoRA (every value a string)."""
    dataset_name = Path(job.dataset_dir).name or "dataset"
    tags = tag_frequency(captions)
    tags.setdefault(job.trigger_word.strip(), 0)
    w, h = resolution
    now = time.time()
    meta = {
        "ss_output_name": job.output_name,
        "ss_base_model_version": base_model_version,
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": str(int(job.rank)),
        "ss_network_alpha": _num(job.alpha),
        "ss_tag_frequency": json.dumps({dataset_name: tags}, ensure_ascii=False),
        "ss_steps": str(int(steps)),
        "ss_max_train_steps": str(int(job.steps)),
        "ss_resolution": f"({w}, {h})",
        "ss_learning_rate": _num(job.learning_rate),
        "ss_unet_lr": _num(job.learning_rate),
        "ss_text_encoder_lr": "0.0",
        "ss_network_train_unet_only": "True",
        "ss_lr_scheduler": job.lr_scheduler,
        "ss_lr_warmup_steps": str(int(job.warmup_steps)),
        "ss_optimizer": job.optimizer,
        "ss_batch_size_per_device": str(int(job.batch_size)),
        "ss_gradient_accumulation_steps": str(int(job.grad_accum)),
        "ss_num_train_images": str(int(num_images) * int(job.repeats)),
        "ss_caption_dropout_rate": _num(job.caption_dropout),
        "ss_seed": str(int(job.seed)),
        "ss_sd_model_name": Path(job.base_model).name,
        "ss_training_finished_at": str(int(now)),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture,
        "modelspec.title": job.character_name or job.output_name,
        "modelspec.trigger_phrase": job.trigger_word.strip(),
        "modelspec.resolution": f"{w}x{h}",
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)),
        "software.name": APP_NAME,
        "software.version": __version__,
        "isengard.job_id": job.job_id,
    }
    if extra:
        meta.update({str(k): str(v) for k, v in extra.items()})
    return meta


def write_lora(path: Path, tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> Path:
    """Save ``tensors`` with ``metadata`` as ``path`` atomically (core.fsutil's writer:
    temp file, fsync, rename), readable like any other file the user creates."""
    from safetensors.torch import save

    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata must be strings: {bad[:3]}")
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=dict(metadata))
    atomic_write_bytes(Path(path), data, mode=SHARED_MODE)
    return Path(path)


def read_metadata(path: Path) -> dict[str, str]:
    """The header metadata of a safetensors file (stdlib only: 8-byte length + JSON)."""
    import struct

    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return dict(header.get("__metadata__", {}))

