"""The golden-file normaliser gives the same text for a Windows job as for a POSIX one
(issue 13, item 14: golden paths and backslashes)."""

from __future__ import annotations

from tests.helpers.external_jobs import normalise


def test_windows_paths_read_like_posix_ones_in_golden_files():
    posix = normalise('model = "/tmp/t1/models/a.safetensors"\ndir: /tmp/t1/jobs/j b\n',
                      "/tmp/t1")
    toml = normalise('model = "C:\\\\Temp\\\\t1\\\\models\\\\a.safetensors"\n'
                     "dir: C:\\Temp\\t1\\jobs\\j b\n", "C:\\Temp\\t1")
    assert posix == toml == 'model = "$TMP/models/a.safetensors"\ndir: $TMP/jobs/j b\n'
