"""The built-in trainer's child process.

    python -m isengard_desktop.training_runtime train --job <jobs/ID/job.json> \
        --job-dir <jobs/ID> [--resume]

stdout carries only protocol events (one JSON object per line, see
``core/training/protocol.py``); everything else goes to stderr. The first event
(phase ``loading_model``) is sent before the ML libraries are imported, which takes seconds.

Stop & save: a line ``stop`` (or ``{"cmd":"stop"}``) on stdin, or SIGTERM/SIGINT (Windows:
CTRL_BREAK) → the current step finishes, a checkpoint is saved, ``checkpoint`` and ``stopped``
events follow and the process exits 0. A second signal, or a signal after a ``stop`` on
stdin, ends the process at once.

Exit status: 0 done or stopped; 2 bad job spec; 1 any other error (after an ``error`` event).

Several processes: started by ``accelerate launch`` (``RANK``/``WORLD_SIZE`` in the
environment, see ``distributed.py``), every worker runs this; only rank 0 writes events
(the others write only an ``error`` event when they fail, so a failure on another GPU is
explained; not an error that only says another worker went away, which would hide that
worker's own). Each worker watches stdin (inherited from the launcher: whichever reads ``stop``
tells the others at the end of the step) and SIGTERM (the launcher forwards its own SIGTERM
to every worker, ``torch/distributed/elastic/multiprocessing/api.py`` ``_close``).

The self-test's helpers (``probe``, ``make-selftest-model <folder>``) live in
``probe_tools.py``; each prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .events import Emitter

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "DIFFUSERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m isengard_desktop.training_runtime",
        description="Isengard Desktop's built-in LoRA trainer (SD1.5, SDXL, Flux, Chroma). "
                    "Writes JSON events to stdout and logs to stderr.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the LoRA described by a job spec")
    train.add_argument("--job", required=True, type=Path, help="the job spec (job.json)")
    train.add_argument("--job-dir", required=True, type=Path,
                       help="the job folder (samples/, checkpoints/, the final LoRA)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint that verifies")
    render = sub.add_parser("sample", help="make the sample pictures of saved checkpoints "
                                           "(the checkpoint comparison's \"fill the gaps\")")
    render.add_argument("--job", required=True, type=Path, help="the job spec (job.json)")
    render.add_argument("--job-dir", required=True, type=Path, help="the job folder")
    render.add_argument("--steps", required=True,
                        help="the checkpoints' steps, comma-separated (e.g. 250,500)")
    sub.add_parser("probe", help="print Python, PyTorch, CUDA and library versions as JSON")
    model = sub.add_parser("make-selftest-model",
                           help="write the self-test's tiny random model and dataset")
    model.add_argument("folder", type=Path, help="where to write model/ and dataset/")
    return parser


class StopRequest(threading.Event):
    """Set by a ``stop`` line on stdin or by the first SIGTERM/SIGINT."""

    def watch_stdin(self) -> None:
        def reader() -> None:
            try:
                for line in sys.stdin:
                    text = line.strip()
                    cmd = text.lower()
                    if text.startswith("{"):
                        try:
                            cmd = str(json.loads(text).get("cmd", "")).lower()
                        except (ValueError, AttributeError):
                            cmd = ""
                    if cmd == "stop":
                        print("[trainer] stop requested on stdin", file=sys.stderr, flush=True)
                        self.set()
            except (OSError, ValueError):
                pass  # stdin closed or not readable: no commands

        if sys.stdin is not None:
            threading.Thread(target=reader, name="stdin-commands", daemon=True).start()

    def install_signals(self) -> None:
        names = ["SIGTERM", "SIGINT", "SIGBREAK"]

        def handler(signum, _frame) -> None:
            if self.is_set():
                # A stop was already asked (on stdin): the app's stop ladder sends SIGTERM
                # when its grace ran out, so this signal means "now". Taking it as a first
                # request (finish the step, save) kept a CPU job alive until SIGKILL, 15 s
                # after a quit, with no checkpoint (issue 11, item 13).
                print(f"[trainer] signal {signum} after a stop request: quitting now",
                      file=sys.stderr, flush=True)
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
                return
            print(f"[trainer] signal {signum}: stopping after this step (send it again to "
                  f"quit at once)", file=sys.stderr, flush=True)
            self.set()
            for name in names:  # a second signal acts immediately
                sig = getattr(signal, name, None)
                if sig is not None:
                    signal.signal(sig, signal.SIG_DFL)

        for name in names:
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, handler)


def _preflight(args: argparse.Namespace):
    """Read and check the job before the heavy imports (fast errors)."""
    from ..core.training.spec import TrainingJob
    from .errors import ConfigError, ModelMissingError

    try:
        text = Path(args.job).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"job: cannot read the job spec {args.job}: "
                          f"{exc.strerror or exc}") from exc
    job = TrainingJob.from_json(text)
    job.validate()
    base = Path(job.base_model)
    if not job.base_model.strip() or not base.exists():
        raise ModelMissingError(f"The base model {job.base_model!r} does not exist. Choose the "
                                f"model again in the Training tab (a diffusers folder or a "
                                f".safetensors checkpoint).")
    from ..core.training.dataset_list import read_dataset_list
    from ..core.training.spec import SpecError

    try:
        read_dataset_list(args.job_dir)   # the job's photo list (never a folder scan)
    except SpecError as exc:
        raise ConfigError(str(exc)) from exc
    Path(args.job_dir).mkdir(parents=True, exist_ok=True)
    return job


def train(args: argparse.Namespace) -> int:
    from .distributed import rank_from_env, world_from_env
    from .errors import classify, exit_code
    from .events import Emitter, claim_stdout

    errors = emitter = claim_stdout()
    world = world_from_env()
    if rank_from_env() > 0:      # events come from rank 0 alone (errors from any rank)
        emitter = Emitter(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - process-long
    stop = _begin(emitter)
    job = None
    dp = None
    try:
        job = _preflight(args)
        emitter.phase("loading_model", 0, 0, "loading libraries")
        from .loop import run

        if world > 1:
            dp = _data_parallel(job)
        return run(job, args.job_dir, emitter, stop, resume=args.resume, dp=dp)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
        if isinstance(exc, SystemExit):
            raise
        traceback.print_exc(file=sys.stderr)
        event = classify(exc, job)
        if dp is not None and event.kind == "crash" and _peer_failed(exc):
            print("[trainer] another training process failed first; its error is the one "
                  "reported", file=sys.stderr, flush=True)
        else:
            errors.emit(event)
        return exit_code(event)
    finally:
        if dp is not None:
            dp.close()


def _begin(emitter: Emitter) -> StopRequest:
    """What every trainer command does first: say it started, go offline, log to stderr,
    and listen for a stop (signals and "stop" on stdin)."""
    from .events import setup_stderr_logging

    emitter.phase("loading_model", 0, 0, "starting")
    os.environ.update(OFFLINE_ENV)
    setup_stderr_logging()
    stop = StopRequest()
    stop.install_signals()
    stop.watch_stdin()
    return stop


def sample(args: argparse.Namespace) -> int:
    """Sample pictures of saved checkpoints (``--steps``), with the job's prompts and seeds,
    as ``sample`` events; the checkpoints and the job are left as they are."""
    from .errors import ConfigError, classify, exit_code
    from .events import claim_stdout

    emitter = claim_stdout()
    stop = _begin(emitter)
    job = None
    try:
        job = _preflight(args)
        try:
            steps = sorted({int(s) for s in str(args.steps).split(",") if s.strip()})
        except ValueError:
            raise ConfigError(f"--steps: {args.steps!r} is not a list of step numbers") from None
        if not steps or min(steps) < 1:
            raise ConfigError(f"--steps: give the saved steps to sample (got {args.steps!r})")
        from .loop import render_samples

        return render_samples(job, args.job_dir, emitter, stop, steps)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
        if isinstance(exc, SystemExit):
            raise
        traceback.print_exc(file=sys.stderr)
        event = classify(exc, job)
        emitter.emit(event)
        return exit_code(event)


def _peer_failed(exc: BaseException) -> bool:
    from .distributed import peer_failed

    return peer_failed(exc)


def _data_parallel(job):
    """This worker's :class:`~.distributed.DataParallel` (gloo on the CPU, NCCL on GPUs)."""
    import torch

    from .distributed import DataParallel

    cpu = job.device == "cpu" or not torch.cuda.is_available()
    return DataParallel(cpu=cpu)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return train(args)
    if args.command == "sample":
        return sample(args)
    if args.command in ("probe", "make-selftest-model"):
        os.environ.update(OFFLINE_ENV)
        from .probe_tools import main as run_tool

        return run_tool(args.command, getattr(args, "folder", None))
    return 2


if __name__ == "__main__":
    sys.exit(main())
