"""The checkpoint comparison of a job (issue 16, item 4): rows = the steps the job saved,
columns = its sample prompts, each cell the sample image the trainer made at that step.

Built from the job's ``events.jsonl`` (what every backend reports through the protocol), never
from a folder scan:

* ``sample`` events give the cells (a prompt's column is where it first appeared);
* ``checkpoint`` events give each row's LoRA: an external trainer reports the LoRA file it
  saved (ai-toolkit ``<name>_<step>.safetensors``, sd-scripts ``<name>-step<N>.safetensors``);
  the built-in trainer reports its checkpoint folder, which holds ``lora.safetensors``;
* ``done`` / ``stopped`` give the LoRA of the last step;
* ``jobs/<id>/compare_events.jsonl`` holds the samples "fill the gaps" rendered later for
  steps that had none (the built-in trainer's ``sample`` command), read like the job's own.

A row whose LoRA was pruned (the trainer keeps the newest few checkpoints) still shows its
samples but cannot be chosen. Scores (the identity score of each cell's face against the
character's photos) are added by :func:`with_scores`; the recommended row is the chosen-able
row with the best mean score.

Pure: reads files only in :func:`build_grid` (``exists`` checks), no Qt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .protocol import CheckpointEvent, DoneEvent, Event, SampleEvent, StoppedEvent

__all__ = ["CHECKPOINT_LORA_FILE", "COMPARE_EVENTS", "CheckpointGrid", "GridRow", "build_grid",
           "with_scores"]

# the LoRA file inside a built-in checkpoint folder (training_runtime.loop writes it)
CHECKPOINT_LORA_FILE = "lora.safetensors"
# the sample events "fill the gaps" rendered (in the job folder, beside events.jsonl)
COMPARE_EVENTS = "compare_events.jsonl"


@dataclass(frozen=True)
class GridRow:
    """One saved step: its sample images per prompt column (None: none at that step), the
    LoRA of its weights when it is still on disk, and the cells' identity scores."""

    step: int
    cells: tuple[Path | None, ...]
    lora: Path | None = None
    scores: tuple[float | None, ...] = ()

    @property
    def can_use(self) -> bool:
        return self.lora is not None

    @property
    def score(self) -> float | None:
        """Mean identity score of the row's scored cells (None: none scored)."""
        known = [s for s in self.scores if s is not None and math.isfinite(s)]
        return sum(known) / len(known) if known else None


@dataclass(frozen=True)
class CheckpointGrid:
    prompts: tuple[str, ...]
    rows: tuple[GridRow, ...] = ()          # oldest step first
    missing: tuple[str, ...] = field(default=())   # plain words: what could not be shown

    @property
    def gaps(self) -> list[int]:
        """Steps whose LoRA is still there but that lack a sample picture (what "fill the
        gaps" renders)."""
        return [r.step for r in self.rows if r.can_use and any(c is None for c in r.cells)]

    @property
    def recommended(self) -> GridRow | None:
        """The usable row with the best score (ties: the later step); None without scores."""
        scored = [r for r in self.rows if r.can_use and r.score is not None]
        if not scored:
            return None
        return max(scored, key=lambda r: (r.score, r.step))

    def row(self, step: int) -> GridRow | None:
        return next((r for r in self.rows if r.step == step), None)

    def images(self) -> list[Path]:
        """Every cell image, row by row (what a scorer is given)."""
        return [c for r in self.rows for c in r.cells if c is not None]


def _lora_of(path: str) -> Path | None:
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        return p
    if path:
        return p / CHECKPOINT_LORA_FILE
    return None


def build_grid(events: Iterable[Event], *, exists: Callable[[Path], bool] | None = None,
               prompts: Iterable[str] = ()) -> CheckpointGrid:
    """The grid of a job from its protocol events. ``exists`` (default ``Path.is_file``)
    decides whether a LoRA or sample file is still there; ``prompts``: the job's sample
    prompts as the trainer writes them (trigger included), columns even before any sample."""
    is_file = exists or (lambda p: p.is_file())
    prompts = list(dict.fromkeys(p for p in prompts if p.strip()))
    samples: dict[int, dict[int, Path]] = {}
    loras: dict[int, Path] = {}
    for event in events:
        if isinstance(event, SampleEvent):
            if event.prompt not in prompts:
                prompts.append(event.prompt)
            samples.setdefault(event.step, {})[prompts.index(event.prompt)] = Path(event.path)
        elif isinstance(event, CheckpointEvent):
            lora = _lora_of(event.path)
            if lora is not None:
                loras[event.step] = lora
        elif isinstance(event, DoneEvent) and event.lora:
            loras[event.steps] = Path(event.lora)
        elif isinstance(event, StoppedEvent) and event.lora:
            loras[event.lora_step or event.step] = Path(event.lora)
    missing: list[str] = []
    rows = []
    for step in sorted(set(samples) | set(loras)):
        cells = []
        for column in range(len(prompts)):
            path = samples.get(step, {}).get(column)
            cells.append(path if path is not None and is_file(path) else None)
        lora = loras.get(step)
        if lora is not None and not is_file(lora):
            lora = None
        if lora is None and step in loras:
            missing.append(f"step {step}: its LoRA was removed (only the newest checkpoints "
                           f"are kept)")
        rows.append(GridRow(step, tuple(cells), lora, tuple(None for _ in cells)))
    if not prompts:
        missing.append("The job has no sample prompts: set sample prompts in the training "
                       "settings to compare checkpoints by picture.")
    return CheckpointGrid(tuple(prompts), tuple(rows), tuple(missing))


def with_scores(grid: CheckpointGrid, scores: Mapping[Path, float | None]) -> CheckpointGrid:
    """The grid with each cell's identity score from ``scores`` (by image path; absent or
    None: no face found / not scored)."""
    rows = tuple(replace(r, scores=tuple(scores.get(c) if c is not None else None
                                         for c in r.cells)) for r in grid.rows)
    return replace(grid, rows=rows)


def row_labels(rows: Sequence[GridRow], total: int) -> list[str]:
    """"Step 250 of 1000" per row (``total`` 0: no "of")."""
    return [f"Step {r.step}" + (f" of {total}" if total else "") for r in rows]
