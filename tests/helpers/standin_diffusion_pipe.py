"""Stand-in for diffusion-pipe, for tests: not the real tool.

Stdlib (+ the ``toml`` package when present, as diffusion-pipe itself uses) only; no torch,
no GPU. :func:`make_fake_install` builds what the backend launches::

    <root>/venv/bin/python       -> this interpreter (a symlink)
    <root>/venv/bin/deepspeed    a fake DeepSpeed launcher: ``--num_gpus=N SCRIPT ARGS`` runs
                                 ``python -u SCRIPT --local_rank=0 ARGS`` and passes its exit
                                 code on, printing DeepSpeed-style launcher lines
    <root>/diffusion-pipe/train.py   runs this file's :func:`main`

so the app starts ``<root>/venv/bin/deepspeed --num_gpus=1 train.py --deepspeed --config X``
in ``<root>/diffusion-pipe`` exactly as it starts the real tool. Like diffusion-pipe it:

* reads the real main and dataset TOMLs and fails as it would on a missing key (KeyError) or
  a missing model file (FileNotFoundError), and on unknown model types (NotImplementedError);
* prints DeepSpeed's lines on stdout (``[Rank 0] step=…, lr=[…]`` then ``steps: N loss: X
  iter time (s): T samples/sec: S``, written in two parts to exercise partial reads),
  ``Started new epoch: E``, ``Saving model to directory epochE``, DeepSpeed checkpoint lines,
  ``Resuming training from checkpoint. …``, ``Manually quitting``, ``TRAINING COMPLETE!``, and
  a caching bar with ``\\r`` redraws and ANSI colours on stderr;
* writes its layout: ``output_dir/<UTC %Y%m%d_%H-%M-%S>/`` with copies of both TOMLs,
  ``epochN/``/``stepN/`` with a small valid ``adapter_model.safetensors``, and DeepSpeed
  checkpoints ``global_stepN/`` plus ``latest``;
* honours ``<run>/save`` and ``<run>/save_quit`` after every step, and
  ``--resume_from_checkpoint [RUN]`` (newest run folder, or the one named);
* with ``[monitoring] enable_wandb = true`` needs ``wandb_api_key`` in the TOML (as
  diffusion-pipe reads it) and, when that is empty, ``WANDB_API_KEY`` in its environment; it
  says on stderr that it saw a key, never the key.

Tell it what to do through its environment: ``STANDIN_DP_DELAY`` (seconds a step),
``STANDIN_DP_CRASH_AT`` / ``STANDIN_DP_OOM_AT`` (step), ``STANDIN_DP_CHECKPOINT_EVERY``
(steps; stands in for ``checkpoint_every_n_minutes``), ``STANDIN_DP_RECORD`` (a file where
it appends its argv, cwd and the NCCL variables as JSON lines).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import struct
import sys
import time
from datetime import datetime, UTC
from pathlib import Path

HERE = Path(__file__).resolve()

# The model types train.py:312-382 dispatches (anything else: NotImplementedError) and the
# path keys each model class reads (models/*.py; e.g. auraflow.py:28, ltx_video.py:37, 59).
MODEL_TYPES = {
    # The types train.py:312-382 dispatches (anything else: NotImplementedError "Model type …
    # is not implemented"; there is no qwen_image21) -> the keys its model class reads with
    # config['model'][key] (auraflow: models/auraflow.py:28; ltx-video: models/ltx_video.py:37,
    # 59).
    "chroma": ("diffusers_path", "transformer_path"),
    "sdxl": ("checkpoint_path",),
    "flux": ("diffusers_path",),
    "ltx-video": ("diffusers_path", "single_file_path"),
    "hunyuan-video": (),            # ckpt_path, or the four ComfyUI files
    "cosmos": ("transformer_path", "vae_path", "text_encoder_path"),
    "lumina_2": ("transformer_path", "llm_path", "vae_path"),
    "wan": ("ckpt_path",),
    "hidream": ("diffusers_path", "llama3_path"),
    "sd3": ("diffusers_path",),
    "cosmos_predict2": ("transformer_path", "vae_path", "t5_path"),
    "omnigen2": ("diffusers_path",),
    "qwen_image": (),
    "hunyuan_image": ("transformer_path", "vae_path", "text_encoder_path", "byt5_path"),
    "auraflow": ("transformer_path", "text_encoder_path", "vae_path", "max_sequence_length"),
    "anima": ("transformer_path", "vae_path", "llm_path"),
    "z_image": ("diffusion_model", "vae", "text_encoders"),
    "flux2": ("diffusion_model", "vae", "text_encoders"),
    "hunyuan_video_15": ("diffusion_model", "vae", "text_encoders"),
    "ernie_image": ("diffusion_model", "vae", "text_encoders"),
    "ltx2": ("diffusion_model", "text_encoder"),
    "ideogram4": ("diffusion_model", "vae", "text_encoders"),
    "krea2": ("diffusion_model", "vae", "text_encoders"),
    "minimax_h3": ("diffusion_model", "vae", "audio_vae", "text_encoders"),
}
# Top-level keys of the main TOML that train.py (and utils/saver.py) read. diffusion-pipe
# ignores any other key silently; the stand-in refuses it so a misspelt key fails a test.
MAIN_KEYS = {
    "output_dir", "dataset", "epochs", "max_steps", "micro_batch_size_per_gpu",
    "pipeline_stages", "gradient_accumulation_steps", "gradient_clipping", "warmup_steps",
    "lr_scheduler", "blocks_to_swap", "save_every_n_epochs", "save_every_n_steps",
    "checkpoint_every_n_minutes", "activation_checkpointing", "partition_method", "save_dtype",
    "caching_batch_size", "steps_per_print", "model", "adapter", "optimizer", "monitoring",
    "eval_datasets", "eval_every_n_epochs", "eval_every_n_steps", "eval_before_first_step",
    "eval_micro_batch_size_per_gpu", "eval_gradient_accumulation_steps", "video_clip_mode",
    "compile", "logging_steps", "x_axis_examples", "force_constant_lr",
    "image_micro_batch_size_per_gpu", "disable_block_swap_for_eval", "partition_split",
}
# train.py:849-857: the schedulers it builds.
SCHEDULERS = ("constant", "linear", "cosine")


def check_main_keys(config: dict) -> None:
    unknown = sorted(set(config) - MAIN_KEYS)
    if unknown:
        raise KeyError(f"main config keys diffusion-pipe does not read: {unknown}")


def scheduler_total(config: dict, steps_per_epoch: int) -> int:
    """The steps the schedule spans (train.py:849-857: linear/cosine decay over
    ``epochs * steps_per_epoch``; constant: 0); NotImplementedError for another name."""
    kind = config.get("lr_scheduler", "constant")
    if kind not in SCHEDULERS:
        raise NotImplementedError(f"Unknown lr_scheduler: {kind}")
    return 0 if kind == "constant" else int(config["epochs"]) * steps_per_epoch
MEDIA = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".jxl", ".mp4",
         ".mov", ".webm", ".mkv", ".avi", ".gif"}


# -- the fake install ----------------------------------------------------------------------
def make_fake_install(root: Path):
    """Create the fake venv + checkout under ``root``; returns an ``ExternalInstall``."""
    from isengard_desktop.core.training.installs import ExternalInstall

    if sys.platform == "win32":
        import pytest

        pytest.skip("diffusion-pipe runs only on Linux/WSL; its stand-in install is a POSIX "
                    "venv (a symlinked python and a #! launcher)")
    bin_dir = root / "venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python"
    if not python.exists():
        python.symlink_to(sys.executable)
    launcher = bin_dir / "deepspeed"
    launcher.write_text(f"#!{sys.executable}\n"
                        f"import runpy, sys\nsys.argv[0] = {str(launcher)!r}\n"
                        f"runpy.run_path({str(HERE)!r}, run_name='deepspeed_launcher')\n",
                        encoding="utf-8")
    launcher.chmod(0o755)
    checkout = root / "diffusion-pipe"
    checkout.mkdir(parents=True, exist_ok=True)
    (checkout / "train.py").write_text(
        "import runpy, sys\n"
        f"runpy.run_path({str(HERE)!r}, init_globals={{'TRAIN_ARGV': list(sys.argv)}},\n"
        "               run_name='diffusion_pipe_train')\n", encoding="utf-8")
    return ExternalInstall(folder=str(checkout), python=str(python))


def launcher_main() -> int:
    """The fake ``deepspeed`` launcher (DeepSpeed's runner + launch, in one)."""
    args = sys.argv[1:]
    gpus = 1
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt.startswith("--num_gpus="):
            gpus = int(opt.split("=", 1)[1])
    if not args:
        print("usage: deepspeed [--num_gpus=N] SCRIPT [ARGS]", file=sys.stderr)
        return 2
    script, rest = args[0], args[1:]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    cmd = [sys.executable, "-u", script, "--local_rank=0", *rest]
    print(f"[{stamp}] [INFO] [runner.py:568:main] cmd = {sys.executable} -u -m "
          f"deepspeed.launcher.launch --world_info=eyJsb2NhbGhvc3QiOiBbMF19 "
          f"--master_addr=127.0.0.1 --master_port=29500 {script} {' '.join(rest)}",
          flush=True)
    print(f"[{stamp}] [INFO] [launch.py:146:main] nnodes=1, num_local_procs={gpus}, "
          "node_rank=0", flush=True)
    import subprocess

    code = subprocess.call(cmd)
    if code:
        print(f"[{stamp}] [ERROR] [launch.py:325:sigkill_handler] {cmd!r} exits with return "
              f"code = {code}", flush=True)
    return code


# -- diffusion-pipe ------------------------------------------------------------------------
def out(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def err(text: str, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def ds_log(message: str, level: str = "INFO", where: str = "logging.py:128:log_dist") -> None:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    out(f"[{stamp}] [{level}] [{where}] {message}")


def load_toml(path: str) -> dict:
    try:
        import toml  # what diffusion-pipe uses
        with open(path, encoding="utf-8") as fh:
            return json.loads(json.dumps(toml.load(fh)))
    except ImportError:
        import tomllib
        with open(path, "rb") as fh:
            return tomllib.load(fh)


def small_safetensors(path: Path, step: int) -> None:
    """A valid safetensors file with one F32 tensor of 2 values."""
    header = json.dumps({"__metadata__": {"format": "pt", "step": str(step)},
                         "lora_down.weight": {"dtype": "F32", "shape": [2],
                                              "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header
                     + struct.pack("<2f", 0.5, float(step)))


def traceback_exit(kind: str, step: int) -> int:
    err("Traceback (most recent call last):")
    err('  File "/fake/diffusion-pipe/train.py", line 620, in <module>')
    err("    loss = model_engine.train_batch(iterator).item()")
    if kind == "oom":
        err("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has "
            "a total capacity of 23.64 GiB of which 1.10 GiB is free. Including non-PyTorch "
            "memory, this process has 22.50 GiB memory in use.")
    else:
        err(f"RuntimeError: simulated crash at step {step}")
    return 1


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        with open(args.config, encoding="utf-8") as fh:
            fh.read()   # like open(args.config) in train.py: fails when it is missing
        self.config = load_toml(args.config)
        c = self.config
        assert "save_every_n_epochs" in c or "save_every_n_steps" in c, \
            "set save_every_n_epochs or save_every_n_steps"
        check_main_keys(c)
        scheduler_total(c, 1)
        self.model = c["model"]
        dtype = self.model["dtype"]
        if dtype not in ("bfloat16", "float16", "float32"):
            raise KeyError(dtype)
        adapter = c.get("adapter", {})
        if adapter and "alpha" in adapter:
            raise NotImplementedError("This script forces alpha=rank to make the saved LoRA "
                                      "format simpler. Please remove alpha from the config.")
        self.epochs = c["epochs"]
        self.dataset = load_toml(c["dataset"])
        self.delay = float(os.environ.get("STANDIN_DP_DELAY", "0") or 0)
        self.crash_at = int(os.environ.get("STANDIN_DP_CRASH_AT", "0") or 0)
        self.oom_at = int(os.environ.get("STANDIN_DP_OOM_AT", "0") or 0)
        self.ckpt_every = int(os.environ.get("STANDIN_DP_CHECKPOINT_EVERY", "0") or 0)

    def check_model(self) -> None:
        kind = self.model["type"]
        if kind not in MODEL_TYPES:
            raise NotImplementedError(f"Model type {kind} is not implemented")
        for key in MODEL_TYPES[kind]:
            value = self.model[key]     # KeyError, as diffusion-pipe's model classes
            paths = ([p.get("path") or p.get("paths") for p in value]
                     if key == "text_encoders" else [value])
            for path in paths:
                for one in (path if isinstance(path, list) else [path]):
                    if not os.path.exists(one):
                        raise FileNotFoundError(2, "No such file or directory", one)

    def media(self) -> int:
        count = 0
        for directory in self.dataset["directory"]:
            path = Path(directory["path"])
            if not path.is_dir():
                raise RuntimeError(f"Invalid path: {path}")
            files = [p for p in path.iterdir() if p.suffix.lower() in MEDIA]
            count += len(files) * directory.get("num_repeats", 1)
        return count * len(self.dataset["resolutions"])

    def wandb(self) -> None:
        monitoring = self.config.get("monitoring", {})
        if not monitoring.get("enable_wandb", False):
            return
        key = monitoring["wandb_api_key"]
        project = monitoring["wandb_tracker_name"]
        name = monitoring["wandb_run_name"]
        if not key and not os.environ.get("WANDB_API_KEY"):
            err("wandb.errors.UsageError: api_key not configured (no-tty). call "
                "wandb.login(key=[your_api_key])")
            raise SystemExit(1)
        source = "the config" if key else "WANDB_API_KEY"
        err(f"wandb: W&B API key is configured (from {source}); logging run {name!r} to "
            f"project {project!r}")

    def run(self) -> int:
        c, args = self.config, self.args
        record = os.environ.get("STANDIN_DP_RECORD")
        if record:
            with open(record, "a", encoding="utf-8") as fh:
                argv = globals().get("TRAIN_ARGV", sys.argv)   # as train.py was started
                fh.write(json.dumps({"argv": argv, "cwd": os.getcwd(),
                                     "nccl": [os.environ.get("NCCL_P2P_DISABLE"),
                                              os.environ.get("NCCL_IB_DISABLE")]}) + "\n")
        self.check_model()
        items = self.media()
        for i in range(1, 4):   # caching latents: a tqdm bar on stderr, with colours
            err(f"\r\x1b[36mcaching latents\x1b[0m: {i * 33}%|{'█' * i}{' ' * (3 - i)}| "
                f"{i}/3 [00:00<00:00, 9.9it/s]", end="")
            time.sleep(0.01)
        err("")
        out_dir = Path(c["output_dir"])
        resume = args.resume_from_checkpoint
        if not resume:
            run_dir = out_dir / datetime.now(UTC).strftime("%Y%m%d_%H-%M-%S")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.config, run_dir)
            shutil.copy(c["dataset"], run_dir)
        elif resume is True:
            run_dir = Path(sorted(glob.glob(os.path.join(c["output_dir"], "*")))[-1])
        else:
            run_dir = out_dir / resume
            if not run_dir.exists():
                raise ValueError(f"Checkpoint directory {run_dir} does not exist")
        self.wandb()
        mbs = c.get("micro_batch_size_per_gpu", 1)
        gas = c.get("gradient_accumulation_steps", 1)
        out(f"Global batch size = {mbs * gas}")
        steps_per_epoch = max(1, items // (mbs * gas))
        step, epoch = 1, 1
        if resume:
            latest = run_dir / "latest"
            if not latest.is_file():
                ds_log(f"Unable to find latest file at {latest}, if trying to load latest "
                       "checkpoint please pass in a specific checkpoint tag.", "WARNING",
                       "engine.py:3000:load_checkpoint")
                raise AssertionError("load_path is None")
            tag = latest.read_text().strip()
            state = json.loads((run_dir / tag / "mp_rank_00_model_states.pt").read_text())
            step, epoch = state["step"] + 1, state["epoch"]
            ds_log(f"[Torch] Loading checkpoint from {run_dir / tag}...",
                   where="torch_checkpoint_engine.py:27:load")
            out(f"Resuming training from checkpoint. Resuming at epoch: {epoch}, step: {step}")
        lr = c["optimizer"].get("lr", 1e-4)
        warmup = c.get("warmup_steps", 0)
        max_steps = c.get("max_steps")
        final_name = None
        saved = checkpointed = False
        while True:
            if self.delay:
                time.sleep(self.delay)
            if self.oom_at and step == self.oom_at:
                return traceback_exit("oom", step)
            if self.crash_at and step == self.crash_at:
                return traceback_exit("crash", step)
            current_lr = lr * min(1.0, step / warmup) if warmup else lr
            ds_log(f"[Rank 0] step={step}, skipped=0, lr=[{current_lr}], mom=[(0.9, 0.99)]")
            loss = 0.9 / (1 + 0.05 * step)
            sys.stdout.write(f"steps: {step} loss: {loss:.4f} ")   # a partial write
            sys.stdout.flush()
            time.sleep(0.002)
            seconds = max(self.delay, 0.001)
            out(f"iter time (s): {seconds:.3f} samples/sec: {mbs * gas / seconds:.3f}")
            saved = checkpointed = False
            if step % steps_per_epoch == 0:        # the epoch ended (process_epoch)
                if epoch % c.get("save_every_n_epochs", 10 ** 9) == 0:
                    self.save_model(run_dir, f"epoch{epoch}", step)
                    saved = True
                epoch += 1
                if epoch > self.epochs:
                    final_name = f"epoch{epoch - 1}"
                    break
                out(f"Started new epoch: {epoch}")
            quit_now = False                        # process_step
            manual = False
            if (run_dir / "save").is_file():
                manual = True
                (run_dir / "save").unlink()
            elif (run_dir / "save_quit").is_file():
                manual = quit_now = True
                (run_dir / "save_quit").unlink()
            every = c.get("save_every_n_steps")
            if every and step % every == 0:
                self.save_model(run_dir, f"step{step}", step)
                saved = True
            if manual or (self.ckpt_every and step % self.ckpt_every == 0):
                self.save_checkpoint(run_dir, step, epoch)
                checkpointed = True
            if quit_now:
                out("Manually quitting")
                return 0
            if max_steps and step >= max_steps:
                final_name = f"step{step}"
                break
            step += 1
        if not checkpointed:
            self.save_checkpoint(run_dir, step, epoch)
        if not saved:
            self.save_model(run_dir, final_name, step)
        out("TRAINING COMPLETE!")
        return 0

    def save_model(self, run_dir: Path, name: str, step: int) -> None:
        out(f"Saving model to directory {name}")
        folder = run_dir / name
        (folder / "tmp").mkdir(parents=True, exist_ok=False)
        time.sleep(0.01)
        small_safetensors(folder / "adapter_model.safetensors", step)
        (folder / "adapter_config.json").write_text(json.dumps(
            {"r": self.config["adapter"]["rank"], "lora_alpha": self.config["adapter"]["rank"],
             "peft_type": "LORA"}))
        shutil.copy(self.args.config, folder)
        (folder / "tmp").rmdir()

    def save_checkpoint(self, run_dir: Path, step: int, epoch: int) -> None:
        tag = f"global_step{step}"
        ds_log(f"[Torch] Checkpoint {tag} is about to be saved!")
        folder = run_dir / tag
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "mp_rank_00_model_states.pt"
        ds_log(f"Saving model checkpoint: {target}")
        target.write_text(json.dumps({"step": step, "epoch": epoch}))
        (folder / "layer_01-model_states.pt").write_bytes(os.urandom(64))
        ds_log(f"[Torch] Saved {target}.", where="torch_checkpoint_engine.py:21:save")
        ds_log(f"[Torch] Checkpoint {tag} is ready now!",
               where="torch_checkpoint_engine.py:33:commit")
        (run_dir / "latest").write_text(tag)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--local_rank", type=int, default=-1)
    parser.add_argument("--resume_from_checkpoint", nargs="?", const=True, default=None)
    parser.add_argument("--regenerate_cache", action="store_true")
    parser.add_argument("--master_port", type=int, default=29500)
    parser.add_argument("--deepspeed", action="store_true")
    args = parser.parse_args()
    ds_log("Setting ds_accelerator to cuda (auto detect)", where="real_accelerator.py:239:"
           "get_accelerator")
    return Trainer(args).run()


if __name__ == "deepspeed_launcher":
    sys.exit(launcher_main())
elif __name__ in ("diffusion_pipe_train", "__main__"):
    sys.exit(main())
