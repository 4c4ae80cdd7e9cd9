"""Entry point: ``isengard`` / ``python -m isengard_desktop``.

``--smoke-test`` opens the real window offscreen, processes events, prints one JSON line
(version, tabs, data_dir) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isengard", description="Isengard Desktop")
    parser.add_argument("--smoke-test", action="store_true",
                        help="open the window offscreen, print a JSON line and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.smoke_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from . import APP_NAME, __version__
    from .app import build_app

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("Isengard")
    ctx = build_app()
    ctx.window.show()

    if args.smoke_test:
        deadline = time.monotonic() + 20
        while not ctx.library.is_ready and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        app.processEvents()
        print(json.dumps({"version": __version__, "tabs": ctx.window.tab_names(),
                          "data_dir": str(ctx.paths.data), "ready": ctx.library.is_ready}),
              flush=True)
        ctx.window.close()
        ctx.shutdown()
        return 0 if ctx.library.is_ready else 1

    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    ctx.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
