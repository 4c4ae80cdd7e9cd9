"""Aspect-ratio buckets: the training sizes of a family, shared by the built-in trainer and the
face-crop proposals (so a proposed crop has exactly the aspect of a bucket the trainer uses).

* :func:`make_buckets`: (width, height) sizes with about ``resolution²`` pixels, both sides
  multiples of the family's latent multiple, aspect ratio at most 2.
* :func:`nearest_bucket`: the bucket whose aspect ratio is closest to an image's.
* :func:`family_buckets`: the buckets of a model family at a resolution (default: the family's
  native side). The multiple and native side per family are :data:`FAMILY_MULTIPLE` /
  :data:`NATIVE_SIDE` here (the generation presets use them too; the same numbers the
  trainer's families carry as ``latent_multiple`` / ``default_resolution``; a test keeps them
  equal).

Pure, Qt-free and torch-free, importing no other package of the app: the trainer child
imports it too, and its runtime has none of the GUI's libraries (``core.comfy`` pulls httpx).
"""

from __future__ import annotations

import math
from types import MappingProxyType

__all__ = ["FAMILY_MULTIPLE", "MAX_BUCKET_RATIO", "NATIVE_SIDE", "family_buckets",
           "make_buckets", "nearest_bucket"]

# a family's native training side and the multiple its latents need (VAE factor × patch)
NATIVE_SIDE = MappingProxyType({"sd15": 512, "sdxl": 1024, "flux-dev": 1024,
                                "flux-schnell": 1024, "chroma": 1024})
FAMILY_MULTIPLE = MappingProxyType({"sd15": 64, "sdxl": 64, "flux-dev": 16,
                                    "flux-schnell": 16, "chroma": 16})

MAX_BUCKET_RATIO = 2.0


def make_buckets(resolution: int, multiple: int,
                 max_ratio: float = MAX_BUCKET_RATIO) -> list[tuple[int, int]]:
    """(width, height) buckets with area ≤ resolution², both sides multiples of ``multiple``,
    aspect ratio at most ``max_ratio``; always contains (resolution, resolution)."""
    area = resolution * resolution
    found = {(resolution, resolution)}
    w = multiple
    while w <= resolution * max_ratio:
        h = (area // w) // multiple * multiple
        if h >= multiple and max(w / h, h / w) <= max_ratio + 1e-9:
            found.add((w, h))
            found.add((h, w))
        w += multiple
    return sorted(found)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to ``width/height`` (ties: larger area)."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


def family_buckets(family: str, resolution: int | None = None) -> list[tuple[int, int]]:
    """The training buckets of ``family`` ("sd15", "sdxl", "flux-dev", "flux-schnell",
    "chroma") at ``resolution`` (None: the family's native side). ValueError naming the
    family when it is unknown."""
    if family not in FAMILY_MULTIPLE:
        raise ValueError(f"family: unknown model family {family!r} "
                         f"(known: {', '.join(FAMILY_MULTIPLE)})")
    return make_buckets(resolution or NATIVE_SIDE[family], FAMILY_MULTIPLE[family])
