"""A full disk under every command that writes: one line, exit status 3, nothing half-written, earlier files kept."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from PIL import Image

from napari_nevus_seg import ModelLibrary, build_model, save_model, synthetic_lesion_image
from napari_nevus_seg.cli.main import main
from napari_nevus_seg.training.store import TrainingStore

TINY = ["--size", "32", "--width", "4", "--depth", "2", "--batch-size", "4", "--device", "cpu", "-q"]


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _tiny_model_file(path):
    torch.manual_seed(1)
    return save_model(build_model(width=4, depth=2, preprocess={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}),
                      path)


def _visible(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_library_import_on_a_full_disk_exits_3_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    src = _tiny_model_file(tmp_path / "tiny.pt")
    lib = ModelLibrary(tmp_path / "lib")
    lib.save(_load(src), "kept")
    before = _visible(lib.root)

    def save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a model")
        _no_space()

    monkeypatch.setattr(torch, "save", save)
    rc = main(["models", "--library", str(lib.root), "import", str(src), "--name", "new"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "No space left on device: the disk is full" in err and "Traceback" not in err
    assert _visible(lib.root) == before                      # no half model, no temporary file
    assert [e.name for e in ModelLibrary(lib.root).list()] == ["kept"]


def _load(path):
    from napari_nevus_seg import load_model

    return load_model(path)


def _dataset(folder, n=3):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        case = synthetic_lesion_image(seed=i, shape=(48, 64))
        Image.fromarray(case.image).save(folder / "images" / f"c{i}.png")
        Image.fromarray(((case.labels > 0) * 255).astype(np.uint8)).save(folder / "masks" / f"c{i}.png")
    return folder


def test_train_on_a_full_disk_exits_3_and_keeps_the_previous_model(tmp_path, capsys, monkeypatch):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "m.pt"
    out.write_bytes(b"the user's previous model")
    monkeypatch.setattr(torch, "save", lambda *a, **k: _no_space())
    rc = main(["train", str(data), "--out", str(out), "--overwrite", "--epochs", "1", "--val-fraction", "0.34",
               *TINY])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "the disk is full" in err and "Traceback" not in err
    assert out.read_bytes() == b"the user's previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m.pt"]   # no temporary file beside it


def test_training_store_add_on_a_full_disk_keeps_earlier_pairs(tmp_path, monkeypatch):
    store = TrainingStore(tmp_path / "store")
    first = synthetic_lesion_image(seed=1, shape=(48, 64))
    store.add(first.image, first.labels > 0, "first")
    second = synthetic_lesion_image(seed=2, shape=(48, 64))
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):   # the image fits, then the disk is full under the mask
        if "masks" in str(fp):
            _no_space()
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(OSError, match="No space left"):
        store.add(second.image, second.labels > 0, "second")
    monkeypatch.undo()
    assert store.names() == ["first"]                   # the half-added pair is not a pair
    assert not [p for p in (tmp_path / "store").rglob(".*.png")]   # no temporary file
    np.testing.assert_array_equal({n: m for n, _, m in store}["first"] > 0, first.labels > 0)
    store.add(second.image, second.labels > 0, "second")  # space freed: the same add works
    assert store.names() == ["first", "second"]
