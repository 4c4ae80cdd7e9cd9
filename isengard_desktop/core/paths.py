"""Where the app keeps its files.

By default the folders follow the platform's conventions (platformdirs). When the environment
variable ``ISENGARD_HOME`` is set, everything — data, models, outputs, logs, tmp, cache — lives
under that one folder (portable installs and tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

ENV_HOME = "ISENGARD_HOME"
_APP = "isengard-desktop"
# the app's models folder uses ComfyUI's layout: these sub-folders (the catalogue's ``folder``
# values and the other folders ComfyUI lists); created on demand by ensure_model_layout
MODEL_LAYOUT = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras",
                "controlnet", "clip_vision", "ipadapter", "upscale_models", "ultralytics/bbox",
                "ultralytics/segm", "sams", "embeddings")


def ensure_model_layout(models: Path) -> list[Path]:
    """Create ComfyUI's sub-folders in ``models`` (those missing); returns them all.
    Blocking (a few mkdirs): call it off the UI thread."""
    folders = [models / name for name in MODEL_LAYOUT]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@dataclass(frozen=True)
class AppPaths:
    """All folders the app writes to. Create them with :meth:`ensure`."""

    data: Path
    models: Path
    outputs: Path
    logs: Path
    tmp: Path
    cache: Path
    config: Path
    portable: bool

    @property
    def db_file(self) -> Path:
        return self.data / "isengard.sqlite3"

    @property
    def characters(self) -> Path:
        return self.data / "characters"

    @property
    def thumbnails(self) -> Path:
        return self.cache / "thumbnails"

    @property
    def loras(self) -> Path:
        """Finished LoRAs, one file each; a managed ComfyUI lists this folder."""
        return self.data / "loras"

    @property
    def app_logs(self) -> Path:
        return self.logs / "app"

    @property
    def jobs(self) -> Path:
        return self.data / "jobs"

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.json"

    def ensure_model_layout(self) -> list[Path]:
        """:func:`ensure_model_layout` for :attr:`models`."""
        return ensure_model_layout(self.models)

    def ensure(self) -> AppPaths:
        for folder in (self.data, self.models, self.outputs, self.logs, self.tmp, self.cache,
                       self.config, self.characters, self.thumbnails, self.app_logs, self.jobs,
                       self.loras):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def as_dict(self) -> dict[str, str]:
        return {
            "data": str(self.data), "models": str(self.models), "outputs": str(self.outputs),
            "logs": str(self.logs), "tmp": str(self.tmp), "cache": str(self.cache),
            "config": str(self.config),
        }


def resolve_paths(env: Mapping[str, str] | None = None) -> AppPaths:
    """Folders for this run: ``ISENGARD_HOME`` if set, else the platform defaults."""
    env = os.environ if env is None else env
    home = env.get(ENV_HOME, "").strip()
    if home:
        root = Path(home).expanduser().resolve()
        return AppPaths(
            data=root / "data", models=root / "models", outputs=root / "outputs",
            logs=root / "logs", tmp=root / "tmp", cache=root / "cache", config=root / "config",
            portable=True,
        )
    dirs = platformdirs.PlatformDirs(_APP, appauthor=False)
    data = Path(dirs.user_data_dir)
    return AppPaths(
        data=data, models=data / "models", outputs=data / "outputs",
        logs=Path(dirs.user_log_dir), tmp=Path(dirs.user_cache_dir) / "tmp",
        cache=Path(dirs.user_cache_dir), config=Path(dirs.user_config_dir), portable=False,
    )
