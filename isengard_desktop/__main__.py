"""Entry point: ``isengard`` / ``python -m isengard_desktop``.

``--smoke-test`` opens the real window offscreen, processes events, prints one JSON line
(version, tabs, data_dir) and exits 0.

``isengard selftest [--json] [--steps N] [--device auto|cpu|cuda]`` checks the set-up
(PyTorch, CUDA, libraries, disk) and trains a tiny random model through the real trainer
(``services/selftest_runner.py``); exit status 0 when everything works, 1 otherwise.

``isengard runtime status|install [--device D] [--offline FOLDER]|verify|repair [--json]``
installs and checks the trainer runtime (``cli/runtime_commands.py``).

``isengard comfy-check --url URL [--json]`` and ``isengard generate --url URL --workflow NAME
--prompt TEXT ... --out DIR`` talk to a ComfyUI server without Qt (``cli/comfy_commands.py``;
exit status 0 done, 1 the server cannot do it, 2 bad arguments or server unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from .app import AppContext
    from .services.single_instance import InstanceLock


def _steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isengard", description="Isengard Desktop")
    parser.add_argument("--smoke-test", action="store_true",
                        help="open the window offscreen, print a JSON line and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    selftest = sub.add_parser(
        "selftest", help="check that training works on this computer",
        description="Checks Python, PyTorch, the GPU, the training libraries and the disk, "
                    "then trains a tiny random model for a few steps through the real trainer. "
                    "Your library is not touched; the test's job folder and LoRA are kept in "
                    "the app's tmp folder. Exit status 0 when everything works, 1 otherwise.")
    selftest.add_argument("--json", action="store_true",
                          help="print the result as one JSON line (and nothing else on stdout)")
    selftest.add_argument("--steps", type=_steps, default=20,
                          help="training steps of the tiny model (default 20)")
    selftest.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="where to train: auto (GPU when usable), cpu or cuda")
    from .cli.comfy_commands import add_parsers
    add_parsers(sub)
    from .cli.runtime_commands import add_parsers as add_runtime_parsers
    add_runtime_parsers(sub)
    return parser.parse_args(argv)


def _selftest(args: argparse.Namespace) -> int:
    """Run the self-test with a QCoreApplication event loop (no window, no torch here)."""
    from PySide6.QtCore import QCoreApplication

    from . import APP_NAME, __version__
    from .core import logging as applog
    from .core.paths import resolve_paths
    from .lifecycle import signal_wake
    from .services.ops import init_main_thread_bridge
    from .core.selftest_report import SelfTestResult
    from .services.selftest_runner import SelfTestService

    app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    paths = resolve_paths().ensure()
    applog.setup_logging(paths)
    init_main_thread_bridge()
    service = SelfTestService(paths)
    results: list[SelfTestResult] = []

    last_label = [""]

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    def on_progress(progress) -> None:
        if progress.label != last_label[0]:
            last_label[0] = progress.label
            say(progress.label)

    service.progressed.connect(on_progress)
    service.check_finished.connect(
        lambda c: say(f"  {'ok' if c.ok else 'FAILED'}: {c.title}"))
    def on_finished(result: SelfTestResult) -> None:
        results.append(result)
        app.quit()

    service.finished.connect(on_finished)
    # Ctrl+C cancels cleanly (children ended, result printed); the timer lets Python see it.
    signal.signal(signal.SIGINT, lambda *_: service.cancel())
    tick = signal_wake()
    service.start(steps=args.steps, device=args.device)
    app.exec()
    tick.stop()
    service.shutdown()
    applog.shutdown_logging()
    if not results:
        print(json.dumps({"ok": False, "checks": [], "error": "the self-test did not finish"})
              if args.json else "The self-test did not finish.", flush=True)
        return 1
    result = results[0]
    print(result.to_json() if args.json else result.report_text(), end="\n" if args.json
          else "", flush=True)
    return 0 if result.ok else 1


def _interpreter_flag(argv: list[str]) -> str | None:
    """``-m``/``-c`` when the frozen app was started as if it were Python (it is not: a child
    that needs Python must use the trainer runtime's, ``core/runtime/python.py``)."""
    if getattr(sys, "frozen", False) and argv and argv[0] in ("-m", "-c"):
        return argv[0]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flag = _interpreter_flag(argv)
    if flag:
        from . import APP_NAME
        print(f"{APP_NAME}: {sys.executable} is the app, not a Python interpreter, so it cannot "
              f"run '{flag} {argv[1] if len(argv) > 1 else ''}'. Trainer processes run with the "
              "trainer runtime's Python; a call like this is a bug in the app, please report it.",
              file=sys.stderr, flush=True)
        return 2
    args = _parse(argv)
    # before any child starts: CUDA numbers the GPUs as our list (NVML) does
    from .core.hardware.gpu import use_pci_bus_order

    use_pci_bus_order(os.environ)
    if args.command == "selftest":
        return _selftest(args)
    if args.command == "runtime":
        from .cli.runtime_commands import runtime_command
        return runtime_command(args)
    if args.command == "comfy-check":
        from .cli.comfy_commands import comfy_check
        return comfy_check(args)
    if args.command == "generate":
        from .cli.comfy_commands import generate
        return generate(args)
    if args.smoke_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from . import APP_NAME, __version__
    from .lifecycle import run

    app = cast(QApplication, QApplication.instance() or QApplication([sys.argv[0]]))
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("Isengard")
    # names packaging/isengard-desktop.desktop: Wayland compositors take the window's icon and
    # task-bar grouping from that entry
    app.setDesktopFileName("isengard-desktop")
    # closing the window ends main() below, which closes the app on the loop; Qt must not
    # end its event loop (the asyncio loop) first
    app.setQuitOnLastWindowClosed(False)
    from .core.paths import resolve_paths
    from .services.single_instance import InstanceLock

    # one instance per data folder: a second one would run the same job queue again
    data_dir = resolve_paths().data
    lock = InstanceLock(data_dir)
    if not lock.acquire():
        shown = lock.ask_to_show()
        headless = args.smoke_test or os.environ.get("QT_QPA_PLATFORM") in HEADLESS_PLATFORMS
        pid = lock.holder_pid()
        print(f"{APP_NAME} is already running with the data folder {data_dir}"
              + (f" (process {pid})" if pid else "")
              + ("; its window was brought to the front." if shown and not headless else
                 ". Close it first, or start with another data folder (ISENGARD_HOME)."),
              file=sys.stderr, flush=True)
        return 0 if shown and not headless else ALREADY_RUNNING_EXIT
    try:
        return run(_app_main(args.smoke_test, lock), app)
    finally:
        lock.release()


SMOKE_READY_TIMEOUT_S = 20.0
HEADLESS_PLATFORMS = ("offscreen", "minimal")
ALREADY_RUNNING_EXIT = 3       # another instance holds the data folder


async def _app_main(smoke_test: bool, lock: InstanceLock) -> int:
    """The app's life on the running loop: build it, wait until its window closes (or the
    smoke test is done), then ``await ctx.aclose()`` once."""
    from .app import build_app

    ctx = build_app()
    closed = asyncio.Event()
    ctx.window.on_close(closed.set)
    lock.show_requested.connect(lambda: _bring_to_front(ctx.window))
    ctx.window.show()
    from PySide6.QtGui import QGuiApplication

    from .app import open_wizard, should_show_first_run

    if should_show_first_run(ctx.settings.settings, smoke_test=smoke_test,
                             platform=QGuiApplication.platformName()):
        open_wizard(ctx)          # once: finishing or skipping it sets wizard_completed
    if smoke_test:
        code = await _smoke(ctx)
    else:
        code = 0
        from PySide6.QtCore import QTimer

        from .lifecycle import signal_wake

        # SIGTERM (logout, `kill`) and Ctrl+C close the window like the user would, so
        # trainers save and the managed ComfyUI is stopped (``signal_wake`` lets Python see
        # the signal while Qt waits for events).
        def on_signal(signum: int, _frame: object) -> None:
            QTimer.singleShot(0, ctx.window.close_without_asking)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        wake = signal_wake()
        await closed.wait()
        wake.stop()
    await ctx.aclose()
    return code


def _bring_to_front(window: QWidget) -> None:
    window.showNormal() if window.isMinimized() else window.show()
    window.raise_()
    window.activateWindow()


async def _smoke(ctx: AppContext) -> int:
    """``--smoke-test``: wait for the library, print one JSON line, close the window."""
    from . import __version__

    deadline = time.monotonic() + SMOKE_READY_TIMEOUT_S
    while not ctx.library.is_ready and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)
    print(json.dumps({"version": __version__, "tabs": ctx.window.tab_names(),
                      "data_dir": str(ctx.paths.data), "ready": ctx.library.is_ready}),
          flush=True)
    ctx.window.close_without_asking()
    return 0 if ctx.library.is_ready else 1


if __name__ == "__main__":
    sys.exit(main())
