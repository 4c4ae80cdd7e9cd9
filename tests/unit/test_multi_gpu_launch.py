"""Several GPUs through the tools' own launchers: the job's choice (``num_processes``,
``gpu_ids``), and the command lines of the built-in trainer and sd-scripts (``accelerate
launch``, parsed here by accelerate's own parser and config loader) and of diffusion-pipe
(DeepSpeed's ``--num_gpus``/``--include``, ``pipeline_stages`` in its TOML). The shim under a
distributed launcher: only rank 0 speaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from accelerate.commands.launch import launch_command_parser
from accelerate.commands.config.config_args import load_config_from_file

from isengard_desktop.core.training.parallel import (deepspeed_launch_args, effective_batch,
                                                     gpu_ids, num_processes)
from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.builtin_trainer import (ACCELERATE_LAUNCH, RUNTIME_MODULE,
                                                      BuiltinTrainer)
from isengard_desktop.plugins.diffusion_pipe.backend import MAIN_TOML, DiffusionPipeBackend
from isengard_desktop.plugins.external.files import shim_source
from isengard_desktop.plugins.kohya.backend import ACCELERATE_NAME
from tests.unit.test_diffusion_pipe_backend import make_job as dp_job
from tests.unit.test_diffusion_pipe_backend import world  # noqa: F401 - fixture
from tests.helpers.external_jobs import job_paths
from tests.unit.test_kohya_backend import make_job as kohya_job
from tests.unit.test_kohya_backend import tree  # noqa: F401 - fixture


def job(**extra) -> TrainingJob:
    return TrainingJob(job_id="abc", character_id=1, character_name="A", trigger_word="sks",
                       family="sd15", base_model="/m", dataset_dir="/d", output_name="a",
                       extra=extra)


@pytest.mark.parametrize("extra, n, ids", [
    ({}, 1, []),
    ({"num_processes": 2}, 2, []),
    ({"gpu_ids": "0, 2"}, 2, ["0", "2"]),
    ({"gpu_ids": [1, 3, 4], "num_processes": 3}, 3, ["1", "3", "4"]),
])
def test_num_processes_and_gpu_ids(extra, n, ids):
    assert num_processes(job(**extra)) == n
    assert gpu_ids(job(**extra)) == ids


@pytest.mark.parametrize("extra, field", [
    ({"num_processes": 0}, "extra.num_processes"),
    ({"num_processes": "2"}, "extra.num_processes"),
    ({"num_processes": True}, "extra.num_processes"),
    ({"gpu_ids": "0,0"}, "extra.gpu_ids"),
    ({"gpu_ids": "a,b"}, "extra.gpu_ids"),
    ({"gpu_ids": [0, True]}, "extra.gpu_ids"),
    ({"gpu_ids": "0,1", "num_processes": 3}, "extra.gpu_ids"),
])
def test_bad_choices_name_the_field(extra, field):
    with pytest.raises(SpecError, match=field):
        num_processes(job(**extra))


def test_effective_batch():
    assert effective_batch(2, 1) == 2
    assert effective_batch(2, 4, grad_accum=3) == 24
    assert effective_batch(1, 4, pipeline_stages=2) == 2      # two model copies


def _accelerate_args(argv: list[str], start: int):
    """accelerate's own parser over the launcher's part of ``argv``."""
    return launch_command_parser().parse_args(argv[start:])


def test_builtin_launch_with_two_gpus_is_accelerate_launch(tmp_path):
    paths = JobPaths(tmp_path / "jobs" / "abc")
    launch = BuiltinTrainer().build_launch(job(num_processes=2, gpu_ids="0,1"), paths, False)
    argv = launch.argv
    assert argv[:3] == [sys.executable, "-m", ACCELERATE_LAUNCH]
    args = _accelerate_args(argv, 3)
    assert args.multi_gpu and not args.cpu
    assert (args.num_processes, args.num_machines, args.gpu_ids) == (2, 1, "0,1")
    assert args.mixed_precision == "no" and args.dynamo_backend == "no"
    assert 1024 < args.main_process_port < 65536
    assert args.module and args.training_script == RUNTIME_MODULE
    assert args.training_script_args == ["train", "--job", str(paths.spec),
                                         "--job-dir", str(paths.root)]
    resumed = BuiltinTrainer().build_launch(job(num_processes=2), paths, True).argv
    assert resumed[-1] == "--resume" and "--gpu_ids" not in resumed
    # one process: the plain module, no launcher
    single = BuiltinTrainer().build_launch(job(num_processes=1), paths, False).argv
    assert single[1:3] == ["-m", RUNTIME_MODULE]


def test_kohya_launch_with_two_gpus_puts_accelerate_in_front_of_the_shim(tree):  # noqa: F811
    tmp, backend = tree
    one = kohya_job(tmp, "sdxl", mixed_precision="fp16")
    paths = job_paths(tmp, one.job_id)
    single = backend.build_launch(one, paths, resume=False)
    two = kohya_job(tmp, "sdxl", mixed_precision="fp16",
                    extra={"num_processes": 2, "gpu_ids": "1,2"})
    launch = backend.build_launch(two, paths, resume=False)
    assert launch.argv[:3] == [single.argv[0], "-m", "accelerate.commands.launch"]
    args = _accelerate_args(launch.argv, 3)
    assert args.multi_gpu and args.num_processes == 2 and args.gpu_ids == "1,2"
    assert args.mixed_precision == "fp16"
    # after the launcher's options: exactly the single-GPU command (shim, context, script)
    assert [args.training_script, *args.training_script_args] == single.argv[1:]
    config = paths.configs / ACCELERATE_NAME
    assert args.config_file == str(config)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(launch.files[config], encoding="utf-8")
    loaded = load_config_from_file(str(config))      # accelerate reads our file
    assert (loaded.num_processes, loaded.gpu_ids, loaded.mixed_precision) == (2, "1,2", "fp16")
    assert str(loaded.distributed_type).endswith("MULTI_GPU")
    assert config not in single.files
    assert backend.capabilities()["multi_gpu"] == "accelerate"


def test_diffusion_pipe_launch_with_gpus_and_pipeline_stages(world):  # noqa: F811
    backend = DiffusionPipeBackend(world["install"])
    paths = world["paths"]
    base_fields = {"diffusers_path": str(world["models"] / "FLUX.1-dev")}
    single = backend.build_launch(dp_job(world), paths, resume=False)
    backend.make_parser()
    assert "--num_gpus=1" in single.argv and "--master_port" not in single.argv

    launch = backend.build_launch(dp_job(world, extra={"num_processes": 4, "fields": {
        **base_fields, "pipeline_stages": 2}}), paths, resume=False)
    parser = backend.make_parser()
    argv = launch.argv
    at = argv.index("train.py")
    launcher_opts = argv[1:at]
    assert "--num_gpus=4" in launcher_opts
    port = int(next(a for a in launcher_opts if a.startswith("--master_port=")).split("=")[1])
    # train.py sets MASTER_PORT from its own --master_port (default 29500): the same port
    assert argv[at:] == ["train.py", "--deepspeed", "--config", str(paths.configs / MAIN_TOML),
                         "--master_port", str(port)]
    main = tomllib.loads(launch.files[paths.configs / MAIN_TOML])
    assert main["pipeline_stages"] == 2
    # 4 GPUs / 2 stages = 2 model copies: an epoch of 3 photos x 2 repeats at batch 1 is
    # 3 steps instead of 6
    backend.build_launch(dp_job(world, repeats=2, extra={"num_processes": 4, "epochs": 2,
                                                         "fields": {**base_fields,
                                                                    "pipeline_stages": 2}}),
                         paths, resume=False)
    assert backend.make_parser().ctx.steps_per_epoch == 3
    assert parser.total == 1000

    named = backend.build_launch(dp_job(world, extra={"gpu_ids": "0,1", "fields": base_fields}),
                                 paths, resume=False).argv
    backend.make_parser()
    assert "--include=localhost:0,1" in named and not any(a.startswith("--num_gpus")
                                                          for a in named)
    assert deepspeed_launch_args(2, []) == ["--num_gpus=2"]
    assert backend.capabilities()["multi_gpu"] == "deepspeed"


@pytest.mark.parametrize("extra, field", [
    ({"num_processes": 3, "fields": {"pipeline_stages": 2}}, "fields.pipeline_stages"),
    ({"num_processes": 2, "fields": {"pipeline_stages": 2, "blocks_to_swap": 10}},
     "fields.blocks_to_swap"),
    ({"num_processes": 2, "fields": {"pipeline_stages": 0}}, "fields.pipeline_stages"),
])
def test_diffusion_pipe_refuses_stages_that_do_not_fit(world, extra, field):  # noqa: F811
    backend = DiffusionPipeBackend(world["install"])
    fields = {"diffusers_path": str(world["models"] / "FLUX.1-dev"), **extra["fields"]}
    with pytest.raises(SpecError, match=field):
        backend.build_launch(dp_job(world, extra={**extra, "fields": fields}), world["paths"],
                             resume=False)


def _run_shim(tmp_path: Path, rank: str) -> str:
    shim = tmp_path / "shim.py"
    shim.write_text(shim_source(), encoding="utf-8")
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint('trained', sys.argv[1:])\n", encoding="utf-8")
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"v": 1, "tool": "kohya", "job_dir": str(tmp_path)}))
    env = dict(os.environ, RANK=rank)
    done = subprocess.run([sys.executable, str(shim), str(context), "--", str(script), "--x"],
                          capture_output=True, text=True, env=env, timeout=60, check=True)
    return done.stdout


def test_shim_lines_come_from_rank_zero_only(tmp_path):
    zero = _run_shim(tmp_path, "0")
    assert "[isengard] context" in zero and "trained ['--x']" in zero
    one = _run_shim(tmp_path, "1")
    assert "[isengard]" not in one and "trained ['--x']" in one
