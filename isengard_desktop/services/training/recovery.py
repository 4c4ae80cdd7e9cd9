"""Out-of-memory recovery of a training job (Qt-free): the record of a job that resumes one
memory tier lower, or the record of one that fails after the last try.

The policy (which settings a tier lowers) is :mod:`...core.training.oom`; here it meets the
job's backend (which 8-bit precisions it can load, how many blocks it can swap) and the
job's record (the notes, at most :data:`~...core.training.oom.MAX_RECOVERIES`). The training
service calls :func:`plan_recovery` when a run ends failed with an ``oom`` error, then either
queues :func:`recovered_record` (after writing its spec to ``job.json``) or finalizes
:func:`gave_up_record`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from loguru import logger

from ...core.training.oom import MAX_RECOVERIES, OomTier, give_up_message, next_tier
from ...plugins.registry import TrainerRegistry
from .launch import usable_backend
from .records import JobRecord, JobState

__all__ = ["gave_up_record", "plan_recovery", "recovered_record"]


def _backend_limits(registry: TrainerRegistry, record: JobRecord) -> tuple[list[str],
                                                                           tuple[int, int] | None]:
    """(the base-model precisions the backend loads, (blocks swapped now, most) or None)."""
    backend, _why = usable_backend(registry, record.backend)
    if backend is None:
        return [], None
    try:
        quantize = [str(q) for q in (backend.capabilities() or {}).get("quantize_base", [])]
    except Exception as exc:   # a backend's own bug must not hide the OOM
        logger.warning("job {}: capabilities of {} failed: {}", record.job_id, record.backend,
                       exc)
        quantize = []
    swap: Any = getattr(backend, "block_swap", None)
    blocks = None
    if callable(swap):
        try:
            blocks = swap(record.spec)
        except Exception as exc:
            logger.warning("job {}: block swap of {} unknown: {}", record.job_id,
                           record.backend, exc)
    return quantize, blocks


def plan_recovery(registry: TrainerRegistry, record: JobRecord,
                  max_recoveries: int = MAX_RECOVERIES) -> OomTier | None:
    """The next memory tier for ``record``'s job, or None when it has been recovered
    ``max_recoveries`` times already or nothing is left to lower."""
    if record.oom_recoveries >= max_recoveries:
        return None
    quantize, blocks = _backend_limits(registry, record)
    return next_tier(record.spec, quantize, blocks)


def recovered_record(record: JobRecord, tier: OomTier, step: int) -> JobRecord:
    """``record`` queued again with the lower tier's settings and the recovery's note."""
    return replace(record, state=JobState.QUEUED, finished=None, pid=None, error_kind=None,
                   error_message=None, lora_path=None, spec=tier.job,
                   oom_notes=(*record.oom_notes, tier.note(step)))


def gave_up_record(record: JobRecord, step: int, max_recoveries: int = MAX_RECOVERIES,
                   ) -> JobRecord:
    """``record`` failed for good: the message says what was tried and what to do."""
    nothing_left = record.oom_recoveries < max_recoveries
    message = give_up_message(step, record.oom_notes, record.error_message or "",
                              nothing_left=nothing_left)
    return replace(record, state=JobState.FAILED, error_kind="oom", error_message=message)
