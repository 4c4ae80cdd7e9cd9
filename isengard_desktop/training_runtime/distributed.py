"""Data-parallel training on several processes, through Hugging Face ``accelerate``.

The app never runs its own distributed engine: with N > 1 processes the backend starts the
trainer under ``accelerate launch`` (torch.distributed.elastic underneath), which sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and the rendezvous address in each worker's
environment. Here each worker:

* joins the process group through :class:`accelerate.Accelerator` (NCCL on CUDA GPUs, gloo
  on the CPU: ``accelerate/state.py`` ``PartialState._prepare_backend`` picks gloo when
  ``cpu=True`` and ``LOCAL_RANK`` is set);
* wraps the denoiser in ``DistributedDataParallel`` with ``Accelerator.prepare_model``, the
  frozen base weights left out of DDP's bookkeeping (only the LoRA is trained, and a
  quantized base cannot be broadcast), so gradients are averaged in ``backward``;
* agrees on "stop" and "loss is NaN" with the other ranks once per step (an ``all_reduce``
  of two flags): any rank that read ``stop`` on stdin or got SIGTERM makes every rank stop
  after the same step;
* gathers every rank's random-number state for the checkpoint, which only rank 0 writes.

Nothing here is imported by a single-process job (``WORLD_SIZE`` unset or 1): that path is
unchanged.
"""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["DataParallel", "peer_failed", "world_from_env", "rank_from_env"]


def world_from_env() -> int:
    """The number of worker processes the launcher started (1 outside a launcher)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank_from_env() -> int:
    """This worker's global rank (0 outside a launcher)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def peer_failed(exc: BaseException) -> bool:
    """Whether ``exc`` only says that another worker went away (a collective whose peer
    died: gloo's "Connection closed by peer", a torch.distributed error). That worker reports
    the real cause (an out-of-memory, say); this one's error would hide it, since the app
    keeps the last error event."""
    import torch.distributed as dist

    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("closed by peer" in text
                                              or "remote worker" in text)


class DataParallel:
    """This worker's place in a data-parallel run (see the module docstring)."""

    def __init__(self, cpu: bool, timeout_min: int = 60) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

        # Rank 0 alone samples and writes checkpoints while the others wait in the next
        # collective: the default timeout (10 min for NCCL) could run out on a big model.
        self.accelerator = Accelerator(
            cpu=cpu, mixed_precision="no",
            kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(minutes=timeout_min)),
                             DistributedDataParallelKwargs(find_unused_parameters=False)])
        self.rank = int(self.accelerator.process_index)
        self.world = int(self.accelerator.num_processes)
        self.device: torch.device = self.accelerator.device
        self.backend = str(self.accelerator.state.backend or "")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel; parameters that do not train (the frozen
        base) and buffers are left out of DDP's broadcast and gradient buckets."""
        from torch.nn.parallel import DistributedDataParallel

        ignore = [name for name, p in module.named_parameters() if not p.requires_grad]
        ignore += [name for name, _ in module.named_buffers()]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignore)
        wrapped = self.accelerator.prepare_model(module, device_placement=False)
        if not isinstance(wrapped, DistributedDataParallel):
            # without DDP every process would train its own LoRA and rank 0 would save one
            # of them: refuse rather than train wrongly
            raise RuntimeError(f"accelerate did not wrap the model for data parallel training "
                               f"(distributed type {self.accelerator.distributed_type})")
        return wrapped

    def no_sync(self, module: torch.nn.Module):
        """Context without the gradient all-reduce (micro-batches before the last of an
        accumulated step)."""
        return self.accelerator.no_sync(module)

    def agree(self, loss_sum: float, stop: bool, bad: bool) -> tuple[float, bool, bool]:
        """(mean loss over ranks, any rank asked to stop, any rank saw a non-finite loss)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(loss_sum) if not bad else 0.0, float(stop), float(bad)],
                         dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t[0]) / self.world, bool(t[1] > 0), bool(t[2] > 0)

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (on every rank)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """Leave the process group (a worker that exits without it aborts at exit)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
