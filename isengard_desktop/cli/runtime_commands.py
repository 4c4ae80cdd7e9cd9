"""``isengard runtime status|install|verify|repair``: the trainer runtime from a terminal.

Runs :class:`~..services.runtime.RuntimeService` on a ``QCoreApplication`` event loop (no
window, no torch in this process). Progress lines go to stderr; with ``--json`` stdout carries
exactly one JSON object (state, device, folder, python, problem, seconds). Exit status 0 when
the runtime ends READY (``status``: when it is ready), 1 otherwise, 2 for bad arguments.
Ctrl+C cancels an install cleanly (the folder is left INCOMPLETE; installing again continues).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.paths import AppPaths
    from ..core.runtime.status import RuntimeDevice, RuntimeStatus

__all__ = ["add_parsers", "runtime_command"]

_DEVICES = ("cu130", "cu126", "rocm", "mps", "cpu")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    runtime = sub.add_parser(
        "runtime", help="install, check or repair the trainer runtime",
        description="The trainer runtime is the Python environment (PyTorch and the training "
                    "libraries) that training runs in, under <data>/runtime/.")
    actions = runtime.add_subparsers(dest="runtime_action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print the result as one JSON line on stdout")
    common.add_argument("--device", choices=_DEVICES,
                        help="which build: cu130 (current NVIDIA), cu126 (older NVIDIA), rocm "
                             "(AMD), mps (Apple), cpu; default: the installed or chosen one")
    actions.add_parser("status", parents=[common], help="say where the runtime stands")
    install = actions.add_parser("install", parents=[common],
                                 help="create the runtime (or finish an interrupted install)")
    install.add_argument("--offline", type=Path, metavar="FOLDER",
                         help="install from an offline payload folder (no network at all)")
    actions.add_parser("verify", parents=[common], help="run the runtime's own check")
    repair = actions.add_parser("repair", parents=[common],
                                help="reinstall only the packages whose files are damaged")
    repair.add_argument("--offline", type=Path, metavar="FOLDER",
                        help="take the packages from this offline payload folder")


def _summary(status: RuntimeStatus, began: float) -> dict[str, Any]:
    return {"ok": status.state.value == "ready", "state": status.state.value,
            "device": status.device.value, "folder": str(status.folder),
            "python": str(status.python) if status.python else None,
            "problem": status.problem, "seconds": round(time.monotonic() - began, 1)}


def auto_device(paths: AppPaths) -> tuple[RuntimeDevice, str]:
    """The build to use when none is named: the Settings override or the installed one, else
    the one GPU detection chooses for this machine; with the reason in words."""
    from ..core.hardware.gpu import detect_machine
    from ..core.hardware.locks import choose_lock
    from ..core.runtime.python import chosen_device

    chosen = chosen_device(paths)
    if chosen is not None:
        return chosen, "the build chosen in Settings or already installed"
    choice = choose_lock(detect_machine(paths.data))
    return choice.device, " ".join(part for part in (choice.reason, choice.problem) if part)


def runtime_command(args: argparse.Namespace) -> int:
    from PySide6.QtCore import QCoreApplication, QTimer

    from .. import APP_NAME, __version__
    from ..core import logging as applog
    from ..core.paths import resolve_paths
    from ..core.runtime.status import RuntimeDevice
    from ..services.runtime import RuntimeService

    began = time.monotonic()
    app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    paths = resolve_paths().ensure()
    applog.setup_logging(paths)
    service = RuntimeService(paths)
    device = RuntimeDevice(args.device) if args.device else None
    action = args.runtime_action

    def finish(status: RuntimeStatus) -> int:
        summary = _summary(status, began)
        if args.json:
            print(json.dumps(summary), flush=True)
        else:
            print(f"trainer runtime: {summary['state']} ({summary['device']}, "
                  f"{summary['folder']})" + (f"\n{status.problem}" if status.problem else ""),
                  flush=True)
        return 0 if summary["ok"] else 1

    if action == "status":
        if device is None:
            device, why = auto_device(paths)
            if not args.json:
                print(f"build for this computer: {device.value} ({why})", flush=True)
        code = finish(service.status(device))
        applog.shutdown_logging()
        return code

    last = [""]

    def on_progress(progress: Any) -> None:
        line = f"{progress.label}: {progress.detail}"
        if line != last[0]:
            last[0] = line
            print(line, file=sys.stderr, flush=True)

    results: list[RuntimeStatus] = []

    def on_finished(status: RuntimeStatus) -> None:
        results.append(status)
        app.quit()

    service.progress.connect(on_progress)
    service.log_line.connect(lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    service.finished.connect(on_finished)
    signal.signal(signal.SIGINT, lambda *_: service.cancel())
    signal.signal(signal.SIGTERM, lambda *_: service.cancel())
    tick = QTimer()
    tick.timeout.connect(lambda: None)   # lets Python see Ctrl+C while Qt waits
    tick.start(200)
    if action == "install":
        offline = args.offline.expanduser().resolve() if args.offline else None
        if device is None and offline is not None:
            from ..core.runtime.manifest import ManifestError, read_manifest
            try:
                device = read_manifest(offline).device
            except ManifestError as exc:
                print(str(exc), file=sys.stderr)
                return 2
        if device is None:
            device, why = auto_device(paths)
            print(f"build for this computer: {device.value} ({why})", file=sys.stderr,
                  flush=True)
        service.install(device, offline)
    elif action == "verify":
        service.verify(device)
    else:
        service.repair(device, args.offline.expanduser().resolve() if args.offline else None)
    if not results:
        app.exec()
    tick.stop()
    service.shutdown()
    applog.shutdown_logging()
    if not results:
        print(json.dumps({"ok": False, "problem": "did not finish"}) if args.json
              else "The runtime command did not finish.", flush=True)
        return 1
    return finish(results[0])
