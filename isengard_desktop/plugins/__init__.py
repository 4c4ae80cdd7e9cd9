"""Trainer backends behind ``interface.py``, looked up by key in ``registry.py``: the built-in
trainer and one package per external trainer (ai_toolkit, kohya, diffusion_pipe; shared pieces in external)."""
