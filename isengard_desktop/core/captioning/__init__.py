"""Offline auto-captioning, Qt-free: caption post-processing (identity mode, trigger placement,
preamble clean-up), the per-character suggestion store, the captioning child's job file and
events, and the captioning models we know."""
