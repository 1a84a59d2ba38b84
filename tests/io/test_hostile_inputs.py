"""Inputs made to cost time or memory, or to confuse: generated on the fly, each refused or bounded.

Kept as a module of their own so that these inputs stay handled (issue: hardening).
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nevus_seg import ImageReadError, measure, read_image, read_mask, segment, to_rgb_uint8
from napari_nevus_seg.inference.preprocess import MAX_WINDOWS, window_layout


def _tiled_tiff(path, side: int, tile: int = 1024) -> None:
    zeros = np.zeros((tile, tile), np.uint8)
    n = -(-side // tile)
    tifffile.imwrite(path, (zeros for _ in range(n * n)), shape=(side, side), dtype=np.uint8, tile=(tile, tile),
                     compression="zlib")


@pytest.mark.parametrize("reader", [read_image, read_mask])
def test_a_small_tiff_declaring_900_megapixels_is_refused_before_decoding(tmp_path, reader):
    path = tmp_path / "bomb.tif"
    _tiled_tiff(path, 30000)
    assert path.stat().st_size < 5_000_000
    with pytest.raises(ImageReadError, match="30000 x 30000 px .*NEVUS_SEG_MAX_PIXELS"):
        reader(path)


@pytest.mark.parametrize("reader", [read_image, read_mask])
def test_a_small_png_declaring_144_megapixels_is_refused_before_decoding(tmp_path, reader):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no Pillow decompression-bomb warning either: our limit decides
        with pytest.raises(ImageReadError, match="144 megapixels"):
            reader(path)


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(path)
    monkeypatch.setenv("NEVUS_SEG_MAX_PIXELS", "100000")
    with pytest.raises(ImageReadError, match="400 x 300 px"):
        read_image(path)
    monkeypatch.setenv("NEVUS_SEG_MAX_PIXELS", "120000")
    assert read_image(path).shape == (300, 400, 3)


def test_an_extreme_strip_gets_a_bounded_number_of_windows(tmp_path):
    assert len(window_layout((8, 99450), 192).starts) == MAX_WINDOWS
    assert len(window_layout((99450, 8), 192).starts) == MAX_WINDOWS
    assert len(window_layout((300, 1000), 192).starts) < MAX_WINDOWS     # ordinary elongated images unchanged
    path = tmp_path / "strip.png"
    strip = np.full((8, 99450, 3), 200, np.uint8)
    strip[:, 50000:50300] = 60
    Image.fromarray(strip).save(path)
    img = read_image(path)
    labels = segment(img)
    assert labels.shape == (8, 99450)
    assert len(measure(labels, img, pixel_size_mm=0.01)) == labels.max()


def test_float64_values_beyond_float32_are_scaled_not_called_nan():
    rng = np.random.default_rng(0)
    arr = rng.random((32, 32, 3)) * 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_rgb_uint8(arr)
    assert out.std() > 5          # the pattern survives (was: every value NaN, all black)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match="named pipe"):
        read_image(fifo)
    assert time.perf_counter() - t0 < 5


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_dangling_link_names_its_missing_target(tmp_path):
    link = tmp_path / "photo.png"
    link.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageReadError, match="a link to .*gone.png, which does not exist"):
        read_image(link)


def test_exif_orientation_is_reported_and_the_image_read_as_stored(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6   # "rotate 90 degrees clockwise to view"
    Image.fromarray(np.full((60, 80, 3), 150, np.uint8)).save(path, exif=exif)
    with pytest.warns(UserWarning, match="EXIF orientation tag \\(6\\)"):
        img = read_image(path)
    assert img.shape == (60, 80, 3)


def test_a_wrong_model_argument_says_what_is_expected():
    with pytest.raises(TypeError, match="model must be a LesionModel .* not int"):
        segment(np.zeros((64, 64, 3), np.uint8), model=123)
