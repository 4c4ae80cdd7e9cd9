"""Headless command-line commands (no Qt): ``comfy-check`` and ``generate``."""
