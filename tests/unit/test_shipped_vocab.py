"""The shipped CLIP vocabulary rebuilds a tokenizer that gives CLIP's real token ids."""

from __future__ import annotations

import json

from isengard_desktop.training_runtime.shipped_vocab import (VOCAB_SIZE,
                                                             build_clip_tokenizer_files,
                                                             shipped_clip_tokenizer_dir)


def test_vocab_has_clip_size_and_special_tokens(tmp_path):
    folder = build_clip_tokenizer_files(tmp_path / "clip")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == VOCAB_SIZE == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["a</w>"] == 320 and vocab["photo</w>"] == 1125


def test_transformers_tokenizer_gives_clip_ids(tmp_path):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(shipped_clip_tokenizer_dir()), local_files_only=True)
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.model_max_length == 77
    # built once, in the app's cache folder (ISENGARD_HOME in tests)
    assert str(shipped_clip_tokenizer_dir()).startswith(str(tmp_path))
