"""The generation service: ComfyUI backends, job routing, jobs, gallery and staging.

It owns the server pool (:mod:`.generation_servers`: the managed local ComfyUI started from
Settings' ComfyUI folder, and remote servers health-polled every few seconds), runs jobs
(:mod:`.generation_jobs`: route → build → check → upload → run → fetch → metadata → disk →
``generations`` table) and keeps the gallery and the per-character staging area in memory.
Keep adds staged images to the character's dataset through the library (caption with the
trigger word, ``source = "synthetic"``); Discard (staging) and Delete (gallery) send them to
the OS trash, one move at a time (:mod:`.generation_trash`).

Network work runs on the running asyncio loop (qasync in the app) as tasks of the service's
:class:`~..tasks.TaskOwner`; file work on an executor; every DB write is a write op of the
database service (``library.database``). Call ``LibraryService.start()`` before
:meth:`GenerationService.start` and await :meth:`GenerationService.aclose` (on the running
loop) before ``LibraryService.shutdown()``; it never raises.

Signals:
    servers_changed(tuple[ServerStatus, ...]): a server's state, GPU, VRAM or queue changed.
    job_started(str): job id; the job is being routed/run.
    job_progress(Progress): at most ~10 a second per job; the last one always
        comes before ``job_finished``.
    job_finished(str, tuple[GalleryItem, ...]): job id and its images (saved and recorded).
    job_failed(str, str): job id and a message for the user (names the node, input, value,
        model or server; "Generation cancelled." after :meth:`cancel`).
    job_notice(str, str): job id and something the user should know while it runs: a server
        skipped (which file is missing there), overflow into another tier, a picture moved to
        another server because its server died.
    gallery_changed(): the gallery or a staging area changed; re-read them.
    failed(str): Keep, Discard or Delete could not finish (names the file and why).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import uuid
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from collections.abc import Iterable

from loguru import logger
from PySide6.QtCore import QObject, QTimer, Signal

from ...core import logging as applog
from ...core.comfy.errors import ComfyError
from ...core.comfy.funnel import (MORE_LIKE_COUNT, MORE_LIKE_DENOISE, FunnelSizes, LineageRow,
                                  draft_request, lineage_rows, more_like_request, next_stage,
                                  stage_request)
from ...core.comfy.jobs import (TARGETS, GalleryItem, GenerationRequest, ServerStatus)
from ...core.comfy.routing import lora_visibility
from ...core.dataset.captions import with_trigger
from ...core.db.generations import GenerationsRepository
from ...core.paths import AppPaths
from ...core.types import Progress
from .jobs import CANCELLED, Job, JobFailed, JobRunner
from .servers import ServerPool
from .trash import TrashMover
from ..database import ChangeSet, WriteResult
from ..import_task import ImportOutcome
from ..library import SYNTHETIC_SOURCE
from ..tasks import TaskOwner
from ..ops import run_in_executor
from ..throttle import DEFAULT_INTERVAL_MS, Throttler

__all__ = ["GenerationService"]

JOBS_END_TIMEOUT_S = 10.0     # at quit, how long cancelled jobs may take to end
WORKFLOWS_LOAD_DELAY_MS = 250  # the workflow library loads after the window's first paint


class GenerationService(QObject):
    """See the module docstring for what it does and the signals it emits."""

    servers_changed = Signal(object)
    job_started = Signal(str)
    job_progress = Signal(object)
    job_finished = Signal(str, object)
    job_failed = Signal(str, str)
    job_notice = Signal(str, str)
    gallery_changed = Signal()
    failed = Signal(str)

    def __init__(self, paths: AppPaths, settings_service: Any, library: Any,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self.settings_service = settings_service
        self.library = library
        self.pool = ServerPool(paths, self)
        self.pool.changed.connect(self.servers_changed.emit)
        # model lists changed: model_choices/feature_support/lora_visibility answer differently
        self.pool.models_changed.connect(lambda _key: self._announce_servers())
        self.pool.models_changed.connect(self._probe_upload)
        self.progress_interval_ms = DEFAULT_INTERVAL_MS
        self.is_ready = False
        self._io = ThreadPoolExecutor(2, thread_name_prefix="generation-io")
        self._trash = TrashMover()
        self._runner = JobRunner(paths, self.pool, library, self._io, self._workflow_library)
        self._runner.notify = self.job_notice.emit
        self._jobs: dict[str, Job] = {}
        self._tasks = TaskOwner("generation")     # jobs, cancels, model-list refreshes
        self._items: dict[int, GalleryItem] = {}
        self._workflows: Any = None
        self._workflows_error: BaseException | None = None
        self._workflows_waiters: list[asyncio.Future] = []
        self._workflows_loading = False
        self._items_loaded = False
        # file name -> family, read from the model library's headers (wins over name guesses)
        self._known_families: dict[str, str | None] = {}
        self._started = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Load workflows and the gallery off the UI thread, start or poll the servers."""
        if self._started:
            return
        self._started = True
        # after the first paint: importing PyYAML and parsing the manifests hold the GIL, which
        # slowed the window's first paint (benchmarks/README.md, start-up); a job that needs the
        # workflows sooner loads them at once
        QTimer.singleShot(WORKFLOWS_LOAD_DELAY_MS, self._load_workflows)
        outputs = self.paths.outputs
        self.library.database.read(
            lambda conn: GenerationsRepository(conn, outputs).list_items(("gallery", "staging")),
            self._on_items_loaded)
        self.settings_service.settings_changed.connect(self._apply_settings)
        self.library.data_changed.connect(self._on_library_changed)
        self._apply_settings(self.settings_service.settings)
        self.pool.start()

    def shutdown(self) -> None:
        """The synchronous part of :meth:`aclose`: cancel jobs, stop the managed ComfyUI
        process tree (blocks a few seconds at most), stop the executors. Idempotent; never
        raises. The network clients close in :meth:`aclose`."""
        if self._closed:
            return
        self._closed = True
        for job in self._jobs.values():
            job.cancelled = True
        self._tasks.cancel_all()
        for step in (self.pool.shutdown, self._trash.shutdown,
                     lambda: self._io.shutdown(wait=True, cancel_futures=True)):
            try:
                step()
            except Exception as exc:   # the app is quitting: log it, go on with the rest
                logger.opt(exception=exc).error("generation shutdown step failed")

    async def aclose(self) -> None:
        """App quit, on the running loop: :meth:`shutdown`, then wait for the jobs to end and
        close every network client. Idempotent; never raises."""
        self.shutdown()
        await self._tasks.aclose(timeout_s=JOBS_END_TIMEOUT_S)
        await self._runner.pusher.aclose()
        await self.pool.aclose()

    def _apply_settings(self, settings: Any) -> None:
        self.pool.configure(settings.comfyui_folder, settings.comfyui_python,
                            settings.comfyui_models_folder, settings.remote_servers,
                            tiers=dict(getattr(settings, "server_tiers", {}) or {}))
        for server in self.pool.healthy():     # an upload token may have changed too
            self._probe_upload(server.key)
        self._learn_model_families()

    def _learn_model_families(self) -> None:
        """Read the families of the model library's files (header only, on a worker thread) so
        a server file of the same name is placed by what it is, not by its name."""
        def learned(models: list[Any]) -> None:
            if self._closed:
                return
            self._known_families = {m.path.name: m.family for m in models if m.family}
            self._announce_servers()

        self.settings_service.scan_models(None, learned)

    def _on_library_changed(self, change: Any) -> None:
        if getattr(change, "loras", False) and not self._closed:
            self.refresh_servers()    # a newly trained LoRA shows up in the servers' lists

    def _announce_servers(self) -> None:
        if not self._closed:
            self.servers_changed.emit(self.pool.statuses())

    def _load_workflows(self) -> None:
        """Load the workflow library off the UI thread (once)."""
        if self._workflows_loading or self._closed:
            return
        self._workflows_loading = True

        def load_workflows() -> Any:
            # imported here, off the UI thread: the manifest reader pulls in PyYAML (~60 ms)
            from ...core.comfy.workflow_manifest import WorkflowLibrary

            return WorkflowLibrary.load()

        run_in_executor(self._io, load_workflows, self._on_workflows, self._on_workflows_failed)

    def _on_workflows(self, library: Any) -> None:
        self._workflows = library
        self._check_ready()
        self._announce_servers()
        for waiter in self._workflows_waiters:
            if not waiter.done():
                waiter.set_result(library)
        self._workflows_waiters.clear()

    def _on_workflows_failed(self, exc: BaseException) -> None:
        logger.error("cannot load the workflows: {}", exc)
        self._workflows_error = exc
        self._check_ready()
        for waiter in self._workflows_waiters:
            if not waiter.done():
                waiter.set_exception(JobFailed(f"The workflows cannot be loaded: {exc}"))
        self._workflows_waiters.clear()

    async def _workflow_library(self) -> Any:
        if self._workflows is not None:
            return self._workflows
        if self._workflows_error is not None:
            raise JobFailed(f"The workflows cannot be loaded: {self._workflows_error}")
        waiter = asyncio.get_running_loop().create_future()
        self._workflows_waiters.append(waiter)
        self._load_workflows()
        return await waiter

    def _on_items_loaded(self, items: list[GalleryItem]) -> None:
        for item in items:
            self._items.setdefault(item.id, item)
        self._items_loaded = True
        self._check_ready()
        self.gallery_changed.emit()

    def _check_ready(self) -> None:
        """Ready once the gallery is loaded and the workflows are loaded (or failed)."""
        workflows_done = self._workflows is not None or self._workflows_error is not None
        self.is_ready = self._items_loaded and workflows_done

    # -- servers ---------------------------------------------------------------------------
    def servers(self) -> tuple[ServerStatus, ...]:
        return self.pool.statuses()

    def refresh_servers(self) -> None:
        """Re-read every healthy server's model lists (e.g. after adding a model); the lists
        are read after this call, even when a read was already under way."""
        if not self._closed and self.pool.healthy():    # (none healthy: nothing to read)
            self._tasks.spawn(self.pool.refresh())

    def restart_local_server(self) -> None:
        """Restart the managed ComfyUI servers (after an error, or to pick up new custom
        nodes)."""
        for server in self.pool.servers():
            sup = self.pool.supervisors.get(server.key)
            if server.kind == "managed" and sup is not None:
                sup.restart()

    def set_gpus(self, gpus: Iterable[Any]) -> None:
        """This machine's GPUs (``GpuInfo``): with two or more, one managed ComfyUI per GPU.
        Applied now when the service runs, else at :meth:`start`."""
        self.pool.set_gpus(gpus)
        if self._started and not self._closed:
            self._apply_settings(self.settings_service.settings)

    def detect_gpus(self, detect: Any) -> None:
        """Run ``detect() -> GpuInfo list`` (blocking: NVML, sysfs, rocm-smi) on the io
        executor, then :meth:`set_gpus`; the managed servers start once it answered (one per
        GPU with several), so a multi-GPU machine never starts a single server first. A
        failed detection is logged and gives the single managed server."""
        self.pool.gpus_known = False

        def failed(exc: BaseException) -> None:
            logger.warning("GPU detection for the managed ComfyUI failed: {!r}", exc)
            self.set_gpus(())

        run_in_executor(self._io, lambda: list(detect()), self.set_gpus, failed)

    def job_assignments(self, job_id: str) -> list[tuple[int, str]]:
        """(picture index, server key) of a running job's pictures so far."""
        job = self._jobs.get(job_id)
        return list(job.assignments) if job is not None else []

    @property
    def local_log_path(self) -> str:
        """The log of the (first) managed ComfyUI: ``local.log``, or ``gpu<index>.log`` of the
        first GPU's server on a multi-GPU machine."""
        for server in self.pool.servers():
            if server.kind == "managed":
                return self.log_path(server.key)
        return str(self.pool.managed.log_path)

    def log_path(self, key: str) -> str:
        """The log file of managed server ``key`` ("" for a remote one)."""
        sup = self.pool.supervisors.get(key)
        return str(sup.log_path) if sup is not None else ""

    def _model_spec(self, family: str, lora: bool = False) -> Any:
        if self._workflows is None:
            return None
        return self._workflows.find(family, kind="txt2img", lora=lora)

    def model_choices(self, family: str) -> list[str]:
        """Main model files (checkpoints or diffusion models) the healthy servers list for
        ``family`` workflows, sorted, without duplicates."""
        from ...core.comfy.graph_check import model_choices

        spec = self._model_spec(family)
        param = spec.params.get("model") if spec is not None else None
        if param is None:
            return []
        from ...core.comfy.model_family import family_choices

        names: set[str] = set()
        for server in self.pool.healthy():
            if server.object_info is not None:
                names.update(model_choices(server.object_info, param.model_folder))
        # only files of the family, then those whose family is unknown (marked in the picker)
        return family_choices(sorted(names, key=str.casefold), family, self._known_families)

    def base_model_server(self, family: str, model_file: str) -> tuple[str, str] | None:
        """A ready server that lists ``model_file`` (a path or file name) as a main model of
        ``family``'s LoRA workflow: (server label, the name it lists it by); None when no
        healthy server has it (or the workflows are not loaded yet)."""
        from ...core.comfy.graph_check import model_choices
        from ...core.comfy.routing import resolve_name

        spec = self._model_spec(family, lora=True)
        param = spec.params.get("model") if spec is not None else None
        if param is None or not model_file:
            return None
        wanted = os.path.basename(model_file.replace("\\", "/"))
        for server in self.pool.healthy():
            if server.object_info is None:
                continue
            name = resolve_name(model_choices(server.object_info, param.model_folder), wanted)
            if name is not None:
                return server.label, name
        return None

    def models(self, folder: str) -> list[str]:
        """Files of a model folder (``controlnet``, ``loras``, ``upscale_models`` ...) that
        the healthy servers list, sorted, without duplicates."""
        from ...core.comfy.graph_check import model_choices

        names: set[str] = set()
        for server in self.pool.healthy():
            names.update(model_choices(server.object_info or {}, folder))
        return sorted(names, key=str.casefold)

    def feature_support(self, family: str, feature: str, lora: bool) -> tuple[bool, str]:
        """Whether a toggle (upscale, controlnet, ipadapter, facedetailer) can work for
        ``family`` on some healthy server, and if not, exactly what is missing where."""
        from ...core.comfy.graph_check import feature_support

        spec = self._model_spec(family, lora)
        if spec is None:
            return False, ("the workflows are still loading" if self._workflows is None
                           else f"there is no {family} workflow")
        if feature not in spec.features:
            feat = self._workflows.features.get(feature)
            if feat is None:
                return False, f"unknown option {feature!r}"
            return False, feat.unsupported or f"{feat.title} does not work with {family}"
        servers = self.pool.healthy()
        if not servers:
            return False, "no ComfyUI server is running"
        reasons = []
        for server in servers:
            if server.object_info is None:
                continue
            ok, why = feature_support(family, feature, server.object_info,
                                      library=self._workflows)
            if ok:
                return True, ""
            reasons.append((server.label, why))
        if len(reasons) == 1:
            return False, reasons[0][1]
        return False, "; ".join(f"{label}: {why}" for label, why in reasons)

    def lora_visibility(self, lora_path: str) -> list[tuple[str, bool, str]]:
        """Per server: (label, visible?, its name for the LoRA — or how to make it visible).
        A remote server with our upload node and its token counts as visible: the LoRA is
        pushed there before the job."""
        views = self.pool.views()
        rows = lora_visibility(views, lora_path, lora_folder=str(self.paths.loras))
        name = os.path.basename(lora_path.replace("\\", "/"))
        out = []
        for view, row in zip(views, rows, strict=True):
            ok, why = self._runner.pusher.state.get(view.key, (False, ""))
            if not row[1] and view.models is not None:
                if ok:
                    row = (row[0], True, f"isengard/{name} (uploaded before the first job)")
                elif why:
                    row = (row[0], False, f"{row[2]} (upload node: {why})")
            out.append(row)
        return out

    def _probe_upload(self, key: str) -> None:
        """A server's model lists were read: ask (again) whether LoRAs can be pushed there."""
        server = self.pool.get(key)
        pusher = self._runner.pusher
        if server is None or server.kind != "remote" or pusher.tokens is None or self._closed:
            return

        async def probe() -> None:
            before = pusher.state.get(key)
            if await pusher.probe(server) != before:
                self._announce_servers()

        self._tasks.spawn(probe(), name=f"upload node probe {key}")

    # -- jobs ------------------------------------------------------------------------------
    def set_upload_tokens(self, tokens: Any) -> None:
        """``tokens(url) -> str | None``: a remote server's LoRA upload token (blocking, e.g.
        the keyring; called on the file executor). With a token and our upload node on the
        server, a job's LoRA is pushed there first (:mod:`.lora_push`)."""
        self._runner.pusher.tokens = tokens
        for server in self.pool.healthy():
            self._probe_upload(server.key)

    def submit(self, request: GenerationRequest) -> str:
        """Start a job; returns its id. Progress, results and errors arrive as signals."""
        job_id = uuid.uuid4().hex[:12]
        cid = applog.current_correlation_id() or applog.new_correlation_id()
        job = Job(job_id, request, cid)
        self._jobs[job_id] = job
        with applog.correlation(cid):
            logger.info("generation job {} submitted ({}, batch {}, target {})", job_id,
                        request.family, request.batch, request.target)
        task = self._tasks.spawn(self._run(job), name=f"generation job {job_id}")
        job.task = task
        task.add_done_callback(lambda t: self._task_done(job, t))
        return job_id

    def _task_done(self, job: Job, task: asyncio.Future) -> None:
        if job.job_id in self._jobs:     # cancelled before it ever ran
            self._jobs.pop(job.job_id, None)
            if job.cancelled and not self._closed:
                self._fail_job(job, CANCELLED)

    async def _run(self, job: Job) -> None:
        coalescer: Throttler[Progress] = Throttler(self.job_progress.emit,
                                                   self.progress_interval_ms, parent=self)
        try:
            self.job_started.emit(job.job_id)
            if self._closed:
                raise JobFailed("Isengard is closing.")
            request = job.request
            if request.target not in TARGETS:
                raise JobFailed(f"Unknown target {request.target!r}.")
            if request.target == "staging" and request.lora is None:
                raise JobFailed("Generating for a dataset needs the character's trained LoRA.")
            items = await self._runner.run(job, coalescer.submit)
        except JobFailed as exc:
            coalescer.flush()
            self._fail_job(job, str(exc))
        except asyncio.CancelledError:
            coalescer.cancel()
            if job.cancelled and not self._closed:
                self._fail_job(job, CANCELLED)
        except ComfyError as exc:
            coalescer.flush()
            self._fail_job(job, str(exc))
        except Exception as exc:   # a bug: log it, show it, and end the job cleanly
            coalescer.cancel()
            if self._closed:           # e.g. the file executor is already shut down
                logger.info("generation job {} ended at shutdown: {}", job.job_id, exc)
                return
            with applog.correlation(job.cid):
                logger.opt(exception=exc).error("generation job {} failed unexpectedly",
                                                job.job_id)
            self._fail_job(job, f"The job stopped because of an unexpected error "
                                f"({type(exc).__name__}: {exc}). Reference: {job.cid}.")
            sys.excepthook(type(exc), exc, exc.__traceback__)
        else:
            coalescer.flush()
            shown = [item for item in items if item.status in ("gallery", "staging")]
            for item in shown:
                self._items[item.id] = item
            self._jobs.pop(job.job_id, None)
            self.job_finished.emit(job.job_id, tuple(items))
            if shown:
                self.gallery_changed.emit()
        finally:
            coalescer.cancel()
            coalescer.deleteLater()
            self._jobs.pop(job.job_id, None)

    def _fail_job(self, job: Job, message: str) -> None:
        with applog.correlation(job.cid):
            logger.info("generation job {} failed: {}", job.job_id, message)
        self._jobs.pop(job.job_id, None)
        self.job_failed.emit(job.job_id, message)

    def cancel(self, job_id: str) -> None:
        """Stop a job: interrupt it on its server (or drop it if it waits there); a job not
        yet sent is dropped at once. ``job_failed(job_id, "Generation cancelled.")`` follows."""
        job = self._jobs.get(job_id)
        if job is None or job.cancelled:
            return
        job.cancelled = True
        with applog.correlation(job.cid):
            logger.info("cancel generation job {}", job_id)
        if job.running:
            runs = list(job.running.values())      # every picture on its server

            async def cancel() -> None:
                for client, prompt_id in runs:
                    try:
                        await client.cancel(prompt_id)
                    except ComfyError as exc:
                        logger.warning("cancel of job {} on its server failed: {}", job_id,
                                       exc)
                        if job.task is not None:
                            job.task.cancel()

            self._tasks.spawn(cancel(), name=f"cancel generation job {job_id}")
        elif job.task is not None:
            job.task.cancel()

    def active_jobs(self) -> list[str]:
        return list(self._jobs)

    def job_request(self, job_id: str) -> GenerationRequest | None:
        """The request of a job still running (None once it ended)."""
        job = self._jobs.get(job_id)
        return job.request if job is not None else None

    # -- draft funnel, more like this, lineage ---------------------------------------------
    def funnel_sizes(self) -> FunnelSizes:
        """The funnel sizes chosen in Settings (drafts → kept → kept → 1), clamped."""
        s = self.settings_service.settings
        return FunnelSizes.from_values(getattr(s, "funnel_drafts", 20),
                                       getattr(s, "funnel_standard", 8),
                                       getattr(s, "funnel_final", 3))

    def explore(self, base: GenerationRequest, sizes: FunnelSizes | None = None
                ) -> tuple[str, str]:
        """Start a funnel from the form's request: its drafts as one job (fixed distinct seeds
        from ``base.seed``, or a random one). Returns (funnel id, job id)."""
        from ...core.comfy.workflows import random_seed

        funnel_id = uuid.uuid4().hex[:12]
        seed = base.seed if base.seed is not None else random_seed()
        request = draft_request(base, sizes or self.funnel_sizes(), funnel_id, seed)
        return funnel_id, self.submit(request)

    def funnel_items(self, funnel_id: str, stage: str | None = None) -> list[GalleryItem]:
        """The pictures of a funnel (of one stage when given), oldest first."""
        return sorted((i for i in self._items.values() if i.funnel_id == funnel_id
                       and (stage is None or i.stage == stage)), key=lambda i: i.id)

    def funnels(self) -> list[tuple[str, GalleryItem]]:
        """Every funnel still in memory, newest first, with its first picture."""
        first: dict[str, GalleryItem] = {}
        for item in sorted(self._items.values(), key=lambda i: i.id):
            if item.funnel_id:
                first.setdefault(item.funnel_id, item)
        return sorted(first.items(), key=lambda kv: kv[1].id, reverse=True)

    def set_pick(self, item_ids: Iterable[int], pick: str) -> None:
        """Record a funnel decision ("keep", "discard", "" = undecided); the files stay, so
        a re-opened stage can be decided again."""
        ids = [i for i in item_ids if i in self._items]
        if not ids or self._closed:
            return
        # the memory is the truth at once (Next stage reads it); the rows follow in order.
        # (Copying the written rows back would let an older write's answer, still on its way,
        # undo a newer choice: K then 1 then 1 quickly lost the Keep.)
        for item_id in ids:
            self._items[item_id] = replace(self._items[item_id], pick=pick)
        self.gallery_changed.emit()
        outputs = self.paths.outputs

        def op(conn: sqlite3.Connection) -> WriteResult[list[GalleryItem]]:
            rows = GenerationsRepository(conn, outputs).set_pick(ids, pick)
            return WriteResult(rows, ChangeSet(generations=True))

        self.library.database.write(
            op, None, lambda exc: self.failed.emit(f"Could not record the choice: {exc}"))

    def advance(self, funnel_id: str, stage: str, upscale: bool = False) -> list[str]:
        """"Next stage": every kept picture of ``stage`` without a child in the next stage yet
        (made or being made) is rendered again for it with the same seed (one job each). Returns the job ids; []
        when nothing is kept or every kept picture already has its next-stage picture."""
        after = next_stage(stage)
        if after is None:
            return []
        made = {i.parent_id for i in self.funnel_items(funnel_id, after)
                if i.parent_id is not None}
        # ... or being made (Next stage pressed twice while the first ones run)
        made |= {j.request.parent_id for j in self._jobs.values()
                 if j.request.funnel_id == funnel_id and j.request.stage == after
                 and j.request.origin == "funnel" and not j.cancelled
                 and j.request.parent_id is not None}
        kept = [i for i in self.funnel_items(funnel_id, stage)
                if i.pick == "keep" and i.id not in made]
        return [self.submit(stage_request(item, after, upscale=upscale and after == "final"))
                for item in kept]

    def delete_funnel(self, funnel_id: str) -> int:
        """"Delete this exploration": its jobs still running are cancelled, its pictures go
        to the OS trash and their rows are removed, exactly as the gallery's Delete (one trash
        thread; a picture that cannot be moved keeps its row and is named in ``failed``); the
        rows of its pictures discarded earlier (files already in the trash) go too. Pictures
        kept into a dataset (status "kept", no longer in memory) are left as they are.
        Returns how many pictures go to the trash."""
        if not funnel_id or self._closed:
            return 0
        for job_id, job in list(self._jobs.items()):
            if job.request.funnel_id == funnel_id:
                self.cancel(job_id)
        gone = [i.id for i in self.funnel_items(funnel_id)]
        logger.info("delete exploration {}: {} pictures", funnel_id, len(gone))
        self.delete(gone)
        outputs = self.paths.outputs

        def op(conn: sqlite3.Connection) -> WriteResult[list[int]]:
            ids = GenerationsRepository(conn, outputs).delete_discarded(funnel_id)
            return WriteResult(ids, ChangeSet(generations=True))

        self.library.database.write(
            op, None, lambda exc: self.failed.emit(f"Could not record the change: {exc}"))
        return len(gone)

    def more_like_this(self, item_id: int, denoise: float = MORE_LIKE_DENOISE,
                       count: int = MORE_LIKE_COUNT, in_funnel: bool = True) -> str:
        """Image to image from a picture at a low denoise with nearby seeds; the children
        name it as their parent and stay in its funnel stage — or, with ``in_funnel=False``
        (asked from the gallery), join the gallery. Returns the job id; ValueError for an
        unknown picture or settings out of range."""
        item = self._items.get(item_id)
        if item is None:
            raise ValueError(f"Picture {item_id} is no longer in the gallery.")
        request = more_like_request(item, denoise, count)
        if not in_funnel:
            request = replace(request, funnel_id="", stage="")
        return self.submit(request)

    def lineage(self, item_id: int, on_done: Any) -> None:
        """Read ``item_id``'s lineage from the database (ancestors and descendants, any
        status) and call ``on_done(list[LineageRow])`` on the UI thread."""
        outputs = self.paths.outputs

        def read(conn: sqlite3.Connection) -> list[LineageRow]:
            return lineage_rows(GenerationsRepository(conn, outputs).lineage(item_id), item_id)

        self.library.database.read(read, on_done)

    # -- gallery and staging ---------------------------------------------------------------
    def gallery(self) -> list[GalleryItem]:
        """Generated images in the gallery, newest first (memory only)."""
        return sorted((i for i in self._items.values() if i.status == "gallery"),
                      key=lambda i: (i.created, i.id), reverse=True)

    def staging(self, character_id: int) -> list[GalleryItem]:
        """Images generated for ``character_id``'s dataset waiting for Keep or Discard."""
        return sorted((i for i in self._items.values()
                       if i.status == "staging" and i.character_id == character_id),
                      key=lambda i: (i.created, i.id), reverse=True)

    def item(self, item_id: int) -> GalleryItem | None:
        return self._items.get(item_id)

    def keep(self, item_ids: Iterable[int]) -> None:
        """Add staged images to their character's dataset (caption = the prompt with the trigger word,
        source synthetic); they leave the staging area."""
        groups: dict[int, list[GalleryItem]] = {}
        for item_id in item_ids:
            item = self._items.get(item_id)
            if item is None or item.status != "staging" or item.character_id is None:
                continue
            groups.setdefault(item.character_id, []).append(item)
        for character_id, items in groups.items():
            character = self.library.character(character_id)
            if character is None:
                self.failed.emit("That character no longer exists; the images stay in the "
                                 "staging area.")
                continue
            trigger = character.trigger_word
            captions = {item.path: with_trigger(item.prompt, trigger) for item in items}
            by_path = {item.path: item for item in items}

            def done(outcome: ImportOutcome, by_path: dict[str, GalleryItem] = by_path) -> None:
                rejected = outcome.rejected_by_source
                kept = [by_path[p].id for p in list(outcome.added_by_source)
                        + list(outcome.skipped_by_source) if p in by_path]
                if rejected:
                    self.failed.emit("Some images could not be added to the dataset and stay "
                                     "in the staging area:\n" + "\n".join(
                                         f"{p}: {why}" for p, why in rejected.items()))
                self._set_status(kept, "kept")

            self.library.import_photos(
                character_id, list(captions), captions=captions, source=SYNTHETIC_SOURCE,
                announce=False, on_done=done,
                on_failure=lambda exc: self.failed.emit(
                    f"Could not add the images to the dataset: {exc}"))

    def discard(self, item_ids: Iterable[int]) -> None:
        """Send generated images (staging or gallery) to the OS trash; their rows stay,
        marked discarded."""
        self._to_trash(item_ids, "discard", lambda gone: self._set_status(gone, "discarded"))

    def delete(self, item_ids: Iterable[int]) -> None:
        """Gallery "Delete": the images go to the OS trash and their rows are removed."""
        self._to_trash(item_ids, "delete", self._remove_rows)

    def _to_trash(self, item_ids: Iterable[int], verb: str, record: Any) -> None:
        items = [self._items[i] for i in item_ids if i in self._items]
        if not items or self._closed:
            return

        def done(result: tuple[list[int], list[str]]) -> None:
            gone, problems = result
            if problems:
                self.failed.emit("Some images could not be moved to the trash and were "
                                 "kept:\n" + "\n".join(problems))
            if gone:
                record(gone)

        self._trash.move([(item.id, item.path) for item in items], done,
                         lambda exc: self.failed.emit(f"Could not {verb} the images: {exc}"))

    def _remove_rows(self, ids: list[int]) -> None:
        outputs = self.paths.outputs

        def removed(_result: Any) -> None:
            for item_id in ids:
                self._items.pop(item_id, None)
            self.gallery_changed.emit()

        def op(conn: sqlite3.Connection) -> WriteResult[None]:
            GenerationsRepository(conn, outputs).delete(ids)
            return WriteResult(None, ChangeSet(generations=True))

        self.library.database.write(
            op, removed, lambda exc: self.failed.emit(f"Could not record the change: {exc}"))

    def _set_status(self, ids: list[int], status: str) -> None:
        if not ids:
            return
        outputs = self.paths.outputs

        def changed(rows: list[GalleryItem]) -> None:
            for row in rows:
                if row.status in ("gallery", "staging"):
                    self._items[row.id] = row
                else:
                    self._items.pop(row.id, None)
            self.gallery_changed.emit()

        def op(conn: sqlite3.Connection) -> WriteResult[list[GalleryItem]]:
            rows = GenerationsRepository(conn, outputs).set_status(ids, status)
            return WriteResult(rows, ChangeSet(generations=True))

        self.library.database.write(
            op, changed, lambda exc: self.failed.emit(f"Could not record the change: {exc}"))
