"""Stand-in for ai-toolkit (ostris/ai-toolkit), for tests: not the real tool.

No model is loaded and nothing is learned. It reads the real config our backend writes and
behaves like ``python run.py CONFIG.yaml`` on the outside:

* config: ``job: extension``, ``config.name``, one ``sd_trainer`` process with
  ``training_folder``, ``network.linear/linear_alpha``, ``save``, ``datasets[0].folder_path``,
  ``train.steps``, ``model.name_or_path``, ``sample``; a missing key fails like ai-toolkit
  (``Error running job: ...`` + traceback, exit 1);
* output: ``Running 1 job`` and its other prints on stdout; the tqdm bar
  (``<name>:  13%|█▎        | 250/2000 [02:03<14:21,  2.03it/s, lr: 1.0e-04 loss: 4.123e-01]``)
  on stderr with ``\\r`` redraws, written in two halves (partial reads), and a nested
  ``Generating Images`` bar that moves the cursor with ANSI codes;
* files in ``<training_folder>/<name>/``: ``config.yaml``, step saves
  ``<name>_<step:09>.safetensors`` (valid safetensors with ``training_info`` metadata) and
  ``optimizer.pt``, ``samples/<ms>__<step:09>_<i>.jpg`` (real JPEGs), ``loss_log.db`` (the
  UI logger's tables), the final ``<name>.safetensors``; old saves removed past
  ``max_step_saves_to_keep``;
* resume: a newer save in the folder → ``#### IMPORTANT RESUMING FROM <path> ####`` and
  ``Found step N in metadata, starting from there``;
* stop: like the real tool, no save of its own (SIGINT ends through ``on_error``, SIGTERM
  kills); :class:`BaseSDTrainProcess` has ``end_step_hook``, ``save(step)`` and ``step_num``
  like the real class, which is what Isengard's launcher wraps to save on stop.

Environment: ``STANDIN_DELAY`` (seconds a step, default 0.01); ``STANDIN_LOAD_DELAY``
(seconds spent "loading the model", default 0); ``STANDIN_FAIL``:
``oom@K`` (CUDA OOM at step K, exit 1), ``crash@K`` (RuntimeError at step K),
``oom-skip@K`` (the recoverable "# OOM during training step" notice at step K),
``missing`` (the model cannot be loaded).

:func:`make_install` writes a fake ai-toolkit folder (``run.py`` + ``jobs/process/
BaseSDTrainProcess.py``) that runs this file.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import sqlite3
import struct
import sys
import time
import traceback
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


class OutOfMemoryError(RuntimeError):
    """Printed as ``torch.OutOfMemoryError`` in tracebacks, like the real one."""


OutOfMemoryError.__module__ = "torch"


def make_install(folder: Path) -> Path:
    """A fake ai-toolkit checkout in ``folder`` whose run.py runs this stand-in."""
    folder = Path(folder)
    (folder / "jobs" / "process").mkdir(parents=True, exist_ok=True)
    (folder / "run.py").write_text(
        "# fake ai-toolkit run.py for tests: runs tests/helpers/standin_ai_toolkit.py\n"
        "import os, sys\n"
        "sys.path.insert(0, os.getcwd())\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from standin_ai_toolkit import main  # noqa: E402\n\n"
        "if __name__ == '__main__':\n    main()\n", encoding="utf-8")
    (folder / "jobs" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "jobs" / "process" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "jobs" / "process" / "BaseSDTrainProcess.py").write_text(
        f"import sys\nsys.path.insert(0, {str(HERE)!r})\n"
        "from standin_ai_toolkit import BaseSDTrainProcess  # noqa: E402,F401\n",
        encoding="utf-8")
    return folder


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def write_safetensors(path: str, metadata: dict[str, str], seed: int) -> None:
    """A small valid .safetensors file (one float32 tensor), written in place like torch."""
    data = struct.pack("<4f", *(seed * 0.001 + i for i in range(4)))
    header = {"__metadata__": metadata,
              "lora_unet_x.lora_down.weight": {"dtype": "F32", "shape": [2, 2],
                                               "data_offsets": [0, len(data)]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + data)


def read_metadata(path: str) -> dict[str, str]:
    with open(path, "rb") as fh:
        size = struct.unpack("<Q", fh.read(8))[0]
        return json.loads(fh.read(size)).get("__metadata__", {})


class Bar:
    """A tqdm look-alike on stderr: ``\\r`` redraws, halves written separately."""

    def __init__(self, desc: str, total: int, initial: int = 0, nested: bool = False) -> None:
        self.desc, self.total, self.n, self.nested = desc, total, initial, nested
        self.initial = initial
        self.start = time.monotonic()
        self.postfix = ""
        if nested:
            sys.stderr.write("\n")
        self.draw()

    def draw(self) -> None:
        pct = int(100 * self.n / self.total) if self.total else 0
        fill = int(10 * self.n / self.total) if self.total else 0
        bar = "█" * fill + " " * (10 - fill)
        elapsed = time.monotonic() - self.start
        done = self.n - self.initial
        rate = (done / elapsed) if elapsed > 0 and done > 0 else 0.0
        left = "?" if not rate else _clock((self.total - self.n) / rate)
        speed = "?it/s" if not rate else (f"{rate:.2f}it/s" if rate >= 1 else
                                          f"{1 / rate:.2f}s/it")
        tail = f", {self.postfix}" if self.postfix else ""
        label = f"{self.desc}: " if self.desc else ""
        text = (f"\r{label}{pct:3d}%|{bar}| {self.n}/{self.total} "
                f"[{_clock(elapsed)}<{left}, {speed}{tail}]")
        half = len(text) // 2
        sys.stderr.write(text[:half])
        sys.stderr.flush()
        sys.stderr.write(text[half:])
        sys.stderr.flush()

    def update(self, n: int, postfix: str = "") -> None:
        self.n, self.postfix = n, postfix or self.postfix
        self.draw()

    def close(self) -> None:
        if self.nested:  # leave=False: clear the line and move back up
            sys.stderr.write("\r" + " " * 60 + "\r\x1b[A")
        else:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:02d}:{rest % 60:02d}"


class UILogger:
    """ai-toolkit's loss_log.db: tables steps, metric_keys, metrics (WAL mode)."""

    def __init__(self, path: str) -> None:
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL;")
        self.con.execute("CREATE TABLE IF NOT EXISTS steps (step INTEGER PRIMARY KEY, "
                         "wall_time REAL NOT NULL)")
        self.con.execute("CREATE TABLE IF NOT EXISTS metric_keys (key TEXT PRIMARY KEY, "
                         "first_seen_step INTEGER, last_seen_step INTEGER)")
        self.con.execute("CREATE TABLE IF NOT EXISTS metrics (step INTEGER NOT NULL, key TEXT "
                         "NOT NULL, value_real REAL, value_text TEXT, PRIMARY KEY (step, key))")

    def commit(self, step: int, values: dict[str, float]) -> None:
        self.con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?)", (step, time.time()))
        for key, value in values.items():
            self.con.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, NULL)",
                             (step, key, value))
            self.con.execute("INSERT INTO metric_keys VALUES (?, ?, ?) ON CONFLICT(key) DO "
                             "UPDATE SET last_seen_step = excluded.last_seen_step",
                             (key, step, step))

    def finish(self) -> None:
        self.con.close()


# Keys ai-toolkit 27a03a91 reads, by section of the ``sd_trainer`` process (toolkit/
# config_modules.py: TrainConfig, ModelConfig, SaveConfig, SampleConfig, DatasetConfig,
# NetworkConfig, LoggingConfig; jobs/process/BaseSDTrainProcess.py for the process keys).
# ai-toolkit ignores any other key silently (a setting that never happens); the stand-in
# refuses it so a misspelt key fails a test.
KNOWN_KEYS = {
    "process": {"type", "training_folder", "device", "trigger_word", "network", "save",
                "datasets", "train", "model", "sample", "logging"},
    "train": {"batch_size", "steps", "gradient_accumulation", "gradient_accumulation_steps",
              "train_unet", "train_text_encoder", "gradient_checkpointing", "noise_scheduler",
              "optimizer", "lr", "lr_scheduler", "lr_scheduler_params", "dtype", "ema_config",
              "skip_first_sample", "disable_sampling", "optimizer_params"},
    "model": {"name_or_path", "is_flux", "is_xl", "arch", "extras_name_or_path",
              "assistant_lora_path", "quantize", "qtype", "low_vram", "quantize_te"},
    "save": {"dtype", "save_every", "max_step_saves_to_keep", "push_to_hub"},
    "sample": {"sampler", "sample_every", "width", "height", "prompts", "neg", "seed",
               "walk_seed", "guidance_scale", "sample_steps"},
    "datasets": {"folder_path", "caption_ext", "caption_dropout_rate", "shuffle_tokens",
                 "cache_latents_to_disk", "num_repeats", "resolution"},
    "network": {"type", "linear", "linear_alpha"},
    "logging": {"log_every", "use_ui_logger", "use_wandb", "project_name", "run_name"},
}
# ai-toolkit's Chroma loader takes T5 and the VAE from this hub repo, whatever the config says
# (extensions_built_in/diffusion_models/chroma/chroma_model.py:145-147, 198-225).
CHROMA_EXTRAS_REPO = "ostris/Flex.1-alpha"
CHROMA_EXTRAS = ("tokenizer_2", "text_encoder_2", "vae")


def check_keys(process: dict) -> None:
    """Every key is one ai-toolkit reads (see KNOWN_KEYS)."""
    unknown = {f"process.{k}" for k in set(process) - KNOWN_KEYS["process"]}
    for section in ("train", "model", "save", "sample", "network", "logging"):
        unknown |= {f"{section}.{k}" for k in set(process.get(section) or {})
                    - KNOWN_KEYS[section]}
    for dataset in process.get("datasets") or []:
        unknown |= {f"datasets.{k}" for k in set(dataset) - KNOWN_KEYS["datasets"]}
    if unknown:
        raise KeyError(f"keys ai-toolkit does not read: {sorted(unknown)}")


def check_train(train: dict) -> None:
    """config_modules.py:452-461: the two accumulation keys are mutually exclusive."""
    if int(train.get("gradient_accumulation", 1)) > 1 and \
            int(train.get("gradient_accumulation_steps", 1)) != 1:
        raise ValueError("gradient_accumulation and gradient_accumulation_steps are mutually "
                         "exclusive")


def scheduler_factor(train: dict, step: int) -> float:
    """The learning-rate factor at ``step`` as toolkit/scheduler.py (27a03a91) builds it, with
    ``total_iters = steps`` added unless ``max_iterations`` is given
    (BaseSDTrainProcess.py, "make sure it had bare minimum")."""
    import math

    name = train.get("lr_scheduler", "constant")
    params = dict(train.get("lr_scheduler_params") or {})
    if "max_iterations" not in params:
        params["total_iters"] = int(train["steps"])
    if name == "constant":                       # scheduler.py:29-33, ConstantLR factor 1
        return 1.0
    if name == "cosine":                         # scheduler.py:11-16, CosineAnnealingLR
        t_max = params.pop("total_iters")
        extra = set(params) - {"eta_min", "T_max", "last_epoch"}
        if extra:
            raise TypeError(f"CosineAnnealingLR got unexpected keyword arguments {extra}")
        return 0.5 * (1 + math.cos(math.pi * min(step, t_max) / t_max))
    if name == "linear":                         # scheduler.py:34-38, LinearLR defaults
        start = float(params.pop("start_factor", 1 / 3))
        end = float(params.pop("end_factor", 1.0))
        total = int(params.pop("total_iters", 5))
        if set(params) - {"last_epoch"}:
            raise TypeError(f"LinearLR got unexpected keyword arguments {set(params)}")
        if not (0 < start <= 1 and 0 <= end <= 1):
            raise ValueError("Starting/ending multiplicative factor expected to be between 0 "
                             "and 1.")
        return start + (end - start) * min(step, total) / total
    if name == "constant_with_warmup":           # scheduler.py:40-45
        warm = int(params.get("num_warmup_steps", 1000))
        return min(1.0, step / max(1, warm))
    raise ValueError("Scheduler must be cosine, cosine_with_restarts, step, linear or constant")


def check_model(model: dict) -> None:
    """What the loaders need before minutes of loading go by."""
    path = str(model.get("name_or_path") or "")
    if model.get("arch") == "chroma":
        hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")
        repo = os.path.join(hub, "models--" + CHROMA_EXTRAS_REPO.replace("/", "--"))
        ref = os.path.join(repo, "refs", "main")
        snapshot = ""
        if os.path.isfile(ref):
            with open(ref, encoding="utf-8") as fh:
                snapshot = os.path.join(repo, "snapshots", fh.read().strip())
        missing = [sub for sub in CHROMA_EXTRAS
                   if not (snapshot and os.path.isdir(os.path.join(snapshot, sub))
                           and os.listdir(os.path.join(snapshot, sub)))]
        if missing and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files, "
                          f"and couldn't find them in the cached files: {CHROMA_EXTRAS_REPO} "
                          f"({', '.join(missing)})")
    elif (model.get("is_flux") or model.get("arch") == "flux") \
            and not os.path.isdir(os.path.join(path, "transformer")):
        # toolkit/stable_diffusion_model.py:650-668 loads <name_or_path>/transformer
        raise OSError(f"{path} does not appear to have a file named "
                          "transformer/config.json.")


class BaseSDTrainProcess:
    """The parts of ai-toolkit's BaseSDTrainProcess that the outside world can see."""

    def __init__(self, name: str, config: dict) -> None:
        self.name = name
        self.config = config
        for key in ("training_folder", "network", "save", "datasets", "train", "model"):
            if key not in config:
                raise KeyError(key)
        check_keys(config)
        self.train = config["train"]
        check_train(self.train)
        scheduler_factor(self.train, 0)
        self.model = config["model"]
        if not self.model.get("name_or_path"):
            raise ValueError("name_or_path must be specified")
        network = config["network"]
        self.rank, self.alpha = int(network["linear"]), float(network["linear_alpha"])
        self.save_config = config["save"]
        self.sample_config = config.get("sample") or {}
        self.dataset = config["datasets"][0]
        if not os.path.isdir(self.dataset["folder_path"]):
            raise FileNotFoundError(f"Dataset folder {self.dataset['folder_path']} not found")
        self.save_root = os.path.join(config["training_folder"], name)
        self.step_num = 0
        self.start_step = 0
        self.logger: UILogger | None = None
        self.fail = os.environ.get("STANDIN_FAIL", "")
        self.delay = float(os.environ.get("STANDIN_DELAY", "0.01"))

    # hooks the launcher may wrap
    def end_step_hook(self) -> None:
        pass

    def on_error(self, e: BaseException) -> None:
        pass

    def save(self, step: int | None = None) -> None:
        os.makedirs(self.save_root, exist_ok=True)
        suffix = f"_{str(step).zfill(9)}" if step is not None else ""
        path = os.path.join(self.save_root, f"{self.name}{suffix}.safetensors")
        meta = {"training_info": json.dumps({"step": self.step_num, "epoch": 0}),
                "ss_output_name": self.name, "format": "pt",
                "ss_tag_frequency": json.dumps({f"1_{self.config.get('trigger_word', '')}":
                                                {self.config.get("trigger_word", ""): 1}})}
        write_safetensors(path, meta, self.step_num)
        out(f"Saved checkpoint to {path}")
        opt = os.path.join(self.save_root, "optimizer.pt")
        with open(opt, "wb") as fh:
            fh.write(os.urandom(64))
        out(f"Saved optimizer to {opt}")
        self.clean_up_saves()

    def clean_up_saves(self) -> None:
        keep = int(self.save_config.get("max_step_saves_to_keep", 4))
        files = sorted(glob.glob(os.path.join(self.save_root, f"{self.name}_*.safetensors")),
                       key=lambda p: (os.path.getctime(p), p))
        for path in files[:-keep] if len(files) > keep else []:
            out(f"Removing old save: {path}")
            os.remove(path)

    def latest_save(self) -> str | None:
        files = glob.glob(os.path.join(self.save_root, f"{self.name}*.safetensors"))
        return max(files, key=lambda p: (os.path.getctime(p), p)) if files else None

    def sample(self, step: int) -> None:
        from PIL import Image

        prompts = self.sample_config.get("prompts") or []
        folder = os.path.join(self.save_root, "samples")
        os.makedirs(folder, exist_ok=True)
        bar = Bar("Generating Images", len(prompts), nested=True)
        for i, _prompt in enumerate(prompts):
            time.sleep(self.delay)
            name = f"{int(time.time() * 1000)}__{str(step).zfill(9)}_{i}.jpg"
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (step % 255, i * 40 % 255, 90)).save(buf, "JPEG")
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(buf.getvalue())
            bar.update(i + 1)
        bar.close()

    def _fail_at(self, kind: str) -> int:
        for part in self.fail.split(","):
            if part.startswith(kind + "@"):
                return int(part.split("@")[1])
        return -1

    def run(self) -> None:
        out("Loading Flux model" if self.model.get("is_flux") else "Loading model")
        check_model(self.model)
        if self.fail == "missing" or not os.path.exists(self.model["name_or_path"]):
            raise OSError(f"{self.model['name_or_path']} does not appear to have a file named "
                          "config.json.")
        out("Loading transformer")
        time.sleep(float(os.environ.get("STANDIN_LOAD_DELAY", "0")))
        if self.model.get("quantize"):
            out("Quantizing transformer")
        os.makedirs(self.save_root, exist_ok=True)
        with open(os.path.join(self.save_root, "config.yaml"), "w", encoding="utf-8") as fh:
            yaml.safe_dump({"config": self.config}, fh)
        latest = self.latest_save()
        if latest is not None:
            out(f"#### IMPORTANT RESUMING FROM {latest} ####")
            out(f"Loading from {latest}")
            info = json.loads(read_metadata(latest).get("training_info", "{}"))
            if "step" in info:
                self.step_num = self.start_step = int(info["step"])
                out(f"Found step {self.step_num} in metadata, starting from there")
            opt = os.path.join(self.save_root, "optimizer.pt")
            if os.path.exists(opt):
                out(f"Loading optimizer state from {opt}")
        images = [n for n in os.listdir(self.dataset["folder_path"])
                  if n.lower().endswith((".jpg", ".jpeg", ".png", ".webp"))]
        if self.dataset.get("cache_latents_to_disk"):
            bar = Bar("Caching latents to disk", len(images))
            for i in range(len(images)):
                bar.update(i + 1)
            bar.close()
        if (self.config.get("logging") or {}).get("use_ui_logger"):
            self.logger = UILogger(os.path.join(self.save_root, "loss_log.db"))
        steps = int(self.train["steps"])
        save_every = int(self.save_config.get("save_every") or 0)
        sample_every = int(self.sample_config.get("sample_every") or 0)
        sampling = not self.train.get("disable_sampling") and self.sample_config
        lr = float(self.train["lr"])
        sys.stderr.write("/venv/lib/diffusers/utils.py:12: FutureWarning: \x1b[33mthis is a "
                         "stand-in warning\x1b[0m\n")
        bar = Bar(self.name, steps, initial=self.step_num)
        loss = 0.5 / (1 + self.step_num * 0.01)
        for step in range(self.step_num, steps):
            self.step_num = step
            time.sleep(self.delay)
            if step == self._fail_at("oom"):
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a "
                                   "total capacity of 23.65 GiB of which 3.06 MiB is free.")
            if step == self._fail_at("crash"):
                raise RuntimeError("stand-in crash: mat1 and mat2 shapes cannot be multiplied")
            if step == self._fail_at("oom-skip"):
                out("# OOM during training step, skipping batch 1/3 #")
            loss *= 0.99
            if step != self.start_step:
                if save_every and step % save_every == 0:
                    out(f"\nSaving at step {step}")
                    self.save(step)
                if sampling and sample_every and step % sample_every == 0:
                    self.sample(step)
            if self.logger is not None:
                self.logger.commit(step, {"learning_rate": lr, "loss/loss": loss})
            bar.update(step, f"lr: {lr:.1e} loss: {loss:.3e}")
            self.step_num = step + 1
            self.end_step_hook()
        bar.close()
        if sampling:
            self.sample(self.step_num)
        out("")
        self.save()
        if self.logger is not None:
            self.logger.finish()


class SDTrainer(BaseSDTrainProcess):
    pass


def get_job(config_path: str) -> tuple[str, BaseSDTrainProcess]:
    with open(config_path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    if "job" not in config:
        raise ValueError("config file must have a job key")
    if config["job"] != "extension":
        raise ValueError(f"Unknown job type {config['job']}")
    if "config" not in config:
        raise ValueError("config file must have a config section")
    name = config["config"]["name"]
    process = config["config"]["process"][0]
    if process.get("type") not in ("sd_trainer", "diffusion_trainer"):
        raise ValueError(f"process type {process.get('type')} is not supported")
    out(json.dumps(process, indent=4))
    return name, SDTrainer(name, process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config_file_list", nargs="+")
    parser.add_argument("-r", "--recover", action="store_true")
    parser.add_argument("-n", "--name", default=None)
    parser.add_argument("-l", "--log", default=None)
    args = parser.parse_args()
    out(f"Running {len(args.config_file_list)} job"
        f"{'' if len(args.config_file_list) == 1 else 's'}")
    for config_file in args.config_file_list:
        job = None
        try:
            _name, job = get_job(config_file)
            job.run()
        except Exception as e:
            out(f"Error running job: {e}")
            if job is not None:
                job.on_error(e)
            out("")
            out("========================================")
            out("Result:")
            out(" - 0 completed jobs")
            out(" - 1 failure")
            out("========================================")
            traceback.print_exc()
            sys.exit(1)
    out("")
    out("========================================")
    out("Result:")
    out(f" - {len(args.config_file_list)} completed job")
    out("========================================")


if __name__ == "__main__":
    main()
