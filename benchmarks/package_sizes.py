"""Sizes of what we ship: the PyInstaller bundle, the .deb and the offline payload.

Reads what ``make package`` (and ``make offline-payload DEVICE=cpu``) left in ``dist/``; builds
nothing (``make package`` takes minutes). A missing item is reported as not built.

Goals: the GUI bundle carries none of the trainer's ML stack (torch, diffusers, transformers,
peft), and the .deb is smaller than the bundle it holds.

    .venv/bin/python benchmarks/package_sizes.py [--quick] [--top N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, emit_json, print_table  # noqa: E402

DIST = REPO / "dist"
BUNDLE = DIST / "Isengard Desktop"
PAYLOAD = DIST / "offline-cpu"
ML_STACK = ("torch", "diffusers", "transformers", "peft")
MIB = 1024 * 1024


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def fmt(size: int | None) -> str:
    return "not built" if size is None else f"{size / MIB:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same as a full run (it only reads)")
    parser.add_argument("--top", type=int, default=8, help="largest bundle parts to list")
    args = parser.parse_args()

    bundle = tree_bytes(BUNDLE) if BUNDLE.is_dir() else None
    debs = sorted(DIST.glob("isengard-desktop_*.deb")) if DIST.is_dir() else []
    deb = debs[-1].stat().st_size if debs else None
    payload = tree_bytes(PAYLOAD) if PAYLOAD.is_dir() else None
    installers = sorted(DIST.glob("*.AppImage")) + sorted(DIST.glob("IsengardDesktopSetup-*.exe"))

    rows = [("bundle (dist/Isengard Desktop/)", fmt(bundle)),
            (f".deb ({debs[-1].name})" if debs else ".deb", fmt(deb)),
            ("offline payload (dist/offline-cpu/)", fmt(payload))]
    rows += [(p.name, fmt(p.stat().st_size)) for p in installers]
    print_table("Package sizes", rows)

    parts: list[tuple[str, int]] = []
    internal = BUNDLE / "_internal"
    if internal.is_dir():
        parts = sorted(((p.name, tree_bytes(p)) for p in internal.iterdir()),
                       key=lambda item: -item[1])[:args.top]
        print_table(f"Largest parts of the bundle (top {args.top})",
                    [(name, fmt(size)) for name, size in parts])

    ml_in_bundle = [m for m in ML_STACK if (internal / m).exists()] if internal.is_dir() else []
    goals: dict[str, bool] = {}
    if bundle is not None:
        goals["no_ml_stack_in_bundle"] = not ml_in_bundle
    if bundle is not None and deb is not None:
        goals["deb_smaller_than_bundle"] = deb < bundle
    emit_json("package_sizes", {
        "bundle_mib": None if bundle is None else round(bundle / MIB, 1),
        "deb_mib": None if deb is None else round(deb / MIB, 1),
        "payload_mib": None if payload is None else round(payload / MIB, 1),
        "deb_to_bundle": None if not (bundle and deb) else round(deb / bundle, 3),
        "ml_stack_in_bundle": ml_in_bundle,
        "largest_parts_mib": {name: round(size / MIB, 1) for name, size in parts},
    }, goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
