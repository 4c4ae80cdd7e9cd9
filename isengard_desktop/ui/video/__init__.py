"""The Video tab (planned: image-to-video and keyframe video through ComfyUI).
Exports :class:`VideoTab`."""

from .video_tab import VideoTab

__all__ = ["VideoTab"]
