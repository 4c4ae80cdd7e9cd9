"""Caption photos with a Florence-2 model folder, in batches (imports torch/transformers).

:class:`Captioner` loads the processor and model once (``local_files_only``: never the
network), then :meth:`Captioner.run` goes through a job's photos: the next batch is decoded
on a worker thread while the current one is in ``generate``; each finished batch is appended
to the suggestion file (synced once a batch) before its events go out, so what was reported
is on disk. A photo that cannot be read is reported by name and skipped. On CUDA
out-of-memory the batch is halved and retried; at one photo a batch it is an error.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from ...core.captioning.job import CaptionImage, CaptionJob
from ...core.captioning.store import RawCaption

__all__ = ["Captioner", "RunResult", "load_image"]

Emit = Callable[..., None]


class ModelMissing(FileNotFoundError):
    """The model folder is missing or incomplete (names it)."""


@dataclass(frozen=True)
class RunResult:
    captioned: int
    failed: int
    stopped: bool


def _register_heif() -> None:
    """HEIC photos open too (the library imports them) when pi-heif is installed."""
    try:
        import pi_heif

        pi_heif.register_heif_opener()
    except ImportError:
        pass


_register_heif()


def load_image(path: str) -> Image.Image:
    """The photo as RGB, turned upright by its EXIF orientation."""
    with Image.open(path) as im:
        im.load()
        return ImageOps.exif_transpose(im).convert("RGB")


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("the job asks for the GPU (cuda) but PyTorch sees none here")
        return torch.device("cuda")
    return torch.device("cpu")


class Captioner:
    """One loaded captioning model. ``device``/``dtype`` are what it runs on."""

    def __init__(self, model_dir: str | Path, device: str = "auto") -> None:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise ModelMissing(f"The captioning model folder {folder} is missing or incomplete "
                               f"(no config.json): download the model again.")
        self.device = pick_device(device)
        if self.device.type == "cuda":
            self.dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        else:
            self.dtype = torch.float32
        self.processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        model = Florence2ForConditionalGeneration.from_pretrained(
            str(folder), local_files_only=True, dtype=self.dtype)
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]

    # -- one batch -----------------------------------------------------------------------------
    def generate(self, images: Sequence[Image.Image], task: str, *, max_new_tokens: int,
                 num_beams: int) -> list[str]:
        """The model's text for each image (special tokens removed)."""
        inputs = self.processor(text=[task] * len(images), images=list(images),
                                return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens,
                                      num_beams=num_beams, do_sample=False)
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def _generate_fitting(self, images: list[Image.Image], job: CaptionJob, state: dict[str, int],
                          emit: Emit) -> list[str]:
        """Generate for ``images`` in chunks of ``state['batch']``, halving it on CUDA OOM."""
        texts: list[str] = []
        i = 0
        while i < len(images):
            size = state["batch"]
            try:
                texts += self.generate(images[i:i + size], job.task,
                                       max_new_tokens=job.max_new_tokens,
                                       num_beams=job.num_beams)
                i += size
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                torch.cuda.empty_cache()
                state["batch"] = max(1, size // 2)
                emit("log", level="warning",
                     message=f"Out of GPU memory with {size} photos a batch: trying "
                             f"{state['batch']}.")
        return texts

    # -- a whole job ---------------------------------------------------------------------------
    def run(self, job: CaptionJob, images: Sequence[CaptionImage], emit: Emit,
            stop: threading.Event, write: Callable[[list[RawCaption]], None]) -> RunResult:
        """Caption ``images`` (the job's photos still to do); ``write`` stores a batch's
        records before ``emit`` reports them. Returns after the batch in hand when ``stop``
        is set."""
        state = {"batch": job.batch_size}
        total = len(images)
        done = failed = 0
        model_id = job.model_id or Path(job.model).name
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            batches = _batches(images, job.batch_size)
            pending = _decode(pool, next(batches, None))
            while pending is not None:
                if stop.is_set():
                    return RunResult(done, failed, True)
                items = pending.result()
                pending = _decode(pool, next(batches, None))   # decode ahead
                good = [(img, pic) for img, pic, err in items if pic is not None]
                for img, _pic, err in items:
                    if err:
                        failed += 1
                        emit("caption_error", key=img.key, image=img.path, message=err)
                started = time.monotonic()
                texts = self._generate_fitting([p for _, p in good], job, state, emit)
                if good:
                    print(f"[captioning] batch of {len(good)} in "
                          f"{time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)
                records = [RawCaption(img.key, img.path, text, model_id)
                           for (img, _), text in zip(good, texts, strict=True)]
                write(records)
                for r in records:
                    done += 1
                    emit("caption", key=r.key, image=r.image, raw=r.raw, done=done + failed,
                         total=total)
        return RunResult(done, failed, stop.is_set())


_Decoded = list[tuple[CaptionImage, Any, str]]


def _batches(images: Sequence[CaptionImage], size: int) -> Iterator[list[CaptionImage]]:
    for i in range(0, len(images), size):
        yield list(images[i:i + size])


def _decode(pool: ThreadPoolExecutor, batch: list[CaptionImage] | None
            ) -> Future[_Decoded] | None:
    if batch is None:
        return None

    def work() -> _Decoded:
        out: _Decoded = []
        for img in batch:
            try:
                out.append((img, load_image(img.path), ""))
            except FileNotFoundError:
                out.append((img, None, f"{img.path}: the photo is gone (moved or deleted)"))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                out.append((img, None, f"{img.path}: cannot be read as an image ({exc})"))
        return out

    return pool.submit(work)
