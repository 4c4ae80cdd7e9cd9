"""Helpers for the Generate-tab GUI tests (tests/gui/test_generate_tab.py): the user's
clicks, trained characters with LoRA files, the double as a remote server in Settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from safetensors.numpy import save_file

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.settings import Settings, save_settings

__all__ = ["CHECKPOINTS", "FACE_NODES", "LORA_FILE", "click",
           "configure_remote", "open_generate", "wait_ready", "write_lora"]

CHECKPOINTS = ["juggernautXL_v9.safetensors", "sd_xl_base_1.0.safetensors"]
LORA_FILE = "anna-sdxl-a1b2c3.safetensors"
FACE_NODES = {
    "FaceDetailer": {"input": {"required": {"image": ["IMAGE"]}}, "output": ["IMAGE"]},
    "UltralyticsDetectorProvider": {"input": {"required": {"model_name": [[], {}]}},
                                    "output": ["BBOX_DETECTOR", "SEGM_DETECTOR"]},
}


def click(qtbot, widget) -> None:
    assert widget.isEnabled(), widget.toolTip()
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def write_lora(path: Path) -> Path:
    """A small valid safetensors LoRA (kohya key names, as a trained one has)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight":
               rng.standard_normal((4, 32)).astype(np.float16),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight":
               rng.standard_normal((32, 4)).astype(np.float16),
               "lora_unet_down_blocks_0_attentions_0_proj_in.alpha":
               np.array(4.0, dtype=np.float16)}, str(path),
              metadata={"ss_network_dim": "4", "ss_network_alpha": "4"})
    return path


def configure_remote(url: str) -> None:
    """Settings as the user left them: the double as a remote server."""
    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(remote_servers=[url]))


def open_generate(qtbot, ctx):
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Generate"])
    tab = ctx.generate_tab
    qtbot.waitUntil(tab.isVisible, timeout=5000)
    return tab


def wait_ready(qtbot, tab, models=CHECKPOINTS):
    qtbot.waitUntil(lambda: any(s.state == "ready" for s in tab.backends.servers),
                    timeout=15_000)
    qtbot.waitUntil(lambda: [tab.form.model_combo.itemText(i)
                             for i in range(tab.form.model_combo.count())] == models,
                    timeout=15_000)
