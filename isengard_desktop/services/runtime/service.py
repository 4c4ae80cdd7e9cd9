"""The trainer runtime's owner in the GUI process (install/verify/repair run as children).

An install is a chain of steps; file work (manifest hashing, the marker, ``runtime.json``,
removing folders) runs on the service's own worker thread and every command
(``uv venv``, ``uv pip install``, the runtime's probe) is a :class:`ChildProcess`, so the UI
thread never waits::

    [offline: verify manifest] → marker → uv venv → uv pip install --require-hashes -r lock
      → the app's wheel (--no-deps) → verify (the runtime's probe + a tensor op on the device)
      → runtime.json, marker removed
      → older app versions' runtimes removed (upgrade)

Cancel kills the child's process tree and leaves the marker (INCOMPLETE; uv's cache under
``<data>/runtime/cache`` keeps what was downloaded, so Install continues). A failed step
removes the half-made venv (the cache stays) and keeps the marker with the error.

Repair checks every installed file against its package's RECORD (size and SHA-256), drops
the damaged packages from uv's cache (uv hard-links installed files to its cache, so a
damaged file is usually damaged there too) and re-runs the locked install with
``--reinstall-package`` for exactly those; packages missing altogether are installed by the
same run, since uv installs whatever of the lock is absent. A plain re-run of the lock would
not do: uv checks only that a package's metadata is there, not its files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ... import __version__
from ...core.paths import AppPaths
from ...core.runtime import install as steps
from ...core.runtime.layout import (
    RuntimeInfo, VerifyResult, cache_dir, clear_marker, inspect, list_runtimes, read_info,
    read_marker, remove_runtime, runtime_folder, venv_python, write_info,
    write_marker)
from ...core.runtime.locks import (lock_file, lock_note, lock_packages, lock_sha256)
from ...core.runtime.manifest import ManifestError, read_manifest, verify_manifest
from ...core.runtime.python import chosen_device
from ...core.runtime.status import InstallPhase, RuntimeDevice, RuntimeState, RuntimeStatus
from ...core.types import Progress
from ..child_process import ProcessOutcome, StopIntent
from ..step_chain import StepChainService

__all__ = ["RuntimeService"]

MONITOR_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 300.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class _Job:
    kind: str                               # "install" | "verify" | "repair"
    device: RuntimeDevice
    folder: Path
    lock: Path
    offline: Path | None = None
    python_mirror: Path | None = None       # the offline payload's copy of uv's Python, if any
    app_wheel: Path | None = None           # None: build from the source tree
    source: str = "online"
    steps: list[Callable[[], None]] = field(default_factory=list)
    reinstall: list[str] = field(default_factory=list)
    verify: VerifyResult | None = None
    total_packages: int = 0
    payload_bytes: int = 0
    cancelled: bool = False
    partial: bool = True          # repair: the venv is unusable or unfinished → every step runs


class RuntimeService(StepChainService):
    """Owns ``<data>/runtime/``.

    Signals:
        status_changed(RuntimeStatus): after every state change (also at the end of a job).
        progress(Progress): during install/verify/repair (``label`` names the phase,
            ``detail`` says "312 of 2,400 MB · 24 MB/s · about 1 min left" or "package 12 of 40").
        finished(RuntimeStatus): once per install/verify/repair, when it ends (also on cancel
            and failure: the status then says what is wrong).
        log_line(str): a line of the running child's output (for a details view / the CLI).
    """

    status_changed = Signal(object)
    finished = Signal(object)
    LOG_NAME = "runtime"
    _measured = Signal(object, int, int)              # (job, cache bytes, installed dists)
    _cleanup_done = Signal(object, object)            # (callback, exception or None)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(paths, "runtime", parent)
        self._job: _Job | None = None
        self._monitor_stop: threading.Event | None = None
        self._cache_start = 0
        self._samples: list[tuple[float, int]] = []
        self._uv_output = steps.UvOutput()
        self._measured.connect(self._on_measured)
        self._cleanup_done.connect(lambda then, exc: then(exc))

    # -- public ------------------------------------------------------------------------------
    def status(self, device: RuntimeDevice | None = None) -> RuntimeStatus:
        """The runtime's state for ``device`` (default: the chosen or installed one)."""
        if device is None:
            device = chosen_device(self._paths) or RuntimeDevice.CPU
        job = self._job
        if job is not None and job.kind != "verify" and job.device == device:
            return RuntimeStatus(RuntimeState.INSTALLING, device, job.folder)
        return inspect(self._paths, device)

    def install(self, device: RuntimeDevice, offline_folder: Path | None = None) -> None:
        """Create (or finish) the runtime for ``device``: online from the lock's index, or from
        an offline payload folder (verified against its manifest first, ``--no-index``)."""
        device = RuntimeDevice(device)
        if self._refuse_if_busy(device):
            return
        folder = runtime_folder(self._paths, device)
        job = _Job("install", device, folder, lock_file(device))
        if offline_folder is not None:
            job.offline = Path(offline_folder)
            job.source = str(job.offline)
        job.steps = [self._step_prepare, self._step_marker, self._step_venv, self._step_lock,
                     self._step_app, self._step_verify, self._step_finish]
        self._start(job)

    def verify(self, device: RuntimeDevice | None = None) -> None:
        """Run the runtime's own probe; ends in READY or BROKEN (``problem`` names it)."""
        device = RuntimeDevice(device) if device else (chosen_device(self._paths)
                                                       or RuntimeDevice.CPU)
        if self._refuse_if_busy(device):
            return
        job = _Job("verify", device, runtime_folder(self._paths, device), lock_file(device))
        job.steps = [self._step_exists, self._step_verify, self._step_finish]
        self._start(job)

    def repair(self, device: RuntimeDevice | None = None,
               offline_folder: Path | None = None) -> None:
        """Reinstall only what verify found broken (see the module docstring); the packages
        come from where the runtime came from, or from ``offline_folder``."""
        device = RuntimeDevice(device) if device else (chosen_device(self._paths)
                                                       or RuntimeDevice.CPU)
        if self._refuse_if_busy(device):
            return
        folder = runtime_folder(self._paths, device)
        job = _Job("repair", device, folder, lock_file(device))
        info = read_info(folder)
        source = str(offline_folder) if offline_folder else (info.source if info else "online")
        if source and source != "online":
            job.offline, job.source = Path(source), source
        job.steps = [self._step_prepare, self._step_find_broken, self._step_marker,
                     self._step_venv, self._step_lock, self._step_app, self._step_verify,
                     self._step_finish]
        self._start(job)

    def cancel(self) -> None:
        """Stop a running install/verify/repair; what was downloaded is kept for a retry."""
        job = self._job
        if job is None:
            return
        job.cancelled = True
        if self._child is not None and self._child.is_running:
            self._child.kill(StopIntent.CANCEL)   # its finished signal ends the job
        # a step on the worker thread ends the job when it returns (see _on_thread_done)

    def shutdown(self) -> None:
        """Stop any child (at quit)."""
        if self._job is not None:
            self._job.cancelled = True
        if self._child is not None:
            self._child.stop_and_wait(StopIntent.SHUTDOWN, kill_grace_s=2.0)
        self._stop_monitor()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- job machinery -----------------------------------------------------------------------
    def _refuse_if_busy(self, device: RuntimeDevice) -> bool:
        if self._job is None:
            return False
        logger.warning("runtime: a {} is already running", self._job.kind)
        self.finished.emit(RuntimeStatus(
            RuntimeState.INSTALLING, device, self._job.folder,
            problem=f"A trainer runtime {self._job.kind} is already running; wait for it or "
                    "cancel it first."))
        return True

    def _start(self, job: _Job) -> None:
        self._job = job
        logger.info("runtime: {} {} ({})", job.kind, job.folder.name, job.source)
        self.status_changed.emit(self.status(job.device))
        self._next()

    # -- steps -------------------------------------------------------------------------------
    def _step_prepare(self) -> None:
        job = self._job
        assert job is not None
        self._emit(InstallPhase.PREPARING, 0, 0, "checking what to install")
        if job.offline is None:
            if not job.lock.is_file():
                note = lock_note(job.device)
                self._fail(f"There is no lock file for the {job.device.value} runtime "
                           f"({job.lock.name}): this build of the app cannot install it online. "
                           "Install it from an offline folder made for this build, or choose "
                           "another trainer build in Settings → This machine."
                           + (f" ({note})" if note else ""))
                return
            if getattr(sys, "frozen", False):
                job.app_wheel = steps.app_wheel_in(job.lock.parent)
                if job.app_wheel is None:
                    self._fail(f"The app's own wheel is missing from {job.lock.parent}; "
                               "reinstall Isengard Desktop.")
                    return
            job.total_packages = len(lock_packages(job.lock))
            self._next()
            return
        payload = job.offline

        def check() -> tuple[list[str], Any]:
            try:
                manifest = read_manifest(payload)
            except ManifestError as exc:
                return [str(exc)], None
            problems: list[str] = []
            if manifest.device != job.device:
                problems.append(f"{payload} holds the {manifest.device.value} runtime, not "
                                f"{job.device.value}")
            if manifest.app_version != __version__:
                problems.append(f"{payload} was made for app version {manifest.app_version}, "
                                f"this is {__version__}")
            if problems:
                return problems, manifest
            last = [0.0]

            def hashed(done: int, total: int) -> None:
                if job.cancelled:     # Cancel while a large payload is being hashed
                    raise InterruptedError("cancelled")
                now = time.monotonic()
                if now - last[0] >= 0.25 or done == total:
                    last[0] = now
                    self.progress.emit(Progress(
                        InstallPhase.PREPARING.value, done, total,
                        f"checking the offline files: {steps.format_transfer(done, total, 0)}"))

            return verify_manifest(payload, hashed), manifest

        def checked(result: tuple[list[str], Any]) -> None:
            problems, manifest = result
            if problems:
                shown = "; ".join(problems[:5])
                more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
                self._fail(f"The offline folder {payload} cannot be used: {shown}{more}.",
                           keep_marker=False)
                return
            job.lock = payload / manifest.lock
            job.app_wheel = payload / manifest.app_wheel if manifest.app_wheel else None
            # the manifest names the Python build only when the payload carries one (and the
            # check above found it intact); uv reads it from the folder as a mirror
            job.python_mirror = (payload / steps.PYTHON_MIRROR_DIR if manifest.python
                                 else None)
            job.total_packages = len(lock_packages(job.lock))
            job.payload_bytes = manifest.total_bytes
            if job.app_wheel is None and getattr(sys, "frozen", False):
                self._fail(f"The offline folder {payload} has no app wheel.", keep_marker=False)
                return
            self._next()

        self._in_thread(check, checked)

    def _step_marker(self) -> None:
        job = self._job
        assert job is not None
        self._in_thread(lambda: write_marker(job.folder), lambda _: self._next())

    def _step_exists(self) -> None:
        job = self._job
        assert job is not None
        state = inspect(self._paths, job.device)
        if state.state in (RuntimeState.MISSING, RuntimeState.INCOMPLETE) or (
                not venv_python(job.folder).exists()):
            self._end(replace(state, problem=state.problem or "There is nothing to verify."))
            return
        self._next()

    def _step_find_broken(self) -> None:
        job = self._job
        assert job is not None
        python = venv_python(job.folder)
        job.partial = not python.exists() or read_marker(job.folder) is not None
        if job.partial:
            self._next()     # no usable venv: the remaining steps are a full (continued) install
            return
        self._emit(InstallPhase.VERIFYING, 0, 0, "checking every installed file")
        expected = [name for name, _ in lock_packages(job.lock)] + [steps.APP_DIST]

        def check() -> dict[str, list[str]]:
            return steps.broken_packages(steps.site_packages(python), expected)

        def found(broken: dict[str, list[str]]) -> None:
            job.reinstall = sorted(broken)
            for name, files in broken.items():
                self.log_line.emit(f"broken: {name}" + (f" ({', '.join(files[:3])})"
                                                         if files else " (not installed)"))
            logger.info("runtime repair: {} broken package(s): {}", len(broken),
                        ", ".join(job.reinstall) or "none")
            self._next()

        self._in_thread(check, found)

    def _step_venv(self) -> None:
        job = self._job
        assert job is not None
        uv = self._uv()
        if uv is None:
            return
        python = venv_python(job.folder)
        if python.exists() and (job.folder / "venv" / "pyvenv.cfg").exists():
            self._next()   # a continued install: keep what is there
            return
        self._emit(InstallPhase.PREPARING, 0, 0, "creating the Python environment")
        managed = (getattr(sys, "frozen", False)
                   or os.environ.get(steps.ENV_MANAGED_PYTHON) == "1")
        # the bundle has no Python of its own to lend: a uv-managed 3.11, from the offline
        # payload's copy of uv's download when it has one, else downloaded when online;
        # offline with no copy it must already be on this computer
        mirror = job.python_mirror
        argv, env = steps.venv_command(uv, job.folder / "venv", self._uv_env(), managed=managed,
                                       offline=job.offline is not None, mirror=mirror,
                                       own_python=sys.executable)
        if mirror is not None and managed:
            self.log_line.emit(f"Python {steps.RUNTIME_PYTHON} from {mirror}")

        def done(outcome: ProcessOutcome, _out: str) -> None:
            if not outcome.succeeded:
                hint = ""
                if job.offline is not None and managed:
                    hint = (f" uv could not use the Python {steps.RUNTIME_PYTHON} build in "
                            f"{mirror}: copy the offline folder again, or make it with the "
                            "same app version as this one." if mirror is not None else
                            f" This offline folder carries no Python (no "
                            f"{steps.PYTHON_MIRROR_DIR}/ folder): an offline install then needs "
                            f"Python {steps.RUNTIME_PYTHON} on this computer; make the folder "
                            "again with a Python included, or install once with a network "
                            "connection.")
                self._fail(f"uv could not create the Python environment ({outcome.describe()}"
                           f"{': ' + outcome.tail[-1] if outcome.tail else ''}).{hint}")
                return
            self._next()

        self._run(argv, "uv venv", done, env=env)

    def _step_lock(self) -> None:
        job = self._job
        assert job is not None
        uv = self._uv()
        if uv is None:
            return
        python = venv_python(job.folder)
        if job.kind == "repair" and not job.partial and not job.reinstall:
            self._next()
            return
        argv = [uv, "pip", "install", "--python", str(python), "--require-hashes",
                "-r", str(job.lock), *self._sources(job)]
        lock_names = {n.lower() for n, _ in lock_packages(job.lock)}
        for name in job.reinstall:
            if name in lock_names:
                argv += ["--reinstall-package", name]
        parsed = steps.UvOutput()
        self._uv_output = parsed
        online = job.offline is None
        self._emit(InstallPhase.DOWNLOADING if online else InstallPhase.INSTALLING, 0,
                   job.total_packages, "starting")

        def line(text: str) -> None:
            parsed.feed(text)
            if parsed.prepared and self._phase != InstallPhase.INSTALLING:
                self._emit(InstallPhase.INSTALLING, 0, job.total_packages,
                           f"package 0 of {job.total_packages}")

        def done(outcome: ProcessOutcome, _out: str) -> None:
            self._stop_monitor()
            if not outcome.succeeded:
                why = parsed.last_error or (outcome.tail[-1] if outcome.tail else "")
                self._fail(f"Installing the trainer runtime's packages failed "
                           f"({outcome.describe()}{': ' + why if why else ''}).",
                           clean_venv=job.kind == "install")
                return
            self._emit(InstallPhase.INSTALLING, job.total_packages, job.total_packages,
                       f"package {job.total_packages} of {job.total_packages}")
            self._next()

        def start() -> None:
            self._start_monitor(job, python)
            self._run(argv, "uv pip install", done, env=self._uv_env(), on_line=line)

        broken = [n for n in job.reinstall if n in lock_names]
        if broken:   # drop the damaged packages' cache entries (hard links to the same files)
            self._run([uv, "cache", "clean", *broken], "uv cache clean",
                      lambda _o, _s: start(), env=self._uv_env())
        else:
            start()

    def _step_app(self) -> None:
        job = self._job
        assert job is not None
        uv = self._uv()
        if uv is None:
            return
        if job.kind == "repair" and not job.partial and steps.APP_DIST not in job.reinstall:
            self._next()
            return
        target = str(job.app_wheel) if job.app_wheel is not None else str(_PACKAGE_ROOT)
        self._emit(InstallPhase.INSTALLING, job.total_packages, job.total_packages,
                   "installing Isengard Desktop's trainer")
        argv = [uv, "pip", "install", "--python", str(venv_python(job.folder)), "--no-deps",
                "--reinstall-package", steps.APP_DIST, target]
        if job.offline is not None:
            argv += ["--no-index"]

        def done(outcome: ProcessOutcome, _out: str) -> None:
            if not outcome.succeeded:
                self._fail(f"Installing the app's trainer module ({Path(target).name}) "
                           f"failed ({outcome.describe()}"
                           f"{': ' + outcome.tail[-1] if outcome.tail else ''}).",
                           clean_venv=job.kind == "install")
                return
            self._next()

        self._run(argv, "uv pip install (app)", done, env=self._uv_env())

    def _runtime_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env.update({"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
                    "HF_HUB_OFFLINE": "1"})
        return env

    def _step_verify(self) -> None:
        """The runtime's own probe and a tiny tensor op on the chosen device, in one child."""
        job = self._job
        assert job is not None
        device = steps.torch_device(job.device)
        self._emit(InstallPhase.VERIFYING, 0, 1,
                   f"loading PyTorch in the runtime and a small calculation on {device}")
        argv = [str(venv_python(job.folder)), "-c", steps.VERIFY_SCRIPT, device]

        def done(outcome: ProcessOutcome, out: str) -> None:
            result: dict[str, Any] = {}
            for text in reversed(out.splitlines()):
                if text.startswith("{"):
                    try:
                        result = json.loads(text)
                        break
                    except ValueError:
                        continue
            data = result.get("probe") or {}
            tensor = result.get("tensor") or {}
            torch_version = str(data.get("torch") or "")
            problem = ""
            if not outcome.succeeded or not data:
                problem = (f"The trainer runtime's probe {outcome.describe()}"
                           f"{': ' + outcome.tail[-1] if outcome.tail else ''}.")
            elif not torch_version:
                problem = f"PyTorch cannot be imported in the runtime: {data.get('torch_error')}."
            elif missing := [k for k, v in (data.get("libraries") or {}).items() if not v]:
                problem = f"The runtime lacks {', '.join(missing)}."
            elif device == "cuda" and not (data.get("cuda") or {}).get("available"):
                error = (data.get("cuda") or {}).get("error") or "no GPU is visible"
                problem = (f"PyTorch {torch_version} in the runtime cannot use the GPU "
                           f"({error}).")
            elif not tensor.get("ok"):
                problem = (f"A small PyTorch calculation on {device} failed in the runtime "
                           f"({tensor.get('error') or tensor or 'no result'}).")
            if not problem:
                self._emit(InstallPhase.VERIFYING, 1, 1, f"the runtime works (PyTorch "
                           f"{torch_version} on {tensor.get('name') or device})")
            self._verified(VerifyResult(ok=not problem, problem=problem, torch=torch_version,
                                        device_name=str(tensor.get("name") or ""),
                                        checked=time.time()))

        self._run(argv, "runtime verify", done, env=self._runtime_env())

    def _verified(self, result: VerifyResult) -> None:
        job = self._job
        assert job is not None
        job.verify = result
        job.steps = [s for s in job.steps if s == self._step_finish]
        self._next()

    def _step_finish(self) -> None:
        job = self._job
        assert job is not None
        result = job.verify or VerifyResult(ok=False, problem="The runtime was not checked.")
        paths = self._paths

        def write() -> list[str]:
            old = read_info(job.folder)
            installed = old.installed if (old and job.kind == "verify") else time.time()
            info = RuntimeInfo(app_version=__version__, device=job.device,
                               lock_sha256=(old.lock_sha256 if (old and job.kind == "verify")
                                            else lock_sha256(job.lock)),
                               installed=installed, verify=result,
                               source=job.source if job.kind != "verify" else (
                                   old.source if old else job.source))
            write_info(job.folder, info)
            clear_marker(job.folder)           # removed last
            removed: list[str] = []
            if result.ok and job.kind != "verify":
                # upgrade: runtimes of other app versions go once this one works
                for folder in list_runtimes(paths):
                    if folder != job.folder and not folder.name.startswith(f"{__version__}-"):
                        remove_runtime(folder)
                        removed.append(folder.name)
            return removed

        def written(removed: list[str]) -> None:
            for name in removed:
                self.log_line.emit(f"removed the previous runtime {name}")
            self._end(inspect(self._paths, job.device))

        self._in_thread(write, written)

    # -- ends --------------------------------------------------------------------------------
    def _fail(self, problem: str, *, clean_venv: bool = False, keep_marker: bool = True) -> None:
        job = self._job
        if job is None:
            return
        self._stop_monitor()
        logger.warning("runtime {} failed: {}", job.kind, problem)
        folder = job.folder

        def clean() -> None:
            if clean_venv:
                shutil.rmtree(folder / "venv", ignore_errors=True)  # the cache stays
            if keep_marker and folder.exists():
                write_marker(folder, problem)

        def cleaned(_: Any) -> None:
            state = inspect(self._paths, job.device)
            self._end(replace(state, problem=problem))

        self._cleanup(clean, cleaned)

    def _cleanup(self, fn: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Like :meth:`_in_thread`, but ``then(exception or None)`` runs whatever happened
        (the job is ending anyway)."""
        def done(future: Future[Any]) -> None:
            self._cleanup_done.emit(then, future.exception())

        self._pool.submit(fn).add_done_callback(done)

    def _end_cancelled(self) -> None:
        job = self._job
        if job is None:
            return
        self._stop_monitor()
        if job.kind == "verify":
            self._end(inspect(self._paths, job.device))
            return
        folder = job.folder

        def mark() -> None:
            if folder.exists():
                write_marker(folder, "cancelled")

        def marked(_: Any) -> None:
            state = inspect(self._paths, job.device)
            self._end(replace(state, problem=(
                "The install was cancelled; what was downloaded is kept, so installing again "
                "continues where it stopped.") if state.state == RuntimeState.INCOMPLETE
                else state.problem))

        self._cleanup(mark, marked)

    def _end(self, status: RuntimeStatus) -> None:
        self._stop_monitor()
        self._job = None
        logger.info("runtime: {} {}", status.state.value, status.problem)
        self.status_changed.emit(status)
        self.finished.emit(status)

    # -- progress monitor --------------------------------------------------------------------
    def _start_monitor(self, job: _Job, python: Path) -> None:
        self._stop_monitor()
        stop = threading.Event()
        self._monitor_stop = stop
        cache = cache_dir(self._paths)
        site = steps.site_packages(python)
        self._samples = []

        def loop() -> None:
            while not stop.is_set():
                self._measured.emit(job, steps.tree_bytes(cache), len(steps.dist_infos(site)))
                stop.wait(MONITOR_INTERVAL_S)

        self._cache_start = steps.tree_bytes(cache)
        threading.Thread(target=loop, name="runtime-progress", daemon=True).start()

    def _stop_monitor(self) -> None:
        if self._monitor_stop is not None:
            self._monitor_stop.set()
            self._monitor_stop = None

    def _on_measured(self, job: _Job, cache_bytes: int, dists: int) -> None:
        if job is not self._job or self._monitor_stop is None:
            return
        now = time.monotonic()
        grown = max(0, cache_bytes - self._cache_start)
        self._samples = [s for s in self._samples if now - s[0] <= 5.0] + [(now, grown)]
        first = self._samples[0]
        rate = (grown - first[1]) / (now - first[0]) if now > first[0] else 0.0
        total = job.total_packages
        if self._phase == InstallPhase.INSTALLING and dists:
            # the venv holds k of the lock's n packages (the app's own comes after)
            k = min(dists, total) if total else dists
            self._emit(InstallPhase.INSTALLING, k, total, f"package {k} of {total}")
        elif job.offline is not None:
            self._emit(InstallPhase.INSTALLING, grown, 0,
                       f"unpacking wheels: {steps.format_transfer(grown, 0, rate)}")
        else:
            # uv announces the large downloads with their sizes: that is the total; bytes land
            # in the cache unpacked, so the cache's growth (capped) fills in between the
            # "Downloaded" lines and gives the speed
            total_bytes = self._uv_output.download_total
            done = max(self._uv_output.download_done, min(grown, int(total_bytes * 0.99)))
            if not total_bytes:
                done = grown
            self._emit(InstallPhase.DOWNLOADING, done, total_bytes,
                       steps.format_transfer(done, total_bytes, rate))
