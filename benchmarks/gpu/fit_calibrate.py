"""Measure the memory model against real training on an NVIDIA GPU (issue 16 item 6).

    bash ./bootstrap.sh                 # the repository's own set-up (CUDA torch: see README)
    .venv/bin/python benchmarks/gpu/fit_calibrate.py [--families sd15,sdxl,flux-dev,chroma]
        [--tiers 8,12,16,24,48] [--steps 3] [--time-limit 540] [--cpu-smoke]

For each model family and each VRAM tier of the memory model (``core/training/memory_fit.py``
``TIERS``), the job the Training tab would make for a card of that size (the default preset,
``core/training/presets.py`` ``apply_preset(..., vram_gb=tier)``) trains for a few steps, and
the measured peak VRAM (allocated and reserved by PyTorch's allocator, during the training
steps), peak RAM (the process's resident memory, sampled at 20 Hz over the whole run) and
seconds per step (after the first) are printed next to ``memory_fit.predict``'s estimate, as
ONE JSON line.

How it trains: in this process, with the built-in trainer's own ``Trainer``
(``training_runtime/loop.py``) and Family classes, not through the trainer child: the child
would need the full-size models on disk (Flux alone is ~24 GB of weights to write and read per
run), which does not fit 10 minutes on one H100. Nothing is downloaded: each model is built
with random weights from the configs the repository ships (``training_runtime/configs/<family>``)
directly on the GPU in the job's precision, by standing in for ``from_pretrained`` of diffusers
and transformers while the Family loads (its real loading code runs: the folder checks,
quantization of the frozen base, moving parts, dropping the text encoders after caching).
The CLIP tokenizer is the real vocabulary the app ships (``shipped_vocab.py``), the T5 one a
small unigram vocabulary (token ids only decide which embedding rows are read).

Without an NVIDIA GPU it says so in its JSON line and exits 0. ``--cpu-smoke`` runs the same
code path on the CPU with tiny models (the tiny builders' configs, 64 px images), for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from isengard_desktop.core.training.memory_fit import TIERS, fit, predict  # noqa: E402
from isengard_desktop.core.training.presets import DEFAULT_PRESET, apply_preset  # noqa: E402
from isengard_desktop.core.training.spec import TrainingJob  # noqa: E402

FAMILIES = ("sd15", "sdxl", "flux-dev", "chroma")
CONFIGS = REPO / "isengard_desktop" / "training_runtime" / "configs"
GIB = float(1 << 30)
# tokenizer folders each family's loader reads (diffusers layout): "clip" or "t5"
TOKENIZERS = {"sd15": {"tokenizer": "clip"},
              "sdxl": {"tokenizer": "clip", "tokenizer_2": "clip"},
              "flux-dev": {"tokenizer": "clip", "tokenizer_2": "t5"},
              "flux-schnell": {"tokenizer": "clip", "tokenizer_2": "t5"},
              "chroma": {"tokenizer": "t5"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES),
                   help="comma-separated families (sd15, sdxl, flux-dev, flux-schnell, chroma)")
    p.add_argument("--tiers", default=",".join(str(t) for t in TIERS),
                   help="comma-separated VRAM tiers in GB (the memory model's: 8,12,16,24,48)")
    p.add_argument("--steps", type=int, default=3, help="training steps per run (≥ 2)")
    p.add_argument("--time-limit", type=float, default=540.0,
                   help="seconds; runs not started by then are listed as skipped")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="the same code path on tiny models on the CPU (no GPU needed)")
    args = p.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    args.tiers = [int(t) for t in args.tiers.split(",") if t.strip()]
    unknown = [f for f in args.families if f not in TOKENIZERS]
    if unknown:
        p.error(f"--families: unknown {', '.join(unknown)} (known: {', '.join(TOKENIZERS)})")
    if args.steps < 2:
        p.error("--steps: at least 2 (the first step's time is not counted)")
    return args


# ------------------------------------------------------------------------------ model folders

def _tokenizer(folder: Path, kind: str) -> None:
    if kind == "clip":
        from isengard_desktop.training_runtime.shipped_vocab import build_clip_tokenizer_files

        build_clip_tokenizer_files(folder)
    else:
        from tests.helpers.tiny_flux_models import make_t5_tokenizer

        make_t5_tokenizer(folder)


def full_size_folder(family: str, root: Path) -> Path:
    """A diffusers-layout folder with the shipped configs of ``family`` and tokenizers, no
    weights (the random-weight loaders build every part from its config)."""
    folder = root / f"{family}-configs"
    if not folder.is_dir():
        shutil.copytree(CONFIGS / family, folder)
        for sub, kind in TOKENIZERS[family].items():
            _tokenizer(folder / sub, kind)
    return folder


def tiny_folder(family: str, root: Path) -> Path:
    """The tiny builders' folder of ``family`` (configs, tokenizers; the weights they also
    write are not read: the random-weight loaders build from the configs, as at full size)."""
    folder = root / f"{family}-tiny"
    if folder.is_dir():
        return folder
    if family in ("sd15", "sdxl"):
        from isengard_desktop.training_runtime import tiny_models

        build = tiny_models.build_sd15 if family == "sd15" else tiny_models.build_sdxl
        return build(folder)
    from tests.helpers import tiny_flux_models

    if family == "chroma":
        return tiny_flux_models.build_chroma(folder)
    return tiny_flux_models.build_flux(folder, "dev" if family == "flux-dev" else "schnell")


# --------------------------------------------------------------------------- random weights

@contextlib.contextmanager
def _building(dtype: Any, device: Any) -> Iterator[None]:
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype if dtype in (torch.float32, torch.bfloat16, torch.float16)
                            else torch.float32)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def _finite(model: Any) -> Any:
    """Parameters a model's initialiser left empty (non-finite values) get small normal ones,
    so the random model computes finite losses."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                p.normal_(0.0, 0.02)
    return model


@contextlib.contextmanager
def random_weight_loaders(device: Any) -> Iterator[None]:
    """While active, diffusers' and transformers' ``from_pretrained`` build the model from the
    folder's config with random weights on ``device`` in the requested precision."""
    import diffusers
    import torch
    import transformers

    d_orig = diffusers.ModelMixin.__dict__["from_pretrained"]
    t_orig = transformers.PreTrainedModel.__dict__["from_pretrained"]

    def d_from(cls, path, *args, subfolder=None, torch_dtype=None, **kwargs):
        config = cls.load_config(str(path), subfolder=subfolder)
        with _building(torch_dtype or torch.float32, device):
            model = cls.from_config(config)
        return _finite(model).eval()

    def t_from(cls, path, *args, subfolder="", dtype=None, torch_dtype=None, **kwargs):
        config = cls.config_class.from_pretrained(str(path), subfolder=subfolder)
        with _building(dtype or torch_dtype or torch.float32, device):
            model = cls(config)
        return _finite(model).eval()

    diffusers.ModelMixin.from_pretrained = classmethod(d_from)  # type: ignore[method-assign,assignment]
    transformers.PreTrainedModel.from_pretrained = classmethod(t_from)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        diffusers.ModelMixin.from_pretrained = d_orig  # type: ignore[method-assign]
        transformers.PreTrainedModel.from_pretrained = t_orig  # type: ignore[method-assign]


# -------------------------------------------------------------------------------- measuring

class _Events:
    """The trainer's event stream (an :class:`Emitter`'s file): step times and errors."""

    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.errors: list[str] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "step":
                self.step_times.append(time.perf_counter())
            elif event.get("event") == "log" and event.get("level") == "warning":
                self.errors.append(str(event.get("message")))
        return len(text)

    def flush(self) -> None:
        pass

    def sec_per_step(self) -> float | None:
        t = self.step_times
        return (t[-1] - t[0]) / (len(t) - 1) if len(t) >= 2 else None


class _RamPeak:
    """The process's peak resident memory while active (psutil, 20 Hz)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _RamPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def job_for(family: str, tier: int, folder: Path, data: Path, steps: int,
            smoke: bool) -> TrainingJob:
    """The job the Training tab makes for a ``tier`` GB card (default preset, built-in
    trainer), cut to ``steps`` steps without samples or checkpoints."""
    values = apply_preset({}, family, DEFAULT_PRESET, vram_gb=float(tier), backend="builtin")
    values.update(job_id=f"calib-{family}-{tier}", character_id=1, character_name="Calib",
                  trigger_word="sks", family=family, base_model=str(folder),
                  dataset_dir=str(data), output_name=f"calib_{family}_{tier}",
                  steps=steps, sample_every=0, checkpoint_every=0, keep_checkpoints=1,
                  warmup_steps=0, device="cpu" if smoke else "cuda",
                  mixed_precision="no" if smoke else "bf16")
    if smoke:
        values["resolution"] = 64          # tiny models: the same path, small images
    known = set(TrainingJob.__dataclass_fields__)
    return TrainingJob.from_dict({k: v for k, v in values.items() if k in known})


def run_one(job: TrainingJob, job_dir: Path, smoke: bool) -> dict[str, Any]:
    """Train ``job`` in this process; the measured figures."""
    import torch

    from isengard_desktop.core.training.dataset_list import (entries_from_folder,
                                                              write_dataset_list)
    from isengard_desktop.training_runtime import loop
    from isengard_desktop.training_runtime.events import Emitter

    job_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_list(job_dir, entries_from_folder(job.dataset_dir))
    events = _Events()
    cuda = torch.device("cuda") if not smoke else None
    peaks: dict[str, float] = {}
    trainer = loop.Trainer(job, job_dir, Emitter(events), threading.Event())  # type: ignore[arg-type]
    train = trainer._train

    def measured_train() -> None:          # the peak of the training steps only
        if cuda is not None:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        train()
        if cuda is not None:
            torch.cuda.synchronize()
            peaks["allocated"] = torch.cuda.max_memory_allocated() / GIB
            peaks["reserved"] = torch.cuda.max_memory_reserved() / GIB

    trainer._train = measured_train  # type: ignore[method-assign]
    start = time.perf_counter()
    with _RamPeak() as ram, random_weight_loaders(cuda or torch.device("cpu")):
        status = trainer.run()
    per_step = events.sec_per_step()
    out: dict[str, Any] = {
        "exit": status, "wall_s": round(time.perf_counter() - start, 1),
        "steps_done": trainer.step,
        "peak_vram_allocated_gb": round(peaks["allocated"], 2) if peaks else None,
        "peak_vram_reserved_gb": round(peaks["reserved"], 2) if peaks else None,
        "peak_ram_gb": round(ram.peak / GIB, 2),
        "s_per_step": round(per_step, 3) if per_step is not None else None,
    }
    if events.errors:
        out["warnings"] = events.errors
    del trainer, measured_train
    gc.collect()
    if cuda is not None:
        torch.cuda.empty_cache()
    return out


def calibrate(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    from isengard_desktop.training_runtime.tiny_models import make_dataset

    smoke = args.cpu_smoke
    size = (64, 64) if smoke else (512, 512)     # scaled up to each bucket
    data = make_dataset(root / "data", count=2, size=size)
    deadline = time.monotonic() + args.time_limit
    results: list[dict[str, Any]] = []
    for family in args.families:
        folder = tiny_folder(family, root) if smoke else full_size_folder(family, root)
        for tier in args.tiers:
            job = job_for(family, tier, folder, data, args.steps, smoke)
            settings = {k: getattr(job, k) for k in (
                "resolution", "batch_size", "grad_accum", "rank", "optimizer", "quantize_base",
                "gradient_checkpointing", "mixed_precision")}
            estimate = predict(job, family, "builtin")
            verdict = fit(estimate, float(tier), job_settings=job, family=family,
                          backend="builtin")
            row: dict[str, Any] = {
                "family": family, "tier_gb": tier, "settings": settings,
                "predicted": {"vram_gb": round(estimate.vram_gb, 2),
                              "ram_gb": round(estimate.ram_gb, 2),
                              "fits_tier": verdict.fits}}
            if time.monotonic() > deadline:
                row["skipped"] = f"time limit ({args.time_limit:.0f} s) reached"
                results.append(row)
                continue
            try:
                row["measured"] = run_one(job, root / "jobs" / job.job_id, smoke)
            except Exception as exc:  # noqa: BLE001 - one failed run must not hide the rest
                import torch

                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                gc.collect()
                if not smoke:
                    torch.cuda.empty_cache()
            measured = row.get("measured") or {}
            got = measured.get("peak_vram_reserved_gb")
            if got:
                row["measured_over_predicted_vram"] = round(got / estimate.vram_gb, 2)
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    result: dict[str, Any] = {"benchmark": "fit_calibrate", "torch": torch.__version__,
                              "steps": args.steps, "preset": DEFAULT_PRESET,
                              "backend": "builtin",
                              "mode": "in-process: training_runtime.loop.Trainer and the "
                                      "Family classes, random weights built from the shipped "
                                      "configs (no trainer child, no download)"}
    if args.cpu_smoke:
        result.update(device="cpu (smoke: tiny models, 64 px)")
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    elif not torch.cuda.is_available():
        why = ("PyTorch is a CPU-only build" if not torch.version.cuda
               else f"PyTorch (CUDA {torch.version.cuda}) sees no GPU")
        result.update(ok=True, gpu=None,
                      note=f"no NVIDIA GPU here ({why}): nothing to calibrate. Use "
                           "--cpu-smoke to check the code path on tiny models.")
        print(json.dumps(result))
        return 0
    else:
        props = torch.cuda.get_device_properties(0)
        result.update(device="cuda", gpu=props.name,
                      gpu_vram_gb=round(props.total_memory / GIB, 1))
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "DIFFUSERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    start = time.perf_counter()
    # library chatter goes to stderr: stdout carries the one JSON line
    with tempfile.TemporaryDirectory(prefix="isengard-fit-") as tmp, \
            contextlib.redirect_stdout(sys.stderr):
        rows = calibrate(args, Path(tmp))
    result.update(ok=all("error" not in r for r in rows), wall_s=round(
        time.perf_counter() - start, 1), results=rows)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
