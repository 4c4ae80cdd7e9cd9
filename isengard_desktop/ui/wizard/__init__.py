"""The first-run set-up assistant (also Help → Set-up assistant…): this computer, the data
folder, the trainer runtime, linking ComfyUI and models, the first character.
Exports :class:`FirstRunWizard` and :data:`PAGES`."""

from .wizard import PAGES, FirstRunWizard

__all__ = ["PAGES", "FirstRunWizard"]
