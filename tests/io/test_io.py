"""Core I/O: read_image on every format/dtype/layout, bad files, masks, discovery, label files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nevus_seg.io.datasets import Case, discover_cases, iter_pairs, mask_for_image
from napari_nevus_seg.io.files import ImageReadError
from napari_nevus_seg.io.images import read_image, read_image_with_info
from napari_nevus_seg.io.intensity import intensity_full_scale, to_rgb_uint8
from napari_nevus_seg.io.labels import file_pixel_size, is_labels_file, read_labels, write_labels
from napari_nevus_seg.io.mask_files import read_mask
from napari_nevus_seg.io.synthetic import dataset_folder, synthetic_lesion_image


@pytest.fixture(scope="module")
def rgb():
    return synthetic_lesion_image(seed=1, shape=(64, 96)).image


# ------------------------------------------------------------------------------ formats and dtypes
def _gray_of(rgb):
    return np.asarray(Image.fromarray(rgb).convert("L"))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff", ".PNG"])
def test_lossless_rgb_exact(tmp_path, rgb, suffix):
    p = tmp_path / f"img{suffix}"
    tifffile.imwrite(p, rgb) if suffix.lower().startswith(".tif") else Image.fromarray(rgb).save(p)
    out, info = read_image_with_info(p)
    assert out.dtype == np.uint8 and out.shape == (64, 96, 3)
    assert np.array_equal(out, rgb)
    assert info.source_mode == "RGB" and info.source_dtype == "uint8" and info.pixel_size_mm is None


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_jpeg_close(tmp_path, rgb, suffix):
    p = tmp_path / f"img{suffix}"
    Image.fromarray(rgb).save(p, format="JPEG", quality=95)
    assert np.abs(read_image(p).astype(int) - rgb).mean() < 3


def test_cmyk_jpeg(tmp_path, rgb):
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(p, quality=95)
    out, info = read_image_with_info(p)
    assert info.source_mode == "CMYK" and out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".jpg", ".tif"])
def test_grayscale_copied_to_three_channels(tmp_path, rgb, suffix):
    gray = _gray_of(rgb)
    p = tmp_path / f"g{suffix}"
    tifffile.imwrite(p, gray) if suffix == ".tif" else Image.fromarray(gray).save(p, quality=95)
    out, info = read_image_with_info(p)
    assert info.source_mode == "gray"
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    tol = 2 if suffix == ".jpg" else 0
    assert np.abs(out[..., 0].astype(int) - gray).mean() <= tol


def test_rgba_composited_over_white(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent band
    rgba[10:20, :, 3] = 128  # half transparent
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(p)
    out, info = read_image_with_info(p)
    assert info.source_mode == "RGBA"
    assert (out[:10] == 255).all()
    assert np.array_equal(out[20:], rgb[20:])
    half = (rgb[10:20].astype(float) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(out[10:20] - half).max() <= 1


def test_gray_alpha(tmp_path, rgb):
    la = np.dstack([_gray_of(rgb), np.full(rgb.shape[:2], 255, np.uint8)])
    p = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(p)
    out, info = read_image_with_info(p)
    assert info.source_mode == "gray+alpha" and np.array_equal(out[..., 1], la[..., 0])


def test_16bit_gray_png_and_rgb_tiff(tmp_path, rgb):
    gray16 = _gray_of(rgb).astype(np.uint16) * 257
    p = tmp_path / "g16.png"
    Image.fromarray(gray16).save(p)
    out, info = read_image_with_info(p)
    assert info.source_dtype == "uint16"
    assert np.array_equal(out[..., 0], _gray_of(rgb))
    t = tmp_path / "rgb16.tif"
    tifffile.imwrite(t, rgb.astype(np.uint16) * 257)
    out, info = read_image_with_info(t)
    assert info.source_dtype == "uint16" and np.array_equal(out, rgb)


@pytest.mark.parametrize(("peak", "floating", "full"), [
    (0.5, True, 1.0), (1.0, True, 1.0), (1.0, False, 255.0), (200, False, 255.0), (255, False, 255.0),
    (256, False, 1023.0), (1023, False, 1023.0), (1024, False, 4095.0), (4095, False, 4095.0),
    (4096, False, 16383.0), (16384, False, 65535.0), (65535, False, 65535.0), (300.0, True, 1023.0),
    (1.002, True, 1.0), (2.0, True, 1.0), (2.5, True, 255.0)])
def test_intensity_full_scale(peak, floating, full):
    assert intensity_full_scale(peak, floating) == full


def test_a_few_hot_pixels_do_not_make_float_data_0_to_255():
    """[0, 1] float data with a share of values above 2 up to 1e-3 (hot pixels) stays [0, 1] data, clipped:
    one pixel of 2.5 used to turn the whole image near-black, in segment() and in measure() alike."""
    assert intensity_full_scale(2.5, True, over=1e-3) == 1.0
    assert intensity_full_scale(2.5, True, over=2e-3) == 255.0
    assert intensity_full_scale(2.5, False, over=0.0) == 255.0        # integers: unchanged
    from napari_nevus_seg.inference.preprocess import CONVERT_BAND_PIXELS, as_float_rgb, as_uint8_rgb

    clean = np.full((1200, CONVERT_BAND_PIXELS // 1000, 3), 0.5, np.float32)   # banded above 1 Mpx
    for img in (clean[:100, :100].copy(), clean.copy()):
        img[3, 3, 0] = 2.5
        u8 = as_uint8_rgb(img)
        assert u8[5, 5].tolist() == [128, 128, 128] and u8[3, 3, 0] == 255
        assert np.array_equal(to_rgb_uint8(img), u8)
    small = clean[:100, :100].copy()
    small[3, 3, 0] = 2.5
    assert as_float_rgb(small)[5, 5, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_high_bit_depth_integers_scaled_by_their_bit_depth(tmp_path, rgb, bits):
    # camera data of 10-14 bits in uint16: scaled by 2**bits - 1, not by 65535 (which made it near black)
    deep = (rgb.astype(np.uint32) * (2 ** bits - 1) // 255).astype(np.uint16)
    deep[0, 0] = 2 ** bits - 1                                  # the brightest value the camera gives
    expected = rgb.copy()
    expected[0, 0] = 255
    assert np.abs(to_rgb_uint8(deep).astype(int) - expected).max() <= 1
    t = tmp_path / f"cam{bits}.tif"
    tifffile.imwrite(t, deep)
    assert np.abs(read_image(t).astype(int) - expected).max() <= 1
    assert np.abs(to_rgb_uint8(deep.astype(np.float32)).astype(int) - expected).max() <= 1  # as floats too


@pytest.mark.parametrize("scale", [1 / 255, 1.0])
def test_float_tiff(tmp_path, rgb, scale):
    t = tmp_path / "f.tif"
    tifffile.imwrite(t, rgb.astype(np.float32) * scale, photometric="rgb")
    out, info = read_image_with_info(t)
    assert info.source_dtype == "float32"
    assert np.abs(out.astype(int) - rgb).max() <= 1


def test_float_nan_becomes_zero_with_a_warning():
    arr = np.full((10, 10), 0.5, np.float32)
    arr[0, 0] = np.nan
    with pytest.warns(UserWarning, match=r"1 of 100 pixel values \(1 %\) are NaN or infinite"):
        out = to_rgb_uint8(arr)
    assert out[0, 0, 0] == 0 and out[5, 5, 0] == 128


@pytest.mark.parametrize("band_pixels", [None, 1000])
def test_segmenting_an_image_with_nan_warns(monkeypatch, band_pixels):
    """NaN pixels become black (the colours there are not the image's): say so, whole or in bands."""
    from napari_nevus_seg.inference import preprocess

    if band_pixels:
        monkeypatch.setattr(preprocess, "CONVERT_BAND_PIXELS", band_pixels)
    img = np.full((60, 80, 3), 0.5, np.float32)
    img[:, :40] = np.nan
    with pytest.warns(UserWarning, match=r"7200 of 14400 pixel values \(50 %\) are NaN"):
        out = preprocess.as_uint8_rgb(img)
    assert out[0, 0, 0] == 0 and out[0, 79, 0] == 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess.as_uint8_rgb(np.nan_to_num(img))          # finite images: no warning


def test_palette_png_and_tiff(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(colors=16)
    p = tmp_path / "pal.png"
    pal.save(p)
    out, info = read_image_with_info(p)
    assert info.source_mode == "palette"
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))
    t = tmp_path / "pal.tif"
    pal.save(t)
    out_t, info_t = read_image_with_info(t)
    assert info_t.source_mode == "palette"
    assert np.abs(out_t.astype(int) - np.asarray(pal.convert("RGB"))).max() <= 1


def test_one_bit_bmp(tmp_path):
    bits = np.zeros((20, 30), bool)
    bits[5:15, 10:20] = True
    p = tmp_path / "bits.bmp"
    Image.fromarray(bits).save(p)
    out = read_image(p)
    assert (out[bits] == 255).all() and (out[~bits] == 0).all()


def test_planar_and_multipage_tiff(tmp_path, rgb):
    t = tmp_path / "planar.tif"
    tifffile.imwrite(t, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(t), rgb)
    m = tmp_path / "pages.tif"
    with tifffile.TiffWriter(m) as tw:
        tw.write(rgb, photometric="rgb")
        tw.write(255 - rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="holds 2 pages; only the first"):
        assert np.array_equal(read_image(m), rgb)
    stack = tmp_path / "stack.tif"                            # a grey stack written page by page
    tifffile.imwrite(stack, np.stack([rgb[..., 0]] * 5))
    with pytest.warns(UserWarning, match="holds 5 pages"):
        assert read_image(stack).shape == rgb.shape


@pytest.mark.parametrize("resolution, unit, expected", [
    ((500.0, 500.0), "CENTIMETER", (0.02, 0.02)),  # 500 px/cm
    ((2540.0, 1270.0), "INCH", (0.02, 0.01)),  # x 2540 dpi, y 1270 dpi -> (row, col) = (0.02, 0.01)
    ((72.0, 72.0), "INCH", None),  # the meaningless 72-dpi default
    ((300.0, 300.0), "NONE", None),  # no physical unit
])
def test_tiff_resolution_tags_give_pixel_size(tmp_path, rgb, resolution, unit, expected):
    t = tmp_path / "res.tif"
    tifffile.imwrite(t, rgb, resolution=resolution, resolutionunit=unit)
    _, info = read_image_with_info(t)
    if expected is None:
        assert info.pixel_size_mm is None
    else:
        assert info.pixel_size_mm == pytest.approx(expected)
    assert file_pixel_size(t) == info.pixel_size_mm


# ------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_zero_byte_file(tmp_path, suffix):
    p = tmp_path / f"empty{suffix}"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty \(0 bytes\)"):
        read_image(p)


def test_truncated_jpeg(tmp_path, rgb):
    p = tmp_path / "cut.jpg"
    Image.fromarray(rgb).save(p, quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(p)


def test_truncated_png(tmp_path, rgb):
    p = tmp_path / "cut.png"
    Image.fromarray(rgb).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(p)


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPG"), (".tif", "TIF")])
def test_text_file_with_image_name(tmp_path, suffix, fmt):
    p = tmp_path / f"notes{suffix}"
    p.write_text("these are my notes, not an image\n")
    with pytest.raises(ImageReadError, match=f"not a {fmt} image"):
        read_image(p)


@pytest.mark.parametrize("size", [(1, 1), (5, 40)])
def test_tiny_image(tmp_path, size):
    p = tmp_path / "tiny.png"
    Image.new("RGB", size).save(p)
    with pytest.raises(ImageReadError, match=rf"only {size[0]}x{size[1]} pixels; at least 8x8"):
        read_image(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


def test_unsupported_shapes_and_types(tmp_path):
    t = tmp_path / "five.tif"
    tifffile.imwrite(t, np.zeros((20, 20, 5), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(ImageReadError, match=r"five.tif: unsupported image shape \(20, 20, 5\)"):
        read_image(t)
    with pytest.raises(ImageReadError, match="unsupported image shape"):
        to_rgb_uint8(np.zeros((2, 20, 20, 3), np.uint8))
    with pytest.raises(ImageReadError, match="negative"):
        to_rgb_uint8(np.full((10, 10), -300, np.int16))
    with pytest.raises(ImageReadError, match="exceed the 16-bit range"):
        to_rgb_uint8(np.full((10, 10), 70000, np.int32))
    with pytest.raises(ImageReadError, match="unsupported pixel type"):
        to_rgb_uint8(np.zeros((20, 20), complex))


def test_image_read_error_is_a_value_error():
    assert issubclass(ImageReadError, ValueError)


# ----------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("kind", ["255", "01", "bits", "rgb", "tif", "labels 0..3", "0/100", "01 + stray 2",
                                  "red", "blue", "palette"])
def test_read_mask_variants(tmp_path, kind):
    m = np.zeros((20, 30), bool)
    m[4:12, 6:20] = True
    p = tmp_path / ("m.tif" if kind == "tif" else "m.png" if kind != "bits" else "m.bmp")
    u8 = m.astype(np.uint8)
    if kind == "255":
        Image.fromarray(u8 * 255).save(p)
    elif kind == "01":
        Image.fromarray(u8).save(p)
    elif kind == "bits":
        Image.fromarray(m).save(p)
    elif kind == "rgb":
        Image.fromarray(np.dstack([u8 * 255] * 3)).save(p)
    elif kind == "labels 0..3":     # numbered lesions in an 8-bit file
        lab = u8.copy()
        lab[4:12, 13:20] = 3
        Image.fromarray(lab).save(p)
    elif kind == "0/100":
        Image.fromarray(u8 * 100).save(p)
    elif kind == "01 + stray 2":
        lab = u8.copy()
        lab[5, 7] = 2
        Image.fromarray(lab).save(p)
    elif kind in ("red", "blue"):   # a coloured lesion: converting to grey made it dark (76, 29)
        rgb = np.zeros((20, 30, 3), np.uint8)
        rgb[m, 0 if kind == "red" else 2] = 255
        Image.fromarray(rgb).save(p)
    elif kind == "palette":
        im = Image.fromarray(u8, mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
        im.save(p)
    else:
        tifffile.imwrite(p, m.astype(np.uint16) * 7)
    out = read_mask(p)
    assert out.dtype == bool and np.array_equal(out, m)


def _mask255():
    m = np.zeros((60, 80), np.uint8)
    m[10:30, 20:50] = 255
    return m


@pytest.mark.parametrize("layout", ["H,W,1", "H,W,2 tifffile", "H,W,2 gray+alpha tag", "H,W,2 pillow",
                                    "1,H,W", "3,H,W planar", "H,W,3"])
def test_read_mask_and_read_labels_take_the_channel_not_row_0(tmp_path, layout):
    # (H, W, 1) and (H, W, 2) TIFF masks were read as their first row: shape (80, 1) / (80, 2)
    m = _mask255()
    alpha = np.full_like(m, 255)
    p = tmp_path / "m.tif"
    if layout == "H,W,1":
        tifffile.imwrite(p, m[..., None])
    elif layout == "H,W,2 tifffile":  # stored by tifffile as 60 pages of (80, 2) with the shape in its metadata
        tifffile.imwrite(p, np.dstack([m, alpha]))
    elif layout == "H,W,2 gray+alpha tag":
        tifffile.imwrite(p, np.dstack([m, alpha]), photometric="minisblack", extrasamples=["unassalpha"])
    elif layout == "H,W,2 pillow":
        Image.fromarray(np.dstack([m, alpha]), mode="LA").save(p)
    elif layout == "1,H,W":
        tifffile.imwrite(p, m[None])
    elif layout == "3,H,W planar":
        tifffile.imwrite(p, np.stack([m, m // 2, m]), photometric="rgb", planarconfig="separate")
    else:
        tifffile.imwrite(p, np.dstack([m, m, m]), photometric="rgb")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one image, no "pages" warning
        out, labels = read_mask(p), read_labels(p)
    assert out.shape == (60, 80) and np.array_equal(out, m > 0)
    assert labels.shape == (60, 80) and labels.dtype == np.uint8 and np.array_equal(labels, (m > 0).astype(np.uint8))


def test_read_labels_16bit_instances_with_one_or_two_channels(tmp_path):
    lab = np.zeros((40, 50), np.uint16)
    lab[5:15, 5:15] = 3
    lab[20:30, 20:45] = 300
    tifffile.imwrite(tmp_path / "a.tif", lab[..., None])
    tifffile.imwrite(tmp_path / "b.tif", np.dstack([lab, np.full_like(lab, 65535)]),
                     photometric="minisblack", extrasamples=["unassalpha"])
    for name in ("a.tif", "b.tif"):
        back = read_labels(tmp_path / name)
        assert back.dtype == np.uint16 and np.array_equal(back, lab)


def test_multipage_mask_reads_page_0_with_a_warning(tmp_path):
    m = _mask255()
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([m, 255 - m]))
    with pytest.warns(UserWarning, match="holds 2 pages; only the first"):
        assert np.array_equal(read_mask(tmp_path / "stack.tif"), m > 0)
    with pytest.warns(UserWarning, match="holds 2 pages; only the first"):
        assert np.array_equal(read_labels(tmp_path / "stack.tif"), (m > 0).astype(np.uint8))


def test_read_labels_refuses_negative_and_empty_tiffs(tmp_path):
    lab = np.zeros((20, 20), np.int32)
    lab[2:6, 2:6] = -1
    tifffile.imwrite(tmp_path / "neg.tif", lab)
    with pytest.raises(ImageReadError, match="negative"):
        read_labels(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 0), np.uint16))
    for read in (read_labels, read_mask):
        with pytest.raises(ImageReadError, match="no (image|pixels)"):
            read(tmp_path / "empty.tif")


# ------------------------------------------------------------------------------------- discovery
def test_ph2_single_case_and_image_folder(tmp_path):
    cases = dataset_folder(tmp_path, "ph2", n=2)
    case_dir = tmp_path / "PH2 Dataset images" / "IMD002"
    assert discover_cases(case_dir) == [cases[1]]
    assert discover_cases(case_dir / "IMD002_Dermoscopic_Image") == [cases[1]]
    assert discover_cases(tmp_path / "PH2 Dataset images") == cases


@pytest.mark.parametrize("layout", ["ph2", "isic_flat", "isic_folders", "images_masks"])
def test_mask_for_image_every_layout(tmp_path, layout):
    for case in dataset_folder(tmp_path, layout, n=2):
        assert mask_for_image(case.image) == case.mask
        assert mask_for_image(case.mask) is None


@pytest.mark.parametrize("layout", ["isic_folders", "images_masks"])
def test_the_image_folder_of_a_layout_opened_itself_finds_its_masks(tmp_path, layout):
    cases = dataset_folder(tmp_path, layout, n=3)
    image_folder = cases[0].image.parent
    assert image_folder != tmp_path
    found = discover_cases(image_folder)
    assert [(c.image, c.mask) for c in found] == [(c.image, c.mask) for c in cases]


def test_images_without_masks_and_unpacking(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("x")
    cases = discover_cases(tmp_path)
    assert [(c.name, c.mask) for c in cases] == [("a", None), ("b", None)]
    name, image, mask = cases[0]
    assert (name, image, mask) == ("a", tmp_path / "a.png", None)
    assert list(iter_pairs(tmp_path)) == []
    assert [n for n, _, m in iter_pairs(tmp_path, require_mask=False)] == ["a", "b"]


def test_discover_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError):
        discover_cases(tmp_path / "nope")
    assert discover_cases(tmp_path) == []


def test_iter_pairs_reads_and_checks_shapes(tmp_path):
    cases = dataset_folder(tmp_path, "images_masks", n=2, shape=(64, 80))
    pairs = list(iter_pairs(tmp_path))
    assert [n for n, _, _ in pairs] == ["case_000", "case_001"]
    assert pairs[0][1].shape == (64, 80, 3) and pairs[0][2].dtype == bool
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(cases[1].mask)
    with pytest.raises(ImageReadError, match="mask is 10x10 but its image is 80x64"):
        list(iter_pairs(tmp_path))


def test_case_is_a_dataclass():
    c = Case("x", tmp := __import__("pathlib").Path("x.png"))
    assert c.mask is None and c.image == tmp


# ---------------------------------------------------------------------------------- label files
def test_write_labels_png_binary_round_trip(tmp_path, synthetic_case):
    p = write_labels(synthetic_case.mask, tmp_path / "m.png")
    raw = np.asarray(Image.open(p))
    assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
    assert np.array_equal(read_mask(p), synthetic_case.mask)
    assert np.array_equal(read_labels(p), synthetic_case.mask.astype(np.uint8))
    assert is_labels_file(p)


def test_write_labels_tif_instances_and_pixel_size(tmp_path):
    case = synthetic_lesion_image(seed=3, n_lesions=3)
    p = write_labels(case.labels, tmp_path / "inst.tif", pixel_size_mm=0.02)
    back = read_labels(p)
    assert back.dtype == np.uint16 and np.array_equal(back, case.labels)
    assert file_pixel_size(p) == pytest.approx((0.02, 0.02))
    assert is_labels_file(p)


def test_write_labels_uint32_when_needed(tmp_path):
    lab = np.zeros((16, 16), np.int64)
    lab[2:5, 2:5] = 70000
    lab[8:10, 8:10] = 3
    back = read_labels(write_labels(lab, tmp_path / "big.tiff"))
    assert back.dtype == np.uint32 and np.array_equal(back, lab)


def test_read_labels_tiff_with_label_255(tmp_path):
    import tifffile

    lab = np.zeros((20, 20), np.uint16)
    lab[2:6, 2:6] = 255  # the 255th lesion, not a binary mask
    lab[10:14, 10:14] = 7
    tifffile.imwrite(tmp_path / "inst.tif", lab)
    assert np.array_equal(read_labels(tmp_path / "inst.tif"), lab)
    small = lab.astype(np.uint8)  # 8-bit TIFF with several values: still instances
    tifffile.imwrite(tmp_path / "inst8.tif", small)
    assert np.array_equal(read_labels(tmp_path / "inst8.tif"), small)
    binary = np.where(lab > 0, 255, 0).astype(np.uint8)  # 0/255 8-bit TIFF: a binary mask
    tifffile.imwrite(tmp_path / "mask.tif", binary)
    assert np.array_equal(read_labels(tmp_path / "mask.tif"), (lab > 0).astype(np.uint8))


def test_to_rgb_uint8_returns_rgb_uint8_unchanged():
    from napari_nevus_seg.io.intensity import to_rgb_uint8

    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = to_rgb_uint8(img)
    assert out.dtype == np.uint8 and np.array_equal(out, img)
    view = img[:, ::2]  # non-contiguous input comes back contiguous
    assert to_rgb_uint8(view).flags.c_contiguous and np.array_equal(to_rgb_uint8(view), view)


def test_write_labels_png_with_instances(tmp_path):
    lab = synthetic_lesion_image(seed=3, n_lesions=2).labels
    with pytest.raises(ValueError, match=r"numbered up to 2.*Save as \.tif"):
        write_labels(lab, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    merged = read_labels(write_labels(lab, tmp_path / "x.png", binary=True))
    assert np.array_equal(merged, (lab > 0).astype(np.uint8))


@pytest.mark.parametrize("labels, path, error, match", [
    (np.zeros((8, 8), int), "x.jpg", ValueError, "use .png"),
    (np.zeros((8, 8), int), "nofolder/x.tif", FileNotFoundError, "does not exist"),
    (np.full((8, 8), -1), "x.tif", ValueError, ">= 0"),
    (np.full((8, 8), 0.5), "x.tif", ValueError, "whole numbers"),
    (np.zeros((2, 8, 8), int), "x.tif", ValueError, "2-D"),
    (np.zeros((8, 8), complex), "x.tif", ValueError, "integers or booleans"),
])
def test_write_labels_errors(tmp_path, labels, path, error, match):
    with pytest.raises(error, match=match):
        write_labels(labels, tmp_path / path)


@pytest.mark.parametrize("bad, match", [
    (0, "positive number"), (-1, "positive number"), (float("nan"), "positive number"),
    (float("inf"), "positive number"), ("0.01", "str"), (True, "bool"), ((0.01, 0.02, 0.03), "pair"),
    ((0.01, -0.02), "positive number"), (1e-30, "cannot be stored"), (1e30, "cannot be stored"),
])
def test_write_labels_bad_pixel_size_is_refused_before_writing(tmp_path, bad, match):
    # was ZeroDivisionError, struct.error, "cannot convert NaN to integer ratio", TypeError,
    # "max_denominator should be at least 1" from inside the TIFF writer
    lab = np.zeros((8, 8), np.uint8)
    lab[2:5, 2:5] = 1
    target = write_labels(lab * 2, tmp_path / "keep.tif", pixel_size_mm=0.02)
    before = target.read_bytes()
    for path in (target, tmp_path / "new.tif"):
        with pytest.raises(ValueError, match=match):
            write_labels(lab, path, pixel_size_mm=bad)
    assert target.read_bytes() == before and not (tmp_path / "new.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]


@pytest.mark.parametrize("size, expected", [(0.0125, (0.0125, 0.0125)), ((0.01, 0.02), (0.01, 0.02)),
                                            (np.float32(0.5), (0.5, 0.5)), (1e-8, (1e-8, 1e-8)), (3, (3.0, 3.0))])
def test_write_labels_pixel_sizes_round_trip(tmp_path, size, expected):
    p = write_labels(np.ones((8, 8), np.uint8), tmp_path / "x.tif", pixel_size_mm=size)
    assert file_pixel_size(p) == pytest.approx(expected, rel=1e-6)


def test_write_labels_refuses_labels_without_pixels(tmp_path):
    for shape in ((0, 0), (0, 8)):
        with pytest.raises(ValueError, match="no pixels"):
            write_labels(np.zeros(shape, np.uint16), tmp_path / "x.tif")
    assert not list(tmp_path.iterdir())


def test_write_labels_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.tif"
    write_labels(np.ones((8, 8), np.uint8), target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(OSError, match="disk full"):
        write_labels(np.zeros((8, 8), np.uint8), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]  # no temporary file left


def test_write_labels_file_mode(tmp_path):
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    new = write_labels(np.ones((8, 8), np.uint8), tmp_path / "new.png")
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain write, not mkstemp's 0600
    old = tmp_path / "old.tif"
    old.write_bytes(b"x")
    old.chmod(0o640)
    write_labels(np.ones((8, 8), np.uint8), old)
    assert old.stat().st_mode & 0o777 == 0o640  # replacing a file keeps its mode


def test_is_labels_file_by_name_and_folder(tmp_path, rgb):
    (tmp_path / "masks").mkdir()
    for p in (tmp_path / "a_segmentation.png", tmp_path / "masks" / "a.png", tmp_path / "a.png"):
        Image.fromarray(rgb).save(p)
    assert is_labels_file(tmp_path / "a_segmentation.png")
    assert is_labels_file(tmp_path / "masks" / "a.png")
    assert not is_labels_file(tmp_path / "a.png")



def test_a_colour_photo_named_like_a_mask_is_a_photo(tmp_path, rgb):
    """``arm_lesion.jpg`` alone is a photograph; a mask needs its image beside it, a mask folder or one channel."""
    from napari_nevus_seg.io.datasets import is_mask_file

    Image.fromarray(rgb).save(tmp_path / "arm_lesion.jpg")              # a clinician's name for a photo
    Image.fromarray(rgb).save(tmp_path / "ISIC_1.jpg")                  # an image and its colour mask
    Image.fromarray(rgb).save(tmp_path / "ISIC_1_segmentation.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "orphan_mask.png")     # a mask without its image: one channel
    assert not is_mask_file(tmp_path / "arm_lesion.jpg")
    assert is_mask_file(tmp_path / "ISIC_1_segmentation.png") and is_mask_file(tmp_path / "orphan_mask.png")
    cases = discover_cases(tmp_path)
    assert [(c.name, c.mask.name if c.mask else None) for c in cases] == [
        ("ISIC_1", "ISIC_1_segmentation.png"), ("arm_lesion", None)]
    assert not is_labels_file(tmp_path / "arm_lesion.jpg") and is_labels_file(tmp_path / "orphan_mask.png")
    assert mask_for_image(tmp_path / "arm_lesion.jpg") is None
    Image.fromarray(rgb[..., 0]).save(tmp_path / "arm_lesion_mask.png")  # ... and the photo can have its own mask
    assert mask_for_image(tmp_path / "arm_lesion.jpg") == tmp_path / "arm_lesion_mask.png"
    (tmp_path / "masks").mkdir()
    Image.fromarray(rgb).save(tmp_path / "masks" / "x_lesion.png")       # in a mask folder: a mask, whatever it stores
    assert is_mask_file(tmp_path / "masks" / "x_lesion.png")

# ----------------------------------------------------------------------------------- real data
@pytest.mark.data
def test_real_data_open_through_reader_with_aligned_masks(data_root):
    """Every PH2 case and 50 ISIC cases open through the napari reader with their masks aligned."""
    pytest.importorskip("napari")
    from napari_nevus_seg._napari._reader import napari_get_reader

    ph2 = data_root / "ph2-adapt" / "PH2 Dataset images"
    isic = data_root / "isic2017-train"
    ph2_cases = sorted(p for p in ph2.iterdir() if p.is_dir()) if ph2.is_dir() else []
    isic_images = sorted((isic / "images").glob("*.jpg"))[::40][:50] if isic.is_dir() else []
    if not ph2_cases and not isic_images:
        pytest.skip("neither ph2-adapt nor isic2017-train present")
    darker = 0
    for path in ph2_cases + isic_images:
        reader = napari_get_reader(str(path))
        assert reader is not None, path
        layers = reader(str(path))
        assert [t for _, _, t in layers] == ["image", "labels"], path
        (img, img_kw, _), (mask, mask_kw, _) = layers
        assert img.shape[:2] == mask.shape and img.dtype == np.uint8, path
        assert mask_kw["name"] == f"{img_kw['name']} ground truth"
        assert 0.01 < mask.mean() < 0.995, path
        gray = img.mean(-1)
        darker += gray[mask > 0].mean() < gray[mask == 0].mean()
    assert len(ph2_cases) in (0, 20) and len(isic_images) in (0, 50)
    # lesions are darker than the surrounding skin in nearly every case (a few wrap bright areas
    # or fill the frame, where dark vignette corners are the "outside")
    assert darker >= 0.9 * (len(ph2_cases) + len(isic_images))


def test_atomic_path_keeps_the_old_file_on_error_and_leaves_no_temporary(tmp_path):
    from napari_nevus_seg.io.atomic import atomic_path

    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".tif"
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    with atomic_path(target, fsync=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    fresh = tmp_path / "fresh.png"
    with atomic_path(fresh) as tmp:
        tmp.write_bytes(b"x")
    from napari_nevus_seg.io import atomic

    assert fresh.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK  # a plain write's mode, not mkstemp's 0600
