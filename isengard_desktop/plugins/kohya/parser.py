"""The line parser of the kohya sd-scripts backend (``plugins/kohya/backend.py``). Qt-free.

sd-scripts output → protocol events:

* ``  total optimization steps / 学習ステップ数: N`` → the total; ``skipping N steps`` (resume
  with ``--skip_until_initial_step``) → the offset of the ``steps`` bar, which then counts the
  remaining steps (without that line: announced total − bar total);
* ``steps:  12%|█▏ | 441/3680 [15:02<1:50:30,  2.05s/it, avr_loss=0.312]`` (stderr, ``\r``
  redraws) → step events (loss = ``avr_loss``, lr = the configured one: the bar has none);
* ``saving checkpoint: <path>`` + ``saving state at step N`` → a checkpoint once complete
  (a later step, an epoch line, another save, the end, or a stop) and, when the accelerate
  state folder holds its RNG file (written last), a resumable checkpoint pointer;
  ``removing old state: <path>`` drops that pointer;
* ``model saved.`` → done with ``<output_dir>/<name>.safetensors``;
* ``<output_dir>/sample/<name>_<step:06d>_<i:02d>_<time>[_seed].png`` → sample events;
* loading / caching / sampling lines (plain on stdout with ``--console_log_simple``, rich with
  ANSI on stderr before that) → phase events; errors through the base class.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...core.training.protocol import (
    CheckpointEvent,
    DoneEvent,
    Event,
    LogEvent,
    SampleEvent,
)
from ..external.parsing import ExternalParser, TqdmFrame, parse_postfix, parse_tqdm
from ..external.files import OutputScanner
from ...core.console_text import Stream

__all__ = ["KohyaParser"]

KEY = "kohya"
_TOTAL = re.compile(r"total optimization steps[^:]*:\s*(?P<n>\d+)")
_SKIPPING = re.compile(r"skipping (?P<n>\d+) steps")
_BATCHES = re.compile(r"num batches per epoch[^:]*:\s*(?P<n>\d+)")
# train_network.py:1258-1273: each skipped epoch takes its batches off the step counter that
# names the saves, so names after a resume repeat earlier step numbers.
_SKIP_EPOCH = re.compile(r"skipping epoch \d+ because initial_step")
_TRAIN_STATE = re.compile(r"load train state from .*['\"]current_step['\"]:\s*(?P<n>\d+)")
_RESUME = re.compile(r"resume training from local state:\s*(?P<path>.+)$")
_SAVING = re.compile(r"saving checkpoint:\s*(?P<path>.+\.safetensors)\s*$")
_STATE = re.compile(r"saving state at step (?P<n>\d+)")
_REMOVING = re.compile(r"removing old (?:checkpoint|state):\s*(?P<path>.+?)\s*$")
_STEP_NAME = re.compile(r"-step(?P<n>\d{8})(?:-state)?(?:\.safetensors)?$")
_SAVED = re.compile(r"\bmodel saved\.")
_SAMPLING = re.compile(r"generating sample images")
_EPOCH = re.compile(r"^epoch (?P<e>\d+)/(?P<n>\d+)$")
_PHASES = (
    (re.compile(r"(?i)caching (latents|text encoder)|cache (latents|text encoder)"), "caching"),
    (re.compile(r"(?i)\b(building|loading|load)\b.*\b(model|state dict|checkpoint|vae|"
                r"encoder|clip|t5|ae|flux|unet)\b|prepare tokenizer"), "loading_model"),
)


def _state_complete(state: str) -> bool:
    """An accelerate state folder is complete when its RNG state, written last, is there."""
    return bool(state) and Path(state).is_dir() and any(Path(state).glob("random_states_*.pkl"))


def _step_of(path: str) -> int | None:
    match = _STEP_NAME.search(path.strip().rstrip("/\\"))
    return int(match.group("n")) if match else None


class KohyaParser(ExternalParser):
    """sd-scripts output → protocol events (see the module docstring)."""

    tool = KEY

    def __init__(self) -> None:
        super().__init__()
        self._announced = 0
        self._offset: int | None = None
        self._pending: dict[str, Any] | None = None
        self._samples: OutputScanner | None = None
        self._sampling_now = False
        self._done = False
        self._in_caching = False
        self._final = ""
        self._batches = 0
        self._name_shift = 0   # real step - the step in sd-scripts' save names (resume)

    def on_line(self, stream: Stream, line: str, redraw: bool, out: list[Event]) -> None:
        if self._samples is None and self.context.get("output_dir"):
            name = re.escape(str(self.context.get("name", "")))
            self._samples = OutputScanner(
                Path(self.context["output_dir"]) / "sample",
                re.compile(name + r"_(?:e\d+|(?P<step>\d+))_(?P<index>\d+)_\d{14}(?:_\d+)?"
                                  r"\.(?:png|jpg|webp)"))
            self._samples.prime()
        text = line.strip()
        frame = parse_tqdm(text)
        if frame is not None:
            self._on_bar(frame, out)
            return
        if self._done:
            return
        for pattern, handler in self._handlers:
            match = pattern.search(text)
            if match:
                handler(self, match, text, out)
                return
        for pattern, phase in _PHASES:
            if pattern.search(text):
                self._in_caching = phase == "caching"
                self.phase(phase, out, detail=text[:200])
                return

    # -- line handlers ---------------------------------------------------------------------
    def _total(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._announced = int(match.group("n"))
        self.total = self._announced

    def _skipping(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._offset = int(match.group("n"))
        self.step = self._offset
        out.append(LogEvent("info", f"sd-scripts resumes at step {self._offset}"))

    def _batches_line(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._batches = int(match.group("n"))

    def _skip_epoch(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._name_shift += self._batches

    def _real_step(self, named: int | None) -> int | None:
        return None if named is None else named + self._name_shift

    def _train_state(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self.step = int(match.group("n"))

    def _resume(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        out.append(LogEvent("info", f"sd-scripts resumes from {match.group('path').strip()}"))

    def _saving(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._commit_pending(out)
        path = match.group("path").strip()
        self._pending = {"step": self._real_step(_step_of(path)), "lora": path, "state": ""}
        self.phase("saving", out, detail=Path(path).name)

    def _state(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        named = int(match.group("n"))
        step = named + self._name_shift
        root, name = self.context.get("output_dir", ""), self.context.get("name", "")
        state = str(Path(root) / f"{name}-step{named:08d}-state") if root else ""
        if self._pending is None or self._pending.get("step") != step:
            self._pending = {"step": step, "lora": "", "state": state}
        else:
            self._pending["state"] = state

    def _removing(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        path = match.group("path").rstrip("/\\")
        if _step_of(path) is not None and path.endswith("-state"):
            self.forget_pointers_to(path)   # by the folder it names, not the name's step

    def _saved(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._commit_pending(out)  # a step save just before the end
        final = self._final
        self._scan_samples(out, force=True)
        self._done = True
        out.append(DoneEvent(final or str(Path(self.context.get("output_dir", "."))
                                          / f"{self.context.get('name', '')}.safetensors"),
                             self.planned_steps or self._announced or self.step))

    def _sampling(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._sampling_now = True
        self.phase("sampling", out, detail=text[:200])

    def _epoch(self, match: re.Match[str], text: str, out: list[Event]) -> None:
        self._commit_pending(out)
        self.phase("training", out, detail=text)

    _handlers = (
        (_TOTAL, _total), (_BATCHES, _batches_line), (_SKIP_EPOCH, _skip_epoch),
        (_SKIPPING, _skipping), (_TRAIN_STATE, _train_state),
        (_RESUME, _resume), (_SAVING, _saving), (_STATE, _state), (_REMOVING, _removing),
        (_SAVED, _saved), (_SAMPLING, _sampling), (_EPOCH, _epoch),
    )

    # -- bars, checkpoints, samples ----------------------------------------------------------
    def _on_bar(self, frame: TqdmFrame, out: list[Event]) -> None:
        desc = frame.desc.lower()
        if desc == "steps":
            self._in_caching = False
            if self._offset is None:
                self._offset = max(0, self._announced - frame.total) if self._announced else 0
            self._commit_pending(out, self._offset + frame.n)
            self._sampling_now = False
            self._scan_samples(out)
            total = self._announced or frame.total + self._offset
            values = parse_postfix(frame.postfix)
            if frame.n <= 0 or "avr_loss" not in values:
                self.phase("training", out, self._offset + frame.n, total)
                return
            self.phase("training", out, 0, total)
            lr = float(self.context.get("lr") or 0.0)
            self.add_step(out, self._offset + frame.n, total, frame, values["avr_loss"], lr)
        elif "sampl" in desc or self._sampling_now:
            self.phase("sampling", out, frame.n, frame.total, frame.desc)
        elif self._in_caching or "cach" in desc:
            self.phase("caching", out, frame.n, frame.total, frame.desc or "caching")
        elif "load" in desc or "shard" in desc:
            self.phase("loading_model", out, frame.n, frame.total, frame.desc)

    def _commit_pending(self, out: list[Event], step: int | None = None) -> None:
        """A save is complete once a later step, an epoch line, another save or the end
        arrives (``step``: the bar's step, which must have moved past the save)."""
        pending = self._pending
        if pending is None:
            return
        if step is not None and pending.get("step") is not None and step <= pending["step"]:
            return  # a frame drawn before the save (stderr may be read after stdout)
        self._pending = None
        if pending.get("step") is None:
            self._final = pending.get("lora", "")  # the final LoRA; "model saved." follows
        else:
            self._commit(pending, out)

    def before_stopped(self, out: list[Event]) -> None:
        pending = self._pending
        if pending is not None and pending.get("step") is not None and \
                _state_complete(pending.get("state", "")):
            self._pending = None
            self._commit(pending, out)

    def _commit(self, pending: dict[str, Any], out: list[Event]) -> None:
        step, lora, state = int(pending["step"]), pending.get("lora", ""), pending.get("state")
        resumable = _state_complete(state or "")
        recorded = self.commit_checkpoint(step, lora, state or "", resumable) \
            if resumable else None
        out.append(CheckpointEvent(step, lora or str(state), recorded is not None))

    def _scan_samples(self, out: list[Event], force: bool = False) -> None:
        if self._samples is None:
            return
        prompts = list(self.context.get("prompts") or [])
        for path, match in self._samples.scan(force):
            index = int(match.group("index"))
            step = int(match.group("step")) if match.group("step") else self.step
            prompt = prompts[index] if index < len(prompts) else ""
            out.append(SampleEvent(step, str(path), prompt))
