"""Load our ComfyUI upload node's handler module (``resources/comfyui_nodes/…/lora_store.py``)
the way ComfyUI would see it: from its folder, not as an isengard_desktop module."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from isengard_desktop.core.comfy.lora_upload import NODE_FOLDER

_NAME = "isengard_lora_upload_store"


def lora_store_module() -> ModuleType:
    """The node's ``lora_store`` module (imported once)."""
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, NODE_FOLDER / "lora_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module
