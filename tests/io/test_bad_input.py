"""Bad input through the API, the CLI and the napari reader function: clear messages, the other
images still processed, a non-zero exit where it applies, and nothing already on disk damaged."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_nevus_seg import CheckpointError, ImageReadError, load_model, read_image, segment, synthetic_lesion_image
from napari_nevus_seg.batch.work import read_output
from napari_nevus_seg.cli.main import main
from napari_nevus_seg.model.loading import default_model_path

LESION = synthetic_lesion_image(seed=3, shape=(96, 128)).image


def _jpeg_bytes() -> bytes:
    b = io.BytesIO()
    Image.fromarray(LESION).save(b, format="JPEG", quality=90)
    return b.getvalue()


def _save(arr, path: Path) -> None:
    if path.suffix == ".tif":
        tifffile.imwrite(path, arr)
    else:
        Image.fromarray(arr).save(path)


# name -> how to write it; None as expected message means: must be processed normally
BAD = {
    "zero bytes.jpg": (lambda p: p.write_bytes(b""), "empty"),
    "truncated.jpg": (lambda p: p.write_bytes(_jpeg_bytes()[:400]), "truncated"),
    "text.jpg": (lambda p: p.write_text("this is a text file, not a photograph"), "not a JPG image"),
    "one pixel.png": (lambda p: _save(np.zeros((1, 1, 3), np.uint8), p), "1x1 pixels"),
}
GOOD = {
    "ten.png": (lambda p: _save(LESION[:10, :10], p), (10, 10)),
    "sixteen bit.tif": (lambda p: _save(LESION.astype(np.uint16) * 257, p), (96, 128)),
    "float.tif": (lambda p: _save(LESION.astype(np.float32) / 255, p), (96, 128)),
    "nan.tif": (lambda p: _save(np.where((np.arange(128) % 7 == 0)[None, :, None], np.nan,
                                         LESION.astype(np.float32) / 255), p), (96, 128)),
    "rgba.png": (lambda p: _save(np.dstack([LESION, np.full((96, 128), 200, np.uint8)]), p), (96, 128)),
    "grey.png": (lambda p: _save(LESION.mean(-1).astype(np.uint8), p), (96, 128)),
    "lésion à Zürich 1.png": (lambda p: _save(LESION, p), (96, 128)),
}


@pytest.fixture
def zoo(tmp_path) -> Path:
    folder = tmp_path / "clinic folder ü"
    folder.mkdir()
    for name, (write, _) in {**BAD, **GOOD}.items():
        write(folder / name)
    return folder


@pytest.fixture(scope="module")
def model():
    return load_model()


# --------------------------------------------------------------------------------------------- API
@pytest.mark.parametrize("name", sorted(BAD))
def test_api_bad_files_raise_a_clear_error(zoo, name):
    with pytest.raises(ImageReadError) as info:
        read_image(zoo / name)
    msg = str(info.value)
    assert BAD[name][1] in msg and name in msg


@pytest.mark.parametrize("name", sorted(GOOD))
def test_api_odd_but_valid_files_segment(zoo, name, model):
    img = read_image(zoo / name)
    assert img.dtype == np.uint8 and img.shape == (*GOOD[name][1], 3)
    labels = segment(img, model=model)
    assert labels.shape == GOOD[name][1] and labels.dtype == np.int32 and labels.min() >= 0


def test_api_nan_pixels_become_black_not_nan(zoo):
    img = read_image(zoo / "nan.tif")
    assert np.all(img[:, ::7] == 0)
    np.testing.assert_array_equal(img[:, 1], LESION[:, 1])


# --------------------------------------------------------------------------------------------- CLI
def test_cli_batch_processes_good_files_and_names_each_bad_one(zoo, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["segment", str(zoo), "--out", str(out), "-q"])
    text = capsys.readouterr().out
    assert rc == 1
    assert f"{len(GOOD)} segmented" in text and f"{len(BAD)} failed" in text
    for name, (_, message) in BAD.items():
        line = next(line for line in text.splitlines() if f"FAILED {name}:" in line)
        assert message in line
    for name, (_, shape) in GOOD.items():
        labels = read_output(out / f"{Path(name).stem}.tif")
        assert labels.shape == shape
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{Path(n).stem}.tif" for n in GOOD)


def test_cli_unwritable_output_folder(zoo, tmp_path, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("keep me")
    rc = main(["segment", str(zoo), "--out", str(blocker / "sub"), "-q"])
    assert rc == 2
    assert "cannot write to the output folder" in capsys.readouterr().err
    assert blocker.read_text() == "keep me"
    rc = main(["segment", str(zoo), "--out", str(tmp_path / "o"), "--measure", str(blocker / "x.csv"), "-q"])
    assert rc == 2
    assert "cannot write the measurement table" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*.tif"))       # stopped before any image


def test_existing_outputs_survive_failing_writes(zoo, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["segment", str(zoo), "--out", str(out), "-q"]) == 1
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        dest = Path(args[0])
        dest.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", disk_full)
    capsys.readouterr()
    assert main(["segment", str(zoo), "--out", str(out), "--overwrite", "-q"]) == 3   # a full disk: exit 3
    text = capsys.readouterr().out
    assert "ERROR the disk is full" in text    # the run stopped at the first image it could not write
    assert 1 <= text.count("FAILED") and text.count("No space left on device") <= len(GOOD) + 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before      # byte for byte, no temporary files


# ------------------------------------------------------------------------------------ model files
class Bomb:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture
def bomb(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "bomb.pt"
    ckpt = torch.load(default_model_path(), map_location="cpu", weights_only=True)
    ckpt["meta"] = {"payload": Bomb(marker)}
    torch.save(ckpt, path)
    return path, marker


@pytest.fixture
def truncated(tmp_path) -> Path:
    data = default_model_path().read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_pickle_bomb_is_refused_without_running(bomb):
    path, marker = bomb
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_truncated_model_file_is_refused(truncated):
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(truncated)


@pytest.mark.parametrize("which", ["bomb", "truncated", "zero"])
def test_cli_bad_model_files_exit_2_and_touch_nothing(which, bomb, truncated, zoo, tmp_path, capsys):
    path = {"bomb": bomb[0], "truncated": truncated, "zero": tmp_path / "zero.pt"}[which]
    if which == "zero":
        path.write_bytes(b"")
    out = tmp_path / "out"
    rc = main(["segment", str(zoo), "--out", str(out), "--model", str(path), "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert {"bomb": "refused", "truncated": "corrupt or truncated", "zero": "empty"}[which] in err
    assert not bomb[1].exists()
    assert not list(out.glob("*.tif"))
    lib = tmp_path / "lib"
    assert main(["models", "--library", str(lib), "import", str(path)]) == 2
    assert not bomb[1].exists() and not list(lib.glob("*.pt"))
    assert main(["train", str(zoo), "--out", str(tmp_path / "m.pt"), "--init", str(path), "-q"]) == 2
    assert not (tmp_path / "m.pt").exists() and not bomb[1].exists()


# ------------------------------------------------------------------------------------ napari reader
def _reader():
    pytest.importorskip("napari")
    try:
        from napari_nevus_seg._napari._reader import napari_get_reader
    except ImportError:
        pytest.skip("the napari reader is not written yet")
    return napari_get_reader


@pytest.mark.parametrize("name", sorted(BAD))
def test_reader_bad_files_raise_a_clear_error(zoo, name):
    get = _reader()
    reader = get(str(zoo / name))
    assert reader is not None                  # our file types: claimed, then reported clearly
    with pytest.raises(ImageReadError) as info:
        reader(str(zoo / name))
    assert BAD[name][1] in str(info.value)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_reader_odd_but_valid_files_open_as_rgb(zoo, name):
    get = _reader()
    layers = get(str(zoo / name))(str(zoo / name))
    data, kwargs, kind = layers[0]
    assert kind == "image" and np.asarray(data).shape == (*GOOD[name][1], 3)
    assert np.asarray(data).dtype == np.uint8
