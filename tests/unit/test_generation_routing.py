"""Routing of generation jobs across ComfyUI servers (core/comfy/routing.py, Qt-free)."""

from __future__ import annotations

import pytest

from isengard_desktop.core.comfy.routing import (ModelNeed, NoServerError, ServerView,
                                                 choose_server, combo_choices, lora_visibility,
                                                 main_model, models_from_object_info,
                                                 needs_from_graph, rank_servers, resolve_name)

SDXL = "sd_xl_base_1.0.safetensors"
FLUX = "flux1-dev.safetensors"
LORA = "alice-ohwx.safetensors"


def models(**folders: list[str]) -> dict[str, frozenset[str]]:
    return {k: frozenset(v) for k, v in folders.items()}


def server(key: str, *, healthy: bool = True, loaded: str = "", in_flight: int = 0,
           queue: int = 0, kind: str = "remote", **folders: list[str]) -> ServerView:
    return ServerView(key, f"{key}-label", kind, healthy, "ready" if healthy else "offline",
                      "" if healthy else "connection refused",
                      models(**folders) if folders or healthy else None, loaded, in_flight,
                      queue)


SDXL_NEEDS = (ModelNeed("checkpoints", SDXL),)
LORA_NEEDS = (ModelNeed("checkpoints", SDXL), ModelNeed("loras", LORA))


def test_object_info_lists_become_model_folders():
    info = {
        "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [[SDXL, "b.ckpt"], {}]}}},
        "LoraLoader": {"input": {"required": {"lora_name": [["x.safetensors"], {}]}}},
        "LoraLoaderModelOnly": {"input": {"required": {"lora_name": [[LORA], {}]}}},
        "UNETLoader": {"input": {"required": {"unet_name": ["COMBO", {"options": [FLUX]}]}}},
        "DualCLIPLoader": {"input": {"required": {"clip_name1": [["clip_l.safetensors"], {}],
                                                  "clip_name2": [["t5.safetensors"], {}]}}},
        "VAELoader": {"input": {"required": {"vae_name": [["ae.safetensors"], {}]}}},
    }
    found = models_from_object_info(info)
    assert found["checkpoints"] == {SDXL, "b.ckpt"}
    assert found["loras"] == {"x.safetensors", LORA}
    assert found["diffusion_models"] == {FLUX}
    assert found["text_encoders"] == {"clip_l.safetensors", "t5.safetensors"}
    assert found["vae"] == {"ae.safetensors"}
    assert found["upscale_models"] == frozenset()
    assert combo_choices(info, "Nope", "x") == []


def test_needs_from_graph_reads_loader_inputs():
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": FLUX}},
        "2": {"class_type": "DualCLIPLoader",
              "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5.safetensors"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "LoraLoaderModelOnly",
              "inputs": {"lora_name": LORA, "model": ["1", 0]}},
        "5": {"class_type": "KSampler", "inputs": {"seed": 1}},
    }
    needs = needs_from_graph(graph)
    assert [(n.folder, n.name) for n in needs] == [
        ("diffusion_models", FLUX), ("text_encoders", "clip_l.safetensors"),
        ("text_encoders", "t5.safetensors"), ("vae", "ae.safetensors"), ("loras", LORA)]
    assert main_model(needs) == FLUX
    assert needs[4].node_id == "4" and needs[4].class_type == "LoraLoaderModelOnly"


def test_only_servers_with_every_model_are_eligible():
    servers = [server("a", checkpoints=["other.safetensors"]),
               server("b", checkpoints=[SDXL])]
    assert choose_server(servers, SDXL_NEEDS).server == "b"


def test_unhealthy_servers_are_skipped():
    servers = [server("a", healthy=False), server("b", checkpoints=[SDXL])]
    assert choose_server(servers, SDXL_NEEDS).server == "b"


def test_loaded_model_wins_over_less_busy():
    servers = [server("idle", checkpoints=[SDXL]),
               server("warm", checkpoints=[SDXL], loaded=SDXL, in_flight=1, queue=2)]
    assert choose_server(servers, SDXL_NEEDS).server == "warm"


def test_least_busy_when_no_server_has_the_model_loaded():
    servers = [server("busy", checkpoints=[SDXL], in_flight=1, queue=1),
               server("quiet", checkpoints=[SDXL], queue=1),
               server("other-model", checkpoints=[SDXL], loaded="x.safetensors", queue=3)]
    routes, reasons = rank_servers(servers, SDXL_NEEDS)
    assert [r.server for r in routes] == ["quiet", "busy", "other-model"]
    assert reasons == {}


def test_ties_keep_the_configured_order():
    servers = [server("first", checkpoints=[SDXL]), server("second", checkpoints=[SDXL])]
    assert choose_server(servers, SDXL_NEEDS).server == "first"


def test_lora_job_never_goes_to_a_server_without_the_lora():
    servers = [server("fast", checkpoints=[SDXL], loaded=SDXL, loras=[]),
               server("slow", checkpoints=[SDXL], loras=[LORA], in_flight=3, queue=5)]
    assert choose_server(servers, LORA_NEEDS).server == "slow"
    only = [servers[0]]
    with pytest.raises(NoServerError) as err:
        choose_server(only, LORA_NEEDS, lora_folder="/data/loras")
    text = str(err.value)
    assert f"LoRA '{LORA}' is missing" in text
    assert "models/loras" in text and "/data/loras" in text and "fast-label" in text


def test_lora_found_in_a_subfolder_gives_the_server_name():
    servers = [server("a", checkpoints=[SDXL], loras=[f"isengard/{LORA}"])]
    route = choose_server(servers, LORA_NEEDS)
    assert route.name_for("loras", LORA) == f"isengard/{LORA}"
    assert route.name_for("checkpoints", SDXL) == SDXL


def test_resolve_name_rules():
    assert resolve_name(["a.safetensors"], "a.safetensors") == "a.safetensors"
    assert resolve_name(["sub\\a.safetensors"], "sub/a.safetensors") == "sub\\a.safetensors"
    assert resolve_name(["x/a.safetensors"], "a.safetensors") == "x/a.safetensors"
    assert resolve_name(["x/a.safetensors", "y/a.safetensors"], "a.safetensors") is None
    assert resolve_name(["X/A.safetensors"], "a.safetensors") == "X/A.safetensors"
    assert resolve_name([], "a.safetensors") is None


def test_retry_excludes_the_server_that_died():
    servers = [server("a", checkpoints=[SDXL], loaded=SDXL), server("b", checkpoints=[SDXL])]
    assert choose_server(servers, SDXL_NEEDS).server == "a"
    assert choose_server(servers, SDXL_NEEDS, exclude={"a"}).server == "b"
    with pytest.raises(NoServerError) as err:
        choose_server(servers, SDXL_NEEDS, exclude={"a", "b"})
    assert "already failed this job" in str(err.value)


def test_retry_never_picks_a_server_lacking_the_lora():
    servers = [server("a", checkpoints=[SDXL], loras=[LORA]),
               server("b", checkpoints=[SDXL], loras=[])]
    with pytest.raises(NoServerError) as err:
        choose_server(servers, LORA_NEEDS, exclude={"a"})
    assert "b-label" in str(err.value) and LORA in str(err.value)


def test_no_server_message_names_every_gap():
    servers = [server("a", checkpoints=["x.safetensors"], loras=[LORA]),
               server("b", healthy=False),
               server("c", kind="managed", checkpoints=[SDXL], loras=[])]
    with pytest.raises(NoServerError) as err:
        choose_server(servers, LORA_NEEDS, lora_folder="/data/loras")
    text = str(err.value)
    assert text.startswith("No ComfyUI server can run this job:")
    assert f"a-label: checkpoint '{SDXL}' is missing" in text
    assert "models/checkpoints" in text
    assert "b-label: it is offline (connection refused)" in text
    assert "c-label" in text and "managed ComfyUI lists Isengard's LoRA folder" in text
    assert set(err.value.reasons) == {"a", "b", "c"}


def test_no_servers_at_all_says_how_to_set_one_up():
    with pytest.raises(NoServerError) as err:
        choose_server([], SDXL_NEEDS)
    assert "Settings" in str(err.value)


def test_server_without_object_info_is_not_eligible():
    view = ServerView("a", "A", healthy=True, state="ready", models=None)
    with pytest.raises(NoServerError) as err:
        choose_server([view], SDXL_NEEDS)
    assert "model lists have not been read" in str(err.value)


def test_lora_visibility_per_server():
    servers = [server("has", loras=[f"chars/{LORA}"]),
               server("lacks", loras=["other.safetensors"]),
               server("managed", kind="managed", loras=[]),
               server("down", healthy=False)]
    out = lora_visibility(servers, f"/home/u/data/loras/{LORA}", lora_folder="/home/u/data/loras")
    assert out[0] == ("has-label", True, f"chars/{LORA}")
    assert out[1][0:2] == ("lacks-label", False)
    assert "copy alice-ohwx.safetensors into that server's models/loras" in out[1][2]
    assert "/home/u/data/loras" in out[1][2]
    assert out[2][1] is False and "managed ComfyUI" in out[2][2]
    assert out[3][1] is False and "offline" in out[3][2]
