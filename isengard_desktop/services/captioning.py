"""Auto-captioning as suggestions: runs the captioning child, keeps what it suggested, and
applies what the user accepts.

One run at a time (:meth:`CaptionService.start`): the job file is written off the UI thread,
then ``python -m isengard_desktop.training_runtime.captioning run`` starts in the trainer's
Python (:func:`~..core.runtime.python.trainer_python`) as a :class:`ChildProcess`. Its event
lines become a :class:`CaptionRun`'s progress and the service's ``suggestion_added``. The
child appends every caption to the character's suggestion file itself, so a run that ends
early is resumed by starting again: photos that already have a suggestion are skipped.

Suggestions never overwrite anything: accepting one writes the caption through
:meth:`LibraryService.set_captions` (database + ``<image>.txt`` sidecar); "accept all" leaves
a caption the user wrote alone unless asked to replace it. The user's decisions (accepted,
skipped, edited text) are kept in the character's ``review.json``.

Signals:
    run_started(CaptionRun): a run began; connect it to a progress display.
    suggestion_added(int, str): a photo's suggestion arrived (character id, photo sha256).
    suggestions_changed(int): a character's suggestions or decisions were (re)loaded or changed.
    failed(str): an expected failure the user must see (names the thing and what to do).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core.captioning.job import CaptionImage, CaptionJob, parse_caption_event
from ..core.captioning.postprocess import CaptionOptions, suggest_caption
from ..core.captioning.store import (Decision, DecisionStatus, RawCaption, read_raw,
                                     read_review, review_file, suggestions_file, write_review)
from ..core.paths import AppPaths
from ..core.runtime.python import TrainerPython, trainer_python
from ..core.types import Progress
from .child_process import ChildProcess, OutputChunk, ProcessOutcome, StopIntent
from .library import LibraryService
from .ops import run_in_executor
from .throttle import Throttler

__all__ = ["CAPTION_MODULE", "CaptionOutcome", "CaptionRun", "CaptionService", "Suggestion"]

CAPTION_MODULE = "isengard_desktop.training_runtime.captioning"
# post-processing is pure: the review's refreshes (one a batch during a run) reuse the text
# (~0.2 ms a caption, so 1,000 photos would cost the UI thread 200 ms each time)
_suggest = functools.lru_cache(maxsize=8192)(suggest_caption)
STDERR_CAP_CHARS = 256 * 1024   # the end of the child's stderr kept in last_run.log
STOP_GRACE_S = 60.0     # a batch on the CPU can take this long; then SIGTERM, then SIGKILL
KILL_GRACE_S = 5.0


@dataclass(frozen=True)
class Suggestion:
    """One photo's suggestion as the review shows it.

    Attributes:
        image_id / key / path: the photo (key: its sha256).
        caption: the photo's current caption.
        raw: what the model said.
        text: the suggestion: the user's edit, else ``raw`` post-processed for the options.
        edited: ``text`` is the user's edit.
        status: the user's decision so far (None: not reviewed yet).
    """

    image_id: int
    key: str
    path: Path
    caption: str
    raw: str
    text: str
    edited: bool = False
    status: DecisionStatus | None = None


@dataclass(frozen=True)
class CaptionOutcome:
    """How a run ended: counts, and ``error`` ("" unless it failed; names what to do)."""

    character_id: int
    captioned: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: bool = False
    error: str = ""
    image_errors: tuple[str, ...] = ()

    @property
    def report(self) -> CaptionOutcome:
        """Itself: the progress panel asks an outcome for ``report.summary()``."""
        return self

    def summary(self) -> str:
        """First line: what happened; further lines: the photos that could not be read."""
        if self.error:
            head = f"Captioning failed: {self.error}"
        else:
            head = (("Captioning cancelled: " if self.cancelled else "Captioning done: ")
                    + f"{self.captioned} suggestion{'s' if self.captioned != 1 else ''} to "
                    f"review in Dataset → Auto-caption")
            if self.failed:
                head += f"; {self.failed} photo{'s' if self.failed != 1 else ''} unreadable"
            head += "."
        return "\n".join([head, *self.image_errors])


class CaptionRun(QObject):
    """One captioning run, shown like an import (``ProgressPanelWidget.track``).

    Signals:
        progressed(Progress): throttled to ~10 a second, the last one always.
        finished(CaptionOutcome): emitted once.
    """

    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, character_id: int, label: str, cancel: Callable[[], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.character_id = character_id
        self.label = label
        self._cancel = cancel
        self._throttle: Throttler[Progress] = Throttler(self.progressed.emit, parent=self)
        self.captioned = self.failed = self.skipped = self.total = 0
        self.image_errors: list[str] = []
        self.error = ""
        self.stderr = ""
        self.log_file: Path | None = None

    def cancel(self) -> None:
        self._cancel()

    def report(self, progress: Progress) -> None:
        self._throttle.submit(progress)

    def end(self, outcome: CaptionOutcome) -> None:
        self._throttle.flush()
        self.finished.emit(outcome)


@dataclass
class _CharacterState:
    raw: dict[str, RawCaption] = field(default_factory=dict)
    review: dict[str, Decision] = field(default_factory=dict)
    loaded: bool = False


class CaptionService(QObject):
    """Captioning runs, suggestions and the user's decisions; see the module docstring."""

    run_started = Signal(object)
    suggestion_added = Signal(int, str)
    suggestions_changed = Signal(int)
    failed = Signal(str)

    def __init__(self, paths: AppPaths, library: LibraryService, parent: QObject | None = None,
                 *, python: Callable[[AppPaths], TrainerPython] = trainer_python) -> None:
        super().__init__(parent)
        self.paths = paths
        self.library = library
        self._python = python
        self._io = ThreadPoolExecutor(1, thread_name_prefix="captioning-io")
        self._state: dict[int, _CharacterState] = {}
        self._run: CaptionRun | None = None
        self._proc: ChildProcess | None = None
        self._closed = False

    # -- state -------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._run is not None

    @property
    def current_run(self) -> CaptionRun | None:
        return self._run

    @property
    def child_pid(self) -> int | None:
        """The running captioning child's pid (None when none runs)."""
        return self._proc.pid if self._proc is not None else None

    def _folder(self, character_id: int) -> Path | None:
        character = self.library.character(character_id)
        return self.library.character_folder(character) if character else None

    def is_loaded(self, character_id: int) -> bool:
        return self._state.get(character_id, _CharacterState()).loaded

    def load(self, character_id: int) -> None:
        """Read the character's suggestion and review files off the UI thread; emits
        ``suggestions_changed`` when they are in."""
        folder = self._folder(character_id)
        if folder is None:
            return

        def work() -> tuple[dict[str, RawCaption], dict[str, Decision]]:
            return read_raw(suggestions_file(folder)), read_review(review_file(folder))

        def done(result: tuple[dict[str, RawCaption], dict[str, Decision]]) -> None:
            state = self._state.setdefault(character_id, _CharacterState())
            raw, review = result
            state.raw = {**raw, **state.raw}      # events that came in meanwhile are kept
            state.review = {**review, **state.review}
            state.loaded = True
            self.suggestions_changed.emit(character_id)

        run_in_executor(self._io, work, done, lambda exc: self.failed.emit(str(exc)))

    def suggestions(self, character_id: int, options: CaptionOptions, *,
                    include_decided: bool = False) -> list[Suggestion]:
        """The character's photos that have a suggestion, in the library's order; those the
        user accepted or skipped only with ``include_decided``."""
        state = self._state.get(character_id)
        if state is None:
            return []
        out = []
        for image in self.library.images(character_id):
            raw = state.raw.get(image.sha256)
            if raw is None:
                continue
            decision = state.review.get(image.sha256, Decision())
            if decision.status is not None and not include_decided:
                continue
            text = decision.text or _suggest(raw.raw, options)
            out.append(Suggestion(image.id, image.sha256, image.path, image.caption, raw.raw,
                                  text, bool(decision.text), decision.status))
        return out

    # -- decisions -----------------------------------------------------------------------------
    def _decide(self, character_id: int, decisions: dict[str, Decision]) -> None:
        state = self._state.setdefault(character_id, _CharacterState())
        state.review.update(decisions)
        folder = self._folder(character_id)
        snapshot = dict(state.review)
        self.suggestions_changed.emit(character_id)
        if folder is not None:
            run_in_executor(self._io, lambda: write_review(review_file(folder), snapshot),
                            None, lambda exc: self.failed.emit(
                                f"Could not save the caption review of {folder.name}: {exc}"))

    def edit(self, character_id: int, key: str, text: str) -> None:
        """Keep the user's edited suggestion (not accepted yet)."""
        state = self._state.setdefault(character_id, _CharacterState())
        old = state.review.get(key, Decision())
        self._decide(character_id, {key: Decision(old.status, text.strip())})

    def accept(self, character_id: int, captions: dict[int, str]) -> None:
        """Write ``captions`` (image id → text) as the photos' captions and mark their
        suggestions accepted."""
        by_id = {i.id: i for i in self.library.images(character_id)}
        captions = {i: t.strip() for i, t in captions.items() if i in by_id}
        if not captions:
            return
        self.library.set_captions(captions)
        self._decide(character_id, {by_id[i].sha256: Decision(DecisionStatus.ACCEPTED, t)
                                    for i, t in captions.items()})

    def skip(self, character_id: int, image_ids: Iterable[int]) -> None:
        by_id = {i.id: i for i in self.library.images(character_id)}
        state = self._state.setdefault(character_id, _CharacterState())
        self._decide(character_id, {
            by_id[i].sha256: Decision(DecisionStatus.SKIPPED,
                                      state.review.get(by_id[i].sha256, Decision()).text)
            for i in image_ids if i in by_id})

    def is_own_caption(self, character_id: int, suggestion: Suggestion) -> bool:
        """Whether the photo's current caption is one the user wrote (not empty and not a
        suggestion accepted earlier)."""
        if not suggestion.caption.strip():
            return False
        state = self._state.get(character_id)
        accepted = {d.text for d in (state.review.values() if state else ())
                    if d.status == DecisionStatus.ACCEPTED}
        return suggestion.caption.strip() not in accepted

    def accept_all(self, character_id: int, options: CaptionOptions, *,
                   replace_own: bool = False) -> tuple[int, int]:
        """Accept every pending suggestion; a photo whose caption the user wrote keeps it
        (its suggestion stays pending) unless ``replace_own``. Returns (accepted, kept)."""
        captions: dict[int, str] = {}
        kept = 0
        for s in self.suggestions(character_id, options):
            if not replace_own and self.is_own_caption(character_id, s):
                kept += 1
                continue
            captions[s.image_id] = s.text
        self.accept(character_id, captions)
        return len(captions), kept

    # -- runs ----------------------------------------------------------------------------------
    def start(self, character_id: int, model_dir: Path, *, device: str = "auto",
              batch_size: int = 8, task: str = "<DETAILED_CAPTION>", max_new_tokens: int = 256,
              num_beams: int = 3, image_ids: Iterable[int] | None = None) -> CaptionRun | None:
        """Caption the character's photos (or ``image_ids`` of them) that have no suggestion
        yet. Returns the run, or None (``failed`` says why) when one runs already or
        nothing can run."""
        character = self.library.character(character_id)
        if character is None:
            return None
        if self._run is not None:
            self.failed.emit("A captioning run is already going: wait for it or cancel it.")
            return None
        python = self._python(self.paths)
        if python.executable is None:
            self.failed.emit(f"Captioning runs in the trainer runtime. {python.problem}")
            return None
        wanted = set(image_ids) if image_ids is not None else None
        images = tuple(CaptionImage(i.sha256, str(i.path))
                       for i in self.library.images(character_id)
                       if wanted is None or i.id in wanted)
        folder = self.library.character_folder(character)
        out = suggestions_file(folder)
        job = CaptionJob(model=str(model_dir), model_id=Path(model_dir).name, output=str(out),
                         images=images, task=task, device=device, batch_size=batch_size,
                         max_new_tokens=max_new_tokens, num_beams=num_beams)
        job.validate()
        job_file = out.parent / "job.json"
        run = CaptionRun(character_id, f"Captioning {character.name}", self.cancel, parent=self)
        run.log_file = out.parent / "last_run.log"
        self._run = run
        self._state.setdefault(character_id, _CharacterState())
        if not self.is_loaded(character_id):
            self.load(character_id)

        def write() -> None:
            from ..core.fsutil import atomic_write_text

            job_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(job_file, job.to_json())

        def launch(_: None) -> None:
            if self._run is not run:
                return   # cancelled before the child started
            env = {**python.child_env(), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
            program = str(python.executable or sys.executable)
            proc = ChildProcess([program, "-m", CAPTION_MODULE, "run", "--job", str(job_file)],
                                env=env, cwd=str(job_file.parent), name="captioning",
                                parent=self)
            self._proc = proc
            proc.output_received.connect(lambda chunk: self._on_output(run, chunk))
            proc.finished.connect(lambda outcome: self._on_finished(run, outcome))
            proc.start()

        def not_written(exc: BaseException) -> None:
            run.error = f"Could not write the captioning job {job_file}: {exc}"
            self._end(run)

        logger.info("captioning {} photo(s) of character {} with {}", len(images),
                    character_id, model_dir)
        self.run_started.emit(run)
        run.report(Progress(run.label, 0, 0, "starting"))
        run_in_executor(self._io, write, launch, not_written)
        return run

    def cancel(self) -> None:
        """Stop the run after the batch in hand (its captions are kept)."""
        run, proc = self._run, self._proc
        if run is None:
            return
        if proc is None:   # the job file is still being written: it never starts
            self._end(run, cancelled=True)
            return
        proc.stop(StopIntent.CANCEL, ask=lambda: proc.write(b"stop\n"), grace_s=STOP_GRACE_S,
                  kill_grace_s=KILL_GRACE_S)

    def _on_output(self, run: CaptionRun, chunk: OutputChunk) -> None:
        if chunk.stream != "stdout":
            run.stderr = (run.stderr + chunk.text)[-STDERR_CAP_CHARS:]
            return
        for line, _redraw in chunk.lines:
            event = parse_caption_event(line)
            if event is None:
                continue
            name = event.event
            if name == "phase":
                run.report(Progress(run.label, 0, 0, str(event.get("detail", ""))))
            elif name == "started":
                run.total = int(event.get("total", 0))
                run.skipped = int(event.get("skipped", 0))
                device = str(event.get("device", ""))
                run.report(Progress(run.label, 0, run.total,
                                    f"on the {'GPU' if device == 'cuda' else 'CPU'}"
                                    if device else ""))
            elif name == "caption":
                key = str(event.get("key", ""))
                record = RawCaption(key, str(event.get("image", "")),
                                    str(event.get("raw", "")))
                self._state.setdefault(run.character_id, _CharacterState()).raw[key] = record
                run.captioned += 1
                run.report(Progress(run.label, int(event.get("done", 0)), run.total,
                                    Path(record.image).name))
                self.suggestion_added.emit(run.character_id, key)
            elif name == "caption_error":
                run.failed += 1
                run.image_errors.append(str(event.get("message", "")))
            elif name == "error":
                run.error = str(event.get("message", "")) or "the captioning child failed"

    def _on_finished(self, run: CaptionRun, outcome: ProcessOutcome) -> None:
        self._proc = None
        cancelled = outcome.stop_intent is not None   # cancelled, or the app is quitting
        if not run.error and not cancelled and not outcome.succeeded:
            tail = outcome.tail[-1] if outcome.tail else ""
            run.error = (f"The captioning process {outcome.describe()}"
                         + (f": {tail}" if tail else "") + ". Photos captioned so far are "
                         "kept; start again to go on.")
        self._end(run, cancelled=cancelled)

    def _end(self, run: CaptionRun, *, cancelled: bool = False) -> None:
        if self._run is run:
            self._run = None
        result = CaptionOutcome(run.character_id, run.captioned, run.failed, run.skipped,
                                cancelled, run.error, tuple(run.image_errors))
        logger.info("captioning ended: {}", result)
        log_file, text = run.log_file, run.stderr
        if log_file is not None and text and not self._closed:
            from ..core.fsutil import atomic_write_text

            run_in_executor(self._io, lambda: atomic_write_text(log_file, text), None,
                            lambda exc: logger.warning("captioning log not written: {}", exc))
        if run.error:
            self.failed.emit(run.error)
        self.suggestions_changed.emit(run.character_id)
        run.end(result)

    def shutdown(self) -> None:
        """App quit: stop a running child (it keeps what it finished), stop the I/O thread."""
        if self._closed:
            return
        proc = self._proc
        if proc is not None and proc.is_running:
            proc.stop_and_wait(StopIntent.SHUTDOWN, ask=lambda: proc.write(b"stop\n"),
                               grace_s=5.0, kill_grace_s=KILL_GRACE_S)
        self._closed = True
        self._io.shutdown(wait=True)   # the review file and the run's log are written first
