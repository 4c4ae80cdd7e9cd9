"""Trainer runtime install: ours from an offline payload vs a bare ``uv pip install`` of the
same lock from the same wheels (goal ≤ 1.1×).

* Payload: ``--payload FOLDER`` (made by ``make offline-payload``), else one is assembled from
  ``resources/runtime/cpu.txt`` (or the integration test's cached lock) and the cached test
  wheelhouse (``~/.cache/isengard-test-wheelhouse/<lock sha256>``, downloaded when missing).
* Ours: ``python -m isengard_desktop runtime install --offline PAYLOAD --json`` into a fresh
  ``ISENGARD_HOME`` (empty uv cache): manifest check (every file hashed), ``uv venv``, the
  locked install, the app's wheel, then verify (torch import + a tensor op). The install time
  is spawn → the first "verifying" progress line; the total includes verify.
* Bare: ``uv venv`` + ``uv pip install --no-index --find-links PAYLOAD/wheels --require-hashes
  -r LOCK`` into a fresh folder with an empty uv cache of its own.
* Repetitions: 3 (``--quick`` 1), alternating; medians; ratio ours-install / bare (goal ≤ 1.1).
  Also: the payload's size, and how long verify and the manifest check take.

    .venv/bin/python benchmarks/runtime_install.py [--quick] [--payload FOLDER] [--reps R]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit_json, median, print_table, ratio  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _default_payload(root: Path) -> Path:
    from isengard_desktop.core.runtime.locks import lock_sha256

    spec = importlib.util.spec_from_file_location("offline_payload",
                                                  REPO / "packaging" / "offline_payload.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    cache = Path(os.environ.get("ISENGARD_TEST_WHEELHOUSE")
                 or Path.home() / ".cache" / "isengard-test-wheelhouse")
    lock = REPO / "resources" / "runtime" / "cpu.txt"
    if not lock.is_file():
        locks = sorted(cache.glob("lock-*.txt"), key=lambda p: p.stat().st_mtime)
        if not locks:
            raise SystemExit("no CPU lock: run tests/integration/test_runtime_install.py once "
                             "or pass --payload")
        lock = locks[-1]
    wheelhouse = cache / lock_sha256(lock)
    if not (wheelhouse / ".complete").exists():
        builder.download_wheels(lock, wheelhouse)
        (wheelhouse / ".complete").write_text("benchmark\n")
    locked = root / "locks"
    locked.mkdir()
    shutil.copy2(lock, locked / "cpu.txt")
    app_wheel = builder.build_app_wheel(root / "app-wheel")
    return builder.build_payload("cpu", locked / "cpu.txt", root / "payload",
                                 wheelhouse=wheelhouse, app_wheel=app_wheel,
                                 python_url="")   # this machine cannot reach uv's Python host


def _ours(payload: Path, root: Path) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="ours-", dir=root))
    env = dict(os.environ, ISENGARD_HOME=str(home), ISENGARD_RUNTIME_LOCKS=str(payload),
               PYTHONPATH=str(REPO))
    began = time.monotonic()
    marks: dict[str, float] = {}
    proc = subprocess.Popen([sys.executable, "-m", "isengard_desktop", "runtime", "install",
                             "--offline", str(payload), "--json"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        for phase in ("creating the Python environment", "installing:", "verifying:"):
            if phase in line and phase not in marks:
                marks[phase] = time.monotonic() - began
    out = proc.stdout.read()
    proc.wait()
    total = time.monotonic() - began
    result = json.loads(out.strip().splitlines()[-1])
    if not result.get("ok"):
        raise SystemExit(f"our install failed: {result}")
    shutil.rmtree(home, ignore_errors=True)
    install = marks["verifying:"]
    return {"install_s": install, "total_s": total, "verify_s": total - install,
            "manifest_s": marks.get("creating the Python environment", 0.0)}


def _bare(payload: Path, root: Path) -> float:
    from isengard_desktop.core.runtime.install import uv_binary

    uv = str(uv_binary())
    work = Path(tempfile.mkdtemp(prefix="bare-", dir=root))
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    env["UV_CACHE_DIR"] = str(work / "cache")
    lock = next(p for p in payload.glob("*.txt"))
    began = time.monotonic()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(work / "venv")],
                   check=True, env=env)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(work / "venv" / "bin" / "python"),
                    "--no-index", "--find-links", str(payload / "wheels"), "--require-hashes",
                    "-r", str(lock)], check=True, env=env)
    took = time.monotonic() - began
    shutil.rmtree(work, ignore_errors=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--payload", type=Path)
    parser.add_argument("--reps", type=int)
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    root = Path(tempfile.mkdtemp(prefix="isengard-bench-runtime-"))
    try:
        payload = args.payload or _default_payload(root)
        size = sum(p.stat().st_size for p in payload.rglob("*") if p.is_file())
        ours: list[dict[str, float]] = []
        bare: list[float] = []
        for rep in range(reps):
            if rep % 2:
                bare.append(_bare(payload, root))
                ours.append(_ours(payload, root))
            else:
                ours.append(_ours(payload, root))
                bare.append(_bare(payload, root))
        figures = {
            "payload_mb": size / 1e6, "reps": reps,
            "bare_s": median(bare),
            "ours_install_s": median([o["install_s"] for o in ours]),
            "ours_total_s": median([o["total_s"] for o in ours]),
            "ours_verify_s": median([o["verify_s"] for o in ours]),
            "ours_manifest_check_s": median([o["manifest_s"] for o in ours]),
        }
        figures["ratio_install"] = ratio(figures["ours_install_s"], figures["bare_s"])
        print_table("Trainer runtime install from a local wheelhouse (cold uv cache)", [
            ("payload", f"{figures['payload_mb']:,.0f} MB"),
            ("bare uv venv + uv pip install", f"{figures['bare_s']:.1f} s"),
            ("ours, until verify", f"{figures['ours_install_s']:.1f} s "
                                   f"(manifest check {figures['ours_manifest_check_s']:.1f} s)"),
            ("ours, verify", f"{figures['ours_verify_s']:.1f} s"),
            ("ratio ours/bare (install)", f"{figures['ratio_install']:.2f}× (goal ≤ 1.1×)"),
        ])
        emit_json("runtime_install", figures, {"install_ratio_le_1_1":
                                               figures["ratio_install"] <= 1.1})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
