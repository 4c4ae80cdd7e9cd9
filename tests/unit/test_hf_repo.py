"""The Hub tree-listing parser and the choice of a transformers folder's files, on pages
shaped as the Hub answers them (``RepoFile.__init__`` huggingface_hub 2.4.0
``hf_api.py:711-718``: ``path``/``size``/``oid`` and an optional ``lfs`` whose ``oid`` is the
SHA-256; ``RepoFolder`` ``hf_api.py:761-763``; a directory row may come without ``oid``)."""

from __future__ import annotations

import pytest

from isengard_desktop.core.downloads import DownloadError
from isengard_desktop.core.downloads.hf_repo import (
    HubFile, HubListing, parse_resolve_url, parse_tree_page, resolve_url, transformers_files,
)

REPO = "florence-community/Florence-2-base"
SHA = "ba38046c0ea567aa2cd032b31b26a58bdba73fb5687da60ffa25b8d11cfdb4e4"

# one page as GET /api/models/{repo}/tree/{rev}?recursive=true answers it
PAGE = [
    {"type": "file", "oid": "a6344aac8c09253b3b630fb776ae94478aa0275b", "size": 1519,
     "path": ".gitattributes"},
    {"type": "file", "oid": "8ea6b5b5d1e3bb2d0b1ea1f0f5b1a0c6b7b1f7a0", "size": 4812,
     "path": "README.md"},
    {"type": "file", "oid": "1f0d7a4f1b19a4ce8d0a5b1b66bd0b2c3a3aa1b9", "size": 2431,
     "path": "config.json"},
    {"type": "directory", "oid": "5d3c8b1b5a1e0b7a6c1c8e8e6fd2d1d3c5b8e4f0", "size": 0,
     "path": "onnx"},
    {"type": "file", "oid": "7e4877d7d1b3f0e9a0c5d7b1e1a3f6c0d4e2b8a1", "size": 463_221_248,
     "path": "model.safetensors",
     "lfs": {"oid": SHA.upper(), "size": 463_221_248, "pointerSize": 135}},
    {"type": "file", "oid": "0b8a1c4d", "size": 270_000_000, "path": "onnx/model.onnx",
     "lfs": {"oid": "c" * 64, "size": 270_000_000, "pointerSize": 134}},
    {"type": "file", "oid": "9c1d", "size": 463_000_000, "path": "pytorch_model.bin",
     "lfs": {"oid": "d" * 64, "size": 463_000_000, "pointerSize": 134}},
    {"type": "file", "oid": "e2f1", "size": 1_355_863, "path": "tokenizer.json"},
    {"type": "file", "oid": "e2f2", "size": 456_318, "path": "merges.txt"},
    {"type": "file", "oid": "e2f3", "size": 798, "path": "processor_config.json"},
    {"type": "file", "oid": "e2f4", "size": 3_200, "path": "modeling_florence2.py"},
]


def test_lfs_files_carry_their_sha256_and_real_size_others_size_only():
    files = {f.path: f for f in parse_tree_page(PAGE, REPO)}
    assert "onnx" not in files                          # a directory is no file
    weights = files["model.safetensors"]
    assert weights.sha256 == SHA and weights.size == 463_221_248   # lower-cased
    # a git (non-LFS) file's oid is a blob SHA-1: no SHA-256, checked by size only
    assert files["config.json"] == HubFile("config.json", 2431, "")


def test_an_lfs_row_whose_top_level_size_is_the_pointers_uses_the_lfs_size():
    row = {"type": "file", "oid": "x", "size": 135, "path": "big.safetensors",
           "lfs": {"oid": SHA, "size": 24_000_000_000, "pointerSize": 135}}
    assert parse_tree_page([row], REPO)[0].size == 24_000_000_000


def test_directory_rows_without_oid_are_skipped():
    assert parse_tree_page([{"type": "directory", "size": 0, "path": "assets"}], REPO) == []


def test_a_transformers_folder_takes_config_tokenizer_and_safetensors_only():
    chosen = {f.path for f in transformers_files(parse_tree_page(PAGE, REPO), REPO)}
    assert chosen == {"config.json", "model.safetensors", "tokenizer.json", "merges.txt",
                      "processor_config.json"}


def test_a_repo_without_safetensors_or_config_is_refused_by_name():
    files = [HubFile("config.json", 10), HubFile("pytorch_model.bin", 100, "d" * 64)]
    with pytest.raises(DownloadError, match=f"{REPO} has no .safetensors"):
        transformers_files(files, REPO)
    with pytest.raises(DownloadError, match=f"{REPO} has no config.json"):
        transformers_files([HubFile("model.safetensors", 100, SHA)], REPO)


@pytest.mark.parametrize(("page", "field"), [
    ({"error": "Repository not found"}, "not a JSON list"),
    ([{"path": "a.json", "size": 1, "oid": "x"}], "has no 'type'"),
    ([{"type": "file", "size": 1, "oid": "x"}], "'path'"),
    ([{"type": "file", "path": "../escape.json", "size": 1, "oid": "x"}], "unsafe 'path'"),
    ([{"type": "file", "path": "/abs.json", "size": 1, "oid": "x"}], "unsafe 'path'"),
    ([{"type": "file", "path": "a.json", "oid": "x"}], "no valid 'size'"),
    ([{"type": "file", "path": "a.json", "size": "12", "oid": "x"}], "no valid 'size'"),
    ([{"type": "file", "path": "a.json", "size": 1}], "no 'oid'"),
    ([{"type": "file", "path": "w.safetensors", "size": 1, "oid": "x",
       "lfs": {"oid": "not-a-sha", "size": 1}}], "SHA-256"),
    ([{"type": "file", "path": "w.safetensors", "size": 1, "oid": "x",
       "lfs": {"oid": SHA}}], "'lfs.size'"),
])
def test_a_page_not_shaped_like_the_hubs_names_the_repo_entry_and_field(page, field):
    with pytest.raises(DownloadError) as info:
        parse_tree_page(page, REPO)
    assert info.value.kind == "bad_answer"
    assert REPO in info.value.message and field in info.value.message


def test_resolve_urls_quote_the_path_and_pin_the_commit():
    commit = "0123456789abcdef0123456789abcdef01234567"
    listing = HubListing(REPO, "main", commit, (HubFile("sub dir/a b.json", 3),))
    assert listing.url(listing.files[0]) == (
        f"https://huggingface.co/{REPO}/resolve/{commit}/sub%20dir/a%20b.json")
    assert resolve_url("o/r", "refs/pr/1", "x.json", "http://127.0.0.1:9/") == (
        "http://127.0.0.1:9/o/r/resolve/refs%2Fpr%2F1/x.json")
    assert listing.describe().startswith(f"1 file, 0.0 MB from {REPO} at 0123456789")


def test_resolve_urls_are_parsed_back_for_model_repos_only():
    assert parse_resolve_url(
        "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors") == (
        "https://huggingface.co", "black-forest-labs/FLUX.1-dev", "main", "ae.safetensors")
    assert parse_resolve_url("http://127.0.0.1:5/o/r/resolve/refs%2Fpr%2F1/a%20b/c.json") == (
        "http://127.0.0.1:5", "o/r", "refs/pr/1", "a b/c.json")
    for url in ("https://huggingface.co/datasets/o/r/resolve/main/x.json",
                "https://huggingface.co/o/r/blob/main/x.json",
                "https://civitai.com/api/download/models/12345",
                "https://huggingface.co/o/r/resolve/main/../../etc/passwd"):
        assert parse_resolve_url(url) is None, url
