"""Isengard LoRA upload: a ComfyUI custom node package that adds one HTTP route.

Copy this folder into ComfyUI's ``custom_nodes/``, put a token in ``token.txt`` next to this
file (or set ``ISENGARD_UPLOAD_TOKEN``), restart ComfyUI. Isengard Desktop then uploads a
character's LoRA into ``models/loras/isengard/`` (see ``lora_store.py`` for the rules: token,
size limit ``ISENGARD_UPLOAD_MAX_MB``, SHA-256 check, bare ``.safetensors`` names, never
overwriting). It adds no node classes.
"""

from __future__ import annotations

import logging
from pathlib import Path

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

_HERE = Path(__file__).resolve().parent


def _register() -> None:
    try:
        import folder_paths  # type: ignore[import-not-found]
        from server import PromptServer  # type: ignore[import-not-found]
    except ImportError:          # imported outside ComfyUI (tests, tools): nothing to do
        return
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return
    from .lora_store import LoraStore, max_bytes_from_env, read_token

    loras = folder_paths.get_folder_paths("loras")
    if not loras:
        logging.warning("[isengard_lora_upload] ComfyUI has no loras folder; upload is off")
        return
    store = LoraStore(Path(loras[0]) / "isengard", lambda: read_token(_HERE),
                      max_bytes=max_bytes_from_env())
    store.add_to(server.routes)
    state = "on" if read_token(_HERE) else "off until token.txt is filled in"
    logging.info("[isengard_lora_upload] POST/GET /isengard/lora -> %s (%s)",
                 store.folder, state)


_register()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
