"""uv's own Python in the offline payload: the builder downloads it (from a local HTTP server
standing in for releases.astral.sh, which this machine cannot reach) into the path uv reads
from a mirror and lists it in the manifest; real ``uv`` finds the file at that path (it then
refuses our stand-in archive on its SHA-256, as it must); and the runtime service, with a fake
``uv`` that records its command line, points ``uv venv`` at the payload's mirror."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import socket
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime.install import ENV_MANAGED_PYTHON, ENV_UV, mirror_relpath
from isengard_desktop.core.runtime.manifest import read_manifest, verify_manifest, write_manifest
from isengard_desktop.core.runtime.status import RuntimeDevice

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
TAG = "20261110"
NAME = "cpython-3.11.18+20261110-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
LOCK = "numpy==2.4.6 \\\n    --hash=sha256:aaaa\n"


def _builder():
    spec = importlib.util.spec_from_file_location("offline_payload",
                                                  REPO / "packaging" / "offline_payload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server laid out like the Python host; yields (base URL, archive bytes)."""
    root = tmp_path / "host"
    folder = root / "github" / "python-build-standalone" / "releases" / "download" / TAG
    folder.mkdir(parents=True)
    data = b"not really a python build " * 4000
    (folder / NAME).write_bytes(data)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", data
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _inputs(tmp_path):
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    (wheels / "numpy-2.4.6-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel")
    app = tmp_path / "isengard_desktop-0.1.0-py3-none-any.whl"
    app.write_bytes(b"app")
    lock = tmp_path / "cpu.txt"
    lock.write_text(LOCK)
    return wheels, app, lock


def test_payload_carries_the_python_build_where_uv_looks_and_lists_it(tmp_path, server):
    base, data = server
    url = f"{base}/github/python-build-standalone/releases/download/{TAG}/" \
          + NAME.replace("+", "%2B")
    wheels, app, lock = _inputs(tmp_path)
    out = _builder().build_payload("cpu", lock, tmp_path / "payload", wheelhouse=wheels,
                                   app_wheel=app, python_url=url, check_python=False)
    archive = out / "python" / TAG / NAME
    assert archive.read_bytes() == data
    assert not list((out / "python").rglob("*.part"))
    manifest = read_manifest(out)
    assert manifest.python == f"python/{TAG}/{NAME}" == "python/" + mirror_relpath(url)
    entry = {f.path: f for f in manifest.files}[manifest.python]
    assert entry.size == len(data) and entry.sha256 == hashlib.sha256(data).hexdigest()
    assert verify_manifest(out) == []
    archive.write_bytes(data[:-10])
    assert verify_manifest(out) == [f"python/{TAG}/{NAME} is truncated "
                                    f"({len(data) - 10:,} of {len(data):,} bytes)"]
    archive.unlink()
    assert verify_manifest(out) == [f"python/{TAG}/{NAME} is missing"]


def test_builder_fails_clearly_when_the_python_host_cannot_be_reached(tmp_path, capsys):
    with socket.socket() as sock:          # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x/releases/download/{TAG}/{NAME}"
    builder = _builder()
    wheels, app, lock = _inputs(tmp_path)
    with pytest.raises(builder.PythonFetchError, match="cannot download the Python 3.11 "
                       "build .*--without-python"):
        builder.fetch_python(url, tmp_path / "out", timeout=5)
    assert not (tmp_path / "out" / "python" / TAG / NAME).exists()
    code = builder.main(["--device", "cpu", "--lock", str(lock), "--out",
                         str(tmp_path / "payload"), "--python-url", url])
    assert code == 3
    assert not (tmp_path / "payload").exists()
    assert f"cannot download the Python 3.11 build {url}" in capsys.readouterr().err
    with pytest.raises(builder.PythonFetchError, match="not a python-build-standalone"):
        builder.fetch_python("http://127.0.0.1:1/python.tar.gz", tmp_path / "out")


def test_real_uv_reads_the_archive_from_the_payload_layout(tmp_path):
    """The URL uv would use here, our layout for it, and uv's own venv command on it: uv opens
    our file (and rejects the stand-in on its SHA-256); with the file elsewhere it finds none."""
    builder = _builder()
    key, url = builder.python_download_url()
    assert key.startswith("cpython-3.11.") and "/releases/download/" in url
    mirror = tmp_path / "payload" / "python"
    archive = mirror / mirror_relpath(url)
    archive.parent.mkdir(parents=True)
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "README").write_text("a stand-in for the real build")
    with tarfile.open(archive, "w:gz") as tar:     # uv unpacks while it hashes
        tar.add(tmp_path / "python", arcname="python")
    with pytest.raises(builder.PythonFetchError) as found:
        builder.check_python_mirror(mirror, tmp_path / "work1")
    assert "Hash mismatch" in str(found.value), found.value
    archive.rename(archive.with_name("elsewhere.tar.gz"))
    with pytest.raises(builder.PythonFetchError) as missing:
        builder.check_python_mirror(mirror, tmp_path / "work2")
    assert "Hash mismatch" not in str(missing.value)
    assert archive.name in str(missing.value), missing.value


FAKE_UV = """\
import json, os, sys
with open(os.environ["FAKE_UV_RECORD"], "a", encoding="utf-8") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:],
                         "env": {k: v for k, v in os.environ.items() if k.startswith("UV_")}})
             + "\\n")
if sys.argv[1] == "venv" and os.environ.get("FAKE_UV_VENV_FAILS") != "1":
    sys.exit(0)
print("error: the fake uv stops here", file=sys.stderr)
sys.exit(1)
"""


def _install_with_fake_uv(qtbot, tmp_path, monkeypatch, with_python: bool):
    from isengard_desktop.services.runtime.service import RuntimeService

    fake = tmp_path / "fake-uv"
    fake.write_text(f"#!{sys.executable}\n{FAKE_UV}")
    fake.chmod(0o755)
    record = tmp_path / "record.jsonl"
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "cpu.txt").write_text(LOCK)
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ISENGARD_RUNTIME_LOCKS", str(locks))
    monkeypatch.setenv(ENV_UV, str(fake))
    monkeypatch.setenv(ENV_MANAGED_PYTHON, "1")
    monkeypatch.setenv("FAKE_UV_RECORD", str(record))
    monkeypatch.setenv("UV_PYTHON_INSTALL_MIRROR", "https://wrong.example/")  # must not leak
    payload = tmp_path / "usb stick"
    (payload / "wheels").mkdir(parents=True)
    (payload / "wheels" / "isengard_desktop-0.1.0-py3-none-any.whl").write_bytes(b"app")
    (payload / "cpu.txt").write_text(LOCK)
    rel = ""
    if with_python:
        (payload / "python" / TAG).mkdir(parents=True)
        (payload / "python" / TAG / NAME).write_bytes(b"python")
        rel = f"python/{TAG}/{NAME}"
    write_manifest(payload, device="cpu", lock_name="cpu.txt",
                   app_wheel="wheels/isengard_desktop-0.1.0-py3-none-any.whl", python=rel)
    paths = resolve_paths().ensure()
    service = RuntimeService(paths)
    try:
        with qtbot.waitSignal(service.finished, timeout=60_000) as blocker:
            service.install(RuntimeDevice.CPU, payload)
    finally:
        service.shutdown()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return paths, payload, calls, blocker.args[0]


def test_service_makes_the_venv_from_the_payloads_python(qtbot, tmp_path, monkeypatch):
    paths, payload, calls, status = _install_with_fake_uv(qtbot, tmp_path, monkeypatch, True)
    venv = calls[0]
    assert venv["argv"][:8] == ["venv", "--clear", "--no-project", "--python", "3.11",
                                "--python-preference", "only-managed",
                                str(paths.data / "runtime" / f"{status.folder.name}" / "venv")]
    assert "--no-python-downloads" not in venv["argv"]
    assert venv["env"]["UV_PYTHON_INSTALL_MIRROR"] == (payload / "python").as_uri()
    assert venv["env"]["UV_PYTHON_INSTALL_DIR"] == str(paths.data / "runtime" / "python")
    assert venv["env"]["UV_PYTHON_DOWNLOADS"] == "automatic"
    # the next step ran (and the fake uv stopped it): the venv step succeeded
    assert calls[1]["argv"][:2] == ["pip", "install"]
    assert "UV_PYTHON_INSTALL_MIRROR" not in calls[1]["env"]
    assert "Installing the trainer runtime's packages failed" in status.problem


def test_service_without_python_in_the_payload_keeps_the_old_command(qtbot, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("FAKE_UV_VENV_FAILS", "1")
    _paths, _payload, calls, status = _install_with_fake_uv(qtbot, tmp_path, monkeypatch,
                                                            False)
    assert len(calls) == 1
    argv = calls[0]["argv"]
    assert argv[:9] == ["venv", "--clear", "--no-project", "--python", "3.11",
                        "--python-preference", "managed", "--no-python-downloads", argv[8]]
    assert "UV_PYTHON_INSTALL_MIRROR" not in calls[0]["env"]
    assert "uv could not create the Python environment" in status.problem
    assert "carries no Python" in status.problem and "Python 3.11" in status.problem
