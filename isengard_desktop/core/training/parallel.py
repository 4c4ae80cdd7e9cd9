"""Training on several GPUs: the job's choice and the launchers' command lines (Qt-free,
torch-free).

The app never distributes work itself: each backend hands the job to its tool's own engine —
``accelerate launch`` (data parallel, torch.distributed underneath) for the built-in trainer
and sd-scripts, DeepSpeed's ``deepspeed`` launcher for diffusion-pipe (data and pipeline
parallel). This module reads what the job asks for and builds those launchers' options:

* ``job.extra["num_processes"]``: how many GPUs (processes) to train on; default 1, or the
  number of ``gpu_ids``;
* ``job.extra["gpu_ids"]``: which GPUs (``"0,1"`` or ``[0, 1]``); default: the first N.

Per-GPU batch = ``job.batch_size``; effective batch = batch × data-parallel processes ×
gradient accumulation (:func:`effective_batch`).
"""

from __future__ import annotations

import socket

from .spec import SpecError, TrainingJob

__all__ = ["accelerate_config_text", "accelerate_launch_args", "deepspeed_launch_args",
           "effective_batch", "free_port", "gpu_ids", "job_gpu_indices", "num_processes"]


def gpu_ids(job: TrainingJob) -> list[str]:
    """``extra["gpu_ids"]`` as device numbers (``"0,1"`` or ``[0, 1]``); [] when unset.
    SpecError naming the field when it is not a list of distinct whole numbers."""
    raw = job.extra.get("gpu_ids")
    if raw is None or raw == "" or raw == []:
        return []
    if isinstance(raw, str):
        parts: list[object] = list(raw.split(","))
    elif isinstance(raw, list):
        parts = list(raw)
    else:
        parts = []
    ids = [str(p).strip() for p in parts if not isinstance(p, bool)]
    if not ids or len(ids) != len(parts) or not all(i.isdigit() for i in ids) \
            or len(set(ids)) != len(ids):
        raise SpecError(f"extra.gpu_ids: must list distinct GPU numbers like \"0,1\" "
                        f"(got {raw!r})")
    return ids


def num_processes(job: TrainingJob) -> int:
    """How many GPUs (one process each) ``job`` trains on: ``extra["num_processes"]``, else
    the number of ``gpu_ids``, else 1. SpecError naming the field when it is not a whole
    number ≥ 1 or disagrees with ``gpu_ids``."""
    ids = gpu_ids(job)
    raw = job.extra.get("num_processes")
    if raw is None:
        return max(1, len(ids))
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise SpecError(f"extra.num_processes: must be a whole number of at least 1 "
                        f"(got {raw!r})")
    if ids and len(ids) != raw:
        raise SpecError(f"extra.gpu_ids: names {len(ids)} GPU(s) ({','.join(ids)}) but "
                        f"num_processes is {raw}")
    return raw


def job_gpu_indices(job: TrainingJob) -> tuple[int, ...] | None:
    """The GPUs ``job`` trains on (device numbers): its ``gpu_ids``, else the first
    ``num_processes`` (what the launchers pick when none are named; one process uses device
    0). None when its ``extra`` cannot be read (the resource monitor then shows every GPU).
    These are CUDA's device numbers; the resource monitor maps them to NVML's only where the
    two orders agree (``core.hardware.monitor.cuda_numbers_are_nvml``)."""
    try:
        ids = gpu_ids(job)
        count = num_processes(job)
    except SpecError:
        return None
    return tuple(int(i) for i in ids) if ids else tuple(range(count))


def effective_batch(batch: int, processes: int, grad_accum: int = 1,
                    pipeline_stages: int = 1) -> int:
    """Images per optimizer step: each data-parallel replica (``processes`` /
    ``pipeline_stages`` of them) trains ``batch`` images ``grad_accum`` times."""
    replicas = max(1, processes // max(1, pipeline_stages))
    return batch * replicas * max(1, grad_accum)


def free_port() -> int:
    """A TCP port free on this machine now, for the workers' rendezvous (the launchers'
    default, 29500, collides with a second job or another program using it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accelerate_launch_args(n: int, ids: list[str], port: int, mixed_precision: str = "no",
                           config_file: str | None = None) -> list[str]:
    """Options of ``accelerate launch`` (accelerate 1.15, ``commands/launch.py``
    ``launch_command_parser``) for ``n`` local workers, before the script.

    ``--multi_gpu`` is the torchrun launcher even on a CPU-only machine (its workers then
    join with gloo); ``--cpu`` would run a single process unless MPI is set up
    (``launch_command`` sends it to ``simple_launcher``). Every value accelerate would
    otherwise take from the user's own ``accelerate config`` (or default, with a warning)
    is given; ``config_file`` (a job-local one) keeps the user's file out entirely."""
    if n < 2:
        raise ValueError("accelerate launch is for 2 or more processes")
    args = ["--config_file", config_file] if config_file else []
    args += ["--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
             "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
             "--main_process_port", str(port)]
    if ids:
        args += ["--gpu_ids", ",".join(ids)]
    return args


def accelerate_config_text(n: int, ids: list[str], mixed_precision: str) -> str:
    """A job-local accelerate config (YAML) for ``n`` GPUs on this machine, so that
    ``accelerate launch`` never reads the user's default one (keys of accelerate's
    ``ClusterConfig``)."""
    lines = ["# written by Isengard Desktop: accelerate launch reads this instead of the",
             "# user's default config",
             "compute_environment: LOCAL_MACHINE", "distributed_type: MULTI_GPU",
             f"num_processes: {n}", "num_machines: 1", "machine_rank: 0",
             f"mixed_precision: {mixed_precision}", "use_cpu: false",
             f"gpu_ids: {','.join(ids) if ids else 'all'}", "main_training_function: main"]
    return "\n".join(lines) + "\n"


def deepspeed_launch_args(n: int, ids: list[str], port: int | None = None) -> list[str]:
    """Options of DeepSpeed's launcher (``deepspeed/launcher/runner.py``) for ``n`` local
    GPUs: ``--num_gpus=N``, or ``--include localhost:<ids>`` when GPUs are named (the
    runner refuses both together: "Cannot specify num_nodes/gpus with include/exclude");
    ``--master_port`` for a rendezvous port other than 29500."""
    args = [f"--include=localhost:{','.join(ids)}"] if ids else [f"--num_gpus={n}"]
    if port is not None:
        args.append(f"--master_port={port}")
    return args
