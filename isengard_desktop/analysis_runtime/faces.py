"""dlib's face models and the per-photo analysis (the analysis child only; imports dlib).

Models (dlib 20, weights from the ``face_recognition_models`` 0.3.0 package, CC0):
the HOG frontal face detector built into dlib (no weights file), the 5-point landmark
predictor ``shape_predictor_5_face_landmarks.dat`` and the ResNet identity model
``dlib_face_recognition_resnet_model_v1.dat`` (128-D descriptors). The 68-point predictor in
the same package is never used (its training data, iBUG 300-W, excludes commercial use).

Detectors: ``hog`` (default; ~0.1–0.4 s a photo on one CPU core) or ``cnn``, dlib's MMOD
CNN ``mmod_human_face_detector.dat`` from the same package (better on turned and small faces,
but ~4 s for a 512 px photo on a CPU here, so it is chosen by ``auto`` only when dlib was built
with CUDA, ``dlib.DLIB_USE_CUDA``; the PyPI ``dlib-bin`` wheel is not). Results of the two
are cached apart (``core/faces/cache.py``).

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
from ..core.faces.measures import (SHARPNESS_SIDE, brightness, laplacian_variance, light_side,
                                   torso_colour, yaw_degrees)
from ..core.faces.records import Face, PhotoFaces

__all__ = ["ANALYSIS_LONG_SIDE", "CNN_DETECTOR_FILE", "DETECTORS", "LANDMARKS_FILE",
           "RECOGNITION_FILE", "FaceModels", "ModelsMissing", "analyse_file",
           "default_models_folder", "load_rgb", "resolve_detector"]

ANALYSIS_LONG_SIDE = 1024
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"
DETECTORS = ("auto", "hog", "cnn")


def resolve_detector(choice: str) -> str:
    """``hog`` or ``cnn`` for a ``--detector`` choice (``auto``: cnn only on a CUDA dlib)."""
    if choice not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {choice!r}")
    if choice == "auto":
        return "cnn" if getattr(dlib, "DLIB_USE_CUDA", False) else "hog"
    return choice


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

    detector: dlib.fhog_object_detector | None
    landmarks: dlib.shape_predictor
    recognition: dlib.face_recognition_model_v1
    cnn: dlib.cnn_face_detection_model_v1 | None = None

    @classmethod
    def load(cls, folder: Path | None = None, detector: str = "hog") -> FaceModels:
        """Load the models from ``folder`` (default: the installed package) with the ``hog``
        or ``cnn`` detector; :class:`ModelsMissing` names a missing file and its folder."""
        folder = folder or default_models_folder()
        if folder is None:
            raise ModelsMissing("the face models are not installed (package "
                                "face_recognition_models): repair the trainer runtime from "
                                "Help → Set-up assistant → Trainer runtime")
        needed = (LANDMARKS_FILE, RECOGNITION_FILE) + ((CNN_DETECTOR_FILE,)
                                                       if detector == "cnn" else ())
        missing = [n for n in needed if not (folder / n).is_file()]
        if missing:
            raise ModelsMissing(f"face model file(s) missing in {folder}: {', '.join(missing)}"
                                " — repair the trainer runtime (Help → Set-up assistant)")
        cnn = (dlib.cnn_face_detection_model_v1(str(folder / CNN_DETECTOR_FILE))
               if detector == "cnn" else None)
        return cls(dlib.get_frontal_face_detector() if cnn is None else None,
                   dlib.shape_predictor(str(folder / LANDMARKS_FILE)),
                   dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE)), cnn)

    def detect(self, rgb: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """Face boxes and detector scores; upsampled once when nothing is found at first."""
        for upsample in (0, 1):
            if self.cnn is not None:
                found = [(d.rect, float(d.confidence)) for d in self.cnn(rgb, upsample)]
            else:
                assert self.detector is not None
                rects, scores, _ = self.detector.run(rgb, upsample, 0.0)
                found = list(zip(rects, (float(s) for s in scores), strict=True))
            if found:
                return found
        return []

    def faces(self, rgb: np.ndarray, scale: float, full_size: tuple[int, int]) -> list[Face]:
        """Faces of an RGB ``uint8`` array that is the photo downscaled by ``scale``
        (coordinates returned at full size ``full_size`` = (width, height))."""
        gray = np.asarray(Image.fromarray(rgb).convert("L"))
        out = []
        for rect, score in self.detect(rgb):
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
                brightness=brightness(crop), embedding=tuple(float(v) for v in emb),
                light_side=light_side(crop),
                torso_rgb=torso_colour(rgb, (rect.left(), rect.top(), rect.right(),
                                             rect.bottom()))))
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
