"""The built-in trainer through the app's real runner, for every model family.

One LibraryService + TrainingService (QProcess children running
``python -m isengard_desktop.training_runtime``, the default backend registry) trains tiny
random SD1.5-, SDXL-, Flux dev-, Flux schnell- and Chroma-like models (built here, nothing
downloaded) on the CPU, on a character's dataset folder, to completion. Per family:

* the job completes; the step events (events.jsonl) cover 1..total and the loss falls; the
  coalesced ``progressed`` signal ends at the last step; phases come in order;
* checkpoints and samples are announced mid-run (PNG files on disk);
* the LoRA is written at ``record.lora_path`` and registered as the character's LoRA;
* its keys are in the family's format (kohya + ``.alpha`` for UNets; diffusers
  ``transformer.*.lora_A/B`` + per-module ``.alpha`` for Flux/Chroma) with the metadata;
* applied to a fresh copy of the base model (as ComfyUI applies it) it gives the same
  denoiser output as the trained peft adapter restored from the final checkpoint.

Speed: the five jobs are submitted at once with two running at a time (one torch thread per
child: two children share the two cores), while the next models are still being built.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.training.protocol import StepEvent
from isengard_desktop.core.training.spec import JobPaths, TrainingJob, new_job_id
from isengard_desktop.plugins.registry import default_registry
from isengard_desktop.services.library import LibraryService
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.services.training.service import TrainingService
from isengard_desktop.training_runtime import tiny_models as tiny
from isengard_desktop.training_runtime.checkpoints import verify
from tests.helpers import lora_checks as lc
from tests.helpers import tiny_flux_models as tiny_flux

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WAIT_MS = 240_000
RANK, ALPHA, TRIGGER = 4, 8.0, "sks"
PROMPT = "a portrait"


@dataclass(frozen=True)
class Plan:
    build: Callable[[Path], Path]
    architecture: str
    base_model_version: str
    steps: int
    checkpoint_every: int
    sample_every: int
    extra: dict = field(default_factory=dict)

    @property
    def kohya(self) -> bool:
        return self.architecture.startswith("stable-diffusion")

    def due(self, every: int) -> list[int]:
        """The steps at which the trainer acts on a cadence (and always at the last step)."""
        return [s for s in range(1, self.steps + 1) if s % every == 0 or s == self.steps]


# The flow-matching models learn more slowly per step (and step much faster) at this size.
FLOW = {"t5_max_length": 32}
PLANS = {
    "sd15": Plan(tiny.build_sd15, "stable-diffusion-v1/lora", "sd_v1", 40, 20, 30),
    "sdxl": Plan(tiny.build_sdxl, "stable-diffusion-xl-v1-base/lora", "sdxl_base_v1-0",
                 40, 20, 30),
    "flux-dev": Plan(lambda p: tiny_flux.build_flux(p, "dev"), "flux-1-dev/lora", "flux1",
                     60, 25, 45, FLOW),
    "flux-schnell": Plan(lambda p: tiny_flux.build_flux(p, "schnell"), "flux-1-schnell/lora",
                         "flux1", 60, 25, 45, FLOW),
    "chroma": Plan(tiny_flux.build_chroma, "chroma/lora", "chroma", 60, 25, 45, FLOW),
}


def wait_until(predicate: Callable[[], bool], timeout_ms: int = WAIT_MS) -> None:
    """qtbot.waitUntil for a module-scoped fixture (the Qt event loop keeps running)."""
    from PySide6.QtTest import QTest

    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout_ms} ms")
        QTest.qWait(20)


@dataclass
class Campaign:
    library: LibraryService
    service: TrainingService
    character: object
    models: dict[str, Path] = field(default_factory=dict)
    jobs: dict[str, TrainingJob] = field(default_factory=dict)
    finished: dict[str, object] = field(default_factory=dict)
    progress: list = field(default_factory=list)
    phases: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def of(self, signal_log: list, job_id: str) -> list:
        return [e for j, e in signal_log if j == job_id]


@pytest.fixture(scope="module")
def campaign(qapp, tmp_path_factory):
    root = tmp_path_factory.mktemp("all-families")
    with pytest.MonkeyPatch.context() as mp:
        # the module's own home (the per-test isolated_home comes later); one torch thread per
        # trainer child, which inherits this environment
        for var, sub in (("ISENGARD_HOME", "isengard-home"), ("HOME", "user-home"),
                         ("XDG_CONFIG_HOME", "user-home/.config"),
                         ("XDG_CACHE_HOME", "user-home/.cache")):
            (root / sub).mkdir(parents=True, exist_ok=True)
            mp.setenv(var, str(root / sub))
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MKL_NUM_THREADS", "1")
        paths = resolve_paths().ensure()
        init_main_thread_bridge()
        library = LibraryService(paths)
        library.start()
        wait_until(lambda: library.is_ready, 30_000)
        made: list = []
        assert library.create_character("Alice", TRIGGER, on_created=made.append) is None
        wait_until(lambda: bool(made), 30_000)
        character = made[0]
        # the character's photos, imported (a job trains on its rows, never on a folder)
        photos = tiny.make_dataset(root / "photos", count=4)
        library.import_photos(character.id, [photos])
        wait_until(lambda: library.image_count(character.id) == 4, 30_000)
        dataset = library.character_folder(character)

        service = TrainingService(paths, library, dict, default_registry())
        service.max_running = 2
        service.stop_grace_s = service.cancel_grace_s = service.kill_grace_s = 5.0
        service.bundle_probe_torch = False
        c = Campaign(library, service, character)
        service.job_finished.connect(lambda r: c.finished.__setitem__(r.job_id, r))
        service.progressed.connect(lambda j, e: c.progress.append((j, e)))
        service.phase_changed.connect(lambda j, e: c.phases.append((j, e)))
        service.checkpoint_saved.connect(lambda j, e: c.checkpoints.append((j, e)))
        service.sample_added.connect(lambda j, e: c.samples.append((j, e)))
        service.error_reported.connect(lambda j, e: c.errors.append((j, e)))
        service.start()
        wait_until(lambda: service.is_ready, 30_000)
        try:
            for family, plan in PLANS.items():
                # build the next model while the submitted jobs train
                c.models[family] = plan.build(root / "models" / family)
                job = TrainingJob(
                    job_id=new_job_id(), character_id=character.id,
                    character_name=character.name, trigger_word=TRIGGER, family=family,
                    base_model=str(c.models[family]), dataset_dir=str(dataset),
                    output_name=f"alice_{family}", backend="builtin", resolution=64,
                    rank=RANK, alpha=ALPHA, learning_rate=5e-3, steps=plan.steps,
                    batch_size=2, caption_dropout=0.1, gradient_checkpointing=True,
                    checkpoint_every=plan.checkpoint_every, keep_checkpoints=2,
                    sample_every=plan.sample_every, sample_prompts=[PROMPT], sample_steps=2,
                    extra=dict(plan.extra))
                c.jobs[family] = job
                service.submit(job)
                # let the runner start it now if a slot is free (it spawns from the loop)
                wait_until(lambda job_id=job.job_id: service.job(job_id).state != "queued" or
                           sum(r.state == "running" for r in service.jobs())
                           >= service.max_running, 30_000)
            yield c
        finally:
            service.shutdown()
            library.shutdown()


def stderr_tail(record) -> str:
    try:
        return record.paths.stderr.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def assert_loss_falls(losses: list[float]) -> None:
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    assert last < 0.85 * first, (first, last)
    xs = range(len(losses))
    slope = statistics.linear_regression(xs, losses).slope
    assert slope < 0, slope


# ChromaTransformer2DModel.from_pretrained in this process: diffusers 0.42.1 constructs its
# rotary embedding through a deprecated import path of its own (the trainer hides this).
@pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")
@pytest.mark.parametrize("family", list(PLANS))
def test_trains_to_completion_through_the_runner(campaign, family, qtbot):
    c, plan = campaign, PLANS[family]
    job = c.jobs[family]
    qtbot.waitUntil(lambda: job.job_id in c.finished, timeout=WAIT_MS)
    record = c.finished[job.job_id]
    assert record.state == "completed", (record.error_kind, record.error_message,
                                         stderr_tail(record))
    assert not c.of(c.errors, job.job_id)
    assert record.step == record.total_steps == plan.steps

    # every step, from the job's events.jsonl; the loss goes down
    loaded: list = []
    c.service.events(job.job_id, loaded.append)
    qtbot.waitUntil(lambda: bool(loaded), timeout=30_000)
    steps = [e for e in loaded[0] if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, plan.steps + 1))
    assert all(e.total == plan.steps and e.loss == e.loss for e in steps)
    assert_loss_falls([e.loss for e in steps])
    assert record.last_loss == pytest.approx(steps[-1].loss)
    # the live (coalesced) progress signal: increasing, ending at the last step
    live = [e.step for e in c.of(c.progress, job.job_id)]
    assert live and live == sorted(live) and live[-1] == plan.steps
    phases = [e.phase for e in c.of(c.phases, job.job_id)]
    assert phases[0] == "loading_model"
    firsts = [phases.index(p) for p in ("loading_model", "caching", "training", "sampling")]
    assert firsts == sorted(firsts)

    # checkpoints and samples on the job's cadence, announced while it ran
    checkpoints = c.of(c.checkpoints, job.job_id)
    assert [e.step for e in checkpoints] == plan.due(plan.checkpoint_every)
    assert all(e.resumable for e in checkpoints)
    final_checkpoint = record.paths.checkpoints / f"checkpoint-{plan.steps}"
    assert Path(checkpoints[-1].path) == final_checkpoint
    assert verify(final_checkpoint) == (True, "")
    samples = c.of(c.samples, job.job_id)
    assert [e.step for e in samples] == plan.due(plan.sample_every)
    for s in samples:
        assert s.prompt == f"{TRIGGER}, {PROMPT}"
        assert Path(s.path).parent == record.paths.samples
        assert Path(s.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the LoRA file: where the record says, the character's LoRA in the library
    lora_path = Path(record.lora_path)
    assert lora_path == JobPaths(record.job_dir).lora(job.output_name) and lora_path.is_file()
    qtbot.waitUntil(lambda: any(Path(lo.path).name == lora_path.name
                                for lo in c.library.loras(c.character.id)), timeout=30_000)
    entry = next(lo for lo in c.library.loras(c.character.id)
                 if Path(lo.path).name == lora_path.name)
    assert Path(entry.path).read_bytes() == lora_path.read_bytes()   # published copy
    assert (entry.family, entry.steps) == (family, plan.steps)

    lora = lc.load_lora(lora_path)
    if plan.kohya:
        lc.assert_kohya_keys(lora, RANK, ALPHA)
    else:
        lc.assert_flux_keys(lora, RANK, ALPHA)
    lc.assert_lora_metadata(lc.read_metadata(lora_path), output_name=job.output_name,
                            rank=RANK, alpha=ALPHA, steps=plan.steps,
                            architecture=plan.architecture,
                            base_model_version=plan.base_model_version, trigger=TRIGGER,
                            title=c.character.name)

    # applied to a fresh base model, it acts exactly as the trained adapter
    if plan.kohya:
        lc.assert_kohya_lora_acts_like_adapter(c.models[family], final_checkpoint, lora,
                                               sdxl=family == "sdxl")
    else:
        lc.assert_flux_lora_acts_like_adapter(c.models[family], final_checkpoint, lora_path)
