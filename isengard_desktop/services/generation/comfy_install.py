"""Installs the managed ComfyUI ("Install ComfyUI for me") under ``<data>/comfyui/<tag>/``.

A chain of steps like the trainer runtime's (:class:`~..runtime.service.RuntimeService`), with
its pieces reused: the ``.incomplete`` marker and venv helpers of ``core.runtime.layout``, the
device lock and its sources of ``core.runtime.locks``, uv's location, environment and output
parsing of ``core.runtime.install``, :class:`ChildProcess` for every command, and
:class:`~.comfy_check.ComfyCheck` (a :class:`ComfyServer` and ``/object_info``) for the
check. File work runs on the service's own worker thread::

    release archive: offline payload ``comfyui/<archive>`` | ``core.downloads`` fetch (resumable)
      → marker → unpack (no traversal, no links) → uv venv
      → uv pip install --require-hashes -r <the trainer's device lock>   (same torch wheels:
        uv hard-links them from the shared cache, see resources/comfyui/release.toml)
      → uv pip install -r ComfyUI/requirements.txt --constraint <the lock's pins>
      → our LoRA upload node (install_upload_node)
      → verify: start it (ComfyServer) and read /object_info: every core node class our
        workflows use must be listed
      → comfy_install.json, marker removed, other releases' folders removed (upgrade)

Offline (``offline_folder``, the installer's payload): the archive is
``<payload>/comfyui/<archive>`` and every package comes from ``<payload>/wheels`` with
``--no-index``. Cancel kills the running child (or stops the download or the check) and leaves
the marker: INCOMPLETE, and Install continues where it stopped (the archive, the unpacked
source and uv's cache are kept). A failed package step removes the half-made venv.

Custom-node packs listed in release.toml are data only in this version (not installed).

Signals:
    status_changed(ComfyInstallStatus): after each state change.
    progress(Progress): ``label`` is the phase (preparing/downloading/installing/verifying).
    finished(ComfyInstallStatus): once per install, also on cancel and failure.
    log_line(str): a line of the running child's output.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ...core.comfy_install.archive import ArchiveError, safe_extract
from ...core.comfy_install.layout import (
    ComfyInstallInfo, ComfyInstallStatus, ComfyVerify, archives_dir, comfy_dir,
    inspect_install, install_folder, list_installs, remove_install, write_install_info)
from ...core.comfy_install.release import (ComfyRelease, NodePack, ReleaseError, load_release,
                                           release_file)
from ...core.paths import AppPaths
from ...core.runtime import install as uvsteps
from ...core.runtime.layout import (clear_marker, venv_python,
                                    write_marker)
from ...core.runtime.locks import lock_file, lock_packages, lock_sha256
from ...core.runtime.manifest import ManifestError, file_sha256, read_manifest
from ...core.runtime.python import chosen_device
from ...core.runtime.status import InstallPhase, RuntimeDevice, RuntimeState
from ..child_process import ProcessOutcome, StopIntent
from ..step_chain import StepChainService
from ..tasks import TaskOwner
from .comfy_check import ComfyCheck, required_node_classes
from .comfy_launch import install_upload_node

__all__ = ["ComfyInstallService", "required_node_classes"]

@dataclass
class _Job:
    release: ComfyRelease
    device: RuntimeDevice
    folder: Path
    lock: Path
    offline: Path | None = None
    archive: Path | None = None
    steps: list[Callable[[], None]] = field(default_factory=list)
    cancelled: bool = False
    ending: bool = False          # a cancel's clean-up is running
    verify: ComfyVerify | None = None
    object_info: dict[str, Any] | None = None
    packs: list[NodePack] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.offline) if self.offline is not None else "online"


class ComfyInstallService(StepChainService):
    """Owns ``<data>/comfyui/<tag>/``. See the module docstring for steps and signals."""

    status_changed = Signal(object)
    finished = Signal(object)
    LOG_NAME = "comfy install"
    _cleanup_done = Signal(object)                    # then (called whatever happened)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(paths, "comfy-install", parent)
        self._job: _Job | None = None
        self._download: asyncio.Task[Any] | None = None
        self.tasks = TaskOwner("ComfyUI install")
        self.verify_timeout_s = 600.0     # a first start of a real ComfyUI compiles things
        self._check = ComfyCheck(paths, self.verify_timeout_s, parent=self)
        self._check.checked.connect(self._on_checked)
        self._cleanup_done.connect(lambda then: then(None))

    # -- public ------------------------------------------------------------------------------
    def device(self) -> RuntimeDevice:
        """The torch build ComfyUI gets: the trainer runtime's (chosen or installed), else CPU."""
        return chosen_device(self._paths) or RuntimeDevice.CPU

    def status(self) -> ComfyInstallStatus:
        """(reads a few small files) Where the managed ComfyUI stands."""
        try:
            release = load_release()
        except ReleaseError as exc:
            return ComfyInstallStatus(RuntimeState.MISSING, "", self._paths.data / "comfyui",
                                      problem=str(exc))
        if self._job is not None:
            return ComfyInstallStatus(RuntimeState.INSTALLING, release.tag, self._job.folder)
        device = self.device()
        return inspect_install(self._paths, release, device, lock_file(device))

    def node_packs(self) -> tuple[NodePack, ...]:
        """(reads the release file) The optional custom-node packs one can tick."""
        try:
            return load_release().node_packs
        except ReleaseError:
            return ()

    def install(self, offline_folder: Path | None = None, packs: Sequence[str] = ()) -> None:
        """Install (or continue, repair, update to) the pinned release, with the custom-node
        ``packs`` named (release.toml's ``custom_nodes``); see the module text."""
        if self._job is not None:
            self.finished.emit(replace(self.status(), problem=(
                "A ComfyUI install is already running; wait for it or cancel it first.")))
            return
        try:
            release = load_release()
        except ReleaseError as exc:
            self.finished.emit(ComfyInstallStatus(RuntimeState.MISSING, "",
                                                  self._paths.data / "comfyui",
                                                  problem=str(exc)))
            return
        device = self.device()
        job = _Job(release, device, install_folder(self._paths, release.tag), lock_file(device),
                   offline=Path(offline_folder) if offline_folder is not None else None)
        known = {p.name: p for p in release.node_packs}
        for name in packs:
            pack = known.get(name)
            if pack is None or not pack.commit:
                self.finished.emit(replace(self.status(), problem=(
                    f"The custom-node pack {name} is {'not pinned' if pack else 'unknown'} in "
                    f"{release_file()}; untick it.")))
                return
            job.packs.append(pack)
        job.steps = [self._step_archive, self._step_marker, self._step_unpack,
                     self._step_venv, self._step_lock, self._step_requirements,
                     self._step_node,
                     *[(lambda p=pack: self._step_pack(p)) for pack in job.packs],
                     self._step_verify, self._step_finish]
        self._job = job
        logger.info("comfy install: {} ({}, {})", release.tag, device.value, job.source)
        self.status_changed.emit(self.status())
        self._next()

    def cancel(self) -> None:
        """Stop the install; what was downloaded and unpacked is kept for a retry."""
        job = self._job
        if job is None:
            return
        job.cancelled = True
        if self._child is not None:
            self._child.kill(StopIntent.CANCEL)          # its finished signal ends the job
        elif self._download is not None:
            self._download.cancel()
        elif self._check.running:
            self._end_cancelled()

    def shutdown(self) -> None:
        """At quit: stop any child and check server."""
        if self._job is not None:
            self._job.cancelled = True
        if self._child is not None:
            self._child.stop_and_wait(StopIntent.SHUTDOWN, kill_grace_s=2.0)
        self._check.shutdown()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- machinery ---------------------------------------------------------------------------
    def _run_uv(self, argv: list[str], name: str,
                then: Callable[[ProcessOutcome, uvsteps.UvOutput], None]) -> None:
        """One uv child with its output parsed (what it resolved, downloaded, failed on)."""
        parsed = uvsteps.UvOutput()
        self._run(argv, name, lambda outcome, _out: then(outcome, parsed), env=self._uv_env(),
                  on_line=parsed.feed, merge_channels=True)

    def _failure_text(self, exc: BaseException) -> str:
        return str(exc) if isinstance(exc, ArchiveError) else super()._failure_text(exc)

    # -- steps -------------------------------------------------------------------------------
    def _step_archive(self) -> None:
        job = self._job
        assert job is not None
        self._emit(InstallPhase.PREPARING, 0, 0, f"ComfyUI {job.release.tag}")
        if not job.lock.is_file():
            self._fail(f"There is no {job.device.value} lock file ({job.lock}) for ComfyUI's "
                       "PyTorch; choose another build in Settings → This machine.")
            return
        if (comfy_dir(job.folder) / "main.py").is_file():
            self._next()           # unpacked by an earlier try: the archive is not needed
            return
        if job.offline is not None:
            job.archive = job.offline / "comfyui" / job.release.archive
            if not job.archive.is_file():
                self._fail(f"The offline folder has no ComfyUI release: {job.archive} is "
                           "missing. Make the offline folder again with ComfyUI included.")
                return
            payload, archive = job.offline, job.archive

            def check() -> None:
                """The archive against the payload's manifest (when it lists it)."""
                try:
                    manifest = read_manifest(payload)
                except ManifestError:
                    return            # a folder made by hand: the unpack checks the archive
                rel = archive.relative_to(payload).as_posix()
                for entry in manifest.files:
                    if entry.path == rel and (archive.stat().st_size != entry.size
                                              or file_sha256(archive) != entry.sha256):
                        raise ArchiveError(f"{archive} differs from what the offline "
                                           "folder's manifest.json lists (damaged while "
                                           "copying?); copy it again")

            self._in_thread(check, lambda _: self._next())
            return
        job.archive = archives_dir(self._paths) / job.release.archive
        if job.archive.is_file() and not job.release.sha256:
            self._next()           # downloaded before (no hash to check it against)
            return
        self._download = self.tasks.spawn(
            self._fetch(job, job.release.url, job.archive, job.release.sha256,
                        f"ComfyUI {job.release.tag}", self._next),
            name="ComfyUI release download")

    async def _fetch(self, job: _Job, url: str, dest: Path, sha256: str, label: str,
                     then: Callable[[], None]) -> None:
        import httpx

        from ...core.downloads.errors import DownloadError
        from ...core.downloads.fetch import FetchProgress, FetchSpec, fetch, format_bytes

        spec = FetchSpec(url, dest, sha256=sha256, label=label)

        def progressed(p: FetchProgress) -> None:
            self._emit(InstallPhase.DOWNLOADING, p.done, p.total,
                       f"{format_bytes(p.done)} of {format_bytes(p.total) if p.total else '?'}"
                       f" · {format_bytes(p.rate)}/s")

        try:
            async with httpx.AsyncClient(trust_env=True) as client:
                await fetch(client, spec, on_progress=progressed)
        except asyncio.CancelledError:
            self._download = None
            if job is self._job:
                self._end_cancelled()
            raise
        except DownloadError as exc:
            self._download = None
            if job is self._job:
                self._fail(f"Downloading {label} failed: {exc}")
            return
        self._download = None
        if job is self._job:
            then()

    def _step_marker(self) -> None:
        job = self._job
        assert job is not None
        lock = job.lock

        def mark() -> None:
            write_marker(job.folder)
            pins = "".join(f"{name}=={version}\n" for name, version in lock_packages(lock))
            (job.folder / "constraints.txt").write_text(pins, encoding="utf-8")

        self._in_thread(mark, lambda _: self._next())

    def _step_unpack(self) -> None:
        job = self._job
        assert job is not None
        target = comfy_dir(job.folder)
        if (target / "main.py").is_file():
            self._next()
            return
        assert job.archive is not None
        archive = job.archive
        self._emit(InstallPhase.PREPARING, 0, 0, f"unpacking {archive.name}")

        def unpack() -> None:
            safe_extract(archive, target, cancelled=lambda: job.cancelled)
            if not (target / "main.py").is_file():
                shutil.rmtree(target, ignore_errors=True)
                raise ArchiveError(f"{archive} holds no main.py: it is not a ComfyUI release")

        self._in_thread(unpack, lambda _: self._next())

    def _step_venv(self) -> None:
        job = self._job
        assert job is not None
        uv = self._uv()
        if uv is None:
            return
        venv = job.folder / "venv"
        if venv_python(job.folder).exists() and (venv / "pyvenv.cfg").exists():
            self._next()
            return
        self._emit(InstallPhase.PREPARING, 0, 0, "creating ComfyUI's Python environment")
        argv = [uv, "venv", "--clear", "--no-project"]
        if getattr(sys, "frozen", False):
            argv += ["--python", "3.11", "--python-preference", "managed"]
            if job.offline is not None:
                argv.append("--no-python-downloads")
        else:
            argv += ["--python", sys.executable]
        argv.append(str(venv))

        def done(outcome: ProcessOutcome, parsed: uvsteps.UvOutput) -> None:
            if not outcome.succeeded:
                self._fail(f"uv could not create ComfyUI's Python environment "
                           f"({outcome.describe()}: {parsed.last_error or outcome.tail[-1:]}).")
                return
            self._next()

        self._run_uv(argv, "uv venv (ComfyUI)", done)

    def _pip(self, label: str, args: list[str], what: str) -> None:
        job = self._job
        assert job is not None
        uv = self._uv()
        if uv is None:
            return
        self._emit(InstallPhase.DOWNLOADING if job.offline is None else InstallPhase.INSTALLING,
                   0, 0, label)
        argv = [uv, "pip", "install", "--python", str(venv_python(job.folder)), *args,
                *self._sources(job)]

        def done(outcome: ProcessOutcome, parsed: uvsteps.UvOutput) -> None:
            if not outcome.succeeded:
                why = parsed.last_error or (outcome.tail[-1] if outcome.tail else "")
                self._fail(f"Installing {what} failed ({outcome.describe()}"
                           f"{': ' + why if why else ''}).", clean_venv=True)
                return
            self._emit(InstallPhase.INSTALLING, 1, 1, f"{label}: done")
            self._next()

        self._run_uv(argv, f"uv pip install ({what})", done)

    def _step_lock(self) -> None:
        job = self._job
        assert job is not None
        self._pip(f"PyTorch and the trainer's packages ({job.device.value} lock)",
                  ["--require-hashes", "-r", str(job.lock)], f"the {job.lock.name} packages")

    def _step_requirements(self) -> None:
        job = self._job
        assert job is not None
        req = comfy_dir(job.folder) / "requirements.txt"
        if not req.is_file():
            self._next()
            return
        self._pip("ComfyUI's requirements", ["-r", str(req), "--constraint",
                                             str(job.folder / "constraints.txt")],
                  f"ComfyUI's requirements ({req})")

    def _step_node(self) -> None:
        job = self._job
        assert job is not None
        comfy, data = comfy_dir(job.folder), self._paths.data

        def put() -> None:
            if install_upload_node(comfy, data) is None:
                raise OSError(f"the LoRA upload node could not be copied into {comfy}")

        self._in_thread(put, lambda _: self._next())

    def _step_pack(self, pack: NodePack) -> None:
        """One ticked custom-node pack: its pinned archive into custom_nodes/<name>, then its
        requirements (constrained to the lock's pins)."""
        job = self._job
        assert job is not None
        target = comfy_dir(job.folder) / "custom_nodes" / pack.name
        stamp = target / ".isengard-pack"
        self._emit(InstallPhase.PREPARING, 0, 0, f"custom nodes: {pack.name}")

        def requirements() -> None:
            req = target / "requirements.txt"
            if req.is_file():
                self._pip(f"{pack.name}'s requirements",
                          ["-r", str(req), "--constraint", str(job.folder / "constraints.txt")],
                          f"{pack.name}'s requirements ({req})")
            else:
                self._next()

        def unpack(archive: Path) -> None:
            def work() -> None:
                safe_extract(archive, target, cancelled=lambda: job.cancelled)
                stamp.write_text(pack.commit, encoding="utf-8")

            self._in_thread(work, lambda _: requirements())

        try:
            done = stamp.read_text(encoding="utf-8").strip() == pack.commit
        except OSError:
            done = False
        if done:
            requirements()     # unpacked before; uv skips what is installed already
            return
        if job.offline is not None:
            archive = job.offline / "comfyui" / "nodes" / pack.archive_name
            if not archive.is_file():
                self._fail(f"The offline folder lacks the custom-node pack {pack.name}: "
                           f"{archive} is missing. Untick it or make the folder again.")
                return
            unpack(archive)
            return
        archive = archives_dir(self._paths) / pack.archive_name
        if archive.is_file():
            unpack(archive)
            return
        self._download = self.tasks.spawn(
            self._fetch(job, pack.archive_url, archive, "", pack.name,
                        lambda: unpack(archive)), name=f"{pack.name} download")

    def _step_verify(self) -> None:
        job = self._job
        assert job is not None
        self._emit(InstallPhase.VERIFYING, 0, 1, "starting ComfyUI and reading its node list")
        self._check.timeout_s = self.verify_timeout_s
        self._check.start(comfy_dir(job.folder), venv_python(job.folder),
                          [p.name for p in job.packs])

    def _on_checked(self, result: ComfyVerify) -> None:
        if self._job is not None and not self._job.ending:
            self._verified(result)

    def _verified(self, result: ComfyVerify) -> None:
        job = self._job
        assert job is not None
        job.verify = result
        if result.ok:
            self._emit(InstallPhase.VERIFYING, 1, 1,
                       f"ComfyUI {job.release.tag} works ({result.node_count} node classes)")
        self._next()

    def _step_finish(self) -> None:
        job = self._job
        assert job is not None
        result = job.verify or ComfyVerify(ok=False, problem="ComfyUI was not checked.")
        paths = self._paths

        def write() -> list[str]:
            write_install_info(job.folder, ComfyInstallInfo(
                tag=job.release.tag, commit=job.release.commit, device=job.device,
                lock_sha256=lock_sha256(job.lock), installed=time.time(), source=job.source,
                verify=result, packs=tuple(f"{p.name}@{p.commit}" for p in job.packs)))
            clear_marker(job.folder)                   # removed last
            removed = []
            if result.ok:                              # upgrade: the old release goes now
                for folder in list_installs(paths):
                    if folder != job.folder:
                        remove_install(folder)
                        removed.append(folder.name)
            return removed

        def written(removed: list[str]) -> None:
            for name in removed:
                self.log_line.emit(f"removed the previous ComfyUI {name}")
            self._end(self.status() if self._job is None else self._inspect(job))

        self._in_thread(write, written)

    # -- ends --------------------------------------------------------------------------------
    def _inspect(self, job: _Job) -> ComfyInstallStatus:
        return inspect_install(self._paths, job.release, job.device, job.lock)

    def _fail(self, problem: str, *, clean_venv: bool = False) -> None:
        job = self._job
        if job is None or job.ending:
            return
        job.ending = True
        logger.warning("comfy install failed: {}", problem)
        self._check.stop()

        def clean() -> None:
            if clean_venv:
                shutil.rmtree(job.folder / "venv", ignore_errors=True)   # uv's cache stays
            if job.folder.exists():      # a failure before the marker step leaves no folder
                write_marker(job.folder, problem)

        def cleaned(_: Any) -> None:
            self._end(replace(self._inspect(job), problem=problem))

        self._cleanup(clean, cleaned)

    def _cleanup(self, fn: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Run ``fn`` on the worker; ``then`` runs whatever happened (the job ends anyway)."""
        def done(future: Future[Any]) -> None:
            exc = future.exception()
            if exc is not None:
                logger.warning("comfy install: clean-up failed: {}", exc)
            self._cleanup_done.emit(then)

        self._pool.submit(fn).add_done_callback(done)

    def _end_cancelled(self) -> None:
        job = self._job
        if job is None or job.ending:
            return
        job.ending = True
        job.steps = []
        self._check.stop()

        def marked(_: Any) -> None:
            state = self._inspect(job)
            self._end(replace(state, problem=(
                "The ComfyUI install was cancelled; what was downloaded is kept, so installing "
                "again continues where it stopped.") if state.state == RuntimeState.INCOMPLETE
                else state.problem))

        self._cleanup(lambda: write_marker(job.folder, "cancelled"), marked)

    def _end(self, status: ComfyInstallStatus) -> None:
        self._job = None
        self._child = None
        self._download = None
        logger.info("comfy install: {} {}", status.state.value, status.problem)
        self.status_changed.emit(status)
        self.finished.emit(status)
