"""Code that runs only inside trainer child processes (torch, diffusers, peft): the built-in
trainer (``python -m isengard_desktop.training_runtime``), its loop, families and file writers."""
