"""Captioning throughput: our pipeline vs a bare ``generate`` loop (goal ≥ 0.9×).

* Model: the tiny random Florence-2 of the captioning tests
  (``training_runtime/captioning/tiny_florence.py``), or ``--model FOLDER`` (a real
  Florence-2 folder, e.g. on a GPU machine). Loaded once; both sides use the same model and
  processor objects.
* Photos: ``--photos`` (default 48) photo-like 640×800 JPEGs (``_common.make_bench_photos``).
* Bare: for each batch, open + EXIF-transpose + RGB each photo, ``processor(...)``,
  ``model.generate(...)``, ``batch_decode`` — nothing else.
* Ours: :meth:`Captioner.run` as the captioning child runs it — decode-ahead thread, OOM
  guard, each batch appended to a suggestion file (fsync) and one JSON event line a photo
  written to a stream.
* Same batch size, ``max_new_tokens``, beams and device; repetitions alternate order after an
  untimed warm-up. Figure: images/s (median), ratio ours/bare.

    .venv/bin/python benchmarks/captioning.py [--quick] [--model DIR] [--device auto|cpu|cuda]
        [--photos N] [--batch B] [--tokens T] [--beams K] [--reps R] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_json, make_bench_photos, median, prepare_env, print_table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--beams", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.photos, args.reps = 16, 2
    prepare_env()

    import torch

    torch.set_num_threads(args.threads)
    from isengard_desktop.core.captioning.job import (CaptionImage, CaptionJob,
                                                      caption_event_line)
    from isengard_desktop.training_runtime.captioning.__main__ import _writer
    from isengard_desktop.training_runtime.captioning.pipeline import Captioner, load_image
    from isengard_desktop.training_runtime.captioning.tiny_florence import build_tiny_florence

    with tempfile.TemporaryDirectory(prefix="isengard-bench-caption-") as tmp:
        root = Path(tmp)
        model = args.model or build_tiny_florence(root / "model")
        photos = make_bench_photos(root / "photos", args.photos, (640, 800))
        cap = Captioner(model, args.device)
        task = "<DETAILED_CAPTION>"
        images = [CaptionImage(f"k{i}", str(p)) for i, p in enumerate(photos)]

        def bare() -> float:
            start = time.perf_counter()
            for i in range(0, len(photos), args.batch):
                pics = [load_image(str(p)) for p in photos[i:i + args.batch]]
                inputs = cap.processor(text=[task] * len(pics), images=pics,
                                       return_tensors="pt", padding=True).to(cap.device)
                inputs["pixel_values"] = inputs["pixel_values"].to(cap.dtype)
                with torch.inference_mode():
                    out = cap.model.generate(**inputs, max_new_tokens=args.tokens,
                                             num_beams=args.beams, do_sample=False)
                cap.processor.batch_decode(out, skip_special_tokens=True)
            return len(photos) / (time.perf_counter() - start)

        def ours(rep: int) -> float:
            out = root / f"run{rep}" / "suggestions.jsonl"
            job = CaptionJob(model=str(model), output=str(out), images=tuple(images),
                             task=task, device=args.device, batch_size=args.batch,
                             max_new_tokens=args.tokens, num_beams=args.beams)
            stream = io.StringIO()

            def emit(event: str, **fields: object) -> None:
                stream.write(caption_event_line(event, **fields) + "\n")

            start = time.perf_counter()
            result = cap.run(job, images, emit, threading.Event(), _writer(out))
            elapsed = time.perf_counter() - start
            assert result.captioned == len(photos), result
            return len(photos) / elapsed

        bare()                       # warm-up (allocator, kernels, page cache)
        b: list[float] = []
        o: list[float] = []
        for rep in range(args.reps):
            if rep % 2:
                o.append(ours(rep))
                b.append(bare())
            else:
                b.append(bare())
                o.append(ours(rep))
        ratio = median(o) / median(b)
        print_table("Captioning throughput (images/s, median)", [
            ("device", f"{cap.device} ({cap.dtype})"),
            ("model", "tiny random Florence-2" if args.model is None else str(args.model)),
            ("photos × reps", f"{args.photos} × {args.reps}, batch {args.batch}, "
                              f"{args.tokens} tokens, {args.beams} beams"),
            ("bare generate loop", f"{median(b):.2f}"),
            ("our pipeline", f"{median(o):.2f}"),
            ("ratio ours/bare", f"{ratio:.3f} (goal ≥ 0.9)"),
        ])
        emit_json("captioning", {
            "device": str(cap.device), "photos": args.photos, "batch": args.batch,
            "tokens": args.tokens, "beams": args.beams, "reps": args.reps,
            "bare_images_per_s": median(b), "ours_images_per_s": median(o),
            "ratio": ratio, "bare_all": b, "ours_all": o,
        }, {"ratio_at_least_0_9": ratio >= 0.9})
    return 0


if __name__ == "__main__":
    sys.exit(main())
