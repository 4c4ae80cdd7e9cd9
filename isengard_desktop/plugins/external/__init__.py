"""Pieces shared by the external trainer backends: tqdm/error line parsing (``parsing``), launch
files and checkpoint records (``files``), and the stdlib stop-and-save launcher (``trainer_shim``)."""
