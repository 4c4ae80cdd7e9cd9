"""The Video tab: video is in development; the page says so and what it will do."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from ..widgets.placeholder import PlannedFeatureWidget


class VideoTab(PlannedFeatureWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            "Video",
            "Video is in development. Nothing on this page runs yet — your characters and "
            "datasets are not affected.",
            [
                "Turn a kept still of your character into a short clip (image-to-video) "
                "through ComfyUI, on your GPU or a ComfyUI server on your network.",
                "Train video LoRAs (Wan, HunyuanVideo, LTX-Video) for a character with "
                "diffusion-pipe, from the same dataset.",
                "Live progress and previews, like image generation, and kept frames flow "
                "back into the dataset.",
            ],
            parent,
        )
