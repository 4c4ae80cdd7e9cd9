"""The generic LoRA training loop of the built-in trainer (runs in the child process).

One :class:`Trainer` per run: load the family's model, cache latents and text embeddings once,
add a peft LoRA to the denoiser, then train with AdamW, a warm-up schedule, gradient
accumulation and clipping, reporting every step, sampling and checkpointing on the job's
cadence, and finally write the LoRA in the family's file format. Everything that depends on
the model family lives behind :class:`~.families.base.Family`.

Resume is exact: the data order is a function of (seed, micro-batch index) (see
:class:`~.data.BatchPlan`) and the noise generator's state is checkpointed, so a run that is
stopped or killed and resumed produces the same LoRA as one that never stopped.

Several processes (``accelerate launch``, see :mod:`.distributed`): every rank loads the model
and caches the data; optimizer step *s* of rank *r* trains micro-batch
``(s·accum + m)·N + r`` of the same plan (so the effective batch is batch × N × accum) with
its own noise stream, DDP averages the gradients, and the ranks agree once per step on the
mean loss and on stopping. Only rank 0 emits events, samples, and writes checkpoints (with
every rank's random state) and the LoRA. With one process none of this runs.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import math
import os
import random
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.dataset.captions import sample_prompt
from ..core.fsutil import atomic_output
from ..core.training.checkpoint_grid import CHECKPOINT_LORA_FILE, COMPARE_EVENTS
from ..core.training.protocol import SampleEvent, event_line
from ..core.training.spec import JobPaths, TrainingJob, stopped_lora_name
from . import checkpoints as ckpts
from .data import BatchPlan, Item, load_dataset, load_image, make_buckets
from .errors import ConfigError, NanLossError, is_oom
from .events import Emitter
from .families.base import Family, TextCondition
from .families.registry import family_class
from .lora_file import build_metadata, write_lora
from .test_hooks import maybe_inject_oom
from .probe_tools import nvidia_driver

log = logging.getLogger("isengard.trainer.loop")

ADAPTER_FILE = "adapter.safetensors"
STATE_FILE = "training_state.pt"
RNG_FILE = "rng.pt"


def pick_device(job: TrainingJob, *, windows: bool | None = None,
                driver: Callable[[], str | None] = nvidia_driver,
                ) -> tuple[torch.device, torch.dtype, list[str]]:
    """(device, weight dtype, notes for the user): bf16 (or fp16) on a GPU, fp32 on the CPU.

    "auto" never falls back to the CPU silently when the machine has an NVIDIA driver that
    this PyTorch cannot use (a CPU-only build, the default wheel on Windows): on Windows that
    is an error pointing to the CUDA build, elsewhere a note. ``windows``/``driver`` are
    seams for tests (None: this OS; the probe's driver check)."""
    notes: list[str] = []
    cuda = torch.cuda.is_available()
    if job.device == "cuda" and not cuda:
        raise ConfigError("device: 'cuda' was chosen but PyTorch sees no CUDA GPU "
                          "(choose 'auto' or 'cpu', or install the GPU build of PyTorch)")
    if job.device != "cpu" and not cuda:
        found = driver()
        if found:
            build = ("a CPU-only build" if not torch.version.cuda
                     else f"built for CUDA {torch.version.cuda} but sees no usable GPU")
            why = (f"this computer has an NVIDIA driver ({found}) but PyTorch "
                   f"{torch.__version__} is {build}")
            if (sys.platform == "win32") if windows is None else windows:
                raise ConfigError(
                    f"device: 'auto' would train on the CPU: {why}. Install the trainer "
                    "runtime's CUDA build (the installer's NVIDIA option; README \"GPU build "
                    "of torch\"), or choose device 'cpu' to train on the CPU anyway")
            notes.append(f"training on the CPU: {why} (see README \"GPU build of torch\")")
    device = torch.device("cuda" if cuda and job.device != "cpu" else "cpu")
    if device.type == "cpu":
        if job.mixed_precision in ("bf16", "fp16"):
            notes.append(f"mixed precision {job.mixed_precision} is for GPUs; training in "
                         "fp32 on the CPU")
        return device, torch.float32, notes
    mp = job.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return device, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32), notes


class Trainer:
    """One training run of ``job`` in ``job_dir`` (see module docstring)."""

    def __init__(self, job: TrainingJob, job_dir: Path, emitter: Emitter,
                 stop: threading.Event, resume: bool = False, dp: Any = None) -> None:
        self.job, self.emit, self.stop, self.resume = job, emitter, stop, resume
        self.dp = dp      # a .distributed.DataParallel with N > 1 processes, else None
        self.paths = JobPaths(Path(job_dir))
        self.device, self.dtype, notes = pick_device(job)
        if dp is not None and self.device.type == "cuda":
            self.device = dp.device          # cuda:<local rank>, chosen by the launcher
        for note in notes:
            emitter.log(note)
        self.family: Family = family_class(job.family)(job, self.device, self.dtype)
        self.items: list[Item] = []
        self.latents: list[torch.Tensor] = []
        self.image_cond: list[dict[str, torch.Tensor]] = []
        self.text: dict[str, TextCondition] = {}
        self.sample_prompts = [sample_prompt(p, job.trigger_word)
                               for p in job.sample_prompts if p.strip()]
        self.noise_gen = torch.Generator("cpu").manual_seed(job.seed)
        if dp is not None and dp.rank > 0:   # each rank its own noise; rank 0 as one process
            self.noise_gen.manual_seed(job.seed + 7919 * dp.rank)
        self.step = 0
        self.last_checkpoint: ckpts.Checkpoint | None = None
        self.scaler: Any = None

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        job = self.job
        torch.manual_seed(job.seed)
        random.seed(job.seed)
        self.items = load_dataset(self.paths.root, job.trigger_word)
        def loading(done: int, total: int, detail: str = "") -> None:
            self.emit.phase("loading_model", done, total, detail)

        self.family.load(loading)
        start = self._find_resume_point()
        if self._stop_asked():  # stop asked while loading: nothing new to save
            if start is not None:
                self.step, self.last_checkpoint = start.step, start
            return self._stopped()
        if start is None or start.step < job.steps:
            self._cache()
        self._setup_lora()
        if start is not None:
            self._load_checkpoint(start)
        if self._stop_asked():
            return self._stopped()
        if self.dp is None:
            self._train()
        else:
            self._train_dp()
        if self.step < job.steps:
            return self._stopped()
        self._export()
        return 0

    def _stop_asked(self) -> bool:
        """Whether to stop now; with several processes, all of them agree (any one that was
        asked makes all stop)."""
        if self.dp is None:
            return self.stop.is_set()
        _, stop, _ = self.dp.agree(0.0, self.stop.is_set(), False)
        if stop:
            self.stop.set()
        return stop

    # ------------------------------------------------------------------ caching

    def _cache(self) -> None:
        job, fam = self.job, self.family
        texts = list(dict.fromkeys([it.caption for it in self.items] + [""] + self.sample_prompts))
        n_images = len(self.items)
        total = n_images + len(texts)
        self.emit.phase("caching", 0, total, "latents")
        buckets = make_buckets(job.resolution, fam.latent_multiple)
        kept: list[Item] = []
        for i, item in enumerate(self.items):
            try:
                pixels = load_image(item, buckets)
            except (ValueError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    raise
                self.emit.log(f"Skipping {item.path.name}: {exc}", "warning")
                continue
            self.latents.append(fam.encode_images(pixels[None])[0].to("cpu"))
            self.image_cond.append(fam.image_condition(item.original_size, item.crop_top_left,
                                                       (item.bucket[1], item.bucket[0])))
            kept.append(item)
            self.emit.phase("caching", i + 1, total, "latents")
        if not kept:
            raise ConfigError(f"dataset.json: none of the {n_images} photos in "
                              f"{self.paths.dataset_list} could be read")
        self.items = kept
        for start in range(0, len(texts), 8):
            chunk = texts[start:start + 8]
            for text, cond in zip(chunk, fam.encode_text(chunk), strict=True):
                self.text[text] = cond
            self.emit.phase("caching", n_images + start + len(chunk), total, "text")
        fam.free_text_encoders()
        gc.collect()
        self.plan = BatchPlan([it.bucket for it in self.items], job.batch_size, job.repeats,
                              job.seed)

    # ------------------------------------------------------------------ LoRA + optimizer

    def _setup_lora(self) -> None:
        """The LoRA layers, then what training them needs (optimizer, schedule, scaler)."""
        self._add_adapter()
        self._setup_optimizer()

    def _add_adapter(self) -> None:
        """Fresh LoRA layers on the frozen denoiser (their weights in float32)."""
        from peft import LoraConfig

        job, den = self.job, self.family.denoiser()
        den.requires_grad_(False)
        # peft types lora_alpha as int; it only computes alpha / r, so the job's float is fine
        config = LoraConfig(r=job.rank, lora_alpha=job.alpha,  # type: ignore[arg-type]
                            init_lora_weights=True,
                            target_modules=self.family.lora_target_modules())
        if hasattr(den, "add_adapter"):
            den.add_adapter(config)  # type: ignore[operator]  # diffusers' method, seen as a Module attr
        else:
            from peft import inject_adapter_in_model

            inject_adapter_in_model(config, den)
        self.params = [p for p in den.parameters() if p.requires_grad]
        if not self.params:
            raise RuntimeError("no LoRA layers were added: the family's target modules "
                               "matched nothing in the model")
        for p in self.params:
            p.data = p.data.float()

    def _setup_optimizer(self) -> None:
        from diffusers.optimization import get_scheduler

        job, den = self.job, self.family.denoiser()
        if job.gradient_checkpointing:
            if getattr(den, "_supports_gradient_checkpointing", False):
                den.enable_gradient_checkpointing()  # type: ignore[operator]  # as above
            else:
                self.emit.log("This model does not support gradient checkpointing; "
                              "training without it")
        den.train()
        self.optimizer = self._optimizer()
        name = job.lr_scheduler
        if name == "constant" and job.warmup_steps > 0:
            name = "constant_with_warmup"
        self.lr_scheduler = get_scheduler(name, self.optimizer, num_warmup_steps=job.warmup_steps,
                                          num_training_steps=job.steps)
        if self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")

    def _optimizer(self) -> torch.optim.Optimizer:
        job = self.job
        decay = float(job.extra.get("weight_decay", 1e-2))
        if job.optimizer == "adamw8bit":
            why = ""
            if self.device.type != "cuda":
                why = "it needs a CUDA GPU"
            else:
                try:
                    import bitsandbytes as bnb

                    return bnb.optim.AdamW8bit(self.params, lr=job.learning_rate,
                                               weight_decay=decay)
                except ImportError:
                    why = "bitsandbytes is not installed"
            self.emit.log(f"8-bit AdamW is not available ({why}); using standard AdamW",
                          "warning")
        return torch.optim.AdamW(self.params, lr=job.learning_rate, weight_decay=decay)

    # ------------------------------------------------------------------ checkpoints

    def _meta(self) -> dict[str, Any]:
        job = self.job
        return {"family": job.family, "rank": job.rank, "alpha": job.alpha,
                "job_id": job.job_id, "total_steps": job.steps, "seed": job.seed,
                "target_modules": self.family.lora_target_modules()}

    def _find_resume_point(self) -> ckpts.Checkpoint | None:
        found = self._find_resume_point_here()
        if self.dp is not None:
            self.dp.barrier()    # rank 0 may have removed an earlier run's checkpoints
        return found

    def _find_resume_point_here(self) -> ckpts.Checkpoint | None:
        root = self.paths.checkpoints
        if not self.resume:
            if self.dp is not None and not self.dp.main:
                return None
            old = ckpts.list_checkpoints(root)
            if old:
                self.emit.log(f"Starting over: removing {len(old)} checkpoint(s) of an earlier run")
                for c in old:
                    shutil.rmtree(c.path, ignore_errors=True)
            return None
        mine = self._meta()

        def accept(c: ckpts.Checkpoint) -> str:
            m = c.manifest
            for key in ("family", "rank", "alpha", "seed"):
                if m.get(key) != mine[key]:
                    return f"it was made with {key}={m.get(key)!r}, the job has {mine[key]!r}"
            return ""

        def skipped(c: ckpts.Checkpoint, why: str) -> None:
            self.emit.log(f"Checkpoint {c.path.name} cannot be used ({why}); trying an older one",
                          "warning")

        found = ckpts.newest_valid(root, accept, skipped)
        if found is None:
            self.emit.log("No usable checkpoint to resume from; starting from step 0", "warning")
        else:
            self.emit.log(f"Resuming from {found.path.name} "
                          f"(step {found.step} of {self.job.steps})")
        return found

    def _load_adapter(self, ckpt: ckpts.Checkpoint) -> None:
        """The LoRA weights saved in ``ckpt`` into the layers (refused when they do not fit)."""
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        den = self.family.denoiser()
        result = set_peft_model_state_dict(den, load_file(str(ckpt.path / ADAPTER_FILE)),
                                           adapter_name="default")
        unexpected = getattr(result, "unexpected_keys", None) or []
        if unexpected:
            raise RuntimeError(f"{ckpt.path}: LoRA weights do not fit the model "
                               f"({len(unexpected)} unexpected keys, e.g. {unexpected[0]})")
        for p in self.params:
            p.data = p.data.float()

    def _load_checkpoint(self, ckpt: ckpts.Checkpoint) -> None:
        self._load_adapter(ckpt)
        state = torch.load(ckpt.path / STATE_FILE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = torch.load(ckpt.path / RNG_FILE, map_location="cpu", weights_only=True)
        if self.dp is not None:
            rng = self._rank_rng(rng)
        self.noise_gen.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(_python_rng(rng["python"]))
        self.step = ckpt.step
        self.last_checkpoint = ckpt

    def _rank_rng(self, rng: dict[str, Any]) -> dict[str, Any]:
        """This rank's random state from a checkpoint's ``rng.pt`` (rank 0's is the top
        level; the others are under ``ranks``, written by a run with as many processes)."""
        assert self.dp is not None
        ranks = rng.get("ranks") or []
        if self.dp.rank == 0:
            return rng
        if len(ranks) == self.dp.world:
            return {**rng, **ranks[self.dp.rank]}
        self.emit.log(f"The checkpoint was made with {max(1, len(ranks))} process(es), this "
                      f"run has {self.dp.world}: the other processes start new noise streams, "
                      "so the LoRA will differ slightly from an uninterrupted run", "warning")
        return {**rng, "noise": self.noise_gen.get_state(), "torch": torch.get_rng_state(),
                "cuda": []}

    def _save_checkpoint(self, step: int) -> ckpts.Checkpoint:
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        if self.dp is not None:
            return self._save_checkpoint_dp(step)
        self.emit.phase("saving", 0, 1, "checkpoint")
        lora = {k: v.detach().to("cpu", torch.float32).contiguous()
                for k, v in get_peft_model_state_dict(self.family.denoiser()).items()}
        state = {"optimizer": self.optimizer.state_dict(),
                 "scheduler": self.lr_scheduler.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else {}}
        rng = {"noise": self.noise_gen.get_state(), "torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
               "python": random.getstate()}
        lora_tensors, lora_meta = self._lora_contents(step)
        writers = {ADAPTER_FILE: lambda p: save_file(lora, str(p)),
                   STATE_FILE: lambda p: torch.save(state, p),
                   RNG_FILE: lambda p: torch.save(rng, p),
                   CHECKPOINT_LORA_FILE: lambda p: write_lora(p, lora_tensors, lora_meta)}
        ckpt = ckpts.save(self.paths.checkpoints, step, writers, self._meta())
        self.last_checkpoint = ckpt
        ckpts.prune(self.paths.checkpoints, self.job.keep_checkpoints)
        self.emit.phase("saving", 1, 1, "checkpoint")
        self.emit.checkpoint(step, str(ckpt.path), True)
        return ckpt

    def _save_checkpoint_dp(self, step: int) -> ckpts.Checkpoint:
        """Every rank calls this at the same step: the random states are gathered, rank 0
        writes the checkpoint (the LoRA weights are the same on every rank) and the others
        wait for it, so a resume right after finds it complete."""
        assert self.dp is not None
        mine = {"noise": self.noise_gen.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []}
        ranks = self.dp.gather(mine)
        if self.dp.main:
            ckpt = self._save_checkpoint_main(step, ranks)
        else:
            ckpt = ckpts.Checkpoint(step, ckpts.checkpoint_path(self.paths.checkpoints, step))
            self.last_checkpoint = ckpt
        self.dp.barrier()
        return ckpt

    def _save_checkpoint_main(self, step: int, ranks: list[dict[str, Any]]) -> ckpts.Checkpoint:
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        self.emit.phase("saving", 0, 1, "checkpoint")
        lora = {k: v.detach().to("cpu", torch.float32).contiguous()
                for k, v in get_peft_model_state_dict(self.family.denoiser()).items()}
        state = {"optimizer": self.optimizer.state_dict(),
                 "scheduler": self.lr_scheduler.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else {}}
        rng = {**ranks[0], "python": random.getstate(), "ranks": ranks}
        lora_tensors, lora_meta = self._lora_contents(step)
        writers = {ADAPTER_FILE: lambda p: save_file(lora, str(p)),
                   STATE_FILE: lambda p: torch.save(state, p),
                   RNG_FILE: lambda p: torch.save(rng, p),
                   CHECKPOINT_LORA_FILE: lambda p: write_lora(p, lora_tensors, lora_meta)}
        meta = {**self._meta(), "processes": self.dp.world if self.dp is not None else 1}
        ckpt = ckpts.save(self.paths.checkpoints, step, writers, meta)
        self.last_checkpoint = ckpt
        ckpts.prune(self.paths.checkpoints, self.job.keep_checkpoints)
        self.emit.phase("saving", 1, 1, "checkpoint")
        self.emit.checkpoint(step, str(ckpt.path), True)
        return ckpt

    def _stopped(self) -> int:
        path = ""
        if self.step > 0:
            if self.last_checkpoint is None or self.last_checkpoint.step != self.step:
                self._save_checkpoint(self.step)
            path = str(self.last_checkpoint.path) if self.last_checkpoint else ""
        lora = ""
        if path and (self.dp is None or self.dp.main):
            # the newest checkpoint, usable as the character's LoRA: "<name>-step<N>"
            try:
                lora = str(self._write_lora(stopped_lora_name(self.job.output_name,
                                                              self.step)))
            except Exception as exc:  # the checkpoint is saved; the LoRA is a convenience
                log.exception("exporting the LoRA at step %d failed", self.step)
                self.emit.log(f"The LoRA at step {self.step} could not be written: "
                              f"{type(exc).__name__}: {exc}", "warning")
        self.emit.stopped(self.step, path, lora)
        return 0

    # ------------------------------------------------------------------ training

    def _batch(self, k: int) -> tuple[torch.Tensor, list[TextCondition]]:
        idx = self.plan.batch(k)
        drop = self.plan.dropped(k, len(idx), self.job.caption_dropout)
        latents = torch.stack([self.latents[i] for i in idx])
        cond = [TextCondition({**self.text["" if d else self.items[i].caption].tensors,
                               **self.image_cond[i]}) for i, d in zip(idx, drop, strict=True)]
        return latents, cond

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()

    def _train(self) -> None:
        job = self.job
        total, accum = job.steps, job.grad_accum
        max_norm = float(job.extra.get("max_grad_norm", 1.0)) or math.inf  # 0: no clipping
        durations: deque[float] = deque(maxlen=20)
        self.emit.phase("training", self.step, total)
        while self.step < total and not self.stop.is_set():
            t0 = time.perf_counter()
            loss_sum = 0.0
            try:
                maybe_inject_oom(job, self.paths.root, self.step + 1)
                for micro in range(accum):
                    value = self._micro_batch(self.step * accum + micro, accum)
                    if not math.isfinite(value):
                        self._nan(self.step + 1)
                    loss_sum += value
            except (RuntimeError, MemoryError) as exc:
                if is_oom(exc):
                    self._out_of_memory(exc)
                raise
            lr = self._optimizer_step(max_norm)
            durations.append(time.perf_counter() - t0)
            spe = sum(durations) / len(durations)
            self.emit.step(self.step, total, loss_sum / accum, lr, spe, spe * (total - self.step))
            if self._due(job.sample_every) and self.sample_prompts:
                self._sample()
                if self.step < total:
                    self.emit.phase("training", self.step, total)
            if self._due(job.checkpoint_every) or self.step == total:
                self._save_checkpoint(self.step)
                if self.step < total:
                    self.emit.phase("training", self.step, total)

    def _train_dp(self) -> None:
        """:meth:`_train` with several processes (see the module docstring): the same step,
        gradients averaged by DDP, the stop and NaN checks agreed by all ranks."""
        dp, job = self.dp, self.job
        assert dp is not None
        total, accum, world = job.steps, job.grad_accum, dp.world
        max_norm = float(job.extra.get("max_grad_norm", 1.0)) or math.inf
        den = self.family.denoiser()
        self.family.train_module = dp.wrap(den)
        if dp.main:
            self.emit.log(f"Training on {world} processes ({dp.backend}): batch "
                          f"{job.batch_size} per process × {world}"
                          f"{f' × {accum} accumulated' if accum > 1 else ''} = effective "
                          f"batch {job.batch_size * world * accum}")
        durations: deque[float] = deque(maxlen=20)
        self.emit.phase("training", self.step, total)
        try:
            while self.step < total:
                t0 = time.perf_counter()
                loss_sum, bad = 0.0, False
                try:
                    maybe_inject_oom(job, self.paths.root, self.step + 1)
                    for micro in range(accum):
                        k = (self.step * accum + micro) * world + dp.rank
                        sync = (contextlib.nullcontext() if micro == accum - 1
                                else dp.no_sync(self.family.train_module))
                        with sync:
                            value = self._micro_batch(k, accum)
                        bad = bad or not math.isfinite(value)
                        loss_sum += value
                except (RuntimeError, MemoryError) as exc:
                    if is_oom(exc):
                        self._out_of_memory(exc)
                    raise
                mean_loss, stop, bad = dp.agree(loss_sum, self.stop.is_set(), bad)
                if bad:
                    self._nan(self.step + 1)
                # the gradients are the same on every rank after DDP's all-reduce, so is the norm
                lr = self._optimizer_step(max_norm)
                durations.append(time.perf_counter() - t0)
                spe = sum(durations) / len(durations)
                self.emit.step(self.step, total, mean_loss / accum, lr, spe,
                               spe * (total - self.step))
                if self._due(job.sample_every) and self.sample_prompts and dp.main:
                    self._sample()
                    if self.step < total:
                        self.emit.phase("training", self.step, total)
                if self._due(job.checkpoint_every) or self.step == total:
                    self._save_checkpoint(self.step)
                    if self.step < total:
                        self.emit.phase("training", self.step, total)
                if stop:
                    self.stop.set()
                    break
        finally:
            self.family.train_module = None

    def _micro_batch(self, k: int, accum: int) -> float:
        """Forward and backward of batch ``k`` (its gradient scaled by ``1/accum``); returns
        its loss. The caller judges a NaN (before the optimizer step, which is all it could
        spoil)."""
        latents, cond = self._batch(k)
        with self._autocast():
            loss = self.family.loss(latents, cond, self.noise_gen)
        scaled = loss / accum
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        return float(loss.detach())

    def _optimizer_step(self, max_norm: float) -> float:
        """Clip, check for NaN (the step's gradients), step the optimizer and the schedule,
        count the step; returns the learning rate the step used."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if self.scaler is None and not math.isfinite(float(norm)):
            self._nan(self.step + 1)
        lr = float(self.lr_scheduler.get_last_lr()[0])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return lr

    def _out_of_memory(self, exc: BaseException) -> None:
        """Out of memory while training step ``self.step + 1``: free what the step held and
        save the last complete step as a checkpoint (the app resumes from it at lower memory
        settings), then let ``exc`` go on (marked with the step for the ``error`` event)."""
        failed_step = self.step + 1
        exc.training_step = failed_step  # type: ignore[attr-defined]  # read by errors.classify
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.dp is not None:
            # the other processes are waiting in a collective and are ended by the
            # launcher: no checkpoint can be gathered; the newest periodic one is used
            return
        if self.step > 0 and (self.last_checkpoint is None
                              or self.last_checkpoint.step != self.step):
            try:
                self._save_checkpoint(self.step)
            except Exception as save_exc:  # the older checkpoint is still there
                log.exception("saving a checkpoint after running out of memory failed")
                self.emit.log(f"After running out of memory at step {failed_step}, step "
                              f"{self.step} could not be saved ({type(save_exc).__name__}: "
                              f"{save_exc}); the newest older checkpoint is used", "warning")

    def _due(self, every: int) -> bool:
        return every > 0 and (self.step % every == 0 or self.step == self.job.steps)

    def _nan(self, step: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        where = "nothing was trained yet"
        if self.step > 0:
            if self.last_checkpoint is None or self.last_checkpoint.step != self.step:
                self._save_checkpoint(self.step)
            saved = self.last_checkpoint
            assert saved is not None            # _save_checkpoint just set it
            where = f"the last good state (step {self.step}) is saved in {saved.path}"
        raise NanLossError(f"The loss became NaN at step {step}; {where}. Lower the learning "
                           f"rate (now {self.job.learning_rate:g}) and start the job again.")

    # ------------------------------------------------------------------ samples + output

    def _sample(self) -> list[tuple[Path, str]]:
        """Render the sample prompts at this step; returns the (file, prompt) pairs written
        (a failed picture is logged and left out)."""
        job, den = self.job, self.family.denoiser()
        n = len(self.sample_prompts)
        written: list[tuple[Path, str]] = []
        self.emit.phase("sampling", 0, n)
        den.eval()
        try:
            for i, prompt in enumerate(self.sample_prompts):
                try:
                    with torch.no_grad(), self._autocast():
                        image = self.family.sample(prompt, job.seed + i, job.sample_steps,
                                                   job.resolution, job.resolution)
                    path = self.paths.samples / f"step{self.step:06d}_{i}.png"
                    with atomic_output(path) as fh:
                        image.save(fh, format="PNG")
                    self.emit.sample(self.step, str(path), prompt)
                    written.append((path, prompt))
                except (RuntimeError, ValueError, KeyError) as exc:
                    if "out of memory" in str(exc).lower():
                        raise
                    log.exception("sample %d failed", i)
                    self.emit.log(f"Sample {i + 1} at step {self.step} failed: "
                                  f"{type(exc).__name__}: {exc}", "warning")
                self.emit.phase("sampling", i + 1, n)
        finally:
            den.train()
        return written

    def _export(self) -> None:
        if self.dp is not None and not self.dp.main:
            return
        path = self._write_lora(self.job.output_name)
        self.emit.done(str(path), self.step)

    def _write_lora(self, name: str) -> Path:
        """The LoRA file of the current weights (kohya keys, metadata) as ``<name>``."""
        self.emit.phase("saving", 0, 1, "LoRA")
        tensors, meta = self._lora_contents(self.step)
        path = write_lora(self.paths.lora(name), tensors, meta)
        self.emit.phase("saving", 1, 1, "LoRA")
        return path

    def _lora_contents(self, steps: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The tensors (the family's LoRA keys, the save dtype) and metadata of the LoRA file
        of the current weights, trained for ``steps``."""
        from peft.utils import get_peft_model_state_dict

        job = self.job
        save = str(job.extra.get("save_dtype") or ("fp32" if self.dtype == torch.float32
                                                     else "fp16"))
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[save]
        state = {k: v.detach().to("cpu", dtype)
                 for k, v in get_peft_model_state_dict(self.family.denoiser()).items()}
        tensors = self.family.export_lora(state, job.rank, job.alpha)
        meta = build_metadata(job, architecture=self.family.architecture,
                              base_model_version=self.family.base_model_version,
                              steps=steps, resolution=(job.resolution, job.resolution),
                              captions=[it.caption for it in self.items],
                              num_images=len(self.items), extra=self.family.lora_metadata())
        return tensors, meta


def _python_rng(state: Any) -> tuple:
    """``random.getstate()`` back from its saved form (lists may come back for tuples)."""
    version, internal, gauss = state
    return (int(version), tuple(int(x) for x in internal), gauss)


def render_samples(job: TrainingJob, job_dir: Path, emitter: Emitter, stop: threading.Event,
                   steps: list[int]) -> int:
    """The checkpoint comparison's "fill the gaps": for each saved step in ``steps`` the
    job's sample pictures (its prompts, seeds and sampler steps; ``samples/step<N>_<i>.png``,
    a ``sample`` event each) from that checkpoint's LoRA weights. Nothing is trained; the
    checkpoints are only read. A step without a checkpoint that verifies is named."""
    trainer = Trainer(job, job_dir, emitter, stop)
    if not trainer.sample_prompts:
        raise ConfigError("sample_prompts: the job has no sample prompts to render")
    missing = []
    found: list[ckpts.Checkpoint] = []
    for step in steps:
        path = ckpts.checkpoint_path(trainer.paths.checkpoints, step)
        ok, why = ckpts.verify(path, full=False)
        if ok:
            found.append(ckpts.Checkpoint(step, path))
        else:
            missing.append(f"step {step} ({why})")
    if missing:
        raise ConfigError("checkpoints: no usable checkpoint for " + ", ".join(missing))

    def loading(done: int, total: int, detail: str = "") -> None:
        emitter.phase("loading_model", done, total, detail)

    trainer.family.load(loading)
    trainer.family.encode_text(["", *trainer.sample_prompts])   # what the families sample from
    trainer.family.free_text_encoders()     # (as in training: off the GPU once encoded)
    trainer._add_adapter()                  # the layers only: nothing is trained here
    for ckpt in found:
        if stop.is_set():
            break
        trainer._load_adapter(ckpt)
        trainer.step = ckpt.step
        written = trainer._sample()
        # recorded beside the job's events for the comparison (the job's own are left alone)
        lines = "".join(event_line(SampleEvent(ckpt.step, str(path), prompt)) + "\n"
                        for path, prompt in written)
        with open(trainer.paths.root / COMPARE_EVENTS, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
    return 0


def run(job: TrainingJob, job_dir: Path, emitter: Emitter, stop: threading.Event,
        resume: bool = False, dp: Any = None) -> int:
    """Train ``job`` in ``job_dir``; returns the exit status (errors are raised). ``dp``: a
    :class:`~.distributed.DataParallel` when several processes train together."""
    return Trainer(job, job_dir, emitter, stop, resume, dp).run()
