"""The ComfyUI Isengard installs for the user: the pinned release (``release``), its folder and
state under ``<data>/comfyui/<tag>/`` (``layout``) and safe unpacking of its archive
(``archive``). No Qt; the install itself runs in ``services.generation.comfy_install``."""

from .archive import ArchiveError, safe_extract
from .layout import ComfyInstallStatus, inspect_install, install_folder
from .release import ComfyRelease, ReleaseError, load_release

__all__ = ["ArchiveError", "ComfyInstallStatus", "ComfyRelease", "ReleaseError",
           "inspect_install", "install_folder", "load_release", "safe_extract"]
