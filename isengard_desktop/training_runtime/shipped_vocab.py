"""The CLIP tokenizer we ship: rebuilt from the BPE table in ``vocab/`` on first use.

Used as the last place to look for a CLIP tokenizer (after the model folder, the user's
tokenizer folder and a ComfyUI install), so single-file checkpoints train fully offline.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from ..core.fsutil import atomic_write_text

BPE_FILE = Path(__file__).resolve().parent / "vocab" / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
_MERGES = VOCAB_SIZE - 256 * 2 - 2   # 48,894 merges fill the vocabulary to 49,408


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible byte-to-character map, in CLIP's vocabulary order: the
    printable bytes first (as themselves), then the others mapped to chr(256 + n)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(others))]


def build_clip_tokenizer_files(folder: Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer configs into ``folder``; return it."""
    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:1 + _MERGES]]
    base = _bytes_to_unicode()
    tokens = base + [t + "</w>" for t in base] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != VOCAB_SIZE:  # pragma: no cover - guards a corrupt data file
        raise ValueError(f"{BPE_FILE.name} gave {len(tokens)} tokens, expected {VOCAB_SIZE}")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "merges.txt",
                      "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    atomic_write_text(folder / "special_tokens_map.json", json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    atomic_write_text(folder / "tokenizer_config.json", json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "do_lower_case": True}))
    # vocab.json last: its presence marks a complete folder
    atomic_write_text(folder / "vocab.json",
                      json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    return folder


def shipped_clip_tokenizer_dir() -> Path:
    """A folder with the shipped CLIP tokenizer, built once in the app's cache folder."""
    from ..core.paths import resolve_paths

    folder = resolve_paths(dict(os.environ)).cache / "tokenizers" / "clip-vit-l-14-v1"
    if not (folder / "vocab.json").is_file():
        build_clip_tokenizer_files(folder)
    return folder
