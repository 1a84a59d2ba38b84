"""`nevus-seg models` with shared model files that are malformed or carry hostile metadata."""

from __future__ import annotations

import pytest
import torch

from napari_nevus_seg import ModelLibrary, build_model
from napari_nevus_seg.cli.main import main


def test_models_list_survives_odd_metadata_and_escapes_control_characters(tmp_path, capsys):
    lib = ModelLibrary(tmp_path / "lib")
    lib.save(build_model(width=2, depth=1, meta={"trained_at": "\x1b]0;pwned\x07\x1b[31mred\nfake line",
                                                 "best_val": {"dice": "excellent"}}), "odd")
    lib.save(build_model(width=2, depth=1, meta={"best_val": None, "fine_tune": {"gain": None}}), "nones")
    assert main(["models", "--library", str(lib.root), "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred\\nfake line" in out
    assert "odd" in out and "nones" in out
    assert "\nfake line" not in out   # the newline in the metadata did not start a line


@pytest.mark.parametrize("config", [{"width": 200000, "depth": 4}, {"width": 16, "depth": 60},
                                    {"width": 16, "depth": 4, "evil": 1}])
def test_importing_a_malformed_model_is_a_setup_error(tmp_path, capsys, config):
    ckpt = build_model(width=2, depth=1).to_checkpoint()
    ckpt["config"] = config
    path = tmp_path / "shared.pt"
    torch.save(ckpt, path)
    assert main(["models", "--library", str(tmp_path / "lib"), "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a usable napari-nevus-seg model" in err and "Traceback" not in err
    assert not (tmp_path / "lib").exists() or not any((tmp_path / "lib").iterdir())
