"""The Characters tab: character cards, the create dialog by drop, and one character's photos.
Exports :class:`CharactersTab`."""

from .characters_tab import CharactersTab

__all__ = ["CharactersTab"]
