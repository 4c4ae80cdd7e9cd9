"""The Video tab: keyframes → clip through ComfyUI, clip gallery with playback.
Exports :class:`VideoTab`."""

from .video_tab import VideoTab

__all__ = ["VideoTab"]
