"""The diffusion-pipe backend's dataset staging and captions (Qt-free, torch-free).

The job's photos (its list, ``jobs/<id>/dataset.json``: never a folder scan) are hard-linked
(or copied) into ``<job>/diffusion-pipe-dataset/`` with ``<stem>.txt`` captions written for
the tool, by the one staging function of the external backends
(:func:`~...core.training.dataset_list.stage_dataset`); diffusion-pipe reads each caption as
is and keeps its latent cache in the dataset folder, which must not be the app's own.

Captions carry the trigger word: in front of the caption (the built-in trainer's rule), or,
with a caption prefix, through the prefix. A prefix (``extra["fields"]["caption_prefix"]``,
e.g. the Chroma profiles' ``"[trigger], "``) goes to diffusion-pipe's own dataset option
``caption_prefix``: the tool puts it in front of every caption *after* shuffling the tags
(``cache_shuffle_num`` / ``shuffle_tags``), so the trigger stays first while the tags after it
are shuffled. ``[trigger]`` in the prefix becomes the job's trigger word; when the prefix holds
the trigger word, the staged captions do not get it again (a caption tag that is just the
trigger word is dropped), so no caption trains the trigger twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...core.dataset.captions import TRIGGER_PLACEHOLDER, has_trigger, with_trigger
from ...core.training import dataset_list

__all__ = ["IMAGE_SUFFIXES", "TRIGGER", "VIDEO_SUFFIXES", "caption_prefix", "count_listed",
           "count_media", "drop_trigger_tags", "media_suffixes", "stage_dataset",
           "staged_caption"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff",
                            ".avif", ".jxl"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif"})
TRIGGER = TRIGGER_PLACEHOLDER
DEFAULT_DELIMITER = ", "


def media_suffixes(video: bool) -> frozenset[str]:
    """What diffusion-pipe reads: images, and videos for video model types."""
    return IMAGE_SUFFIXES | VIDEO_SUFFIXES if video else IMAGE_SUFFIXES


def count_media(folder: Path, video: bool) -> int:
    """Images (and videos for video model types) diffusion-pipe would read in ``folder``
    (an estimate before the job starts; a started job counts its list)."""
    suffixes = media_suffixes(video)
    try:
        return sum(1 for p in Path(folder).iterdir()
                   if p.suffix.lower() in suffixes and p.is_file())
    except OSError:
        return 0


def count_listed(entries: Iterable[dataset_list.DatasetEntry], video: bool) -> int:
    """The listed photos (and videos) diffusion-pipe will read."""
    suffixes = media_suffixes(video)
    return sum(1 for e in entries if Path(e.path).suffix.lower() in suffixes)


def caption_prefix(prefix: str | None, trigger: str) -> str:
    """The prefix diffusion-pipe puts in front of every caption: ``[trigger]`` replaced by
    ``trigger``, and a separator after it when it ends in a word (``"photo of [trigger]"`` →
    ``"photo of alc, "``), so it never runs on into the caption. Empty when there is none."""
    text = (prefix or "").replace(TRIGGER, trigger.strip())
    if not text.strip():
        return ""
    if not text[-1].isspace():
        text += " " if text[-1] in ",;:" else DEFAULT_DELIMITER
    return text


def drop_trigger_tags(caption: str, trigger: str, delimiter: str = DEFAULT_DELIMITER) -> str:
    """``caption`` without the tags that are just ``trigger`` (tags split on ``delimiter``);
    a caption without such a tag comes back as written (stripped)."""
    trigger = trigger.strip()
    sep = delimiter.strip() or delimiter
    if not trigger or not sep:
        return caption.strip()
    parts = caption.split(sep)
    kept = [p.strip() for p in parts if p.strip() != trigger]
    if len(kept) == len(parts):
        return caption.strip()
    return delimiter.join(p for p in kept if p)


def staged_caption(caption: str, trigger: str, prefix: str = "",
                   delimiter: str = DEFAULT_DELIMITER) -> str:
    """The caption file's text for the tool: with the trigger word in front, or, when the
    resolved ``prefix`` (which the tool adds itself) holds the trigger, without it."""
    if prefix and has_trigger(prefix, trigger):
        return drop_trigger_tags(caption, trigger, delimiter)
    return with_trigger(caption, trigger)


def stage_dataset(entries: Iterable[dataset_list.DatasetEntry], target: Path, trigger: str,
                  video: bool, prefix: str = "",
                  delimiter: str = DEFAULT_DELIMITER) -> dict[Path, str]:
    """Hard-link (or copy) the job's listed media into ``target`` and return the caption
    files to write there (``<stem>.txt`` as :func:`staged_caption` makes it; only those that
    changed): :func:`~...core.training.dataset_list.stage_dataset` with diffusion-pipe's
    caption rule and media types. The tool then reads only the job's copy and never writes
    its cache into the app's dataset folder."""
    return dataset_list.stage_dataset(
        entries, target, lambda caption: staged_caption(caption, trigger, prefix, delimiter),
        suffixes=media_suffixes(video))
