"""Trainer overhead: the same tiny training job bare vs through the app's runner (goal ≤ 1 %).

* Job: the tiny random SD1.5-like model of the trainer tests (``training_runtime.tiny_models``)
  on 4 captioned 64 px images, CPU, batch 2, no samples, no gradient checkpointing (so steps
  are short and events come fast: the runner's hardest case), one checkpoint and the LoRA at
  the end. 300 steps (``--quick`` 50).
* Bare: ``python -m isengard_desktop.training_runtime train --job … --job-dir …`` as a plain
  subprocess; the parent only drains stdout line by line (stderr goes straight to a file).
* Runner: ``build_app()`` in this process (window shown, offscreen by default, Training tab
  current and showing the job: loss chart, progress, log all live; ``--view other`` keeps the
  Characters tab current instead, to split the runner's own cost from the chart's), the job
  submitted with ``TrainingService.submit`` — QProcess, event parsing, ``events.jsonl``/log
  files, 10 Hz signals, database writes — until ``job_finished``.
* Both children get the same environment (the runner's: PYTHONPATH, unbuffered, offline) and
  the same ``OMP_NUM_THREADS`` (``--threads``, default 1).
* Figures per side: wall time (bare: spawn → exit; runner: ``submit()`` → ``job_finished``,
  so queueing, spec writing and the spawn are counted), training time (arrival of the first to
  the last step event: the parent's clock for bare, the runner's own ``events.jsonl`` stamps
  for the runner) and the trainer's own reported ``sec_per_step`` (median after step 20);
  also the trainer's CPU time and this process's CPU time during the job (for the runner:
  all the app did for it). Ratios runner/bare of the medians; goal ≤ 1.01 for training time
  and wall time.
* Repetitions: 5 (``--quick`` 2), order alternating; one untimed bare warm-up run first.

    .venv/bin/python benchmarks/trainer_overhead.py [--quick] [--steps N] [--reps R]
        [--threads T] [--view training|other] [--monitor closed|open|off]

* ``--monitor``: the resource monitor (GPU/CPU/RAM/disk sampled at 1 Hz by the app, issue 16)
  runs during runner jobs as the app runs it — ``closed`` (default: the summary line only),
  ``open`` (its four charts drawn too) — or ``off`` (stopped, for the figure without it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    app_paths,
    build_tiny_sd15,
    children_cpu_s,
    emit_json,
    fresh_home,
    machine_load,
    median,
    prepare_env,
    print_table,
    ratio,
    run_trainer,
    set_threads,
    step_stats,
    tiny_job,
    trainer_env,
    wait_until,
    write_photo_list,
)

GOAL_RATIO = 1.01
WARMUP_STEPS = 20        # the trainer's sec_per_step is a mean of the last 20 steps
RUN_TIMEOUT_S = 900


def settle(app, seconds: float) -> None:  # noqa: ANN001
    """Let the app finish what a finished job starts (history reload, LoRA registration)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)


def summarize(kind: str, wall_s: float, stamps: list[tuple[int, float]],
              reported: list[tuple[int, float]], total: int) -> dict[str, float]:
    stats = step_stats(stamps, 0)
    steps = sorted(s for s, _ in stamps)
    if steps != list(range(1, total + 1)):
        raise RuntimeError(f"{kind}: expected steps 1..{total}, got {len(steps)} step events")
    spe = median([v for s, v in reported if s > WARMUP_STEPS]) if total > WARMUP_STEPS \
        else median([v for _, v in reported])
    return {"wall": wall_s, "train": stats["span"], "sec_per_step": spe}


def run_bare(root: Path, model: Path, data: Path, steps: int, tag: str) -> dict[str, float]:
    job = tiny_job(model, data, steps=steps, batch_size=2, gradient_checkpointing=False)
    run = run_trainer(job, root / "bare" / tag, trainer_env(), timeout=RUN_TIMEOUT_S)
    problem = run.failure()
    if problem:
        raise RuntimeError(f"bare trainer run failed: {problem}")
    steps_ = run.steps()
    out = summarize("bare", run.wall_s, [(s, t) for s, t, _ in steps_],
                    [(s, float(e["sec_per_step"])) for s, _, e in steps_], steps)
    out.update(child_cpu=run.child_cpu_s, parent_cpu=run.parent_cpu_s)
    return out


class RunnerSide:
    """The app (window shown, Training tab current) with one character; runs jobs through
    its TrainingService."""

    def __init__(self, app, home: Path, view: str = "training",  # noqa: ANN001
                 monitor: str = "closed") -> None:
        from keyring.backends import fail  # no keyring: nothing of the user's is read

        from isengard_desktop.app import build_app
        from isengard_desktop.core.secrets import SecretStore

        self.app = app
        self.ctx = build_app(app_paths(home), secrets=SecretStore(fail.Keyring()),
                             install_excepthook=False)
        self.ctx.window.show()
        self.tab = self.ctx.training_tab
        self.ctx.window.tabs.setCurrentWidget(self.ctx.tabs["Training"] if view == "training"
                                              else self.ctx.tabs["Characters"])
        errors: list[str] = []
        self.ctx.library.failed.connect(errors.append)
        wait_until(app, lambda: self.ctx.library.is_ready and self.ctx.training.is_ready,
                   what="library and training service ready")
        created: list[int] = []
        problem = self.ctx.library.create_character("Bench Subject", "sks", "benchmark",
                                                    on_created=lambda c: created.append(c.id))
        if problem:
            raise RuntimeError(problem)
        wait_until(app, lambda: bool(created) or bool(errors), what="character created")
        if errors:
            raise RuntimeError("; ".join(errors))
        self.character_id = created[0]
        resources = self.ctx.resources
        if monitor == "off":
            if resources is not None:
                resources.shutdown()
        else:
            if resources is None:
                raise RuntimeError("this app has no resource monitor")
            resources.start()     # as the Training tab or a running job starts it
            self.tab.panel.monitor.set_expanded(monitor == "open")
        settle(app, 0.5)

    def run(self, model: Path, data: Path, steps: int) -> dict[str, float]:
        from PySide6.QtCore import QEventLoop, QTimer

        training = self.ctx.training
        job = tiny_job(model, data, steps=steps, batch_size=2, gradient_checkpointing=False,
                       character_id=self.character_id, character_name="Bench Subject")
        loop = QEventLoop()
        finished: list = []
        marks: dict[str, float] = {}

        def on_finished(record) -> None:  # noqa: ANN001
            if record.job_id == job.job_id:
                marks.setdefault("finished", time.perf_counter())
                finished.append(record)
                loop.quit()

        def on_updated(record) -> None:  # noqa: ANN001
            if record.job_id == job.job_id and record.pid:
                marks.setdefault("started", time.perf_counter())

        training.job_finished.connect(on_finished)
        training.job_updated.connect(on_updated)
        watchdog = QTimer()
        watchdog.setSingleShot(True)
        watchdog.timeout.connect(loop.quit)
        watchdog.start(RUN_TIMEOUT_S * 1000)
        usage0, cpu0 = children_cpu_s(), time.process_time()
        t0 = time.perf_counter()
        # the photo list the app writes from the database at a job's first start (the bench
        # character has no photos in the database; the runner keeps a list that exists)
        write_photo_list(job, self.ctx.paths.jobs / job.job_id)
        record = training.submit(job)          # what the Start button does
        self.tab.on_jobs_changed()
        self.tab.select_job(record.job_id)     # the job panel shows it live
        loop.exec()
        parent_cpu = time.process_time() - cpu0
        child_cpu = children_cpu_s() - usage0
        watchdog.stop()
        training.job_finished.disconnect(on_finished)
        training.job_updated.disconnect(on_updated)
        if not finished:
            raise RuntimeError(f"runner job did not finish in {RUN_TIMEOUT_S} s")
        done = finished[0]
        if done.state != "completed":
            raise RuntimeError(f"runner job {done.state}: {done.error_message}")
        wall = marks["finished"] - t0
        events = [json.loads(line) for line in
                  done.paths.events.read_text(encoding="utf-8").splitlines() if line.strip()]
        steps_ = [e for e in events if e.get("event") == "step"]
        out = summarize("runner", wall, [(int(e["step"]), float(e["t"])) for e in steps_],
                        [(int(e["step"]), float(e["sec_per_step"])) for e in steps_], steps)
        out.update(launch=marks.get("started", float("nan")) - t0, child_cpu=child_cpu,
                   parent_cpu=parent_cpu)
        settle(self.app, 1.0)
        return out

    def close(self) -> None:
        ctx = self.ctx
        ctx.window.close()
        import asyncio

        asyncio.run(ctx.aclose())     # no qasync loop runs here: a plain one closes the app
        ctx.window.deleteLater()
        self.app.processEvents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 steps, 2 repetitions")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 300)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of both trainer children (default 1)")
    parser.add_argument("--view", choices=("training", "other"), default="training",
                        help="tab current during runner jobs: 'training' (default; the job "
                             "panel and loss chart update live) or 'other' (Characters: the "
                             "runner's own cost without chart painting)")
    parser.add_argument("--monitor", choices=("closed", "open", "off"), default="closed",
                        help="the resource monitor during runner jobs: 'closed' (default: "
                             "sampling at 1 Hz, summary line), 'open' (its charts drawn too) "
                             "or 'off' (stopped)")
    args = parser.parse_args(argv)
    steps = args.steps or (50 if args.quick else 300)
    reps = args.reps or (2 if args.quick else 5)
    prepare_env()
    set_threads(args.threads)
    load_before = machine_load()

    from PySide6.QtWidgets import QApplication

    bare: list[dict[str, float]] = []
    runner: list[dict[str, float]] = []
    with fresh_home("trainer-overhead") as root:
        t = time.perf_counter()
        model, data = build_tiny_sd15(root)
        print(f"built the tiny SD1.5-like model and dataset in {time.perf_counter() - t:.1f} s; "
              f"{machine_load()}", flush=True)
        app = QApplication.instance() or QApplication([sys.argv[0]])
        side = RunnerSide(app, root / "home", args.view, args.monitor)
        try:
            # untimed warm-up: the OS file cache holds the libraries for both sides afterwards
            run_bare(root, model, data, min(steps, 20), "warmup")
            for rep in range(reps):
                order = ("bare", "runner") if rep % 2 == 0 else ("runner", "bare")
                for kind in order:
                    if kind == "bare":
                        bare.append(run_bare(root, model, data, steps, f"rep{rep}"))
                        r = bare[-1]
                    else:
                        runner.append(side.run(model, data, steps))
                        r = runner[-1]
                    print(f"  rep {rep + 1} {kind:6s}: wall {r['wall']:.2f} s, training "
                          f"{r['train']:.2f} s, {r['sec_per_step'] * 1000:.1f} ms/step "
                          f"reported; CPU child {r['child_cpu']:.2f} s, parent "
                          f"{r['parent_cpu']:.2f} s", flush=True)
        finally:
            side.close()
    load_after = machine_load()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return median([r[key] for r in rows])

    b_wall, r_wall = med(bare, "wall"), med(runner, "wall")
    b_train, r_train = med(bare, "train"), med(runner, "train")
    b_spe, r_spe = med(bare, "sec_per_step"), med(runner, "sec_per_step")
    launch = med(runner, "launch")
    b_ccpu, r_ccpu = med(bare, "child_cpu"), med(runner, "child_cpu")
    b_pcpu, r_pcpu = med(bare, "parent_cpu"), med(runner, "parent_cpu")
    wall_ratio, train_ratio, spe_ratio = (ratio(r_wall, b_wall), ratio(r_train, b_train),
                                         ratio(r_spe, b_spe))
    # paired ratios (each repetition's runner over its own bare), to show the spread
    paired = sorted(ratio(r["train"], b["train"]) for r, b in zip(runner, bare, strict=True))
    print_table(f"Tiny SD1.5-like LoRA job, {steps} steps, batch 2, 64 px, CPU, "
                f"OMP_NUM_THREADS={args.threads}, {args.view} tab current during runner jobs, "
                f"resource monitor {args.monitor} "
                f"(median of {reps} repetitions each)", [
        ("bare: wall (spawn → exit)", f"{b_wall:.2f} s"),
        ("runner: wall (submit → job_finished)", f"{r_wall:.2f} s"),
        ("  of which submit → process started", f"{launch * 1000:.0f} ms"),
        ("bare: training (first → last step)", f"{b_train:.2f} s"),
        ("runner: training (first → last step)", f"{r_train:.2f} s"),
        ("trainer-reported sec/step, bare", f"{b_spe * 1000:.2f} ms"),
        ("trainer-reported sec/step, runner", f"{r_spe * 1000:.2f} ms"),
        ("ratio runner / bare, training", f"{train_ratio:.3f}  (goal ≤ {GOAL_RATIO})"),
        ("ratio runner / bare, wall", f"{wall_ratio:.3f}  (goal ≤ {GOAL_RATIO})"),
        ("ratio runner / bare, reported sec/step", f"{spe_ratio:.3f}"),
        ("trainer CPU (user+sys), bare / runner", f"{b_ccpu:.2f} s / {r_ccpu:.2f} s  "
                                                  f"(ratio {ratio(r_ccpu, b_ccpu):.3f})"),
        ("parent CPU during the job, bare / app", f"{b_pcpu:.2f} s / {r_pcpu:.2f} s  "
                                                  f"({r_pcpu / r_wall * 100:.1f} % of one core "
                                                  f"for the app)"),
        ("paired training ratios (min … max)", f"{paired[0]:.3f} … {paired[-1]:.3f}"),
        ("machine", f"before: {load_before}; after: {load_after}"),
        ("all bare walls", ", ".join(f"{r['wall']:.2f}" for r in bare)),
        ("all runner walls", ", ".join(f"{r['wall']:.2f}" for r in runner)),
    ])
    emit_json("trainer_overhead", {
        "steps": steps, "repetitions": reps, "threads": args.threads, "view": args.view,
        "monitor": args.monitor,
        "bare_wall_s": b_wall, "runner_wall_s": r_wall, "runner_launch_s": launch,
        "bare_train_s": b_train, "runner_train_s": r_train,
        "bare_sec_per_step": b_spe, "runner_sec_per_step": r_spe,
        "bare_child_cpu_s": b_ccpu, "runner_child_cpu_s": r_ccpu,
        "bare_parent_cpu_s": b_pcpu, "app_cpu_s": r_pcpu,
        "ratio_train": train_ratio, "ratio_wall": wall_ratio, "ratio_sec_per_step": spe_ratio,
        "paired_train_ratios": paired,
        "load_before": load_before, "load_after": load_after,
    }, {"train_ratio_le_1_01": bool(train_ratio <= GOAL_RATIO),
        "wall_ratio_le_1_01": bool(wall_ratio <= GOAL_RATIO)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
