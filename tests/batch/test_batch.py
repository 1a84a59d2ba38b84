"""Batch segmentation through the API: outputs, resume, failures, atomic writes, measurements, Dask."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from small_lesion import small_lesion_in_large_frame

from napari_nevus_seg import load_model, segment, segment_folder, synthetic_lesion_image
from napari_nevus_seg.batch.errors import BatchSetupError
from napari_nevus_seg.batch.inputs import find_images
from napari_nevus_seg.batch.work import read_output, write_output
from napari_nevus_seg.io.labels import is_labels_file

SHAPE = (96, 128)


def make_folder(root: Path, n: int = 3, shape=SHAPE, seed: int = 0) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"img{i}.png"
        Image.fromarray(synthetic_lesion_image(seed=seed + i, shape=shape).image).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_outputs_equal_the_api_result(tmp_path, model):
    import tifffile

    from napari_nevus_seg.io.labels import file_pixel_size, is_labels_file

    paths = make_folder(tmp_path / "in", 3)
    summary = segment_folder(tmp_path / "in", tmp_path / "out", model=model, pixel_size_mm=0.02)
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (3, 3, 0, [])
    assert summary.ok
    for p in paths:
        out = tmp_path / "out" / f"{p.stem}.tif"
        got = tifffile.imread(out)
        expected = segment(np.asarray(Image.open(p).convert("RGB")), model=model)
        assert got.dtype == np.uint16 and got.shape == SHAPE
        np.testing.assert_array_equal(got, expected)
        assert is_labels_file(out)                              # napari reopens it as labels
        assert file_pixel_size(out) == pytest.approx((0.02, 0.02))
    assert not list((tmp_path / "out").glob(".*"))   # no temporary files left behind
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777) == 0o666 & ~mask    # not private like a temporary file


def test_png_format_writes_isic_style_masks(tmp_path, model):
    paths = make_folder(tmp_path / "in", 2)
    s = segment_folder(tmp_path / "in", tmp_path / "out", model=model, fmt="png")
    assert s.done == 2
    for p in paths:
        expected = segment(np.asarray(Image.open(p).convert("RGB")), model=model)
        mask = np.asarray(Image.open(tmp_path / "out" / f"{p.stem}.png"))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, expected > 0)
        # the lesions come back with the same numbers (connected components by decreasing area)
        np.testing.assert_array_equal(read_output(tmp_path / "out" / f"{p.stem}.png"), expected)


def test_resume_skips_finished_outputs_and_overwrite_redoes_them(tmp_path, model):
    make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    segment_folder(tmp_path / "in", out, model=model)
    sentinel = np.full(SHAPE, 7, np.int32)
    write_output(sentinel, out / "img1.tif")                  # a "finished" output to keep
    before = (out / "img1.tif").read_bytes()
    (out / "img2.tif").unlink()                               # an unfinished one
    s = segment_folder(tmp_path / "in", out, model=model)
    assert (s.done, s.skipped, len(s.failed)) == (1, 2, 0)
    assert (out / "img1.tif").read_bytes() == before
    assert (out / "img2.tif").is_file()
    s = segment_folder(tmp_path / "in", out, model=model, fmt="png")   # another format: not finished yet
    assert (s.done, s.skipped) == (3, 0)
    s = segment_folder(tmp_path / "in", out, model=model, overwrite=True)
    assert (s.done, s.skipped) == (3, 0)
    assert read_output(out / "img1.tif").max() != 7


def test_a_bad_file_fails_alone(tmp_path, model):
    make_folder(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    s = segment_folder(tmp_path / "in", tmp_path / "out", model=model)
    assert (s.total, s.done, len(s.failed)) == (3, 2, 1)
    name, reason = s.failed[0]
    assert name == "broken.jpg" and reason
    assert not s.ok
    assert "broken.jpg" in s.report() and "2 segmented" in s.report()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.tif", "img1.tif"]


def test_find_images_layout(tmp_path):
    src = tmp_path / "in"
    make_folder(src, 1)
    make_folder(src / "sub", 1)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(src / "img0_segmentation.png")  # a mask: left out
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / "img0.jpg")            # same stem as img0.png
    (src / ".hidden.png").write_bytes(b"x")
    (src / "notes.txt").write_text("x")
    out = src / "out"                      # output inside the input: never read back as input
    make_folder(out, 1)
    tasks, missing = find_images([src, tmp_path / "nope"], out, recursive=False)
    assert [t.name for t in tasks] == ["img0.jpg", "img0.png"]
    assert sorted(Path(t.output_stem).name for t in tasks) == ["img0_jpg", "img0_png"]
    assert [m.reason for m in missing] == ["no such file or folder"]
    tasks, _ = find_images([src], out, recursive=True)
    assert sorted(t.name for t in tasks) == ["img0.jpg", "img0.png", "sub/img0.png"]
    assert (out / "sub" / "img0") in [Path(t.output_stem) for t in tasks]


def test_clashing_names_get_distinct_outputs_and_names(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("x.jpg", "x.png", "x_jpg.jpg", "x_jpg_2.jpg"):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / name)
    make_folder(tmp_path / "B", 1)
    make_folder(tmp_path / "C", 1)
    tasks, _ = find_images([src, tmp_path / "B", tmp_path / "C"], tmp_path / "out")
    stems = [Path(t.output_stem).name for t in tasks]
    assert len(set(stems)) == len(stems) == 6, stems            # numbered names never hit another input's
    names = [t.name for t in tasks]
    assert len(set(names)) == len(names)                          # B/img0.png and C/img0.png told apart
    assert {n for n in names if n.endswith("img0.png")} == {str(tmp_path / "B" / "img0.png"),
                                                             str(tmp_path / "C" / "img0.png")}
    assert all(Path(t.source).is_absolute() for t in tasks)


def test_resume_never_takes_another_images_labels(tmp_path, model):
    # B/x.png and C/x.png go to x_png, x_png_2 in a run over B C; A/x.png joins the next run and the
    # numbering shifts: each output must still belong to its own image
    for root, seed, shape in (("A", 7, (80, 112)), ("B", 8, (96, 128)), ("C", 9, (64, 96))):
        (tmp_path / root).mkdir()
        Image.fromarray(synthetic_lesion_image(seed=seed, shape=shape).image).save(tmp_path / root / "x.png")
    segment_folder([tmp_path / "B", tmp_path / "C"], tmp_path / "out", model=model)
    s = segment_folder([tmp_path / "A", tmp_path / "B", tmp_path / "C"], tmp_path / "out", model=model)
    assert s.ok and s.done == 3                                   # all redone: the old files were others'
    for root, stem in (("A", "x_png"), ("B", "x_png_2"), ("C", "x_png_3")):
        img = np.asarray(Image.open(tmp_path / root / "x.png").convert("RGB"))
        np.testing.assert_array_equal(read_output(tmp_path / "out" / f"{stem}.tif"), segment(img, model=model))
    s = segment_folder([tmp_path / "A", tmp_path / "B", tmp_path / "C"], tmp_path / "out", model=model)
    assert s.skipped == 3 and s.done == 0                         # and now they are the right ones


def test_output_folder_inside_the_inputs_is_never_read_back(tmp_path, model):
    make_folder(tmp_path / "in", 2)
    for _ in range(2):   # --out = the input folder: the label files are not taken for images
        s = segment_folder(tmp_path / "in", tmp_path / "in", model=model)
        assert s.total == 2 and s.ok
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["img0.png", "img0.tif", "img1.png", "img1.tif"]


def test_superpixel_maps_are_not_images_and_linked_folders_are_followed_once(tmp_path):
    src = tmp_path / "in"
    make_folder(src, 1)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / "ISIC_0000000_superpixels.png")
    make_folder(tmp_path / "elsewhere", 1, seed=3)
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (src / "loop").symlink_to(src, target_is_directory=True)     # a link to a parent: no endless walk
    tasks, _ = find_images([src], tmp_path / "out", recursive=True)
    assert sorted(t.name for t in tasks) == ["img0.png", "linked/img0.png"]



def test_photos_named_like_masks_are_segmented_and_masks_are_not(tmp_path):
    src = tmp_path / "in"
    make_folder(src, 1)                                                         # img0.png
    rgb = np.asarray(Image.open(src / "img0.png").convert("RGB"))
    Image.fromarray(rgb).save(src / "patient3_lesion.jpg")                      # a photo: no patient3.* beside it
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(src / "img0_mask.png")   # img0's mask
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(src / "old_lesion.png")  # a mask without its image: one channel
    tasks, _ = find_images([src], tmp_path / "out")
    assert sorted(t.name for t in tasks) == ["img0.png", "patient3_lesion.jpg"]

@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_unavailable_device_is_a_setup_error_for_local_workers_too(tmp_path, model):
    from napari_nevus_seg import DeviceUnavailableError

    make_folder(tmp_path / "in", 1)
    for workers in (None, 2):
        with pytest.raises(DeviceUnavailableError):
            segment_folder(tmp_path / "in", tmp_path / "out", model=model, device="cuda", workers=workers)
    assert not (tmp_path / "out").exists()


def test_setup_errors(tmp_path, model):
    with pytest.raises(BatchSetupError, match="no images found"):
        segment_folder(tmp_path, tmp_path / "out", model=model)
    make_folder(tmp_path / "in", 1)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(BatchSetupError, match="cannot write to the output folder"):
        segment_folder(tmp_path / "in", blocker / "sub", model=model)
    with pytest.raises(BatchSetupError, match="threshold"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, threshold=1.5)
    with pytest.raises(BatchSetupError, match="min_size"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, min_size=-10)
    assert not (tmp_path / "out").exists()


def test_label_files_and_atomic_replacement(tmp_path, monkeypatch):
    import tifffile

    many = (np.arange(30 * 40, dtype=np.int32).reshape(30, 40) % 300) + 1   # 300 lesions
    p = write_output(many, tmp_path / "many.tif")
    assert tifffile.imread(p).dtype == np.uint16
    np.testing.assert_array_equal(read_output(p), many)
    few = np.zeros((30, 40), np.int32)
    few[5:10, 5:10] = 1
    # an output that exists stays byte-identical when writing its replacement fails half-way
    for name in ("keep.png", "keep.tif"):
        target = write_output(few, tmp_path / name)
        before = target.read_bytes()

        def broken(*args, **kwargs):
            dest = next(a for a in (*args, *kwargs.values()) if isinstance(a, (str, Path)))
            Path(dest).write_bytes(b"half a file")
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(Image.Image, "save", lambda self, *a, **k: broken(*a, **k))
            m.setattr(tifffile, "imwrite", broken)
            with pytest.raises(OSError, match="No space"):
                write_output(np.ones((30, 40), np.int32), target)
        assert target.read_bytes() == before
    assert sorted(q.name for q in tmp_path.iterdir()) == ["keep.png", "keep.tif", "many.tif"]


@pytest.mark.parametrize("refine_workers", [0, 1])
def test_cancel_stops_and_a_rerun_resumes(tmp_path, model, refine_workers):
    n = 12     # more than the images in flight (decoded ahead, waiting for the writer or a refinement process)
    make_folder(tmp_path / "in", n)
    stop = threading.Event()
    seen = []

    def progress(result, done, total):
        seen.append(result.status)
        stop.set()

    s = segment_folder(tmp_path / "in", tmp_path / "out", model=model, cancel=stop, progress=progress,
                       refine_workers=refine_workers)
    assert s.interrupted and not s.ok
    assert 1 <= s.done < n and s.failed == []     # images in flight are finished, not reported failed
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind
    s2 = segment_folder(tmp_path / "in", tmp_path / "out", model=model)
    assert s2.skipped == s.done and s2.done == n - s.done


def test_measure_csv_covers_done_and_skipped_images(tmp_path, model):
    pytest.importorskip("napari_nevus_seg.measurements.table")
    import pandas as pd

    make_folder(tmp_path / "in", 3)
    csv = tmp_path / "lesions.csv"
    s = segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=csv, pixel_size_mm=0.02)
    table = pd.read_csv(csv)
    assert table.columns[0] == "image"
    n_lesions = {f"img{i}.png": int(read_output(tmp_path / "out" / f"img{i}.tif").max()) for i in range(3)}
    assert len(table) == sum(n_lesions.values()) == s.measured_rows
    assert table.groupby("image").size().to_dict() == {k: v for k, v in n_lesions.items() if v}
    (tmp_path / "out" / "img0.tif").unlink()
    s2 = segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=csv, pixel_size_mm=0.02)
    assert (s2.done, s2.skipped) == (1, 2)
    again = pd.read_csv(csv)
    pd.testing.assert_frame_equal(again, table)   # same table whether images were redone or skipped


def test_measure_csv_with_and_without_pixel_size_keeps_every_column(tmp_path, model):
    import pandas as pd
    import tifffile

    src = tmp_path / "in"
    make_folder(src, 1)                                           # img0.png: no pixel size
    tifffile.imwrite(src / "a.tif", synthetic_lesion_image(seed=5, shape=SHAPE).image,
                     resolution=(500, 500), resolutionunit="CENTIMETER")   # 0.02 mm pixels
    csv = tmp_path / "lesions.csv"
    segment_folder(src, tmp_path / "out", model=model, measure=csv)
    table = pd.read_csv(csv).set_index("image")
    assert table.loc[["a.tif"], "perimeter_mm"].notna().all() and table.loc[["a.tif"], "perimeter_px"].isna().all()
    assert table.loc[["img0.png"], "perimeter_px"].notna().all() and table.loc[["img0.png"], "perimeter_mm"].isna().all()
    raw = csv.read_text().splitlines()
    col = raw[0].split(",").index("area_px2")
    assert all("." not in line.split(",")[col] for line in raw[1:])   # integers stay integers


def test_find_ruler_takes_each_images_pixel_size_from_its_ruler(tmp_path, model):
    """With find_ruler, an image with a millimetre ruler (ticks 50 px apart) is measured and written at
    0.02 mm per pixel, whatever pixel_size_mm says; an image without one keeps pixel_size_mm. The
    table says where each pixel size came from, and the summary how many rulers were found."""
    import pandas as pd

    from napari_nevus_seg.io.labels import file_pixel_size
    from napari_nevus_seg.io.synthetic_ruler import draw_ruler

    src = tmp_path / "in"
    src.mkdir()
    skin = synthetic_lesion_image(seed=1, shape=(384, 512)).image
    Image.fromarray(draw_ruler(skin, start=(280.0, 60.0), spacing_px=50.0, ticks=9)).save(src / "ruler.png")
    Image.fromarray(synthetic_lesion_image(seed=2, shape=(384, 512)).image).save(src / "plain.png")
    csv = tmp_path / "lesions.csv"
    with pytest.warns(UserWarning, match=r"ruler.png: the ruler found gives 0.02 mm per pixel, 0.40 times the "
                                         r"pixel size given \(0.05 mm\)"):
        s = segment_folder(src, tmp_path / "out", model=model, measure=csv, pixel_size_mm=0.05, find_ruler=True)
    assert s.done == 2 and s.pixel_size_from == {"ruler": 1, "option": 1}
    assert "ruler found in 1 of 2 images read" in s.report()
    np.testing.assert_allclose(file_pixel_size(tmp_path / "out" / "ruler.tif"), (0.02, 0.02), rtol=0.003)
    np.testing.assert_allclose(file_pixel_size(tmp_path / "out" / "plain.tif"), (0.05, 0.05))
    table = pd.read_csv(csv).set_index("image")
    ruler, plain = table.loc[["ruler.png"]], table.loc[["plain.png"]]
    assert (ruler["pixel_size_from"] == "ruler").all() and (plain["pixel_size_from"] == "option").all()
    np.testing.assert_allclose(ruler["ruler_spacing_px"], 50.0, rtol=0.003)
    assert (ruler["ruler_spacings"] >= 5).all() and (ruler["ruler_regularity"] >= 0.5).all()
    assert plain[["ruler_spacing_px", "ruler_spacings", "ruler_regularity"]].isna().all().all()
    np.testing.assert_allclose(ruler["pixel_size_row_mm"], 0.02, rtol=0.003)
    np.testing.assert_allclose(plain["pixel_size_row_mm"], 0.05)
    without = segment_folder(src, tmp_path / "out2", model=model, measure=tmp_path / "b.csv", pixel_size_mm=0.05)
    assert "pixel_size_from" not in pd.read_csv(tmp_path / "b.csv").columns and "ruler found" not in without.report()
    again = segment_folder(src, tmp_path / "out", model=model, measure=tmp_path / "c.csv", find_ruler=True)
    assert again.skipped == 2 and "2 label files from an earlier run kept the pixel size written then" in again.report()
    with pytest.raises(BatchSetupError, match="a PNG mask cannot hold"):       # nowhere to put a pixel size
        segment_folder(src, tmp_path / "out3", model=model, fmt="png", find_ruler=True)
    assert not (tmp_path / "out3").exists()


def test_interrupted_run_keeps_the_complete_table(tmp_path, model):
    make_folder(tmp_path / "in", 6)
    csv = tmp_path / "lesions.csv"
    segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=csv)
    complete = csv.read_bytes()
    stop = threading.Event()
    s = segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=csv, overwrite=True,
                       cancel=stop, progress=lambda *a: stop.set())
    assert s.interrupted and csv.read_bytes() == complete        # the complete table is untouched
    partial = tmp_path / "lesions.partial.csv"
    assert s.results_csv == str(partial) and partial.is_file() and "so far" in s.report()
    assert 1 <= len(partial.read_text().splitlines()) - 1 < len(complete.splitlines()) - 1 or s.done == 0
    assert not list(tmp_path.glob(".*"))                          # no temporary files


def test_measure_path_that_is_a_folder_is_a_setup_error(tmp_path, model):
    make_folder(tmp_path / "in", 1)
    (tmp_path / "m").mkdir()
    with pytest.raises(BatchSetupError, match="is a folder"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=tmp_path / "m")
    assert not (tmp_path / "out").exists()


def test_dask_client_gives_the_same_outputs(tmp_path, model):
    distributed = pytest.importorskip("distributed")
    paths = make_folder(tmp_path / "in", 3)
    (tmp_path / "in" / "bad.png").write_bytes(b"")
    segment_folder(tmp_path / "in", tmp_path / "local", model=model)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        s = segment_folder(tmp_path / "in", tmp_path / "dask", client=client)
    assert (s.done, len(s.failed)) == (3, 1)
    assert s.failed[0][0] == "bad.png" and "empty" in s.failed[0][1]
    for p in paths:
        a = read_output(tmp_path / "local" / f"{p.stem}.tif")
        b = read_output(tmp_path / "dask" / f"{p.stem}.tif")
        np.testing.assert_array_equal(a, b)


def test_dask_with_an_in_memory_model(tmp_path):
    distributed = pytest.importorskip("distributed")
    import torch

    from napari_nevus_seg import build_model

    torch.manual_seed(0)
    tiny = build_model(width=4, depth=2, preprocess={"size": 64, "mean": [0.5] * 3, "std": [0.25] * 3})
    make_folder(tmp_path / "in", 2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        s = segment_folder(tmp_path / "in", tmp_path / "out", model=tiny, client=client)
        again = segment_folder(tmp_path / "in", tmp_path / "out2", model=tiny, client=client)   # same client
    assert s.done == 2 and (again.done, again.failed) == (2, [])
    img = np.asarray(Image.open(tmp_path / "in" / "img0.png").convert("RGB"))
    np.testing.assert_array_equal(read_output(tmp_path / "out" / "img0.tif"), segment(img, model=tiny))


def test_pixel_budget_lets_one_oversized_image_through_alone():
    from napari_nevus_seg.batch.local import PixelBudget

    b = PixelBudget(100)
    assert b.acquire(60, block=False) and b.acquire(40, block=False)
    assert not b.acquire(1, block=False)
    b.release(60)
    b.release(40)
    assert b.acquire(500, block=False)          # larger than the budget, but nothing else in flight
    assert not b.acquire(1, block=False)
    b.release(500)
    assert b.used == 0


def test_a_tiny_pixel_budget_processes_images_one_at_a_time(tmp_path, model):
    from napari_nevus_seg.batch.local import run_local
    from napari_nevus_seg.batch.options import BatchOptions

    make_folder(tmp_path / "in", 3)
    (tmp_path / "in" / "bad.png").write_bytes(b"junk")
    tasks, _ = find_images([tmp_path / "in"], tmp_path / "out")
    results = []
    assert run_local(tasks, BatchOptions(), results.append, model=model, max_pixels=1)
    assert sorted((r.name, r.status) for r in results) == [
        ("bad.png", "failed"), ("img0.png", "done"), ("img1.png", "done"), ("img2.png", "done")]


def test_refinement_in_worker_processes_gives_the_api_result(tmp_path, model, monkeypatch):
    from napari_nevus_seg.batch.refine_pool import RefinePool

    submitted = []
    real_submit = RefinePool.submit
    monkeypatch.setattr(RefinePool, "submit", lambda self, *a: submitted.append(1) or real_submit(self, *a))
    # two lesions per image, one of them near the frame, and a large image: the work grid is smaller
    paths = make_folder(tmp_path / "in", 3)
    large = make_folder(tmp_path / "large", 1, shape=(900, 1200), seed=7)[0]
    paths.append(large.rename(tmp_path / "in" / "large.png"))
    small_lesion = tmp_path / "in" / "small_lesion.png"   # and one whose lesion gets the zoomed second look
    Image.fromarray(small_lesion_in_large_frame(seed=1)[0]).save(small_lesion)
    paths.append(small_lesion)
    summary = segment_folder(tmp_path / "in", tmp_path / "out", model=model, refine_workers=2,
                             measure=tmp_path / "m.csv")
    assert (summary.done, summary.failed) == (5, []) and len(submitted) == 5   # all went through the workers
    for p in paths:
        expected = segment(np.asarray(Image.open(p).convert("RGB")), model=model)
        np.testing.assert_array_equal(read_output(tmp_path / "out" / f"{p.stem}.tif"), expected)
    first_look = segment(small_lesion_in_large_frame(seed=1)[0], model=model, zoom_small=False)
    assert not np.array_equal(read_output(tmp_path / "out" / "small_lesion.tif"), first_look)   # zoomed in the pool
    assert len(open(tmp_path / "m.csv").read().splitlines()) > 1


@pytest.mark.parametrize("processes", ["refine_workers=2", "workers=2"])
def test_a_script_without_a_main_guard_can_use_worker_processes(tmp_path, processes):
    """spawn runs the caller's script again in each worker; an unguarded script used to fail every image
    (refinement processes) or not start at all (a local Dask cluster: "Nanny failed to start")."""
    import subprocess
    import sys
    import textwrap

    if processes.startswith("workers"):
        pytest.importorskip("distributed")
    make_folder(tmp_path / "in", 3)
    script = tmp_path / "plain_script.py"
    script.write_text(textwrap.dedent(f"""
        from napari_nevus_seg import segment_folder
        print("top level ran")
        s = segment_folder({str(tmp_path / "in")!r}, {str(tmp_path / "out")!r}, {processes})
        print("done", s.done, "failed", len(s.failed))
        """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("top level ran") == 1 and "done 3 failed 0" in run.stdout, run.stdout


def test_refine_workers_choice_and_thread_cap(monkeypatch):
    import torch

    from napari_nevus_seg.batch import refine_pool as batch_refine
    from napari_nevus_seg.model import devices

    monkeypatch.setattr(devices, "cpu_cores", lambda: 8)
    assert batch_refine.auto_refine_workers(100, "cpu") == 4       # half the cores beside the network
    assert batch_refine.auto_refine_workers(10, "cpu") == 0        # short run: no process start-up
    monkeypatch.setattr(devices, "cpu_cores", lambda: 1)
    assert batch_refine.auto_refine_workers(100, "cpu") == 0
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    with devices.cpu_threads_capped(1):
        assert devices.use_all_cpu_threads() == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2                            # restored on leaving
    with pytest.raises(BatchSetupError, match="refine_workers"):
        segment_folder(Path("."), Path("."), refine_workers=-1)


def test_refinement_workers_do_not_import_pytorch():
    """The refinement's worker processes start in a fraction of a second: no PyTorch import."""
    import subprocess
    import sys

    code = ("import sys, napari_nevus_seg.batch.refine_pool as b, napari_nevus_seg.inference.refine; b._warm_up(); "
            "print(sorted(m for m in ('torch', 'skimage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------- outputs never replace input images
def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def _photo_folder(root: Path) -> list[Path]:
    import tifffile

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(2):
        p = root / f"photo{i}.tif"
        tifffile.imwrite(p, synthetic_lesion_image(seed=i, shape=SHAPE).image)
        paths.append(p)
    p = root / "jp.png"
    Image.fromarray(synthetic_lesion_image(seed=5, shape=SHAPE).image).save(p)
    return [*paths, p]


def _labelled_once(folder: Path, photos: list[Path]) -> dict[str, Path]:
    """Each photo's one label file in ``folder`` (by the source the file records)."""
    from napari_nevus_seg.io.labels import labels_source

    by_source: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        src = labels_source(p)
        if src is not None:
            by_source.setdefault(src, []).append(p)
    assert sorted(by_source) == sorted(os.path.abspath(p) for p in photos)
    assert all(len(v) == 1 for v in by_source.values()), by_source
    return {Path(k).name: v[0] for k, v in by_source.items()}


@pytest.mark.parametrize("fmt", ["tif", "png"])
def test_out_set_to_the_input_folder_never_replaces_a_photo(tmp_path, model, fmt):
    folder = tmp_path / "in"
    photos = _photo_folder(folder)
    before = _hashes(folder)
    s = segment_folder(folder, folder, model=model, fmt=fmt)
    assert (s.total, s.done, s.skipped, s.failed) == (3, 3, 0, [])
    outputs = _labelled_once(folder, photos)
    # an output that would be a photo's own file gets the photo's suffix: photo0.tif -> photo0_tif.tif
    expected = ({"photo0.tif": "photo0_tif.tif", "photo1.tif": "photo1_tif.tif", "jp.png": "jp.tif"} if fmt == "tif"
                else {"photo0.tif": "photo0.png", "photo1.tif": "photo1.png", "jp.png": "jp_png.png"})
    assert {k: v.name for k, v in outputs.items()} == expected
    for photo, seed in zip(photos, (0, 1, 5)):
        want = segment(synthetic_lesion_image(seed=seed, shape=SHAPE).image, model=model)
        np.testing.assert_array_equal(read_output(outputs[photo.name]) > 0, want > 0)
    after_first = _hashes(folder)
    assert {k: after_first[k] for k in before} == before             # the photos are untouched
    s = segment_folder(folder, folder, model=model, fmt=fmt)         # rerun: resume skips all three
    assert (s.total, s.done, s.skipped) == (3, 0, 3)
    s = segment_folder(folder, folder, model=model, fmt=fmt, overwrite=True)
    assert (s.total, s.done, s.failed) == (3, 3, [])
    assert _labelled_once(folder, photos) == outputs
    assert {k: _hashes(folder)[k] for k in before} == before
    assert set(_hashes(folder)) == set(after_first)                  # no new files
    # one photo named explicitly, its own name as the output (--format png with a .png photo)
    s = segment_folder(folder / "jp.png", folder, model=model, fmt=fmt, overwrite=True)
    assert s.done == 1 and {k: _hashes(folder)[k] for k in before} == before


def test_out_linked_to_the_input_folder_never_replaces_a_photo(tmp_path, model):
    folder = tmp_path / "in"
    photos = _photo_folder(folder)
    link = tmp_path / "link"
    try:
        link.symlink_to(folder, target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    before = _hashes(folder)
    s = segment_folder(folder, link, model=model, overwrite=True)
    assert s.done == 3 and not s.failed
    assert {k: _hashes(folder)[k] for k in before} == before
    assert sorted(p.name for p in _labelled_once(folder, photos).values()) == ["jp.tif", "photo0_tif.tif",
                                                                                 "photo1_tif.tif"]


def test_a_photo_beside_or_at_the_output_is_never_replaced(tmp_path, model):
    import tifffile

    folder = tmp_path / "in"
    make_folder(folder, 1)                                            # img0.png, the input
    tifffile.imwrite(folder / "img0.tif", synthetic_lesion_image(seed=9, shape=SHAPE).image)   # a photo, no input
    before = _hashes(folder)
    s = segment_folder(folder / "img0.png", folder, model=model, overwrite=True)
    assert s.done == 1 and s.ok
    assert (folder / "img0_png.tif").is_file() and _hashes(folder)["img0.tif"] == before["img0.tif"]
    # an output folder elsewhere holding a photo under the output name: the output is named around it,
    # and a rerun finds that output again (resume), with or without overwriting
    other = tmp_path / "elsewhere"
    other.mkdir()
    tifffile.imwrite(other / "img0.tif", synthetic_lesion_image(seed=9, shape=SHAPE).image)
    photo = (other / "img0.tif").read_bytes()
    s = segment_folder(folder / "img0.png", other, model=model)
    assert s.done == 1 and s.ok and is_labels_file(other / "img0_png.tif")
    s = segment_folder(folder / "img0.png", other, model=model)
    assert s.done == 0 and s.skipped == 1
    s = segment_folder(folder / "img0.png", other, model=model, overwrite=True)
    assert s.done == 1 and sorted(p.name for p in other.iterdir()) == ["img0.tif", "img0_png.tif"]
    assert (other / "img0.tif").read_bytes() == photo


def test_measure_path_must_be_a_new_csv_file(tmp_path, model):
    photos = make_folder(tmp_path / "in", 1)
    before = photos[0].read_bytes()
    with pytest.raises(BatchSetupError, match="is one of the input images"):
        segment_folder(photos[0], tmp_path / "out", model=model, measure=photos[0])
    with pytest.raises(BatchSetupError, match="is one of the input images"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=tmp_path / "in" / "." / "img0.png")
    with pytest.raises(BatchSetupError, match=r"must be a \.csv file"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=tmp_path / "lesions.txt")
    assert photos[0].read_bytes() == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "lesions.txt").exists()


@pytest.mark.parametrize("px", [float("inf"), float("nan"), 0.0, -0.1, 1e-30, 1e4, (0.02, float("inf"))])
def test_pixel_size_out_of_range_is_a_setup_error(tmp_path, model, px):
    make_folder(tmp_path / "in", 1)
    with pytest.raises(BatchSetupError, match="pixel_size_mm must be a number of mm per pixel from 1e-06 to 1000"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, pixel_size_mm=px)
    assert not (tmp_path / "out").exists()


def test_main_module_is_put_back_after_starting_processes_even_on_error():
    import sys

    from napari_nevus_seg.batch.spawning import main_module_hidden

    main = sys.modules["__main__"]
    with pytest.raises(RuntimeError), main_module_hidden():
        assert sys.modules["__main__"] is not main and not hasattr(sys.modules["__main__"], "__file__")
        raise RuntimeError("a worker failed to start")
    assert sys.modules["__main__"] is main


def test_an_error_during_the_run_keeps_the_complete_table(tmp_path, model):
    """Not only Ctrl-C: any exception (here from the progress callback) must not replace the complete
    table with the rows written so far."""
    make_folder(tmp_path / "in", 4)
    csv = tmp_path / "lesions.csv"
    segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=csv)
    complete = csv.read_bytes()

    def failing_progress(result, finished, total):
        if finished == 2:
            raise RuntimeError("a bug in the caller's callback")

    with pytest.raises(RuntimeError, match="callback"):
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=csv, overwrite=True,
                       progress=failing_progress)
    assert csv.read_bytes() == complete and (tmp_path / "lesions.partial.csv").is_file()


def test_file_names_that_are_not_utf8_reach_the_table(tmp_path, model):
    folder = tmp_path / "in"
    make_folder(folder, 1)
    try:
        os.rename(folder / "img0.png", os.path.join(os.fsencode(folder), b"caf\xe9.png"))
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take a Latin-1 file name")
    csv = tmp_path / "lesions.csv"
    s = segment_folder(folder, tmp_path / "out", model=model, measure=csv)
    assert s.done == 1 and s.ok
    assert b"caf\xe9.png" in csv.read_bytes()        # the name's own bytes, as `ls` shows them


def test_a_relative_output_folder_is_this_process_s_even_if_the_working_folder_changes(tmp_path, model,
                                                                                         monkeypatch):
    """Workers elsewhere (Dask) have another working folder: the output folder is resolved here, once."""
    make_folder(tmp_path / "in", 3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    s = segment_folder("in", "out", model=model, progress=lambda *a: os.chdir(tmp_path / "elsewhere"))
    assert s.done == 3 and len(list((tmp_path / "out").glob("*.tif"))) == 3
    assert not (tmp_path / "elsewhere" / "out").exists()


def test_a_daemonic_process_refines_in_its_own_thread(monkeypatch):
    """A multiprocessing.Pool worker may not start processes: auto picks 0, an explicit number is refused."""
    import multiprocessing

    from napari_nevus_seg.batch import refine_pool as batch_refine

    class Daemon:
        daemon = True

    monkeypatch.setattr("napari_nevus_seg.model.devices.cpu_cores", lambda: 8)
    assert batch_refine.auto_refine_workers(100, "cpu") == 4
    monkeypatch.setattr(multiprocessing, "current_process", lambda: Daemon())
    assert batch_refine.auto_refine_workers(100, "cpu") == 0
    with pytest.raises(BatchSetupError, match="daemonic"):
        segment_folder(Path("."), Path("."), refine_workers=2)


def test_very_long_file_names_are_written(tmp_path, model):
    """The temporary file beside an output must not be longer than the output's own name."""
    folder = tmp_path / "in"
    make_folder(folder, 1)
    long = folder / ("a" * 246 + ".png")        # 250 bytes: the usual limit is 255
    (folder / "img0.png").rename(long)
    s = segment_folder(folder, tmp_path / "out", model=model)
    assert s.done == 1 and s.ok and (tmp_path / "out" / ("a" * 246 + ".tif")).is_file()


def test_ctrl_c_stops_the_caller_with_the_summary_and_a_partial_table(tmp_path, model):
    """A script looping over folders must stop on Ctrl-C (it used to go on with the next folder)."""
    from napari_nevus_seg.batch.errors import BatchInterrupted

    make_folder(tmp_path / "in", 4)

    def ctrl_c(result, finished, total):
        if finished == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=tmp_path / "l.csv", progress=ctrl_c,
                       refine_workers=0)
    assert isinstance(info.value, BatchInterrupted)
    s = info.value.summary
    assert s.interrupted and s.done >= 2 and s.results_csv == str(tmp_path / "l.partial.csv")
    assert (tmp_path / "l.partial.csv").is_file() and not (tmp_path / "l.csv").exists()
    assert len(list((tmp_path / "out").glob("*.tif"))) == s.done


def test_options_object_and_keywords_give_the_same_segmentation_settings(tmp_path, model, monkeypatch):
    import napari_nevus_seg.inference.pipeline as pipeline
    from napari_nevus_seg import SegmentOptions

    make_folder(tmp_path / "in", 1)
    seen = []
    real = pipeline.segment

    def spy(img, **kwargs):
        seen.append({k: v for k, v in kwargs.items() if k != "model"})
        return real(img, **kwargs)

    monkeypatch.setattr(pipeline, "segment", spy)
    settings = {"threshold": 0.6, "tta": True, "min_size": 20, "largest_only": True, "refine": False,
                "zoom_small": False}
    by_keywords = segment_folder(tmp_path / "in", tmp_path / "a", model=model, device="cpu", **settings)
    by_options = segment_folder(tmp_path / "in", tmp_path / "b", SegmentOptions(model=model, device="cpu", **settings))
    assert by_keywords.done == by_options.done == 1
    assert seen[0] == seen[1] == {"device": "cpu", "convention": None, **settings}
    assert np.array_equal(read_output(tmp_path / "a" / "img0.tif"), read_output(tmp_path / "b" / "img0.tif"))
    seen.clear()
    segment_folder(tmp_path / "in", tmp_path / "c", options=SegmentOptions(model=model))   # the defaults
    assert seen == [{"device": "auto", "threshold": 0.5, "tta": False, "min_size": None, "largest_only": False,
                     "refine": True, "zoom_small": True, "convention": None}]


def test_options_with_a_segmentation_keyword_is_a_type_error(tmp_path, model):
    from napari_nevus_seg import SegmentOptions

    make_folder(tmp_path / "in", 1)
    options = SegmentOptions(model=model)
    for keyword in ({"tta": True}, {"model": model}, {"threshold": 0.5}, {"min_size": None}):
        with pytest.raises(TypeError, match=f"got options and also the keyword argument.*{next(iter(keyword))}"):
            segment_folder(tmp_path / "in", tmp_path / "out", options, **keyword)
    with pytest.raises(TypeError, match="options must be a SegmentOptions, got dict"):
        segment_folder(tmp_path / "in", tmp_path / "out", options={"tta": True})
    assert not (tmp_path / "out").exists()


def test_batch_options_hold_the_segment_options_and_pickle():
    import pickle

    from napari_nevus_seg.batch.options import BatchOptions
    from napari_nevus_seg.inference.options import SegmentOptions

    opts = BatchOptions(SegmentOptions(model="/m.pt", tta=True), fmt="png", measure=True, pixel_size_mm=(0.01, 0.02))
    assert pickle.loads(pickle.dumps(opts)) == opts
    moved = opts.with_model(None)
    assert moved.segment == SegmentOptions(model=None, tta=True) and moved.fmt == "png" and opts.segment.model == "/m.pt"


def test_dask_warnings_reach_the_caller_with_the_file_name(tmp_path, model):
    """A warning raised in a worker process (a grayscale image under --measure) is shown where the user looks
    (it went to the worker's log before)."""
    distributed = pytest.importorskip("distributed")
    make_folder(tmp_path / "in", 1)
    gray = np.asarray(Image.open(tmp_path / "in" / "img0.png").convert("L"))
    Image.fromarray(gray).save(tmp_path / "in" / "gray.png")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with pytest.warns(UserWarning, match=r"gray\.png.*grayscale") as caught:
            s = segment_folder(tmp_path / "in", tmp_path / "out", model=None, client=client,
                               measure=tmp_path / "t.csv", time_limit_s=600)
    assert s.done == 2
    assert not any("img0.png" in str(w.message) for w in caught)
