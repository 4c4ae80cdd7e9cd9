"""Our one section in a user-run ComfyUI's ``extra_model_paths.yaml``.

Linking a ComfyUI the user runs themselves writes one top-level section, ``isengard:``, into
the ``extra_model_paths.yaml`` beside its ``main.py`` so that ComfyUI also lists the app's
models folder (ComfyUI's layout: ``checkpoints/``, ``vae/``, …) and the app's LoRA folder.
ComfyUI reads that file with ``utils/extra_config.py``: every top-level key is a section; a
section's ``base_path`` is joined to each per-folder value; a value may hold several folders,
one per line.

The edit is made on the text, never by re-dumping parsed YAML (which would lose the user's
comments and layout): our block is the ``isengard:`` line at column 0 and the indented or
blank lines after it. Everything outside it stays byte for byte. The result is checked before
it is written: it must parse (``yaml.safe_load``), the user's sections must parse equal to
what they were, and ours must say what we meant. A file that does not parse is refused with a
message naming the file and line, and nothing is written. Writes are atomic. Qt-free, blocking
(small files; call from a worker thread in the UI).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .fsutil import atomic_write_bytes
from .models_catalogue import COMFY_FOLDERS

__all__ = [
    "FILE_NAME", "SECTION", "ExtraPathsError", "LinkResult", "link_comfyui", "section_values",
    "section_text", "unlink_comfyui", "with_section", "without_section",
]

FILE_NAME = "extra_model_paths.yaml"
SECTION = "isengard"
# the first line inside our block; the "created" one says the file was ours to begin with
MARKER = "# Added by Isengard Desktop (its models folder). Unlinking in the app removes it."
MARKER_CREATED = "# Added by Isengard Desktop, which created this file. Unlinking removes it."
INDENT = "    "
# ComfyUI folder names we list (the catalogue's folders, plus loras)
FOLDERS: tuple[str, ...] = tuple(sorted(COMFY_FOLDERS | {"loras"}))
_KEY_LINE = re.compile(r"""^(['"]?)isengard\1[ \t]*:(?:[ \t]|\r?\n|$)""")
_DOC_START = re.compile(r"^(---|%)")


class ExtraPathsError(ValueError):
    """The user's file cannot be edited safely; the message names the file (and line)."""


@dataclass(frozen=True)
class LinkResult:
    """What was done to ``path``: ``created``, ``added``, ``replaced``, ``unchanged``,
    ``removed`` (our section taken out) or ``deleted`` (the file was ours alone)."""

    path: Path
    action: str


def section_values(models_root: Path, loras: Path | None = None,
                   folders: Iterable[str] = FOLDERS) -> dict[str, str]:
    """What our section means once parsed: ``base_path`` and one key per ComfyUI folder
    (``ultralytics/bbox`` is listed as ``ultralytics_bbox``, the name Impact Pack asks for).
    ``loras`` adds the app's finished-LoRA folder as a second line of ``loras``."""
    values = {"base_path": str(models_root)}
    for folder in folders:
        values[folder.replace("/", "_")] = folder
    if loras is not None:
        values["loras"] = "loras\n" + str(loras)
    return values


def _scalar(value: str) -> str:
    # a JSON string is a YAML double-quoted scalar: any path (':', '#', quotes) stays exact
    return json.dumps(value, ensure_ascii=False)


def section_text(values: dict[str, str], *, created: bool = False, newline: str = "\n") -> str:
    """Our block as text (``isengard:``, the marker comment, one indented line a key)."""
    lines = [f"{SECTION}:", INDENT + (MARKER_CREATED if created else MARKER)]
    lines += [f"{INDENT}{key}: {_scalar(value)}" for key, value in values.items()]
    return newline.join(lines) + newline


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ExtraPathsError(
            f"{path}{where}: is not valid YAML ({problem}). Fix or rename that file, then link "
            "again; it was not changed.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ExtraPathsError(f"{path}: holds a {type(data).__name__}, not sections (name: "
                              "folders); it was not changed.")
    return data


def _find_block(lines: list[str]) -> tuple[int, int] | None:
    """[start, end) of the top-level ``isengard:`` block: its key line and every following
    line that is indented or blank (trailing blank lines are left to what follows)."""
    for start, line in enumerate(lines):
        if _KEY_LINE.match(line):
            end = start + 1
            while end < len(lines) and (lines[end][:1] in (" ", "\t") or not lines[end].strip()):
                end += 1
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1
            return start, end
    return None


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _insert_at(lines: list[str]) -> int:
    """Where a new block goes: the top, or after a leading ``---`` / directives."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _DOC_START.match(line):
            j = i
            while j < len(lines) and not lines[j].startswith("---"):
                j += 1
            return min(j + 1, len(lines))
        return 0
    return 0


def with_section(text: str, values: dict[str, str], path: Path, *,
                 created: bool = False) -> str:
    """``text`` with our section set to ``values`` (replaced in place when there, else put at
    the top followed by one blank line). Checked as the module text says; raises
    :class:`ExtraPathsError`."""
    before = _parse(text, path)
    nl = _newline(text)
    lines = text.splitlines(keepends=True)
    block = _find_block(lines)
    if block is not None:
        start, end = block
        was_created = len(lines) > start + 1 and MARKER_CREATED in lines[start + 1]
        new = section_text(values, created=was_created, newline=nl)
        if end == len(lines) and not lines[-1].endswith(("\n", "\r")):
            new = new[:-len(nl)]         # the block ended the file without a newline
        out = "".join(lines[:start]) + new + "".join(lines[end:])
    else:
        at = _insert_at(lines)
        new = section_text(values, created=created, newline=nl)
        rest = "".join(lines[at:])
        if at and not lines[at - 1].endswith(("\n", "\r")):
            raise ExtraPathsError(f"{path}: ends in its document marker line; add a line "
                                  "break after it and link again. It was not changed.")
        out = "".join(lines[:at]) + new + (nl + rest if rest else "")
    _check(out, before, values, path)
    return out


def without_section(text: str, path: Path) -> str | None:
    """``text`` without our section (and the one blank line we put after it); ``None`` when
    the file was created by us and nothing else is left in it."""
    before = _parse(text, path)
    lines = text.splitlines(keepends=True)
    block = _find_block(lines)
    if block is None:
        return text
    start, end = block
    created = len(lines) > start + 1 and MARKER_CREATED in lines[start + 1]
    if end < len(lines) and not lines[end].strip():
        end += 1                                 # the blank line we added after it
    out = "".join(lines[:start]) + "".join(lines[end:])
    if created and not out.strip():
        return None
    parsed = _parse(out, path)
    user = {k: v for k, v in before.items() if k != SECTION}
    if parsed != user:
        raise ExtraPathsError(f"{path}: taking out the '{SECTION}' section would change the "
                              "other sections (unusual layout); remove it by hand. The file "
                              "was not changed.")
    return out


def _check(out: str, before: dict[str, Any], values: dict[str, str], path: Path) -> None:
    try:
        after = _parse(out, path)
    except ExtraPathsError as exc:
        raise ExtraPathsError(f"{path}: adding the '{SECTION}' section would not give valid "
                              "YAML (unusual layout); add it by hand. The file was not "
                              "changed.") from exc
    user_before = {k: v for k, v in before.items() if k != SECTION}
    user_after = {k: v for k, v in after.items() if k != SECTION}
    if user_after != user_before or after.get(SECTION) != values:
        raise ExtraPathsError(f"{path}: adding the '{SECTION}' section would change the other "
                              "sections (unusual layout); add it by hand. The file was not "
                              "changed.")


def _read(path: Path) -> tuple[bytes, str] | None:
    """(BOM, text) of ``path``, or None when it does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ExtraPathsError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
    try:
        return bom, raw[len(bom):].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtraPathsError(f"{path}: is not UTF-8 text (byte {exc.start}); it was not "
                              "changed.") from exc


def _write(path: Path, bom: bytes, text: str) -> None:
    try:
        atomic_write_bytes(path, bom + text.encode("utf-8"))
    except OSError as exc:
        raise ExtraPathsError(f"{path}: cannot be written ({exc.strerror or exc}). Check that "
                              "the ComfyUI folder is writable.") from exc


def link_comfyui(comfy_folder: Path, models_root: Path, loras: Path | None = None
                 ) -> LinkResult:
    """Write (or rewrite) our section in ``comfy_folder/extra_model_paths.yaml``, creating
    the file when it is absent. Raises :class:`ExtraPathsError` and writes nothing when the
    file cannot be edited safely."""
    path = comfy_folder / FILE_NAME
    values = section_values(models_root, loras)
    current = _read(path)
    if current is None:
        _write(path, b"", with_section("", values, path, created=True))
        return LinkResult(path, "created")
    bom, text = current
    had = _find_block(text.splitlines(keepends=True)) is not None
    out = with_section(text, values, path)
    if out == text:
        return LinkResult(path, "unchanged")
    _write(path, bom, out)
    return LinkResult(path, "replaced" if had else "added")


def unlink_comfyui(comfy_folder: Path) -> LinkResult:
    """Take our section out of ``comfy_folder/extra_model_paths.yaml`` (delete the file when
    we created it and nothing else is in it)."""
    path = comfy_folder / FILE_NAME
    current = _read(path)
    if current is None:
        return LinkResult(path, "unchanged")
    bom, text = current
    out = without_section(text, path)
    if out is None:
        try:
            path.unlink()
        except OSError as exc:
            raise ExtraPathsError(f"{path}: cannot be removed ({exc.strerror or exc}).") \
                from exc
        return LinkResult(path, "deleted")
    if out == text:
        return LinkResult(path, "unchanged")
    _write(path, bom, out)
    return LinkResult(path, "removed")
