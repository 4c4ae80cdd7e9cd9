"""Concepts (issue 17, item 5): a picture described by the concept fields of
:data:`~.prompt_refine.CONCEPT_FIELDS` (character, action, outfit, setting, lighting, camera,
composition, style, mood), each lockable, shuffled from curated lists, saved and reused.

* :func:`load_lists` reads ``resources/concepts/lists.toml`` (one list per field; the
  character comes from the picked character);
* :func:`shuffle` gives every unlocked field a new choice (never the one it had when the list
  offers another), :func:`merge_locked` keeps the locked fields of a concept an LLM filled in;
* :func:`compose_prompt` writes the prompt without an LLM, in the family's style (tags for
  SD 1.5/SDXL, sentences for Flux/Chroma), with the trigger word kept;
* :class:`ConceptStore`: the saved concepts, one JSON file in the data folder, written
  atomically; a damaged file is reported naming it and kept aside, never overwritten.

Pure (no Qt); the store does blocking file I/O: call it off the UI thread.
"""

from __future__ import annotations

import json
import random
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset.captions import with_trigger
from .fsutil import atomic_write_text
from .prompt_refine import CONCEPT_FIELDS, prompt_style

__all__ = ["Concept", "ConceptError", "ConceptStore", "LISTS_FILE", "compose_prompt",
           "lists_file", "load_lists", "merge_locked", "shuffle"]

LISTS_FILE = Path(__file__).resolve().parents[2] / "resources" / "concepts" / "lists.toml"
SHUFFLED = tuple(name for name in CONCEPT_FIELDS if name != "character")
STORE_VERSION = 1


class ConceptError(ValueError):
    """A lists or concepts file that cannot be used; the text names the file and field."""


def lists_file() -> Path:
    """The shipped lists (source tree or a PyInstaller bundle)."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "resources" / "concepts" / "lists.toml" if bundle else LISTS_FILE


@dataclass(frozen=True)
class Concept:
    """The fields' texts (every field of CONCEPT_FIELDS, "" when empty) and which are
    locked; ``character_id`` the picked character (None: nobody in particular)."""

    fields: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(CONCEPT_FIELDS, ""))
    locked: frozenset[str] = frozenset()
    name: str = ""
    character_id: int | None = None

    def with_fields(self, **changes: str) -> Concept:
        merged = {**self.fields, **changes}
        return Concept(merged, self.locked, self.name, self.character_id)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "character_id": self.character_id,
                "fields": {k: self.fields.get(k, "") for k in CONCEPT_FIELDS},
                "locked": sorted(self.locked)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "concept") -> Concept:
        fields = data.get("fields")
        if not isinstance(fields, Mapping):
            raise ConceptError(f"{where}: 'fields' must be a table of texts")
        bad = [k for k, v in fields.items() if k not in CONCEPT_FIELDS or not isinstance(v, str)]
        if bad:
            raise ConceptError(f"{where}: unknown or non-text field(s) {', '.join(map(str, bad))}")
        locked = data.get("locked", [])
        if not isinstance(locked, list) or any(k not in CONCEPT_FIELDS for k in locked):
            raise ConceptError(f"{where}: 'locked' must list field names")
        character = data.get("character_id")
        if character is not None and not isinstance(character, int):
            raise ConceptError(f"{where}: 'character_id' must be a number")
        return cls({k: str(fields.get(k, "")) for k in CONCEPT_FIELDS}, frozenset(locked),
                   str(data.get("name", "")), character)


def load_lists(path: Path | None = None) -> dict[str, list[str]]:
    """The curated lists by field. ConceptError naming the file and the field."""
    path = Path(path) if path is not None else lists_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConceptError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConceptError(f"{path}: not valid TOML ({exc})") from None
    out: dict[str, list[str]] = {}
    for name in SHUFFLED:
        values = data.get(name)
        if not isinstance(values, list) or not values \
                or not all(isinstance(v, str) and v.strip() for v in values):
            raise ConceptError(f"{path}: '{name}' must be a non-empty list of texts")
        out[name] = [v.strip() for v in values]
    return out


def shuffle(concept: Concept, lists: Mapping[str, list[str]],
            rng: random.Random | None = None) -> Concept:
    """Every unlocked field (but the character) gets a choice from its list, a different one
    from what it holds when the list has another."""
    rng = rng or random.Random()
    changes = {}
    for name in SHUFFLED:
        if name in concept.locked:
            continue
        options = [v for v in lists.get(name, []) if v != concept.fields.get(name, "")]
        if options:
            changes[name] = rng.choice(options)
    return concept.with_fields(**changes)


def merge_locked(concept: Concept, filled: Mapping[str, str]) -> Concept:
    """An LLM's filled-in fields for the unlocked ones; the locked ones stay as they were."""
    changes = {name: str(filled.get(name, "")).strip() for name in CONCEPT_FIELDS
               if name not in concept.locked and str(filled.get(name, "")).strip()}
    return concept.with_fields(**changes)


def idea_from(concept: Concept) -> str:
    """A short idea for the LLM: the locked fields as they are, and a request to invent the
    rest (the refinement's expand + structure stages fill them in)."""
    kept = [f"{name}: {concept.fields[name]}" for name in CONCEPT_FIELDS
            if name in concept.locked and concept.fields.get(name, "").strip()]
    free = [name for name in CONCEPT_FIELDS if name not in concept.locked]
    text = "A picture. " + ("Keep exactly: " + "; ".join(kept) + ". " if kept else "")
    return text + "Invent something fresh and specific for: " + ", ".join(free) + "."


def compose_prompt(concept: Concept, family: str, trigger: str = "") -> str:
    """The prompt from the fields, without an LLM: comma tags for SD 1.5/SDXL, sentences for
    Flux/Chroma; the trigger word in front when the character field lacks it."""
    f = {k: " ".join(str(concept.fields.get(k, "")).split()) for k in CONCEPT_FIELDS}
    if prompt_style(family) == "tags":
        text = ", ".join(v for v in (f["character"], f["action"], f["outfit"], f["setting"],
                                     f["lighting"], f["camera"], f["composition"], f["style"],
                                     f["mood"]) if v)
    else:
        sentences = []
        who = f["character"] or "A person"
        first = who + (f" {f['action']}" if f["action"] else "")
        if f["outfit"]:
            first += f", wearing {f['outfit']}"
        if f["setting"]:
            first += f", in {f['setting']}"
        sentences.append(first)
        light = ", ".join(v for v in (f["lighting"], f["mood"] and f"{f['mood']} mood") if v)
        if light:
            sentences.append(light[0].upper() + light[1:])
        shot = ", ".join(v for v in (f["style"], f["camera"], f["composition"]) if v)
        if shot:
            sentences.append(shot[0].upper() + shot[1:])
        text = ". ".join(s.rstrip(".") for s in sentences) + "."
    return with_trigger(text, trigger) if trigger.strip() else text


class ConceptStore:
    """Saved concepts by name in ``concepts.json`` (data folder)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[Concept]:
        """The saved concepts, by name. A damaged file: ConceptError naming it (it is left
        where it is; :meth:`save` refuses to replace it until it is fixed or removed)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConceptError(f"{self.path}: cannot be read ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConceptError(f"{self.path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("concepts"), list):
            raise ConceptError(f"{self.path}: expected {{\"concepts\": [...]}}")
        out = [Concept.from_dict(item, f"{self.path}, concept {i + 1}")
               for i, item in enumerate(data["concepts"]) if isinstance(item, dict)]
        return sorted(out, key=lambda c: c.name.lower())

    def save(self, concept: Concept) -> list[Concept]:
        """Add or replace (by name) ``concept``; returns the saved list."""
        if not concept.name.strip():
            raise ConceptError("A concept needs a name to be saved.")
        concepts = [c for c in self.load() if c.name != concept.name] + [concept]
        self._write(concepts)
        return sorted(concepts, key=lambda c: c.name.lower())

    def delete(self, name: str) -> list[Concept]:
        concepts = [c for c in self.load() if c.name != name]
        self._write(concepts)
        return concepts

    def _write(self, concepts: Iterable[Concept]) -> None:
        body = {"version": STORE_VERSION, "concepts": [c.to_dict() for c in concepts]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(body, indent=1, ensure_ascii=False))
