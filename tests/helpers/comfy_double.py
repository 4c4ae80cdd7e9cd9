"""ComfyUI test double: a real aiohttp server that answers like ComfyUI 0.3.64.

It speaks what ``tests/fixtures/comfyui/`` recorded from a real server (read that README): the
same HTTP bodies and status codes, the same WebSocket message sequences, binary preview frames,
validation errors, interrupts, the node cache and the reconnect quirk. Tests talk to it over real
sockets on 127.0.0.1, with any client (httpx + websockets, the app's ComfyClient, ...).

The server runs in **its own thread with its own asyncio loop**, so the same object works from
plain pytest, ``@pytest.mark.asyncio`` tests and pytest-qt tests (nothing runs on your loop).

See also ``tests/helpers/fake_comfyui_main.py`` (a ComfyUI ``main.py`` stand-in that serves this
double, for process-supervision tests) and ``tests/integration/test_comfy_double.py`` (the proof
that the double matches the recordings, and examples of every switch).

Quick start
-----------
::

    from tests.helpers import comfy_double as double_module
    from tests.helpers.comfy_double import ComfyDouble

    comfy_double = double_module.comfy_double            # the fixtures, made visible to pytest
    make_comfy_double = double_module.make_comfy_double  # (a plain import works too, + noqa F401/F811)

    def test_plain(comfy_double):                 # fixture: started with defaults, stopped after
        url = comfy_double.url                    # "http://127.0.0.1:<port>"

    def test_options(make_comfy_double):          # factory fixture: every double is stopped after
        double = make_comfy_double(models={"checkpoints": ["sd15.safetensors"]}, step_delay=0.01)

    double = ComfyDouble(models={"loras": ["me.safetensors"]})   # by hand
    url = double.start()          # returns the base URL; ws URL: double.ws_url
    ...
    double.stop()                 # or: with ComfyDouble() as double: ...

Bring the fixture(s) you use into your test module, by assignment as above or by
``from tests.helpers.comfy_double import make_comfy_double  # noqa: F401`` (each works alone);
no conftest or pytest_plugins entry is needed. The fixtures put output/input/temp folders under
``tmp_path/comfyN/`` (``comfy0`` for ``comfy_double``, ``comfy1``... for the factory).

Constructor options (all keyword, all optional)
-----------------------------------------------
``models``         ``{folder: [file names]}``; folders as ``GET /models`` lists them
                   (checkpoints, loras, vae, text_encoders, diffusion_models, upscale_models,
                   controlnet, clip_vision, ...; ``unet``/``clip`` are accepted as aliases of
                   diffusion_models/text_encoders). They fill ``GET /models/<folder>`` and the
                   combo lists of /object_info: ckpt_name, lora_name, unet_name, clip_name(1-4),
                   vae_name (files + "pixel_space"), model_name (UpscaleModelLoader),
                   control_net_name, ... (see ``comfy_double_info.FOLDER_INPUTS``; extend it for
                   custom loaders). Unknown folders (e.g. "ipadapter") are added to /models.
                   Without models the lists are empty, as recorded. Validation uses these lists
                   (``value_not_in_list``). Change at run time with ``set_models()``.
``models_provider`` a callable returning such a dict, called on every request that needs it
                   (used by fake_comfyui_main.py to rescan extra model paths).
``extra_nodes``    ``{class name: object_info entry}`` added to /object_info (fake custom nodes,
                   e.g. IPAdapterAdvanced, FaceDetailer). Missing keys get defaults. Such nodes
                   run generically: each output passes through the first input of the same type,
                   or is a blank value of its type (IMAGE 512x512, LATENT 512x512, tokens).
``remove_nodes``   class names to drop from /object_info (then prompts using them are rejected
                   with ``invalid_prompt``).
``gpu_name``       None (default) -> the recorded CPU device ``{"name": "cpu", "type": "cpu",
                   "index": null, ...}``; a name like "NVIDIA GeForce RTX 4090" -> a CUDA device
                   named like ComfyUI does: ``"cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync"``
                   (type "cuda", index 0); a name starting with "cuda:" is used verbatim.
``vram_total``, ``vram_free``  bytes for /system_stats devices[0] (vram_* and torch_vram_*).
``comfyui_version`` (default "0.3.64"), ``argv`` (system.argv in /system_stats).
``output_dir``, ``input_dir``, ``temp_dir``  folders (default: temp folders made by the double,
                   deleted by ``stop()``; a fresh input folder holds ``example.png`` like ComfyUI's).
``image_delay``    seconds per sampler run on top of the steps (a simulated card's speed).
``step_delay``     seconds per sampler step (KSampler, KSamplerAdvanced, SamplerCustom,
                   SamplerCustomAdvanced). Default 0.
``fail_nodes``     see the switch of the same name below.
``node_delay``     seconds per other executed node. Default 0.
``latency``        seconds added before every HTTP answer (not WS messages). Default 0.
``preview_method`` "none" (default: no sampler previews, like ComfyUI's default) or
                   "auto"/"latent2rgb"/"taesd": a JPEG preview per sampler step, scaled so its long
                   side is 512, as binary event 1 ``[u32 1][u32 1=JPEG][bytes]``, or event 4
                   ``[u32 4][u32 n][json metadata][bytes]`` for a client whose first WS message was
                   ``{"type":"feature_flags","data":{"supports_preview_metadata":true}}``.
                   SaveImageWebsocket always sends PNG frames (format 2 / image/png).
``port``           0 (default: a free port, kept for restarts) or a fixed port.
``host``           default "127.0.0.1".
``with_upload_node`` True: our ComfyUI node ``isengard_lora_upload`` is installed: its
                   ``/isengard/lora`` routes (the real handler module) store LoRAs in
                   ``loras_dir/isengard/`` (default: a temp folder), listed in the ``loras``
                   choices as ``isengard/<file>``; ``upload_token`` (default
                   ``comfy_double_upload.DEFAULT_TOKEN``; "" = no token configured, every
                   upload refused). ``double.upload_node.posts`` counts uploads.

Run-time switches (thread-safe; set them from any thread while the double runs)
---------------------------------------------------------------------------------
``fail_500``            False | True | set of paths. True: every request (HTTP and WS upgrade)
                        answers 500 text/plain "500 Internal Server Error\\n\\nServer got itself in
                        trouble" (as recorded). A set/list: only those paths; an entry ending in
                        "*" is a prefix ("/history*").
``drop_sockets_after``  None | int. Every websocket open *now* is cut (transport aborted, no close
                        frame) after it has been sent N more messages (0: cut now). Sockets opened
                        later are not affected (so a client can reconnect). Set None to cancel.
``drop_sockets()``      cut every open websocket now.
``hang_next_prompt``    True: the next node that really executes (after its ``executing``
                        message) hangs until ``release_hang()`` or an interrupt (then
                        ``execution_interrupted`` names that node). Resets itself once used.
``fail_nodes``          ``{node id or class name: message}`` (or ``(exception type, message)``):
                        that node raises at run time -> ``execution_error`` with that
                        ``exception_type`` (default "RuntimeError") and ``exception_message``
                        (message + newline), e.g. ``{"KSampler": ("torch.OutOfMemoryError",
                        "Allocation on device")}``. Also a constructor option.
``hold_queue``          True: the worker takes no new prompt (they stay pending, e.g. to test
                        deleting a pending prompt); False lets it go on.
``step_delay``, ``node_delay``, ``latency``, ``preview_method`` can also be changed at run time.
``kill()``              die abruptly: listener closed, every connection (HTTP keep-alive and
                        websockets) aborted, the running prompt stops mid-node; no more messages.
``restart()``           kill (if running) and come back on the same port: empty queue, history,
                        cache and ``number`` counter (a fresh process), same folders and files.
``start()``             after ``kill()``/``stop()`` also comes back on the same port.

Counters and inspection (read from any thread)
----------------------------------------------
``requests``            Counter: path -> number of requests (``double.requests["/prompt"]``);
                        ``requests_by_method`` Counter of "POST /prompt" etc.; ``request_log``
                        list of (method, path with query).
``prompts``             every JSON body POSTed to /prompt (accepted or rejected), as sent, with
                        its ``extra_data``; ``accepted_prompts`` only those queued.
``interrupts``          the bodies of POST /interrupt ({} when empty).
``frees``, ``uploads``, ``ws_connects`` (client ids asked for, "" without ``clientId``),
``ws_messages_sent`` (frames sent), ``completed`` (prompt ids finished, in order).
``reset_counters()``    clears all of the above.
``history()``, ``queue_state()`` -> (running ids, pending ids), ``connected_clients()``,
``wait_idle(timeout)``, ``wait_for_prompt(prompt_id, timeout)`` -> its history entry (both
block: in async code use ``await wait_for_prompt_async(...)``), ``object_info()``,
``set_models(models)``, ``add_input_image(name, size=(64, 64), color=..., data=None)``,
``clear_cache()``.

Behaviour (what the recordings show; details in tests/fixtures/comfyui/README.md)
---------------------------------------------------------------------------------
* WS connect: ``status`` with ``sid`` (= clientId, or a uuid4 hex without it); if the first
  client message is feature_flags it gets the feature_flags reply; a socket connecting with the
  clientId of the running prompt also gets ``{"type":"executing","data":{"node":<id>}}``.
* Reconnect quirk: a second socket with the same clientId takes over; when the *old* one closes
  the entry is deleted and the new socket receives nothing until it reconnects.
* POST /prompt: client ``prompt_id`` honoured, ``number`` counter shared with rejected prompts,
  ``front: true`` -> negative number (runs first), all validation error shapes (400), partial
  validity (200 with node_errors; only valid outputs run), non-JSON body -> 500. Rejected
  prompts send nothing on the socket.
* Execution: one prompt at a time in number order; messages exactly like run_01 (status x2,
  execution_start, execution_cached, progress_state..., executing, executed, execution_success,
  status, executing null), node order like ComfyUI's scheduler, a cache by node signature
  (the previous prompt's results; a fully cached prompt replays ``executed`` without
  ``executing``), sampler progress (progress_state + progress + preview per step), runtime
  errors (e.g. LoadImage of a non-image upload -> PIL.UnidentifiedImageError), interrupts
  (checked before each node and at each sampler step), prompts without client_id (only status and
  progress_state/progress are broadcast), history entries of every shape.
* Node simulation: loaders give tokens, CLIPTextEncode conditioning, Empty*Latent* latents of
  width x height x batch, samplers keep latent size, VAEDecode/VAEEncode convert, LoadImage reads
  the file with Pillow, ImageUpscaleWithModel x4 (x2 if the model name has "2x"),
  ImageScale/ImageScaleBy/EmptyImage/ImageBlur, SaveImage writes real PNGs
  ``<prefix>_00001_.png`` with the ``prompt`` text chunk (and extra_pnginfo keys), PreviewImage
  writes to temp, SaveImageWebsocket sends PNG frames. Images are flat colours from the seed.

Choices where the recordings say nothing (read from the protocol, not recorded): for a prompt
without client_id, sampler ``progress`` messages and event-1 previews are broadcast and
``execution_interrupted`` too; SaveImageWebsocket is never served from the cache (its output
changes every run); a prompt's ``executed`` list in interrupts/errors is in execution order
(the real server uses set order); validation errors of one node come in declared input order
(the real server uses set order); ``/system_stats`` RAM numbers are the recorded ones.
Message order is global (one publisher, like ComfyUI's send queue), so ``status`` broadcasts
caused by HTTP calls interleave with a running prompt's messages by timing, as on the real server.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import copy
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from tests.helpers.comfy_double_nodes import normalize_models, png_bytes

CPU_RAM_TOTAL = 25276514304
CPU_RAM_FREE = 23908593664
DEFAULT_ARGV = ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8188",
                "--disable-auto-launch"]

__all__ = ["ComfyDouble", "comfy_double", "make_comfy_double"]


class ComfyDouble:
    """A ComfyUI 0.3.64 look-alike on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, models: dict[str, list[str]] | None = None,
                 models_provider: Callable[[], dict[str, list[str]]] | None = None,
                 extra_nodes: dict[str, Any] | None = None, remove_nodes: Iterable[str] = (),
                 gpu_name: str | None = None, vram_total: int | None = None,
                 vram_free: int | None = None, comfyui_version: str = "0.3.64",
                 argv: list[str] | None = None,
                 output_dir: str | Path | None = None, input_dir: str | Path | None = None,
                 temp_dir: str | Path | None = None, step_delay: float = 0.0,
                 image_delay: float = 0.0, node_delay: float = 0.0, latency: float = 0.0, preview_method: str = "none",
                 port: int = 0, host: str = "127.0.0.1",
                 fail_nodes: dict[str, str | tuple[str, str]] | None = None,
                 with_upload_node: bool = False, upload_token: str | None = None,
                 loras_dir: str | Path | None = None) -> None:
        self._lock = threading.RLock()
        self._models = normalize_models(models)
        self.models_provider = models_provider
        self.extra_nodes: dict[str, Any] = copy.deepcopy(extra_nodes or {})
        self.remove_nodes: set[str] = set(remove_nodes)
        self.gpu_name = gpu_name
        self.vram_total = vram_total
        self.vram_free = vram_free
        self.comfyui_version = comfyui_version
        self.argv = list(argv) if argv is not None else list(DEFAULT_ARGV)
        self._made_dirs: list[Path] = []
        self.output_dir = self._folder(output_dir, "output")
        self.input_dir = self._folder(input_dir, "input")
        self.temp_dir = self._folder(temp_dir, "temp")
        self.upload_node: Any = None
        if with_upload_node:      # our custom node installed (tests/helpers/comfy_double_upload)
            from tests.helpers.comfy_double_upload import DEFAULT_TOKEN, UploadNode

            self.upload_node = UploadNode(self._folder(loras_dir, "loras"),
                                          DEFAULT_TOKEN if upload_token is None else upload_token)
        self.step_delay = step_delay
        self.image_delay = image_delay
        self.node_delay = node_delay
        self.latency = latency
        self.preview_method = preview_method
        self.host = host
        self.port = port
        # switches
        self._fail_500: bool | frozenset[str] = False
        self._drop_after: int | None = None
        self._hang_next = False
        self._hold_queue = False
        self._fail_nodes: dict[str, str | tuple[str, str]] = dict(fail_nodes or {})
        # counters
        self.reset_counters()
        # runtime
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._stop_request: asyncio.Event | None = None
        self._abrupt = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ folders
    def _folder(self, given: str | Path | None, kind: str) -> Path:
        if given is not None:
            path = Path(given)
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = Path(tempfile.mkdtemp(prefix=f"comfy-double-{kind}-"))
        self._made_dirs.append(path)
        if kind == "input":
            (path / "example.png").write_bytes(png_bytes(Image.new("RGB", (64, 64), (90, 90, 90))))
        return path

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> str:
        """Start serving (on the same port as before after a kill/stop); returns the base URL."""
        if self.running:
            return self.url
        self._ready.clear()
        self._start_error = None
        self._abrupt = False
        self._thread = threading.Thread(target=self._thread_main, name="comfy-double", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("ComfyDouble did not start in time")
        if self._start_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"ComfyDouble could not start: {self._start_error}") \
                from self._start_error
        return self.url

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                self._loop = None
                loop.close()
                self._ready.set()

    async def _main(self) -> None:
        from tests.helpers.comfy_double_server import DoubleServer

        self._stop_request = asyncio.Event()
        server = DoubleServer(self, asyncio.get_running_loop())
        try:
            self.port = await server.start(self.host, self.port)
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._start_error = exc
            if server.runner is not None:
                await server.runner.cleanup()
            self._ready.set()
            return
        self._server = server
        if self._drop_after is not None:
            self._drop_after = None
        self._ready.set()
        await self._stop_request.wait()
        try:
            await server.shutdown(abrupt=self._abrupt)
        finally:
            self._server = None

    def _halt(self, abrupt: bool, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._abrupt = abrupt
        if loop is not None and self._stop_request is not None:
            try:
                loop.call_soon_threadsafe(self._stop_request.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("ComfyDouble thread did not stop")
        self._thread = None

    def kill(self) -> None:
        """Die abruptly: close the listener and abort every connection, mid-run included."""
        self._halt(abrupt=True)

    def restart(self, timeout: float = 10.0) -> str:
        """Come back on the same port with an empty queue/history/cache, same files."""
        self._halt(abrupt=True)
        return self.start(timeout)

    def stop(self) -> None:
        """Stop (websockets get a close frame) and delete the folders the double made."""
        self._halt(abrupt=False)
        for path in self._made_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._made_dirs.clear()

    def __enter__(self) -> ComfyDouble:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ cross-thread calls
    def _call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        loop = self._loop
        if loop is None or self._server is None:
            raise RuntimeError("ComfyDouble is not running")
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    # ------------------------------------------------------------------ switches
    @property
    def fail_500(self) -> bool | frozenset[str]:
        return self._fail_500

    @fail_500.setter
    def fail_500(self, value: bool | Iterable[str]) -> None:
        if isinstance(value, bool) or value is None:
            self._fail_500 = bool(value)
        else:
            self._fail_500 = frozenset(value)

    def _should_fail(self, path: str) -> bool:
        rule = self._fail_500
        if rule is True:
            return True
        if not rule:
            return False
        for entry in rule:
            if entry.endswith("*") and path.startswith(entry[:-1]):
                return True
            if entry == path:
                return True
        return False

    @property
    def drop_sockets_after(self) -> int | None:
        return self._drop_after

    @drop_sockets_after.setter
    def drop_sockets_after(self, value: int | None) -> None:
        self._drop_after = value
        if self._server is not None:
            self._call(lambda: self._server.set_drop_budget(value))

    def drop_sockets(self) -> None:
        self.drop_sockets_after = 0
        self._drop_after = None

    @property
    def hang_next_prompt(self) -> bool:
        return self._hang_next

    @hang_next_prompt.setter
    def hang_next_prompt(self, value: bool) -> None:
        if value and self._server is not None:
            self._call(lambda: self._server.hang_release.clear())
        self._hang_next = bool(value)

    def _take_hang(self) -> bool:
        with self._lock:
            if self._hang_next:
                self._hang_next = False
                return True
            return False

    def release_hang(self) -> None:
        if self._server is not None:
            self._call(lambda: self._server.hang_release.set())

    @property
    def fail_nodes(self) -> dict[str, str | tuple[str, str]]:
        return self._fail_nodes

    @fail_nodes.setter
    def fail_nodes(self, value: dict[str, str | tuple[str, str]] | None) -> None:
        self._fail_nodes = dict(value or {})

    def _failure_for(self, node_id: str, class_type: str) -> tuple[str, str] | None:
        rule = self._fail_nodes.get(node_id, self._fail_nodes.get(class_type))
        if rule is None:
            return None
        if isinstance(rule, tuple):
            return str(rule[0]), str(rule[1])
        return "RuntimeError", str(rule)

    @property
    def hold_queue(self) -> bool:
        return self._hold_queue

    @hold_queue.setter
    def hold_queue(self, value: bool) -> None:
        self._hold_queue = bool(value)
        if self._server is not None:
            self._call(lambda: self._server.wake.set())

    # ------------------------------------------------------------------ models / files
    def set_models(self, models: dict[str, list[str]]) -> None:
        with self._lock:
            self._models = normalize_models(models)

    def _current_models(self) -> dict[str, list[str]]:
        if self.models_provider is not None:
            models = normalize_models(self.models_provider())
        else:
            with self._lock:
                models = {k: list(v) for k, v in self._models.items()}
        if self.upload_node is not None:
            listed = models.get("loras", [])
            models["loras"] = listed + [n for n in self.upload_node.listed() if n not in listed]
        return models

    def add_input_image(self, name: str, size: tuple[int, int] = (64, 64),
                        color: tuple[int, int, int] = (200, 80, 40),
                        data: bytes | None = None) -> Path:
        path = self.input_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else png_bytes(Image.new("RGB", size, color)))
        return path

    def object_info(self) -> dict[str, Any]:
        from tests.helpers.comfy_double_nodes import build_object_info
        return build_object_info(self._current_models(), self.extra_nodes, self.remove_nodes,
                                 self.input_dir)

    def clear_cache(self) -> None:
        self._call(lambda: self._server.cache.clear())

    # ------------------------------------------------------------------ /system_stats
    def _system_stats(self) -> dict[str, Any]:
        if self.gpu_name is None or self.gpu_name == "cpu":
            total = self.vram_total if self.vram_total is not None else CPU_RAM_TOTAL
            free = self.vram_free if self.vram_free is not None else CPU_RAM_FREE
            device = {"name": "cpu", "type": "cpu", "index": None}
        else:
            total = self.vram_total if self.vram_total is not None else 25769803776
            free = self.vram_free if self.vram_free is not None else 24696061952
            name = self.gpu_name if self.gpu_name.startswith("cuda:") else \
                f"cuda:0 {self.gpu_name} : cudaMallocAsync"
            device = {"name": name, "type": "cuda", "index": 0}
        device.update(vram_total=total, vram_free=free, torch_vram_total=total,
                      torch_vram_free=free)
        return {
            "system": {
                "os": "posix", "ram_total": CPU_RAM_TOTAL, "ram_free": CPU_RAM_FREE,
                "comfyui_version": self.comfyui_version, "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95",
                "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
                "pytorch_version": "2.14.1+cu130", "embedded_python": False,
                "argv": list(self.argv),
            },
            "devices": [device],
        }

    # ------------------------------------------------------------------ counters
    def reset_counters(self) -> None:
        with self._lock:
            self.requests: collections.Counter[str] = collections.Counter()
            self.requests_by_method: collections.Counter[str] = collections.Counter()
            self.request_log: list[tuple[str, str]] = []
            self.prompts: list[dict[str, Any]] = []
            self.accepted_prompts: list[dict[str, Any]] = []
            self.interrupts: list[dict[str, Any]] = []
            self.frees: list[dict[str, Any]] = []
            self.uploads: list[tuple[str, str, str]] = []
            self.ws_connects: list[str] = []
            self.ws_messages_sent = 0
            self.completed: list[str] = []

    def _count_request(self, method: str, path: str, path_qs: str) -> None:
        with self._lock:
            self.requests[path] += 1
            self.requests_by_method[f"{method} {path}"] += 1
            self.request_log.append((method, path_qs))

    def _record_prompt(self, body: dict[str, Any], accepted: bool) -> None:
        with self._lock:
            self.prompts.append(body)
            if accepted:
                self.accepted_prompts.append(body)

    def _record_interrupt(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.interrupts.append(copy.deepcopy(body))

    def _record_free(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.frees.append(copy.deepcopy(body))

    def _record_upload(self, name: str, subfolder: str, type_: str) -> None:
        with self._lock:
            self.uploads.append((name, subfolder, type_))

    def _count_ws_connect(self, sid: str) -> None:
        with self._lock:
            self.ws_connects.append(sid)

    def _count_ws_message(self) -> None:
        with self._lock:
            self.ws_messages_sent += 1

    def _prompt_done(self, prompt_id: str) -> None:
        with self._lock:
            self.completed.append(prompt_id)

    # ------------------------------------------------------------------ inspection
    def history(self) -> dict[str, Any]:
        return self._call(lambda: copy.deepcopy(self._server.history))

    def queue_state(self) -> tuple[list[str], list[str]]:
        return self._call(lambda: ([i[1] for i in self._server.running.values()],
                                   [i[1] for i in sorted(self._server.queue)]))

    def connected_clients(self) -> list[str]:
        return self._call(lambda: list(self._server.sockets))

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running, pending = self.queue_state()
            if not running and not pending and self._call(
                    lambda: self._server.messages.empty()
                    and all(box.empty() for box in self._server.outboxes.values())):
                return
            time.sleep(0.01)
        raise TimeoutError("ComfyDouble did not become idle")

    async def wait_for_prompt_async(self, prompt_id: str, timeout: float = 10.0
                                    ) -> dict[str, Any]:
        """Like wait_for_prompt, without blocking the calling event loop (any loop, qasync too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = prompt_id in self.completed
            if done:
                return self.history()[prompt_id]
            await asyncio.sleep(0.01)
        raise TimeoutError(f"prompt {prompt_id} did not finish")

    def wait_for_prompt(self, prompt_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = prompt_id in self.completed
            if done:
                return self.history()[prompt_id]
            time.sleep(0.01)
        raise TimeoutError(f"prompt {prompt_id} did not finish")


# pytest fixtures (defined in comfy_double_fixtures.py, importable from here)
from tests.helpers.comfy_double_fixtures import comfy_double, make_comfy_double  # noqa: E402
