"""The ``nevus-seg`` command line, run in-process through ``cli.main`` (plus one real console-script run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from small_lesion import small_lesion_in_large_frame

from napari_nevus_seg import build_model, load_model, save_model, segment, synthetic_lesion_image
from napari_nevus_seg.batch.work import read_output
from napari_nevus_seg.cli.main import main

SHAPE = (96, 128)


def make_folder(root: Path, n: int = 2, seed: int = 0) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = root / f"img{i}.jpg"
        Image.fromarray(synthetic_lesion_image(seed=seed + i, shape=SHAPE).image).save(p, quality=95)
        out.append(p)
    return out


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """A small untrained model file: fast, and different from the default model."""
    torch.manual_seed(1)
    m = build_model(width=4, depth=2, preprocess={"size": 64, "mean": [0.5] * 3, "std": [0.25] * 3})
    return save_model(m, tmp_path / "tiny.pt")


def test_segment_folder_summary_and_exit_code(tmp_path, capsys):
    paths = make_folder(tmp_path / "in", 2)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 segmented" in out and "0 failed" in out
    img = np.asarray(Image.open(paths[0]).convert("RGB"))
    np.testing.assert_array_equal(read_output(tmp_path / "out" / "img0.tif"), segment(img, model=load_model()))
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q"])
    assert rc == 0 and "2 skipped" in capsys.readouterr().out


def test_options_reach_the_segmentation(tmp_path, tiny_model, capsys):
    paths = make_folder(tmp_path / "in", 1)
    rc = main(["segment", str(paths[0]), "--out", str(tmp_path / "out"), "--model", str(tiny_model),
               "--threshold", "0.3", "--min-size", "5", "--largest-only", "--device", "cpu", "-q"])
    assert rc == 0
    img = np.asarray(Image.open(paths[0]).convert("RGB"))
    expected = segment(img, model=load_model(tiny_model), device="cpu", threshold=0.3, min_size=5, largest_only=True)
    np.testing.assert_array_equal(read_output(tmp_path / "out" / "img0.tif"), expected)
    assert expected.max() <= 1


def test_some_failures_give_exit_1(tmp_path, capsys):
    make_folder(tmp_path / "in", 1)
    (tmp_path / "in" / "zero.png").write_bytes(b"")
    rc = main(["segment", str(tmp_path / "in"), str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "out"), "-q"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 segmented" in out and "2 failed" in out
    assert "FAILED zero.png: the file is empty" in out
    assert "missing.jpg: no such file or folder" in out


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "threshold"),
    (["--workers", "0"], "--workers"),
    (["--model", "no-such-model-name"], "no-such-model-name"),
    (["--model", "missing/model.pt"], "not found"),
    (["--time-limit", "0"], "time limit must be more than 0"),
    (["--time-limit", "nan"], "time limit must be more than 0"),
])
def test_setup_errors_give_exit_2(tmp_path, capsys, args, message):
    make_folder(tmp_path / "in", 1)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "nevus-seg: error:" in err
    assert not list((tmp_path / "out").glob("*.tif")) if (tmp_path / "out").exists() else True


def test_usage_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main(["segment", "x", "--out", "y", "--workers", "2", "--scheduler", "tcp://h:1"]) == 2
    assert "not allowed with" in capsys.readouterr().err
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "o")]) == 2      # no images
    assert "no images found" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_measure_csv_from_the_cli(tmp_path, capsys):
    pytest.importorskip("napari_nevus_seg.measurements.table")
    import pandas as pd

    make_folder(tmp_path / "in", 2)
    csv = tmp_path / "res" / "lesions.csv"
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--measure", str(csv),
               "--pixel-size-mm", "0.05", "-q"])
    assert rc == 0
    table = pd.read_csv(csv)
    n = sum(int(read_output(tmp_path / "out" / f"img{i}.tif").max()) for i in range(2))
    assert len(table) == n and list(table.columns[:1]) == ["image"]
    assert set(table["image"]) <= {"img0.jpg", "img1.jpg"}
    assert any(c.endswith("_mm2") for c in table.columns)     # the pixel size was used
    assert f"measurements: {n} lesions" in capsys.readouterr().out


def test_find_ruler_from_the_cli(tmp_path, capsys):
    """--find-ruler: the pixel size of an image with a ruler comes from its ticks (50 px = 1 mm)."""
    import pandas as pd

    from napari_nevus_seg.io.synthetic_ruler import draw_ruler

    (tmp_path / "in").mkdir()
    skin = synthetic_lesion_image(seed=1, shape=(384, 512)).image
    Image.fromarray(draw_ruler(skin, start=(280.0, 60.0), spacing_px=50.0, ticks=9)).save(tmp_path / "in" / "r.png")
    csv = tmp_path / "lesions.csv"
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--measure", str(csv),
               "--find-ruler", "-q"])
    assert rc == 0
    table = pd.read_csv(csv)
    assert (table["pixel_size_from"] == "ruler").all()
    np.testing.assert_allclose(table["pixel_size_col_mm"], 0.02, rtol=0.003)
    assert "ruler found in 1 of 1 image read" in capsys.readouterr().out


def test_workers_run_a_local_dask_cluster(tmp_path, tiny_model, capsys):
    import os

    pytest.importorskip("distributed")
    paths = make_folder(tmp_path / "in", 2)
    env_before = dict(os.environ)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "1",
               "--model", str(tiny_model), "-q"])
    assert rc == 0, capsys.readouterr()
    assert dict(os.environ) == env_before     # Dask's thread settings for its workers stay out of this process
    img = np.asarray(Image.open(paths[1]).convert("RGB"))
    expected = segment(img, model=load_model(tiny_model))
    np.testing.assert_array_equal(read_output(tmp_path / "out" / "img1.tif"), expected)


def test_unreachable_scheduler_is_a_setup_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("napari_nevus_seg.batch.cluster.CONNECT_TIMEOUT", "2s")
    make_folder(tmp_path / "in", 1)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9",
               "-q"])
    assert rc == 2
    assert "cannot connect to the Dask scheduler" in capsys.readouterr().err


def test_installed_console_script(tmp_path):
    exe = shutil.which("nevus-seg") or (str(Path(sys.executable).with_name("nevus-seg"))
                                        if Path(sys.executable).with_name("nevus-seg").exists() else None)
    if exe is None:
        pytest.skip("nevus-seg is not installed (pip install -e . --no-deps)")
    make_folder(tmp_path / "in dir é", 1)
    (tmp_path / "in dir é" / "bad.jpg").write_text("text, not an image")
    r = subprocess.run([exe, "segment", str(tmp_path / "in dir é"), "--out", str(tmp_path / "out"), "--format", "png"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "1 segmented" in r.stdout and "FAILED bad.jpg" in r.stdout
    assert (tmp_path / "out" / "img0.png").is_file()
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("nevus-seg ")


# ------------------------------------------------------------------------------------------- train
def dataset(root: Path, n: int = 6) -> Path:
    from napari_nevus_seg.io.synthetic import dataset_folder

    dataset_folder(root, layout="images_masks", n=n, shape=(64, 80))
    return root


TINY = ["--size", "32", "--width", "4", "--depth", "2", "--batch-size", "4", "--device", "cpu", "-q"]


def tiny(option: str, value: str) -> list[str]:
    """TINY with ``option`` set to ``value``."""
    args = list(TINY)
    args[args.index(option) + 1] = value
    return args


def test_train_saves_a_loadable_model_and_resumes(tmp_path, capsys):
    data = dataset(tmp_path / "data")
    out = tmp_path / "m.pt"
    rc = main(["train", str(data), "--out", str(out), "--epochs", "1", "--checkpoint-dir", str(tmp_path / "ck"),
               "--val-fraction", "0.34", *TINY])
    assert rc == 0, capsys.readouterr().err
    m = load_model(out)
    assert (m.input_size, m.config["width"], m.config["depth"]) == (32, 4, 2)
    assert len(m.meta["history"]) == 1 and m.meta["best_val"]["epoch"] == 1
    assert "best validation: Dice" in capsys.readouterr().out
    assert main(["train", str(data), "--out", str(out), "--epochs", "1", *TINY]) == 2   # would overwrite
    assert "exists already" in capsys.readouterr().err
    rc = main(["train", str(data), "--out", str(out), "--overwrite", "--epochs", "2", "--resume",
               "--checkpoint-dir", str(tmp_path / "ck"), "--val-fraction", "0.34", *TINY])
    assert rc == 0
    assert [h["epoch"] for h in load_model(out).meta["history"]] == [1, 2]


def test_train_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "m.pt"), *TINY]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt"), *TINY]) == 2
    assert "no image/mask pairs" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt"), "--resume", *TINY]) == 2
    assert not (tmp_path / "m.pt").exists()
    capsys.readouterr()
    bad = {("--size", "30"): "multiple of 2**depth = 4", ("--width", "0"): "--width must be at least 1",
           ("--depth", "0"): "--depth 1 to 8"}
    for (opt, value), message in bad.items():
        assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt"), *tiny(opt, value)]) == 2
        assert message in capsys.readouterr().err
    ck = tmp_path / "ck"
    ck.mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt"), "--resume",
                 "--checkpoint-dir", str(ck), *TINY]) == 2
    assert "no last.pt" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt"), "--init", "default",
                 "--checkpoint-dir", str(ck), *TINY]) == 2
    assert "keeps no checkpoints" in capsys.readouterr().err


def test_resume_with_other_network_settings_is_refused(tmp_path, capsys):
    data = dataset(tmp_path / "data")
    ck = ["--checkpoint-dir", str(tmp_path / "ck")]
    assert main(["train", str(data), "--out", str(tmp_path / "m.pt"), "--epochs", "1", *ck, *TINY]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "n.pt"), "--epochs", "2", "--resume", *ck,
                 *tiny("--width", "8")]) == 2
    assert "trained with --arch unet --width 4 --depth 2 --size 32" in capsys.readouterr().err
    assert not (tmp_path / "n.pt").exists()


def test_train_fill_prob_reaches_the_augmentation(tmp_path, monkeypatch, capsys):
    import napari_nevus_seg.training.loop as training

    seen = []
    real_train = training.train

    def spy(model, train_set, val_set=None, config=None, **kw):
        seen.append(config.augment.fill_prob)
        return real_train(model, train_set, val_set, config, **kw)

    monkeypatch.setattr(training, "train", spy)
    data = dataset(tmp_path / "data")
    assert main(["train", str(data), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--fill-prob", "0.4",
                 *TINY]) == 0, capsys.readouterr().err
    assert seen == [0.4]
    assert main(["train", str(data), "--out", str(tmp_path / "n.pt"), "--fill-prob", "1.5", *TINY]) == 2
    assert "--fill-prob must lie in [0, 1]" in capsys.readouterr().err and not (tmp_path / "n.pt").exists()


def test_train_init_fine_tunes_and_names_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "lib"))
    data = dataset(tmp_path / "data", n=4)
    torch.manual_seed(0)
    base = save_model(build_model(width=4, depth=2, preprocess={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}),
                      tmp_path / "base.pt")
    rc = main(["train", str(data), "--out", str(tmp_path / "ft.pt"), "--init", str(base), "--epochs", "1",
               "--name", "clinic A", "--fill-prob", "0.4", *TINY])
    err = capsys.readouterr().err
    assert rc == 0, err
    # TINY's network settings and --fill-prob are for new models: said, not silently dropped
    assert "--size, --width, --depth, --fill-prob ignored when fine-tuning" in " ".join(err.split())
    ft = load_model(tmp_path / "ft.pt")
    assert ft.input_size == 32
    before = load_model(base).net.state_dict()
    after = ft.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)       # the weights moved
    assert (tmp_path / "lib" / "clinic A.pt").is_file()
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert "clinic A" in capsys.readouterr().out


def _tiny_base(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(width=4, depth=2, preprocess={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}),
                      tmp_path / "base.pt")


def test_train_init_output_says_what_each_score_is(tmp_path, monkeypatch, capsys):
    # each epoch line read "val Dice 0.7, Jaccard nan" with no best epoch, and three unlabelled Dice figures
    # followed for the same held-out pair (per epoch before blending, "best validation" after blending at the
    # network's input size, the final one at full resolution)
    import re

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "lib"))
    data = dataset(tmp_path / "data", n=5)
    rc = main(["train", str(data), "--out", str(tmp_path / "ft.pt"), "--init", str(_tiny_base(tmp_path)),
               "--epochs", "2", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "nan" not in err
    assert ("held-out scores per epoch: 1 held-out pair at the network's 32 px input, fully tuned weights (they "
            "pick the best epoch; the model returned keeps 50% of the update)") in err
    assert re.search(r"^epoch 1/2: loss \d\.\d{4}, held-out Dice \d\.\d{4}, Jaccard \d\.\d{4}, best epoch 1 "
                     r"\(Dice \d\.\d{4}\)$", err, re.M), err
    assert re.search(r"^epoch 2/2: .*, best epoch [12] \(Dice", err, re.M), err
    assert re.search(r"^returned model \(50% of the update, best epoch [12]\) on 1 held-out pair at the network's 32 px "
                     r"input: Dice \d\.\d{4}, Jaccard \d\.\d{4}$", out, re.M), out
    assert re.search(r"^fine-tuning, full resolution as `nevus-seg segment` outlines, base -> returned model: "
                     r"Dice \d\.\d{3} -> \d\.\d{3} \(.*, 1 held-out pair\)", out, re.M), out
    assert "best validation" not in out


def test_train_init_keeps_the_model_when_its_name_is_taken_while_training_runs(tmp_path, monkeypatch, capsys):
    # a --name free when the run started but saved by another program meanwhile: FileExistsError traceback
    import napari_nevus_seg.training.finetune as finetune
    from napari_nevus_seg.model.library import ModelLibrary

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "lib"))
    base = _tiny_base(tmp_path)
    real = finetune.fine_tune

    def and_meanwhile(*args, **kwargs):
        model = real(*args, **kwargs)
        ModelLibrary().save(load_model(base), "clinic A")      # another program takes the name
        return model

    monkeypatch.setattr(finetune, "fine_tune", and_meanwhile)
    rc = main(["train", str(dataset(tmp_path / "data", n=3)), "--out", str(tmp_path / "ft.pt"), "--init", str(base),
               "--epochs", "1", "--name", "clinic A", "--device", "cpu", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "'clinic A' was saved in the library while training ran; this one is saved as 'clinic A-2'" in err
    assert "saved in the model library as 'clinic A-2'" in out
    assert ModelLibrary().names() == ["clinic A", "clinic A-2"]
    assert "fine_tune" in ModelLibrary().load("clinic A-2").meta and "fine_tune" not in ModelLibrary().load(
        "clinic A").meta


# ------------------------------------------------------------------------------------------ models
def test_models_commands(tmp_path, monkeypatch, capsys, tiny_model):
    lib = tmp_path / "lib"
    base = ["models", "--library", str(lib)]
    assert main([*base, "import", str(tiny_model), "--name", "tiny one"]) == 0
    assert main([*base, "import", str(tiny_model), "--name", "tiny one"]) == 2      # the name is taken
    assert "exists already" in (e := capsys.readouterr().err) and "add --overwrite to replace it" in e
    assert main([*base, "list"]) == 0
    assert "tiny one" in capsys.readouterr().out
    assert main([*base, "rename", "tiny one", "tiny two"]) == 0
    assert main([*base, "export", "tiny two", str(tmp_path / "shared.pt")]) == 0
    assert load_model(tmp_path / "shared.pt").config == load_model(tiny_model).config
    assert main([*base, "export", "default", str(tmp_path / "shared.pt")]) == 2   # exists: not replaced
    assert "exists already; choose another name, or add --overwrite" in capsys.readouterr().err
    assert main([*base, "export", "default", str(tmp_path / "shared.pt"), "--overwrite"]) == 0
    assert load_model(tmp_path / "shared.pt").config == load_model().config
    assert main([*base, "delete", "tiny two"]) == 0
    capsys.readouterr()
    assert main([*base, "delete", "tiny two"]) == 2
    assert "no model named" in capsys.readouterr().err
    assert main([*base, "rename", "x", "default"]) == 2
    # a model of the library works as --model NAME
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(lib))
    assert main(["models", "import", str(tiny_model), "--name", "tiny"]) == 0
    make_folder(tmp_path / "in", 1)
    assert main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", "tiny", "-q"]) == 0
    img = np.asarray(Image.open(tmp_path / "in" / "img0.jpg").convert("RGB"))
    expected = segment(img, model=load_model(tiny_model))
    np.testing.assert_array_equal(read_output(tmp_path / "out" / "img0.tif"), expected)


def test_refine_workers_option(tmp_path, capsys):
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "o"), "--refine-workers", "-1"]) == 2
    assert "--refine-workers must be 0 or more" in capsys.readouterr().err


def test_no_refine_reaches_the_segmentation(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    img = synthetic_lesion_image(seed=3).image
    Image.fromarray(img).save(src / "a.png")
    assert main(["segment", str(src), "--out", str(tmp_path / "plain"), "--no-refine", "-q"]) == 0
    assert main(["segment", str(src), "--out", str(tmp_path / "refined"), "-q"]) == 0
    np.testing.assert_array_equal(read_output(tmp_path / "plain" / "a.tif"), segment(img, refine=False))
    np.testing.assert_array_equal(read_output(tmp_path / "refined" / "a.tif"), segment(img))
    assert np.count_nonzero(segment(img, refine=False) != segment(img)) > 0  # the option matters here


def test_no_zoom_reaches_the_segmentation(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    img = small_lesion_in_large_frame(seed=1)[0]
    Image.fromarray(img).save(src / "wide.png")
    assert main(["segment", str(src), "--out", str(tmp_path / "first"), "--no-zoom", "-q"]) == 0
    assert main(["segment", str(src), "--out", str(tmp_path / "zoomed"), "-q"]) == 0
    first, zoomed = read_output(tmp_path / "first" / "wide.tif"), read_output(tmp_path / "zoomed" / "wide.tif")
    np.testing.assert_array_equal(first, segment(img, zoom_small=False))
    np.testing.assert_array_equal(zoomed, segment(img))
    assert np.count_nonzero(first != zoomed) > 0  # the option matters here


def test_train_help_states_the_fine_tuning_defaults(capsys):
    from napari_nevus_seg.training.finetune import DEFAULTS

    assert main(["train", "--help"]) == 0
    assert f"the fine-tuning default, {DEFAULTS['epochs']})" in " ".join(capsys.readouterr().out.split())


def test_same_seed_same_model(tmp_path, capsys):
    data = dataset(tmp_path / "data")
    for name in ("a.pt", "b.pt"):
        assert main(["train", str(data), "--out", str(tmp_path / name), "--epochs", "1", "--seed", "3",
                     *TINY]) == 0, capsys.readouterr().err
    a, b = (load_model(tmp_path / n).net.state_dict() for n in ("a.pt", "b.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)       # the starting weights are seeded too


# ----------------------------------------------------------------------- review: data never destroyed
def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_segment_into_the_input_folder_keeps_every_photo(tmp_path, capsys):
    pytest.importorskip("napari_nevus_seg.measurements.table")
    import tifffile

    from napari_nevus_seg.io.labels import labels_source

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        tifffile.imwrite(src / f"photo{i}.tif", synthetic_lesion_image(seed=i, shape=SHAPE).image)
    Image.fromarray(synthetic_lesion_image(seed=5, shape=SHAPE).image).save(src / "jp.png")
    photos = _hashes(src)
    base = ["segment", str(src), "--out", str(src), "-q"]
    assert main(base) == 0
    assert "3 segmented" in capsys.readouterr().out
    labelled = {labels_source(src / n): n for n in ("photo0_tif.tif", "photo1_tif.tif", "jp.tif")}
    assert sorted(labelled) == sorted(str(src / n) for n in photos)            # each photo labelled once
    assert main(base) == 0 and "0 segmented (0 with no lesion found), 3 skipped" in capsys.readouterr().out
    assert main([*base, "--overwrite"]) == 0 and "3 segmented" in capsys.readouterr().out
    assert main([*base, "--measure", str(tmp_path / "m.csv")]) == 0   # measured from the right label files
    out = capsys.readouterr().out
    assert "3 skipped" in out and "0 failed" in out
    assert main(["segment", str(src / "jp.png"), "--out", str(src), "--format", "png", "--overwrite", "-q"]) == 0
    assert (src / "jp_png.png").is_file()
    now = _hashes(src)
    assert {n: now[n] for n in photos} == photos                                 # the photos' bytes unchanged
    assert sorted(now) == sorted([*photos, "photo0_tif.tif", "photo1_tif.tif", "jp.tif", "jp_png.png"])


def test_measure_csv_that_is_an_input_or_not_csv_is_refused(tmp_path, capsys):
    paths = make_folder(tmp_path / "in", 1)
    before = paths[0].read_bytes()
    rc = main(["segment", str(paths[0]), "--out", str(tmp_path / "o2"), "--measure", str(paths[0]), "-q"])
    assert rc == 2 and "is one of the input images" in capsys.readouterr().err
    rc = main(["segment", str(paths[0]), "--out", str(tmp_path / "o2"), "--measure", str(tmp_path / "m.xlsx"), "-q"])
    assert rc == 2 and "must be a .csv file" in capsys.readouterr().err
    assert paths[0].read_bytes() == before and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e-30", "1e4"])
def test_pixel_size_out_of_range_is_refused_before_any_work(tmp_path, capsys, value):
    make_folder(tmp_path / "in", 1)
    rc = main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--pixel-size-mm", value, "-q"])
    assert rc == 2
    assert "--pixel-size-mm must be a number of mm per pixel from 1e-06 to 1000" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_train_divergence_is_one_clear_line(tmp_path, capsys):
    data = dataset(tmp_path / "data")
    rc = main(["train", str(data), "--out", str(tmp_path / "m.pt"), "--epochs", "2", "--lr", "1e12", *TINY])
    err = capsys.readouterr().err
    assert rc == 2
    assert "training diverged" in err and "try a lower --lr" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("option", ["--limit", "--patience"])
@pytest.mark.parametrize("value", ["-1", "0"])
def test_train_limit_and_patience_must_be_positive(tmp_path, capsys, option, value):
    data = dataset(tmp_path / "data")
    assert main(["train", str(data), "--out", str(tmp_path / "m.pt"), option, value, *TINY]) == 2
    assert f"argument {option}: must be at least 1, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()



@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "fast"])
def test_train_learning_rate_must_be_a_positive_number(tmp_path, capsys, value):
    """--lr 0 trained a model that never moved and saved it; NaN/negative failed inside the optimiser."""
    data = dataset(tmp_path / "data")
    assert main(["train", str(data), "--out", str(tmp_path / "m.pt"), "--lr", value, *TINY]) == 2
    assert "argument --lr:" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()

def test_models_messages_for_bad_paths(tmp_path, capsys, tiny_model):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(["models", "--library", str(afile), "import", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "17" not in err.replace(str(tmp_path), "")
    assert main(["models", "--library", str(afile), "list"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    lib = ["models", "--library", str(tmp_path / "lib")]
    (tmp_path / "mx").mkdir()
    assert main([*lib, "import", str(tmp_path / "mx")]) == 2
    assert "mx is a folder, not a model file" in capsys.readouterr().err
    assert main([*lib, "import", str(tiny_model), "--name", "mine"]) == 0
    (tmp_path / "shared").mkdir()
    assert main([*lib, "export", "mine", str(tmp_path / "shared")]) == 0       # a folder: <folder>/<name>.pt
    assert load_model(tmp_path / "shared" / "mine.pt").config == load_model(tiny_model).config
    capsys.readouterr()
    assert main([*lib, "export", "mine", str(tmp_path / "newdir") + "/"]) == 2
    assert "no such folder" in capsys.readouterr().err and not (tmp_path / "newdir").exists()
    assert main([*lib, "export", "mine", str(afile / "x.pt")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and afile.read_text() == "not a folder"


def test_sigterm_stops_like_ctrl_c_with_a_partial_table_and_exit_143(tmp_path):
    import signal
    import time

    make_folder(tmp_path / "in", 40)
    cmd = [sys.executable, "-m", "napari_nevus_seg", "segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
           "--measure", str(tmp_path / "lesions.csv"), "--refine-workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "out").glob("*.tif")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, errs = proc.communicate(timeout=240)
    assert proc.returncode == 143, errs[-2000:]
    assert "of 40 images" in out and (tmp_path / "lesions.partial.csv").is_file()
    assert not (tmp_path / "lesions.csv").exists() and not list(tmp_path.glob(".*"))   # no leftover temporary files
    done = len(list((tmp_path / "out").glob("*.tif")))
    assert 1 <= done < 40


def _group_alive(pgid: int, wait: float = 30) -> bool:
    """Whether processes of group ``pgid`` are left after ``wait`` seconds (then they are killed)."""
    import signal
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            return True
        time.sleep(0.1)


def _start_in_own_group(tmp_path, n: int):
    """`nevus-seg segment` with 2 refinement processes, started in a process group of its own."""
    import time

    make_folder(tmp_path / "in", n)
    cmd = [sys.executable, "-m", "napari_nevus_seg", "segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
           "--refine-workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "out").glob("*.tif")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_sigterm_to_the_whole_job_fails_no_image(tmp_path):
    """A batch system's time limit sends SIGTERM to every process of the job, the refinement processes
    too: they leave the stop to the run, so the images in flight are finished, not failed."""
    import signal

    proc = _start_in_own_group(tmp_path, 60)
    os.killpg(proc.pid, signal.SIGTERM)
    out, errs = proc.communicate(timeout=240)
    assert proc.returncode == 143, errs[-2000:]
    assert ", 0 failed," in out and "Traceback" not in errs, out + errs[-2000:]
    assert 1 <= len(list((tmp_path / "out").glob("*.tif"))) < 60
    assert not _group_alive(proc.pid)


def test_refinement_processes_leave_with_a_killed_run(tmp_path):
    """SIGKILL (the OOM killer) ends the run at once; its refinement processes used to wait for ever."""
    proc = _start_in_own_group(tmp_path, 60)
    proc.kill()
    proc.communicate(timeout=60)   # (waits for the workers too: they hold its output pipes)
    assert not _group_alive(proc.pid)


def test_a_closed_stdout_is_no_error(tmp_path):
    """`nevus-seg ... | head`: the reader closes the pipe early; no traceback, the run's own exit status."""
    import shlex

    make_folder(tmp_path / "in", 1)
    for args in (["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out")], ["models", "list"]):
        command = shlex.join([sys.executable, "-m", "napari_nevus_seg", *args])
        r = subprocess.run(["/bin/bash", "-c", f"{command} | (exec 0<&-; sleep 0.5); exit ${{PIPESTATUS[0]}}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "Traceback" not in r.stderr and "Broken pipe" not in r.stderr, r.stderr


def test_progress_rate_of_a_bar_made_after_its_first_step():
    """Training reports step 1 as done when the bar is made: its rate used to read 60000 steps/s."""
    import io
    import time

    from napari_nevus_seg.cli.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar("epoch 1/1", stream=out, log_every=0.0, timed_from_first_update=True)
    bar.update(1, 8)
    time.sleep(0.2)
    bar.update(3, 8)
    first, second = out.getvalue().splitlines()
    assert "/s" not in first                                   # one step seen: no rate yet
    rate = float(second.split("/s")[0].split()[-1])
    assert 0 < rate <= 10.01                                   # 2 steps in 0.2 s or more (not 3 steps)


def test_train_init_takes_blend_and_replay(tmp_path, capsys):
    data = dataset(tmp_path / "data", n=4)
    torch.manual_seed(0)
    base = save_model(build_model(width=4, depth=2, preprocess={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}),
                      tmp_path / "base.pt")
    rc = main(["train", str(data), "--out", str(tmp_path / "ft.pt"), "--init", str(base), "--epochs", "1",
               "--blend", "0.6", "--replay", "2", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    settings = load_model(tmp_path / "ft.pt").meta["fine_tune"]["settings"]
    assert settings["blend"] == 0.6 and settings["replay"] == 2
    # out of range, or without --init: one line, exit 2, nothing written
    for extra, says in ((["--init", str(base), "--blend", "1.5"], "at most 1"),
                        (["--init", str(base), "--replay", "-1"], "--replay must be 0 or more"),
                        (["--blend", "0.5"], "use them with --init")):
        assert main(["train", str(data), "--out", str(tmp_path / "x.pt"), *extra]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "x.pt").exists()


def test_models_list_says_which_outline_convention_a_model_draws_unless_told(tmp_path, monkeypatch, capsys):
    from conditioned import conditioned_default

    from napari_nevus_seg.model.library import ModelLibrary

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "lib"))
    lib = ModelLibrary()
    lib.save(conditioned_default(convention=1), "two")
    lib.save(conditioned_default(convention=1).with_convention("loose"), "two loose")
    assert main(["models", "list"]) == 0
    lines = {line.split("  ")[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert "outline conventions loose, tight (--convention, draws tight unless told)" in lines["two"]
    assert "draws loose unless told" in lines["two loose"]


def test_warnings_are_one_line_naming_the_image(tmp_path, capsys):
    """A warning about one image reads as one line for people, with the file's name, not Python's source line."""
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "in" / "flat.png")
    assert main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "nevus-seg: warning: flat.png: the image is a single colour" in err
    assert "UserWarning" not in err and ".py:" not in err
