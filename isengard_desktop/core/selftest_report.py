"""The self-test's findings and the plain-English reasoning behind them (no Qt, no torch).

The self-test answers "is my setup broken?". ``services/selftest_runner.py`` runs it (child
processes for everything that needs torch, a real training run through the app's runner);
this module turns what it saw into :class:`Check` results with a plain line and, when
something failed, what to do — and formats the report for the CLI, the JSON line and the
"Copy report" button.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from .models import HeaderError, read_safetensors_header

__all__ = ["CHECK_TITLES", "Check", "SelfTestResult", "disk_checks", "environment_checks",
           "format_bytes", "lora_check", "prune_old_runs", "remove_sandbox_extras",
           "selftest_folder_name"]

MIN_PYTHON = (3, 11)
MIN_FREE_BYTES = 2 << 30      # below this, training will fail soon: a failed check
LOW_FREE_BYTES = 30 << 30     # below this, real base models will not fit for long: a note
KEEP_RUNS = 3                 # self-test folders kept in the app's tmp folder

CHECK_TITLES = {
    "python": "Python",
    "torch": "PyTorch",
    "cuda": "GPU (CUDA)",
    "libraries": "Training libraries",
    "optional": "Optional speed-ups",
    "disk_space": "Disk space",
    "disk_write": "Disk writes",
    "tiny_model": "Tiny test model",
    "training": "Training run",
    "lora": "LoRA file",
}

_REINSTALL = ("Repair the trainer runtime (Help → Set-up assistant → Trainer runtime, or `isengard runtime "
              "repair`); it brings the right versions")


@dataclass(frozen=True)
class Check:
    """One finding: ``name`` is a stable key (see :data:`CHECK_TITLES`), ``detail`` a plain
    line saying what was found, ``fix`` what to do about it (empty when nothing)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False       # passed, but the user should know (no usable GPU)

    @property
    def title(self) -> str:
        return CHECK_TITLES.get(self.name, self.name)


@dataclass(frozen=True)
class SelfTestResult:
    """Everything the self-test found. ``ok`` is true when every check passed."""

    ok: bool
    checks: tuple[Check, ...]
    torch: str | None = None
    cuda: bool = False
    gpu: str | None = None
    device: str | None = None           # where the training run ran ("cpu" / "cuda")
    first_loss: float | None = None
    last_loss: float | None = None
    steps: int = 0
    lora: str | None = None
    folder: str | None = None           # the self-test's folder (job folder and LoRA kept)
    seconds: float = 0.0
    cancelled: bool = False
    app_version: str = ""
    probe: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``isengard selftest --json`` prints (one line)."""
        return {
            "ok": self.ok,
            "checks": [_check_dict(c) for c in self.checks],
            "torch": self.torch, "cuda": self.cuda, "gpu": self.gpu, "device": self.device,
            "first_loss": self.first_loss, "last_loss": self.last_loss, "steps": self.steps,
            "lora": self.lora, "folder": self.folder, "seconds": round(self.seconds, 2),
            "cancelled": self.cancelled, "version": self.app_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def report_text(self) -> str:
        """A short report for people (the CLI's output and "Copy report")."""
        failed = [c for c in self.checks if not c.ok]
        if self.cancelled:
            head = "cancelled"
        elif self.ok:
            head = "everything works"
        else:
            head = f"{len(failed)} problem{'s' if len(failed) != 1 else ''} found"
        lines = [f"Isengard Desktop {self.app_version} self-test: {head} "
                 f"({self.seconds:.1f} s)", ""]
        width = max(len(c.title) for c in self.checks) if self.checks else 0
        for check in self.checks:
            mark = "FAILED" if not check.ok else "WARN  " if check.warning else "ok    "
            lines.append(f"  {mark}  {check.title.ljust(width)}  {check.detail}")
            if check.fix:
                lines.append(f"          {' ' * width}  What to do: {check.fix}")
        lines.append("")
        lines += self.summary_lines()
        return "\n".join(lines).rstrip() + "\n"

    def summary_lines(self) -> list[str]:
        """The loss, the LoRA written and the kept folder, one line each (when known)."""
        lines = []
        if self.first_loss is not None and self.last_loss is not None:
            lines.append(f"Loss: {self.first_loss:.4f} at step 1, {self.last_loss:.4f} at step "
                         f"{self.steps} (on {self.device or '?'})")
        if self.lora:
            lines.append(f"LoRA written: {self.lora}")
        if self.folder:
            lines.append(f"Test files kept in: {self.folder} (safe to delete)")
        return lines


def _check_dict(check: Check) -> dict[str, Any]:
    """A check for the JSON report; ``warning`` only where set (older readers see the same)."""
    data = asdict(check)
    if not check.warning:
        del data["warning"]
    return data


@dataclass(frozen=True)
class GpuStatus:
    """The probe's verdict for Training: ``usable`` GPU or not, ``hint`` for the estimate
    ("NVIDIA RTX 4090, 24 GB" / "cpu"), ``why`` no GPU can be used (empty when one can)."""

    usable: bool
    hint: str
    why: str
    gpu_count: int = 1        # CUDA GPUs PyTorch sees (several: training can use them all)


def gpu_status(probe: dict[str, Any]) -> GpuStatus:
    """What ``training_runtime probe`` found, as Training needs it."""
    cuda = probe.get("cuda") or {}
    if cuda.get("available") and not cuda.get("error"):
        name = cuda.get("device_name") or "CUDA GPU"
        total = cuda.get("vram_total")
        hint = f"{name}, {round(total / (1 << 30)):d} GB" if total else str(name)
        count = cuda.get("device_count")
        return GpuStatus(usable=True, hint=hint, why="",
                         gpu_count=count if isinstance(count, int) and count > 0 else 1)
    torch_version = probe.get("torch")
    if not torch_version:
        why = f"PyTorch could not be loaded: {probe.get('torch_error') or 'not installed'}"
    else:
        why = _no_gpu_reason(probe, str(torch_version))
    return GpuStatus(usable=False, hint="cpu", why=why)


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"  # pragma: no cover


# ------------------------------------------------------------------ environment (from the probe)


def environment_checks(probe: dict[str, Any] | None, device: str,
                       probe_error: str = "") -> list[Check]:
    """Python, PyTorch, CUDA, the training libraries and the optional extras, from what the
    ``probe`` child printed (``None`` and ``probe_error`` when it printed nothing usable).
    ``device`` is what the user asked for: ``auto``, ``cpu`` or ``cuda``."""
    if probe is None:
        why = probe_error or "it printed nothing"
        return [Check("torch", False,
                      f"The environment check could not run: {why}.",
                      f"{_REINSTALL}. If it keeps failing, send the report to support.")]
    checks: list[Check] = []
    version = str(probe.get("python") or "?")
    try:
        too_old = tuple(int(p) for p in version.split(".")[:2]) < MIN_PYTHON
    except ValueError:
        too_old = False
    need = ".".join(map(str, MIN_PYTHON))
    checks.append(Check("python", not too_old,
                        f"Python {version} ({probe.get('executable', '?')})",
                        f"Isengard needs Python {need} or newer. {_REINSTALL}." if too_old
                        else ""))

    torch_version = probe.get("torch")
    if not torch_version:
        error = probe.get("torch_error") or "not installed"
        checks.append(Check("torch", False, f"PyTorch could not be loaded: {error}",
                            f"{_REINSTALL}, or install PyTorch into {probe.get('executable')} "
                            "(pip install torch)."))
    else:
        extra = f", loaded in {probe['torch_import_s']:.1f} s" if probe.get("torch_import_s") \
            is not None else ""
        checks.append(Check("torch", True, f"PyTorch {torch_version}{extra}"))
        checks.append(_cuda_check(probe, str(torch_version), device))

    libraries = probe.get("libraries") or {}
    missing = [name for name, v in libraries.items() if not v]
    found = ", ".join(f"{name} {v}" for name, v in libraries.items() if v)
    if missing:
        checks.append(Check("libraries", False,
                            f"Missing: {', '.join(missing)}" + (f" (found {found})" if found
                                                                else ""),
                            f"{_REINSTALL}, or pip install {' '.join(missing)} into "
                            f"{probe.get('executable')}."))
    else:
        checks.append(Check("libraries", True, found or "none needed"))

    optional = probe.get("optional") or {}
    notes = []
    for name, v in optional.items():
        if v:
            notes.append(f"{name} {v}")
    absent = [name for name, v in optional.items() if not v]
    cuda = bool((probe.get("cuda") or {}).get("available"))
    text = ", ".join(notes) if notes else "none installed"
    if "bitsandbytes" in absent and cuda:
        text += ("; without bitsandbytes the 8-bit AdamW optimizer falls back to the normal "
                 "one (uses more GPU memory)")
    if "torchao" in absent:
        text += "; without torchao Flux/Chroma bases are quantized with bitsandbytes or not at all"
    checks.append(Check("optional", True, text))
    return checks


def _cuda_check(probe: dict[str, Any], torch_version: str, device: str) -> Check:
    cuda = probe.get("cuda") or {}
    driver = probe.get("nvidia_driver")
    cpu_build = "+cpu" in torch_version or not cuda.get("version")
    if cuda.get("available") and not cuda.get("error"):
        bf16 = "bf16 supported" if cuda.get("bf16") else "no bf16 (fp16 is used)"
        detail = (f"{cuda.get('device_name') or 'CUDA GPU'}, "
                  f"{format_bytes(cuda.get('vram_total'))} VRAM "
                  f"({format_bytes(cuda.get('vram_free'))} free), CUDA {cuda.get('version')}, "
                  f"{bf16}")
        if device == "cpu":
            detail += "; not used (--device cpu)"
        return Check("cuda", True, detail)
    if cuda.get("available"):
        return Check("cuda", False, _no_gpu_reason(probe, torch_version),
                     "Update the NVIDIA driver and restart the computer; close other programs "
                     "that use the GPU. Until then, choose the CPU (much slower).")
    why, fix = _no_gpu_reason_and_fix(probe, torch_version)
    if device == "cuda":
        return Check("cuda", False, f"You asked for the GPU, but it cannot be used: {why}.",
                     fix + " Or run the self-test with the CPU.")
    if device == "cpu":
        return Check("cuda", True, f"Not used (CPU chosen). {why}: there is no usable GPU.",
                     warning=True)
    if driver and (cpu_build or cuda.get("error")):
        # The commonest broken setup: an NVIDIA card, and a PyTorch that cannot use it.
        return Check("cuda", False, f"This computer has an NVIDIA driver ({driver}), but "
                                    f"training would run on the CPU: {why}.", fix)
    return Check("cuda", True, f"{why}: there is no usable GPU, training runs on the CPU (fine "
                               "for this test, far too slow for real LoRAs).", warning=True)


def _no_gpu_reason(probe: dict[str, Any], torch_version: str) -> str:
    """Why PyTorch cannot train on a GPU here (the probe found none usable)."""
    cuda = probe.get("cuda") or {}
    if cuda.get("available"):
        return (f"PyTorch sees {cuda.get('device_name') or 'a CUDA GPU'} but could not "
                f"compute on it: {cuda['error']}")
    return _no_gpu_reason_and_fix(probe, torch_version)[0]


def _no_gpu_reason_and_fix(probe: dict[str, Any], torch_version: str) -> tuple[str, str]:
    cuda = probe.get("cuda") or {}
    driver = probe.get("nvidia_driver")
    cpu_build = "+cpu" in torch_version or not cuda.get("version")
    if cuda.get("error"):
        why = f"PyTorch could not talk to CUDA: {cuda['error']}"
        fix = "Update the NVIDIA driver and restart the computer."
    elif cpu_build:
        why = f"PyTorch {torch_version} is a CPU-only build, so it cannot use a GPU"
        fix = ("Install the trainer runtime with the CUDA build of PyTorch for your NVIDIA GPU "
               "(Help → Set-up assistant → Trainer runtime, or `isengard runtime install --device cu130`).")
    elif driver:
        why = f"PyTorch (CUDA {cuda.get('version')}) finds no usable GPU"
        fix = ("Update the NVIDIA driver to one that supports CUDA "
               f"{cuda.get('version')}, then restart the computer.")
    else:
        why = "No NVIDIA GPU or driver was found"
        fix = "Install the NVIDIA driver if this computer has an NVIDIA GPU."
    return why, fix


def training_device(probe: dict[str, Any] | None, device: str) -> str:
    """Where a job with ``device`` would train, per the probe."""
    cuda = bool(probe and (probe.get("cuda") or {}).get("available")
                and not (probe.get("cuda") or {}).get("error"))
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "cuda"
    return "cuda" if cuda else "cpu"


# ----------------------------------------------------------------------------------- disk


def disk_checks(data_dir: Path, scratch_dir: Path) -> list[Check]:
    """Free space where jobs are written, and a write → fsync → rename → read-back test in
    the data folder and the scratch folder (blocking: run it on a worker thread)."""
    checks: list[Check] = []
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError as exc:
        checks.append(Check("disk_space", False,
                            f"Could not read the free space of {data_dir}: {exc.strerror or exc}",
                            "Check that the data folder exists and that you may read it "
                            "(Settings → Folders)."))
    else:
        free = format_bytes(usage.free)
        if usage.free < MIN_FREE_BYTES:
            checks.append(Check("disk_space", False,
                                f"Only {free} free on the drive of {data_dir}",
                                f"Free at least {format_bytes(MIN_FREE_BYTES)} there; training "
                                "writes checkpoints and LoRAs into the data folder."))
        elif usage.free < LOW_FREE_BYTES:
            checks.append(Check("disk_space", True,
                                f"{free} free on the drive of {data_dir}: enough for LoRAs, "
                                "tight for more base models (SDXL ~7 GB, Flux ~12–24 GB each)"))
        else:
            checks.append(Check("disk_space", True, f"{free} free on the drive of {data_dir}"))

    problems, timings = [], []
    folders = [data_dir] + ([scratch_dir] if Path(scratch_dir) != Path(data_dir) else [])
    for folder in folders:
        try:
            timings.append(f"{_write_test(Path(folder)) * 1000:.0f} ms in {folder}")
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
    if problems:
        checks.append(Check("disk_write", False, "Could not write safely to "
                            + "; ".join(problems),
                            "Check that the drive is not full, read-only or disconnected, and "
                            "that you may write to these folders."))
    else:
        checks.append(Check("disk_write", True,
                            "Wrote, synced, renamed and read back 1 MB: " + ", ".join(timings)))
    return checks


def _write_test(folder: Path, size: int = 1 << 20) -> float:
    """Seconds to write ``size`` bytes, fsync, rename and read them back (then delete)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(size)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    part = folder / f".isengard-selftest-{stamp}.part"
    final = folder / f".isengard-selftest-{stamp}.bin"
    began = time.monotonic()
    try:
        with open(part, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, final)
        if final.read_bytes() != payload:
            raise OSError(f"the file read back from {folder} differs from what was written")
        return time.monotonic() - began
    finally:
        for path in (part, final):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


# ------------------------------------------------------------------------------ the LoRA


def lora_check(path: str | None) -> Check:
    """Is the LoRA the run reported a safetensors file with kohya keys and alphas?
    (Header only; blocking.)"""
    fix = "Send the report and the test folder's stderr.log to support."
    if not path:
        return Check("lora", False, "The training run reported no LoRA file.", fix)
    try:
        header = read_safetensors_header(Path(path))
    except (OSError, HeaderError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Check("lora", False, f"The LoRA {path} cannot be read: {why}", fix)
    downs = [k for k in header if k.startswith("lora_unet_") and k.endswith(".lora_down.weight")]
    ups = [k for k in header if k.endswith(".lora_up.weight")]
    alphas = [k for k in header if k.endswith(".alpha")]
    if not downs or len(ups) != len(downs) or len(alphas) != len(downs):
        return Check("lora", False, f"The LoRA {path} does not have the kohya layout ComfyUI "
                                    f"and A1111 load ({len(downs)} down, {len(ups)} up, "
                                    f"{len(alphas)} alpha tensors)", fix)
    size = format_bytes(Path(path).stat().st_size)
    return Check("lora", True, f"{len(downs)} LoRA modules with kohya keys and alphas "
                               f"({size}): {path}")


# --------------------------------------------------------------------------------- folders


def selftest_folder_name(now: float | None = None) -> str:
    return "selftest-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def prune_old_runs(tmp_dir: Path, keep: int = KEEP_RUNS) -> list[Path]:
    """Delete all but the ``keep`` newest ``selftest-*`` folders in the app's tmp folder
    (scratch the self-test made itself); return what was removed."""
    runs = sorted((p for p in Path(tmp_dir).glob("selftest-*") if p.is_dir()),
                  key=lambda p: p.name, reverse=True)
    removed = []
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def remove_sandbox_extras(root: Path, keep: Iterable[Path]) -> None:
    """Empty a finished self-test folder except the paths in ``keep`` (the job folder with
    its LoRA and logs, the helpers' logs): the tiny model, the dataset, the sandbox database
    and the empty folders go."""
    root = Path(root)
    kept = [Path(p) for p in keep]
    if not root.is_dir():
        return

    def needed(path: Path) -> bool:
        return any(path == k or k in path.parents or path in k.parents for k in kept)

    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if needed(path):
            continue
        if path.is_dir() and not path.is_symlink():
            path.rmdir()      # its contents went first (deepest paths come first)
        else:
            path.unlink(missing_ok=True)
