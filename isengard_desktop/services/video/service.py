"""The video service: runs Video tab jobs on a ComfyUI server and keeps the clip gallery.

A job (:class:`~...core.video.specs.VideoRequest`) is planned into runs
(:func:`~...core.video.specs.plan_video`): upload the keyframes → build each run's graph from
``workflows/`` (the same substitution and ``/object_info`` check as images) → run with live
progress (previews included) → download the clip through ``/view`` → one clip in
``outputs/video/``: a single run's MP4 is copied with our parameters added to its container
metadata; segments of a keyframe sequence are decoded and joined at their shared frames
(:func:`~...core.video.keyframes.join_frames`) and encoded again; WebM is encoded from the
frames. Beside each clip a sidecar ``<clip>.json`` holds the parameters and the graph(s).

Network work runs on the app's loop (:class:`~..tasks.TaskOwner`); file moves and sidecar reads
on this service's own executor. Everything that decodes or encodes video (probe, finish a job,
export frames, the player's preview frames) runs in the clips child
(``python -m isengard_desktop.analysis_runtime clips``, :mod:`.clips_child`) in the trainer
runtime's Python: the GUI process never imports PyAV (its FFmpeg carries GPL x264/x265).
``client_source()`` gives the ComfyClient to use (the app passes the generation service's
first healthy server) or None when no server is ready.

Signals:
    job_started(str): job id.
    job_progress(Progress): at most ~10 a second (the last one always arrives).
    job_finished(str, ClipItem): the clip is on disk with its sidecar.
    job_failed(str, str): job id and a message naming the server, node, file or field.
    clips_changed(): the clip list changed; read :meth:`clips`.
    failed(str): delete / export failed (names the file).
    models_checked(ModelCheck): what the server (with none ready: the model folders) lacks to
        run a workflow (:meth:`check_models`, the same check a job makes before it starts).
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ...core.comfy.errors import ComfyError, ComfyInterrupted
from ...core.comfy.graph_check import check_graph, model_choices
from ...core.comfy.types import NodeExecuted, NodeProgress, NodeStarted, PreviewImage, RunEvent
from ...core.comfy.workflow_manifest import WorkflowError, WorkflowLibrary
from ...core.comfy.workflows import build_graph, random_seed
from ...core.fsutil import atomic_write_text
from ...core.paths import AppPaths
from ...core.types import Progress
from ...core.video import clip_record
from ...core.video.clip_record import PreviewInfo, VideoFileError
from ...core.video.model_check import ModelCheck, missing_here, pick_main, workflow_gaps
from ...core.video.specs import VideoRequest, VideoRun, plan_video, run_params
from ..ops import await_executor, run_in_executor
from ..tasks import NoRunningLoop, OwnerClosed, TaskOwner
from ..throttle import Throttler
from ..trash_support import to_trash
from .clips_child import ClipsChildError, ClipsOutcome, ClipsRun, run_clips, start_clips

__all__ = ["ClipItem", "VideoService"]

CANCELLED = "Video generation cancelled."
UPLOAD_SUBFOLDER = "isengard"


@dataclass(frozen=True)
class ClipItem:
    """One clip of the gallery."""

    path: Path
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    created: float
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_info(cls, path: Path, info: Mapping[str, Any], parameters: Mapping[str, Any],
                  created: float) -> ClipItem:
        """From the ``info`` of a clips child's ``clip`` / ``finished`` event."""
        return cls(path=Path(path), frames=int(info["frames"]), fps=float(info["fps"]),
                   duration_s=float(info["duration_s"]), width=int(info["width"]),
                   height=int(info["height"]), created=created, parameters=dict(parameters))


class _Failed(Exception):
    pass


@dataclass
class _Job:
    job_id: str
    request: VideoRequest
    seed: int
    cancelled: bool = False
    prompt_id: str = ""
    client: Any = None
    preview: bytes | None = None     # the latest preview frame, kept across coalesced updates


@dataclass(frozen=True)
class _Found:
    """(worker thread) A clip file of the gallery folder and its sidecar, before the probe."""

    path: Path
    created: float
    record: clip_record.ClipRecord | None
    info: Mapping[str, Any] | None = None     # the sidecar's clip_info, still valid


def list_clip_files(folder: Path) -> list[_Found]:
    """(worker thread) The clip files in ``folder``, newest first, with their sidecars
    (an unreadable sidecar is logged and left out) and the probe a sidecar holds."""
    found = []
    try:
        paths = [p for p in folder.glob("*")
                 if p.suffix.lower() in clip_record.VIDEO_EXTENSIONS and p.is_file()]
    except OSError:
        return []
    stamped = []
    for path in paths:
        try:
            stamped.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for created, path in sorted(stamped, reverse=True):
        try:
            record = clip_record.read_sidecar(path)
        except VideoFileError as exc:
            logger.warning("clip {}: {}", path.name, exc)
            record = None
        found.append(_Found(path, created, record,
                            record.info_for(path) if record is not None else None))
    return found


def gallery_items(found: list[_Found], outcome: ClipsOutcome) -> list[ClipItem]:
    """(worker thread) ClipItems of the clips whose sidecar holds their probe or that the
    child could probe, in ``found``'s order; parameters from the sidecar, else from the
    container metadata."""
    infos = {e["path"]: e["info"] for e in outcome.events if e.get("event") == "clip"}
    for e in outcome.events:
        if e.get("event") == "clip_error":
            logger.warning("clip skipped: {}", e.get("message"))
    items = []
    for f in found:
        info = f.info or infos.get(str(f.path))
        if info is None:
            continue
        record = f.record
        if record is None:
            try:
                record = clip_record.record_from_metadata(f.path, info.get("metadata", {}))
            except VideoFileError:
                record = None
        try:
            items.append(ClipItem.from_info(f.path, info, record.parameters if record else {},
                                            f.created))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("clip {} skipped: unreadable probe ({})", f.path.name, exc)
    return items


class VideoService(QObject):
    """See the module docstring."""

    job_started = Signal(str)
    job_progress = Signal(object)
    job_finished = Signal(str, object)
    job_failed = Signal(str, str)
    clips_changed = Signal()
    failed = Signal(str)
    models_checked = Signal(object)

    def __init__(self, paths: AppPaths, client_source: Callable[[], Any | None], *,
                 workflows_dir: Path | None = None,
                 model_folders: Callable[[], list[Path]] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        # where a model counts as "already here" when no server is ready to ask
        self._model_folders = model_folders or (lambda: [paths.models])
        self.clips_dir = paths.outputs / "video"
        self._client_source = client_source
        self._workflows_dir = workflows_dir
        self._library: WorkflowLibrary | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix="video-io")
        self._tasks = TaskOwner("video jobs")
        self._jobs: dict[str, _Job] = {}
        self._checking: dict[str, bool] = {}     # workflow -> asked again while checking
        self._clips: list[ClipItem] = []
        self._progress = Throttler(self.job_progress.emit, parent=self)
        self._runs: list[ClipsRun] = []          # live clips children (stopped at quit)
        self._refreshing = 0                     # the newest refresh wins
        self._probe_run: ClipsRun | None = None  # its probe child (an older one is stopped)
        self._preview_run: ClipsRun | None = None
        self._previewing = 0                     # the newest preview request wins

    # -- gallery -----------------------------------------------------------------------------
    def clips(self) -> list[ClipItem]:
        return list(self._clips)

    def refresh(self) -> None:
        """Re-read the clip folder (sidecars on the executor; clips whose sidecar does not
        hold their probe are probed by the clips child); emits ``clips_changed``."""
        folder = self.clips_dir
        self._refreshing += 1
        ticket = self._refreshing
        if self._probe_run is not None:          # an older refresh's probe: no longer wanted
            self._probe_run.cancel()
            self._probe_run = None

        def listed(found: list[_Found]) -> None:
            if ticket != self._refreshing:
                return
            unknown = [str(f.path) for f in found if f.info is None]
            if not unknown:
                probed(found, ClipsOutcome())
                return
            self._probe_run = start_clips(self.paths, ["probe", *unknown],
                                          lambda outcome: probed(found, outcome),
                                          what="clip probe", runs=self._runs, parent=self)

        def probed(found: list[_Found], outcome: ClipsOutcome) -> None:
            if ticket == self._refreshing:
                self._probe_run = None
            if outcome.cancelled or ticket != self._refreshing:
                return                   # the app is closing, or a newer refresh runs
            if outcome.problem:          # the clips it could not probe are left out
                self.failed.emit(f"Cannot read the clips in {folder}: {outcome.problem}")
            run_in_executor(self._io, lambda: gallery_items(found, outcome),
                            lambda items: self._on_clips(ticket, items), failed)

        def failed(exc: BaseException) -> None:
            self.failed.emit(f"Cannot read the clips in {folder}: {exc}")

        run_in_executor(self._io, lambda: list_clip_files(folder), listed, failed)

    def _on_clips(self, ticket: int, items: list[ClipItem]) -> None:
        if ticket != self._refreshing:
            return
        self._clips = items
        self.clips_changed.emit()

    def delete(self, path: Path) -> None:
        """Move a clip, its sidecar and its frames folder to the OS trash (its preview frames,
        a cache, are removed)."""
        path = Path(path)
        cache = self.paths.cache

        def move() -> None:
            try:
                shutil.rmtree(clip_record.preview_dir(cache, path), ignore_errors=True)
            except OSError:
                pass                 # the clip is already gone: nothing to find its cache by
            for p in (path, clip_record.sidecar_path(path),
                      path.with_name(path.stem + "_frames")):
                if p.exists():
                    to_trash(p)

        run_in_executor(self._io, move, lambda _r: self.refresh(),
                        lambda exc: self.failed.emit(f"Cannot move {path.name} to the trash: {exc}"))

    def export_frames(self, path: Path, done: Callable[[list[Path]], None] | None = None) -> None:
        """Write the clip's frames as PNGs into ``<clip stem>_frames/`` beside it (clips
        child); ``done`` gets their paths."""
        path = Path(path)
        folder = path.with_name(path.stem + "_frames")

        def ended(outcome: ClipsOutcome) -> None:
            event = outcome.first("frames")
            if outcome.cancelled:
                return                   # the app is closing
            if outcome.problem or event is None:
                self.failed.emit(f"Cannot write the frames of {path.name}: "
                                 f"{outcome.problem or 'the video child said nothing'}")
                return
            if done is not None:
                done([folder / f"{path.stem}_{i:05d}.png"
                      for i in range(1, int(event["count"]) + 1)])

        start_clips(self.paths, ["export-frames", str(path), "--folder", str(folder)], ended,
                    what="frame export", runs=self._runs, parent=self)

    def preview(self, path: Path, done: Callable[[PreviewInfo], None],
                failed: Callable[[str], None]) -> None:
        """The player's frames of ``path`` (at most 640 px JPEGs and their fps), from the
        preview cache or made by the clips child; ``done(info)`` or ``failed(message naming
        the clip)`` on the main thread. A newer request ends an older one still running (its
        callbacks are not called)."""
        path = Path(path)
        cache = self.paths.cache
        self._previewing += 1
        ticket = self._previewing
        self._end_preview()

        def cached() -> PreviewInfo | None:
            return clip_record.read_preview_info(clip_record.preview_dir(cache, path))

        def looked(info: PreviewInfo | None) -> None:
            if ticket != self._previewing:
                return
            if info is not None:
                done(info)
                return
            self._end_preview()
            self._preview_run = start_clips(self.paths, ["preview", str(path), "--cache",
                                                         str(cache)], made, what="clip preview",
                                            runs=self._runs, parent=self)

        def made(outcome: ClipsOutcome) -> None:
            if ticket != self._previewing or outcome.cancelled:
                return
            self._preview_run = None
            if outcome.problem:
                failed(outcome.problem)
                return
            run_in_executor(self._io, cached, lambda info: done(info) if info else failed(
                f"{path.name}: the preview frames were not written"), lost)

        def lost(exc: BaseException) -> None:
            failed(f"{path.name}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}")

        run_in_executor(self._io, cached, looked, lost)

    def _end_preview(self) -> None:
        if self._preview_run is not None:
            self._preview_run.cancel()
            self._preview_run = None

    # -- jobs --------------------------------------------------------------------------------
    def submit(self, request: VideoRequest) -> str:
        job = _Job(uuid.uuid4().hex[:12], request,
                   request.seed if request.seed is not None else random_seed())
        self._jobs[job.job_id] = job
        self._tasks.spawn(self._run(job), name=f"video job {job.job_id}")
        return job.job_id

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        job.cancelled = True
        if job.client is not None and job.prompt_id:
            self._tasks.spawn(job.client.cancel(job.prompt_id), name="video cancel")

    def check_models(self, workflow: str) -> None:
        """Ask the ready server (``client_source``) what it lacks to run ``workflow`` (a
        manifest id, e.g. ``wan21-i2v``), or with none ready the model folders (the files of
        the workflow's video set); emits ``models_checked`` with a :class:`ModelCheck`.
        One check per workflow at a time: asked again while one runs, it runs once more after
        it (so the answer is never older than the question). Without a running loop (or after
        :meth:`aclose`) nothing is asked."""
        if workflow in self._checking:
            self._checking[workflow] = True
            return
        try:
            self._tasks.spawn(self._check_again(workflow), name=f"video check {workflow}")
        except (NoRunningLoop, OwnerClosed) as exc:
            logger.debug("video models not checked: {}", exc)
            return
        self._checking[workflow] = False

    @property
    def checks_running(self) -> int:
        """How many workflows are being checked now."""
        return len(self._checking)

    async def _check_again(self, workflow: str) -> None:
        try:
            while True:
                await self._check(workflow)
                if not self._checking.get(workflow):
                    break
                self._checking[workflow] = False
        finally:
            self._checking.pop(workflow, None)

    async def _check(self, workflow: str) -> None:
        try:
            spec = (await self._workflows()).get(workflow)
        except (WorkflowError, KeyError) as exc:
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            self.models_checked.emit(ModelCheck(workflow, workflow, "", error=reason))
            return
        client = self._client_source()
        if client is None:
            folders = self._model_folders()
            missing = await await_executor(self._io, lambda: missing_here(workflow, folders))
            self.models_checked.emit(ModelCheck(workflow, spec.title, "", missing))
            return
        server = str(client.base_url)
        try:
            info = await client.object_info(refresh=True)    # files may have been added
        except ComfyError as exc:
            self.models_checked.emit(ModelCheck(workflow, spec.title, server, error=str(exc)))
            return
        self.models_checked.emit(ModelCheck(workflow, spec.title, server,
                                            tuple(workflow_gaps(spec, info))))

    def active_jobs(self) -> list[str]:
        return list(self._jobs)

    async def aclose(self) -> None:
        await self._tasks.aclose(timeout_s=5.0)
        for run in list(self._runs):
            run.stop_and_wait()
        self._io.shutdown(wait=False, cancel_futures=True)

    async def _workflows(self) -> WorkflowLibrary:
        if self._library is None:
            folder = self._workflows_dir
            self._library = await await_executor(self._io, lambda: WorkflowLibrary.load(folder))
        return self._library

    async def _run(self, job: _Job) -> None:
        self.job_started.emit(job.job_id)
        try:
            clip = await self._run_job(job)
        except _Failed as exc:
            self._fail(job, str(exc))
        except ComfyInterrupted as exc:
            self._fail(job, CANCELLED if job.cancelled else str(exc))
        except ComfyError as exc:
            self._fail(job, str(exc))
        except (ValueError, WorkflowError, VideoFileError, ClipsChildError, OSError) as exc:
            self._fail(job, str(exc))
        else:
            self._jobs.pop(job.job_id, None)
            self._progress.flush()
            self._clips.insert(0, clip)
            self.job_finished.emit(job.job_id, clip)
            self.clips_changed.emit()

    def _fail(self, job: _Job, message: str) -> None:
        self._jobs.pop(job.job_id, None)
        self._progress.flush()
        logger.warning("video job {} failed: {}", job.job_id, message)
        self.job_failed.emit(job.job_id, message)

    def _report(self, job: _Job, label: str, done: int, total: int, *, overall: float,
                node: str = "", node_class: str = "", preview: bytes | None = None) -> None:
        if preview is not None:
            job.preview = preview
        self._progress.submit(Progress(label, done, total, job_id=job.job_id, node=node,
                                       node_class=node_class, overall=overall,
                                       preview=job.preview))

    async def _run_job(self, job: _Job) -> ClipItem:
        request = job.request
        runs = plan_video(request)
        client = self._client_source()
        if client is None:
            raise _Failed("No ComfyUI server is ready: start the local one or add a server in "
                          "Settings → ComfyUI.")
        job.client = client
        library = await self._workflows()
        info = await client.object_info(refresh=True)   # models may have been added since
        for run in runs:
            spec = library.get(run.workflow)
            missing = workflow_gaps(spec, info, request.model)
            if missing:
                raise _Failed(f"ComfyUI at {client.base_url} cannot run {spec.title}: "
                              f"{'; '.join(missing)}.")
        uploaded: dict[str, str] = {}
        for key in dict.fromkeys(k for r in runs for k in r.keyframes):
            uploaded[key] = await self._upload(job, client, key)
        graphs: list[dict] = []
        clips: list[Path] = []
        tmp = self.paths.tmp / f"video-{job.job_id}"
        for run in runs:
            if job.cancelled:
                raise _Failed(CANCELLED)
            graph = self._graph(library, run, request, job.seed, uploaded, info, client.base_url)
            graphs.append(graph)
            clips.append(await self._render(job, client, run, len(runs), graph, tmp))
        try:
            return await self._finish(job, runs, graphs, clips, tmp)
        finally:
            await await_executor(self._io, lambda: shutil.rmtree(tmp, ignore_errors=True))

    async def _upload(self, job: _Job, client: Any, local: str) -> str:
        path = Path(local)
        try:
            data = await await_executor(self._io, path.read_bytes)
        except OSError as exc:
            raise _Failed(f"Cannot read the keyframe {path}: {exc.strerror or exc}.") from None
        name = f"{job.job_id[:8]}-{secrets.token_hex(2)}-{path.stem[:40]}{path.suffix or '.png'}"
        return str(await client.upload_image(data, name, subfolder=UPLOAD_SUBFOLDER,
                                             overwrite=True))

    def _graph(self, library: WorkflowLibrary, run: VideoRun, request: VideoRequest, seed: int,
               uploaded: Mapping[str, str], info: Mapping, server: str) -> dict:
        spec = library.get(run.workflow)
        params = run_params(request, run, seed, uploaded)
        if "model" not in params:
            params["model"] = self._main_model(spec, info, server)
        graph = build_graph(spec, params, object_info=info)
        gaps = [g for g in check_graph(graph, info) if g.kind != "not_in_list"
                or g.input_name != "image"]
        if gaps:
            raise _Failed(f"ComfyUI at {server} would refuse {spec.title}: "
                          + "; ".join(g.message for g in gaps[:3]))
        return graph

    @staticmethod
    def _main_model(spec: Any, info: Mapping, server: str) -> str:
        p = spec.params["model"]
        pick = pick_main(spec, model_choices(info, p.model_folder))
        if pick is not None:
            return pick
        default = spec.graph[p.node]["inputs"][p.input]
        raise _Failed(f"ComfyUI at {server} has no {p.label or 'model'} (looked for {default} "
                      f"in models/{p.model_folder}).")

    async def _render(self, job: _Job, client: Any, run: VideoRun, count: int, graph: dict,
                      tmp: Path) -> Path:
        nodes = max(1, len(graph))
        seen: set[str] = set()
        label = (f"Segment {run.index + 1} of {count}" if count > 1 else "Rendering")

        def on_event(event: RunEvent) -> None:
            base = run.index / count
            if isinstance(event, NodeStarted):
                seen.add(event.node)
                self._report(job, label, 0, 0, overall=base + len(seen) / nodes / count,
                             node=event.node, node_class=event.class_type)
            elif isinstance(event, NodeProgress):
                frac = event.value / event.max if event.max else 0.0
                self._report(job, f"{label}: step {int(event.value)}/{int(event.max)}",
                             int(event.value), int(event.max),
                             overall=base + (len(seen) - 1 + frac) / nodes / count, node=event.node)
            elif isinstance(event, PreviewImage):
                self._report(job, label, 0, 0, overall=base + len(seen) / nodes / count,
                             node=event.node or "", preview=event.data)
            elif isinstance(event, NodeExecuted):
                seen.add(event.node)

        job.prompt_id = str(uuid.uuid4())
        result = await client.run(graph, prompt_id=job.prompt_id,
                                  extra_data={"isengard": {"job_id": job.job_id, "video": True}},
                                  on_event=on_event)
        refs = [r for r in result.images if r.is_video]
        if not refs:
            raise _Failed(f"ComfyUI at {client.base_url} finished {run.workflow} but returned no "
                          "video (no output with \"animated\": [true]).")
        data = await client.fetch_image(refs[0])
        dest = tmp / f"segment-{run.index:03d}{Path(refs[0].filename).suffix.lower()}"

        def write() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)

        await await_executor(self._io, write)
        return dest

    async def _finish(self, job: _Job, runs: list[VideoRun], graphs: list[dict],
                      clips: list[Path], tmp: Path) -> ClipItem:
        """The final clip in outputs/video with metadata and sidecar (the clips child's
        ``finish``: copy or join, encode, sidecar, frames)."""
        request = job.request
        params = request.to_json() | {"seed": job.seed, "runs": [r.workflow for r in runs],
                                      "segment_frames": [r.frames for r in runs],
                                      "created": time.time()}
        graph: Any = graphs[0] if len(graphs) == 1 else graphs
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.clips_dir / f"{stamp}-{job.job_id[:6]}.{request.container}"
        spec = tmp / "finish.json"
        body = json.dumps({"version": clip_record.FINISH_SPEC_VERSION,
                           "segments": [str(c) for c in clips], "dest": str(dest),
                           "fps": request.fps, "parameters": params, "graph": graph,
                           "save_frames": request.save_frames}, ensure_ascii=False)

        def write_spec() -> None:
            self.clips_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(spec, body)

        await await_executor(self._io, write_spec)
        phases = {"copying": "Saving the clip", "decoding": "Joining the segments",
                  "encoding": "Encoding the clip", "frames": "Saving the frames"}

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "phase":
                self._report(job, phases.get(str(event.get("phase")), "Saving the clip"),
                             int(event.get("done", 0)), int(event.get("total", 0)), overall=1.0)

        outcome = await run_clips(self.paths, ["finish", "--spec", str(spec)], what="clip finish",
                                  on_event=on_event, runs=self._runs, parent=self)
        event = outcome.first("finished")
        if event is None:
            raise _Failed(f"The video child wrote no clip for {dest.name}.")
        created = await await_executor(self._io, lambda: dest.stat().st_mtime)
        return ClipItem.from_info(dest, event["info"], params, created)
