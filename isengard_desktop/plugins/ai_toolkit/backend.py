"""The ai-toolkit backend (ostris/ai-toolkit, ``python run.py CONFIG.yaml``). Qt-free.

Launch. The job becomes ``jobs/<id>/configs/ai_toolkit.yaml`` (``job: extension``, one
``sd_trainer`` process; :func:`build_config`). The runner starts, in the ai-toolkit folder::

    <python> jobs/<id>/configs/isengard_shim.py jobs/<id>/configs/isengard_context.json \\
        -- <ai-toolkit>/run.py jobs/<id>/configs/ai_toolkit.yaml

The launcher (``external/trainer_shim.py``) runs ``run.py`` in-process exactly as ``python run.py``
would, after staging the dataset into ``jobs/<id>/dataset`` (trigger captions; ai-toolkit's
``_latent_cache`` then lands there, not in the app's dataset folder) and setting aside saves
the app has not seen complete. Outputs go to ``jobs/<id>/output/<output_name>/``
(``training_folder`` = ``jobs/<id>/output``, ``config.name`` = ``output_name``).

Stop & save (``Launch.stop == "file"``): ai-toolkit itself never saves when interrupted
(SIGINT/Ctrl-C ends ``run.py`` through ``on_error``; its UI's stop flag stops without a
save). The launcher wraps ``BaseSDTrainProcess.end_step_hook``: after a stop request the
current step finishes, ``save(step)`` writes a normal step save and the run ends (exit 0).
While still loading or caching, it ends at once. SIGTERM (the runner's escalation) kills.

Resume: relaunch the same config; ai-toolkit loads its newest ``<name>*.safetensors`` (and
``optimizer.pt``), reads the step from its metadata and prints ``#### IMPORTANT RESUMING FROM
<path> ####`` / ``Found step N in metadata, starting from there``. The runner offers resume
when a save was recorded (``external.files.record_checkpoint``).

Progress (:class:`AiToolkitParser`): the tqdm bar on stderr (``name:  13%|█▎ | 250/2000
[02:03<14:21,  2.03it/s, lr: 1.0e-04 loss: 4.123e-01]``) → step events; its printed lines →
phases; ``Saved checkpoint to <path>`` → checkpoint (and, without a step suffix, ``done``);
``samples/<ms>__<step:09>_<i>.jpg`` files → sample events. Loss history: :func:`loss_history`
reads ``loss_log.db`` (``logging.use_ui_logger``; W&B, when on, replaces it in ai-toolkit).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from ...core.training.installs import (TRAINER_KINDS, ExternalInstall, platform_problem,
                                      validate_install)
from ...core.training.protocol import (
    CheckpointEvent,
    DoneEvent,
    Event,
    LogEvent,
    SampleEvent,
)
from ...core.dataset.captions import has_trigger
from ...core.training.spec import JobPaths, SpecError, TrainingJob
from ..external.parsing import ExternalParser, parse_postfix, parse_tqdm
from ..external.files import (
    OutputScanner,
    check_job,
    external_checkpoints,
    launcher_files,
    require_path,
    stage_job_dataset,
)
from ..interface import Launch
from ...core.console_text import Stream

__all__ = [
    "CONFIG_NAME",
    "FIELDS",
    "AiToolkitBackend",
    "AiToolkitParser",
    "build_config",
    "config_yaml",
    "loss_history",
    "loss_log_path",
    "output_folder",
]

KEY = "ai-toolkit"
CONFIG_NAME = "ai_toolkit.yaml"
FAMILY_LABELS = {"flux-dev": "FLUX.1-dev", "flux-schnell": "FLUX.1-schnell",
                 "chroma": "Chroma", "sdxl": "SDXL", "sd15": "SD 1.5"}
FLOW = ("flux-dev", "flux-schnell", "chroma")
DEFAULT_PROMPTS = ("a photo of [trigger], portrait, natural light",
                   "[trigger] smiling, outdoors, full body")
FIELDS: list[dict[str, Any]] = [
    {"key": "low_vram", "label": "Low VRAM loading", "kind": "bool", "required": False,
     "tooltip": "Quantize on the CPU (slower start). Turn on when the GPU also drives your "
                "display or has less than 24 GB.", "model_types": list(FLOW)},
    {"key": "assistant_lora", "label": "Schnell training adapter", "kind": "file",
     "required": True, "model_types": ["flux-schnell"],
     "tooltip": "ostris/FLUX.1-schnell-training-adapter (a .safetensors file, or its "
                "downloaded folder): ai-toolkit needs it to train on FLUX.1-schnell."},
    {"key": "extras_name_or_path", "label": "Flux text encoder + VAE folder", "kind": "folder",
     "required": False, "model_types": ["chroma"],
     "tooltip": "A diffusers folder with tokenizer_2, text_encoder_2 and vae (ostris/Flex.1-alpha "
                "or FLUX.1-schnell). ai-toolkit's Chroma loader always takes them from the hub "
                "repo ostris/Flex.1-alpha; training runs offline, so this folder is shown to it "
                "as that repo. Empty: it must already be in your Hugging Face cache."},
    {"key": "sample_guidance", "label": "Sample guidance", "kind": "float", "required": False,
     "tooltip": "Guidance scale of the sample images (empty: 4 for Flux/Chroma, 1 for "
                "schnell, 7 for SD)."},
]
_SAVE_LINE = re.compile(r"^Saved (?:checkpoint )?to (?P<path>.+\.safetensors)\s*$")
_REMOVE_LINE = re.compile(r"^Removing old save: (?P<path>.+)$")
_RESUME_LINE = re.compile(r"^#### IMPORTANT RESUMING FROM (?P<path>.+?) ####")
_FOUND_STEP = re.compile(r"^Found step (?P<step>\d+) in metadata")
_OOM_SKIP = re.compile(r"OOM during training step", re.IGNORECASE)
_SAMPLE_FILE = re.compile(r"\d+__(?P<step>\d{9})_(?P<index>\d+)\.(?:jpg|jpeg|png|webp)")
_PHASES = (
    (re.compile(r"(?i)^(loading|quantiz|making pipe|preparing|building)"), "loading_model"),
    (re.compile(r"(?i)caching|^(latent|text embedding)s? cach"), "caching"),
    (re.compile(r"(?i)^generating (baseline )?(samples|images)|^generating first sample"),
     "sampling"),
    (re.compile(r"^Saving at step"), "saving"),
)


def output_folder(job: TrainingJob, paths: JobPaths) -> Path:
    """Where ai-toolkit writes this job's files (``save_root``)."""
    return paths.root / "output" / job.output_name


def loss_log_path(job: TrainingJob, paths: JobPaths) -> Path:
    return output_folder(job, paths) / "loss_log.db"


def _fields(job: TrainingJob) -> dict[str, Any]:
    fields = job.extra.get("fields") or {}
    return fields if isinstance(fields, dict) else {}


def _prompts(job: TrainingJob) -> list[str]:
    prompts = [p.strip() for p in job.sample_prompts if p.strip()] or list(DEFAULT_PROMPTS)
    trigger = job.trigger_word.strip()
    out = []
    for prompt in prompts:
        has = "[trigger]" in prompt or has_trigger(prompt, trigger)
        out.append(prompt if has else f"[trigger], {prompt}")
    return out


# ai-toolkit's Chroma loader takes T5 and the VAE from this hub repo, unconditionally
# (extensions_built_in/diffusion_models/chroma/chroma_model.py:145-147, 198-225).
CHROMA_EXTRAS_REPO = "ostris/Flex.1-alpha"
CHROMA_EXTRAS = ("tokenizer_2", "text_encoder_2", "vae")
HF_CACHE_DIR = "hf_cache"


def _hf_hub_cache() -> Path:
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        return Path(hub)
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


def _repo_dir(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def _cached_snapshot(cache: Path, repo: str, subfolders: tuple[str, ...]) -> bool:
    """Whether ``cache`` holds ``repo`` at ``refs/main`` with every subfolder (what
    huggingface_hub reads offline)."""
    root = _repo_dir(cache, repo)
    try:
        snapshot = root / "snapshots" / (root / "refs" / "main").read_text("utf-8").strip()
    except OSError:
        return False
    return all((snapshot / sub).is_dir() and any((snapshot / sub).iterdir())
               for sub in subfolders)


def chroma_extras(job: TrainingJob, paths: JobPaths) -> tuple[dict[str, str], dict[Path, str],
                                                              dict[str, Any] | None]:
    """(env, files, link_tree) that make ``ostris/Flex.1-alpha`` loadable offline: the user's
    folder linked into a job-local HF cache (``HF_HUB_CACHE``), or nothing when their own HF
    cache has it. :class:`SpecError` with the reason otherwise (never a job that dies after
    minutes of loading)."""
    folder = str(_fields(job).get("extras_name_or_path") or "").strip()
    if folder:
        source = Path(require_path("fields.extras_name_or_path", folder,
                                   "the Flux text encoder + VAE folder", folder=True))
        missing = [sub for sub in CHROMA_EXTRAS if not (source / sub).is_dir()]
        if missing:
            raise SpecError(f"fields.extras_name_or_path: {source} has no "
                            f"{', '.join(missing)} folder; ai-toolkit's Chroma loader needs "
                            f"tokenizer_2, text_encoder_2 and vae from {CHROMA_EXTRAS_REPO}")
        cache = paths.root / HF_CACHE_DIR
        repo = _repo_dir(cache, CHROMA_EXTRAS_REPO)
        revision = hashlib.sha1(str(source.resolve()).encode("utf-8")).hexdigest()
        files = {repo / "refs" / "main": revision}
        link = {"source": str(source), "target": str(repo / "snapshots" / revision),
                "subfolders": list(CHROMA_EXTRAS)}
        return {"HF_HUB_CACHE": str(cache)}, files, link
    if _cached_snapshot(_hf_hub_cache(), CHROMA_EXTRAS_REPO, CHROMA_EXTRAS):
        return {}, {}, None
    raise SpecError(f"fields.extras_name_or_path: ai-toolkit's Chroma loader takes T5 and the "
                    f"VAE from the hub repo {CHROMA_EXTRAS_REPO} and training runs offline; it "
                    f"is not in the Hugging Face cache ({_hf_hub_cache()}). Set the text encoder "
                    f"+ VAE folder to a local copy (tokenizer_2, text_encoder_2, vae), or "
                    f"download {CHROMA_EXTRAS_REPO} once.")


def _scheduler(job: TrainingJob) -> tuple[str, dict[str, Any]]:
    """``lr_scheduler`` and its parameters for toolkit/scheduler.py (27a03a91): constant ->
    ConstantLR (with warm-up: ``constant_with_warmup``, scheduler.py:40-45); cosine ->
    CosineAnnealingLR over the run to 0; linear -> LinearLR from 1 to 0 over the run (its
    defaults would *rise* from lr/3, scheduler.py:34-38). ai-toolkit's cosine and linear take
    no warm-up: ``warmup_steps`` then applies to constant only (said in the config header)."""
    if job.lr_scheduler == "constant":
        if job.warmup_steps:
            return "constant_with_warmup", {"num_warmup_steps": job.warmup_steps}
        return "constant", {}
    if job.lr_scheduler == "linear":
        return "linear", {"start_factor": 1.0, "end_factor": 0.0, "total_iters": job.steps}
    return "cosine", {"total_iters": job.steps, "eta_min": 0.0}


def _model(job: TrainingJob, fields: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = {"name_or_path": job.base_model}
    # ai-toolkit's qtype names are optimum-quanto's qtypes plus its torchao table (uint2..uint8,
    # float8): toolkit/util/quantize.py:36-46 `torchao_qtypes`, :55-61 `get_qtype` (commit
    # 6a77b0c). No NF4 among them; we map int8 → qint8 and float8 → qfloat8 below.
    if job.quantize_base not in ("none", "int8", "float8"):
        raise SpecError(f"quantize_base: ai-toolkit keeps the base model in int8 or float8 "
                        f"(qint8/qfloat8), not {job.quantize_base!r}")
    quantize = job.quantize_base != "none"
    if job.family in ("flux-dev", "flux-schnell"):
        model["is_flux"] = True
        # toolkit/stable_diffusion_model.py:650-668 loads <name_or_path>/transformer
        if not (Path(job.base_model) / "transformer").is_dir():
            raise SpecError(f"base_model: ai-toolkit trains Flux from a diffusers folder (it "
                            f"loads <folder>/transformer); {job.base_model} is not one. Choose "
                            f"the FLUX.1 diffusers folder (with transformer/, vae/, "
                            f"text_encoder*/), or train this single file with kohya.")
    elif job.family == "chroma":
        model["arch"] = "chroma"   # T5 + VAE: see chroma_extras (extras_name_or_path unread)
    elif job.family == "sdxl":
        model["is_xl"] = True
    if job.family == "flux-schnell":
        model["assistant_lora_path"] = require_path(
            "fields.assistant_lora", str(fields.get("assistant_lora") or ""),
            "the FLUX.1-schnell training adapter")
    if job.family in FLOW:
        model["quantize"] = quantize
        if quantize:
            model["qtype"] = "qint8" if job.quantize_base == "int8" else "qfloat8"
        model["low_vram"] = bool(fields.get("low_vram"))
    return model


def _sample(job: TrainingJob, fields: dict[str, Any]) -> dict[str, Any]:
    guidance = fields.get("sample_guidance")
    if guidance in (None, ""):
        guidance = {"flux-schnell": 1.0, "sdxl": 7.0, "sd15": 7.0}.get(job.family, 4.0)
    steps = min(job.sample_steps, 4) if job.family == "flux-schnell" else job.sample_steps
    return {"sampler": "flowmatch" if job.family in FLOW else "ddpm",
            "sample_every": job.sample_every or job.steps,
            "width": job.resolution, "height": job.resolution,
            "prompts": _prompts(job), "neg": "", "seed": job.seed, "walk_seed": True,
            "guidance_scale": float(guidance), "sample_steps": int(steps)}


def build_config(job: TrainingJob, paths: JobPaths) -> dict[str, Any]:
    """The ai-toolkit config of ``job`` (a plain dict; :func:`config_yaml` dumps it)."""
    fields = _fields(job)
    dtype = "fp16" if job.mixed_precision == "fp16" else "bf16"
    buckets = sorted({r for r in (512, 768, 1024) if r <= job.resolution} | {job.resolution})
    scheduler, scheduler_params = _scheduler(job)
    train: dict[str, Any] = {
        "batch_size": job.batch_size, "steps": job.steps,
        # gradient_accumulation: N steps are N optimizer updates, as in the other backends
        # (the old gradient_accumulation_steps counts micro-batches; config_modules.py:452-461)
        "gradient_accumulation": job.grad_accum, "train_unet": True,
        "train_text_encoder": False, "gradient_checkpointing": job.gradient_checkpointing,
        "noise_scheduler": "flowmatch" if job.family in FLOW else "ddpm",
        "optimizer": job.optimizer, "lr": job.learning_rate, "lr_scheduler": scheduler,
        "dtype": dtype, "ema_config": {"use_ema": False}, "skip_first_sample": True}
    if scheduler_params:
        train["lr_scheduler_params"] = scheduler_params
    if not job.sample_every:
        train["disable_sampling"] = True
    logging: dict[str, Any] = {"log_every": 1, "use_ui_logger": True}
    if job.extra.get("wandb"):  # the key reaches ai-toolkit only as WANDB_API_KEY
        logging.update(use_wandb=True, project_name="isengard", run_name=job.output_name)
    process = {
        "type": "sd_trainer",
        "training_folder": str(paths.root / "output"),
        "device": "cuda:0",
        "trigger_word": job.trigger_word.strip(),
        "network": {"type": "lora", "linear": job.rank, "linear_alpha": job.alpha},
        "save": {"dtype": "float16", "save_every": job.checkpoint_every,
                 "max_step_saves_to_keep": job.keep_checkpoints, "push_to_hub": False},
        "datasets": [{"folder_path": str(paths.root / "dataset"), "caption_ext": "txt",
                      "caption_dropout_rate": job.caption_dropout, "shuffle_tokens": False,
                      "cache_latents_to_disk": True, "num_repeats": job.repeats,
                      "resolution": buckets}],
        "train": train,
        "model": _model(job, fields),
        "sample": _sample(job, fields),
        "logging": logging,
    }
    return {"job": "extension",
            "config": {"name": job.output_name, "process": [process]},
            "meta": {"name": "[name]", "version": "1.0"}}


def config_yaml(job: TrainingJob, paths: JobPaths) -> str:
    header = (f"# ai-toolkit config written by Isengard Desktop for job {job.job_id}.\n"
              "# Secrets are not here: W&B and Hugging Face keys reach ai-toolkit only "
              "through its environment.\n")
    if job.warmup_steps and job.lr_scheduler != "constant":
        header += (f"# warmup_steps = {job.warmup_steps} is not applied: ai-toolkit's "
                   f"{job.lr_scheduler} scheduler takes no warm-up (toolkit/scheduler.py).\n")
    return header + yaml.safe_dump(build_config(job, paths), sort_keys=False,
                                   allow_unicode=True, default_flow_style=False, width=100)


def loss_history(db_path: str | Path, key: str = "loss/loss") -> list[tuple[int, float]]:
    """``(step, loss)`` pairs from ai-toolkit's ``loss_log.db`` (tables ``steps``,
    ``metric_keys``, ``metrics(step, key, value_real, value_text)``), in step order.
    Read-only; a missing or busy database gives ``[]``. Safe to call while training runs
    (the file is in WAL mode), but call it off the UI thread for long runs."""
    path = Path(db_path)
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error:
        return []
    try:
        rows = conn.execute("SELECT step, value_real FROM metrics WHERE key = ? AND "
                            "value_real IS NOT NULL ORDER BY step", (key,)).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [(int(step), float(value)) for step, value in rows]


class AiToolkitParser(ExternalParser):
    """ai-toolkit output → protocol events (see the module docstring)."""

    tool = KEY

    def __init__(self) -> None:
        super().__init__()
        self._samples: OutputScanner | None = None
        self._recoverable_oom = False
        self._done = False
        self._lr = 0.0

    def allow_error(self, kind: str, line: str) -> bool:
        if kind == "oom" and self._recoverable_oom:
            return "aborting" in line.lower() or line.startswith("Error running job")
        return True

    def on_line(self, stream: Stream, line: str, redraw: bool, out: list[Event]) -> None:
        if self._samples is None and self.context.get("output_dir"):
            self._samples = OutputScanner(Path(self.context["output_dir"]) / "samples",
                                          _SAMPLE_FILE)
            self._samples.prime()
        text = line.strip()
        frame = parse_tqdm(text)
        if frame is not None:
            self._on_bar(frame, text, out)
            return
        if self._done:
            return
        if _OOM_SKIP.search(text):
            self._recoverable_oom = True
            out.append(LogEvent("warning", f"ai-toolkit: {text.strip('# ')}"))
            return
        saved = _SAVE_LINE.match(text)
        if saved:
            self._on_saved(saved.group("path"), out)
            return
        removed = _REMOVE_LINE.match(text)
        if removed:
            step = _step_of(removed.group("path"), self.context.get("name", ""))
            if step is not None:
                self.forget_checkpoint(step)
            return
        resumed = _RESUME_LINE.match(text)
        if resumed:
            out.append(LogEvent("info", f"ai-toolkit resumes from {resumed.group('path')}"))
            return
        found = _FOUND_STEP.match(text)
        if found:
            self.step = int(found.group("step"))
            out.append(LogEvent("info", f"resuming at step {self.step}"))
            return
        for pattern, phase in _PHASES:
            if pattern.search(text):
                self.phase(phase, out, detail=text[:200])
                return

    def _on_bar(self, frame: Any, text: str, out: list[Event]) -> None:
        desc = frame.desc.lower()
        name = str(self.context.get("name", ""))
        if (name and frame.desc == name) or (not name and "lr:" in frame.postfix):
            self._scan_samples(out)
            values = parse_postfix(frame.postfix)
            self._lr = values.get("lr", self._lr)
            if frame.n <= 0 or "loss" not in values:
                self.phase("training", out, frame.n, frame.total)
                return
            self._recoverable_oom = False
            self.phase("training", out, 0, frame.total)
            self.add_step(out, frame.n, frame.total, frame, values["loss"], self._lr)
        elif "generating" in desc or "sampl" in desc:
            self._scan_samples(out)
            self.phase("sampling", out, frame.n, frame.total, frame.desc)
        elif "cach" in desc:
            self.phase("caching", out, frame.n, frame.total, frame.desc)
        elif "load" in desc or "checkpoint shards" in desc or "quantiz" in desc:
            self.phase("loading_model", out, frame.n, frame.total, frame.desc)

    def _on_saved(self, path: str, out: list[Event]) -> None:
        name = str(self.context.get("name", ""))
        step = _step_of(path, name)
        if step is None and name and Path(path).name == f"{name}.safetensors":
            self._done = True
            self._scan_samples(out, force=True)
            out.append(DoneEvent(path, self.planned_steps or self.step))
            return
        if step is None:
            return
        self.step = max(self.step, step)
        recorded = self.commit_checkpoint(step, path)
        out.append(CheckpointEvent(step, path, recorded is not None))

    def _scan_samples(self, out: list[Event], force: bool = False) -> None:
        if self._samples is None:
            return
        prompts = list(self.context.get("prompts") or [])
        trigger = str(self.context.get("trigger", ""))
        for path, match in self._samples.scan(force):
            index = int(match.group("index"))
            prompt = prompts[index] if index < len(prompts) else ""
            out.append(SampleEvent(int(match.group("step")), str(path),
                                   prompt.replace("[trigger]", trigger)))


def _step_of(path: str, name: str) -> int | None:
    """The step of an ai-toolkit step save ``<name>_<step:09>.safetensors``."""
    match = re.fullmatch(re.escape(name) + r"_(\d+)\.safetensors", Path(path.strip()).name)
    return int(match.group(1)) if match else None


class AiToolkitBackend:
    """Trains with the user's ai-toolkit checkout (see the module docstring)."""

    key = KEY
    label = "ai-toolkit (ostris)"

    def __init__(self, install: ExternalInstall | None = None) -> None:
        self.install = install or ExternalInstall()

    def available(self) -> tuple[bool, str]:
        problems = validate_install(KEY, self.install)
        return (False, " ".join(problems)) if problems else (True, "")

    def capabilities(self) -> dict[str, Any]:
        return {
            "families": list(FAMILY_LABELS),
            "model_types": [{"key": k, "label": v, "families": [k]}
                            for k, v in FAMILY_LABELS.items()],
            "fields": [dict(f) for f in FIELDS],
            "resume": True, "samples": True, "checkpoints": True,
            "stop": "file", "stop_saves": True,
            "quantize_base": ["none", "int8", "float8"],
            "loss_history": True,
            "platforms": list(TRAINER_KINDS[KEY].platforms),
            "platform_reason": platform_problem(KEY),
        }

    def build_launch(self, job: TrainingJob, paths: JobPaths, resume: bool) -> Launch:
        check_job(job, tool="ai-toolkit", families=FAMILY_LABELS,
                  configured=self.install.configured, setup_name="ai-toolkit")
        text = config_yaml(job, paths)
        config = paths.configs / CONFIG_NAME
        save_root = output_folder(job, paths)
        saves = external_checkpoints(paths.root, KEY) if resume else []
        context = {
            "v": 1, "tool": KEY, "output_dir": str(save_root), "name": job.output_name,
            "steps": job.steps, "lr": job.learning_rate, "trigger": job.trigger_word.strip(),
            "prompts": _prompts(job),
            "resume": ({"step": saves[0].step, "lora": saves[0].lora} if saves else None),
            "set_aside": {"folder": str(save_root), "prefix": job.output_name,
                          "keep": [c.lora for c in saves]},
        }
        env = {"SEED": str(job.seed), "NO_ALBUMENTATIONS_UPDATE": "1"}
        extra_files: dict[Path, str] = {}
        if job.family == "chroma":
            hf_env, extra_files, link = chroma_extras(job, paths)
            env.update(hf_env)
            if link is not None:
                context["link_tree"] = link
        script = Path(self.install.folder) / "run.py"
        argv, files, stop_file = launcher_files(paths, self.install.python, script,
                                                [str(config)], context)
        files[config] = text
        files.update(stage_job_dataset(job, paths))   # the job's photo list, staged
        files.update(extra_files)
        return Launch(argv=argv, env=env, cwd=self.install.folder, files=files, stop="file",
                      stop_file=stop_file)

    def make_parser(self) -> AiToolkitParser:
        return AiToolkitParser()

    def loss_history(self, job: TrainingJob, paths: JobPaths) -> list[tuple[int, float]]:
        """``(step, loss)`` of every step from ai-toolkit's ``loss_log.db`` (``[]`` when
        there is none, e.g. with W&B on). Reads a file: call it off the UI thread."""
        return loss_history(loss_log_path(job, paths))
