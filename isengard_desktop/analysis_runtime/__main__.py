"""The analysis child process.

    python -m isengard_desktop.analysis_runtime faces --cache <folder> [--models <folder>]
        [--list <photos.jsonl>] [--detector auto|hog|cnn]
    python -m isengard_desktop.analysis_runtime clips probe <clip>...
    python -m isengard_desktop.analysis_runtime clips record <clip>
    python -m isengard_desktop.analysis_runtime clips finish --spec <finish.json>
    python -m isengard_desktop.analysis_runtime clips export-frames <clip> [--folder <folder>]
    python -m isengard_desktop.analysis_runtime clips preview <clip> --cache <folder>
        [--max-side 640]

``clips`` handles video files with PyAV (``clips.py`` says what each op does); its events:

    {"v":1,"event":"clip","path":"...","info":{"width","height","frames","fps","duration_s",
        "codec","metadata"}}   /   {"v":1,"event":"clip_error","path":"...","message":"..."}
    {"v":1,"event":"done","ok":n,"failed":f}                               (probe)
    {"v":1,"event":"record","path":"...","parameters":{...},"graph":...,"source":"sidecar|container|"}
    {"v":1,"event":"phase","phase":"copying|decoding|encoding|frames","done":i,"total":n}
    {"v":1,"event":"finished","path":"...","info":{...},"frames_folder":"..."|null}
    {"v":1,"event":"frames","path":"...","folder":"...","count":n}
    {"v":1,"event":"preview","path":"...","folder":"...","fps":f,"count":n,"width":w,"height":h}
    {"v":1,"event":"error","kind":"video|config|crash","message":"..."}   (names the file)

Reads the photos to analyse as JSON lines ``{"path": "...", "sha256": "..."}`` from
``--list`` or stdin (until EOF), answers each one from the cache (``core/faces/cache.py``)
when it can and analyses the rest with dlib (``faces.py``), writing each result to the cache
as soon as it is known (so a cancelled run keeps what it did).

stdout carries only protocol events, one JSON object per line, version 1 (extend, never
break); everything else goes to stderr:

    {"v":1,"event":"start","total":n,"cached":k,"to_analyse":m,"detector":"hog|cnn"}
    {"v":1,"event":"photo","done":i,"total":n,"path":"...","cached":false,"result":{...}}
    {"v":1,"event":"photo_error","done":i,"total":n,"path":"...","sha256":"...","message":"..."}
    {"v":1,"event":"done","analysed":m,"cached":k,"failed":f}
    {"v":1,"event":"error","kind":"model_missing|config|crash","message":"..."}

``result`` is :meth:`PhotoFaces.to_json`. Cached photos come first, then the analysed ones in
the order given. Cancel: SIGTERM ends it (the cache holds every photo finished before).
Exit status: 0 done; 2 bad input, a clip that cannot be read or written, or models missing;
1 any other error (after ``error``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

from . import reason

PROTOCOL_VERSION = 1


class Channel:
    """Protocol lines on the real stdout; fd 1 and ``sys.stdout`` go to stderr, so a stray
    print (or a library's) never corrupts the events."""

    def __init__(self) -> None:
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._out: IO[str] = os.fdopen(fd, "w", encoding="utf-8", buffering=1, newline="\n")

    def emit(self, event: str, **fields: Any) -> None:
        self._out.write(json.dumps({"v": PROTOCOL_VERSION, "event": event, **fields},
                                   separators=(",", ":")) + "\n")
        self._out.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m isengard_desktop.analysis_runtime",
        description="Isengard Desktop's photo analysis (faces: boxes, landmarks, identity "
                    "embeddings). Writes JSON events to stdout and logs to stderr.")
    sub = parser.add_subparsers(dest="command", required=True)
    faces = sub.add_parser("faces", help="analyse the faces of photos given as JSON lines")
    faces.add_argument("--cache", required=True, type=Path,
                       help="the app's cache folder (results live in <cache>/faces/)")
    faces.add_argument("--models", type=Path, default=None,
                       help="folder of the dlib model files (default: the installed "
                            "face_recognition_models package)")
    faces.add_argument("--list", type=Path, default=None,
                       help="a JSON-lines file of photos (default: read stdin)")
    faces.add_argument("--detector", default="auto", choices=("auto", "hog", "cnn"),
                       help="face detector: hog (fast on a CPU), cnn (better on turned faces; "
                            "slow without CUDA), auto (cnn only on a CUDA build of dlib)")
    clips = sub.add_parser("clips", help="video files: probe, record, finish, export-frames, "
                                          "preview")
    ops = clips.add_subparsers(dest="op", required=True)
    probe = ops.add_parser("probe", help="size, frames, fps, codec and metadata of clips")
    probe.add_argument("clips", nargs="+", type=Path)
    record = ops.add_parser("record", help="the parameters and graph stored with a clip")
    record.add_argument("clip", type=Path)
    finish = ops.add_parser("finish", help="make a Video tab job's clip from its segments")
    finish.add_argument("--spec", required=True, type=Path, help="the job's finish.json")
    frames = ops.add_parser("export-frames", help="every frame of a clip as PNG")
    frames.add_argument("clip", type=Path)
    frames.add_argument("--folder", type=Path, default=None,
                        help="where the PNGs go (default: <clip stem>_frames beside it)")
    preview = ops.add_parser("preview", help="the player's JPEG frames of a clip (cached)")
    preview.add_argument("clip", type=Path)
    preview.add_argument("--cache", required=True, type=Path,
                         help="the app's cache folder (previews live in <cache>/clip-previews/)")
    preview.add_argument("--max-side", type=int, default=640,
                         help="longest side of a preview frame in pixels")
    return parser


def clips_command(args: argparse.Namespace, channel: Channel) -> int:
    from . import clips
    from ..core.video.clip_record import VideoFileError

    try:
        if args.op == "probe":
            return clips.probe(list(args.clips), channel.emit)
        if args.op == "record":
            return clips.record(args.clip, channel.emit)
        if args.op == "finish":
            try:
                spec = clips.read_finish_spec(args.spec)
            except ValueError as exc:
                channel.emit("error", kind="config", message=str(exc))
                return 2
            return clips.finish(spec, channel.emit)
        if args.op == "export-frames":
            return clips.export_frames(args.clip, args.folder, channel.emit)
        if args.op == "preview":
            return clips.preview(args.clip, args.cache, max(16, args.max_side), channel.emit)
    except (VideoFileError, ValueError) as exc:
        channel.emit("error", kind="video", message=str(exc))
        return 2
    except OSError as exc:
        where = getattr(exc, "filename", None)
        channel.emit("error", kind="video",
                     message=f"{Path(where).name if where else 'a video file'}: {reason(exc)}")
        return 2
    return 2


def read_photos(source: IO[str], name: str) -> list[tuple[Path, str]]:
    """The photo list; a bad line raises ValueError naming ``name`` and the line number."""
    photos = []
    for n, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            path, sha = Path(str(item["path"])), str(item["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{name} line {n}: expected {{\"path\": ..., \"sha256\": ...}} "
                             f"({exc})") from exc
        photos.append((path, sha))
    return photos


def faces_command(args: argparse.Namespace, channel: Channel) -> int:
    from ..core.faces.cache import FaceCache

    try:
        if args.list is not None:
            with open(args.list, encoding="utf-8") as fh:
                photos = read_photos(fh, str(args.list))
        else:
            photos = read_photos(sys.stdin, "stdin")
    except (OSError, ValueError) as exc:
        channel.emit("error", kind="config", message=str(exc))
        return 2
    detector = "hog" if args.detector == "hog" else _detector(args.detector)
    cache = FaceCache(args.cache, detector)
    total = len(photos)
    todo: list[tuple[Path, str]] = []
    done = 0
    hits: list[tuple[Path, Any]] = []
    for path, sha in photos:
        found = cache.get(sha) if _is_sha(sha) else None
        if found is None:
            todo.append((path, sha))
        else:
            hits.append((path, found))
    channel.emit("start", total=total, cached=len(hits), to_analyse=len(todo),
                 detector=detector)
    for path, found in hits:
        done += 1
        channel.emit("photo", done=done, total=total, path=str(path), cached=True,
                     result=found.to_json())
    failed = 0
    if todo:
        from .faces import FaceModels, ModelsMissing, analyse_file

        try:
            started = time.monotonic()
            models = FaceModels.load(args.models, detector)
            print(f"[analysis] face models loaded in {time.monotonic() - started:.2f} s",
                  file=sys.stderr, flush=True)
        except ModelsMissing as exc:
            channel.emit("error", kind="model_missing", message=str(exc))
            return 2
        for path, sha in todo:
            done += 1
            try:
                result = analyse_file(models, path, sha)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - an unreadable photo is reported, not fatal
                failed += 1
                channel.emit("photo_error", done=done, total=total, path=str(path),
                             sha256=sha, message=f"{path.name}: {reason(exc)}")
                continue
            if _is_sha(sha):
                cache.put(result)
            channel.emit("photo", done=done, total=total, path=str(path), cached=False,
                         result=result.to_json())
    channel.emit("done", analysed=len(todo) - failed, cached=len(hits), failed=failed)
    return 0


def _detector(choice: str) -> str:
    from .faces import resolve_detector    # imports dlib (only when a choice needs it)

    return resolve_detector(choice)


def _is_sha(sha: str) -> bool:
    return len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    channel = Channel()
    try:
        if args.command == "faces":
            return faces_command(args, channel)
        if args.command == "clips":
            return clips_command(args, channel)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise
        traceback.print_exc(file=sys.stderr)
        channel.emit("error", kind="crash", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
