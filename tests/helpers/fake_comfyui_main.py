"""A stand-in for ComfyUI's ``main.py`` for supervision tests: serves the ComfyUI test double.

Run it like ComfyUI: ``python tests/helpers/fake_comfyui_main.py --listen 127.0.0.1 --port 8188
--disable-auto-launch [--cpu] [--preview-method auto] [--extra-model-paths-config FILE]
[--output-directory D] [--input-directory D] [--temp-directory D] [--base-directory D]
[--log-stdout]``; unknown flags are ignored. ``--port 0`` picks a free port (the readiness line
names it). To run it under another name (e.g. a fake ComfyUI folder's ``main.py``) use a wrapper
``import runpy; runpy.run_path("<repo>/tests/helpers/fake_comfyui_main.py", run_name="__main__")``.

Output, like ComfyUI 0.3.64 (log lines go to stderr, or to stdout with ``--log-stdout``): device
and version lines, ``Adding extra search path <folder> <path>`` per extra path, ``Starting
server`` and, once listening, the readiness line ``To see the GUI go to: http://<host>:<port>``.

Models: ``<base>/models/<folder>/`` (base = ``--base-directory`` or the working folder) plus the
folders of ``--extra-model-paths-config`` (ComfyUI's YAML: top-level entries with ``base_path``,
optional ``is_default``, and folder keys such as ``loras: loras`` or a multi-line ``|`` block of
paths; relative paths are relative to base_path, or to the YAML's folder without one). They are
rescanned on every /object_info and /models request, so a LoRA copied there later shows up.
Output/input/temp default to ``<base>/output``, ``<base>/input``, ``<base>/temp``.

Environment switches:
``FAKE_COMFY_START_DELAY=<s>``   wait before listening (after the first log lines).
``FAKE_COMFY_CRASH_AFTER=<s>``   after listening for s seconds, print a traceback and exit 1.
``FAKE_COMFY_FAIL_START=1``      print an import-error traceback and exit 1 before listening.
``FAKE_COMFY_SPAWN_CHILD=<pidfile>``  start a long-lived grandchild and write its pid there.
``FAKE_COMFY_GPU_NAME``, ``FAKE_COMFY_VRAM_TOTAL``, ``FAKE_COMFY_VRAM_FREE``  /system_stats device.
``FAKE_COMFY_STEP_DELAY``, ``FAKE_COMFY_NODE_DELAY``   the double's delays (seconds).
``FAKE_COMFY_MODELS``            JSON ``{folder: [names]}`` listed in addition to the scanned files.
``FAKE_COMFY_GPUS``              JSON ``[{"name": ..., "vram": bytes, "vendor": "nvidia"|"amd"}, ...]``:
    the GPUs of a simulated machine (driver order). The process sees them as torch does: only
    those listed in ``CUDA_VISIBLE_DEVICES`` (AMD: ``HIP_VISIBLE_DEVICES``, else
    ``CUDA_VISIBLE_DEVICES``), renumbered from 0, so ``/system_stats`` reports the first visible
    one as ``cuda:0`` (see :func:`visible_gpus`). None visible: it fails at start like ComfyUI
    on a machine whose CUDA has no device (``comfy/model_management.py`` get_torch_device →
    ``torch.cuda.current_device()`` raises "No CUDA GPUs are available"). ``--cuda-device N``
    sets both variables first, as ComfyUI's main.py does (main.py:74-78 at 002f2bed).
``FAKE_COMFY_IMAGE_DELAY=<s>``   extra seconds per picture made (added to the sampler's time).
Custom nodes: each package in ``<base>/custom_nodes`` is imported like ComfyUI does and its
``NODE_CLASS_MAPPINGS`` names are listed in /object_info (see :func:`load_custom_nodes`).
SIGTERM and SIGINT stop the server and exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(os.environ.get("FAKE_COMFY_REPO") or Path(__file__).resolve().parents[2])
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft",
                    ".gguf", ".onnx"}
LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}


def log(args: argparse.Namespace, line: str) -> None:
    stream = sys.stdout if args.log_stdout else sys.stderr
    stream.write(line + "\n")
    stream.flush()


def load_custom_nodes(folder: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Like ComfyUI's nodes.py (init_external_custom_nodes / load_custom_node): every package
    folder in ``custom_nodes`` is imported and its ``NODE_CLASS_MAPPINGS`` keys become node
    classes (listed in /object_info with default entries); a pack that fails to import is
    logged with "(IMPORT FAILED)" and skipped, and the server still starts."""
    import importlib.util

    found: dict[str, dict] = {}
    if not folder.is_dir():
        return found
    for pack in sorted(p for p in folder.iterdir() if (p / "__init__.py").is_file()):
        try:
            spec = importlib.util.spec_from_file_location(
                f"custom_nodes.{pack.name}", pack / "__init__.py",
                submodule_search_locations=[str(pack)])
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            mappings = getattr(module, "NODE_CLASS_MAPPINGS", {}) or {}
        except Exception as exc:  # noqa: BLE001 - ComfyUI logs any failure and goes on
            log(args, f"Cannot import {pack} module for custom nodes: {exc}")
            log(args, f"   0.0 seconds (IMPORT FAILED): {pack}")
            continue
        for name in mappings:
            found[str(name)] = {"python_module": f"custom_nodes.{pack.name}"}
        log(args, f"   0.0 seconds: {pack}")
    return found


def visible_gpus(gpus: list[dict], env: dict[str, str]) -> list[dict]:
    """The GPUs a torch process sees: all, or those named by index in the vendor's
    ``*_VISIBLE_DEVICES``, in that order. The rule is the CUDA programming guide's (section
    "CUDA Environment Variables": only the devices before the first invalid index are
    visible; an empty value hides all), which ROCm's HIP_VISIBLE_DEVICES follows too; an
    AMD machine reads HIP_VISIBLE_DEVICES first, then CUDA_VISIBLE_DEVICES (ROCm honours
    both). Device names (UUIDs) are not simulated."""
    amd = bool(gpus) and all(g.get("vendor") == "amd" for g in gpus)
    names = ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES") if amd else ("CUDA_VISIBLE_DEVICES",)
    raw = next((env[n] for n in names if n in env), None)
    if raw is None:
        return list(gpus)
    seen: list[dict] = []
    for part in raw.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= len(gpus) or gpus[int(part)] in seen:
            break
        seen.append(gpus[int(part)])
    return seen


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--cuda-device", type=int)
    p.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--preview-method", default="none")
    p.add_argument("--extra-model-paths-config", action="append", default=[], nargs="+")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--disable-auto-launch", action="store_true")
    p.add_argument("--output-directory")
    p.add_argument("--input-directory")
    p.add_argument("--temp-directory")
    p.add_argument("--base-directory")
    p.add_argument("--log-stdout", action="store_true")
    args, _unknown = p.parse_known_args(argv)
    return args


def read_extra_paths(config: Path, args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(folder, path) pairs from an extra_model_paths.yaml, logged like ComfyUI."""
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        log(args, f"Failed to read extra model paths config {config}: {exc}")
        return []
    out: list[tuple[str, Path]] = []
    yaml_dir = config.resolve().parent
    for entry in data.values():
        if not isinstance(entry, dict):
            continue
        entry = dict(entry)
        base = entry.pop("base_path", None)
        entry.pop("is_default", None)
        base_path = None
        if base:
            base_path = Path(os.path.expandvars(os.path.expanduser(str(base))))
            if not base_path.is_absolute():
                base_path = yaml_dir / base_path
        for folder, value in entry.items():
            if value is None:
                continue
            for line in str(value).split("\n"):
                line = line.strip()
                if not line:
                    continue
                full = Path(line)
                if base_path is not None:
                    full = base_path / line
                elif not full.is_absolute():
                    full = yaml_dir / line
                full = Path(os.path.normpath(str(full)))
                log(args, f"Adding extra search path {folder} {full}")
                out.append((LEGACY.get(str(folder), str(folder)), full))
    return out


def scan(folder: Path) -> list[str]:
    names: list[str] = []
    if not folder.is_dir():
        return names
    for root, _dirs, files in os.walk(folder, followlinks=True):
        for f in files:
            if Path(f).suffix.lower() in MODEL_EXTENSIONS:
                names.append(os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/"))
    return names


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    base = Path(args.base_directory or os.getcwd()).resolve()
    if os.environ.get("FAKE_COMFY_FAIL_START"):
        sys.stderr.write(
            "Traceback (most recent call last):\n"
            f'  File "{base / "main.py"}", line 147, in <module>\n'
            "    import execution\n"
            f'  File "{base / "execution.py"}", line 15, in <module>\n'
            "    import comfy.model_management\n"
            f'  File "{base / "comfy" / "model_management.py"}", line 21, in <module>\n'
            "    import torch\n"
            "ModuleNotFoundError: No module named 'torch'\n")
        sys.stderr.flush()
        return 1

    from tests.helpers.comfy_double import ComfyDouble

    child_pidfile = os.environ.get("FAKE_COMFY_SPAWN_CHILD")
    if child_pidfile:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        Path(child_pidfile).write_text(str(child.pid))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    extra: list[tuple[str, Path]] = []
    for group in args.extra_model_paths_config:
        for cfg in group:
            extra += read_extra_paths(Path(cfg), args)
    env_models = json.loads(os.environ.get("FAKE_COMFY_MODELS") or "{}")

    def models() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {k: list(v) for k, v in env_models.items()}
        models_dir = base / "models"
        if models_dir.is_dir():
            for sub in models_dir.iterdir():
                if sub.is_dir():
                    found.setdefault(LEGACY.get(sub.name, sub.name), []).extend(scan(sub))
        for folder, path in extra:
            found.setdefault(folder, []).extend(scan(path))
        return found

    gpu = None if args.cpu else os.environ.get("FAKE_COMFY_GPU_NAME") or None
    vram_total = int(os.environ["FAKE_COMFY_VRAM_TOTAL"]) if os.environ.get(
        "FAKE_COMFY_VRAM_TOTAL") else None
    if args.cuda_device is not None:      # ComfyUI main.py:74-78 (002f2bed)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.cuda_device)
        os.environ["HIP_VISIBLE_DEVICES"] = str(args.cuda_device)
        log(args, f"Set cuda device to: {args.cuda_device}")
    machine = json.loads(os.environ.get("FAKE_COMFY_GPUS") or "null")
    if machine is not None and not args.cpu:
        seen = visible_gpus(machine, dict(os.environ))
        if not seen:
            sys.stderr.write(
                "Traceback (most recent call last):\n"
                f'  File "{base / "comfy" / "model_management.py"}", in '
                "get_torch_device\n"
                "    return torch.device(torch.cuda.current_device())\n"
                "RuntimeError: No CUDA GPUs are available\n")
            sys.stderr.flush()
            return 1
        gpu = str(seen[0]["name"])
        vram_total = int(seen[0].get("vram") or 25769803776)
    vram_free = int(os.environ["FAKE_COMFY_VRAM_FREE"]) if os.environ.get(
        "FAKE_COMFY_VRAM_FREE") else None
    output_dir = Path(args.output_directory) if args.output_directory else base / "output"
    input_dir = Path(args.input_directory) if args.input_directory else base / "input"
    temp_dir = Path(args.temp_directory) if args.temp_directory else base / "temp"
    if args.output_directory:
        log(args, f"Setting output directory to: {output_dir.resolve()}")
    if args.input_directory:
        log(args, f"Setting input directory to: {input_dir.resolve()}")
    host = args.listen.split(",")[0]
    if gpu:
        total_mb = (vram_total or 25769803776) // (1024 * 1024)
        log(args, f"Total VRAM {total_mb} MB, total RAM 24105 MB")
        log(args, "pytorch version: 2.14.1+cu130")
        log(args, "Set vram state to: NORMAL_VRAM")
        log(args, f"Device: cuda:0 {gpu} : cudaMallocAsync")
        log(args, "Using pytorch attention")
    else:
        log(args, "Total VRAM 24105 MB, total RAM 24105 MB")
        log(args, "pytorch version: 2.14.1+cu130")
        log(args, "Set vram state to: DISABLED")
        log(args, "Device: cpu")
        log(args, "Using sub quadratic optimization for attention, if you have memory or speed "
                  "issues try using: --use-split-cross-attention")
    log(args, f"Python version: {sys.version}")
    log(args, "ComfyUI version: 0.3.64")
    log(args, "ComfyUI frontend version: 1.27.10")
    log(args, f"[Prompt Server] web root: {base / 'web'}")
    log(args, "")
    log(args, "Import times for custom nodes:")
    log(args, f"   0.0 seconds: {base / 'custom_nodes' / 'websocket_image_save.py'}")
    extra_nodes = load_custom_nodes(base / "custom_nodes", args)
    log(args, "")

    delay = float(os.environ.get("FAKE_COMFY_START_DELAY") or 0)
    if delay and stop.wait(delay):
        return 0

    double = ComfyDouble(
        models_provider=models, gpu_name=gpu, vram_total=vram_total, vram_free=vram_free,
        argv=["main.py", *argv], output_dir=output_dir, input_dir=input_dir, temp_dir=temp_dir,
        step_delay=float(os.environ.get("FAKE_COMFY_STEP_DELAY") or 0),
        image_delay=float(os.environ.get("FAKE_COMFY_IMAGE_DELAY") or 0),
        node_delay=float(os.environ.get("FAKE_COMFY_NODE_DELAY") or 0),
        preview_method=args.preview_method, port=args.port, host=host,
        extra_nodes=extra_nodes)
    try:
        double.start()
    except RuntimeError as exc:
        sys.stderr.write(f"OSError: [Errno 98] error while attempting to bind on address "
                         f"('{host}', {args.port}): address already in use ({exc})\n")
        sys.stderr.flush()
        return 1
    log(args, "Starting server\n")
    shown = f"[{host}]" if ":" in host else host
    log(args, f"To see the GUI go to: http://{shown}:{double.port}")

    crash_after = float(os.environ.get("FAKE_COMFY_CRASH_AFTER") or 0)
    deadline = time.monotonic() + crash_after if crash_after else None
    try:
        while not stop.is_set():
            timeout = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            stop.wait(timeout)
            if deadline is not None and time.monotonic() >= deadline and not stop.is_set():
                sys.stderr.write(
                    "Exception in thread Thread-1 (prompt_worker):\n"
                    "Traceback (most recent call last):\n"
                    f'  File "{base / "main.py"}", line 203, in prompt_worker\n'
                    "    e.execute(item[2], prompt_id, extra_data, item[4])\n"
                    "RuntimeError: CUDA error: an illegal memory access was encountered\n")
                sys.stderr.flush()
                double.kill()
                return 1
    finally:
        if double.running:
            double.stop()
    log(args, "\nStopped server")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
