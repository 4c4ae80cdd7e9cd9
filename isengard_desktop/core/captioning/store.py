"""Caption suggestions, kept per character in ``<character folder>/.captioning/``.

* ``suggestions.jsonl`` — what the captioning model said, one JSON object a photo, appended by
  the captioning child as it goes (so a run that is stopped, crashes or is cut by a restart
  keeps every photo it finished; the next run skips them). A torn last line is ignored.
* ``review.json`` — what the user decided about each suggestion (accepted, skipped, or the
  text they edited), written atomically by the app.

Photos are identified by their content hash (``sha256``), so a suggestion stays with its
photo when rows are renumbered. The folder name starts with a dot: the library's folder
reconciliation never takes these files for photos. Qt-free; these functions touch the disk
(call them off the UI thread).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from ..fsutil import atomic_write_text

__all__ = ["CAPTIONING_DIR", "Decision", "DecisionStatus", "RawCaption", "append_raw", "pending_keys",
           "read_raw", "read_review", "review_file", "suggestions_file", "write_review"]

CAPTIONING_DIR = ".captioning"
STORE_VERSION = 1


def suggestions_file(character_folder: Path) -> Path:
    return Path(character_folder) / CAPTIONING_DIR / "suggestions.jsonl"


def review_file(character_folder: Path) -> Path:
    return Path(character_folder) / CAPTIONING_DIR / "review.json"


@dataclass(frozen=True)
class RawCaption:
    """The model's text for one photo.

    Attributes:
        key: the photo's sha256.
        image: the photo's path when it was captioned (for messages; the key is what counts).
        raw: the model's text, as decoded (no post-processing).
        model: the captioning model's id or folder name.
    """

    key: str
    image: str
    raw: str
    model: str = ""


class DecisionStatus(StrEnum):
    ACCEPTED = "accepted"   # written to the photo's caption
    SKIPPED = "skipped"     # the user did not want it


@dataclass(frozen=True)
class Decision:
    """What the user did with a suggestion. ``text`` is their edited suggestion ("" when
    they did not edit it)."""

    status: DecisionStatus | None = None
    text: str = ""


def append_raw(path: Path, *records: RawCaption) -> None:
    """Append records, one whole line each, flushed and synced once (the captioning child
    calls it once a batch: a crash loses at most the batch being written)."""
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"v": STORE_VERSION, **asdict(r)}, ensure_ascii=False) + "\n"
                   for r in records)
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_raw(path: Path) -> dict[str, RawCaption]:
    """Every record of ``path`` by key (the latest wins); {} when there is no file. Lines
    that are not a valid record (a torn last line after a crash) are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    out: dict[str, RawCaption] = {}
    for line in text.splitlines():
        try:
            data = json.loads(line)
            record = RawCaption(key=str(data["key"]), image=str(data.get("image", "")),
                                raw=str(data["raw"]), model=str(data.get("model", "")))
        except (ValueError, KeyError, TypeError):
            continue
        if record.key:
            out[record.key] = record
    return out


def read_review(path: Path) -> dict[str, Decision]:
    """The user's decisions by key; {} when there is no file. A file that cannot be read as
    one raises ``ValueError`` naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: the caption review file cannot be read ({exc}); move it "
                         f"away to start the review again") from exc
    items = data.get("decisions") if isinstance(data, dict) else None
    if not isinstance(items, dict):
        raise ValueError(f"{path}: field 'decisions' is missing or not an object")
    out: dict[str, Decision] = {}
    for key, item in items.items():
        if not isinstance(item, dict):
            continue
        status = str(item.get("status"))
        out[str(key)] = Decision(
            status=DecisionStatus(status) if status in DecisionStatus._value2member_map_
            else None, text=str(item.get("text", "")))
    return out


def write_review(path: Path, decisions: dict[str, Decision]) -> None:
    """Write all decisions atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = {k: {"status": d.status.value if d.status else None, "text": d.text}
             for k, d in sorted(decisions.items())}
    atomic_write_text(path, json.dumps({"v": STORE_VERSION, "decisions": items},
                                       ensure_ascii=False, indent=1))


def pending_keys(keys: Iterable[str], done: Iterable[str]) -> list[str]:
    """``keys`` (in order, once each) that have no record in ``done`` yet: what a resumed
    run still has to caption."""
    have = set(done)
    seen: set[str] = set()
    out = []
    for key in keys:
        if key not in have and key not in seen:
            seen.add(key)
            out.append(key)
    return out
