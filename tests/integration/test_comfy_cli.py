"""``isengard comfy-check`` and ``isengard generate`` as real child processes against the double."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.core.comfy.metadata import read_metadata
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]
MODELS = {"checkpoints": ["sd15_base.safetensors"], "loras": ["isengard/me.safetensors"],
          "upscale_models": ["4x-UltraSharp.pth"]}


def isengard(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isengard_desktop", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------- comfy-check

def test_comfy_check_text_report(make_comfy_double):
    double = make_comfy_double(models=MODELS, gpu_name="NVIDIA GeForce RTX 4090",
                               vram_total=24 * 2**30, vram_free=20 * 2**30)
    proc = isengard("comfy-check", "--url", double.url)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"ComfyUI at {double.url}: reachable, version 0.3.64" in out
    assert "GPU: NVIDIA GeForce RTX 4090 (24.0 GB VRAM, 20.0 GB free)" in out
    assert "Queue: 0 running, 0 waiting" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith(("  ok ", "  no "))}
    assert lines["sd15"].startswith("  ok ") and lines["sd15-lora"].startswith("  ok ")
    assert lines["upscale"].startswith("  ok ")
    assert lines["flux-dev"].startswith("  no ") and "missing: no diffusion model" in lines["flux-dev"]
    assert "Features:" in out and "upscale ok" in out


def test_comfy_check_json_and_no_runnable_workflow(make_comfy_double):
    double = make_comfy_double()          # no models at all, CPU device as recorded
    proc = isengard("comfy-check", "--url", double.url, "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reachable"] is True and report["comfyui_version"] == "0.3.64"
    assert report["device_type"] == "cpu" and report["queue_length"] == 0
    assert report["runnable"] == []
    by_name = {w["name"]: w for w in report["workflows"]}
    assert "sd15" in by_name and by_name["sd15"]["ok"] is False
    assert any("checkpoint" in m for m in by_name["sd15"]["missing"])


def test_comfy_check_unreachable_server():
    url = closed_port_url()
    proc = isengard("comfy-check", "--url", url)
    assert proc.returncode == 2
    assert f"Cannot reach ComfyUI at {url} (connection refused)" in proc.stderr
    proc = isengard("comfy-check", "--url", url, "--json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["reachable"] is False


# ---------------------------------------------------------------------- generate

def test_generate_writes_pngs_with_metadata(make_comfy_double, tmp_path):
    double = make_comfy_double(models=MODELS)
    out = tmp_path / "out"
    prompt = 'a "tower", {braces} and unicode ☃'
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15", "--prompt", prompt,
                    "--negative", "blurry", "--seed", "1234", "--width", "64", "--height", "96",
                    "--steps", "3", "--batch", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    paths = [Path(p) for p in proc.stdout.split()]
    assert [p.name for p in paths] == ["sd15_1234_01.png", "sd15_1234_02.png"]
    for path in paths:
        assert path.parent == out.resolve()
        with Image.open(path) as img:
            assert img.size == (64, 96)
        meta = read_metadata(path)
        assert meta["parameters"].startswith(prompt + "\nNegative prompt: blurry\n")
        assert "Seed: 1234" in meta["parameters"] and "Size: 64x96" in meta["parameters"]
        assert meta["prompt"]["6"]["inputs"]["text"] == prompt
        assert meta["isengard"]["workflow"] == "sd15" and meta["isengard"]["seed"] == 1234
    assert double.uploads == []                       # nothing to upload for txt2img
    sent = double.accepted_prompts[-1]
    assert sent["prompt"]["4"]["inputs"]["ckpt_name"] == "sd15_base.safetensors"
    assert "Using the model sd15_base.safetensors" in proc.stderr


def test_generate_with_a_lora_the_server_lists(make_comfy_double, tmp_path):
    double = make_comfy_double(models=MODELS)
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15-lora", "--prompt", "me",
                    "--lora", str(tmp_path / "loras" / "me.safetensors"), "--strength", "0.7",
                    "--steps", "2", "--width", "64", "--height", "64", "--out",
                    str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True and len(result["paths"]) == 1
    lora_node = double.accepted_prompts[-1]["prompt"]["10"]["inputs"]
    assert lora_node["lora_name"] == "isengard/me.safetensors"
    assert lora_node["strength_model"] == lora_node["strength_clip"] == 0.7
    assert "<lora:me:0.7>" in read_metadata(result["paths"][0])["parameters"]


def test_generate_lora_not_on_server_says_how_to_fix(make_comfy_double, tmp_path):
    double = make_comfy_double(models=MODELS)
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15-lora", "--prompt", "me",
                    "--lora", "/somewhere/other.safetensors", "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert f"ComfyUI at {double.url} does not list the LoRA other.safetensors" in proc.stderr
    assert "models/loras" in proc.stderr
    assert double.prompts == [] and proc.stdout == ""


def test_generate_prints_every_gap_and_posts_nothing(make_comfy_double, tmp_path):
    double = make_comfy_double(models=MODELS)
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15", "--prompt", "x",
                    "--model", "nope.safetensors", "--width", "99999", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "The workflow 'sd15' cannot run on ComfyUI at" in proc.stderr
    assert "checkpoint 'nope.safetensors' is not in the server's checkpoints list" in proc.stderr
    assert "input 'width' = 99999 is above the maximum 16384" in proc.stderr
    assert double.prompts == []


def test_generate_img2img_uploads_and_reports_a_runtime_error(make_comfy_double, tmp_path):
    double = make_comfy_double(models=MODELS)
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not really a png")
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15-img2img", "--prompt", "x",
                    "--image", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert double.uploads == [("photo.png", "", "input")]
    assert "(LoadImage)" in proc.stderr and "PIL.UnidentifiedImageError" in proc.stderr


def test_generate_upscale_takes_an_image_and_no_prompt(make_comfy_double, tmp_path):
    double = make_comfy_double(models=MODELS)
    src = tmp_path / "small.png"
    Image.new("RGB", (32, 24), (200, 10, 10)).save(src)
    proc = isengard("generate", "--url", double.url, "--workflow", "upscale", "--image", str(src),
                    "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (path,) = [Path(p) for p in proc.stdout.split()]
    assert path.name == "upscale_01.png" and len(double.uploads) == 1


@pytest.mark.parametrize("args,fragment", [
    (["--workflow", "nope", "--prompt", "x"], "There is no workflow named 'nope'"),
    (["--workflow", "sd15", "--prompt", "x", "--lora", "a.safetensors"],
     "does not load a LoRA. Use --workflow sd15-lora."),
    (["--workflow", "sd15-lora", "--prompt", "x"], "needs a LoRA: pass --lora FILE"),
    (["--workflow", "sd15"], "needs a prompt: pass --prompt TEXT"),
    (["--workflow", "upscale"], "needs an input image: pass --image FILE"),
])
def test_generate_usage_problems_exit_2(make_comfy_double, tmp_path, args, fragment):
    double = make_comfy_double(models=MODELS)
    proc = isengard("generate", "--url", double.url, *args, "--out", str(tmp_path))
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert double.prompts == []


def test_generate_unreachable_and_500(make_comfy_double, tmp_path):
    url = closed_port_url()
    proc = isengard("generate", "--url", url, "--workflow", "sd15", "--prompt", "x",
                    "--out", str(tmp_path))
    assert proc.returncode == 2 and f"Cannot reach ComfyUI at {url}" in proc.stderr
    double = make_comfy_double(models=MODELS)
    double.fail_500 = {"/prompt"}
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15", "--prompt", "x",
                    "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "answered POST /prompt with HTTP 500" in proc.stderr


# ---------------------------------------------------------------------- issue 10, items 13 and 17

def test_comfy_check_and_generate_go_by_the_model_family(make_comfy_double, tmp_path):
    """Only an SD 1.5 checkpoint: the SDXL workflows cannot run, and generate says why instead
    of running SDXL with the SD 1.5 file."""
    double = make_comfy_double(models=MODELS)
    proc = isengard("comfy-check", "--url", double.url)
    lines = {line.split()[1]: line for line in proc.stdout.splitlines()
             if line.startswith(("  ok ", "  no "))}
    assert lines["sd15"].startswith("  ok ")
    assert lines["sdxl"].startswith("  no ") and "sd15_base.safetensors (SD 1.5)" in lines["sdxl"]
    proc = isengard("generate", "--url", double.url, "--workflow", "sdxl", "--prompt", "x",
                    "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "no SDXL model on the server" in proc.stderr and "SD 1.5" in proc.stderr
    assert double.accepted_prompts == []


LOG_RECORD = r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d.*\b(INFO|WARNING|DEBUG|ERROR)\b"


def test_generate_says_where_the_job_waits_and_gives_up_at_the_timeout(make_comfy_double,
                                                                       tmp_path, monkeypatch):
    import re

    monkeypatch.setenv("ISENGARD_CLI_PROGRESS_S", "0.5")
    double = make_comfy_double(models=MODELS)
    double.hold_queue = True                     # ComfyUI keeps the job in its queue
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15", "--prompt", "x",
                    "--out", str(tmp_path / "out"), "--timeout", "3")
    assert proc.returncode == 1, proc.stderr
    assert "queued (position 1)" in proc.stderr
    assert "Gave up after 3 s" in proc.stderr
    assert not re.search(LOG_RECORD, proc.stderr, re.M), proc.stderr
    double.hold_queue = False
    double.hang_next_prompt = True               # a node that never finishes
    proc = isengard("generate", "--url", double.url, "--workflow", "sd15", "--prompt", "x",
                    "--out", str(tmp_path / "out"), "--timeout", "3")
    double.release_hang()
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"running node \S+ \(\w+\) for \d+ s", proc.stderr), proc.stderr
    assert not re.search(LOG_RECORD, proc.stderr, re.M), proc.stderr
