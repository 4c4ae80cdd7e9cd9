"""Trainer step time: the built-in trainer vs a minimal diffusers + peft loop (goal ≤ 1.0×).

Both sides train the same LoRA on the same tiny random SD1.5-like model
(``training_runtime.tiny_models``, 4 captioned 64 px images), CPU, fp32, batch 2, rank/alpha
16/16 (the spec's defaults), AdamW (lr 1e-4, weight decay 0.01), constant schedule, gradient
clipping at 1.0, the trainer's LoRA target modules, with the same ``OMP_NUM_THREADS``
(``--threads``, default 1).

* **Reference:** the textbook loop (diffusers' ``train_text_to_image_lora.py`` without
  accelerate), written below: latents and text embeddings cached once, ``unet.add_adapter``
  with peft's ``LoraConfig``, then per step: random batch from the cache, ``randn_like`` noise,
  random timesteps, ``add_noise``, UNet forward, MSE on the noise, backward,
  ``clip_grad_norm_``, ``optimizer.step``, ``lr_scheduler.step``, ``zero_grad``,
  ``loss.item()`` for the log.
* **Ours:** the unchanged trainer (``training_runtime.loop.run``, what the child's ``train``
  command calls), timed by its own step events.
* **The figure (goal):** both in *one* process taking turns — ours runs 25 steps (10 with
  checkpointing on), then the reference runs as many, and so on, 16 (12) turns each — so load
  from other processes and the machine's drift hit both alike (separate processes run ~20 s
  apart were seen to differ by up to 10 % on a quiet 2-core VM). The hand-over happens inside
  the trainer's own step event: an :class:`Emitter` whose ``step`` writes the event as always
  (to a pipe a thread drains) and then runs the reference's turn. Ours' step *k* is timed from
  the moment the trainer got control back after step *k−1*'s event to the end of step *k*'s
  event (so the event itself counts); the reference's steps around each ``next()``. This uses
  only the trainer's public entry point and needs no patched copy of ``loop.py``. The first
  10 steps of each side are warm-up and not counted. ms/step and CPU ms/step (this thread's
  CPU time) per side; ratio ours / reference; median of 3 such runs (fresh processes).
* Two configurations, each with its own goal: gradient checkpointing **off** on both (the
  textbook default) and **on** on both (the job spec's and every preset's default).
* Also, as information: each side alone in a fresh process, timed from the trainer's step
  events as they arrive in the parent (ours) and ``perf_counter`` (reference): 300 (120)
  steps, 1 repetition (``--separate N``).
* ``--calibrate``: also run the reference against a second copy of itself the same way (A/A),
  which shows the comparison's noise floor.
* ``--profile``: instead, run each side once under cProfile and print where the per-step time
  goes (UNet forward, backward, optimizer, clipping, our step event and batch assembly, ...).
* ``--quick``: checkpointing off only, one run of 4 turns of 10 steps, no separate runs.

    .venv/bin/python benchmarks/trainer_step.py [--quick] [--reps R] [--separate N]
        [--threads T] [--calibrate] [--profile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO,
    build_tiny_sd15,
    emit_json,
    fresh_home,
    machine_load,
    median,
    percentile,
    prepare_env,
    print_table,
    proc_cpu_s,
    ratio,
    run_trainer,
    set_threads,
    step_stats,
    tiny_job,
    trainer_env,
    write_photo_list,
)

GOAL_RATIO = 1.0
WARMUP_STEPS = 10
BATCH = 2
RANK = ALPHA = 16
LR = 1e-4
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 1e-2
SEED = 42
# kohya's / the trainer's UNet LoRA set (families/unet.py TARGET_MODULES); checked at run time
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
                  "ff.net.0.proj", "ff.net.2"]
# gradient checkpointing -> (steps per turn, turns per side, steps of a separate-process run)
CONFIGS = {"off": (25, 16, 300), "on": (10, 12, 120)}


# ----------------------------------------------------------------------------- reference


def reference_setup(model_dir: str, data_dir: str, resolution: int,
                    gradient_checkpointing: bool) -> dict:
    """Load the model, cache latents and text embeddings, add the LoRA: what the textbook
    script does before its loop."""
    try:  # the same target modules as the trainer, should its list ever change
        from isengard_desktop.training_runtime.families import unet as ours

        targets = list(ours.TARGET_MODULES)
    except (ImportError, AttributeError):
        targets = list(TARGET_MODULES)
    if targets != TARGET_MODULES:
        print(f"note: the trainer's target modules are now {targets}; using them",
              file=sys.stderr)
        TARGET_MODULES[:] = targets
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    model = Path(model_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
    text_encoder = CLIPTextModel.from_pretrained(str(model), subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(str(model), subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
    noise_scheduler = DDPMScheduler.from_pretrained(str(model), subfolder="scheduler")
    for module in (text_encoder, vae, unet):
        module.requires_grad_(False)

    images = sorted(Path(data_dir).glob("*.png"))
    pixels, captions = [], []
    for path in images:
        img = Image.open(path).convert("RGB").resize((resolution, resolution))
        pixels.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
                      .permute(2, 0, 1))
        caption = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        captions.append(f"sks, {caption}")
    with torch.no_grad():
        latents = vae.encode(torch.stack(pixels)).latent_dist.sample()
        latents = latents * vae.config.scaling_factor
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        hidden = text_encoder(ids)[0]
    del vae, text_encoder

    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights=True,
                                target_modules=TARGET_MODULES))
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return {"unet": unet, "noise_scheduler": noise_scheduler, "latents": latents,
            "hidden": hidden}


def reference_steps(state: dict, steps: int):  # noqa: ANN201 - a generator of losses
    """The textbook training loop, one step per ``next()``; yields each step's loss."""
    import torch
    import torch.nn.functional as F
    from diffusers.optimization import get_scheduler

    unet, noise_scheduler = state["unet"], state["noise_scheduler"]
    latents, hidden = state["latents"], state["hidden"]
    params = [p for p in unet.parameters() if p.requires_grad]
    state["lora_params"] = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0,
                                 num_training_steps=steps)
    n, timesteps_total = latents.shape[0], noise_scheduler.config.num_train_timesteps
    for _step in range(steps):
        idx = torch.randperm(n)[:BATCH]
        batch_latents, batch_hidden = latents[idx], hidden[idx]
        noise = torch.randn_like(batch_latents)
        timesteps = torch.randint(0, timesteps_total, (BATCH,))
        noisy = noise_scheduler.add_noise(batch_latents, noise, timesteps)
        pred = unet(noisy, timesteps, batch_hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        yield loss.item()


def reference_train(state: dict, steps: int) -> dict:
    """Run the reference loop alone; per-step end times (perf_counter) and CPU seconds at
    the end of step WARMUP_STEPS and of the last step."""
    ends: list[float] = []
    losses: list[float] = []
    cpu: dict[int, float] = {}
    for step, loss in enumerate(reference_steps(state, steps), start=1):
        ends.append(time.perf_counter())
        losses.append(loss)
        if step in (WARMUP_STEPS, steps):
            cpu[step] = proc_cpu_s()
    return {"ends": ends, "cpu": cpu, "first_loss": losses[0], "last_loss": losses[-1],
            "lora_params": state["lora_params"]}


# ----------------------------------------------------------------------------- interleaved


def interleaved_child(spec: str) -> int:
    """``--interleaved-child JSON``: ours and the reference in this one process, taking turns
    in chunks, so other load on the machine hits both alike.

    Ours is the unchanged ``loop.run`` (the trainer's public entry point) with an
    :class:`Emitter` whose ``step`` event (written, as always, to a pipe that a thread drains)
    also hands over to the reference for one chunk every ``chunk`` steps. Ours' step *k* runs
    from the moment the trainer got control back after step *k−1*'s event to the end of step
    *k*'s event, so it includes the event itself; the reference's steps are timed around each
    ``next()``. Both sides: wall time (perf_counter) and this thread's CPU time."""
    import os
    import threading

    cfg = json.loads(spec)
    gc, chunk, chunks = bool(cfg["gc"]), int(cfg["chunk"]), int(cfg["chunks"])
    total = WARMUP_STEPS + chunk * chunks
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DIFFUSERS_OFFLINE="1")
    if cfg.get("calibrate"):
        return _calibrate_child(cfg["model"], cfg["data"], gc, chunk, chunks)

    from isengard_desktop.core.training.spec import TrainingJob
    from isengard_desktop.training_runtime.events import Emitter
    from isengard_desktop.training_runtime.loop import run

    state = reference_setup(cfg["model"], cfg["data"], 64, gc)
    ref = reference_steps(state, WARMUP_STEPS + chunk * chunks)
    clocks = (time.perf_counter, time.thread_time)
    ref_times: list[tuple[float, float]] = []
    ref_losses: list[float] = []
    for _ in range(WARMUP_STEPS):           # the reference's warm-up, not counted
        ref_losses.append(next(ref))

    ours_times: list[tuple[float, float]] = []
    resumed = [tuple(c() for c in clocks)]  # when ours got control back

    class TurnTaking(Emitter):
        def step(self, step, total_, loss, lr, sec_per_step, eta_sec) -> None:  # noqa: ANN001
            super().step(step, total_, loss, lr, sec_per_step, eta_sec)
            end = tuple(c() for c in clocks)
            if step > WARMUP_STEPS:
                ours_times.append((end[0] - resumed[-1][0], end[1] - resumed[-1][1]))
            if WARMUP_STEPS <= step < total and (step - WARMUP_STEPS) % chunk == 0:
                for _ in range(chunk):
                    t0 = tuple(c() for c in clocks)
                    ref_losses.append(next(ref))
                    t1 = tuple(c() for c in clocks)
                    ref_times.append((t1[0] - t0[0], t1[1] - t0[1]))
            resumed.append(tuple(c() for c in clocks))

    read_fd, write_fd = os.pipe()

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as fh:
            while fh.read1(65536):
                pass

    threading.Thread(target=drain, daemon=True).start()
    stream = os.fdopen(write_fd, "w", encoding="utf-8", buffering=1, newline="\n")
    job = TrainingJob.from_json(Path(cfg["job"]).read_text(encoding="utf-8"))
    job.steps = total
    job.validate()
    code = run(job, Path(cfg["job_dir"]), TurnTaking(stream), threading.Event())
    stream.close()
    if code != 0 or len(ours_times) != chunk * chunks or len(ref_times) != chunk * chunks:
        print(f"interleaved run incomplete: exit {code}, {len(ours_times)} / "
              f"{len(ref_times)} steps", file=sys.stderr)
        return 1
    print("INTERLEAVED " + json.dumps({"ours": ours_times, "reference": ref_times,
                                       "chunk": chunk, "ref_losses": ref_losses[::10]}),
          flush=True)
    return 0


def _calibrate_child(model: str, data: str, gc: bool, chunk: int, chunks: int) -> int:
    """A/A: two separately loaded copies of the reference take turns exactly as ours and the
    reference do; their ratio shows how far apart two identical loops measure (the noise
    floor of the comparison)."""
    total = WARMUP_STEPS + chunk * chunks
    sides = [reference_steps(reference_setup(model, data, 64, gc), total) for _ in range(2)]
    for side in sides:
        for _ in range(WARMUP_STEPS):
            next(side)
    times: list[list[tuple[float, float]]] = [[], []]
    for turn in range(chunks):
        for i in ((0, 1) if turn % 2 == 0 else (1, 0)):
            for _ in range(chunk):
                w0, c0 = time.perf_counter(), time.thread_time()
                next(sides[i])
                times[i].append((time.perf_counter() - w0, time.thread_time() - c0))
    print("INTERLEAVED " + json.dumps({"ours": times[0], "reference": times[1],
                                       "chunk": chunk}), flush=True)
    return 0


def run_interleaved(root: Path, model: Path, data: Path, gc: bool, chunk: int, chunks: int,
                    threads: int, calibrate: bool = False) -> dict:
    job = tiny_job(model, data, steps=WARMUP_STEPS + chunk * chunks, batch_size=BATCH,
                   rank=RANK, alpha=ALPHA, learning_rate=LR, gradient_checkpointing=gc,
                   seed=SEED)
    job_dir = root / f"interleaved-{'on' if gc else 'off'}"
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.json").write_text(job.to_json(), encoding="utf-8")
    write_photo_list(job, job_dir)
    spec = json.dumps({"model": str(model), "data": str(data), "gc": gc, "chunk": chunk,
                       "chunks": chunks, "job": str(job_dir / "job.json"),
                       "job_dir": str(job_dir), "calibrate": calibrate})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--interleaved-child",
                           spec], cwd=REPO, env=trainer_env(threads), capture_output=True,
                          text=True, timeout=1800, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("INTERLEAVED ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"interleaved run failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    result = json.loads(line[len("INTERLEAVED "):])
    out: dict = {}
    for side in ("ours", "reference"):
        wall = [w for w, _ in result[side]]
        cpu = [c for _, c in result[side]]
        per_chunk = [sum(wall[i:i + chunk]) / chunk for i in range(0, len(wall), chunk)]
        out[side] = {"mean": sum(wall) / len(wall), "median": median(wall),
                     "cpu": sum(cpu) / len(cpu), "chunks": per_chunk}
    pairs = sorted(ratio(o, r) for o, r in zip(out["ours"]["chunks"], out["reference"]["chunks"],
                                               strict=True))
    out["chunk_ratios"] = pairs
    return out


def reference_child(spec: str) -> int:
    """``--reference-child JSON``: set up, run :func:`reference_train` (under cProfile if
    asked) and print one JSON line."""
    cfg = json.loads(spec)
    state = reference_setup(cfg["model"], cfg["data"], cfg["resolution"], cfg["gc"])
    if cfg.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(reference_train, state, cfg["steps"])
        profiler.dump_stats(cfg["profile"])
    else:
        result = reference_train(state, cfg["steps"])
    print("REFERENCE " + json.dumps(result), flush=True)
    return 0


def run_reference(model: Path, data: Path, steps: int, gc: bool, threads: int,
                  profile: Path | None = None) -> dict:
    spec = json.dumps({"model": str(model), "data": str(data), "resolution": 64,
                       "steps": steps, "gc": gc, "profile": str(profile) if profile else ""})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--reference-child",
                           spec], cwd=REPO, env=trainer_env(threads), capture_output=True,
                          text=True, timeout=900, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("REFERENCE ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"reference loop failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    result = json.loads(line[len("REFERENCE "):])
    stats = step_stats(list(enumerate(result["ends"], start=1)), WARMUP_STEPS)
    cpu = {int(k): v for k, v in result["cpu"].items()}
    stats["cpu"] = (cpu[steps] - cpu[WARMUP_STEPS]) / (steps - WARMUP_STEPS)
    return {**stats, "first_loss": result["first_loss"], "last_loss": result["last_loss"]}


# ----------------------------------------------------------------------------- ours


def run_ours(root: Path, model: Path, data: Path, steps: int, gc: bool, threads: int,
             tag: str) -> dict:
    job = tiny_job(model, data, steps=steps, batch_size=BATCH, rank=RANK, alpha=ALPHA,
                   learning_rate=LR, gradient_checkpointing=gc, seed=SEED)
    run = run_trainer(job, root / "ours" / tag, trainer_env(threads))
    problem = run.failure()
    if problem:
        raise RuntimeError(f"trainer run failed: {problem}")
    stamps = [(s, t) for s, t, _ in run.steps()]
    if len(stamps) != steps:
        raise RuntimeError(f"expected {steps} step events, got {len(stamps)}")
    losses = [float(e["loss"]) for _, _, e in run.steps()]
    cpu = dict(run.step_cpu())
    return {**step_stats(stamps, WARMUP_STEPS), "first_loss": losses[0],
            "last_loss": losses[-1],
            "cpu": (cpu[steps] - cpu[WARMUP_STEPS]) / (steps - WARMUP_STEPS)}


# ----------------------------------------------------------------------------- profile

# (label, how to find it in the profile: function name and a file fragment)
PROFILE_PARTS = [
    ("UNet forward", "forward", "unet_2d_condition.py"),
    ("backward", "_engine_run_backward", "autograd/graph.py"),
    ("optimizer.step (AdamW)", "step", "optim/adam.py"),
    ("clip_grad_norm_", "clip_grad_norm_", "clip_grad.py"),
    ("add_noise", "add_noise", "scheduling_ddpm.py"),
    ("zero_grad", "zero_grad", "optimizer.py"),
    ("lr_scheduler.step", "step", "lr_scheduler.py"),
    ("our step event (Emitter.step)", "step", "events.py"),
    ("our batch assembly (Trainer._batch)", "_batch", "loop.py"),
]


def _cumtime(stats, name: str, fragment: str) -> float:  # noqa: ANN001 - pstats.Stats
    """Cumulative seconds of every function ``name`` in a file whose path contains
    ``fragment`` (cProfile's cumulative time already leaves out recursion)."""
    return sum(ct for (filename, _line, func), (_cc, _nc, _tt, ct, _callers)
               in stats.stats.items()
               if func == name and fragment in filename.replace("\\", "/"))


def profile(root: Path, model: Path, data: Path, steps: int, threads: int) -> int:
    """Each side once per configuration under cProfile: ours with ``python -m cProfile`` on
    the unchanged trainer (the loop is ``Trainer._train``), the reference on its loop only."""
    import pstats

    ours_prof, ref_prof = root / "ours.prof", root / "reference.prof"
    rows = []
    for gc in (False, True):
        n = steps if not gc else max(40, steps // 2)
        job = tiny_job(model, data, steps=n, batch_size=BATCH, rank=RANK, alpha=ALPHA,
                       learning_rate=LR, gradient_checkpointing=gc, seed=SEED)
        job_dir = root / f"profile-{gc}"
        job_dir.mkdir(parents=True, exist_ok=True)
        spec = job_dir / "job.json"
        spec.write_text(job.to_json(), encoding="utf-8")
        write_photo_list(job, job_dir)
        proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(ours_prof), "-m",
                               "isengard_desktop.training_runtime", "train", "--job", str(spec),
                               "--job-dir", str(job_dir)], cwd=job_dir, env=trainer_env(threads),
                              capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"profiled trainer failed:\n{proc.stderr[-3000:]}")
        run_reference(model, data, n, gc, threads, profile=ref_prof)
        ours, ref = pstats.Stats(str(ours_prof)), pstats.Stats(str(ref_prof))
        # ours: the loop minus the checkpoint it saves after the last step
        ours_loop = (_cumtime(ours, "_train", "loop.py")
                     - _cumtime(ours, "_save_checkpoint", "loop.py"))
        ref_loop = _cumtime(ref, "reference_train", "trainer_step.py")
        label = f"checkpointing {'on' if gc else 'off'}, {n} steps"
        rows.append((f"[{label}] whole loop", f"ours {ours_loop / n * 1000:7.2f} ms/step   "
                     f"reference {ref_loop / n * 1000:7.2f} ms/step"))
        o_rest, r_rest = ours_loop, ref_loop
        for part, name, frag in PROFILE_PARTS:
            o, r = _cumtime(ours, name, frag), _cumtime(ref, name, frag)
            o_rest, r_rest = o_rest - o, r_rest - r
            if o or r:
                rows.append((f"  {part}", f"ours {o / n * 1000:7.2f} ms/step   "
                             f"reference {r / n * 1000:7.2f} ms/step"))
        rows.append(("  everything else in the loop", f"ours {o_rest / n * 1000:7.2f} ms/step   "
                     f"reference {r_rest / n * 1000:7.2f} ms/step"))
    print_table("cProfile, one run per side (profiling overhead included: compare the two "
                "columns, not with the timed figures)", rows)
    return 0


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="checkpointing off only, 4 chunks of 10 steps, no separate runs")
    parser.add_argument("--reps", type=int, default=None,
                        help="interleaved runs per configuration (default 3)")
    parser.add_argument("--separate", type=int, default=None,
                        help="separate-process repetitions per configuration (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of every child (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="run each side once under cProfile and show where time goes")
    parser.add_argument("--calibrate", action="store_true",
                        help="also run the reference against a second copy of itself the same "
                             "way (A/A): the comparison's noise floor")
    parser.add_argument("--reference-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--interleaved-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_child is not None:
        return reference_child(args.reference_child)
    if args.interleaved_child is not None:
        return interleaved_child(args.interleaved_child)
    configs = {"off": (10, 4, 40)} if args.quick else dict(CONFIGS)
    reps = args.reps or (1 if args.quick else 3)
    separate = args.separate if args.separate is not None else (0 if args.quick else 1)
    prepare_env()
    set_threads(args.threads)
    load_before = machine_load()

    inter: dict[str, list[dict]] = {k: [] for k in configs}
    apart: dict[str, dict[str, list[dict]]] = {k: {"ours": [], "reference": []}
                                               for k in configs}
    with fresh_home("trainer-step") as root:
        t = time.perf_counter()
        model, data = build_tiny_sd15(root)
        print(f"built the tiny SD1.5-like model and dataset in {time.perf_counter() - t:.1f} s; "
              f"{machine_load()}", flush=True)
        if args.profile:
            return profile(root, model, data, 100 if not args.quick else 40, args.threads)
        for rep in range(reps):
            for cfg, (chunk, chunks, _steps) in configs.items():
                r = run_interleaved(root, model, data, cfg == "on", chunk, chunks, args.threads)
                inter[cfg].append(r)
                o, f = r["ours"], r["reference"]
                print(f"  interleaved {rep + 1}, checkpointing {cfg:3s}: ours "
                      f"{o['mean'] * 1000:6.2f} ms/step (CPU {o['cpu'] * 1000:6.2f}), reference "
                      f"{f['mean'] * 1000:6.2f} ms/step (CPU {f['cpu'] * 1000:6.2f}) → "
                      f"{ratio(o['mean'], f['mean']):.3f}", flush=True)
        calib: dict[str, list[float]] = {k: [] for k in configs}
        for rep in range(reps if args.calibrate else 0):
            for cfg, (chunk, chunks, _steps) in configs.items():
                r = run_interleaved(root, model, data, cfg == "on", chunk, chunks, args.threads,
                                    calibrate=True)
                calib[cfg].append(ratio(r["ours"]["mean"], r["reference"]["mean"]))
                print(f"  A/A {rep + 1}, checkpointing {cfg:3s}: reference copy A / copy B "
                      f"{calib[cfg][-1]:.3f}", flush=True)
        for rep in range(separate):
            for cfg, (_chunk, _chunks, steps) in configs.items():
                gc = cfg == "on"
                order = ("ours", "reference") if rep % 2 == 0 else ("reference", "ours")
                for side in order:
                    if side == "ours":
                        r = run_ours(root, model, data, steps, gc, args.threads, f"{cfg}-{rep}")
                    else:
                        r = run_reference(model, data, steps, gc, args.threads)
                    apart[cfg][side].append(r)
                    print(f"  separate {rep + 1}, checkpointing {cfg:3s}, {side:9s}: "
                          f"{r['mean'] * 1000:6.2f} ms/step (CPU {r['cpu'] * 1000:6.2f}; "
                          f"loss {r['first_loss']:.3f} → {r['last_loss']:.3f})", flush=True)
    load_after = machine_load()

    figures: dict[str, object] = {"threads": args.threads, "batch": BATCH, "rank": RANK,
                                  "resolution": 64, "interleaved_runs": reps,
                                  "separate_runs": separate, "warmup_steps": WARMUP_STEPS}
    goals: dict[str, bool] = {}
    rows: list[tuple[str, str]] = []
    ms: dict[tuple[str, str], float] = {}
    for cfg, (chunk, chunks, steps) in configs.items():
        runs = inter[cfg]
        o_ms = median([r["ours"]["mean"] for r in runs]) * 1000
        f_ms = median([r["reference"]["mean"] for r in runs]) * 1000
        o_cpu = median([r["ours"]["cpu"] for r in runs]) * 1000
        f_cpu = median([r["reference"]["cpu"] for r in runs]) * 1000
        per_run = [ratio(r["ours"]["mean"], r["reference"]["mean"]) for r in runs]
        chunk_ratios = sorted(x for r in runs for x in r["chunk_ratios"])
        r_step = median(per_run)
        ms[(cfg, "ours")], ms[(cfg, "reference")] = o_ms, f_ms
        figure: dict[str, object] = {
            "chunk_steps": chunk, "chunks": chunks, "ours_ms_per_step": o_ms,
            "reference_ms_per_step": f_ms, "ratio": r_step, "ratio_per_run": per_run,
            "ours_cpu_ms_per_step": o_cpu, "reference_cpu_ms_per_step": f_cpu,
            "cpu_ratio": ratio(o_cpu, f_cpu),
            "chunk_ratio_p10_p50_p90": [percentile(chunk_ratios, q) for q in (10, 50, 90)]}
        rows += [
            (f"checkpointing {cfg}: ours", f"{o_ms:.2f} ms/step  (CPU {o_cpu:.2f} ms)"),
            (f"checkpointing {cfg}: reference", f"{f_ms:.2f} ms/step  (CPU {f_cpu:.2f} ms)"),
            (f"checkpointing {cfg}: ratio ours / reference",
             f"{r_step:.3f}  (goal ≤ {GOAL_RATIO}; runs "
             f"{', '.join(f'{x:.3f}' for x in per_run)}; CPU {ratio(o_cpu, f_cpu):.3f})"),
            (f"  {chunks} × {chunk}-step turns per run: turn ratios p10 / p50 / p90",
             " / ".join(f"{percentile(chunk_ratios, q):.3f}" for q in (10, 50, 90))),
        ]
        if calib[cfg]:
            rows.append(("  noise floor: reference / its own copy (A/A)",
                         ", ".join(f"{x:.3f}" for x in calib[cfg])))
            figure["aa_ratios"] = calib[cfg]
        if apart[cfg]["ours"]:
            so = median([r["mean"] for r in apart[cfg]["ours"]]) * 1000
            sf = median([r["mean"] for r in apart[cfg]["reference"]]) * 1000
            sco = median([r["cpu"] for r in apart[cfg]["ours"]]) * 1000
            scf = median([r["cpu"] for r in apart[cfg]["reference"]]) * 1000
            rows.append((f"  separate processes, {steps} steps each ({separate}×)",
                         f"ours {so:.2f} / reference {sf:.2f} ms/step = {ratio(so, sf):.3f}  "
                         f"(CPU {ratio(sco, scf):.3f}; information: runs ~20 s apart)"))
            figure["separate"] = {"steps": steps, "ours_ms_per_step": so,
                                  "reference_ms_per_step": sf, "ratio": ratio(so, sf),
                                  "cpu_ratio": ratio(sco, scf)}
        figures[f"checkpointing_{cfg}"] = figure
        goals[f"step_ratio_checkpointing_{cfg}_le_1_0"] = bool(r_step <= GOAL_RATIO)
    if "on" in configs and "off" in configs:
        default_vs_textbook = ratio(ms[("on", "ours")], ms[("off", "reference")])
        figures["ours_spec_default_vs_textbook_default"] = default_vs_textbook
        rows.append(("ours at the spec default (checkpointing on) / textbook default (off)",
                     f"{default_vs_textbook:.2f}×  (information)"))
    rows.append(("machine", f"before: {load_before}; after: {load_after}"))
    figures.update(load_before=load_before, load_after=load_after)
    print_table(f"Step time, tiny SD1.5-like model, 64 px, batch {BATCH}, rank {RANK}, CPU fp32, "
                f"OMP_NUM_THREADS={args.threads}; interleaved in one process, median of "
                f"{reps} run(s); the first {WARMUP_STEPS} steps of each side not counted", rows)
    emit_json("trainer_step", figures, goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
