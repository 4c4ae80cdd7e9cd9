"""Make small real photos for tests (no network, no fixtures on disk)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter


def make_photo(path: Path, size: tuple[int, int] = (640, 800), seed: int = 0,
               blur: float = 0.0, fmt: str | None = None) -> Path:
    """A photo-like image with random shapes (distinct per seed) saved at ``path``."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(20, size[0] // 2), y0 + rng.randrange(20, size[1] // 2)
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
        draw.line((rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(size[0]),
                   rng.randrange(size[1])), fill=(255, 255, 255), width=2)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def make_photos(folder: Path, count: int, prefix: str = "photo", start_seed: int = 0,
                size: tuple[int, int] = (640, 800)) -> list[Path]:
    return [make_photo(folder / f"{prefix}_{i:03d}.jpg", size, seed=start_seed + i)
            for i in range(count)]
