"""Stand-in for kohya sd-scripts (train_network.py / sdxl_train_network.py /
flux_train_network.py), for tests: not the real tool.

No model is loaded and nothing is learned. It reads the real files our backend writes and
behaves like ``python <script> --config_file ARGS.toml ...`` on the outside:

* arguments: ``--config_file`` (TOML; sections flattened like sd-scripts) and the command
  line (which wins); the dataset TOML of ``--dataset_config`` (``[general]``,
  ``[[datasets]]``, ``[[datasets.subsets]]``); ``--sample_prompts``. Missing required
  arguments fail like sd-scripts (an assertion/traceback, exit 1). Stricter than sd-scripts:
  a config key it does not know fails too, so a typo in our generator cannot pass unnoticed;
* output: the first log lines through a rich-like handler on stderr (ANSI colours), the rest
  plain on stdout with ``--console_log_simple``; ``accelerator.print`` lines on stdout
  (``running training / 学習開始`` ... ``total optimization steps / 学習ステップ数: N``,
  ``epoch 1/10``, ``saving checkpoint: <path>``); tqdm bars on stderr (``steps:  12%|█▏ |
  441/3680 [..., avr_loss=0.312]`` with ``\\r`` redraws written in halves);
* files in ``output_dir``: ``<name>-step00000050.safetensors``, ``<name>-step00000050-state/``
  (``model.safetensors``, ``optimizer.bin``, ``random_states_0.pkl``, ``train_state.json``),
  ``sample/<name>_<step:06d>_<i:02d>_<YYYYmmddHHMMSS>_<seed>.png``, ``<name>.safetensors``;
  old ones removed past ``save_last_n_steps(_state)``;
* resume: ``--resume <state>`` reads its ``train_state.json``; with
  ``--skip_until_initial_step`` the bar counts the remaining steps, as in sd-scripts;
* stop: none of its own (like sd-scripts): SIGTERM kills, SIGINT raises KeyboardInterrupt.

Environment: ``STANDIN_DELAY`` (seconds a step, default 0.01); ``STANDIN_FAIL``: ``oom@K``
(CUDA OOM traceback at step K, exit 1), ``crash@K``, ``missing`` (a model file cannot be
read). ``STANDIN_OOM_UNLESS_SWAP=N``: the ``oom@K`` only while fewer than N blocks are
swapped (``--blocks_to_swap``), as a card that fits once enough blocks live in CPU memory (a
simulated card, not a rule of sd-scripts; the traceback's last line is torch's own
``torch.OutOfMemoryError: CUDA out of memory.`` from c10/cuda/CUDACachingAllocator.cpp, which
sd-scripts does not catch).
:func:`make_install` writes a fake sd-scripts folder whose scripts run this file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import tomllib
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from standin_ai_toolkit import Bar, OutOfMemoryError, write_safetensors  # noqa: E402 (after sys.path)

SCRIPTS = {"train_network.py": "sd15", "sdxl_train_network.py": "sdxl",
           "flux_train_network.py": "flux"}


def make_install(folder: Path, scripts: tuple[str, ...] = tuple(SCRIPTS)) -> Path:
    """A fake sd-scripts checkout in ``folder`` whose training scripts run this stand-in."""
    folder = Path(folder)
    (folder / "library").mkdir(parents=True, exist_ok=True)
    (folder / "library" / "__init__.py").write_text("", encoding="utf-8")
    for script in scripts:
        (folder / script).write_text(
            "# fake sd-scripts script for tests: runs tests/helpers/standin_kohya.py\n"
            f"import sys\nsys.path.insert(0, {str(HERE)!r})\n"
            "from standin_kohya import main  # noqa: E402\n\n"
            f"if __name__ == '__main__':\n    main({SCRIPTS[script]!r})\n", encoding="utf-8")
    return folder


# Every argument we may write, as sd-scripts 48d368fa declares it (name -> type; bool:
# store_true). Sources: library/train_util.py add_sd_models_arguments / add_training_arguments /
# add_dataset_arguments / add_optimizer_arguments / add_tokenizer_arguments /
# add_masked_loss_arguments, train_network.py setup_parser (network_*), sdxl_train_util.py
# add_sdxl_training_arguments (no_half_vae), library/flux_train_utils.py
# add_flux_train_arguments (clip_l, t5xxl, ae, model_type, guidance_scale, timestep_sampling,
# model_prediction_type, apply_t5_attn_mask, blocks_to_swap via train_util) and
# flux_train_network.py setup_parser (fp8_base via train_network). A config-file key outside
# this table is refused (see parse_args): sd-scripts would ignore it silently
# (train_util.py:4760-4761 copies whatever the TOML holds), a setting that never happens.
ARGS = {  # name -> type (bool: store_true)
    "config_file": str, "console_log_simple": bool, "resume": str,
    "skip_until_initial_step": bool, "pretrained_model_name_or_path": str, "clip_l": str,
    "t5xxl": str, "ae": str, "model_type": str, "network_module": str, "network_dim": int,
    "network_alpha": float, "network_train_unet_only": bool, "optimizer_type": str,
    "learning_rate": float, "lr_scheduler": str, "lr_warmup_steps": int,
    "dataset_config": str, "cache_latents": bool, "cache_latents_to_disk": bool,
    "cache_text_encoder_outputs": bool, "cache_text_encoder_outputs_to_disk": bool,
    "max_data_loader_n_workers": int, "persistent_data_loader_workers": bool,
    "output_dir": str, "output_name": str, "save_model_as": str, "max_train_steps": int,
    "gradient_accumulation_steps": int, "gradient_checkpointing": bool,
    "mixed_precision": str, "save_precision": str, "seed": int, "sdpa": bool,
    "guidance_scale": float, "timestep_sampling": str, "model_prediction_type": str,
    "fp8_base": bool, "blocks_to_swap": int, "apply_t5_attn_mask": bool, "no_half_vae": bool,
    "save_every_n_steps": int, "save_last_n_steps": int, "save_state": bool,
    "save_last_n_steps_state": int, "sample_prompts": str, "sample_every_n_steps": int,
    "sample_sampler": str, "log_with": str, "log_tracker_name": str, "wandb_run_name": str,
    "tokenizer_cache_dir": str,
}

# Dataset-config keys (library/config_util.py: ConfigSanitizer's voluptuous schemas
# GENERAL/DATASET/SUBSET; a key outside them raises "Invalid user config").
DATASET_KEYS = {
    "general": {"shuffle_caption", "caption_extension", "keep_tokens", "resolution",
                "batch_size", "enable_bucket", "bucket_no_upscale", "min_bucket_reso",
                "max_bucket_reso", "caption_dropout_rate", "num_repeats", "class_tokens"},
    "datasets": {"resolution", "batch_size", "enable_bucket", "bucket_no_upscale",
                 "min_bucket_reso", "max_bucket_reso", "subsets", "shuffle_caption",
                 "caption_extension", "keep_tokens"},
    "subsets": {"image_dir", "class_tokens", "num_repeats", "caption_dropout_rate",
                "shuffle_caption", "caption_extension", "keep_tokens", "is_reg",
                "caption_tag_dropout_rate", "token_warmup_step"},
}

# The tokenizers each script loads by hub id (library/strategy_sd.py:17,
# strategy_sdxl.py:24-25, strategy_flux.py:19-27) and what the folder must hold.
TOKENIZERS = {"sd15": {"openai/clip-vit-large-patch14": "clip"},
              "sdxl": {"openai/clip-vit-large-patch14": "clip",
                       "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k": "clip"},
              "flux": {"openai/clip-vit-large-patch14": "clip", "google/t5-v1_1-xxl": "t5"}}


def check_dataset(dataset: dict) -> None:
    """config_util.py's schema: unknown keys are an error (voluptuous ``Invalid``)."""
    for section, allowed in (("general", DATASET_KEYS["general"]),):
        extra = set(dataset.get(section, {})) - allowed
        if extra:
            raise ValueError(f"Invalid user config / 無効なユーザー設定です: extra keys "
                             f"{sorted(extra)} in [{section}]")
    for entry in dataset.get("datasets", []):
        extra = set(entry) - DATASET_KEYS["datasets"]
        for subset in entry.get("subsets", []):
            extra |= set(subset) - DATASET_KEYS["subsets"]
        if extra:
            raise ValueError(f"Invalid user config / 無効なユーザー設定です: extra keys "
                             f"{sorted(extra)}")


def text_encoder_output_cacheable(dataset: dict) -> bool:
    """train_util.py:1102-1113 (DatasetGroup.is_text_encoder_output_cacheable): no subset may
    use caption dropout, shuffle, tag dropout or token warm-up."""
    general = dataset.get("general", {})
    for entry in dataset.get("datasets", []):
        for subset in entry.get("subsets", []):
            merged = {**general, **entry, **subset}
            if (float(merged.get("caption_dropout_rate", 0)) > 0
                    or merged.get("shuffle_caption") or
                    float(merged.get("caption_tag_dropout_rate", 0)) > 0
                    or int(merged.get("token_warmup_step", 0)) > 0):
                return False
    return True


def assert_extra_args(kind: str, args: argparse.Namespace, dataset: dict) -> None:
    """What sd-scripts asserts before loading the model (sdxl_train_network.py:34-37,
    flux_train_network.py:66-68, train_network.py's own check for SD 1.5)."""
    if args.cache_text_encoder_outputs:
        assert text_encoder_output_cacheable(dataset), (
            "when caching Text Encoder output, either caption_dropout_rate, shuffle_caption, "
            "token_warmup_step or caption_tag_dropout_rate cannot be used / Text Encoderの出力"
            "をキャッシュするときはcaption_dropout_rate, shuffle_caption, token_warmup_step, "
            "caption_tag_dropout_rateは使えません")
    # the next assertion in the same assert_extra_args (sdxl_train_network.py, just after
    # 34-37; flux_train_network.py, just after 66-68)
    assert args.network_train_unet_only or not args.cache_text_encoder_outputs, (
        "network for Text Encoder cannot be trained with caching Text Encoder outputs")


def load_tokenizers(kind: str, args: argparse.Namespace) -> None:
    """strategy_base.py:54-69 (TokenizeStrategy._load_tokenizer): ``<tokenizer_cache_dir>/
    <id with / -> _>`` when it exists, else ``from_pretrained(<hub id>)`` — which, with
    ``HF_HUB_OFFLINE=1`` and nothing in the HF cache, raises OSError."""
    for model_id, role in TOKENIZERS[kind].items():
        if args.tokenizer_cache_dir:
            local = Path(args.tokenizer_cache_dir) / model_id.replace("/", "_")
            if local.exists():
                Log.info(f"load tokenizer from cache: {local}")
                wanted = (("vocab.json", "merges.txt") if role == "clip"
                          else ("tokenizer.json",))
                for name in wanted:
                    if not (local / name).is_file():
                        raise OSError(f"Can't load tokenizer for '{local}': {name} is missing")
                continue
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files, "
                          f"and couldn't find them in the cached files. Can't load tokenizer "
                          f"for '{model_id}'.")


class Log:
    """sd-scripts logging: rich on stderr until ``simple`` is set, then plain on stdout."""

    simple = False

    @classmethod
    def info(cls, message: str) -> None:
        if cls.simple:
            sys.stdout.write(message + "\n")
            sys.stdout.flush()
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            sys.stderr.write(f"\x1b[2;36m{stamp}\x1b[0m \x1b[34mINFO    \x1b[0m {message}"
                             "   \x1b[2mtrain_util.py:4512\x1b[0m\n")
            sys.stderr.flush()


def aprint(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for name, kind in ARGS.items():
        if kind is bool:
            parser.add_argument(f"--{name}", action="store_true")
        else:
            parser.add_argument(f"--{name}", type=kind, default=None)
    args = parser.parse_args()
    if not args.config_file:
        return args
    path = args.config_file if args.config_file.endswith(".toml") else args.config_file + ".toml"
    if not os.path.exists(path):
        Log.info(f"{path} not found.")
        sys.exit(1)
    Log.info(f"Loading settings from {path}...")
    with open(path, "rb") as fh:
        config = tomllib.load(fh)
    flat = {}
    for key, value in config.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    unknown = sorted(set(flat) - set(ARGS))
    if unknown:  # the stand-in is stricter than sd-scripts here (see the docstring)
        raise SystemExit(f"error: unrecognized arguments in {path}: {', '.join(unknown)}")
    return parser.parse_args(namespace=argparse.Namespace(**flat))


def fail_at(kind: str) -> int:
    for part in os.environ.get("STANDIN_FAIL", "").split(","):
        if part.startswith(kind + "@"):
            return int(part.split("@")[1])
    return -1


def load_dataset(args: argparse.Namespace) -> tuple[int, str]:
    Log.info(f"Load dataset config from {args.dataset_config}")
    with open(args.dataset_config, "rb") as fh:
        dataset = tomllib.load(fh)
    check_dataset(dataset)
    general = dataset["general"]
    assert general["caption_extension"] == ".txt"
    images = 0
    first = dataset["datasets"][0]
    for subset in first["subsets"]:
        folder = subset["image_dir"]
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"not directory: {folder}")
        names = [n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg",
                                                                     ".webp"))]
        Log.info(f"found directory {folder} contains {len(names)} image files")
        images += len(names) * int(subset.get("num_repeats", 1))
        for name in names:
            caption = Path(folder, Path(name).stem + ".txt")
            if not caption.is_file():
                Log.info(f"neither caption file nor class tokens are found. use empty caption "
                         f"for {name}")
    Log.info(f"{images} train images with repeats.")
    return images, str(first.get("resolution"))


def remove_step_no(last_n_steps: int, every: int, step: int) -> int:
    """The older save removed at ``step`` (train_util.py:5796-5806, get_remove_step_no): only
    the one older than ``step - last_n_steps``, so ``every * keep`` keeps keep + 1 saves."""
    old = step - last_n_steps - 1
    return old - old % every


def save_state(args: argparse.Namespace, step: int) -> None:
    Log.info("")
    Log.info(f"saving state at step {step}")
    state = Path(args.output_dir) / f"{args.output_name}-step{step:08d}-state"
    state.mkdir(parents=True, exist_ok=True)
    write_safetensors(str(state / "model.safetensors"), {}, step)
    (state / "optimizer.bin").write_bytes(os.urandom(64))
    (state / "random_states_0.pkl").write_bytes(os.urandom(16))
    Log.info(f"save train state to {state / 'train_state.json'} at epoch 1 step {step}")
    (state / "train_state.json").write_text(json.dumps({"current_epoch": 1,
                                                        "current_step": step}))
    keep = args.save_last_n_steps_state or args.save_last_n_steps
    if keep:
        old = remove_step_no(keep, args.save_every_n_steps, step)
        old_state = Path(args.output_dir) / f"{args.output_name}-step{old:08d}-state"
        if old > 0 and old_state.is_dir():
            Log.info(f"removing old state: {old_state}")
            shutil.rmtree(old_state)


def save_model(args: argparse.Namespace, name: str, step: int) -> None:
    path = Path(args.output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    aprint(f"\nsaving checkpoint: {path}")
    write_safetensors(str(path), {"ss_output_name": args.output_name, "ss_steps": str(step),
                                  "ss_network_dim": str(args.network_dim),
                                  "ss_network_module": args.network_module}, step)


def sample(args: argparse.Namespace, step: int) -> None:
    from PIL import Image

    Log.info(f"\ngenerating sample images at step / サンプル画像生成 ステップ: {step}")
    folder = Path(args.output_dir) / "sample"
    folder.mkdir(parents=True, exist_ok=True)
    lines = Path(args.sample_prompts).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(x for x in lines if x.strip()):
        prompt, _, opts = line.partition(" --")
        seed = opts.split("d ", 1)[1].split()[0] if "d " in opts else "0"
        Log.info(f"prompt: {prompt}")
        Log.info(f"seed: {seed}")
        stamp = time.strftime("%Y%m%d%H%M%S")
        Image.new("RGB", (8, 8), (step % 255, 30 * i % 255, 20)).save(
            folder / f"{args.output_name}_{step:06d}_{i:02d}_{stamp}_{seed}.png")


def train(kind: str, args: argparse.Namespace) -> None:
    Log.simple = bool(args.console_log_simple)
    for name in ("pretrained_model_name_or_path", "dataset_config", "output_dir", "output_name",
                 "network_module", "max_train_steps"):
        assert getattr(args, name) is not None, f"{name} is required / {name}を指定してください"
    if kind == "flux":
        if args.model_type != "chroma":
            assert args.clip_l is not None, "clip_l is required for FLUX.1"
        assert args.t5xxl is not None and args.ae is not None, "t5xxl and ae are required"
        expected = "networks.lora_flux"
    else:
        expected = "networks.lora"
    if args.network_module != expected:
        raise ModuleNotFoundError(f"No module named '{args.network_module}' for {kind}")
    images, _resolution = load_dataset(args)
    load_tokenizers(kind, args)
    with open(args.dataset_config, "rb") as fh:
        assert_extra_args(kind, args, tomllib.load(fh))
    Log.info("preparing accelerator")
    Log.info("loading model for process 0/1")
    for path in filter(None, (args.pretrained_model_name_or_path, args.clip_l, args.t5xxl,
                              args.ae)):
        if os.environ.get("STANDIN_FAIL") == "missing" or not os.path.exists(path):
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}'")
        Log.info(f"Loading state dict from {path}")
    if kind == "flux":
        Log.info("Building Flux model dev from BFL checkpoint")
    Log.info("caching latents.")
    bar = Bar("", images)
    for i in range(images):
        bar.update(i + 1)
    bar.close()
    if args.cache_text_encoder_outputs:
        Log.info("caching Text Encoder outputs...")
    initial = 0
    if args.resume:
        Log.info(f"resume training from local state: {args.resume}")
        state_file = Path(args.resume) / "train_state.json"
        data = json.loads(state_file.read_text())
        Log.info(f"load train state from {state_file}: {data}")
        initial = int(data["current_step"])
        if args.skip_until_initial_step:
            Log.info(f"skipping {initial} steps / {initial}ステップをスキップします")
    batches = max(1, images)
    epochs = -(-args.max_train_steps // batches)
    aprint("running training / 学習開始")
    aprint(f"  num train images * repeats / 学習画像の数×繰り返し回数: {images}")
    aprint(f"  num batches per epoch / 1epochのバッチ数: {batches}")
    aprint(f"  num epochs / epoch数: {epochs}")
    aprint("  batch size per device / バッチサイズ: 1")
    aprint(f"  gradient accumulation steps / 勾配を合計するステップ数 = "
           f"{args.gradient_accumulation_steps or 1}")
    aprint(f"  total optimization steps / 学習ステップ数: {args.max_train_steps}")
    skip = initial if args.skip_until_initial_step else 0
    bar = Bar("steps", args.max_train_steps - skip)
    delay = float(os.environ.get("STANDIN_DELAY", "0.01"))
    global_step, loss_sum = skip, 0.0
    for epoch in range(skip // batches, epochs):
        aprint(f"\nepoch {epoch + 1}/{epochs}\n")
        for _ in range(batches):
            if global_step >= args.max_train_steps:
                break
            time.sleep(delay)
            if global_step + 1 == fail_at("oom") and \
                    (args.blocks_to_swap or 0) < int(os.environ.get("STANDIN_OOM_UNLESS_SWAP",
                                                                   "999")):
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 72.00 MiB. GPU 0 has a "
                                  "total capacity of 11.99 GiB of which 0 bytes is free.")
            if global_step + 1 == fail_at("crash"):
                raise RuntimeError("stand-in crash: Expected all tensors to be on the same "
                                   "device")
            global_step += 1
            bar.update(global_step - skip)
            every = args.save_every_n_steps
            if args.sample_prompts and args.sample_every_n_steps and \
                    global_step % args.sample_every_n_steps == 0:
                sample(args, global_step)
            if every and global_step % every == 0 and global_step < args.max_train_steps:
                save_model(args, f"{args.output_name}-step{global_step:08d}.safetensors",
                           global_step)
                if args.save_state:
                    save_state(args, global_step)
                if args.save_last_n_steps:
                    old = remove_step_no(args.save_last_n_steps, every, global_step)
                    old_file = Path(args.output_dir) / \
                        f"{args.output_name}-step{old:08d}.safetensors"
                    if old > 0 and old_file.is_file():
                        aprint(f"removing old checkpoint: {old_file}")
                        old_file.unlink()
            loss_sum += 0.1 / (1 + global_step * 0.01)
            bar.update(global_step - skip, f"avr_loss={loss_sum / (global_step - skip):.4g}")
    bar.close()
    save_model(args, f"{args.output_name}.safetensors", global_step)
    Log.info("model saved.")


def main(kind: str) -> None:
    args = parse_args()
    try:
        train(kind, args)
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("sd15", "sdxl", "flux")
         else "sd15")
