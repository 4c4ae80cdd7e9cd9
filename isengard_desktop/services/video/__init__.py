"""Video jobs through ComfyUI (image-to-video, keyframe sequences) and the clip gallery.
Exports :class:`VideoService` and :class:`ClipItem`."""

from .service import ClipItem, VideoService

__all__ = ["ClipItem", "VideoService"]
