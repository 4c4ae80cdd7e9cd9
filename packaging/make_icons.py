"""Render the app icon: resources/icons/isengard.svg → PNGs, a multi-size .ico and an .icns.

    .venv/bin/python packaging/make_icons.py          # rewrite the files
    .venv/bin/python packaging/make_icons.py --check  # exit 1 if a committed file is stale

The SVG is the source; the generated files are committed so that builds (PyInstaller, the .deb,
the Windows installer) need no SVG renderer. Rendering uses Qt's own SVG renderer (QtSvg is part
of PySide6-Essentials), offscreen; Pillow writes the .ico and .icns.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"
SVG = ICONS / "isengard.svg"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)   # what Windows picks from for taskbar/explorer
ICNS_SIZES = (16, 32, 64, 128, 256, 512)     # Pillow builds the icns from a 512 base + sizes

__all__ = ["PNG_SIZES", "png_name", "render_all"]


def png_name(size: int) -> str:
    return f"isengard-{size}.png"


def _render_png(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG (Qt could not parse it)")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def render_all(svg: Path = SVG) -> dict[str, bytes]:
    """File name → bytes for every generated icon file (nothing written)."""
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841
    sizes = sorted(set(PNG_SIZES) | set(ICO_SIZES) | set(ICNS_SIZES))
    pngs = {size: _render_png(svg, size) for size in sizes}
    out = {png_name(size): pngs[size] for size in PNG_SIZES}
    # Each size is rendered from the SVG (sharper than Pillow scaling the big one down).
    images = {size: Image.open(io.BytesIO(pngs[size])).convert("RGBA") for size in sizes}
    ico = io.BytesIO()
    images[max(ICO_SIZES)].save(ico, format="ICO", sizes=[(s, s) for s in ICO_SIZES],
                                append_images=[images[s] for s in ICO_SIZES])
    out["isengard.ico"] = ico.getvalue()
    icns = io.BytesIO()
    images[max(ICNS_SIZES)].save(icns, format="ICNS",
                                 append_images=[images[s] for s in ICNS_SIZES[:-1]])
    out["isengard.icns"] = icns.getvalue()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed files instead of writing them")
    args = parser.parse_args(argv)
    files = render_all()
    stale = []
    for name, data in files.items():
        path = ICONS / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
            continue
        path.write_bytes(data)
        print(f"[icons] {path.relative_to(ROOT)} ({len(data)} bytes)")
    if stale:
        print("[icons] stale or missing (run packaging/make_icons.py): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
