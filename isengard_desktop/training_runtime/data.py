"""The training set: images and captions, aspect-ratio buckets and the batch order.

* :func:`load_dataset` reads the job's photo list (``jobs/<id>/dataset.json``, written by
  the app from the database at the job's start; never a folder scan: a photo on disk with
  no row is not trained on) and puts the trigger word in front of each caption that lacks it.
* :func:`load_image` cuts a photo to its stored crop (issue 15 item 3; face-centred, at a
  bucket's aspect) before anything else, so the crop then goes to that bucket whole.
* :func:`make_buckets` / :func:`nearest_bucket`: sizes with about ``resolution²`` pixels, sides
  multiples of the family's ``latent_multiple``; each image goes to the bucket closest to its
  aspect ratio, is scaled to cover it and centre-cropped (the crop is kept for SDXL).
* :class:`BatchPlan`: which images make up micro-batch *k* is a pure function of the seed and
  *k* (batches never mix buckets), so a resumed run sees exactly the data an uninterrupted run
  would have seen, without saving any sampler state.

Caching (latents and text embeddings computed once) is driven by the loop.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..core.dataset.captions import with_trigger
from ..core.dataset.crops import CropRect
from ..core.training.buckets import make_buckets, nearest_bucket
from .errors import ConfigError

__all__ = ["BatchPlan", "Item", "ensure_trigger", "load_dataset", "load_image",
           "make_buckets", "nearest_bucket"]

@dataclass
class Item:
    """One training image."""

    path: Path
    caption: str                         # trigger inserted
    bucket: tuple[int, int] = (0, 0)     # (width, height) in pixels
    original_size: tuple[int, int] = (0, 0)   # (height, width) of the source image
    crop_top_left: tuple[int, int] = (0, 0)   # (top, left) of the crop in the resized image
    crop: CropRect | None = None         # the stored face crop, applied before bucketing


def ensure_trigger(caption: str, trigger: str) -> str:
    """``caption`` with ``trigger`` at the front, unless the trigger already appears in it as a
    whole word (anywhere)."""
    return with_trigger(caption, trigger)


def load_dataset(job_dir: Path, trigger: str) -> list[Item]:
    """The photos of the job's list (:mod:`~..core.training.dataset_list`), in its order, with
    their captions. ConfigError naming the file when the list is missing, bad or empty."""
    from ..core.training.dataset_list import read_dataset_list
    from ..core.training.spec import SpecError

    try:
        entries = read_dataset_list(job_dir)
    except SpecError as exc:
        raise ConfigError(str(exc)) from exc
    return [Item(Path(e.path), ensure_trigger(e.caption, trigger), crop=e.crop)
            for e in entries]


def load_image(item: Item, buckets: list[tuple[int, int]]):
    """Read ``item``'s image, cut it to ``item.crop`` (if any), assign its bucket and return
    it as a float tensor (3, H, W) in [-1, 1]; fills ``item.bucket``, ``original_size`` and
    ``crop_top_left``. With a crop, ``original_size`` is the crop's size (SDXL is told the
    framing is whole: it was chosen, not cut by bucketing). ValueError naming the photo when
    the crop does not fit it (the loop skips the photo with that message)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..core.dataset.decode import load_pixels, open_image, upright_rgb

    with open(item.path, "rb") as fh:
        im = open_image(fh, ext=item.path.suffix)
        load_pixels(im)
        img = upright_rgb(im)
    if item.crop is not None:
        problem = item.crop.problem(*img.size)
        if problem:
            raise ValueError(problem)
        img = img.crop(item.crop.box())
    w, h = img.size
    bw, bh = nearest_bucket(w, h, buckets)
    scale = max(bw / w, bh / h)
    rw, rh = max(bw, round(w * scale)), max(bh, round(h * scale))
    if (rw, rh) != (w, h):
        img = img.resize((rw, rh), Image.Resampling.LANCZOS)
    left, top = (rw - bw) // 2, (rh - bh) // 2
    img = img.crop((left, top, left + bw, top + bh))
    item.bucket, item.original_size, item.crop_top_left = (bw, bh), (h, w), (top, left)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class BatchPlan:
    """Deterministic micro-batches: epoch *e* shuffles each bucket's images (× repeats) with a
    seed derived from (seed, e), cuts them into batches of ``batch_size`` and shuffles the
    batches. Every epoch has the same number of batches, so micro-batch *k* is found by
    arithmetic."""

    def __init__(self, buckets_of_items: list[tuple[int, int]], batch_size: int, repeats: int,
                 seed: int) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for index, bucket in enumerate(buckets_of_items):
            self.by_bucket.setdefault(bucket, []).extend([index] * repeats)
        self.batches_per_epoch = sum(math.ceil(len(v) / batch_size)
                                     for v in self.by_bucket.values())
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = random.Random(f"isengard:{self.seed}:{epoch}")
        batches = []
        for bucket in sorted(self.by_bucket):
            members = list(self.by_bucket[bucket])
            rng.shuffle(members)
            batches += [members[i:i + self.batch_size]
                        for i in range(0, len(members), self.batch_size)]
        rng.shuffle(batches)
        self._epoch_cache = (epoch, batches)
        return batches

    def batch(self, k: int) -> list[int]:
        """Item indices of micro-batch ``k`` (0-based, counted over the whole run)."""
        epoch, pos = divmod(k, self.batches_per_epoch)
        return self._epoch(epoch)[pos]

    def dropped(self, k: int, n: int, rate: float) -> list[bool]:
        """Which of the ``n`` captions of micro-batch ``k`` are replaced by the empty caption."""
        if rate <= 0:
            return [False] * n
        rng = random.Random(f"isengard:{self.seed}:drop:{k}")
        return [rng.random() < rate for _ in range(n)]
