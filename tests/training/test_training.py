"""training.train: checkpoints and resume (early stopping's count, the best epoch, other settings refused)."""

from __future__ import annotations

import pytest
import torch

from napari_nevus_seg.io.synthetic import synthetic_lesion_image
from napari_nevus_seg.model.networks import build_model
from napari_nevus_seg.training import loop as training
from napari_nevus_seg.training.data import load_pairs, prepare_pairs
from napari_nevus_seg.training.loop import TrainConfig, train

SIZE = 32


def tiny(width: int = 4):
    torch.manual_seed(0)
    return build_model(width=width, depth=2, preprocess={"size": SIZE, "mean": [0.5] * 3, "std": [0.25] * 3})


@pytest.fixture(scope="module")
def pairs():
    src = [synthetic_lesion_image(seed=s, shape=(48, 64)) for s in range(6)]
    return prepare_pairs([c.image for c in src], [c.labels for c in src], SIZE)


@pytest.fixture(scope="module")
def split(pairs):
    return pairs.subset([0, 1, 2, 3]), pairs.subset([4, 5])


def cfg(epochs: int, patience: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=epochs, steps_per_epoch=1, batch_size=2, lr=1e-3, patience=patience)


def test_early_stopping_count_carries_over_a_resume(tmp_path, split, monkeypatch):
    # a validation score that never improves after epoch 1: 2 bad epochs before the stop, 1 after resuming
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: {"dice": 0.5, "jaccard": 0.4})
    train(tiny(), *split, cfg(3), device="cpu", checkpoint_dir=tmp_path)
    result = train(tiny(), *split, cfg(10, patience=3), device="cpu", checkpoint_dir=tmp_path, resume=True)
    assert [h["epoch"] for h in result.model.meta["history"]] == [1, 2, 3, 4]   # not 6: the count went on
    assert result.model.meta["best_val"]["epoch"] == 1
    seconds = [h["seconds"] for h in result.model.meta["history"]]
    assert seconds == sorted(seconds) and seconds[3] > seconds[2] > 0   # training time adds up across the resume


def test_resume_without_validation_ignores_an_old_best(tmp_path, pairs, split):
    train(tiny(), *split, cfg(1), device="cpu", checkpoint_dir=tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "best.pt").write_bytes((tmp_path / "a" / "best.pt").read_bytes())   # another run's best
    train(tiny(), pairs, None, cfg(1), device="cpu", checkpoint_dir=tmp_path / "b")
    resumed = train(tiny(), pairs, None, cfg(2), device="cpu", checkpoint_dir=tmp_path / "b", resume=True)
    last = training.read_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    for k, v in resumed.model.net.state_dict().items():   # the final model is this run's last epoch
        assert torch.equal(v.cpu(), last[k]), k


def test_resume_with_another_network_is_a_clear_error(tmp_path, pairs):
    train(tiny(4), pairs, None, cfg(1), device="cpu", checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="resume with the same settings"):
        train(tiny(8), pairs, None, cfg(2), device="cpu", checkpoint_dir=tmp_path, resume=True)


def test_freeze_encoder_keeps_its_weights_and_normalisation_statistics(split):
    model = tiny()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    train(model, *split, TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, lr=1e-2, freeze_encoder=True,
                                     freeze_norm=False), device="cpu")
    after = model.net.state_dict()
    frozen = [k for k in before if k.startswith(("down.", "bottom."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)        # BN running stats included
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("dec."))
    assert all(p.requires_grad for p in model.net.parameters())                      # trainable again after


def test_a_cancelled_run_leaves_the_encoder_trainable(split):
    model = tiny()
    calls = []

    class CancelAfterTwoChecks:
        def is_set(self):
            calls.append(1)
            return len(calls) > 2

    with pytest.raises(training.TrainingCancelled):
        train(model, *split, TrainConfig(epochs=5, steps_per_epoch=2, batch_size=2, freeze_encoder=True),
              device="cpu", cancel=CancelAfterTwoChecks())
    assert all(p.requires_grad for p in model.net.parameters())


# ------------------------------------------------------------------------------ pairs that do not fit
def test_load_pairs_names_the_files_of_a_mask_that_does_not_fit(tmp_path):
    # "mask shape (40, 50) does not match image shape (64, 64)" did not say which of 2000 files it was
    import numpy as np
    from PIL import Image

    from napari_nevus_seg.io.synthetic import dataset_folder

    cases = dataset_folder(tmp_path, "images_masks", n=4, shape=(48, 64))
    bad = cases[2]
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(bad.mask)
    with pytest.raises(ValueError, match="does not match") as err:
        load_pairs(tmp_path, SIZE, workers=2)
    assert str(bad.image) in str(err.value) and str(bad.mask) in str(err.value)
    assert str(cases[0].image) not in str(err.value)


def test_prepare_pairs_names_the_pair_and_reads_colour_masks_and_refuses_nan():
    import numpy as np

    src = [synthetic_lesion_image(seed=s, shape=(48, 64)) for s in range(3)]
    images, masks = [c.image for c in src], [c.labels for c in src]
    colour = prepare_pairs(images, [np.dstack([m.astype(np.uint8) * 255] * 3) for m in masks], SIZE)
    assert torch.equal(colour.masks, prepare_pairs(images, masks, SIZE).masks)   # (H, W, 3) masks as (H, W)
    short = masks[:1] + [masks[1][:-8]] + masks[2:]
    with pytest.raises(ValueError, match=r"pair 1 \('b'\): mask shape \(40, 64\) does not match"):
        prepare_pairs(images, short, SIZE, names=["a", "b", "c"])

    class Files(list):   # a lazy sequence that knows its files (as the CLI's FilesAsArrays)
        def __init__(self, items, paths):
            super().__init__(items)
            self.paths = paths

    with pytest.raises(ValueError, match=r"pair 1 \(image i1.png, mask m1.png\)"):
        prepare_pairs(Files(images, ["i0.png", "i1.png", "i2.png"]), Files(short, ["m0.png", "m1.png", "m2.png"]),
                      SIZE)
    nan = masks[0].astype(float)
    nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="pair 0.*NaN"):
        prepare_pairs(images[:1], [nan], SIZE)
