"""Choosing a conditioned model's outline convention: API, batch and command line (the widget: tests/napari)."""

from __future__ import annotations

import numpy as np
import pytest
from conditioned import conditioned_default

from napari_nevus_seg import load_model, network_map, save_model, segment, synthetic_lesion_image
from napari_nevus_seg.batch.folder import BatchSetupError, segment_folder
from napari_nevus_seg.cli.main import main


@pytest.fixture(scope="module")
def model():
    return conditioned_default()


@pytest.fixture(scope="module")
def image():
    return synthetic_lesion_image(seed=4, shape=(192, 256)).image


def test_each_convention_is_drawn_without_changing_the_model(model, image):
    loose = segment(image, model=model, convention="loose", refine=False, device="cpu")
    tight = segment(image, model=model, convention="tight", refine=False, device="cpu")
    assert not np.array_equal(loose, tight)            # the choice matters for this model
    assert (loose > 0).sum() != (tight > 0).sum()
    assert model.net.convention == 1 and model.convention_name == "tight"   # the stored one is kept
    np.testing.assert_array_equal(segment(image, model=model, refine=False, device="cpu"), tight)
    np.testing.assert_array_equal(segment(image, model=model, convention=0, refine=False, device="cpu"), loose)
    view = model.with_convention("loose")
    assert view is model.with_convention("loose") and model.with_convention("tight") is model
    assert view.with_convention("tight") is model and view.with_convention("loose") is view
    assert model.with_convention("0") is view and model.with_convention(np.int64(0)) is view
    assert view.net.convention == 0 and view.convention_name == "loose"
    assert view.net.down[0][0].weight is model.net.down[0][0].weight   # the weights are shared, not copied
    np.testing.assert_array_equal(network_map(image, model=model, convention="loose", device="cpu")[1].numpy(),
                                  network_map(image, model=view, device="cpu")[1].numpy())


def test_the_refinement_follows_the_convention_unless_given(model, image):
    assert model.conventions == ("loose", "tight")
    assert model.with_convention("loose").refines is False and model.refines is True
    np.testing.assert_array_equal(segment(image, model=model, convention="loose", device="cpu"),
                                  segment(image, model=model, convention="loose", refine=False, device="cpu"))
    np.testing.assert_array_equal(segment(image, model=model, device="cpu"),
                                  segment(image, model=model, refine=True, device="cpu"))
    model.meta["refine"] = True        # a fine-tuned model's recorded choice applies to every convention
    try:
        assert model.with_convention("loose").refines is True
    finally:
        del model.meta["refine"]


def test_unknown_conventions_and_models_of_one_convention_are_refused(model, image):
    with pytest.raises(ValueError, match="no outline convention 'ham'; it knows loose, tight"):
        segment(image, model=model, convention="ham", device="cpu")
    with pytest.raises(ValueError, match="no outline convention 2"):
        model.with_convention(2)
    with pytest.raises(ValueError, match="draws one outline convention"):
        segment(image, convention="tight", device="cpu")           # the default model: use refine
    assert load_model().conventions == () and load_model().convention_name is None


def test_a_saved_view_draws_its_convention(model, image, tmp_path):
    save_model(model.with_convention("loose"), tmp_path / "loose.pt")
    again = load_model(tmp_path / "loose.pt")
    assert again.convention_name == "loose" and again.conventions == ("loose", "tight")
    assert again.refines is False
    np.testing.assert_array_equal(segment(image, model=again, device="cpu"),
                                  segment(image, model=model, convention="loose", device="cpu"))


def test_batch_and_command_line_take_the_convention(model, image, tmp_path, capsys):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "a.png")
    save_model(model, tmp_path / "two.pt")
    summary = segment_folder(tmp_path / "in", tmp_path / "api", model=tmp_path / "two.pt", convention="loose",
                             device="cpu", fmt="png")
    assert summary.ok and summary.done == 1
    expected = segment(image, model=model, convention="loose", device="cpu") > 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "api" / "a.png")) > 0, expected)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "cli"), "--model", str(tmp_path / "two.pt"),
               "--convention", "loose", "--format", "png", "--device", "cpu", "-q"])
    assert rc == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "cli" / "a.png")) > 0, expected)
    with pytest.raises(BatchSetupError, match="it knows loose, tight"):
        segment_folder(tmp_path / "in", tmp_path / "bad", model=tmp_path / "two.pt", convention="ham")
    assert not (tmp_path / "bad").exists()             # refused before any output
    capsys.readouterr()
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "bad"), "--convention", "tight", "-q"])
    assert rc == 2 and "draws one outline convention" in capsys.readouterr().err
