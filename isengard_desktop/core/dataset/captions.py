"""Caption sidecars and caption text edits.

Trainers read a photo's caption from ``<image path without extension>.txt`` beside it
(``photo-1a2b3c4d.jpg`` → ``photo-1a2b3c4d.txt``). Sidecars are UTF-8, written atomically.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from isengard_desktop.core.fsutil import atomic_write_text

SIDECAR_EXT = ".txt"
# The one caption limit: the editor refuses to save a longer caption, the importer leaves a
# longer sidecar out (and says so), and the trainers' sidecar reader accepts any caption
# within it (UTF-8 is at most 4 bytes a character; the slack is for a BOM and whitespace).
MAX_CAPTION_CHARS = 100_000
MAX_SIDECAR_BYTES = 4 * MAX_CAPTION_CHARS + 1024  # refuse to slurp huge files


def caption_problem(caption: str, name: str = "") -> str | None:
    """Why ``caption`` (stripped) cannot be used, naming the photo ``name``; None when it
    is within :data:`MAX_CAPTION_CHARS`."""
    n = len(caption.strip())
    if n <= MAX_CAPTION_CHARS:
        return None
    who = f"{name}: " if name else ""
    return (f"{who}the caption is too long ({n:,} characters; at most "
            f"{MAX_CAPTION_CHARS:,}) — trainers cannot use it")


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
    sidecar over :data:`MAX_SIDECAR_BYTES` or one that is not a regular file (a FIFO or device would block the
    read forever; it is opened non-blocking and refused), and ``OSError`` when an existing
    sidecar cannot be read.
    """
    path = Path(path)
    txt = path if path.suffix.lower() == SIDECAR_EXT else sidecar_path(path)
    try:
        st = os.stat(txt)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{txt.name} is not a regular file; it is not read as a caption")
    if st.st_size > MAX_SIDECAR_BYTES:
        raise ValueError(f"{txt.name} is too large to be a caption")
    try:
        fd = os.open(txt, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped since the stat
            raise ValueError(f"{txt.name} is not a regular file; it is not read as a caption")
        data = fh.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise ValueError(f"{txt.name} is too large to be a caption")
    return data.decode("utf-8-sig", errors="replace").strip()


# The trigger-word rule, the one place it is written (the external trainers' launcher,
# plugins/external/trainer_shim.py, runs stdlib-only under the trainer's Python and keeps a
# copy; tests/unit/test_trigger_rule.py runs both over the same table).
# A trigger is present when it stands as a whole token, case-sensitively (like the token the
# LoRA learns): an end that is a letter/digit/underscore must not run on into another one
# ("ohwx" is not in "ohwxman"), an end that is punctuation ("c++") must meet the text's end,
# whitespace or a separator (",", ";") ("c+++" is something else).
_SEPARATORS = r"\s,;"


def trigger_pattern(trigger: str) -> re.Pattern[str]:
    """The compiled whole-token pattern of ``trigger`` (stripped; must not be empty)."""
    trigger = trigger.strip()
    if not trigger:
        raise ValueError("empty trigger word")
    before = r"(?<!\w)" if re.match(r"\w", trigger[0]) else rf"(?<![^{_SEPARATORS}])"
    after = r"(?!\w)" if re.match(r"\w", trigger[-1]) else rf"(?![^{_SEPARATORS}])"
    return re.compile(before + re.escape(trigger) + after)


def has_trigger(text: str, trigger: str) -> bool:
    """Whether ``text`` holds ``trigger`` as a whole token anywhere. An empty trigger is
    never present."""
    return bool(trigger.strip()) and trigger_pattern(trigger).search(text) is not None


def _trigger_first(body: str, trigger: str) -> str:
    body = body.lstrip(", ").strip()
    return f"{trigger}, {body}" if body else trigger


def prepend_trigger(caption: str, trigger: str) -> str:
    """``"trigger, caption"``; unchanged when the caption already *starts* with the trigger as
    a whole token (so applying it twice is harmless). Surrounding whitespace is dropped; an
    empty caption becomes the trigger alone; an empty trigger leaves the caption as it is."""
    trigger = trigger.strip()
    if not trigger:
        return caption
    body = caption.strip()
    if trigger_pattern(trigger).match(body):
        return body
    return _trigger_first(body, trigger)


def with_trigger(caption: str, trigger: str) -> str:
    """``caption`` (stripped) with ``trigger`` in front, unless it already holds the trigger
    as a whole token anywhere (what trainers see and prompts get). An empty trigger leaves
    the caption as it is (stripped)."""
    trigger = trigger.strip()
    body = caption.strip()
    if not trigger or has_trigger(body, trigger):
        return body
    return _trigger_first(body, trigger)


TRIGGER_PLACEHOLDER = "[trigger]"


def sample_prompt(prompt: str, trigger: str) -> str:
    """A sample prompt as the trainers render it: each ``[trigger]`` (the placeholder of the
    setup form's prompts and the ai-toolkit/kohya configs) replaced by ``trigger``, then
    :func:`with_trigger` (the trigger in front when the prompt does not hold it)."""
    if TRIGGER_PLACEHOLDER in prompt:
        prompt = " ".join(prompt.replace(TRIGGER_PLACEHOLDER, trigger.strip()).split())
    return with_trigger(prompt, trigger)


def find_replace(caption: str, find: str, replace: str, *, case_sensitive: bool = True) -> str:
    """Replace every occurrence of the plain text ``find`` (not a regex) with ``replace``.
    An empty ``find`` changes nothing."""
    if not find:
        return caption
    if case_sensitive:
        return caption.replace(find, replace)
    return re.sub(re.escape(find), lambda _m: replace, caption, flags=re.IGNORECASE)
