"""Names we make up for the user: trigger words and folder names."""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Collection

_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiouy"
# Tokens that trainers and tokenizers commonly know already; a trigger should not be one.
_COMMON = {"sks", "ohwx", "man", "woman", "person", "photo", "girl", "boy"}

MAX_CHARACTER_NAME_CHARS = 60
# Device names Windows refuses as a file or folder name, with any extension ("con.txt") and
# with trailing dots or spaces ("NUL ."); COM¹ and friends fold to COM1 under NFKD.
_WINDOWS_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|CLOCK\$|CONIN\$|CONOUT\$|COM[0-9]|LPT[0-9])",
                               re.IGNORECASE)
# Bidi embeddings/overrides/isolates: invisible, and they reorder the text around them.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_windows_reserved(name: str) -> bool:
    """Whether Windows treats ``name`` as a device rather than a file or folder name."""
    folded = unicodedata.normalize("NFKD", name).strip().rstrip(". ")
    base = folded.split(".")[0].rstrip(" ")
    return _WINDOWS_RESERVED.fullmatch(base) is not None


def validate_character_name(name: str) -> str | None:
    """A problem with ``name`` as a character's name in plain words, or None when it is fine.

    Refused: empty, longer than :data:`MAX_CHARACTER_NAME_CHARS`, control characters (line
    breaks, tabs, escape sequences, invisible direction overrides), and the device names
    Windows reserves (``CON``, ``NUL``, ``COM1``…, also as ``con.txt`` or ``NUL.``)."""
    stripped = name.strip()
    if not stripped:
        return "The name cannot be empty."
    if len(stripped) > MAX_CHARACTER_NAME_CHARS:
        return f"The name is too long ({MAX_CHARACTER_NAME_CHARS} characters at most)."
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_CONTROLS
           for c in stripped):
        return "The name cannot contain control characters (line breaks, tabs, escapes)."
    if is_windows_reserved(stripped):
        return (f"“{stripped}” is a device name reserved by Windows and cannot be used "
                "as a folder name; choose another.")
    return None


def suggest_trigger(name: str, existing: Collection[str] = (), rng: random.Random | None = None) -> str:
    """A short rare token (e.g. ``mxr_vokzi``) unlikely to mean anything to a text encoder.

    It starts with up to three consonants of the name so the user recognises it, and is
    unique among ``existing`` triggers (case-insensitive).
    """
    rng = rng or random.SystemRandom()
    taken = {t.lower() for t in existing} | _COMMON
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    prefix = "".join(c for c in ascii_name if c in _CONSONANTS)[:3] or "zx"
    for _ in range(1000):
        body = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(2))
        token = f"{prefix}_{body}{rng.choice(_CONSONANTS)}"
        if token not in taken:
            return token
    raise RuntimeError("could not find a free trigger word")  # pragma: no cover


def folder_slug(name: str, taken: Collection[str] = ()) -> str:
    """A filesystem-safe folder name for a character, unique among ``taken``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:40] or "character"
    if is_windows_reserved(slug):
        slug = f"{slug}-character"
    taken_lower = {t.lower() for t in taken}
    candidate, n = slug, 2
    while candidate in taken_lower:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate


def validate_trigger(trigger: str) -> str | None:
    """Return a problem with ``trigger`` in plain words, or None when it is fine."""
    if not trigger.strip():
        return "The trigger word cannot be empty."
    if re.search(r"\s", trigger.strip()):
        return "The trigger word must be a single token without spaces."
    if len(trigger.strip()) > 40:
        return "The trigger word is too long (40 characters at most)."
    if "," in trigger:
        return "The trigger word cannot contain commas (captions are comma-separated)."
    return None
