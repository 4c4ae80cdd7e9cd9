"""Image generation through ComfyUI: the managed local server, remote servers, routing, jobs,
progress and the gallery. Exports :class:`GenerationService`."""

from .service import GenerationService

__all__ = ["GenerationService"]
