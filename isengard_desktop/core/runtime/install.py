"""The pure parts of making a trainer runtime: where ``uv`` is, the command lines of each
step, what uv's output says, the RECORD check that finds damaged packages, and how progress
reads. The service (``services/runtime/service.py``) runs these as child processes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .status import RuntimeDevice

__all__ = ["APP_DIST", "ENV_MANAGED_PYTHON", "ENV_UV", "PYTHON_MIRROR_DIR", "RUNTIME_PYTHON",
           "UvOutput", "app_wheel_in", "broken_packages", "dist_infos", "format_transfer",
           "mirror_relpath", "torch_device", "uv_binary", "uv_env",
           "venv_command", "VERIFY_SCRIPT"]

ENV_UV = "ISENGARD_UV"
# "1": make the runtime's venv from a uv-managed Python as the frozen app does (tests; a
# developer checking an offline payload's Python by hand)
ENV_MANAGED_PYTHON = "ISENGARD_MANAGED_PYTHON"
APP_DIST = "isengard-desktop"
RUNTIME_PYTHON = "3.11"              # the runtime's Python (the locks and wheels are cp311)
PYTHON_MIRROR_DIR = "python"         # an offline payload's copy of uv's Python download
# uv's Python downloads live under this path on every host it uses; a mirror replaces
# everything up to it (uv's python-install-mirror setting)
_RELEASES = "/releases/download/"

# Run by the runtime's Python with the torch device as argv[1]: the runtime's own probe
# (``python -m isengard_desktop.training_runtime probe`` prints the same object) and then a tiny
# tensor op on that device, in one process so torch is imported once. One JSON line.
VERIFY_SCRIPT = (
    "import json, sys\n"
    "from isengard_desktop.training_runtime.probe_tools import probe\n"
    "out = {'probe': probe(), 'tensor': {'ok': False}}\n"
    "try:\n"
    "    import torch\n"
    "    d = sys.argv[1]\n"
    "    x = torch.ones(32, 32, device=d)\n"
    "    v = float((x @ x).sum().item())\n"
    "    name = torch.cuda.get_device_name(0) if d == 'cuda' else d\n"
    "    out['tensor'] = {'ok': v == 32.0 ** 3, 'value': v, 'device': d, 'name': name}\n"
    "except Exception as exc:\n"
    "    out['tensor'] = {'ok': False, 'error': f'{type(exc).__name__}: {exc}'}\n"
    "print(json.dumps(out))\n")


def uv_binary() -> Path | None:
    """The ``uv`` executable: ``$ISENGARD_UV``, the bundle's copy, the ``uv`` package's binary
    (a pinned dependency), or one on PATH; None when there is none."""
    override = os.environ.get(ENV_UV, "").strip()
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        for name in ("uv", "uv.exe"):
            if (Path(bundle) / name).is_file():
                return Path(bundle) / name
    try:
        import uv

        return Path(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    return Path(found) if found else None


def uv_env(cache: Path, python_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for uv children: our cache, managed Pythons under ``python_dir``, no
    user/project uv configuration, no colours."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith("UV_")]:
        env.pop(key)
    env.pop("VIRTUAL_ENV", None)
    env.update({"UV_CACHE_DIR": str(cache), "UV_PYTHON_INSTALL_DIR": str(python_dir),
                "UV_NO_CONFIG": "1", "NO_COLOR": "1", "UV_NO_PROGRESS": "1"})
    return env


def mirror_relpath(url: str) -> str:
    """Where uv looks for the download ``url`` inside a ``python-install-mirror``: the part of
    its path after ``/releases/download/``, percent-decoded (uv turns the mirror's
    ``file://`` URL back into a path, so ``%2B`` names a file with ``+``), "/"-separated.
    ValueError when the URL is not a python-build-standalone release download."""
    path = urlsplit(url).path
    if _RELEASES not in path:
        raise ValueError(f"{url} is not a python-build-standalone release download "
                         f"(no '{_RELEASES}' in its path)")
    rel = unquote(path.split(_RELEASES, 1)[1]).strip("/")
    parts = rel.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{url}: expected <release tag>/<file> after '{_RELEASES}'")
    return rel


def venv_command(uv: str, venv: Path, env: Mapping[str, str], *, managed: bool,
                 offline: bool, mirror: Path | None, own_python: str
                 ) -> tuple[list[str], dict[str, str]]:
    """The ``uv venv`` command line and environment that make a runtime's venv.

    ``managed`` (a frozen app, which has no Python to lend, or ``$ISENGARD_MANAGED_PYTHON``):
    a uv-managed Python 3.11. With an offline payload's ``mirror`` uv must use a managed one
    and may "download" it, but only from that local folder (``UV_PYTHON_INSTALL_MIRROR``, a
    ``file://`` URL); offline without one it must already be on this computer
    (``--no-python-downloads``). Not managed (a checkout): the app's own ``own_python``.
    Pure: ``env`` is copied, nothing is read."""
    argv = [uv, "venv", "--clear", "--no-project"]
    out = dict(env)
    if managed:
        argv += ["--python", RUNTIME_PYTHON]
        if mirror is not None:
            argv += ["--python-preference", "only-managed"]
            out["UV_PYTHON_INSTALL_MIRROR"] = mirror.absolute().as_uri()
            out["UV_PYTHON_DOWNLOADS"] = "automatic"
        else:
            argv += ["--python-preference", "managed"]
            if offline:
                argv.append("--no-python-downloads")
    else:
        argv += ["--python", own_python]
    argv.append(str(venv))
    return argv, out


def torch_device(device: RuntimeDevice) -> str:
    """The torch device a runtime's tensor check runs on."""
    if device in (RuntimeDevice.CUDA13, RuntimeDevice.CUDA126, RuntimeDevice.ROCM):
        return "cuda"     # ROCm builds of torch use the cuda device name too
    if device == RuntimeDevice.MPS:
        return "mps"
    return "cpu"


def app_wheel_in(folder: Path) -> Path | None:
    """The app's own wheel in ``folder`` (newest name), if any."""
    wheels = sorted(folder.glob("isengard_desktop-*.whl")) if folder.is_dir() else []
    return wheels[-1] if wheels else None


_RESOLVED = re.compile(r"Resolved (\d+) packages?")
# uv announces each large download with its size and says when it is done
_DOWNLOADING = re.compile(r"^Downloading (\S+) \(([\d.]+)\s*([KMG]i?B)\)")
_DOWNLOADED = re.compile(r"^Downloaded (\S+)$")
_UNITS = {"KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "KB": 1000, "MB": 1000 ** 2,
          "GB": 1000 ** 3}
_PREPARED = re.compile(r"Prepared (\d+) packages?")
_INSTALLED = re.compile(r"Installed (\d+) packages?")


@dataclass
class UvOutput:
    """What ``uv pip install``'s lines said so far."""

    resolved: int = 0
    prepared: bool = False
    installed: bool = False
    last_error: str = ""
    announced: dict[str, int] = field(default_factory=dict)   # package → download bytes
    downloaded: set[str] = field(default_factory=set)

    @property
    def download_total(self) -> int:
        """Bytes of the downloads uv announced (large packages; 0 before any)."""
        return sum(self.announced.values())

    @property
    def download_done(self) -> int:
        """Bytes of the announced downloads that finished."""
        return sum(size for name, size in self.announced.items() if name in self.downloaded)

    def feed(self, line: str) -> None:
        text = line.strip()
        if m := _DOWNLOADING.match(text):
            self.announced[m.group(1)] = int(float(m.group(2)) * _UNITS.get(m.group(3), 1))
        elif m := _DOWNLOADED.match(text):
            self.downloaded.add(m.group(1))
        if m := _RESOLVED.search(text):
            self.resolved = int(m.group(1))
        elif _PREPARED.search(text):
            self.prepared = True
        elif _INSTALLED.search(text):
            self.installed = True
        if text.startswith(("error:", "×")):
            self.last_error = text.lstrip("×").strip().removeprefix("error:").strip()
        elif self.last_error and text.startswith(("cause:", "Caused by:", "╰─▶")):
            # uv explains an error on the lines after it: keep the reason (it names the file)
            reason = text.lstrip("╰─▶ ").removeprefix("cause:").removeprefix("Caused by:")
            self.last_error = f"{self.last_error}: {reason.strip()}"


def dist_infos(site_packages: Path) -> list[Path]:
    return sorted(site_packages.glob("*.dist-info")) if site_packages.is_dir() else []


def site_packages(venv_python: Path) -> Path:
    venv = venv_python.parent.parent
    if os.name == "nt":
        return venv / "Lib" / "site-packages"
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    return found[0] if found else venv / "lib" / "python3" / "site-packages"


def _record_ok(root: Path, record: Path) -> list[str]:
    """Files of one RECORD that are missing or whose size/hash differ."""
    bad: list[str] = []
    for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) != 3 or not parts[1].startswith("sha256="):
            continue
        rel, digest, size = parts
        path = (root / rel).resolve() if rel.startswith("..") else root / rel
        try:
            if size and path.stat().st_size != int(size):
                bad.append(rel)
                continue
            h = hashlib.sha256(path.read_bytes()).digest()
        except (OSError, ValueError):
            bad.append(rel)
            continue
        if base64.urlsafe_b64encode(h).rstrip(b"=").decode() != digest[len("sha256="):]:
            bad.append(rel)
    return bad


def broken_packages(site: Path, expected: Sequence[str] = ()) -> dict[str, list[str]]:
    """Packages of a runtime whose installed files fail their RECORD (missing, other size or
    hash), plus ``expected`` names with no installation at all (listed with no files).
    Keys are normalised distribution names."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    found: dict[str, list[str]] = {}
    present: set[str] = set()
    for info in dist_infos(site):
        name = norm(info.name[: -len(".dist-info")].rsplit("-", 1)[0])
        present.add(name)
        record = info / "RECORD"
        if not record.is_file():
            found[name] = ["RECORD"]
            continue
        bad = _record_ok(site, record)
        if bad:
            found[name] = bad
    for name in expected:
        if norm(name) not in present:
            found[norm(name)] = []
    return found


def format_transfer(done: int, total: int, rate: float) -> str:
    """ "312 of 2,400 MB · 24 MB/s · about 1 min left" (parts left out when unknown)."""
    mb = 1024 * 1024
    parts = [f"{done / mb:,.0f} of {total / mb:,.0f} MB" if total else f"{done / mb:,.0f} MB"]
    if rate > 0:
        parts.append(f"{rate / mb:,.1f} MB/s")
        if total and total > done:
            left = (total - done) / rate
            parts.append(f"about {left:.0f} s left" if left < 90
                         else f"about {left / 60:.0f} min left")
    return " · ".join(parts)


def tree_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 when missing); for progress only."""
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total
