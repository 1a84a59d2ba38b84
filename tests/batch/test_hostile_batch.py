"""Batch runs against a full disk, hostile file names and what killed runs leave behind."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pytest
from PIL import Image

from napari_nevus_seg import load_model, segment_folder, synthetic_lesion_image
from napari_nevus_seg.batch import csv_sink
from napari_nevus_seg.cli.main import main

SHAPE = (96, 128)


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(synthetic_lesion_image(seed=40 + i, shape=SHAPE).image).save(folder / name)


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_cells_that_spreadsheets_would_run_are_escaped(tmp_path, model):
    import csv

    hostile = "=1+2+cmd|' -c calc'!A0.png"
    _images(tmp_path / "in", [hostile, "+x.png", "@y.png", "-z.png", "plain.png"])
    segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=tmp_path / "t.csv", pixel_size_mm=0.02)
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        images = {row["image"] for row in csv.DictReader(fh)}
    assert images <= {"'" + hostile, "'+x.png", "'@y.png", "'-z.png", "plain.png"}
    assert "'" + hostile in images and "plain.png" in images
    assert not any(v.startswith(("=", "+", "-", "@")) for v in images)


class _FullDisk:
    """A file object whose writes fail as on a full disk after ``budget`` writes."""

    def __init__(self, fh, budget):
        self.fh, self.budget = fh, budget

    def write(self, text):
        self.budget -= 1
        if self.budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.fh.write(text)

    def flush(self):
        self.fh.flush()

    def close(self):
        self.fh.close()


def test_a_full_disk_under_the_table_is_reported_with_exit_3_and_loses_nothing_written(tmp_path, monkeypatch,
                                                                                      capsys):
    _images(tmp_path / "in", [f"img{i}.png" for i in range(3)])
    table = tmp_path / "lesions.csv"
    assert main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--measure", str(table),
                 "--pixel-size-mm", "0.02", "--quiet"]) == 0
    complete = table.read_bytes()
    (tmp_path / "out" / "img1.tif").unlink()
    opened = csv_sink.CsvSink.__init__

    def init(self, path):
        opened(self, path)
        self._fh = _FullDisk(self._fh, budget=1)

    monkeypatch.setattr(csv_sink.CsvSink, "__init__", init)
    capsys.readouterr()
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--measure", str(table),
               "--pixel-size-mm", "0.02", "--quiet"])
    out = capsys.readouterr()
    assert rc == 3, out
    assert "could not be written: No space left on device" in out.out
    assert "Traceback" not in out.err
    assert table.read_bytes() == complete                                    # the earlier table untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "lesions.csv", "out"]   # no .rows left
    assert (tmp_path / "out" / "img1.tif").is_file()                         # the labels were written


def test_temporaries_of_killed_runs_are_removed_and_live_ones_kept(tmp_path, model):
    _images(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    dead = 2**22 + 12345   # above Linux's default pid_max: no such process
    stale = [out / f".a.{dead}.k3j_x9q1.tif", tmp_path / f".t.csv.{dead}.rows"]
    live = out / f".b.{os.getpid()}.abcdefgh.tif"
    elsewhere = out / f".c.{dead}.zyxwvuts.tif"   # a run on another machine writing now: its pid is unknown here
    for p in [*stale, live, elsewhere]:
        p.write_bytes(b"half-written")
    old = time.time() - 3600
    for p in [*stale, live]:
        os.utime(p, (old, old))                   # an hour untouched
    segment_folder(tmp_path / "in", out, model=model, measure=tmp_path / "t.csv")
    assert not any(p.exists() for p in stale)
    assert live.exists() and elsewhere.exists()


def test_a_complete_run_removes_an_earlier_partial_table(tmp_path, model):
    _images(tmp_path / "in", ["a.png"])
    partial = tmp_path / "t.partial.csv"
    partial.write_text("image,label\na.png,1\n")
    s = segment_folder(tmp_path / "in", tmp_path / "out", model=model, measure=tmp_path / "t.csv")
    assert s.ok and (tmp_path / "t.csv").is_file() and not partial.exists()
    assert np.isfinite(s.seconds)


def test_batch_warnings_name_their_file(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(folder / "blank.png")        # a single colour
    Image.fromarray(synthetic_lesion_image(seed=5, shape=SHAPE).image.mean(-1).astype(np.uint8)).save(
        folder / "gray.png")                                                                # grayscale
    with pytest.warns(UserWarning) as record:
        segment_folder(folder, tmp_path / "out", model=model, measure=tmp_path / "t.csv", pixel_size_mm=0.02)
    texts = [str(w.message) for w in record]
    single = [t for t in texts if "single colour" in t]
    assert single and all(t.startswith("blank.png: ") for t in single), texts
    gray = [t for t in texts if "grayscale" in t]
    assert all(t.startswith("gray.png: ") for t in gray), texts


def test_the_summary_says_one_image_in_the_singular():
    from napari_nevus_seg.batch.summary import BatchSummary

    assert "failed, of 1 image in" in BatchSummary(total=1, done=1).report()
    assert "failed, of 2 images in" in BatchSummary(total=2, done=2).report()


def test_a_full_disk_under_the_label_images_stops_the_run_with_exit_3(tmp_path, capsys, monkeypatch):
    """The first label image fits, then the disk is full: the run stops (no more images tried, each would
    fail the same way), says so, exits 3; the written label image is complete and nothing half-written stays."""
    from napari_nevus_seg.batch import work

    _images(tmp_path / "in", [f"img{i}.png" for i in range(6)])
    real = work.write_output
    written = []

    def write_output(labels, path, *args, **kwargs):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        return real(labels, path, *args, **kwargs)

    monkeypatch.setattr(work, "write_output", write_output)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", "--refine-workers", "0"])
    out = capsys.readouterr().out
    assert rc == 3
    assert "ERROR the disk is full" in out and "not processed" in out and "free some space" in out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["img0.tif"]                                   # complete, and no temporary file
    from napari_nevus_seg import read_labels

    assert read_labels(tmp_path / "out" / "img0.tif").max() >= 1
    failed = out.count("FAILED")
    assert 1 <= failed <= 3                                        # the images in flight, not all five left
