"""The video service: runs Video tab jobs on a ComfyUI server and keeps the clip gallery.

A job (:class:`~...core.video.specs.VideoRequest`) is planned into runs
(:func:`~...core.video.specs.plan_video`): upload the keyframes → build each run's graph from
``workflows/`` (the same substitution and ``/object_info`` check as images) → run with live
progress (previews included) → download the clip through ``/view`` → one clip in
``outputs/video/``: a single run's MP4 is copied with our parameters added to its container
metadata; segments of a keyframe sequence are decoded and joined at their shared frames
(:func:`~...core.video.keyframes.join_frames`) and encoded again; WebM is encoded from the
frames. Beside each clip a sidecar ``<clip>.json`` holds the parameters and the graph(s).

Network work runs on the app's loop (:class:`~..tasks.TaskOwner`); decoding, encoding and file
moves on this service's own executor. ``client_source()`` gives the ComfyClient to use (the app
passes the generation service's first healthy server) or None when no server is ready.

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
from ...core.paths import AppPaths
from ...core.types import Progress
from ...core.video import container
from ...core.video.keyframes import join_frames
from ...core.video.model_check import ModelCheck, missing_here, pick_main, workflow_gaps
from ...core.video.specs import VideoRequest, VideoRun, plan_video, run_params
from ..ops import await_executor, run_in_executor
from ..tasks import NoRunningLoop, OwnerClosed, TaskOwner
from ..throttle import Throttler
from ..trash_support import to_trash

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


def _read_clip(path: Path) -> ClipItem:
    info = container.probe(path)
    try:
        params = dict(container.read_clip_record(path).parameters)
    except container.VideoFileError:
        params = {}
    return ClipItem(path=path, frames=info.frames, fps=info.fps, duration_s=info.duration_s,
                    width=info.width, height=info.height, created=path.stat().st_mtime,
                    parameters=params)


def scan_clips(folder: Path) -> list[ClipItem]:
    """(worker thread) Every readable clip in ``folder``, newest first."""
    items = []
    for path in sorted(folder.glob("*"), key=lambda p: p.stat().st_mtime, reverse=True):
        if path.suffix.lower() in container.VIDEO_EXTENSIONS and path.is_file():
            try:
                items.append(_read_clip(path))
            except (OSError, container.VideoFileError) as exc:
                logger.warning("clip {} skipped: {}", path.name, exc)
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

    # -- gallery -----------------------------------------------------------------------------
    def clips(self) -> list[ClipItem]:
        return list(self._clips)

    def refresh(self) -> None:
        """Re-read the clip folder (off the UI thread); emits ``clips_changed``."""
        folder = self.clips_dir
        run_in_executor(self._io, lambda: scan_clips(folder), self._on_clips,
                        lambda exc: self.failed.emit(f"Cannot read the clips in {folder}: {exc}"))

    def _on_clips(self, items: list[ClipItem]) -> None:
        self._clips = items
        self.clips_changed.emit()

    def delete(self, path: Path) -> None:
        """Move a clip, its sidecar and its frames folder to the OS trash."""
        path = Path(path)

        def move() -> None:
            for p in (path, container.sidecar_path(path), path.with_name(path.stem + "_frames")):
                if p.exists():
                    to_trash(p)

        run_in_executor(self._io, move, lambda _r: self.refresh(),
                        lambda exc: self.failed.emit(f"Cannot move {path.name} to the trash: {exc}"))

    def export_frames(self, path: Path, done: Callable[[list[Path]], None] | None = None) -> None:
        """Write the clip's frames as PNGs into ``<clip stem>_frames/`` beside it."""
        path = Path(path)
        run_in_executor(self._io, lambda: container.export_frames(
            path, path.with_name(path.stem + "_frames")), done or (lambda _r: None),
            lambda exc: self.failed.emit(f"Cannot write the frames of {path.name}: {exc}"))

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
        except (ValueError, WorkflowError, container.VideoFileError, OSError) as exc:
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
            return await await_executor(self._io, lambda: self._finish(job, runs, graphs, clips))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

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

    def _finish(self, job: _Job, runs: list[VideoRun], graphs: list[dict],
                clips: list[Path]) -> ClipItem:
        """(worker thread) The final clip in outputs/video with metadata and sidecar."""
        request = job.request
        params = request.to_json() | {"seed": job.seed, "runs": [r.workflow for r in runs],
                                      "segment_frames": [r.frames for r in runs],
                                      "created": time.time()}
        graph: Any = graphs[0] if len(graphs) == 1 else graphs
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.clips_dir / f"{stamp}-{job.job_id[:6]}.{request.container}"
        meta = {"isengard": params, "prompt": graph}
        same_kind = clips[0].suffix.lower() == f".{request.container}"
        if len(clips) == 1 and same_kind:
            container.rewrite_metadata(clips[0], dest, meta)
        else:
            segments = [container.read_frames(c) for c in clips]
            fps = container.probe(clips[0]).fps or request.fps
            container.write_clip(dest, join_frames(segments), fps, metadata=meta)
        container.write_sidecar(dest, params, graph)
        if request.save_frames:
            container.export_frames(dest, dest.with_name(dest.stem + "_frames"))
        return _read_clip(dest)
