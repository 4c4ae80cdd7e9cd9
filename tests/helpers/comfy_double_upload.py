"""Our upload node inside the ComfyUI test double (option ``with_upload_node``).

A real ComfyUI with ``custom_nodes/isengard_lora_upload`` registers the node's routes on its
aiohttp app (``PromptServer.instance.routes``, added by ``server.add_routes()`` after custom
nodes load) and, because the files land in ``models/loras/isengard/``, lists them in the
LoRA choices as ``isengard/<file>`` (``folder_paths.get_filename_list("loras")`` walks
sub-folders). The double mounts the same handler module (``lora_store.py``, loaded from
``resources/``) and adds what is on disk there to its ``loras`` list the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.lora_node import lora_store_module

DEFAULT_TOKEN = "isengard-double-upload-token"


class UploadNode:
    """The node's store for one double: ``loras_dir/isengard`` on disk, one token."""

    def __init__(self, loras_dir: Path, token: str = DEFAULT_TOKEN,
                 max_bytes: int | None = None) -> None:
        mod = lora_store_module()
        self.loras_dir = Path(loras_dir)
        self.token = token
        self.store = mod.LoraStore(self.loras_dir / "isengard", lambda: self.token or None,
                                   max_bytes=max_bytes or mod.DEFAULT_MAX_BYTES)
        self.posts = 0

    def add_routes(self, router: Any) -> None:
        store = self.store

        async def post(request: Any) -> Any:
            self.posts += 1
            return await store.post(request)

        router.add_post("/isengard/lora", post)
        router.add_get("/isengard/lora", store.get)

    def listed(self) -> list[str]:
        """The uploaded files as ComfyUI lists them (POSIX separators, as on Linux)."""
        folder = self.store.folder
        if not folder.is_dir():
            return []
        return sorted(f"isengard/{p.name}" for p in folder.iterdir()
                      if p.is_file() and p.suffix == ".safetensors")
