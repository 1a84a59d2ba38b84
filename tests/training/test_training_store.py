"""The on-disk training set: pairs written at once, reloaded exactly, updated, removed."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nevus_seg.io.datasets import discover_cases
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.io.mask_files import read_mask
from napari_nevus_seg.io.synthetic import synthetic_lesion_image
from napari_nevus_seg.training.data import load_pairs
from napari_nevus_seg.training.store import TrainingStore, safe_name


def case(seed: int, shape=(48, 64)):
    return synthetic_lesion_image(seed=seed, shape=shape)


def test_add_writes_at_once_and_reloads_exactly(tmp_path):
    store = TrainingStore(tmp_path / "set")
    assert len(store) == 0 and store.load() == ([], [], [])
    c = case(1)
    pair = store.add(c.image, c.labels, "IMD002")
    # both files are on disk right after add: a fresh store object (napari restarted) sees them
    assert pair.image.is_file() and pair.mask.is_file()
    again = TrainingStore(tmp_path / "set")
    assert len(again) == 1 and again.names() == ["IMD002"]
    images, masks, _ = again.load()
    np.testing.assert_array_equal(images[0], c.image)
    np.testing.assert_array_equal(masks[0], c.labels != 0)
    assert masks[0].dtype == bool and masks[0].sum() == c.mask.sum() > 0
    assert not list((tmp_path / "set").rglob(".*.tmp"))     # no temporary files left behind


def test_layout_is_a_dataset_folder(tmp_path):
    store = TrainingStore(tmp_path)
    for s in range(3):
        c = case(s)
        store.add(c.image, c.mask, f"case {s}")
    cases = discover_cases(tmp_path)
    assert [c.name for c in cases] == ["case_0", "case_1", "case_2"]
    assert all(c.mask is not None for c in cases)
    np.testing.assert_array_equal(read_mask(cases[1].mask), case(1).mask)
    pairs = load_pairs(tmp_path, size=32)                      # what `nevus-seg train` reads
    assert len(pairs) == 3 and tuple(pairs.images.shape) == (3, 3, 32, 32)


def test_readding_the_same_image_updates_its_mask(tmp_path):
    store = TrainingStore(tmp_path)
    c = case(2)
    store.add(c.image, c.mask, "lesion")
    corrected = c.mask.copy()
    corrected[:10] = True
    store.add(c.image, corrected, "lesion")
    assert store.names() == ["lesion"]
    np.testing.assert_array_equal(store.load()[1][0], corrected)


def test_a_different_image_under_a_taken_name_is_kept_apart(tmp_path):
    store = TrainingStore(tmp_path)
    a, b = case(3), case(4)
    store.add(a.image, a.mask, "image")
    p = store.add(b.image, b.mask, "image")
    assert p.name == "image-2" and store.names() == ["image", "image-2"]
    np.testing.assert_array_equal(read_image(store.image_dir / "image.png"), a.image)
    np.testing.assert_array_equal(read_image(p.image), b.image)


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16", "float"])
def test_images_of_any_kind_are_stored_as_rgb_uint8(tmp_path, kind):
    c = case(5)
    img = {"gray": c.image[..., 0], "rgba": np.dstack([c.image, np.full(c.image.shape[:2], 255, np.uint8)]),
           "uint16": c.image.astype(np.uint16) * 257, "float": c.image / 255.0}[kind]
    store = TrainingStore(tmp_path)
    store.add(img, c.mask, kind)
    got = store.load()[0][0]
    assert got.shape == c.image.shape and got.dtype == np.uint8
    expected = np.repeat(c.image[..., :1], 3, axis=2) if kind == "gray" else c.image
    np.testing.assert_allclose(got, expected, atol=1)


def test_bad_pairs_are_refused_and_nothing_is_written(tmp_path):
    store = TrainingStore(tmp_path)
    c = case(6)
    with pytest.raises(ValueError, match="same size"):
        store.add(c.image, c.mask[:-1], "x")
    with pytest.raises(ValueError, match="2-D"):
        store.add(c.image, np.stack([c.mask, c.mask]), "x")
    with pytest.raises(ValueError):
        store.add(np.zeros((2, 3, 4, 5), np.uint8), c.mask, "x")
    assert len(store) == 0 and not list(tmp_path.rglob("*.png"))


def test_interrupted_add_is_ignored_then_repaired(tmp_path):
    store = TrainingStore(tmp_path)
    c = case(7)
    store.add(c.image, c.mask, "a")
    (tmp_path / "masks" / "a.png").unlink()                  # as if napari died between the two files
    assert len(store) == 0
    d = case(8)
    p = store.add(d.image, d.mask, "a")
    assert p.name == "a" and len(store) == 1
    np.testing.assert_array_equal(store.load()[0][0], d.image)


def test_remove(tmp_path):
    store = TrainingStore(tmp_path)
    for s in range(2):
        store.add(case(s).image, case(s).mask, f"c{s}")
    store.remove("c0")
    assert store.names() == ["c1"] and not (tmp_path / "images" / "c0.png").exists()
    with pytest.raises(KeyError):
        store.remove("c0")


def test_safe_name():
    assert safe_name("IMD002 lesions") == "IMD002_lesions"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("   ") == "image"


def test_default_folder_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "t"))
    assert TrainingStore().folder == tmp_path / "t"


def test_two_windows_adding_the_same_name_at_once_keep_their_own_pairs(tmp_path, monkeypatch):
    # the writes are slowed down so that the two adds overlap: without the lock one image ended up
    # with the other's mask, and the other pair was gone
    import threading
    import time

    from napari_nevus_seg.training import store as ts

    real_write = ts._write_png

    def slow_write(arr, path):
        time.sleep(0.05)
        real_write(arr, path)

    monkeypatch.setattr(ts, "_write_png", slow_write)
    a, b = (synthetic_lesion_image(seed=s, shape=(40, 50)) for s in (1, 2))
    store = ts.TrainingStore(tmp_path / "store")
    threads = [threading.Thread(target=store.add, args=(c.image, c.mask, "lesion")) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pairs = {name: (img, mask) for name, img, mask in store}
    assert sorted(pairs) == ["lesion", "lesion-2"]
    for c in (a, b):
        img, mask = next(v for v in pairs.values() if np.array_equal(v[0], c.image))
        assert np.array_equal(mask, c.mask)                     # each image with its own mask
    assert not list((tmp_path / "store").glob(".*lock"))


def test_nan_masks_are_refused_and_empty_masks_stored_with_a_warning(tmp_path):
    store = TrainingStore(tmp_path)
    c = case(8)
    nan = c.mask.astype(float)
    nan[2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        store.add(c.image, nan, "x")
    assert len(store) == 0 and not list(tmp_path.rglob("*.png"))
    with pytest.warns(UserWarning, match="healthy.*empty|empty.*healthy skin"):
        pair = store.add(c.image, np.zeros(c.mask.shape, bool), "healthy")   # a legitimate correction
    assert pair.name == "healthy" and not store.load()[1][0].any()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # a mask with a lesion: no warning
        store.add(c.image, np.dstack([c.mask.astype(np.uint8) * 255] * 3), "colour")
    assert np.array_equal(store.load()[1][store.names().index("colour")], c.mask)
