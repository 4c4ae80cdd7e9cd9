"""The kohya sd-scripts backend (``train_network.py`` / ``sdxl_train_network.py`` /
``flux_train_network.py``). Qt-free.

Files (``jobs/<id>/configs/``): ``kohya_args.toml`` (every training argument, read by
``--config_file``; sections are flattened by sd-scripts), ``kohya_dataset.toml``
(``--dataset_config``: ``[general]``, ``[[datasets]]``, ``[[datasets.subsets]]``) and
``kohya_sample_prompts.txt`` (``--sample_prompts``, one prompt a line with ``--w --h --d --s
--l/--g``; ``--l`` is CFG, ``--g`` Flux's embedded guidance).
:func:`build_args`, :func:`build_dataset` and :func:`sample_prompt_lines` build them.

Launch. The runner starts, in the sd-scripts folder::

    <python> jobs/<id>/configs/isengard_shim.py jobs/<id>/configs/isengard_context.json \\
        -- <sd-scripts>/<script> --config_file jobs/<id>/configs/kohya_args.toml \\
        --console_log_simple [--resume <state folder> --skip_until_initial_step]

Not ``accelerate launch`` on one GPU: it needs no launcher (sd-scripts builds its
``Accelerator`` itself and passes ``mixed_precision`` from the args), the launcher would read
the user's own ``accelerate config`` (multi-GPU or precision surprises) and would run the
trainer as a grandchild outside the stop handling. ``OMP_NUM_THREADS=1`` stands in for
``--num_cpu_threads_per_process 1``.

Several GPUs (``extra["num_processes"]`` N > 1, optionally ``extra["gpu_ids"]``;
``core/training/parallel.py``): sd-scripts' own way, ``accelerate launch`` in front of the
same shim command (docs/flux_train_network.md:124 launches with ``accelerate launch``)::

    <python> -m accelerate.commands.launch --config_file jobs/<id>/configs/accelerate.yaml \
        --multi_gpu --num_processes N --num_machines 1 --mixed_precision <mp> \
        --dynamo_backend no --main_process_port <free> [--gpu_ids 0,1] \
        jobs/<id>/configs/isengard_shim.py <context> -- <script> <args>

The job-local ``accelerate.yaml`` keeps the user's default accelerate config out. Every
worker runs the shim; only rank 0 prints its ``[isengard]`` lines (the shim reads ``RANK``),
and each worker ends on the stop file as a single process does. ``--console_log_simple`` sends sd-scripts' log lines to
stdout as plain text (the first few, before the args are read, still come through ``rich`` on
stderr; the parser reads both).

The launcher stages the dataset into ``jobs/<id>/dataset`` with trigger captions (sd-scripts
uses the captions as they are; ``class_tokens`` only covers images without one) — its latent
and text-encoder caches land there too. Outputs: ``jobs/<id>/output/`` (``<name>.safetensors``,
``<name>-step00000500.safetensors``, ``<name>-step00000500-state/``, ``sample/``).

Stop: sd-scripts has no way to save on request, so stop ends it at once; ``--save_state``
every ``checkpoint_every`` steps (or a tenth of the steps when that is 0) keeps what resume
needs. Resume: ``--resume <newest complete state> --skip_until_initial_step`` (same data order;
the bar then counts the remaining steps, which the parser offsets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loguru import logger

from ...core.training.installs import (
    TRAINER_KINDS,
    ExternalInstall,
    current_platform,
    platform_problem,
    validate_install,
)
from ...core.dataset import captions
from ...core.training.parallel import (accelerate_config_text, accelerate_launch_args,
                                       free_port, gpu_ids, num_processes)
from ...core.training.spec import JobPaths, SpecError, TrainingJob
from ..external.files import (
    check_job,
    dump_toml,
    external_checkpoints,
    launcher_files,
    require_path,
    stage_job_dataset,
)
from .parser import KohyaParser
from .tokenizers import tokenizer_files
from ..interface import Launch

__all__ = ["ARGS_NAME", "DATASET_NAME", "FIELDS", "PROMPTS_NAME", "SCRIPTS", "VRAM_PRESETS",
           "KohyaBackend", "base_precision_note", "build_args", "build_dataset", "prompts", "sample_prompt_lines",
           "save_every"]

KEY = "kohya"
ARGS_NAME = "kohya_args.toml"
DATASET_NAME = "kohya_dataset.toml"
PROMPTS_NAME = "kohya_sample_prompts.txt"
ACCELERATE_NAME = "accelerate.yaml"   # job-local accelerate config (several GPUs)
SCRIPTS = {"sd15": "train_network.py", "sdxl": "sdxl_train_network.py",
           "flux-dev": "flux_train_network.py", "flux-schnell": "flux_train_network.py",
           "chroma": "flux_train_network.py"}
FAMILY_LABELS = {"flux-dev": "FLUX.1-dev", "flux-schnell": "FLUX.1-schnell",
                 "chroma": "Chroma", "sdxl": "SDXL", "sd15": "SD 1.5"}
FLOW = ("flux-dev", "flux-schnell", "chroma")
# Families whose script can cache text-encoder outputs; SD 1.5 runs its text encoder each step.
TE_CACHE_FAMILIES = ("sdxl", *FLOW)
TE_MODE_CACHE = "cache"
TE_MODE_DROPOUT = "dropout"
TE_MODES = (TE_MODE_CACHE, TE_MODE_DROPOUT)
DEFAULT_PROMPTS = ("a photo of [trigger], portrait, natural light", "[trigger] smiling, outdoors")
# GPU memory (GB) -> (blocks_to_swap, fp8_base); sd-scripts' FLUX guide, "Recommended
# Settings by GPU Memory" (batch size 1 below 24 GB).
VRAM_PRESETS = {"24": (0, False), "16": (8, True), "12": (16, True), "10": (22, True),
                "8": (28, True)}
FIELDS: list[dict[str, Any]] = [
    {"key": "clip_l", "label": "CLIP-L text encoder", "kind": "file", "required": True,
     "model_types": ["flux-dev", "flux-schnell"],
     "tooltip": "clip_l.safetensors (comfyanonymous/flux_text_encoders)."},
    {"key": "t5xxl", "label": "T5-XXL text encoder", "kind": "file", "required": True,
     "model_types": list(FLOW),
     "tooltip": "t5xxl_fp16.safetensors, or t5xxl_fp8_e4m3fn.safetensors below 10 GB VRAM."},
    {"key": "ae", "label": "Flux autoencoder (ae)", "kind": "file", "required": True,
     "model_types": list(FLOW), "tooltip": "ae.safetensors from FLUX.1-dev."},
    {"key": "vram", "label": "GPU memory preset", "kind": "choice", "required": False,
     "choices": list(VRAM_PRESETS), "model_types": list(FLOW),
     "tooltip": "GB of GPU memory: sets blocks to swap and fp8 (24: none; 16: 8 + fp8; "
                "12: 16 + fp8; 10: 22 + fp8; 8: 28 + fp8)."},
    {"key": "text_encoder_mode", "label": "Text encoder outputs", "kind": "choice",
     "required": False, "choices": list(TE_MODES), "model_types": list(TE_CACHE_FAMILIES),
     "tooltip": "cache (default): text-encoder outputs are computed once and cached - less GPU "
                "memory and faster, but no caption dropout or shuffle (the job's caption "
                "dropout is not used). dropout: the job's caption dropout applies and the text "
                "encoders run every step (no cache, more GPU memory). sd-scripts refuses "
                "both together."},
    {"key": "blocks_to_swap", "label": "Blocks to swap", "kind": "int", "required": False,
     "model_types": list(FLOW),
     "tooltip": "Transformer blocks kept in CPU memory (0-35): less VRAM, slower. Overrides "
                "the preset."},
    {"key": "fp8_base", "label": "fp8 base model", "kind": "bool", "required": False,
     "model_types": list(FLOW), "tooltip": "Keep the frozen model in fp8 (--fp8_base)."},
]


def _fields(job: TrainingJob) -> dict[str, Any]:
    fields = job.extra.get("fields") or {}
    return fields if isinstance(fields, dict) else {}


def _model_files(job: TrainingJob) -> list[str]:
    fields = _fields(job)
    return [str(fields[k]) for k in ("clip_l", "t5xxl", "ae") if fields.get(k)]


def _precision(job: TrainingJob) -> tuple[str, str]:
    """(mixed_precision, save_precision)."""
    auto = "bf16" if job.family in FLOW else "fp16"  # bf16 needs an RTX 30xx or newer
    mixed = {"auto": auto, "bf16": "bf16", "fp16": "fp16", "no": "no"}[job.mixed_precision]
    save = "bf16" if job.family in FLOW and mixed != "fp16" else "fp16"
    return mixed, save


def _swap_and_fp8(job: TrainingJob, fields: dict[str, Any]) -> tuple[int, bool]:
    blocks, fp8 = VRAM_PRESETS.get(str(fields.get("vram") or "24"), (0, False))
    if fields.get("blocks_to_swap") not in (None, ""):
        blocks = int(fields["blocks_to_swap"])
        # sd-scripts library/flux_models.py Flux.enable_block_swap (commit 0047bb1) asserts
        # n // 2 <= 19 - 2 double blocks and (n - n // 2) * 2 <= 38 - 2 single blocks: n <= 35
        if not 0 <= blocks <= 35:
            raise SpecError(f"fields.blocks_to_swap: must be between 0 and 35 (got {blocks})")
    if fields.get("fp8_base") not in (None, ""):
        fp8 = bool(fields["fp8_base"])
    # sd-scripts' only lower-precision base is fp8: library/train_util.py
    # add_training_arguments has "--fp8_base" (store_true, "use fp8 for base model, some models
    # are not supported") and train_network.py setup_parser "--fp8_base_unet" ("use fp8 for
    # U-Net (or DiT), Text Encoder is fp16 or bf16"); read by argument name in stored copies
    # (the pinned 48d368fa is not in the index; line numbers not counted). No int8 or 4-bit
    # base: "int8" (an 8-bit base) is trained in fp8, which base_precision_note says.
    if job.quantize_base not in ("none", "int8", "float8"):
        raise SpecError(f"quantize_base: sd-scripts loads the base model in fp8 "
                        f"(--fp8_base), not {job.quantize_base!r}")
    return blocks, fp8 or job.quantize_base != "none"


def base_precision_note(job: TrainingJob) -> str:
    """A line for the launch files when the job's 8-bit base is not trained as asked
    (``quantize_base="int8"``: sd-scripts has only fp8, see :func:`_swap_and_fp8`), else ""."""
    if job.quantize_base != "int8":
        return ""
    return ("quantize_base int8: sd-scripts has no int8 base; the base model is trained in "
            "fp8 (--fp8_base) instead, also 8-bit")


def text_encoder_cache(job: TrainingJob) -> bool:
    """Whether text-encoder outputs are cached (then caption dropout is off): sd-scripts
    asserts against the two together (sdxl_train_network.py:34-37, flux_train_network.py:66-68,
    train_util.py:1102-1113). Per job: ``fields.text_encoder_mode``, ``cache`` by default."""
    if job.family not in TE_CACHE_FAMILIES:
        return False
    mode = str(_fields(job).get("text_encoder_mode") or TE_MODE_CACHE)
    if mode not in TE_MODES:
        raise SpecError(f"fields.text_encoder_mode: must be one of {', '.join(TE_MODES)} "
                        f"(got {mode!r})")
    return mode == TE_MODE_CACHE


def save_every(job: TrainingJob) -> int:
    """Steps between saves: ``checkpoint_every``, or a tenth of the run (sd-scripts cannot
    save on stop, so resume needs periodic states)."""
    return job.checkpoint_every or max(50, job.steps // 10)


def prompts(job: TrainingJob) -> list[str]:
    """The sample prompts, each with the trigger word (``captions.sample_prompt``: the one
    rule the comparison grid's columns use too, so kohya's samples land in them)."""
    texts = [p for p in job.sample_prompts if p.strip()] or list(DEFAULT_PROMPTS)
    return [captions.sample_prompt(p, job.trigger_word).replace("\n", " ") for p in texts]


def sample_prompt_lines(job: TrainingJob) -> list[str]:
    """sd-scripts sample prompts: ``prompt --w --h --d seed --s steps`` and ``--l`` (CFG) for
    SD, ``--g`` (embedded guidance) for Flux; Chroma gets a negative prompt and real CFG."""
    # sd-scripts library/train_util.py line_to_prompt_dict: "--l" -> prompt_dict["scale"],
    # "--g" -> "guidance_scale", "--n" negative prompt, "--d" seed, "--s" steps (read by
    # name; line numbers not counted). library/flux_train_utils.py@5dff02a6 (a Chroma-era
    # commit; the pinned 48d368fa is not in the index): :157-158 embedded guidance =
    # "guidance_scale" (--g, default 3.5), real CFG = "scale" (--l, default 1.0); :182-185 and
    # :223-230 the negative prompt is used only when that CFG != 1.0; :348 the embedded
    # guidance is ignored by schnell. (Before Chroma support the two were read the other way
    # round, "TODO refactor variable names": such an sd-scripts cannot train Chroma either.)
    size = f"--w {job.resolution} --h {job.resolution}"
    lines = []
    for i, text in enumerate(prompts(job)):
        seed = f"--d {job.seed + i}"
        if job.family == "flux-dev":
            tail = f"--g 3.5 --s {job.sample_steps}"
        elif job.family == "flux-schnell":     # schnell has no guidance input (denoise ignores)
            tail = f"--g 0 --s {min(job.sample_steps, 4)}"
        elif job.family == "chroma":
            tail = f"--n low quality, blurry, deformed --g 0 --l 4.0 --s {job.sample_steps}"
        else:
            tail = f"--l 7 --s {job.sample_steps}"
        lines.append(f"{text} {size} {seed} {tail}")
    return lines


def build_dataset(job: TrainingJob, paths: JobPaths) -> dict[str, Any]:
    return {
        "general": {"shuffle_caption": False, "caption_extension": ".txt", "keep_tokens": 1},
        "datasets": [{
            "resolution": job.resolution, "batch_size": job.batch_size,
            "enable_bucket": True, "bucket_no_upscale": True, "min_bucket_reso": 256,
            "max_bucket_reso": max(1024, job.resolution),
            "subsets": [{"image_dir": str(paths.root / "dataset"),
                         "class_tokens": job.trigger_word.strip(),
                         "num_repeats": job.repeats,
                         "caption_dropout_rate": (None if text_encoder_cache(job)
                                                  else job.caption_dropout)}]}],
    }


def data_loader_workers(platform: str | None = None) -> tuple[int, bool | None]:
    """(``max_data_loader_n_workers``, ``persistent_data_loader_workers``) for ``platform``
    (None: this one). Windows starts workers with spawn: each loads torch and the CUDA DLLs
    again (GBs of commit charge; "WinError 1455: the paging file is too small"), so there the
    data is loaded in the training process (0 workers; persistence then must be off)."""
    if (platform or current_platform()) == "windows":
        return 0, None
    return 2, True


def build_args(job: TrainingJob, paths: JobPaths,
               platform: str | None = None) -> dict[str, Any]:
    """The ``--config_file`` contents by section (sd-scripts flattens the sections).
    ``platform``: as :func:`~...core.training.installs.current_platform` (None: this one)."""
    workers, persistent = data_loader_workers(platform)
    fields = _fields(job)
    mixed, save_precision = _precision(job)
    every = save_every(job)
    model: dict[str, Any] = {"pretrained_model_name_or_path": job.base_model}
    extra: dict[str, Any] = {}
    if job.family in FLOW:
        if job.family != "chroma":
            model["clip_l"] = require_path("fields.clip_l", str(fields.get("clip_l") or ""),
                                           "the CLIP-L text encoder")
        else:
            model["model_type"] = "chroma"
        model["t5xxl"] = require_path("fields.t5xxl", str(fields.get("t5xxl") or ""),
                                      "the T5-XXL text encoder")
        model["ae"] = require_path("fields.ae", str(fields.get("ae") or ""),
                                   "the Flux autoencoder")
        blocks, fp8 = _swap_and_fp8(job, fields)
        chroma = job.family == "chroma"
        extra = {"guidance_scale": 0.0 if chroma else 1.0,
                 "timestep_sampling": "sigmoid" if chroma else "flux_shift",
                 "model_prediction_type": "raw", "fp8_base": fp8,
                 "blocks_to_swap": blocks or None,
                 "apply_t5_attn_mask": True if chroma else None}
    elif job.family == "sdxl":
        extra = {"no_half_vae": True}
    model["tokenizer_cache_dir"] = str(tokenizer_files(job, paths, _model_files(job))[0])
    text_cache = text_encoder_cache(job)
    # sd-scripts removes only the save older than step - save_last_n_steps
    # (train_util.py:5796-5806): every x keep - 1 keeps exactly `keep` saves.
    keep_steps = every * job.keep_checkpoints - 1
    args: dict[str, Any] = {
        "model": model,
        "network": {"network_module": "networks.lora_flux" if job.family in FLOW
                    else "networks.lora",
                    "network_dim": job.rank, "network_alpha": job.alpha,
                    "network_train_unet_only": True},
        "optimizer": {"optimizer_type": "AdamW8bit" if job.optimizer == "adamw8bit"
                      else "AdamW",
                      "learning_rate": job.learning_rate, "lr_scheduler": job.lr_scheduler,
                      "lr_warmup_steps": job.warmup_steps},
        "dataset": {"dataset_config": str(paths.configs / DATASET_NAME),
                    "cache_latents": True, "cache_latents_to_disk": True,
                    "cache_text_encoder_outputs": text_cache or None,
                    "cache_text_encoder_outputs_to_disk": text_cache or None,
                    "max_data_loader_n_workers": workers,
                    "persistent_data_loader_workers": persistent},
        "training": {"output_dir": str(paths.root / "output"), "output_name": job.output_name,
                     "save_model_as": "safetensors", "max_train_steps": job.steps,
                     "gradient_accumulation_steps": job.grad_accum,
                     "gradient_checkpointing": job.gradient_checkpointing,
                     "mixed_precision": mixed, "save_precision": save_precision,
                     "seed": job.seed, "sdpa": True, **extra},
        "saving": {"save_every_n_steps": every,
                   "save_last_n_steps": keep_steps,
                   "save_state": True,
                   "save_last_n_steps_state": keep_steps},
    }
    if job.sample_every:
        args["sampling"] = {"sample_prompts": str(paths.configs / PROMPTS_NAME),
                            "sample_every_n_steps": job.sample_every,
                            "sample_sampler": None if job.family in FLOW else "euler_a"}
    if job.extra.get("wandb"):  # the key reaches sd-scripts only as WANDB_API_KEY
        args["logging"] = {"log_with": "wandb", "log_tracker_name": "isengard",
                           "wandb_run_name": job.output_name}
    return args


class KohyaBackend:
    """Trains with the user's sd-scripts checkout (see the module docstring)."""

    key = KEY
    label = "kohya sd-scripts"

    def __init__(self, install: ExternalInstall | None = None) -> None:
        self.install = install or ExternalInstall()

    def available(self) -> tuple[bool, str]:
        problems = validate_install(KEY, self.install)
        return (False, " ".join(problems)) if problems else (True, "")

    def _families(self) -> list[str]:
        """Families whose script is in the checkout (all, when the folder is not set)."""
        folder = Path(self.install.folder) if self.install.folder else None
        if folder is None or not folder.is_dir():
            return list(FAMILY_LABELS)
        return [f for f in FAMILY_LABELS if (folder / SCRIPTS[f]).is_file()]

    def block_swap(self, job: TrainingJob) -> tuple[int, int] | None:
        """(transformer blocks swapped to CPU memory now, the most sd-scripts allows) for a
        Flux/Chroma job (out-of-memory recovery swaps more); None for the others."""
        if job.family not in FLOW:
            return None
        blocks, _fp8 = _swap_and_fp8(job, _fields(job))
        return blocks, 35          # sd-scripts' ceiling: see _swap_and_fp8

    def capabilities(self) -> dict[str, Any]:
        families = self._families()
        return {
            "families": families,
            "model_types": [{"key": f, "label": FAMILY_LABELS[f], "families": [f]}
                            for f in families],
            "fields": [dict(f) for f in FIELDS],
            "presets": {f"{gb} GB": {"vram": gb, "blocks_to_swap": b, "fp8_base": fp8}
                        for gb, (b, fp8) in VRAM_PRESETS.items()},
            "resume": True, "samples": True, "checkpoints": True,
            "stop": "file", "stop_saves": False,
            "multi_gpu": "accelerate",   # data parallel: extra num_processes / gpu_ids
            "quantize_base": ["none", "float8"],
            "platforms": list(TRAINER_KINDS[KEY].platforms),
            "platform_reason": platform_problem(KEY),
        }

    def build_launch(self, job: TrainingJob, paths: JobPaths, resume: bool) -> Launch:
        check_job(job, tool="sd-scripts", families=SCRIPTS, gpu="a CUDA GPU here",
                  configured=self.install.configured, setup_name="kohya sd-scripts")
        script = Path(self.install.folder) / SCRIPTS[job.family]
        if not script.is_file():
            raise SpecError(f"family: {script} is missing; this sd-scripts checkout cannot "
                            f"train {FAMILY_LABELS[job.family]} (update it)")
        header = (f"# sd-scripts {{}} written by Isengard Desktop for job {job.job_id}.\n"
                  "# No secrets here: W&B and Hugging Face keys reach sd-scripts only through "
                  "its environment.\n")
        note = base_precision_note(job)
        if note:
            logger.info("Job {}: {}", job.job_id, note)
            header += f"# {note}.\n"
        files = {paths.configs / ARGS_NAME: header.format("arguments (--config_file)")
                 + dump_toml(build_args(job, paths)),
                 paths.configs / DATASET_NAME: header.format("dataset (--dataset_config)")
                 + dump_toml(build_dataset(job, paths))}
        files.update(tokenizer_files(job, paths, _model_files(job))[1])
        if job.sample_every:
            files[paths.configs / PROMPTS_NAME] = "\n".join(sample_prompt_lines(job)) + "\n"
        args = ["--config_file", str(paths.configs / ARGS_NAME), "--console_log_simple"]
        saves = external_checkpoints(paths.root, KEY) if resume else []
        if saves:
            args += ["--resume", saves[0].state, "--skip_until_initial_step"]
        context = {
            "v": 1, "tool": KEY, "output_dir": str(paths.root / "output"),
            "name": job.output_name, "steps": job.steps, "lr": job.learning_rate,
            "trigger": job.trigger_word.strip(),
            "prompts": prompts(job),
            "resume": ({"step": saves[0].step, "lora": saves[0].lora, "state": saves[0].state}
                       if saves else None),
        }
        argv, launcher, stop_file = launcher_files(paths, self.install.python, script, args,
                                                   context)
        n = num_processes(job)
        if n > 1:     # sd-scripts' data parallel: accelerate launch in front of the shim
            ids, config = gpu_ids(job), paths.configs / ACCELERATE_NAME
            files[config] = accelerate_config_text(n, ids, _precision(job)[0])
            argv = [argv[0], "-m", "accelerate.commands.launch",
                    *accelerate_launch_args(n, ids, free_port(), _precision(job)[0],
                                            str(config)), *argv[1:]]
        files.update(launcher)
        files.update(stage_job_dataset(job, paths))   # the job's photo list, staged
        return Launch(argv=argv, env={"OMP_NUM_THREADS": "1"}, cwd=self.install.folder,
                      files=files, stop="file", stop_file=stop_file)

    def make_parser(self) -> KohyaParser:
        return KohyaParser()
