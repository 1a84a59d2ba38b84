"""Data-set discovery: argument errors (layouts are tested in test_io.py)."""

from __future__ import annotations

import pytest

from napari_nevus_seg import discover_cases


def test_discover_cases_on_a_file_says_it_is_a_file(tmp_path):
    f = tmp_path / "img.png"
    f.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        discover_cases(f)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        discover_cases(tmp_path / "missing")
