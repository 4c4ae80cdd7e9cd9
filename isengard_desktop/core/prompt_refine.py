"""Prompt refinement with a local LLM in three stages (Qt-free, pure logic + prompts as data).

1. **expand** the user's idea into a richer visual description (free text, streamed);
2. **structure** it into the concept fields with :data:`CONCEPT_SCHEMA` passed to the LLM as
   ``format`` (structured output); the answer is validated here: invalid JSON or a schema
   violation gets one retry with the error shown to the model, then a clear error;
3. **write** the final prompt in the family's style (comma-separated tags for SD 1.5/SDXL,
   natural sentences for Flux/Chroma), with the trigger word kept (put in front when the model
   dropped it, by the dataset captions' rule).

The stages take a ``chat`` callable (``OllamaClient.chat`` bound to a model) and a ``emit``
callback for the chunks, so tests and the service share the same code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Protocol

from .dataset.captions import has_trigger, with_trigger

__all__ = ["CONCEPT_FIELDS", "CONCEPT_SCHEMA", "STAGES", "RefineError", "expand",
           "final_prompt", "prompt_style", "structure", "validate_concept"]

STAGES = ("expand", "structure", "final")

#: The concept fields (the concept builder's too), with what each holds.
CONCEPT_FIELDS: dict[str, str] = {
    "character": "who is shown (keep the trigger word verbatim if given)",
    "action": "what they do, their pose",
    "outfit": "clothes and accessories",
    "setting": "place and background",
    "lighting": "light sources, time of day",
    "camera": "camera, lens, shot type",
    "composition": "framing, angle, placement",
    "style": "medium and art style",
    "mood": "atmosphere, emotion",
}

CONCEPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in CONCEPT_FIELDS},
    "required": list(CONCEPT_FIELDS),
}

TAG_FAMILIES = frozenset({"sd15", "sdxl"})

SYSTEM_EXPAND = (
    "You take a short idea for an image and reply with a more detailed visual description of "
    "it, adding concrete details (subject, clothes, place, light, camera, mood) without "
    "changing what the idea says. Reply only with the description, in one paragraph, no more "
    "than 120 words. Do not talk about anything that cannot be seen.")
SYSTEM_STRUCTURE = (
    "You split an image description into fields and reply with one JSON object only, with "
    "exactly these string fields: " +
    "; ".join(f"{name} ({what})" for name, what in CONCEPT_FIELDS.items()) +
    ". Use an empty string for a field the description does not cover.")
SYSTEM_FINAL_TAGS = (
    "You write a Stable Diffusion prompt from the fields of an image concept: comma-separated "
    "short tags, most important first, no sentences, no quality boilerplate beyond two tags, "
    "at most 60 tags. Reply only with the prompt on one line.")
SYSTEM_FINAL_SENTENCES = (
    "You write an image prompt for a modern text-to-image model from the fields of an image "
    "concept: two to four natural, concrete sentences describing the picture, subject first. "
    "Reply only with the prompt.")
TRIGGER_RULE = "The trigger word {trigger!r} must appear verbatim, exactly once, for the character."


class RefineError(RuntimeError):
    """A stage could not produce a usable answer; the text is for the user."""


class ChatFn(Protocol):
    def __call__(self, messages: Sequence[Mapping[str, str]], *,
                 format: str | Mapping[str, Any] | None = None) -> AsyncGenerator[str, None]: ...


Emit = Callable[[str], None]


def prompt_style(family: str) -> str:
    """``"tags"`` for SD 1.5 / SDXL, ``"sentences"`` for the others (Flux, Chroma, …)."""
    return "tags" if family.lower() in TAG_FAMILIES else "sentences"


async def _collect(chat: ChatFn, messages: Sequence[Mapping[str, str]], emit: Emit,
                   format: str | Mapping[str, Any] | None = None) -> str:
    parts: list[str] = []
    async with contextlib.aclosing(chat(messages, format=format)) as chunks:
        async for chunk in chunks:
            parts.append(chunk)
            emit(chunk)
    return "".join(parts).strip()


def _trigger_note(trigger: str) -> str:
    return (" " + TRIGGER_RULE.format(trigger=trigger)) if trigger.strip() else ""


async def expand(chat: ChatFn, idea: str, *, trigger: str = "",
                 emit: Emit = lambda _c: None) -> str:
    """Stage 1: the idea, described in more detail."""
    if not idea.strip():
        raise RefineError("Write an idea in the prompt box first: there is nothing to refine.")
    messages = [{"role": "system", "content": SYSTEM_EXPAND + _trigger_note(trigger)},
                {"role": "user", "content": idea.strip()}]
    text = await _collect(chat, messages, emit)
    if not text:
        raise RefineError("The LLM answered the expand stage with nothing; try again or "
                          "another model.")
    return text


def validate_concept(text: str) -> dict[str, str]:
    """The concept in ``text`` (JSON following :data:`CONCEPT_SCHEMA`); raises ValueError
    saying what is wrong (for the user, and for the model's retry)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"the answer must be a JSON object, not {type(data).__name__}")
    missing = [name for name in CONCEPT_FIELDS if name not in data]
    if missing:
        raise ValueError("the answer lacks the field(s) " + ", ".join(missing))
    wrong = [name for name in CONCEPT_FIELDS if not isinstance(data[name], str)]
    if wrong:
        raise ValueError("the field(s) " + ", ".join(wrong) + " must be strings")
    return {name: data[name].strip() for name in CONCEPT_FIELDS}


async def structure(chat: ChatFn, description: str, *, trigger: str = "",
                    emit: Emit = lambda _c: None, on_retry: Emit = lambda _e: None
                    ) -> dict[str, str]:
    """Stage 2: the description as concept fields. One retry with the error, then
    :class:`RefineError`. ``on_retry`` gets the first error before the retry starts."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": SYSTEM_STRUCTURE + _trigger_note(trigger)},
        {"role": "user", "content": description.strip()}]
    error = ""
    for attempt in (1, 2):
        text = await _collect(chat, messages, emit, format=CONCEPT_SCHEMA)
        try:
            concept = validate_concept(text)
        except ValueError as exc:
            error = str(exc)
            if attempt == 1:
                on_retry(error)
                messages += [{"role": "assistant", "content": text},
                             {"role": "user", "content":
                              f"That answer was not usable: {error}. Reply again with only "
                              "the JSON object, every field a string."}]
            continue
        if trigger.strip() and not has_trigger(concept["character"], trigger):
            concept["character"] = with_trigger(concept["character"], trigger)
        return concept
    raise RefineError(f"The LLM did not give usable concept fields twice ({error}). Try again, "
                      "or a model that handles structured output better.")


async def final_prompt(chat: ChatFn, concept: Mapping[str, str], *, family: str,
                       trigger: str = "", emit: Emit = lambda _c: None) -> str:
    """Stage 3: the prompt in the family's style, with the trigger word kept."""
    style = prompt_style(family)
    system = SYSTEM_FINAL_TAGS if style == "tags" else SYSTEM_FINAL_SENTENCES
    fields = "\n".join(f"{name}: {concept.get(name, '')}" for name in CONCEPT_FIELDS
                       if str(concept.get(name, "")).strip())
    messages = [{"role": "system", "content": system + _trigger_note(trigger)},
                {"role": "user", "content": fields}]
    text = " ".join((await _collect(chat, messages, emit)).split())
    if not text:
        raise RefineError("The LLM answered the final stage with nothing; try again.")
    return with_trigger(text, trigger)
