"""A stand-in trainer for runner tests: plain Python (stdlib only), speaks protocol v1.

    python fake_trainer.py --job JOB.json --job-dir DIR --steps N [--delay S] [--resume]
        [--fail-at K] [--crash-at K] [--ignore-stop] [--spawn-grandchild]
        [--checkpoint-every K] [--echo-env NAME] [--output NAME]

* stdout carries protocol JSON lines only; stderr gets tqdm-like ``\\r`` redraws with ANSI
  colour codes, a warning, and (on crash) a traceback.
* Stop: a line ``stop`` on stdin or SIGTERM → save a checkpoint, emit ``checkpoint`` and
  ``stopped``, exit 0. ``--ignore-stop`` ignores both (for terminate/kill escalation tests).
* ``--fail-at K``: an ``error`` event (kind ``oom``) at step K, exit 1, in every run.
  ``--oom-at K --oom-above PX``: the same, but only while the job spec (re-read at each
  start) asks for more than PX pixels or a batch above 1, as a GPU that fits the lower
  settings would. ``--crash-at K``: exit 3 at step K
  with a traceback on stderr and no error event.
* ``--spawn-grandchild``: starts a sleeping grandchild in the same process group and writes
  its pid to ``<job-dir>/grandchild.pid``.
* Checkpoints: ``<job-dir>/checkpoints/checkpoint-<step>/`` with ``lora.safetensors``,
  ``state.json`` and ``adapter.bin`` plus ``manifest.json`` (written last; format in
  ``isengard_desktop/core/training/checkpoints.py``). ``--resume`` continues from the newest
  checkpoint whose manifest verifies.
* ``--echo-env NAME``: prints the value of ``NAME`` on stderr, as a careless library would
  (the runner must redact it from the logs).
* The end: ``<job-dir>/<output>.safetensors`` (a small fake file) and a ``done`` event.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

stop_requested = threading.Event()


def emit(event: str, **fields) -> None:
    payload = {"v": 1, "event": event, **fields}
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(job_dir: Path, step: int, loss: float) -> Path:
    folder = job_dir / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "state.json", json.dumps({"step": step, "loss": loss}).encode())
    write_atomic(folder / "adapter.bin", os.urandom(256) + step.to_bytes(8, "little"))
    # the LoRA of the checkpoint's weights, as the built-in trainer keeps in each checkpoint
    meta = json.dumps({"__metadata__": {"ss_steps": str(step)}}).encode()
    write_atomic(folder / "lora.safetensors", len(meta).to_bytes(8, "little") + meta)
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
             for name in ("state.json", "adapter.bin", "lora.safetensors")}
    write_atomic(folder / "manifest.json",
                 json.dumps({"version": 1, "step": step, "files": files}).encode())
    return folder


def newest_checkpoint(job_dir: Path) -> tuple[int, float] | None:
    found = []
    for entry in (job_dir / "checkpoints").glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    for step, folder in sorted(found, reverse=True):
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            if all(sha256(folder / n) == m["sha256"] for n, m in manifest["files"].items()):
                state = json.loads((folder / "state.json").read_text())
                return step, float(state["loss"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def watch_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            stop_requested.set()
            return


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True)
    ap.add_argument("--job-dir", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--fail-at", type=int, default=0)
    ap.add_argument("--crash-at", type=int, default=0)
    ap.add_argument("--oom-at", type=int, default=0)       # with --oom-above: see docstring
    ap.add_argument("--oom-above", type=int, default=0)
    ap.add_argument("--ignore-stop", action="store_true")
    ap.add_argument("--spawn-grandchild", action="store_true")
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--echo-env", default="")
    ap.add_argument("--output", default="fake_lora")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--print-line", default="")   # one extra stdout line, printed as is
    # the job's GPUs (core/training/parallel.py reads them for the launchers and the resource
    # monitor); the fake trains on no GPU, so it takes them and does nothing with them
    ap.add_argument("--gpu-ids", default="")
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--crash-echo-env", default="")  # the crash's traceback quotes this variable
    ap.add_argument("--split-env", default="")  # a >64 KiB line with this variable's value
    # split across two writes (both streams), before the first step
    args = ap.parse_args()
    job_dir = Path(args.job_dir)
    spec = json.loads(Path(args.job).read_text(encoding="utf-8"))

    if args.ignore_stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        # as the built-in trainer (training_runtime/__main__.py, StopRequest.install_signals):
        # the first SIGTERM asks for a stop; one after a stop request ends the process now
        def on_term(signum: int, _frame: object) -> None:
            if stop_requested.is_set():
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            stop_requested.set()

        signal.signal(signal.SIGTERM, on_term)
        threading.Thread(target=watch_stdin, daemon=True).start()
    if args.spawn_grandchild:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (job_dir / "grandchild.pid").write_text(str(child.pid))
    if args.echo_env:
        err(f"careless library says {os.environ.get(args.echo_env, '')}\n")

    if args.split_env:
        value = os.environ.get(args.split_env, "")
        half = len(value) // 2
        for stream in (sys.stdout, sys.stderr):
            stream.write("x" * 65530 + " value " + value[:half])
            stream.flush()
        time.sleep(0.5)
        for stream in (sys.stdout, sys.stderr):
            stream.write(value[half:] + " end\n")
            stream.flush()
    if args.print_line:
        sys.stdout.write(args.print_line + "\n")
        sys.stdout.flush()
    emit("phase", phase="loading_model", done=0, total=1)
    err("Loading fake model for job " + spec["job_id"] + "\n")
    for i in range(1, 4):
        err(f"\r\x1b[32mLoading:\x1b[0m {i * 33}%|{'#' * i}{' ' * (3 - i)}| {i}/3")
    err("\n/fake/lib.py:1: UserWarning: this is a fake warning\n")
    emit("phase", phase="training", done=0, total=args.steps)

    start, loss = 0, 1.0
    if args.resume:
        found = newest_checkpoint(job_dir)
        if found:
            start, loss = found
            emit("log", level="info", message=f"resuming from step {start}")
    emit("log", level="info", message="HF_TOKEN present: "
         + ("yes" if os.environ.get("HF_TOKEN") else "no"))

    step = start
    while step < args.steps:
        if stop_requested.is_set():
            folder = save_checkpoint(job_dir, step, loss)
            emit("checkpoint", step=step, path=str(folder), resumable=True)
            lora = job_dir / f"{args.output}-step{step}.safetensors"   # as the built-in one
            write_atomic(lora, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
            emit("stopped", step=step, checkpoint=str(folder), lora=str(lora))
            return 0
        step += 1
        if args.delay:
            time.sleep(args.delay)
        loss *= 0.97
        if args.crash_at and step == args.crash_at:
            err("Traceback (most recent call last):\n  File \"fake_trainer.py\", line 1\n"
                "RuntimeError: simulated crash\n")
            if args.crash_echo_env:
                err(f"wandb.errors.AuthError: {os.environ.get(args.crash_echo_env, '')} "
                    "was rejected\n")
            return 3
        if args.oom_at and step == args.oom_at and (
                int(spec.get("resolution", 0)) > args.oom_above
                or int(spec.get("batch_size", 1)) > 1):
            emit("error", kind="oom", message=f"CUDA out of memory at step {step} "
                 f"({spec.get('resolution')} px, batch {spec.get('batch_size')}).")
            return 1
        if args.fail_at and step == args.fail_at:
            emit("error", kind="oom", message=f"Out of memory at step {step}: lower the "
                 "batch size.")
            return 1
        emit("step", step=step, total=args.steps, loss=round(loss, 6), lr=1e-4,
             sec_per_step=max(args.delay, 0.001), eta_sec=(args.steps - step) * args.delay)
        if step % 10 == 0:
            err(f"\rsteps: {step}/{args.steps} \x1b[1mloss={loss:.4f}\x1b[0m")
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps:
            folder = save_checkpoint(job_dir, step, loss)
            emit("checkpoint", step=step, path=str(folder), resumable=True)

    emit("phase", phase="saving", done=0, total=1)
    lora = job_dir / f"{args.output}.safetensors"
    write_atomic(lora, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    err("\n")
    emit("done", lora=str(lora), steps=step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
