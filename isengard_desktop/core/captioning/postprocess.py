"""Turn a captioning model's raw text into a suggested training caption.

* :func:`strip_preamble` drops what vision-language models put in front of every caption
  ("The image shows …", "In this picture, we can see …").
* :func:`remove_fixed_traits` ("identity LoRA" mode) removes what never changes about the
  person — hair colour and length, eye colour, skin tone, age, ethnicity, face shape,
  freckles … — and keeps what varies (clothes, setting, light, expression, pose, framing):
  "a young woman with long blonde hair and blue eyes wearing a red dress" → "a woman wearing
  a red dress". The trait words are data (``resources/captioning/identity_traits.toml``).
* :func:`place_trigger` puts the character's trigger word where the user chose: at the
  start, after the class word ("a woman ohwx standing …"), or nowhere.

:func:`suggest_caption` runs them in that order for :class:`CaptionOptions`. Pure functions;
the trait file is read once.
"""

from __future__ import annotations

import functools
import re
import sys
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..dataset.captions import has_trigger

__all__ = ["CaptionMode", "CaptionOptions", "TRAITS_FILE", "Traits", "TriggerPlacement",
           "load_traits", "place_trigger", "remove_fixed_traits", "strip_preamble",
           "suggest_caption"]

TRAITS_FILE = Path(__file__).resolve().parents[3] / "resources" / "captioning" / \
    "identity_traits.toml"


class CaptionMode(StrEnum):
    IDENTITY = "identity"   # leave out the person's fixed traits
    GENERAL = "general"     # keep everything the model said


class TriggerPlacement(StrEnum):
    START = "start"               # "ohwx, a woman standing in a park"
    AFTER_CLASS = "after_class"   # "a woman ohwx standing in a park"
    NONE = "none"                 # the caption as it is


@dataclass(frozen=True)
class CaptionOptions:
    """How raw model text becomes a suggestion.

    Attributes:
        mode: identity (fixed traits removed) or general (kept).
        trigger: the character's trigger word ("" places none).
        placement: where the trigger goes.
        class_word: the word the trigger follows with AFTER_CLASS ("woman"); "" means the
            first person noun of the caption (from the trait file's ``person_nouns``).
    """

    mode: CaptionMode = CaptionMode.IDENTITY
    trigger: str = ""
    placement: TriggerPlacement = TriggerPlacement.START
    class_word: str = ""


@dataclass(frozen=True)
class Traits:
    """The trait vocabulary (see the TOML file for what each list means)."""

    person_nouns: tuple[str, ...]
    before_noun: tuple[str, ...]     # age, ethnicity, skin, body adjectives
    hair: tuple[str, ...]
    eyes: tuple[str, ...]
    skin_tone: tuple[str, ...]
    face_shape: tuple[str, ...]
    features: tuple[str, ...]
    trait_subjects: tuple[str, ...]


def _traits_path() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    return (Path(bundle) / "resources" / "captioning" / TRAITS_FILE.name if bundle
            else TRAITS_FILE)


def _words(data: dict, key: str, source: Path) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{source.name}: field {key!r} must be a list of non-empty strings")
    return tuple(v.strip().lower() for v in value)


def load_traits(path: Path | None = None) -> Traits:
    """Read the trait file (default: the shipped one). A broken file raises ``ValueError``
    naming the file and the field."""
    if path is None:
        return _shipped_traits()
    return _read_traits(path)


@functools.lru_cache(maxsize=1)
def _shipped_traits() -> Traits:
    return _read_traits(_traits_path())


def _read_traits(path: Path) -> Traits:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the identity trait list ({exc})") from exc
    if data.get("schema") != 1:
        raise ValueError(f"{path.name}: field 'schema' must be 1")
    w = functools.partial(_words, data, source=path)
    return Traits(person_nouns=w("person_nouns"),
                  before_noun=w("age") + w("ethnicity") + w("skin") + w("body"),
                  hair=w("hair"), eyes=w("eyes"), skin_tone=w("skin_tone"),
                  face_shape=w("face_shape"), features=w("features"),
                  trait_subjects=w("trait_subjects"))


def _alt(words: tuple[str, ...]) -> str:
    """A regex alternation of ``words``, longest first, spaces/hyphens matching either."""
    parts = []
    for word in sorted(set(words), key=len, reverse=True):
        parts.append(r"[\s-]+".join(re.escape(p) for p in re.split(r"[\s-]+", word)))
    return "(?:" + "|".join(parts) + ")"


# -- preamble ----------------------------------------------------------------------------------
_PREAMBLES = [re.compile(p, re.IGNORECASE) for p in (
    r"^(?:in\s+)?(?:this|the)\s+(?:image|picture|photo|photograph|scene|shot|frame)\s*,?\s*"
    r"(?:we\s+can\s+see|you\s+can\s+see|there\s+(?:is|are)|"
    r"(?:shows|depicts|features|displays|showcases|captures|contains|presents|portrays)"
    r"|is\s+(?:of|showing|depicting)|is)\s+",
    r"^this\s+is\s+(?:an?\s+)?(?:image|picture|photo|photograph|close-up\s+photo)\s+of\s+",
    r"^(?:in\s+)?(?:this|the)\s+(?:image|picture|photo|photograph)\s*,\s*",
    r"^(?:we|you)\s+can\s+see\s+",
)]
_LEADING_ARTICLE = re.compile(r"^(A|An|The|Two|Three|Several|Some)\b")


def strip_preamble(text: str) -> str:
    """``text`` without the model's opening formula ("The image shows a woman …" →
    "a woman …"); the first article is lower-cased. Text without one is only stripped."""
    text = " ".join(text.split())
    for _ in range(2):   # "In this image, we can see …" needs two passes at most
        for pattern in _PREAMBLES:
            new = pattern.sub("", text, count=1)
            if new != text:
                text = new
                break
    text = re.sub(r"^that\s+", "", text, flags=re.IGNORECASE)
    return _LEADING_ARTICLE.sub(lambda m: m.group(1).lower(), text)


# -- identity mode -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Patterns:
    trait_list: re.Pattern[str]
    styled_hair: re.Pattern[str]
    possessive: re.Pattern[str]
    before_noun: re.Pattern[str]
    article: re.Pattern[str]
    age_phrase: re.Pattern[str]
    drop_sentence: tuple[re.Pattern[str], ...]
    person: re.Pattern[str]


@functools.lru_cache(maxsize=4)
def _patterns(traits: Traits) -> _Patterns:
    sep = r"(?:\s*,\s*(?:and\s+)?|\s+and\s+|\s+)"

    def seq(words: tuple[str, ...]) -> str:
        return rf"{_alt(words)}(?:{sep}{_alt(words)})*"

    poss = r"(?:(?:her|his|their)\s+)?"
    phrase = (rf"(?:{poss}(?:{seq(traits.hair)})\s+hair"
              rf"|{poss}(?:{seq(traits.eyes)})\s+eyes"
              rf"|{poss}(?:{seq(traits.skin_tone)})\s+(?:skin|complexion)"
              rf"|{poss}(?:an?\s+)?(?:{seq(traits.face_shape)})\s+face"
              rf"|{poss}{_alt(traits.features)})")
    trait_list = re.compile(
        rf"(?P<lead>\s*,?\s*\b(?:with|having)\s+){phrase}(?:{sep}{phrase})*"
        rf"(?P<tail>\s+and\s+(?=\w))?", re.IGNORECASE)
    # "with grey hair tied in a bun": the style varies, so "with hair tied in a bun" stays
    styled_hair = re.compile(
        rf"\b(with\s+{poss})(?:{seq(traits.hair)})\s+(hair\s+(?:tied|pulled|styled|swept|"
        rf"slicked|braided|parted|worn|pinned|piled|gathered|twisted|up|down|back|in)\b)",
        re.IGNORECASE)
    # "over her long blonde hair" -> "over her hair" (the sentence is about something else)
    possessive = re.compile(
        rf"\b(her|his|their)\s+(?:(?:{seq(traits.hair)})\s+(hair)|(?:{seq(traits.eyes)})\s+"
        rf"(eyes)|(?:{seq(traits.skin_tone)})\s+(skin|complexion))\b", re.IGNORECASE)
    person = _alt(traits.person_nouns)
    age = r"\d+[\s-]+years?[\s-]+old"
    before = rf"(?:{_alt(traits.before_noun)}|{age})"
    before_noun = re.compile(rf"\b{before}(?:{sep}{before})*\s+(?=(?:{person})s?\b)",
                             re.IGNORECASE)
    article = re.compile(rf"\b(a|an)\s+(?=({person})\b)", re.IGNORECASE)
    decades = (r"(?:teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|"
               r"\d0\s*'?s)")
    age_phrase = re.compile(
        rf"\s*,?\s*\b(?:who\s+(?:is|appears\s+to\s+be)\s+)?(?:aged\s+\d+|in\s+(?:her|his|their)"
        rf"\s+(?:early\s+|mid\s+|mid-|late\s+)?{decades})\b(?:\s*,(?=\s))?", re.IGNORECASE)
    subjects = _alt(traits.trait_subjects)
    pronoun = rf"(?:she|he|they|the\s+{person})"
    drop = (
        re.compile(rf"^(?:her|his|their|the\s+{person}'s)\s+{subjects}\s+(?:is|are|appears?|"
                   rf"looks?|seems?)\b", re.IGNORECASE),
        re.compile(rf"^{pronoun}\s+(?:has|have)\s+{phrase}(?:{sep}{phrase})*\s*[.!?]?$",
                   re.IGNORECASE),
        re.compile(rf"^{pronoun}\s+(?:appears|seems|looks)\s+to\s+be\s+(?:in\s+(?:her|his|"
                   rf"their)\s+|of\s+|about\s+|around\s+|an?\s+)?(?:{before}|{decades}|\d+)\b",
                   re.IGNORECASE),
    )
    return _Patterns(trait_list, styled_hair, possessive, before_noun, article, age_phrase, drop,
                     re.compile(rf"\b{person}\b", re.IGNORECASE))


def _with_article(match: re.Match[str]) -> str:
    article = "an" if match.group(2)[0].lower() in "aeiou" else "a"
    if match.group(1)[0].isupper():
        article = article.capitalize()
    return article + " "


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r",(\s*,)+", ",", text)
    text = re.sub(r",\s*([.;:!?])", r"\1", text)
    return text.strip(" ,;")


def remove_fixed_traits(text: str, traits: Traits | None = None) -> str:
    """``text`` without the person's fixed traits (identity LoRA mode); see the module
    docstring. Sentences only about a fixed trait ("Her hair is long and blonde.") go whole."""
    p = _patterns(traits or load_traits())
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if not sentence or any(d.search(sentence) for d in p.drop_sentence):
            continue

        def trait_list(m: re.Match[str]) -> str:
            # "with long hair and a red scarf" keeps "with a red scarf"
            return f"{m.group('lead')}" if m.group("tail") else ""

        s = p.styled_hair.sub(r"\1\2", sentence)
        s = p.trait_list.sub(trait_list, s)
        s = p.possessive.sub(lambda m: f"{m.group(1)} {m.group(2) or m.group(3) or m.group(4)}",
                             s)
        s = p.before_noun.sub("", s)
        s = p.age_phrase.sub("", s)
        s = p.article.sub(_with_article, s)
        s = _tidy(s)
        if s and s not in ".!?":
            kept.append(s[0].upper() + s[1:] if sentence[:1].isupper() else s)
    return " ".join(kept)


# -- trigger -------------------------------------------------------------------------------------
def place_trigger(caption: str, trigger: str, placement: TriggerPlacement,
                  class_word: str = "", traits: Traits | None = None) -> str:
    """``caption`` with ``trigger`` placed as chosen. Unchanged when the trigger is empty,
    already in the caption (as a whole token), or ``placement`` is NONE. AFTER_CLASS puts
    it after the first ``class_word`` (default: the first person noun); without one it goes
    to the start."""
    caption = caption.strip()
    trigger = trigger.strip()
    if not trigger or placement == TriggerPlacement.NONE or has_trigger(caption, trigger):
        return caption
    if placement == TriggerPlacement.AFTER_CLASS:
        pattern = (re.compile(rf"\b{re.escape(class_word.strip())}\b", re.IGNORECASE)
                   if class_word.strip() else _patterns(traits or load_traits()).person)
        m = pattern.search(caption)
        if m:
            return f"{caption[:m.end()]} {trigger}{caption[m.end():]}"
    return f"{trigger}, {caption}" if caption else trigger


def suggest_caption(raw: str, options: CaptionOptions, traits: Traits | None = None) -> str:
    """The suggested caption for the model's ``raw`` text under ``options``."""
    text = strip_preamble(raw)
    if options.mode == CaptionMode.IDENTITY:
        text = strip_preamble(remove_fixed_traits(text, traits))
    return place_trigger(text, options.trigger, options.placement, options.class_word, traits)
