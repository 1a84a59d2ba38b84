"""The per-image time limit of batch runs: a slow image fails on time, the batch goes on, waiting is free."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from napari_nevus_seg import load_model, segment_folder, synthetic_lesion_image
from napari_nevus_seg.batch.options import BatchOptions
from napari_nevus_seg.batch.work import ImageTask, process_one
from napari_nevus_seg.cli.main import main
from napari_nevus_seg.inference import pipeline
from napari_nevus_seg.io.deadline import Deadline, TimeLimitExceeded, check_deadline

STEP_S = 100.0   # what one batch of windows of the elongated image "takes" on the test clock


class Clock:
    """The deadline's clock: real time plus what the slowed-down steps add (so the tests do not depend on
    how loaded the machine is)."""

    def __init__(self):
        self.extra = 0.0
        self.slow_calls = 0

    def monotonic(self) -> float:
        return time.monotonic() + self.extra

    def spend(self, seconds: float) -> None:
        self.slow_calls += 1
        self.extra += seconds


@pytest.fixture
def clock(monkeypatch):
    from types import SimpleNamespace

    from napari_nevus_seg.io import deadline

    c = Clock()
    monkeypatch.setattr(deadline, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture
def slow_windows(monkeypatch, clock):
    """The network "takes" STEP_S per call on windowed (elongated) images, and its usual time on others."""
    forward = pipeline._forward

    def slow(model, batch_u8, dev, tta):
        if len(batch_u8) > 1:
            clock.spend(STEP_S)
        return forward(model, batch_u8, dev, tta)

    monkeypatch.setattr(pipeline, "_forward", slow)
    return clock


def _inputs(folder):
    """An elongated image (17 network views: two calls of 8 and one of 1) and an ordinary one."""
    folder.mkdir(parents=True, exist_ok=True)
    strip = np.full((100, 2000, 3), 200, np.uint8)
    strip[30:70, 900:960] = (90, 60, 40)
    Image.fromarray(strip).save(folder / "a_strip.png")
    Image.fromarray(synthetic_lesion_image(seed=3, shape=(96, 128)).image).save(folder / "b_lesion.png")


# ------------------------------------------------------------------------------ the deadline itself
def test_deadline_counts_only_the_time_spent_running(clock):
    d = Deadline(50)
    clock.spend(80)                      # waiting in a queue: not charged
    assert not d.is_set()
    with d.running():
        check_deadline("step")           # the context's deadline, not spent yet
        clock.spend(80)
        with pytest.raises(TimeLimitExceeded, match=r"time limit of 50 s exceeded \(step\)"):
            check_deadline("step")
    assert d.is_set() and 80 <= d.elapsed() < 90
    check_deadline("outside")            # no deadline in force out here: nothing happens


def test_no_limit_never_expires():
    d = Deadline(None)
    with d.running():
        check_deadline()
    assert not d.is_set()


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "10", 1e9])
def test_bad_limits_are_refused_before_any_work(tmp_path, value):
    from napari_nevus_seg.batch.errors import BatchSetupError

    _inputs(tmp_path / "in")
    with pytest.raises(BatchSetupError, match="time limit must be"):
        segment_folder(tmp_path / "in", tmp_path / "out", time_limit_s=value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ------------------------------------------------------------------------------------ batch runs
def test_a_slow_image_fails_on_time_and_the_batch_goes_on(tmp_path, model, slow_windows):
    _inputs(tmp_path / "in")
    by_name = {}
    summary = segment_folder(tmp_path / "in", tmp_path / "out", model=model, time_limit_s=60, refine_workers=0,
                             progress=lambda result, done, total: by_name.setdefault(result.name, result))
    strip, lesion = by_name["a_strip.png"], by_name["b_lesion.png"]
    assert strip.status == "failed"
    assert "time limit of 60 s exceeded (in the network, 8 of 17 views done)" in strip.reason
    assert slow_windows.slow_calls == 1   # it stopped after its first batch of windows, not after all three
    assert not (tmp_path / "out" / "a_strip.tif").exists()
    assert lesion.status == "done" and (tmp_path / "out" / "b_lesion.tif").exists()
    assert len(summary.failed) == 1 and summary.done == 1


def test_without_a_limit_the_slow_image_is_segmented(tmp_path, model, slow_windows):
    _inputs(tmp_path / "in")
    summary = segment_folder(tmp_path / "in", tmp_path / "out", model=model, refine_workers=0)
    assert summary.done == 2 and not summary.failed
    assert slow_windows.slow_calls == 2   # two batches of 8 windows (the 17th view goes alone)


def test_cli_time_limit_reports_the_image_and_exits_1(tmp_path, slow_windows, capsys):
    _inputs(tmp_path / "in")
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", "--time-limit", "60"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED a_strip.png: time limit of 60 s exceeded" in out
    assert (tmp_path / "out" / "b_lesion.tif").exists()


def test_a_slow_measurement_is_stopped_between_lesions(tmp_path, model, monkeypatch, clock):
    """The Dask path (process_one): the measurement checks the limit between lesions."""
    from napari_nevus_seg.measurements import table

    measure_lesion = table.measure_lesion

    def slow(*args, **kwargs):
        clock.spend(40.0)
        return measure_lesion(*args, **kwargs)

    monkeypatch.setattr(table, "measure_lesion", slow)
    img = synthetic_lesion_image(seed=5, shape=(120, 160), n_lesions=3).image
    Image.fromarray(img).save(tmp_path / "three.png")
    task = ImageTask(str(tmp_path / "three.png"), str(tmp_path / "three"), "three.png")
    opts = BatchOptions(measure=True, time_limit_s=60).with_model(model)
    result = process_one(task, opts)
    assert result.status == "failed"
    assert "time limit of 60 s exceeded (measuring, 2 of" in result.reason
    assert clock.slow_calls == 2
