"""Headless ComfyUI commands: ``isengard comfy-check`` and ``isengard generate`` (no Qt).

Exit status, both commands:

* **0** – done (comfy-check: the server answered and at least one workflow can run on it);
* **1** – the server answered but cannot do it (comfy-check: no workflow can run; generate:
  gaps in the graph, the LoRA is not on the server, ComfyUI refused or failed the job, Ctrl+C);
* **2** – could not start: bad arguments, unknown workflow, unreadable file, server unreachable
  or answering with errors.

Messages for people go to stderr, results to stdout (``--json``: one JSON object); log
records go to the app's log file, never to stderr. While ``generate`` waits it says where the
job is ("queued (position N)", "running node X (KSampler) for 2 min"); ``--timeout`` sets an
overall deadline (the job is then taken back from the server), ``--request-timeout`` the
limit of each request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.comfy.client import ComfyClient
from ..core.comfy.errors import (ComfyConnectionError, ComfyError, ComfyExecutionError,
                                 ComfyHTTPError, ComfyInterrupted, ComfyValidationError)
from ..core.comfy.types import NodeProgress, NodeStarted, RunEvent, RunStarted

OK, FAILED, CANNOT_START = 0, 1, 2


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``comfy-check`` and ``generate`` to the app's subcommands."""
    check = sub.add_parser(
        "comfy-check", help="check a ComfyUI server: reachable, GPU, which workflows can run",
        description="Connects to a ComfyUI server and reports its version, GPU and VRAM, queue "
                    "length, and for every workflow in the library whether it can run there and "
                    "what it is missing. Exit status 0 when at least one workflow can run, 1 when "
                    "none can, 2 when the server cannot be reached.")
    check.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8188")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--workflows", type=Path, default=None,
                       help="workflow folder (default: the app's own)")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")

    gen = sub.add_parser(
        "generate", help="generate images through a ComfyUI server",
        description="Builds a workflow from the library with your prompt, checks it against the "
                    "server's node and model lists, runs it and writes the PNGs (with A1111, "
                    "ComfyUI and Isengard metadata) into --out. Prints the written paths. "
                    "Exit status 0 done, 1 the server cannot do it or the job failed, 2 bad "
                    "arguments or the server cannot be reached.")
    gen.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8188")
    gen.add_argument("--workflow", required=True, help="workflow name (see comfy-check)")
    gen.add_argument("--prompt", default=None,
                     help="the prompt text (required except for upscale workflows)")
    gen.add_argument("--negative", default=None, help="negative prompt")
    gen.add_argument("--model", default=None,
                     help="model file as the server lists it (default: the first one it lists)")
    gen.add_argument("--lora", default=None, metavar="FILE",
                     help="LoRA file; the server must list it under models/loras")
    gen.add_argument("--strength", type=float, default=1.0, help="LoRA strength (default 1.0)")
    gen.add_argument("--seed", type=int, default=None, help="seed (default: random)")
    gen.add_argument("--width", type=int, default=None)
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--steps", type=int, default=None)
    gen.add_argument("--batch", type=int, default=None, help="images per run")
    gen.add_argument("--image", type=Path, default=None,
                     help="input image for img2img and upscale workflows (uploaded to the server)")
    gen.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    gen.add_argument("--json", action="store_true", help="print one JSON object with the paths")
    gen.add_argument("--workflows", type=Path, default=None,
                     help="workflow folder (default: the app's own)")
    gen.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="give up (and take the job back from the server) when the images "
                          "are not done after this many seconds (default: no limit)")
    gen.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="seconds per request to the server (default 30)")


# --------------------------------------------------------------------------- comfy-check

def _quiet_logs() -> None:
    """Log records go to the app's log file, never to this command's stderr (which carries
    messages for people only)."""
    from ..core import logging as applog
    from ..core.paths import resolve_paths

    try:
        applog.setup_logging(resolve_paths().ensure(), console=False)
    except OSError:
        from loguru import logger

        logger.remove()


def comfy_check(args: argparse.Namespace) -> int:
    _quiet_logs()
    return asyncio.run(_comfy_check(args))


async def _comfy_check(args: argparse.Namespace) -> int:
    from ..core.comfy.workflow_manifest import WorkflowError, WorkflowLibrary
    from ..core.comfy.graph_check import workflow_availability

    report: dict[str, Any] = {"url": args.url, "reachable": False}
    try:
        client = ComfyClient(args.url, timeout=args.timeout)
    except ValueError as exc:
        return _fail_start(args, report, f"Not a server address: {exc}.")
    async with client:
        report["url"] = client.base_url
        try:
            stats = await client.system_stats()
            state = await client.queue()
            info = await client.object_info()
        except ComfyError as exc:
            return _fail_start(args, report, str(exc))
    report.update(reachable=True, comfyui_version=stats.comfyui_version,
                  gpu=stats.gpu_label, gpu_device=stats.gpu_name,
                   device_type=stats.devices[0].type if stats.devices else "",
                  vram_total=stats.vram_total, vram_free=stats.vram_free,
                  queue_running=len(state.running), queue_pending=len(state.pending),
                  queue_length=state.length, node_count=len(info))
    try:
        library = WorkflowLibrary.load(args.workflows)
        statuses = workflow_availability(library, info)
    except (WorkflowError, KeyError) as exc:
        return _fail_start(args, report, f"The workflow library cannot be read: {exc}")
    report["workflows"] = [
        {"name": s.name, "title": s.title, "family": s.family, "kind": s.kind, "lora": s.lora,
         "ok": s.ok, "missing": list(s.missing),
         "features": {f: {"ok": ok, "reason": why} for f, (ok, why) in s.features.items()}}
        for s in statuses]
    runnable = [s for s in statuses if s.ok]
    report["runnable"] = [s.name for s in runnable]
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        _print_check(report, statuses)
    return OK if runnable else FAILED


def _print_check(report: dict, statuses: list) -> None:
    out = [f"ComfyUI at {report['url']}: reachable, version {report['comfyui_version'] or '?'}"]
    if report["device_type"] in ("", "cpu"):
        out.append("GPU: none (the server runs on the CPU)")
    else:
        out.append(f"GPU: {report['gpu']} ({_gb(report['vram_total'])} VRAM, "
                   f"{_gb(report['vram_free'])} free)")
    out.append(f"Queue: {report['queue_running']} running, {report['queue_pending']} waiting")
    out.append(f"Workflows ({len(report['runnable'])} of {len(statuses)} can run):")
    width = max((len(s.name) for s in statuses), default=10)
    for s in statuses:
        mark = "ok" if s.ok else "no"
        line = f"  {mark:3} {s.name:{width}}  {s.title}"
        if not s.ok:
            line += " - missing: " + "; ".join(s.missing)
        out.append(line)
    families: dict[str, dict[str, tuple[bool, str]]] = {}
    for s in statuses:
        if s.features and s.family not in families:
            families[s.family] = dict(s.features)
    if families:
        out.append("Features:")
        for family, feats in families.items():
            parts = [f"{f} {'ok' if ok else 'no (' + why + ')'}" for f, (ok, why) in feats.items()]
            out.append(f"  {family}: " + ", ".join(parts))
    print("\n".join(out), flush=True)


def _fail_start(args: argparse.Namespace, report: dict, message: str) -> int:
    report["error"] = message
    if args.json:
        print(json.dumps(report), flush=True)
    _say(message)
    return CANNOT_START


# --------------------------------------------------------------------------- generate

@dataclass
class _Problem(Exception):
    code: int
    message: str


def generate(args: argparse.Namespace) -> int:
    _quiet_logs()
    return asyncio.run(_generate_main(args))


async def _generate_main(args: argparse.Namespace) -> int:
    task = asyncio.create_task(_generate(args))
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError):   # Windows: KeyboardInterrupt still stops it
        pass
    try:
        paths = await task
    except _Problem as problem:
        if args.json:
            print(json.dumps({"ok": False, "error": problem.message, "paths": []}), flush=True)
        _say(problem.message)
        return problem.code
    except asyncio.CancelledError:
        _say("Cancelled.")
        return FAILED
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
    if args.json:
        print(json.dumps({"ok": True, "paths": [str(p) for p in paths]}), flush=True)
    else:
        for path in paths:
            print(path, flush=True)
    return OK


async def _generate(args: argparse.Namespace) -> list[Path]:
    from ..core.comfy.workflow_manifest import WorkflowError, WorkflowLibrary

    try:
        library = WorkflowLibrary.load(args.workflows)
        spec = library.get(args.workflow)
    except KeyError as exc:
        raise _Problem(CANNOT_START, str(exc.args[0]) if exc.args else str(exc)) from None
    except WorkflowError as exc:
        raise _Problem(CANNOT_START, f"The workflow library cannot be read: {exc}") from None
    if args.lora and not spec.lora:
        other = library.find(spec.family, kind=spec.kind, lora=True)
        hint = f" Use --workflow {other.name}." if other else ""
        raise _Problem(CANNOT_START, f"The workflow '{spec.name}' does not load a LoRA.{hint}")
    if spec.lora and not args.lora:
        raise _Problem(CANNOT_START, f"The workflow '{spec.name}' needs a LoRA: pass --lora FILE.")
    image_params = [n for n, p in spec.params.items() if p.type == "image"]
    image_data = None
    if image_params:
        if args.image is None:
            raise _Problem(CANNOT_START, f"The workflow '{spec.name}' needs an input image: "
                                         "pass --image FILE.")
        try:
            image_data = args.image.read_bytes()
        except OSError as exc:
            raise _Problem(CANNOT_START, f"Cannot read the image {args.image}: "
                                         f"{exc.strerror or exc}.") from None
    elif args.image is not None:
        _say(f"Note: the workflow '{spec.name}' takes no input image; --image is ignored.")
    try:
        client = ComfyClient(args.url, timeout=args.request_timeout)
    except ValueError as exc:
        raise _Problem(CANNOT_START, f"Not a server address: {exc}.") from None
    async with client:
        try:
            return await _generate_on(client, args, spec, image_params, image_data)
        except ComfyConnectionError as exc:
            raise _Problem(CANNOT_START, str(exc)) from None
        except ComfyHTTPError as exc:
            raise _Problem(CANNOT_START, str(exc)) from None
        except (ComfyValidationError, ComfyExecutionError, ComfyInterrupted) as exc:
            raise _Problem(FAILED, str(exc)) from None
        except ComfyError as exc:
            raise _Problem(FAILED, str(exc)) from None
        except WorkflowError as exc:
            raise _Problem(CANNOT_START, str(exc)) from None


async def _generate_on(client: ComfyClient, args: argparse.Namespace, spec: Any,
                       image_params: list[str], image_data: bytes | None) -> list[Path]:
    from ..core.comfy.model_family import choose_model
    from ..core.comfy.routing import resolve_name
    from ..core.comfy.workflows import build_graph, random_seed
    from ..core.comfy.graph_check import check_graph, model_choices

    info = await client.object_info()
    params: dict[str, Any] = {}
    if spec.accepts("prompt"):
        if args.prompt is None and spec.params["prompt"].required:
            raise _Problem(CANNOT_START, f"The workflow '{spec.name}' needs a prompt: "
                                         "pass --prompt TEXT.")
        if args.prompt is not None:
            params["prompt"] = args.prompt
    elif args.prompt:
        _say(f"Note: the workflow '{spec.name}' takes no prompt; --prompt is ignored.")
    if args.negative is not None:
        if not spec.accepts("negative"):
            raise _Problem(CANNOT_START, f"The workflow '{spec.name}' has no negative prompt.")
        params["negative"] = args.negative
    seed = args.seed if args.seed is not None else random_seed()
    for name, value in (("seed", seed), ("width", args.width), ("height", args.height),
                        ("steps", args.steps), ("batch", args.batch)):
        if value is None:
            continue
        if not spec.accepts(name):
            if name != "seed":
                raise _Problem(CANNOT_START, f"The workflow '{spec.name}' has no '{name}' setting.")
            continue
        params[name] = value
    model_param = spec.params.get("model")
    if model_param is not None:
        choices = model_choices(info, model_param.model_folder)
        wanted = (resolve_name(choices, args.model) or args.model) if args.model else ""
        if choices or wanted:
            try:   # a file of the workflow's family, never one of another family
                params["model"], note = choose_model(choices, spec.family, wanted)
            except ValueError as exc:
                raise _Problem(FAILED, f"The workflow '{spec.name}' cannot run on ComfyUI at "
                                       f"{client.base_url}: {exc}.") from None
            if note:
                _say(f"Note: {note}.")
            if not wanted:
                _say(f"Using the model {params['model']} (pass --model to choose another).")
        else:
            params["model"] = spec.default("model")   # check_graph names the empty list
    if args.lora:
        loras = model_choices(info, "loras")
        lora_name = resolve_name(loras, args.lora)
        if lora_name is None:
            base = Path(args.lora).name
            raise _Problem(FAILED, (
                f"ComfyUI at {client.base_url} does not list the LoRA {base}. Copy it into that "
                "server's models/loras folder (or into a folder its extra_model_paths.yaml "
                "shares, e.g. this app's LoRA folder), then run this again; ComfyUI picks up "
                "new files without a restart."))
        params["lora"] = lora_name
        params["lora_strength"] = float(args.strength)
    if image_data is not None:
        uploaded = await client.upload_image(image_data, args.image.name)
        for name in image_params:
            params[name] = uploaded
        info = await client.object_info()          # LoadImage's list now has the upload
    graph = build_graph(spec, params, object_info=info)
    gaps = check_graph(graph, info)
    if gaps:
        lines = "\n".join(f"  - {g.message}" for g in gaps)
        raise _Problem(FAILED, f"The workflow '{spec.name}' cannot run on ComfyUI at "
                               f"{client.base_url}:\n{lines}")
    started = time.monotonic()
    prompt_id = str(uuid.uuid4())
    watch = _RunWatch()
    watcher = asyncio.ensure_future(_watch(client, prompt_id, watch, _progress_every()))
    try:
        result = await asyncio.wait_for(
            client.run(graph, prompt_id=prompt_id, on_event=_progress_printer(watch),
                       extra_data={"isengard": {"source": "cli", "workflow": spec.name}}),
            timeout=args.timeout)
    except TimeoutError:
        await _take_back(client, prompt_id)
        raise _Problem(FAILED, f"Gave up after {args.timeout:g} s: {watch.describe()}; the "
                               "job was taken back from the server.") from None
    except asyncio.CancelledError:
        # Ctrl+C: take the job back from the server too (interrupt or delete).
        await _take_back(client, prompt_id)
        raise
    finally:
        watcher.cancel()
    _say(f"Done in {time.monotonic() - started:.1f} s: {len(result.images)} image(s).")
    return await _save_images(client, args, spec, graph, result)


PROGRESS_EVERY_S = 30.0          # a waiting or silent job is reported this often
PROGRESS_ENV = "ISENGARD_CLI_PROGRESS_S"
QUEUE_POLL_S = 2.0
TAKE_BACK_S = 5.0


def _progress_every() -> float:
    try:
        return max(0.1, float(os.environ.get(PROGRESS_ENV, PROGRESS_EVERY_S)))
    except ValueError:
        return PROGRESS_EVERY_S


async def _take_back(client: ComfyClient, prompt_id: str) -> None:
    """Interrupt or delete the job on the server (Ctrl+C, --timeout)."""
    try:
        await asyncio.wait_for(client.cancel(prompt_id), TAKE_BACK_S)
    except (TimeoutError, ComfyError):
        pass


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


@dataclass
class _RunWatch:
    """Where the job is, for the progress lines and the --timeout message."""

    started: bool = False
    queued: str = "waiting for the server"
    node: str = ""
    class_type: str = ""
    node_since: float = 0.0
    last_event: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        if not self.started:
            return f"ComfyUI still had the job {self.queued}"
        if self.node:
            return (f"node {self.node} ({self.class_type or '?'}) was running for "
                    f"{_duration(time.monotonic() - self.node_since)}")
        return "the job was running"


async def _watch(client: ComfyClient, prompt_id: str, watch: _RunWatch, every: float) -> None:
    """Say "queued (position N)" while ComfyUI holds the job, "running node X for 2 min"
    while a node sends nothing; each at most every ``every`` seconds or when it changes."""
    said, said_at = "", 0.0
    while True:
        await asyncio.sleep(min(every, QUEUE_POLL_S))
        now = time.monotonic()
        text = ""
        if not watch.started:
            try:
                queue = await client.queue()
            except ComfyError:
                continue
            if prompt_id in queue.pending:
                position = len(queue.running) + queue.pending.index(prompt_id) + 1
                watch.queued = f"queued (position {position})"
                text = watch.queued
        elif watch.node and now - watch.last_event >= every:
            text = (f"running node {watch.node} ({watch.class_type or '?'}) for "
                    f"{_duration(now - watch.node_since)}")
        if text and (text != said or now - said_at >= every):
            _say(f"  {text}")
            said, said_at = text, now


def _progress_printer(watch: _RunWatch):
    last = [0.0]

    def on_event(event: RunEvent) -> None:
        now = time.monotonic()
        watch.last_event = now
        if isinstance(event, (RunStarted, NodeStarted, NodeProgress)):
            watch.started = True
        if isinstance(event, NodeStarted):
            watch.node, watch.class_type, watch.node_since = event.node, event.class_type, now
            _say(f"  node {event.node} ({event.class_type or '?'})")
        elif isinstance(event, NodeProgress) and (now - last[0] >= 0.5 or event.value >= event.max):
            last[0] = now
            _say(f"    step {event.value:g}/{event.max:g}")
    return on_event


def _value(spec: Any, graph: dict, name: str) -> Any:
    p = spec.params.get(name)
    if p is None:
        return None
    value = graph.get(p.node, {}).get("inputs", {}).get(p.input)
    return None if isinstance(value, list) else value


async def _save_images(client: ComfyClient, args: argparse.Namespace, spec: Any, graph: dict,
                       result: Any) -> list[Path]:
    from ..core.comfy.metadata import a1111_parameters, embed_metadata
    from ..core.fsutil import atomic_write_bytes

    v = lambda name: _value(spec, graph, name)  # noqa: E731
    width, height = v("width"), v("height")
    parameters = a1111_parameters(
        args.prompt or "", args.negative or "", int(v("steps") or 0), str(v("sampler") or ""),
        float(v("cfg") or 0), int(v("seed") or 0),
        int(width or 0), int(height or 0), str(v("model") or ""),
        lora=v("lora"), strength=v("lora_strength"), scheduler=v("scheduler"))
    seed_used = v("seed") if spec.accepts("seed") else None
    ours = {"workflow": spec.name, "seed": seed_used,
            "server": client.base_url, "prompt_id": result.prompt_id,
            "lora": args.lora or None, "lora_strength": v("lora_strength"),
            "model": v("model"), "source": "cli"}
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Problem(CANNOT_START, f"Cannot create the folder {args.out}: "
                                     f"{exc.strerror or exc}.") from None
    paths: list[Path] = []
    for index, ref in enumerate(result.images, 1):
        data = await client.fetch_image(ref)
        if data.startswith(b"\x89PNG"):
            data = embed_metadata(data, parameters=parameters, prompt_graph=graph,
                                  isengard={**ours, "index": index})
        stem = (f"{spec.name}_{seed_used}_{index:02d}" if seed_used is not None
                else f"{spec.name}_{index:02d}")
        suffix = Path(ref.filename).suffix or ".png"
        path = args.out / f"{stem}{suffix}"
        n = 1
        while path.exists():
            n += 1
            path = args.out / f"{stem}-{n}{suffix}"
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise _Problem(CANNOT_START, f"Cannot write {path}: {exc.strerror or exc}.") from None
        paths.append(path.resolve())
    return paths


__all__ = ["add_parsers", "comfy_check", "generate", "OK", "FAILED", "CANNOT_START"]
