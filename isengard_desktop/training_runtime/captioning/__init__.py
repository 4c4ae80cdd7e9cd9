"""The captioning child (runs in the trainer's Python, never in the app): Florence-2 through
transformers' native ``Florence2ForConditionalGeneration``, batched on the GPU with a CPU
fallback. Entry point ``python -m isengard_desktop.training_runtime.captioning``; the job file
and the event lines are ``core/captioning/job.py``."""
