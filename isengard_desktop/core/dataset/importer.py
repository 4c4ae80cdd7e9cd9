"""Import photos into a dataset folder: validate, normalise, hash, store atomically.

Pure functions meant to run in a worker thread. Nothing here imports Qt.

What a trainer needs is a correctly oriented 8-bit RGB image. Files that already are one
(JPEG, PNG or WebP, RGB, one frame, no alpha, EXIF orientation 1 or none) are stored byte for
byte; everything else is decoded and written as a lossless 8-bit RGB PNG. One bad file never
stops the others: each problem becomes a :class:`RejectedImage` with a plain-English reason.

Pillow's own decompression-bomb check warns (or raises) from inside ``Image.open``; we never let
it get that far: :func:`open_image` identifies the file with the format plugins directly, reads
the size from the header and refuses anything over :data:`MAX_PIXELS` before any pixel is
decoded. ``Image.MAX_IMAGE_PIXELS`` is raised (never lowered, never disabled) to
:data:`MAX_PIXELS` once at import so that later decodes of accepted images stay silent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from isengard_desktop.core.dataset.thumbnails import (
    THUMB_SIZE,
    is_cached,
    thumbnail_bytes_from_image,
    thumbnail_path,
    write_cached,
)
from isengard_desktop.core.fsutil import atomic_write_bytes, fsync_dir, make_temp_file
from isengard_desktop.core.dataset.decode import (  # noqa: F401  (re-exported)
    _FORMAT_NAMES,
    ALLOWED_FORMATS,
    MAX_PIXELS,
    SUPPORTED_EXTS,
    Cancelled,
    ImageProblem,
    _check_pixels,
    _icc_colour_space,
    _frame_count,
    exif_orientation,
    load_pixels,
    open_image,
    to_rgb,
    upright_rgb,
)
from isengard_desktop.core.types import Progress

MIN_SIDE = 64
MAX_FILE_BYTES = 1 << 30  # 1 GiB: nothing a camera makes, and we hold the bytes in memory
MAX_STEM_CHARS = 60
PROGRESS_LABEL = "Importing photos"
LOOKAHEAD = 4  # files decoded ahead per worker while earlier ones are being written
STAGED_SUFFIX = ".part"  # a photo's bytes written (and fsynced) by a worker, not yet named
# With ``on_stored``, photos now in the dataset folder are handed over (to be recorded) in
# batches of at most this many, or sooner when the oldest waited this long (seconds).
STORED_BATCH_FILES = 32
STORED_BATCH_SECONDS = 0.5
# Bytes read (or fed to a decoder) between two looks at the cancel flag: Cancel acts inside a
# large file, not only between files.
CANCEL_POLL_BYTES = 8 << 20
# A file larger than this many bytes per pixel of the size its header gives (plus the slack,
# for metadata, previews and phones' extra frames) is damaged or carries other data: refused
# from the header, before it is read.
PLAUSIBLE_BYTES_PER_PIXEL = 16
PLAUSIBLE_SLACK_BYTES = 64 << 20
# A read of a source file (or its caption sidecar) that makes no progress for this many
# seconds is abandoned: a stalled network share blocks read() forever, and no flag can
# interrupt a thread stuck in it. Every read from a source runs on a thread of its own
# (:func:`_read_guarded`) while the decode thread waits for it in short slices, watching this
# deadline and the cancel flag, so Cancel and quit never wait on a stuck read.
READ_STALL_SECONDS = 20.0
# While an abandoned read in a folder is still stuck, the next reads there get this long: a
# share that stopped answering would otherwise cost READ_STALL_SECONDS for every photo.
READ_STALLED_FOLDER_SECONDS = 1.0
READ_WAIT_SLICE = 0.05
NOT_READ_IN_TIME = "could not be read in time (network share not answering?)"

# Formats stored byte for byte when the pixels need no change. MPO is what Pillow calls a JPEG
# with extra pictures appended (phones' portrait/depth shots); every JPEG reader sees frame 0.
_KEEP_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}



# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class ImportedImage:
    """A photo now stored in the dataset folder. ``width``/``height`` are of the stored image."""

    source: str
    stored_path: Path
    sha256: str
    width: int
    height: int
    caption: str | None  # from a "<source stem>.txt" sidecar beside the source, else None
    caption_problem: str | None = None  # why the sidecar's caption was left out


@dataclass(frozen=True)
class SkippedImage:
    """A photo not imported because the dataset already has it (``reason`` names the copy)."""

    source: str
    reason: str


@dataclass(frozen=True)
class RejectedImage:
    """A photo that could not be imported; ``reason`` says why in plain English."""

    source: str
    reason: str


@dataclass
class ImportReport:
    """Outcome of :func:`import_files`, one entry per file, in the order processed."""

    imported: list[ImportedImage] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    rejected: list[RejectedImage] = field(default_factory=list)
    cancelled: bool = False

    def summary(self) -> str:
        """Multi-line text for people: counts, then one line per rejected file."""
        n_skip = len(self.skipped)
        head = (
            f"{len(self.imported)} imported, "
            f"{n_skip} duplicate{'' if n_skip == 1 else 's'} skipped, "
            f"{len(self.rejected)} rejected"
        )
        lines = [head + (":" if self.rejected else "")]
        lines += [f"  {display_name(r.source)} — {r.reason}" for r in self.rejected]
        lines += [f"  {i.caption_problem}" for i in self.imported if i.caption_problem]
        if self.cancelled:
            lines.append("Import cancelled: the remaining files were not looked at.")
        return "\n".join(lines)



# --------------------------------------------------------------------------- names


def display_name(source: str | os.PathLike[str]) -> str:
    """The file name of ``source``, printable even when the name is not valid UTF-8."""
    name = os.path.basename(os.fspath(source)) or os.fspath(source)
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_stem(stem: str, max_chars: int = MAX_STEM_CHARS) -> str:
    """A file-name stem that is safe on every OS, derived from (never trusting) ``stem``.

    Keeps printable Unicode letters and digits plus ``-``, ``_`` and single dots; everything else
    (path separators, "..", control characters, Windows-reserved characters, spaces, emoji)
    becomes ``_``. Never empty, never starts or ends with a dot, at most ``max_chars`` long.
    """
    stem = unicodedata.normalize("NFC", stem.encode("utf-8", "replace").decode("utf-8"))
    out = []
    for ch in stem:
        cat = unicodedata.category(ch)[0]
        if ch.isalnum() and ch.isprintable() and cat in "LN":
            out.append(ch)
        elif cat == "M" and out and out[-1] not in "_-.":  # combining accents, vowel signs
            out.append(ch)
        elif ch in "-.":
            out.append(ch)
        else:
            out.append("_")
    text = "".join(out)
    text = re.sub(r"\.{2,}", ".", text)  # no ".." anywhere
    text = re.sub(r"_{2,}", "_", text)
    text = text.strip("._- ")[:max_chars].strip("._- ")
    return text or "image"


def stored_name(source_stem: str, sha256: str, ext: str, hex_chars: int = 8) -> str:
    """``<safe stem>-<first hex chars of sha256><ext>``, e.g. ``photo-1a2b3c4d.jpg``."""
    name = f"{safe_stem(source_stem)}-{sha256[:hex_chars]}{ext}"
    if os.path.basename(name) != name or "/" in name or "\\" in name:  # pragma: no cover
        raise AssertionError(f"unsafe stored name {name!r}")
    return name


# --------------------------------------------------------------------------- collecting


def _sort_key(name: str) -> tuple[str, str]:
    return (name.casefold(), name)


def collect_files(paths: Iterable[Path | str],
                  poll: Callable[[Path], bool] | None = None) -> list[Path]:
    """Expand ``paths`` into the list of files to import.

    Files are returned as given (even with an unsupported extension, or missing, so that they
    get rejected with a reason). Folders are walked recursively, following symlinks but never
    visiting the same folder twice (loops cannot hang); inside folders only files with a
    :data:`SUPPORTED_EXTS` extension are kept, hidden files and folders (".name") are skipped,
    and so are our own ".txt" sidecars. Order: arguments in the order given; inside a folder,
    its files sorted by name, then its sub-folders sorted by name. A path given twice is
    returned once.

    ``poll(folder)`` (optional) is called before each argument and each folder is listed;
    when it answers True the walk stops with :class:`Cancelled`.
    """
    result: list[Path] = []

    def visit(p: Path) -> None:
        if poll is not None and poll(p):
            raise Cancelled

    seen_files: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.abspath(p)
        if key not in seen_files:
            seen_files.add(key)
            result.append(p)

    for raw in paths:
        p = Path(raw)
        visit(p)
        if p.is_dir():
            _walk(p, add, visit)
        else:
            add(p)
    return result


def _walk(root: Path, add: Callable[[Path], None], visit: Callable[[Path], None]) -> None:
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
        visit(Path(dirpath))
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            dirnames[:] = []
            continue
        visited.add(key)
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_sort_key)
        for name in sorted(filenames, key=_sort_key):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in SUPPORTED_EXTS:
                add(Path(dirpath, name))


# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class _Prepared:
    data: bytes
    ext: str
    width: int
    height: int
    thumbnail: bytes | None = None   # JPEG thumbnail made from the pixels already decoded
    sha256: str = ""                 # of ``data``; set by :func:`_prepare_for_import`
    staged: Path | None = None       # hidden temp file in the dataset folder holding ``data``
    caption: str | None = None       # the source's sidecar, read on the decode thread
    caption_problem: str | None = None


def _read_source(path: Path, cancelled: Callable[[], bool] | None = None) -> bytes:
    """The file's bytes (at most ``MAX_FILE_BYTES + 1``), asking ``cancelled`` between
    chunks of :data:`CANCEL_POLL_BYTES` (a small file is read in one go, never asking)."""
    chunks: list[bytes] = []
    total = 0
    with open(path, "rb") as fh:
        while total <= MAX_FILE_BYTES:
            chunk = fh.read(min(CANCEL_POLL_BYTES, MAX_FILE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if len(chunk) == CANCEL_POLL_BYTES and cancelled is not None and cancelled():
                raise Cancelled
    return b"".join(chunks)


def _check_plausible_size(path: Path, size: int) -> None:
    """Identify the image from its header and refuse a file far larger than its pixels can
    be, before reading it. Files that are not images are left to :func:`prepare_bytes`."""
    if size <= PLAUSIBLE_SLACK_BYTES:
        return
    with open(path, "rb") as fh:
        try:
            im = open_image(fh, ext=path.suffix)
        except ImageProblem:
            return
        width, height = im.size
    if size > PLAUSIBLE_BYTES_PER_PIXEL * width * height + PLAUSIBLE_SLACK_BYTES:
        raise ImageProblem(
            f"file is much larger than a {width}×{height} picture can be "
            f"({size / 2**20:.0f} MiB) — damaged, or other data is appended to it")


class _PollingReader(io.BytesIO):
    """In-memory file that asks ``cancelled`` every :data:`CANCEL_POLL_BYTES` read, so a
    decoder working through a large file stops soon after Cancel."""

    def __init__(self, data: bytes, cancelled: Callable[[], bool]) -> None:
        super().__init__(data)
        self._cancelled = cancelled
        self._since = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self._since += len(chunk)
        if self._since >= CANCEL_POLL_BYTES:
            self._since = 0
            if self._cancelled():
                raise Cancelled
        return chunk


def _reason_for_os_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found — it was moved or deleted"
    if isinstance(exc, PermissionError):
        return "permission denied — the file cannot be read; check its permissions"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    return f"could not read the file ({exc.strerror or exc})"


def _load_source(path: Path, poll: Callable[[], bool]) -> bytes:
    """Stat, check and read the source file (everything that touches where it lives).
    Runs on a reader thread of its own; ``poll`` is asked between large chunks."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageProblem(_reason_for_os_error(exc)) from exc
    if not path.is_file():
        raise ImageProblem("is a folder, not a file" if path.is_dir() else "not a regular file")
    if st.st_size == 0:
        raise ImageProblem("file is empty (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageProblem(f"file is too large ({st.st_size / 2**20:.0f} MiB)")
    try:
        _check_plausible_size(path, st.st_size)
        return _read_source(path, poll)
    except OSError as exc:
        raise ImageProblem(_reason_for_os_error(exc)) from exc


class _ReadAbandoned(Exception):
    """A read that made no progress for :data:`READ_STALL_SECONDS`."""


_stuck_lock = threading.Lock()
_stuck: dict[str, int] = {}   # folder -> abandoned reads there that have not returned yet


def _stuck_reads(folder: str | None, change: int = 0) -> int:
    if folder is None:
        return 0
    with _stuck_lock:
        count = _stuck.get(folder, 0) + change
        if count > 0:
            _stuck[folder] = count
        else:
            _stuck.pop(folder, None)
        return count


def read_deadline(folder: str | None) -> float:
    """Seconds a read in ``folder`` may go without progress before it is abandoned."""
    return READ_STALLED_FOLDER_SECONDS if _stuck_reads(folder) else READ_STALL_SECONDS


def _read_guarded(read: Callable[[Callable[[], bool]], Any],
                  cancelled: Callable[[], bool] | None, folder: str | None = None) -> Any:
    """Run ``read(poll)`` on a daemon thread of its own and wait for it in slices of
    :data:`READ_WAIT_SLICE`, asking ``cancelled`` after each. ``read`` calls ``poll()``
    between chunks: that counts as progress, and ``poll()`` answers True once the waiter
    stopped waiting (Cancel, or abandoned), so a read that resumes ends soon.

    Raises :class:`Cancelled` soon after ``cancelled()`` says yes and :class:`_ReadAbandoned`
    when the read made no progress for :data:`READ_STALL_SECONDS`, in both cases without
    waiting for the reader: a thread stuck in ``read()`` on a stalled share is left behind (a
    daemon, so quitting never joins it), and whatever it returns later is dropped. While an
    abandoned read in ``folder`` is still stuck, the deadline there is
    :data:`READ_STALLED_FOLDER_SECONDS`.
    """
    done = threading.Event()
    state: dict[str, Any] = {"last": time.monotonic(), "stop": False, "abandoned": False}
    deadline = read_deadline(folder)

    def poll() -> bool:   # the reader's heartbeat; True once the waiter gave up (or Cancel)
        state["last"] = time.monotonic()
        return bool(state["stop"])

    def run() -> None:
        try:
            state["result"] = read(poll)
        except BaseException as exc:  # handed to the waiting thread, raised there
            state["error"] = exc
        finally:
            with _stuck_lock:
                abandoned = state["abandoned"]
                done.set()
            if abandoned:
                _stuck_reads(folder, -1)   # the share answered again

    threading.Thread(target=run, name="import-read", daemon=True).start()
    while not done.wait(READ_WAIT_SLICE):
        if cancelled is not None and cancelled():
            state["stop"] = True
            raise Cancelled
        if time.monotonic() - state["last"] > deadline:
            state["stop"] = True
            with _stuck_lock:
                if not done.is_set():
                    state["abandoned"] = True
            if state["abandoned"]:
                _stuck_reads(folder, +1)
            raise _ReadAbandoned
    if "error" in state:
        raise state["error"]
    return state.get("result")


def _prepare(path: Path, thumb_size: int | None = None,
             cancelled: Callable[[], bool] | None = None) -> _Prepared:
    """Validate and normalise one file; raises :class:`ImageProblem` with the reason."""
    text = os.fspath(path)
    if not _is_valid_utf8(path.name):
        raise ImageProblem("file name is not valid UTF-8 — rename it")
    if not _is_valid_utf8(text):
        raise ImageProblem("folder name is not valid UTF-8 — rename the folder")
    try:
        # between a large file's chunks the reader also asks Cancel itself: a file that reads
        # faster than one wait slice still sees it (``cancelled`` only reads a flag)
        def read(poll: Callable[[], bool]) -> bytes:
            return _load_source(path, lambda: poll() or (cancelled is not None
                                                         and cancelled()))

        data: bytes = _read_guarded(read, cancelled, os.fspath(path.parent))
    except _ReadAbandoned:
        raise ImageProblem(NOT_READ_IN_TIME) from None
    if not data:
        raise ImageProblem("file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageProblem("file is too large")
    # Optional arguments only when set: keeps the plain call forms of these helpers.
    extra: dict[str, Any] = {}
    if thumb_size is not None:
        extra["thumb_size"] = thumb_size
    if cancelled is not None:
        extra["cancelled"] = cancelled
    return prepare_bytes(data, ext=path.suffix, **extra)


def prepare_bytes(data: bytes, *, ext: str = "", thumb_size: int | None = None,
                  cancelled: Callable[[], bool] | None = None) -> _Prepared:
    """Validate image bytes and return what to store (the same bytes or a lossless PNG).

    With ``thumb_size`` the result also carries a JPEG thumbnail made from the pixels decoded
    here, so the photo is never decoded twice during an import. With ``cancelled`` a large
    file's decoding asks it every :data:`CANCEL_POLL_BYTES` and raises :class:`Cancelled`.
    """
    fp = io.BytesIO(data) if cancelled is None else _PollingReader(data, cancelled)
    im = open_image(fp, ext=ext)
    w, h = im.size
    if min(w, h) < MIN_SIDE:
        raise ImageProblem(
            f"too small to train on ({w}×{h} px; at least {MIN_SIDE} px on the short side)"
        )
    orientation = exif_orientation(im)
    keep_ext = _KEEP_EXT.get(im.format or "")
    if (thumb_size and im.format in ("JPEG", "MPO") and im.mode == "RGB"
            and orientation == 1):
        # Stored byte for byte, so full-size pixels are never needed: let libjpeg decode at
        # 1/2-1/8 scale. It still reads the whole stream, so truncation is still caught.
        im.draft("RGB", (thumb_size, thumb_size))
    load_pixels(im)
    if (
        keep_ext
        and im.mode == "RGB"
        and "transparency" not in im.info
        and orientation == 1
        and (im.format != "PNG" or _png_is_8bit_rgb(data))
    ):
        thumb = thumbnail_bytes_from_image(im, thumb_size) if thumb_size else None
        return _Prepared(data, keep_ext, w, h, thumb)
    icc = im.info.get("icc_profile")
    keep_icc = icc if _icc_colour_space(icc) == b"RGB " else None
    out = upright_rgb(im)
    buf = io.BytesIO()
    if keep_icc:
        out.save(buf, format="PNG", icc_profile=keep_icc)
    else:
        out.save(buf, format="PNG")
    thumb = thumbnail_bytes_from_image(out, thumb_size) if thumb_size else None
    return _Prepared(buf.getvalue(), ".png", out.width, out.height, thumb)


def _png_is_8bit_rgb(data: bytes) -> bool:
    # IHDR is always the first chunk: bit depth at byte 24, colour type at byte 25.
    try:
        return data[12:16] == b"IHDR" and data[24] == 8 and data[25] == 2
    except IndexError:
        return False


def _read_caption(path: Path, cancelled: Callable[[], bool] | None = None
                  ) -> tuple[str | None, str | None]:
    """The caption beside ``path`` (or None) and why a caption there was left out (or None).
    The sidecar is read like the photo (:func:`_read_guarded`): one that cannot be read in
    time is left out with a message, and the photo is imported without it."""
    from isengard_desktop.core.dataset.captions import caption_problem, read_sidecar

    sidecar = path.with_name(path.stem + ".txt")
    try:
        caption = _read_guarded(lambda _poll: read_sidecar(sidecar), cancelled,
                                os.fspath(path.parent))
    except _ReadAbandoned:
        return None, (f"{display_name(sidecar)}: caption {NOT_READ_IN_TIME}; "
                      "the photo was imported without it")
    except ValueError as exc:
        return None, f"{display_name(path)}: caption not imported — {exc}"
    except OSError:
        return None, None
    problem = caption_problem(caption, display_name(path)) if caption is not None else None
    if problem is not None:
        return None, f"{problem}; imported without it"
    return caption, None


def _target_path(dest_dir: Path, source: Path, sha: str, ext: str) -> Path:
    """A free name in ``dest_dir`` (or one already holding exactly these bytes)."""
    for n in (8, 16, 64):
        target = dest_dir / stored_name(source.stem, sha, ext, n)
        try:
            with open(target, "rb") as fh:
                existing = hashlib.file_digest(fh, "sha256").hexdigest()
        except FileNotFoundError:
            return target
        if existing == sha:
            return target
    raise ImageProblem("could not find a free file name in the dataset folder")


# --------------------------------------------------------------------------- batch


def import_files(
    paths: Iterable[Path | str],
    dest_dir: Path,
    known_hashes: Mapping[str, str] | set[str],
    report: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    workers: int = 1,
    thumbnail_dir: Path | None = None,
    on_stored: Callable[[list[ImportedImage]], None] | None = None,
    batch_files: int = STORED_BATCH_FILES,
    batch_seconds: float = STORED_BATCH_SECONDS,
) -> ImportReport:
    """Import photos into ``dest_dir``.

    ``paths`` are files and folders (see :func:`collect_files`). ``known_hashes`` are the
    sha256 of photos already in the dataset (a mapping gives each one's name, used in the
    "duplicate of ..." reason). ``report`` gets a :class:`Progress` after each file;
    ``cancelled`` is asked before each file and, inside a large file, every
    :data:`CANCEL_POLL_BYTES` read or decoded; when it says yes the import stops, keeping
    what is already done (a file stopped half-way is left out of the report).
    Nothing half-written is ever left in ``dest_dir``.

    With ``workers`` > 1 the decoding and checking of upcoming files runs on that many
    threads (Pillow releases the GIL while decoding); duplicate detection, writing and the
    order of the report stay sequential and deterministic.

    With ``thumbnail_dir`` each imported photo's thumbnail is written to that cache (see
    :mod:`.thumbnails`) from the pixels decoded for checking it.

    How files are written (each one whole or absent, as with :mod:`..fsutil`'s atomic
    writers): the decode threads also write each new photo's bytes to a hidden temp file in
    ``dest_dir`` and fsync it, in parallel; the sequential writer only picks the name and
    renames the temp file into place. The folder is fsynced once per batch (before the caller
    records the photos anywhere), not once per file.

    Crash consistency (``on_stored``): the photos renamed into ``dest_dir`` are handed to
    ``on_stored(batch)`` in batches of at most ``batch_files`` (sooner when the first of a
    batch has waited ``batch_seconds``), after the folder is fsynced, and the next file is
    renamed only once ``on_stored`` has returned. A caller that records each batch before
    returning (one database transaction) therefore never has more than ``batch_files``
    stored photos without a record, whenever the process dies; the start-up reconcile
    (:mod:`.reconcile`) adopts those. The last batch is handed over when the import ends,
    cancelled or not. An exception from ``on_stored`` stops the import and is raised.
    """
    dest_dir = Path(dest_dir)
    result = ImportReport()
    listing: list[Path] = [Path()]   # the folder being listed (named if it stalls)

    def listed(poll: Callable[[], bool]) -> list[Path]:
        def at(folder: Path) -> bool:
            listing[0] = folder
            return poll()
        return collect_files(paths, at)

    try:   # folders on a stalled share must not hang the import either
        files: list[Path] = _read_guarded(listed, cancelled)
    except Cancelled:
        result.cancelled = True
        return result
    except _ReadAbandoned:
        result.rejected.append(RejectedImage(
            os.fspath(listing[0]), "folder could not be listed in time (network share not "
                                   "answering?); nothing was imported"))
        return result
    total = len(files)
    batch: dict[str, str] = {}
    pool = ThreadPoolExecutor(workers, thread_name_prefix="import") if workers > 1 else None
    ahead: dict[int, Future[_Prepared]] = {}

    def prepare(path: Path) -> _Prepared:
        return _prepare_for_import(path, thumbnail_dir, dest_dir, known_hashes, cancelled)

    def prepared(index: int) -> _Prepared:
        if pool is None:
            return prepare(files[index])
        for j in range(index, min(index + LOOKAHEAD * workers + 1, total)):
            if j not in ahead:
                ahead[j] = pool.submit(prepare, files[j])
        return ahead.pop(index).result()

    batcher = _Batcher(dest_dir, on_stored, batch_files, batch_seconds)
    try:
        _import_loop(files, dest_dir, known_hashes, report, cancelled, result, batch, prepared,
                     batcher)
        batcher.flush()
    finally:
        if pool is not None:
            for future in ahead.values():
                future.cancel()
            pool.shutdown(wait=True)
            for future in ahead.values():   # decoded ahead but never reached (cancel, error)
                if not future.cancelled() and future.exception() is None:
                    _discard(future.result().staged)
        if result.imported and on_stored is None:
            fsync_dir(dest_dir)   # the renames above are durable before anyone records them
    return result


class _Batcher:
    """Collects stored photos and hands them to ``on_stored`` in batches (see
    :func:`import_files`); without ``on_stored`` it does nothing."""

    def __init__(self, dest_dir: Path, on_stored: Callable[[list[ImportedImage]], None] | None,
                 max_files: int, max_seconds: float) -> None:
        self.dest_dir = dest_dir
        self.on_stored = on_stored
        self.max_files = max(1, max_files)
        self.max_seconds = max_seconds
        self.pending: list[ImportedImage] = []
        self.since = 0.0

    def add(self, image: ImportedImage) -> None:
        if self.on_stored is None:
            return
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(image)
        if (len(self.pending) >= self.max_files
                or time.monotonic() - self.since >= self.max_seconds):
            self.flush()

    def flush(self) -> None:
        if self.on_stored is None or not self.pending:
            return
        batch, self.pending = self.pending, []
        fsync_dir(self.dest_dir)   # the renames are durable before the batch is recorded
        self.on_stored(batch)


def _import_loop(
    files: list[Path],
    dest_dir: Path,
    known_hashes: Mapping[str, str] | set[str],
    report: Callable[[Progress], None] | None,
    cancelled: Callable[[], bool] | None,
    result: ImportReport,
    batch: dict[str, str],
    prepared: Callable[[int], _Prepared],
    batcher: _Batcher,
) -> None:
    total = len(files)
    for done, path in enumerate(files, start=1):
        if cancelled is not None and cancelled():
            result.cancelled = True
            break
        source = os.fspath(path)
        try:
            outcome: ImportedImage | SkippedImage | RejectedImage = _import_one(
                path, dest_dir, known_hashes, batch, prepared(done - 1))
        except Cancelled:   # Cancel pressed while this file was read or decoded
            result.cancelled = True
            break
        except ImageProblem as exc:
            outcome = RejectedImage(source, str(exc))
        except (KeyboardInterrupt, SystemExit):
            raise
        except OSError as exc:
            outcome = RejectedImage(
                source, f"could not store it in the dataset folder ({exc.strerror or exc})"
            )
        except Exception as exc:  # one bad file never stops the others
            outcome = RejectedImage(source, f"could not be imported ({type(exc).__name__}: {exc})")
        if isinstance(outcome, ImportedImage):
            result.imported.append(outcome)
            batcher.add(outcome)
        elif isinstance(outcome, SkippedImage):
            result.skipped.append(outcome)
        else:
            result.rejected.append(outcome)
        if report is not None:
            report(Progress(PROGRESS_LABEL, done, total, detail=display_name(source)))


def _prepare_for_import(path: Path, thumbnail_dir: Path | None, dest_dir: Path,
                        known_hashes: Mapping[str, str] | set[str],
                        cancelled: Callable[[], bool] | None = None) -> _Prepared:
    """Runs on the decode threads: validate, normalise, hash, cache the thumbnail and stage
    the photo's bytes in ``dest_dir`` (unless the dataset already has them).

    The thumbnail cache is keyed by content, so writing one for a photo that then turns out to
    be a duplicate is harmless (it is that photo's thumbnail too). Cache entries are written
    without fsyncs (:func:`.thumbnails.write_cached`); the photo itself is fsynced.
    """
    prepared = _prepare(path, THUMB_SIZE if thumbnail_dir is not None else None, cancelled)
    sha = hashlib.sha256(prepared.data).hexdigest()
    if thumbnail_dir is not None and prepared.thumbnail is not None:
        thumb = thumbnail_path(thumbnail_dir, sha)
        if not is_cached(thumb):
            write_cached(thumb, prepared.thumbnail)
    caption, problem = _read_caption(path, cancelled)   # before staging: Cancel leaves nothing
    staged = None if sha in known_hashes else _stage(dest_dir, path, prepared.data)
    return dataclasses.replace(prepared, sha256=sha, staged=staged, caption=caption,
                               caption_problem=problem)


def _stage(dest_dir: Path, source: Path, data: bytes) -> Path:
    """Write ``data`` to a new hidden temp file in ``dest_dir`` and fsync it."""
    fd, tmp = make_temp_file(dest_dir, prefix=f".{safe_stem(source.stem)}.",
                             suffix=STAGED_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _discard(Path(tmp))
        raise
    return Path(tmp)


def _discard(staged: Path | None) -> None:
    if staged is not None:
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass


def _import_one(
    path: Path,
    dest_dir: Path,
    known_hashes: Mapping[str, str] | set[str],
    batch: dict[str, str],
    prepared: _Prepared,
) -> ImportedImage | SkippedImage:
    renamed: list[Path] = []
    try:
        return _store_one(path, dest_dir, known_hashes, batch, prepared, renamed)
    finally:
        if not renamed:
            _discard(prepared.staged)   # a duplicate, or the rename failed: no temp file stays


def _store_one(
    path: Path,
    dest_dir: Path,
    known_hashes: Mapping[str, str] | set[str],
    batch: dict[str, str],
    prepared: _Prepared,
    renamed: list[Path],
) -> ImportedImage | SkippedImage:
    source = os.fspath(path)
    sha = prepared.sha256
    if sha in known_hashes:
        other = known_hashes[sha] if isinstance(known_hashes, Mapping) else None
        where = display_name(other) if other else "a photo already in the dataset"
        return SkippedImage(source, f"duplicate of {where}")
    if sha in batch:
        return SkippedImage(source, f"duplicate of {batch[sha]}")
    target = _target_path(dest_dir, path, sha, prepared.ext)
    if prepared.staged is not None:
        os.replace(prepared.staged, target)       # already written and fsynced by a worker
        renamed.append(target)
    else:
        atomic_write_bytes(target, prepared.data, sync_dir=False)
    batch[sha] = display_name(source)
    return ImportedImage(
        source=source,
        stored_path=target,
        sha256=sha,
        width=prepared.width,
        height=prepared.height,
        caption=prepared.caption,
        caption_problem=prepared.caption_problem,
    )


__all__ = ["MIN_SIDE", "STORED_BATCH_FILES", "STORED_BATCH_SECONDS", "ImportReport",
           "ImportedImage", "RejectedImage", "SkippedImage",
           "collect_files", "display_name", "import_files", "prepare_bytes", "safe_stem",
           "stored_name"]
