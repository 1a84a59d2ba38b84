"""A tuned model records whether its outlines are refined, and segment(), batch runs and the CLI follow it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_nevus_seg import load_model, segment, segment_folder, synthetic_lesion_image
from napari_nevus_seg.training.loop import init_from
from napari_nevus_seg.training.scoring import SWITCH_MARGIN, choose_refine, score_both


def test_choose_refine_keeps_the_default_unless_the_other_is_clearly_better():
    assert choose_refine({True: [0.90, 0.80], False: [0.91, 0.80]}, default=True) is True       # +0.005 at most
    assert choose_refine({True: [0.80, 0.80], False: [0.80 + 2 * SWITCH_MARGIN] * 2}, default=True) is False
    assert choose_refine({True: [0.95], False: [0.90]}, default=False) is True
    assert choose_refine({True: [], False: []}, default=False) is False


@pytest.fixture(scope="module")
def unrefined_model():
    model = init_from(load_model())
    model.meta["refine"] = False
    return model


def test_segment_follows_the_models_choice_unless_told(unrefined_model):
    img = synthetic_lesion_image(seed=9, shape=(192, 256)).image
    assert load_model().refines is True
    np.testing.assert_array_equal(segment(img, model=unrefined_model), segment(img, model=unrefined_model,
                                                                               refine=False))
    np.testing.assert_array_equal(segment(img), segment(img, refine=True))
    forced = segment(img, model=unrefined_model, refine=True)
    np.testing.assert_array_equal(forced, segment(img, refine=True))     # same weights: the box decides
    assert not np.array_equal(forced, segment(img, model=unrefined_model))


def test_batch_and_cli_follow_the_model_and_the_flags(tmp_path, unrefined_model):
    from napari_nevus_seg import save_model
    from napari_nevus_seg.batch.work import read_output
    from napari_nevus_seg.cli.main import main

    img = synthetic_lesion_image(seed=9, shape=(192, 256)).image
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    path = save_model(unrefined_model, tmp_path / "unrefined.pt")
    segment_folder(tmp_path / "in", tmp_path / "api", model=str(path))
    np.testing.assert_array_equal(read_output(tmp_path / "api" / "a.tif"), segment(img, refine=False))
    assert main(["segment", str(tmp_path / "in"), "-o", str(tmp_path / "cli"), "--model", str(path), "-q"]) == 0
    np.testing.assert_array_equal(read_output(tmp_path / "cli" / "a.tif"), segment(img, refine=False))
    assert main(["segment", str(tmp_path / "in"), "-o", str(tmp_path / "forced"), "--model", str(path),
                 "--refine", "-q"]) == 0
    np.testing.assert_array_equal(read_output(tmp_path / "forced" / "a.tif"), segment(img, refine=True))
    assert main(["segment", str(tmp_path / "in"), "-o", str(tmp_path / "x"), "--refine", "--no-refine"]) == 2


def test_score_both_scores_each_setting_from_one_pass(monkeypatch):
    from napari_nevus_seg import dice
    from napari_nevus_seg.inference import pipeline

    cases = [synthetic_lesion_image(seed=s, shape=(96, 128)) for s in (1, 2)]
    calls = []
    forward = pipeline._forward
    monkeypatch.setattr(pipeline, "_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    scores = score_both(load_model(), [c.image for c in cases], [c.mask for c in cases], "cpu")
    assert len(calls) == 2
    for refine in (True, False):
        want = [dice(segment(c.image, refine=refine) > 0, c.mask) for c in cases]
        assert scores[refine] == pytest.approx(want)
