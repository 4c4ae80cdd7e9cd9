"""Caption sidecars and caption text edits.

Trainers read a photo's caption from ``<image path without extension>.txt`` beside it
(``photo-1a2b3c4d.jpg`` → ``photo-1a2b3c4d.txt``). Sidecars are UTF-8, written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path

from isengard_desktop.core.fsutil import atomic_write_text

SIDECAR_EXT = ".txt"
MAX_SIDECAR_BYTES = 1 << 20  # a caption is a sentence or two; refuse to slurp huge files


def sidecar_path(image_path: Path) -> Path:
    """The caption file of ``image_path``: same folder and stem, extension ``.txt``."""
    image_path = Path(image_path)
    if image_path.suffix.lower() == SIDECAR_EXT:
        raise ValueError(f"{image_path.name} is a text file, not an image")
    return image_path.with_name(image_path.stem + SIDECAR_EXT)


def write_sidecar(image_path: Path, caption: str) -> None:
    """Write ``caption`` as the sidecar of ``image_path`` (atomically; "" writes an empty file)."""
    atomic_write_text(sidecar_path(image_path), caption)


def read_sidecar(path: Path) -> str | None:
    """The caption stored for ``path``, or ``None`` when there is no sidecar.

    ``path`` may be the ``.txt`` sidecar itself or the image it belongs to. Surrounding
    whitespace (the trailing newline most editors add) is stripped; a UTF-8 BOM is dropped;
    bytes that are not UTF-8 are replaced rather than failing. Raises ``ValueError`` for a
    sidecar over 1 MiB and ``OSError`` when an existing sidecar cannot be read.
    """
    path = Path(path)
    txt = path if path.suffix.lower() == SIDECAR_EXT else sidecar_path(path)
    try:
        with open(txt, "rb") as fh:
            data = fh.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_SIDECAR_BYTES:
        raise ValueError(f"{txt.name} is too large to be a caption (over 1 MiB)")
    return data.decode("utf-8-sig", errors="replace").strip()


def prepend_trigger(caption: str, trigger: str) -> str:
    """``"trigger, caption"``; unchanged when the caption already starts with the trigger as a
    whole word (so applying it twice is harmless). Matching is case-sensitive, like the
    trigger token itself. Surrounding whitespace is dropped; an empty caption becomes the
    trigger alone; an empty trigger leaves the caption as it is."""
    trigger = trigger.strip()
    if not trigger:
        return caption
    body = caption.strip()
    # "Whole word": a trigger ending in a letter/digit must not run on into another one
    # ("ohwx" is not at the start of "ohwxman"); one ending in punctuation ("c++") must be
    # followed by the end, a space or a separator ("c+++" is something else).
    boundary = r"(?!\w)" if re.match(r"\w", trigger[-1]) else r"(?=$|[\s,;])"
    if re.match(re.escape(trigger) + boundary, body):
        return body
    body = body.lstrip(", ").strip()
    return f"{trigger}, {body}" if body else trigger


def find_replace(caption: str, find: str, replace: str, *, case_sensitive: bool = True) -> str:
    """Replace every occurrence of the plain text ``find`` (not a regex) with ``replace``.
    An empty ``find`` changes nothing."""
    if not find:
        return caption
    if case_sensitive:
        return caption.replace(find, replace)
    return re.sub(re.escape(find), lambda _m: replace, caption, flags=re.IGNORECASE)
