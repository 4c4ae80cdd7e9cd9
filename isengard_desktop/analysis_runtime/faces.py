"""dlib's face models and the per-photo analysis (the analysis child only; imports dlib).

Models (dlib 20, weights from the ``face_recognition_models`` 0.3.0 package, CC0):
the HOG frontal face detector built into dlib (no weights file), the 5-point landmark
predictor ``shape_predictor_5_face_landmarks.dat`` and the ResNet identity model
``dlib_face_recognition_resnet_model_v1.dat`` (128-D descriptors). The 68-point predictor in
the same package is never used (its training data, iBUG 300-W, excludes commercial use).

Per photo: decode upright RGB, downscale to :data:`ANALYSIS_LONG_SIDE` on the long side,
detect (upsampled once when nothing is found at first, so faces down to ~40 px are found), then
per face landmarks, embedding and the measures of ``core/faces/measures.py``; coordinates are
scaled back to the full-size photo.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from ..core.dataset.decode import load_pixels, open_image, upright_rgb
from ..core.faces.measures import SHARPNESS_SIDE, brightness, laplacian_variance, yaw_degrees
from ..core.faces.records import Face, PhotoFaces

__all__ = ["ANALYSIS_LONG_SIDE", "LANDMARKS_FILE", "RECOGNITION_FILE", "FaceModels",
           "ModelsMissing", "analyse_file", "default_models_folder", "load_rgb"]

ANALYSIS_LONG_SIDE = 1024
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class ModelsMissing(RuntimeError):
    """The face model files are not where they should be (``str`` says which and where)."""


def default_models_folder() -> Path | None:
    """The ``models`` folder of the installed ``face_recognition_models`` package, found
    without importing it (its ``__init__`` needs pkg_resources, which may be absent)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass
class FaceModels:
    """The three dlib models, loaded once per child."""

    detector: dlib.fhog_object_detector
    landmarks: dlib.shape_predictor
    recognition: dlib.face_recognition_model_v1

    @classmethod
    def load(cls, folder: Path | None = None) -> FaceModels:
        folder = folder or default_models_folder()
        if folder is None:
            raise ModelsMissing("the face models are not installed (package "
                                "face_recognition_models): repair the trainer runtime from "
                                "Help → Set-up assistant → Trainer runtime")
        missing = [n for n in (LANDMARKS_FILE, RECOGNITION_FILE) if not (folder / n).is_file()]
        if missing:
            raise ModelsMissing(f"face model file(s) missing in {folder}: {', '.join(missing)}"
                                " — repair the trainer runtime (Help → Set-up assistant)")
        return cls(dlib.get_frontal_face_detector(),
                   dlib.shape_predictor(str(folder / LANDMARKS_FILE)),
                   dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE)))

    def faces(self, rgb: np.ndarray, scale: float, full_size: tuple[int, int]) -> list[Face]:
        """Faces of an RGB ``uint8`` array that is the photo downscaled by ``scale``
        (coordinates returned at full size ``full_size`` = (width, height))."""
        rects, scores, _ = self.detector.run(rgb, 0, 0.0)
        if not rects:
            rects, scores, _ = self.detector.run(rgb, 1, 0.0)
        gray = np.asarray(Image.fromarray(rgb).convert("L"))
        out = []
        for rect, score in zip(rects, scores, strict=True):
            shape = self.landmarks(rgb, rect)
            emb = self.recognition.compute_face_descriptor(rgb, shape)
            marks = [(p.x / scale, p.y / scale) for p in shape.parts()]
            box = (rect.left() / scale, rect.top() / scale, rect.right() / scale,
                   rect.bottom() / scale)
            crop = _crop(gray, rect)
            short = min(full_size)
            out.append(Face(
                box=box, landmarks=tuple(marks), score=float(score),
                rel_size=min(box[2] - box[0], box[3] - box[1]) / short if short else 0.0,
                sharpness=laplacian_variance(_square(crop)), yaw=yaw_degrees(marks),
                brightness=brightness(crop), embedding=tuple(float(v) for v in emb)))
        return out


def _crop(gray: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
    h, w = gray.shape
    top, bottom = max(0, rect.top()), min(h, rect.bottom())
    left, right = max(0, rect.left()), min(w, rect.right())
    return gray[top:bottom, left:right]


def _square(crop: np.ndarray) -> np.ndarray:
    if crop.size == 0:
        return crop
    im = Image.fromarray(crop).resize((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BOX)
    return np.asarray(im)


def load_rgb(path: Path) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The photo upright, downscaled to :data:`ANALYSIS_LONG_SIDE`: (array, scale, full size)."""
    with open(path, "rb") as fh:
        im = open_image(fh, ext=Path(path).suffix)
        load_pixels(im)
        rgb = upright_rgb(im)
    full = rgb.size
    scale = min(1.0, ANALYSIS_LONG_SIDE / max(full))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(full[0] * scale)), max(1, round(full[1] * scale))),
                         Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), scale, full


def analyse_file(models: FaceModels, path: Path, sha256: str) -> PhotoFaces:
    """Analyse one photo (raises on an unreadable file)."""
    rgb, scale, full = load_rgb(path)
    return PhotoFaces(sha256=sha256, width=full[0], height=full[1],
                      faces=tuple(models.faces(rgb, scale, full)))
