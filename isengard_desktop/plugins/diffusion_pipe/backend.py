"""The diffusion-pipe trainer backend (tdrussell/diffusion-pipe), Qt-free and torch-free.

A job becomes diffusion-pipe's two TOML files in ``<job>/configs/`` and the launch::

    NCCL_P2P_DISABLE=1 NCCL_IB_DISABLE=1 <python dir>/deepspeed --num_gpus=1 train.py \\
        --deepspeed --config <job>/configs/diffusion_pipe.toml [--resume_from_checkpoint RUN]

run in the install folder (the two NCCL variables are what RTX 40xx cards need; harmless on
one GPU elsewhere). Without a ``deepspeed`` script next to the interpreter the same launcher
runs as ``<python> -m deepspeed.launcher.runner``.

* Model type: ``job.extra["model_type"]`` (default from the family: chroma, sdxl, flux); its
  paths come from ``job.extra["fields"]`` (``job.base_model`` fills the main one when empty)
  and are checked before launch (:class:`SpecError` names the key).
* Output: ``<job>/diffusion-pipe/<UTC time>/`` (diffusion-pipe's run folder) with ``epochN/``
  or ``stepN/`` LoRAs and DeepSpeed ``global_stepN/`` checkpoints plus ``latest``.
* Progress: diffusion-pipe has no total; we compute it (epochs × steps per epoch, or
  max_steps) and the parser (``diffusion_pipe_parser.py``) refines it.
* Stop & save: the ``save_quit`` file in the run folder (diffusion-pipe checks it after every
  step, saves a checkpoint and exits). The run folder of a fresh run is created by the tool,
  so the runner asks :meth:`DiffusionPipeBackend.resolve_stop_file` where it is at stop time.
* Resume: ``--resume_from_checkpoint <run folder>`` of the newest run folder whose ``latest``
  names a complete DeepSpeed checkpoint (:func:`find_checkpoint`). The parser records each
  complete checkpoint as a pointer in ``<job>/checkpoints/`` (``external.files``), which is
  how the training service knows the job can be resumed.
* Dataset (``diffusion_pipe_dataset.py``): the job's photos are hard-linked into
  ``<job>/diffusion-pipe-dataset/`` with captions that carry the trigger word (diffusion-pipe
  reads ``<stem>.txt`` as is and writes its latent cache into the dataset folder, which must
  not be the app's own). A caption prefix (``fields.caption_prefix``, ``[trigger]`` → the
  trigger word) and tag shuffling (``cache_shuffle_num`` / ``shuffle_tags``) use the tool's
  own dataset options, so the prefix stays in front of the shuffled tags.
* W&B: ``[monitoring] enable_wandb = true``; the key reaches the tool only as
  ``WANDB_API_KEY`` in its environment (the runner adds it). diffusion-pipe reads
  ``wandb_api_key`` from the TOML unconditionally, so the TOML holds an empty one and wandb
  falls back to the environment.
* No sample images: diffusion-pipe does not make any during training.
* Several GPUs (``extra["num_processes"]`` N > 1, optionally ``extra["gpu_ids"]``;
  ``core/training/parallel.py``): DeepSpeed's own launcher, ``--num_gpus=N`` (or
  ``--include=localhost:<ids>``: the runner refuses both) and a free ``--master_port``, given
  to train.py as well (its ``distributed_init`` sets ``MASTER_PORT`` from its own
  ``--master_port``, default 29500: train.py, commit 0112e3a2). ``fields.pipeline_stages`` S
  (default 1) splits each model copy over S GPUs; the data-parallel degree is N / S, so N
  must be divisible by S (README.md "Parallelism", commit 098f9bfb), and block swapping needs
  S = 1 (train.py's assertion "Block swapping only works with pipeline_stages=1"). Steps per
  epoch shrink by the data-parallel degree (each global batch takes batch × accum × N / S
  images).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ...core import toml_text
from ...core.training.installs import ExternalInstall, platform_problem, validate_install
from ...core.training.parallel import deepspeed_launch_args, free_port, gpu_ids, num_processes
from ...core.training.spec import JobPaths, SpecError, TrainingJob
from ...core.training.dataset_list import DatasetEntry, read_dataset_list
from .dataset import DEFAULT_DELIMITER, caption_prefix, count_listed, count_media, stage_dataset
from .models import (FLUX_SHIFT_TYPES, MODEL_TYPES, OPTIMIZERS, ModelType,
                                    check_paths, default_model_type, model_table, model_type,
                                    option_fields, path_fields, resolve_paths)
from .parser import DeepSpeedParser, ParserContext, find_checkpoint, run_dirs
from ..interface import Launch

__all__ = ["DATASET_FOLDER", "DATASET_TOML", "DiffusionPipeBackend", "MAIN_TOML", "NCCL_ENV",
           "OUTPUT_FOLDER", "dataset_config", "main_config", "toml_dumps"]

MAIN_TOML = "diffusion_pipe.toml"
DATASET_TOML = "diffusion_pipe_dataset.toml"
OUTPUT_FOLDER = "diffusion-pipe"
DATASET_FOLDER = "diffusion-pipe-dataset"  # the staged dataset (media links + captions)
STOP_PENDING = "diffusion-pipe.stop-pending"   # stand-in stop file until the run folder exists
NCCL_ENV = {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}
LAUNCHER_MODULE = "deepspeed.launcher.runner"
_ADAM_LIKE = {"adamw", "adamw_optimi", "adamw8bit", "adamw8bitkahan", "stableadamw", "prodigy"}
_SIGNAL_FILES = ("save_quit", "save")


# -- TOML --------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """``value`` with paths as text; a non-finite float is a ValueError (diffusion-pipe's
    ``toml`` parser cannot read ``nan``/``inf``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"TOML cannot hold {value!r}")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def toml_dumps(doc: dict[str, Any], header: str = "") -> str:
    """TOML text for ``doc`` (core.toml_text.dumps): scalars first, then ``[table]`` for
    dicts and ``[[name]]`` for lists of dicts; comments from ``header`` on top. Keys keep
    their order."""
    return toml_text.dumps(_plain(doc), header)


# -- the job's options --------------------------------------------------------------------
class _Options:
    """Reads backend options: ``job.extra["fields"][name]``, then ``job.extra[name]``."""

    def __init__(self, job: TrainingJob) -> None:
        self.fields: dict[str, Any] = {}
        for name in ("paths", "fields"):    # "paths" is an older name for path fields
            given = job.extra.get(name) or {}
            if not isinstance(given, dict):
                raise SpecError(f"extra.{name}: must be an object of field values")
            self.fields |= given
        self.extra = job.extra

    def raw(self, name: str) -> Any:
        value = self.fields.get(name)
        if value is None or value == "":
            value = self.extra.get(name)
        return None if value == "" else value

    def get(self, name: str, default: Any, conv: Callable[[Any], Any],
            check: Callable[[Any], bool] = lambda v: True, why: str = "") -> Any:
        value = self.raw(name)
        if value is None:
            return default
        try:
            if conv is bool and isinstance(value, str):
                value = {"true": True, "false": False, "1": True, "0": False}[value.lower()]
            converted = conv(value)
        except (TypeError, ValueError, KeyError):
            raise SpecError(f"fields.{name}: {value!r} is not a valid "
                            f"{getattr(conv, '__name__', 'value')}") from None
        if not check(converted):
            raise SpecError(f"fields.{name}: {why} (got {value!r})")
        return converted


def _positive(v: Any) -> bool:
    return v > 0


def _parallel(job: TrainingJob, opts: _Options) -> tuple[int, int, int]:
    """(GPUs, pipeline stages, data-parallel replicas) of ``job``; SpecError names the
    field that does not fit (see the module docstring)."""
    n = num_processes(job)
    stages = opts.get("pipeline_stages", 1, int, _positive, "must be at least 1")
    if n % stages:
        raise SpecError(f"fields.pipeline_stages: {stages} does not divide the {n} GPU(s) "
                        f"(diffusion-pipe runs GPUs / pipeline_stages copies of the model)")
    if stages > 1 and opts.get("blocks_to_swap", 0, int) > 0:
        raise SpecError("fields.blocks_to_swap: diffusion-pipe swaps blocks only with "
                        f"pipeline_stages = 1 (got pipeline_stages = {stages})")
    return n, stages, n // stages


def _frame_buckets(text: Any) -> list[int]:
    items = text if isinstance(text, (list, tuple)) else str(text).replace(",", " ").split()
    buckets = sorted({int(x) for x in items})
    if not buckets or buckets[0] < 1:
        raise ValueError(text)
    return [1] + [b for b in buckets if b != 1]


def _model_type_of(job: TrainingJob, opts: _Options) -> ModelType:
    key = opts.raw("model_type")
    mt = model_type(str(key)) if key else model_type(default_model_type(job.family))
    if mt.families and job.family not in mt.families:
        raise SpecError(f"model_type: diffusion-pipe's '{mt.key}' trains "
                        f"{'/'.join(mt.families)} LoRAs, but the job's family is "
                        f"{job.family!r}")
    return mt


DECAYING = ("linear", "cosine")


def _plan(job: TrainingJob, opts: _Options, mt: ModelType,
          entries: list[DatasetEntry] | None = None) -> dict[str, int]:
    """Epochs or max_steps, steps per epoch (estimated from the dataset: the job's photo
    list when given, else the folder, for an estimate before the job starts) and our
    total."""
    dataset = Path(job.dataset_dir)
    what = "images or videos" if mt.video else "images"
    if entries is not None:
        media = count_listed(entries, mt.video)
        if media == 0:
            raise SpecError(f"dataset.json: the job's photo list holds no {what} for "
                            "diffusion-pipe")
    else:
        if not dataset.is_dir():
            raise SpecError(f"dataset_dir: {dataset} is not a folder")
        media = count_media(dataset, mt.video)
        if media == 0:
            raise SpecError(f"dataset_dir: {dataset} holds no {what} for diffusion-pipe")
    # one resolution: every image is seen num_repeats times an epoch, in global batches
    # (batch x accum per data-parallel replica, N / pipeline_stages replicas)
    replicas = _parallel(job, opts)[2]
    per_epoch = max(1, media * job.repeats // (job.batch_size * job.grad_accum * replicas))
    epochs = opts.get("epochs", 0, int, lambda v: v >= 0, "cannot be negative")
    if epochs:
        return {"epochs": epochs, "max_steps": 0, "steps_per_epoch": per_epoch,
                "total": epochs * per_epoch, "media": media}
    # max_steps mode: enough epochs never to end before max_steps (an epoch has >= 1 step).
    # A decaying schedule spans epochs x steps per epoch (train.py:849-857), so then the
    # epochs are just enough to cover max_steps and the decay ends with the run.
    decays = job.lr_scheduler in DECAYING
    epochs = -(-job.steps // per_epoch) if decays else job.steps
    return {"epochs": epochs, "max_steps": job.steps, "steps_per_epoch": per_epoch,
            "total": job.steps, "media": media}


def main_config(job: TrainingJob, paths: JobPaths, entries: list[DatasetEntry] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """(main TOML doc, dataset TOML doc, plan) for ``job``; SpecError names a bad field.
    ``entries``: the job's photo list (the plan counts them; without it, the dataset folder,
    for an estimate). Reads the file system (paths, dataset): call it off the UI thread."""
    opts = _Options(job)
    mt = _model_type_of(job, opts)
    values = resolve_paths(mt, opts.fields, job.base_model)
    check_paths(mt, values)
    if job.quantize_base not in ("none", "float8"):
        raise SpecError(f"quantize_base: diffusion-pipe can load the base model in float8 or "
                        f"not at all (got {job.quantize_base!r})")
    plan = _plan(job, opts, mt, entries)
    doc: dict[str, Any] = {
        "output_dir": str(paths.root / OUTPUT_FOLDER),
        "dataset": str(paths.configs / DATASET_TOML),
        "epochs": plan["epochs"],
    }
    if plan["max_steps"]:
        doc["max_steps"] = plan["max_steps"]
    doc |= {
        "micro_batch_size_per_gpu": job.batch_size,
        "pipeline_stages": _parallel(job, opts)[1],
        "gradient_accumulation_steps": job.grad_accum,
        "gradient_clipping": opts.get("gradient_clipping", 1.0, float, lambda v: v >= 0,
                                      "cannot be negative"),
        "warmup_steps": job.warmup_steps,
    }
    if job.lr_scheduler in DECAYING:   # train.py:849-857: constant (default), linear, cosine
        doc["lr_scheduler"] = job.lr_scheduler
    blocks = opts.get("blocks_to_swap", 0, int, lambda v: v >= 0, "cannot be negative")
    if blocks:
        doc["blocks_to_swap"] = blocks
    if plan["max_steps"]:
        every = job.checkpoint_every if job.checkpoint_every > 0 else job.steps
        doc["save_every_n_epochs"] = plan["epochs"]
        doc["save_every_n_steps"] = every
    else:
        doc["save_every_n_epochs"] = opts.get("save_every_n_epochs", plan["epochs"], int,
                                              _positive, "must be at least 1")
    doc["checkpoint_every_n_minutes"] = opts.get("checkpoint_every_n_minutes", 30, int,
                                                 _positive, "must be at least 1 minute")
    checkpointing = opts.get("activation_checkpointing",
                             "true" if job.gradient_checkpointing else "false", str,
                             lambda v: v in ("true", "false", "unsloth"),
                             "must be true, false or unsloth")
    doc |= {
        "activation_checkpointing": "unsloth" if checkpointing == "unsloth"
        else checkpointing == "true",
        "partition_method": "parameters",
        "save_dtype": "bfloat16",
        "caching_batch_size": 1,
        "steps_per_print": 1,
    }
    model_options = {}
    if mt.key in FLUX_SHIFT_TYPES and opts.raw("flux_shift") is not None:
        model_options["flux_shift"] = opts.get("flux_shift", True, bool)
    doc["model"] = model_table(mt, values, float8=job.quantize_base == "float8",
                               options=model_options)
    doc["adapter"] = {"type": "lora", "rank": job.rank, "dtype": "bfloat16"}
    doc["optimizer"] = _optimizer(job, opts)
    doc["monitoring"] = _monitoring(job, opts)
    return doc, dataset_config(job, opts, mt, paths.root / DATASET_FOLDER), plan


def _optimizer(job: TrainingJob, opts: _Options) -> dict[str, Any]:
    default = {"adamw": "adamw_optimi", "adamw8bit": "adamw8bit"}.get(job.optimizer,
                                                                        "adamw_optimi")
    kind = opts.get("optimizer_type", default, str, lambda v: bool(v.strip()),
                    "cannot be empty").strip()
    table: dict[str, Any] = {"type": kind, "lr": job.learning_rate}
    if kind.lower() in _ADAM_LIKE:
        table["betas"] = [opts.get("beta1", 0.9, float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
                          opts.get("beta2", 0.99, float, lambda v: 0 <= v < 1,
                                   "must be in [0, 1)")]
    table["weight_decay"] = opts.get("weight_decay", 0.01, float, lambda v: v >= 0,
                                     "cannot be negative")
    if kind.lower() in _ADAM_LIKE - {"prodigy", "adamw8bitkahan"}:
        table["eps"] = opts.get("eps", 1e-8, float, _positive, "must be positive")
    return table


def _monitoring(job: TrainingJob, opts: _Options) -> dict[str, Any]:
    if not opts.get("wandb", False, bool):
        return {"enable_wandb": False}
    return {
        "enable_wandb": True,
        # diffusion-pipe reads this key unconditionally; empty, so wandb uses WANDB_API_KEY
        # from the environment. The key itself is never written to a file.
        "wandb_api_key": "",
        "wandb_tracker_name": opts.get("wandb_project", "isengard", str,
                                       lambda v: bool(v.strip()), "cannot be empty"),
        "wandb_run_name": f"{job.output_name}-{job.job_id}",
    }


def dataset_config(job: TrainingJob, opts: _Options, mt: ModelType,
                   staged: Path) -> dict[str, Any]:
    """The dataset TOML doc: one resolution, aspect-ratio buckets, frame buckets for video
    model types, and the staged dataset folder (see :func:`stage_dataset`) with the job's
    repeats."""
    min_ar = opts.get("min_ar", 0.5, float, _positive, "must be positive")
    max_ar = opts.get("max_ar", 2.0, float, lambda v: v >= min_ar, "must be at least min_ar")
    doc: dict[str, Any] = {
        "resolutions": [job.resolution],
        "enable_ar_bucket": opts.get("enable_ar_bucket", True, bool),
        "min_ar": min_ar,
        "max_ar": max_ar,
        "num_ar_buckets": opts.get("num_ar_buckets", 7, int, _positive, "must be at least 1"),
    }
    if mt.video:
        doc["frame_buckets"] = opts.get("frame_buckets", [1, 33], _frame_buckets)
    # tag shuffling and the caption prefix are diffusion-pipe's own dataset options: the
    # tool shuffles the caption's tags, then puts the prefix in front (see
    # diffusion_pipe_dataset), so the trigger word in a prefix stays first
    shuffle = opts.get("cache_shuffle_num", 0, int, lambda v: v >= 0, "cannot be negative")
    shuffle_tags = opts.get("shuffle_tags", False, bool)
    delimiter = opts.get("cache_shuffle_delimiter", DEFAULT_DELIMITER, str)
    if shuffle:
        doc["cache_shuffle_num"] = shuffle
    elif shuffle_tags:
        doc["shuffle_tags"] = True   # one shuffled copy of each caption
    if shuffle or shuffle_tags:
        doc["cache_shuffle_delimiter"] = delimiter
    prefix = caption_prefix(opts.get("caption_prefix", "", str), job.trigger_word)
    if prefix:
        doc["caption_prefix"] = prefix
    doc["directory"] = [{"path": str(staged), "num_repeats": job.repeats}]
    return doc


# -- the backend ---------------------------------------------------------------------------
class DiffusionPipeBackend:
    """Trains with a diffusion-pipe checkout through DeepSpeed (see the module docstring)."""

    key = "diffusion-pipe"
    label = "diffusion-pipe"

    def __init__(self, install: ExternalInstall | None = None) -> None:
        self.install = install or ExternalInstall()
        self._lock = threading.Lock()
        self._next_parser: ParserContext | None = None

    # -- description -------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        if not self.install.configured:
            why = platform_problem(self.key)
            return False, why or ("diffusion-pipe is not set up: choose its folder and its "
                                  "Python in Settings → Trainers.")
        problems = validate_install(self.key, self.install)
        if problems:
            return False, " ".join(problems)
        return True, ""

    def block_swap(self, job: TrainingJob) -> tuple[int, int] | None:
        """(blocks swapped to CPU memory now, the most recovery goes to) for a Flux/Chroma
        job; None for the others. The ceiling is diffusion-pipe's example value (20, in
        its examples/main_example.toml: ``#blocks_to_swap = 20``). The models' own ceiling
        (their ``enable_block_swap`` assertions) was not read for Flux/Chroma: 20 is the
        value diffusion-pipe itself shows, so recovery never asks for more."""
        if job.family not in ("flux-dev", "flux-schnell", "chroma"):
            return None
        return _Options(job).get("blocks_to_swap", 0, int, lambda v: v >= 0,
                                 "cannot be negative"), 20

    def capabilities(self) -> dict[str, Any]:
        return {
            "families": ["chroma", "sdxl", "flux-dev", "flux-schnell"],
            "model_types": [{"key": m.key, "label": m.label, "families": list(m.families),
                             "video": m.video} for m in MODEL_TYPES],
            "fields": path_fields() + option_fields(),
            "resume": True,
            "samples": False,
            "samples_note": "diffusion-pipe makes no sample images during training.",
            "checkpoints": True,
            "stop": "file",
            "multi_gpu": "deepspeed",   # data + pipeline parallel: num_processes, pipeline_stages
            "quantize_base": ["none", "float8"],
            "optimizers": list(OPTIMIZERS),
            "lr_schedulers": ["constant", *DECAYING],
            "alpha": "rank",   # diffusion-pipe always trains with alpha = rank
            # TrainingJob fields this backend does not use (the Training tab may grey them)
            "unused_job_fields": ["alpha", "caption_dropout", "seed", "sample_every",
                                  "sample_prompts", "sample_steps", "keep_checkpoints",
                                  "mixed_precision", "device", "tokenizer_dir"],
            "platforms": ["linux", "wsl"],
            "unsupported_reason": platform_problem(self.key),
        }

    # -- launch --------------------------------------------------------------------------
    def _launcher(self) -> list[str]:
        python = Path(self.install.python).expanduser()
        script = python.parent / "deepspeed"
        if script.is_file():
            return [str(script)]
        return [str(python), "-m", LAUNCHER_MODULE]

    def build_launch(self, job: TrainingJob, paths: JobPaths, resume: bool) -> Launch:
        """The two TOML files and the DeepSpeed launch. Reads the file system (paths,
        dataset, checkpoints; removes a stale signal file on resume): the runner calls it
        off the UI thread."""
        if not self.install.configured:
            raise SpecError("backend: diffusion-pipe is not set up: choose its folder and "
                            "its Python in Settings → Trainers")
        entries = read_dataset_list(paths.root)   # the job's photos, never a folder scan
        main, dataset, plan = main_config(job, paths, entries)
        output_dir = Path(main["output_dir"])
        captions = stage_dataset(entries, paths.root / DATASET_FOLDER,
                                 job.trigger_word, model_type(main["model"]["type"]).video,
                                 prefix=dataset.get("caption_prefix", ""),
                                 delimiter=dataset.get("cache_shuffle_delimiter",
                                                       DEFAULT_DELIMITER))
        header = (f"diffusion-pipe config written by Isengard Desktop for job {job.job_id}.\n"
                  "Secrets are never written here: the W&B key reaches diffusion-pipe only "
                  "as WANDB_API_KEY.")
        files = {paths.configs / MAIN_TOML: toml_dumps(main, header),
                 paths.configs / DATASET_TOML: toml_dumps(
                     dataset, f"diffusion-pipe dataset for job {job.job_id}.")} | captions
        n, ids = num_processes(job), gpu_ids(job)
        if n == 1 and not ids:
            argv = self._launcher() + ["--num_gpus=1", "train.py", "--deepspeed",
                                       "--config", str(paths.configs / MAIN_TOML)]
        else:       # several GPUs: one free port for DeepSpeed's launcher and train.py
            port = free_port()
            argv = self._launcher() + deepspeed_launch_args(n, ids, port) + [
                "train.py", "--deepspeed", "--config", str(paths.configs / MAIN_TOML),
                "--master_port", str(port)]
        context = ParserContext(total=plan["total"], steps_per_epoch=plan["steps_per_epoch"],
                                epochs=0 if plan["max_steps"] else plan["epochs"],
                                max_steps=plan["max_steps"], output_dir=output_dir,
                                job_dir=paths.root, output_name=job.output_name)
        stop_file = paths.root / STOP_PENDING
        stop_file.unlink(missing_ok=True)   # left by a stop asked for before a run folder
        found = find_checkpoint(output_dir) if resume else None
        if found is not None:
            run, info = found
            for name in _SIGNAL_FILES:   # a stop left from a killed run would quit at once
                try:
                    (run / name).unlink()
                except FileNotFoundError:
                    pass
            argv += ["--resume_from_checkpoint", run.name]
            stop_file = run / "save_quit"
            context.start_step, context.run_dir = info.step, run
        with self._lock:
            self._next_parser = context
        return Launch(argv=argv, env=dict(NCCL_ENV), cwd=str(Path(self.install.folder)),
                      files=files, stop="file", stop_file=stop_file)

    def make_parser(self) -> DeepSpeedParser:
        """A parser for the launch built last (the runner builds a launch, then asks for
        its parser)."""
        with self._lock:
            context, self._next_parser = self._next_parser, None
        return DeepSpeedParser(context)

    # -- the hook the training service calls at stop time --------------------------------
    def resolve_stop_file(self, paths: JobPaths, stop_file: Path) -> Path:
        """Where ``save_quit`` goes now: the resumed run folder, else the newest run folder
        (the tool creates it after loading the model); the pending stand-in when none
        exists yet (then the runner's terminate/kill escalation ends the run)."""
        stop_file = Path(stop_file)
        if stop_file.name == "save_quit" and stop_file.parent.is_dir():
            return stop_file
        dirs = run_dirs(paths.root / OUTPUT_FOLDER)
        return dirs[-1] / "save_quit" if dirs else stop_file
