"""Real face photos for the face tests, built from what scikit-image ships (its test extra):
``data.astronaut()`` (Eileen Collins, 512×512, public domain NASA photo) as "the character",
a face of ``data.lfw_subset()`` (Labeled Faces in the Wild crops, 25×25) upscaled as the
stranger — checked: dlib's HOG finds 90 of its first 100 faces at 8× and all sit ≥ 0.7 from
the astronaut's embedding — and synthetic pictures with no face.

Every builder writes files into a folder and returns their paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from skimage import data

ASTRONAUT_FACE = (179, 83, 266, 170)   # dlib's box on data.astronaut() (checked here)
STRANGER_INDEX = 0


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def stranger(side: int = 512) -> Image.Image:
    """An LFW face upscaled 12× into a neutral ``side`` square canvas."""
    face = (data.lfw_subset()[STRANGER_INDEX] * 255).astype(np.uint8)
    big = Image.fromarray(face).resize((side // 2, side // 2), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (side, side), (120, 124, 130))
    canvas.paste(big.convert("RGB"), (side // 4, side // 4))
    return canvas


def same_person_variants() -> list[tuple[str, Image.Image]]:
    """Ten augmentations of the astronaut: crops, flip, scale, brightness, small rotations."""
    a = astronaut()
    return [
        ("astro_full.png", a),
        ("astro_flip.png", ImageOps.mirror(a)),
        ("astro_crop_head.png", a.crop((100, 10, 360, 270))),
        ("astro_crop_bust.png", a.crop((60, 0, 400, 340))),
        ("astro_big.jpg", a.resize((900, 900), Image.Resampling.LANCZOS)),
        ("astro_dark.png", ImageEnhance.Brightness(a).enhance(0.6)),
        ("astro_bright.png", ImageEnhance.Brightness(a).enhance(1.3)),
        ("astro_rot_left.png", a.rotate(8, resample=Image.Resampling.BICUBIC)),
        ("astro_rot_right.png", a.rotate(-8, resample=Image.Resampling.BICUBIC)),
        ("astro_contrast.jpg", ImageEnhance.Contrast(a.crop((80, 0, 400, 380))).enhance(1.4)),
    ]


def more_same_person_variants() -> list[tuple[str, Image.Image]]:
    """Ten more (for a 25-photo set): other crops, scales, light and slight turns."""
    a = astronaut()
    flip = ImageOps.mirror(a)
    return [
        ("astro_wide_crop.png", a.crop((0, 0, 480, 400))),
        ("astro_small.png", a.resize((400, 400), Image.Resampling.LANCZOS)),
        ("astro_warm.jpg", Image.merge("RGB", [c.point(lambda v, k=k: min(255, int(v * k)))
                                                for c, k in zip(a.split(), (1.15, 1.0, 0.85),
                                                                strict=True)])),
        ("astro_gray.png", a.convert("L").convert("RGB")),
        ("astro_flip_crop.png", flip.crop((120, 20, 440, 340))),
        ("astro_flip_dark.png", ImageEnhance.Brightness(flip).enhance(0.7)),
        ("astro_rot_small.png", a.rotate(4, resample=Image.Resampling.BICUBIC)),
        ("astro_soft.png", a.filter(ImageFilter.GaussianBlur(1.2))),
        ("astro_tall.png", a.crop((100, 0, 360, 512))),
        ("astro_big_crop.jpg", a.crop((130, 40, 320, 230)).resize((570, 570),
                                                                    Image.Resampling.LANCZOS)),
    ]


def tiny_face(index: int) -> Image.Image:
    """The astronaut shrunk into a wide 1024×1024 scene: a face ~45–55 px across."""
    scale = (0.55, 0.6, 0.65)[index % 3]
    small = astronaut().resize((round(512 * scale), round(512 * scale)),
                               Image.Resampling.LANCZOS)
    y = np.linspace(60, 200, 1024, dtype=np.float64)[:, None]
    x = np.linspace(0, 40, 1024, dtype=np.float64)[None, :]
    scene = np.clip(np.stack([y + x, y * 0.9 + x, y * 0.7 + 20 + x], -1), 0, 255)
    canvas = Image.fromarray(scene.astype(np.uint8))
    canvas.paste(small, (300 + 60 * index, 420))
    return canvas


def group_photo() -> Image.Image:
    """The astronaut and the stranger side by side."""
    canvas = Image.new("RGB", (1024, 512), (90, 90, 100))
    canvas.paste(astronaut(), (0, 0))
    canvas.paste(stranger(512), (512, 0))
    return canvas


def no_face(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """Random rectangles and ellipses: no face in it."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200)))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=fill)
    return im


def save(folder: Path, items: list[tuple[str, Image.Image]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, im in items:
        path = folder / name
        im.save(path, quality=95) if name.endswith(".jpg") else im.save(path)
        out.append(path)
    return out


def done_when_set(folder: Path, full: bool = False) -> dict[str, list[Path]]:
    """The issue's "Done when": ten photos of the astronaut (twenty with ``full``: 25 photos
    in all, as the issue says), one stranger, three tiny faces and one group photo (keys:
    same, stranger, tiny, group)."""
    same = same_person_variants() + (more_same_person_variants() if full else [])
    return {
        "same": save(folder, same),
        "stranger": save(folder, [("stranger.png", stranger())]),
        "tiny": save(folder, [(f"tiny_{i}.png", tiny_face(i)) for i in range(3)]),
        "group": save(folder, [("group.png", group_photo())]),
    }
