"""One generation job from request to images on disk (used by the generation service).

:class:`JobRunner.run` picks the workflow, fills its parameters (trigger word, random seed,
size for the aspect, the quality tier's sampler settings, batch), routes the job to a server
(:mod:`..core.comfy.routing`; a LoRA is first pushed to remote servers that have our
upload node, :mod:`.lora_push`), builds the graph for that server (its LoRA name, its auxiliary
model files), checks it against the server's ``/object_info`` (every gap named), uploads input
images, runs it through ``ComfyClient.run`` with progress, fetches the images, embeds metadata,
writes them atomically under ``outputs/generations/<YYYY-MM-DD>/`` and records them in the
``generations`` table. The pictures of a batch are spread over the servers of the job's tier
(:mod:`.batch`); a picture whose server stops answering goes to another server.
Everything runs on the asyncio loop; file work runs on an executor.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import re
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from loguru import logger

from ...core import logging as applog
from ...core.comfy.errors import ComfyConnectionError, ComfyError, ComfyInterrupted
from ...core.comfy.jobs import GalleryItem, GenerationRequest
from ...core.comfy.routing import ModelNeed, Route, canonical_folder
from ...core.comfy.tiers import job_tier
from ...core.db.generations import GenerationsRepository
from ...core.fsutil import atomic_write_bytes
from ...core.paths import AppPaths
from ...core.types import Progress
from ..database import ChangeSet, WriteResult
from ..ops import await_executor
from .batch import BatchDispatcher
from .lora_push import LoraPusher
from .progress import ProgressTracker, png_size
from ...core.dataset.captions import with_trigger

__all__ = ["CANCELLED", "Job", "JobFailed", "JobRunner"]

CANCELLED = "Generation cancelled."
INPUT_PLACEHOLDER = "isengard_input.png"
UPLOAD_SUBFOLDER = "isengard"
_IMAGE_FEATURE_INPUT = re.compile(r"^(?P<feature>[a-z]+)_(?P<param>[a-z_]+)$")


class JobFailed(Exception):
    """The job cannot go on; ``str(e)`` is the message for the user."""


@dataclass
class Job:
    job_id: str
    request: GenerationRequest
    cid: str
    task: asyncio.Future | None = None
    prompt_id: str = ""
    server_key: str = ""
    client: Any = None
    cancelled: bool = False
    attempts: list[str] = field(default_factory=list)
    upload_problems: list[str] = field(default_factory=list)   # LoRA pushes refused
    blocked: dict[str, str] = field(default_factory=dict)      # server key -> why not there
    running: dict[str, tuple[Any, str]] = field(default_factory=dict)  # server -> (client, prompt)
    assignments: list[tuple[int, str]] = field(default_factory=list)  # (picture, server key)


@dataclass
class _Plan:
    spec: Any
    params: dict[str, Any]
    features: dict[str, dict[str, Any]]
    uploads: dict[tuple[str, str], str]        # (feature or "", param) -> local file
    needs: list[ModelNeed]
    model_folder: str
    seed: int
    width: int
    height: int
    tier: dict[str, Any]
    batch: int = 1

    def pictures(self) -> list[_Plan]:
        """One plan per picture, seeds ``seed, seed+1, …`` (wrapping past the largest seed).

        ComfyUI draws a latent batch's noise from one generator seeded once
        (``comfy.sample.prepare_noise``), so picture *i* of a batch cannot be made again from
        any seed alone; one prompt per picture, each with its own seed, can.
        """
        from ...core.comfy.workflow_manifest import MAX_SEED

        plans = []
        for index in range(self.batch):
            seed = (self.seed + index) % (MAX_SEED + 1)
            params = dict(self.params)
            if "seed" in params:
                params["seed"] = seed
            if "batch" in params:
                params["batch"] = 1
            plans.append(replace(self, params=params, seed=seed, batch=1))
        return plans


@dataclass(frozen=True)
class _Picture:
    """One finished prompt: its image bytes, the graph sent and the seed it was made with."""

    plan: _Plan
    graph: dict
    prompt_id: str
    image: bytes
    server: Any


class JobRunner:
    """Runs jobs for the service; see the module docstring."""

    def __init__(self, paths: AppPaths, pool: Any, library: Any, io: Executor,
                 workflows: Callable[[], Any]) -> None:
        self.paths = paths
        self.pool = pool
        self.library = library
        self.io = io
        self.workflows = workflows        # async () -> WorkflowLibrary
        self.pusher = LoraPusher(pool, io)   # .tokens is set by the service (keyring)
        # (job id, message): something the user should know about a running job
        self.notify: Callable[[str, str], None] = lambda _job, _message: None

    # -- planning ----------------------------------------------------------------------------
    async def plan(self, job: Job) -> _Plan:
        from ...core.comfy.funnel import scaled_size
        from ...core.comfy.presets import FAMILY_MULTIPLE, family_base, size_for, tier_settings
        from ...core.comfy.workflow_manifest import FEATURES
        from ...core.comfy.workflows import random_seed

        req = job.request
        lib = await self.workflows()
        kind = "img2img" if "img2img" in req.features else "txt2img"
        spec = lib.find(req.family, kind=kind, lora=req.lora is not None)
        if spec is None:
            raise JobFailed(f"There is no {kind} workflow for {req.family}"
                            f"{' with a LoRA' if req.lora else ''} in {lib.folder}.")
        unknown = sorted(set(req.features) - set(FEATURES) - {"img2img"})
        if unknown:
            raise JobFailed(f"Unknown option(s): {', '.join(unknown)}.")
        features: dict[str, dict[str, Any]] = {}
        for name in sorted(set(req.features) & set(FEATURES)):
            if name not in spec.features:
                feat = lib.features.get(name)
                why = feat.unsupported if feat is not None and feat.unsupported else \
                    f"it does not work with {req.family} workflows"
                raise JobFailed(f"{feat.title if feat else name} cannot be used here: {why}.")
            features[name] = {}
        model_param = spec.params.get("model")
        if not req.model:
            what = model_param.label if model_param and model_param.label else "model"
            raise JobFailed(f"Choose a {what} first (the Generate tab lists the files the "
                            "servers have).")
        try:
            width, height = size_for(req.aspect, req.family)
            tier = tier_settings(req.tier, req.family).as_params()
            if req.size_scale != 1.0:      # funnel drafts: smaller pictures
                if not 0.25 <= float(req.size_scale) <= 1.0:
                    raise ValueError(f"The size scale must be between 0.25 and 1, not "
                                     f"{req.size_scale}.")
                width, height = scaled_size(width, height, float(req.size_scale),
                                            FAMILY_MULTIPLE[family_base(req.family)])
            if req.width or req.height:     # a fixed size (a trainer's sample size)
                if not (64 <= int(req.width) <= 4096 and 64 <= int(req.height) <= 4096):
                    raise ValueError(f"The picture size must be 64 to 4096 pixels a side, "
                                     f"not {req.width}×{req.height}.")
                width, height = int(req.width), int(req.height)
            if req.steps:
                if not 1 <= int(req.steps) <= 200:
                    raise ValueError(f"The sampler steps must be 1 to 200, not {req.steps}.")
                tier = {**tier, "steps": int(req.steps)}
            if req.cfg is not None:
                if not 0.0 <= float(req.cfg) <= 100.0:
                    raise ValueError(f"The CFG scale must be 0 to 100, not {req.cfg}.")
                tier = {**tier, "cfg": float(req.cfg)}
            if req.guidance is not None:
                tier = {**tier, "guidance": float(req.guidance)}
            if req.sampler:
                tier = {**tier, "sampler": req.sampler}
            if req.scheduler:
                tier = {**tier, "scheduler": req.scheduler}
        except ValueError as exc:
            raise JobFailed(str(exc)) from None
        if req.target == "compare" and (not req.output_path or int(req.batch) != 1):
            raise JobFailed("A comparison picture needs its file (output_path) and batch 1.")
        if not 1 <= int(req.batch) <= 64:
            raise JobFailed(f"The batch size must be between 1 and 64, not {req.batch}.")
        seed = int(req.seed) if req.seed is not None else random_seed()
        prompt = with_trigger(req.prompt, req.lora.trigger) if req.lora else req.prompt
        values: dict[str, Any] = {"prompt": prompt, "negative": req.negative, "seed": seed,
                                  "width": width, "height": height, "batch": int(req.batch),
                                  "model": req.model, **tier,
                                  "filename_prefix": f"isengard/{job.job_id[:8]}"}
        if req.lora is not None:
            values["lora_strength"] = float(req.lora.strength)
        params = {k: v for k, v in values.items() if spec.accepts(k)}
        uploads: dict[tuple[str, str], str] = {}
        if kind == "img2img":
            init = req.feature_inputs.get("init_image") or req.parent_image
            if not init:
                raise JobFailed("Image to image needs a starting image.")
            uploads[("", "image")] = init
            if "denoise" in req.feature_inputs and spec.accepts("denoise"):
                params["denoise"] = float(req.feature_inputs["denoise"])
        needs = [ModelNeed(canonical_folder(model_param.model_folder if model_param
                                            else "checkpoints"), req.model)]
        if req.lora is not None:
            needs.append(ModelNeed("loras", os.path.basename(req.lora.path)))
        for key, value in req.feature_inputs.items():
            match = _IMAGE_FEATURE_INPUT.match(key)
            if not match or match["feature"] not in features:
                continue
            feat = spec.features[match["feature"]]
            pspec = feat.params.get(match["param"])
            if pspec is None:
                raise JobFailed(f"{feat.title} has no setting '{match['param']}'.")
            if pspec.type == "image":
                uploads[(feat.name, pspec.name)] = value
            elif pspec.type == "model":
                features[feat.name][pspec.name] = value
                needs.append(ModelNeed(canonical_folder(pspec.model_folder), value))
            elif pspec.type in ("int", "seed"):
                features[feat.name][pspec.name] = int(value)
            elif pspec.type == "float":
                features[feat.name][pspec.name] = float(value)
            else:
                features[feat.name][pspec.name] = value
        for name, feat in ((n, spec.features[n]) for n in features):
            for pname, pspec in feat.params.items():
                if pspec.required and pname not in features[name] \
                        and (name, pname) not in uploads:
                    raise JobFailed(f"{feat.title} needs its {pspec.label or pname} "
                                    f"(give '{name}_{pname}').")
        return _Plan(spec, params, features, uploads, needs, needs[0].folder, seed, width,
                     height, tier, batch=int(req.batch))

    def _graph(self, plan: _Plan, route: Route, server: Any,
               uploaded: Mapping[tuple[str, str], str] | None = None) -> dict:
        from ...core.comfy.workflows import build_graph

        params = dict(plan.params)
        params["model"] = route.name_for(plan.model_folder, params["model"])
        features = {k: dict(v) for k, v in plan.features.items()}
        for need in plan.needs[1:]:
            if need.folder == "loras" and "lora" in plan.spec.params:
                params["lora"] = route.name_for("loras", need.name)
        for name, values in features.items():
            for pname, value in list(values.items()):
                pspec = plan.spec.features[name].params[pname]
                if pspec.type == "model":
                    values[pname] = route.name_for(canonical_folder(pspec.model_folder), value)
        for (feature, pname), _local in plan.uploads.items():
            name = (uploaded or {}).get((feature, pname), INPUT_PLACEHOLDER)
            (features[feature] if feature else params)[pname] = name
        return build_graph(plan.spec, params, features=features,
                           object_info=server.object_info)

    def _check(self, graph: dict, server: Any, plan: _Plan) -> list[str]:
        from ...core.comfy.graph_check import check_graph

        gaps = check_graph(graph, server.object_info or {})
        # input images are uploaded right before the run; the server cannot list them yet
        return [g.message for g in gaps
                if not (plan.uploads and g.class_type == "LoadImage" and g.input_name == "image")]

    # -- running -----------------------------------------------------------------------------
    async def run(self, job: Job, progress: Callable[[Progress], None]
                  ) -> list[GalleryItem]:
        with applog.correlation(job.cid):
            whole = await self.plan(job)
            try:
                tier = job_tier(job.request.server_tier, job.request.tier)
            except ValueError as exc:
                raise JobFailed(str(exc)) from None
            if job.request.lora is not None:    # remote servers with our upload node
                job.upload_problems, job.blocked = await self.pusher.push(
                    job.request.lora.path, whole.needs, job.job_id, progress)
            dispatcher = BatchDispatcher(self, job, whole.pictures(), tier, progress,
                                         lambda message: self.notify(job.job_id, message))
            pictures = await dispatcher.run()
            return await self._save(job, whole, pictures)

    async def run_picture(self, job: Job, plan: _Plan, route: Route, server: Any,
                          progress: Callable[[Progress], None]) -> list[_Picture]:
        """One prompt (one picture's seed) on ``server``; ``ComfyConnectionError`` when the
        server stops answering (the dispatcher sends the picture elsewhere)."""
        result, graph, client = await self._run_on(job, plan, route, server, progress)
        server.loaded_model = route.name_for(plan.model_folder, plan.needs[0].name)
        images = []
        for ref in result.images:
            try:
                images.append(await client.fetch_image(ref))
            except ComfyConnectionError:
                raise
            except ComfyError as exc:
                raise JobFailed(str(exc)) from None
        if not images:
            raise JobFailed(f"ComfyUI at {server.url} finished the job but returned no "
                            "image.")
        return [_Picture(plan=plan, graph=graph, prompt_id=result.prompt_id, image=data,
                         server=server) for data in images]

    async def _run_on(self, job: Job, plan: _Plan, route: Route, server: Any,
                      progress: Callable[[Progress], None]) -> tuple[Any, dict, Any]:
        client = server.client
        if client is None:
            raise ComfyConnectionError(f"{server.label} is not connected.", server=server.url)
        job.server_key, job.client = server.key, client
        job.attempts.append(server.key)
        # counted from the moment it is routed, so jobs submitted together spread out
        server.in_flight += 1
        self.pool.emit_if_changed()
        try:
            result, graph = await self._upload_and_run(job, plan, route, server, client,
                                                       progress)
            return result, graph, client
        finally:
            job.running.pop(server.key, None)
            server.in_flight = max(0, server.in_flight - 1)
            self.pool.emit_if_changed()
            self.pool.poll_queue(server.key)     # so "busy · queue N" ends now, not at a poll

    async def _upload_and_run(self, job: Job, plan: _Plan, route: Route, server: Any,
                              client: Any, progress: Callable[[Progress], None]
                              ) -> tuple[Any, dict]:
        uploaded: dict[tuple[str, str], str] = {}
        for key, local in plan.uploads.items():
            path = Path(local)
            try:
                data = await await_executor(self.io, path.read_bytes)
            except OSError as exc:
                raise JobFailed(f"Cannot read the input image {path}: "
                                f"{exc.strerror or exc}.") from None
            name = f"{job.job_id[:8]}-{key[0] or 'init'}-{path.stem[:40]}{path.suffix or '.png'}"
            uploaded[key] = await client.upload_image(data, name, subfolder=UPLOAD_SUBFOLDER,
                                                      overwrite=True)
        graph = self._graph(plan, route, server, uploaded)
        prompt_id = job.prompt_id = str(uuid.uuid4())
        job.running[server.key] = (client, prompt_id)
        logger.info("job {}: {} on {} (prompt {})", job.job_id, plan.spec.name, server.label,
                    prompt_id)
        try:
            if job.cancelled:
                raise JobFailed(CANCELLED)
            result = await client.run(
                graph, prompt_id=prompt_id,
                extra_data={"isengard": {"correlation_id": job.cid, "job_id": job.job_id}},
                on_event=ProgressTracker(job.job_id, server.key, graph, progress))
        except ComfyInterrupted:
            if job.cancelled:
                raise JobFailed(CANCELLED) from None
            raise
        except ComfyError as exc:
            if isinstance(exc, ComfyConnectionError):
                raise
            raise JobFailed(str(exc)) from None
        return result, graph

    # -- saving ------------------------------------------------------------------------------
    async def _save(self, job: Job, plan: _Plan, pictures: list[_Picture]
                    ) -> list[GalleryItem]:
        from ...core.comfy import metadata

        req = job.request
        lora = req.lora
        character_id = req.character_id if req.character_id is not None else \
            (lora.character_id if lora else None)
        status = req.target if req.target in ("staging", "compare") else "gallery"
        prompt = str(plan.params.get("prompt", req.prompt))
        base_params: dict[str, Any] = {
            "prompt": req.prompt, "negative": req.negative, "family": req.family,
            "model": req.model, "aspect": req.aspect, "tier": req.tier, "seed": plan.seed,
            "batch": req.batch, "width": plan.width, "height": plan.height, **plan.tier,
            "features": sorted(req.features), "feature_inputs": dict(req.feature_inputs),
            "target": req.target, "character_id": character_id,
            "parent_image": req.parent_image, "parent_id": req.parent_id,
            "funnel_id": req.funnel_id, "stage": req.stage, "origin": req.origin,
            "server_tier": req.server_tier, "size_scale": req.size_scale,
            "lora": None if lora is None else {"character_id": lora.character_id,
                                               "path": lora.path, "strength": lora.strength,
                                               "trigger": lora.trigger},
        }
        negative = req.negative if "negative" in plan.params else ""

        def parameters(seed: int) -> str:
            return metadata.a1111_parameters(
                prompt, negative, plan.tier["steps"], plan.tier["sampler"],
                plan.tier["cfg"], seed, plan.width, plan.height, req.model,
                lora=os.path.basename(lora.path) if lora else None,
                strength=lora.strength if lora else None, scheduler=plan.tier.get("scheduler"),
                guidance=plan.tier.get("guidance") if "guidance" in plan.params else None,
                denoise=plan.params.get("denoise"))
        folder = self.paths.outputs / "generations" / datetime.now().strftime("%Y-%m-%d")
        stamp = datetime.now().strftime("%H%M%S")
        fixed = Path(req.output_path) if req.target == "compare" else None

        def write() -> list[tuple[str, int, int]]:
            out = []
            # The PNG names the LoRA by file name and hash, never by its absolute path (the
            # user's home folder would travel with every image they share).
            lora_meta = None if lora is None else {
                "character_id": lora.character_id, "file": os.path.basename(lora.path),
                "sha256": _sha256_or_empty(lora.path), "strength": lora.strength,
                "trigger": lora.trigger}
            for index, picture in enumerate(pictures):
                data = picture.image
                isengard = {"job_id": job.job_id, "prompt_id": picture.prompt_id,
                            "character_id": character_id, "lora": lora_meta,
                            "seed": picture.plan.seed, "batch_index": index,
                            "workflow": plan.spec.name, "model": req.model,
                            "parent_image": req.parent_image, "server": picture.server.url,
                            "parent_id": req.parent_id, "funnel_id": req.funnel_id,
                            "stage": req.stage, "origin": req.origin,
                            "server_tier": req.server_tier}
                size = png_size(data)
                if size is not None:
                    data = metadata.embed_metadata(data, parameters=parameters(picture.plan.seed),
                                                   prompt_graph=picture.graph,
                                                   isengard=isengard)
                ext = ".png" if size is not None else ".bin"
                path = folder / f"{stamp}-{job.job_id[:8]}-{index + 1:02d}{ext}"
                if fixed is not None:       # the comparison's cell: its file (batch is 1;
                    #                             a workflow saving more images numbers them)
                    path = fixed if index == 0 else fixed.with_name(
                        f"{fixed.stem}-{index + 1}{fixed.suffix}")
                atomic_write_bytes(path, data)
                w, h = size or (plan.width, plan.height)
                out.append((str(path), int(w), int(h)))
            return out

        written = await await_executor(self.io, write)
        rows = [GalleryItem(id=0, job_id=job.job_id, path=path, prompt=prompt,
                            negative=req.negative, seed=picture.plan.seed, width=w, height=h,
                            workflow=plan.spec.name, model=req.model,
                            lora_path=lora.path if lora else "",
                            lora_strength=float(lora.strength) if lora else 0.0,
                            character_id=character_id, status=status,
                            params={**base_params, "seed": picture.plan.seed,
                                    "batch_index": i},
                            created="", server=picture.server.url,
                            parent_image=req.parent_image, prompt_id=picture.prompt_id,
                            parent_id=req.parent_id, funnel_id=req.funnel_id,
                            stage=req.stage)
                for i, ((path, w, h), picture) in enumerate(zip(written, pictures, strict=True))]
        if fixed is not None:      # not a gallery picture: written, not recorded
            logger.info("job {}: comparison picture saved as {}", job.job_id, fixed)
            return rows
        outputs = self.paths.outputs
        future = asyncio.get_running_loop().create_future()

        def ok(items: list[GalleryItem]) -> None:
            if not future.done():
                future.set_result(items)

        def bad(exc: BaseException) -> None:
            if not future.done():
                future.set_exception(exc)

        def op(conn: sqlite3.Connection) -> WriteResult[list[GalleryItem]]:
            return WriteResult(GenerationsRepository(conn, outputs).insert(rows),
                               ChangeSet(generations=True))

        self.library.database.write(op, ok, bad)
        items = await future
        logger.info("job {}: {} image(s) saved in {}", job.job_id, len(items), folder)
        return items


def _sha256_or_empty(path: str) -> str:
    """The file's sha256 (hex), or "" when it cannot be read."""
    from ...core.comfy.metadata import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return ""
