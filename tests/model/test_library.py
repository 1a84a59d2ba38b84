"""The model library: save/list/load by name, rename, delete, export/import with safe loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from napari_nevus_seg.io.synthetic import synthetic_lesion_image
from napari_nevus_seg.model.library import ModelLibrary, validate_name
from napari_nevus_seg.model.loading import default_model_path, load_model
from napari_nevus_seg.model.networks import CheckpointError, build_model, save_model


def tiny(seed: int = 0, **meta):
    torch.manual_seed(seed)
    return build_model(width=4, depth=2, preprocess={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}, meta=meta)


def same_weights(a, b) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_model_load_model_round_trip_keeps_meta(tmp_path):
    m = tiny(fine_tune={"base": "default", "n_pairs": 10, "before_dice": 0.8, "after_dice": 0.9,
                        "before_per_pair": [0.7, 0.9], "improved": True})
    path = save_model(m, tmp_path / "m.pt")
    back = load_model(path)
    assert same_weights(m, back)
    assert back.meta["fine_tune"] == m.meta["fine_tune"]
    assert back.preprocess == m.preprocess and back.config == m.config


def test_save_list_load(tmp_path):
    lib = ModelLibrary(tmp_path)
    assert lib.list() == []
    m = tiny(1, training_data="x")
    path = lib.save(m, "clinic A")
    assert path == tmp_path / "clinic A.pt"
    assert "name" not in m.meta                               # the caller's model is not modified
    entries = lib.list()
    assert [e.name for e in entries] == ["clinic A"]
    assert entries[0].meta["name"] == "clinic A" and entries[0].meta["training_data"] == "x"
    assert same_weights(lib.load("clinic A"), m)
    with pytest.raises(FileExistsError):
        lib.save(tiny(2), "clinic A")
    lib.save(tiny(2), "clinic A", overwrite=True)
    assert same_weights(lib.load("clinic A"), tiny(2))


def test_rename_and_delete(tmp_path):
    lib = ModelLibrary(tmp_path)
    lib.save(tiny(1), "a")
    lib.save(tiny(2), "b")
    with pytest.raises(FileExistsError):
        lib.rename("a", "b")
    lib.rename("a", "c")
    assert lib.names() == ["b", "c"]
    assert lib.list()[1].meta["name"] == "c"
    assert same_weights(lib.load("c"), tiny(1))
    lib.delete("b")
    assert lib.names() == ["c"]
    with pytest.raises(KeyError, match="no model named"):
        lib.delete("b")
    with pytest.raises(KeyError):
        lib.load("b")


def test_export_import_round_trip(tmp_path):
    lib = ModelLibrary(tmp_path / "lib")
    lib.save(tiny(3, note="n"), "mine")
    out = lib.export("mine", tmp_path / "share" / "mine.pt")
    other = ModelLibrary(tmp_path / "other")
    assert other.import_file(out) == "mine"
    assert other.import_file(out) == "mine-2"                 # name taken: a suffix, nothing overwritten
    with pytest.raises(FileExistsError):
        other.import_file(out, name="mine")
    assert other.import_file(out, name="theirs") == "theirs"
    back = other.load("theirs")
    assert same_weights(back, tiny(3)) and back.meta["note"] == "n" and back.meta["name"] == "theirs"
    exported_default = lib.export("default", tmp_path / "d.pt")
    assert exported_default.read_bytes() == default_model_path().read_bytes()
    with pytest.raises(ValueError, match="inside the model library"):
        lib.export("default", lib.root)                       # would add an undeletable "default" to it
    (lib.root / "default.pt").write_bytes(default_model_path().read_bytes())   # copied in by hand
    assert "default" not in lib.names()
    precious = tmp_path / "precious.pt"
    precious.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError):                      # never replaced without being asked
        lib.export("mine", precious)
    assert precious.read_bytes() == b"someone else's file"
    assert lib.export("mine", precious, overwrite=True).read_bytes() == out.read_bytes()


class Planted:
    def __reduce__(self):
        return (print, ("this ran code",))


def test_import_refuses_unsafe_and_foreign_files(tmp_path):
    lib = ModelLibrary(tmp_path / "lib")
    bad = tmp_path / "evil.pt"
    ck = tiny().to_checkpoint()
    ck["meta"] = {"x": Planted()}
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match="pickled"):
        lib.import_file(bad)
    (tmp_path / "foreign.pt").write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(CheckpointError):
        lib.import_file(tmp_path / "foreign.pt")
    mismatched = tiny().to_checkpoint()
    mismatched["config"] = {"width": 8, "depth": 2}
    torch.save(mismatched, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        lib.import_file(tmp_path / "mismatch.pt")
    assert lib.names() == []


def test_list_survives_a_corrupt_file(tmp_path):
    lib = ModelLibrary(tmp_path)
    lib.save(tiny(), "good")
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    entries = {e.name: e for e in lib.list()}
    assert set(entries) == {"broken", "good"}
    assert "error" in entries["broken"].meta and "error" not in entries["good"].meta


@pytest.mark.parametrize("name", ["", "  ", "a/b", "a\\b", "..", ".hidden", "default", "Default", "x" * 101,
                                  "tab\tname", "end."])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError):
        validate_name(name)
    with pytest.raises(ValueError):
        ModelLibrary(tmp_path).save(tiny(), name)
    assert not list(tmp_path.iterdir())


def test_resolve(tmp_path):
    lib = ModelLibrary(tmp_path / "lib")
    assert lib.resolve("default") == default_model_path()
    lib.save(tiny(), "mine")
    assert lib.resolve("mine") == tmp_path / "lib" / "mine.pt"
    f = save_model(tiny(), tmp_path / "file.pt")
    assert lib.resolve(str(f)) == f and lib.resolve(f) == f
    with pytest.raises(KeyError, match="mine"):                # the message lists what exists
        lib.resolve("nope")


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "env"))
    lib = ModelLibrary()
    assert lib.root == tmp_path / "env"
    lib.save(tiny(), "m")
    assert (tmp_path / "env" / "m.pt").is_file()


@pytest.mark.parametrize("stem", ["-v2", "(copy) model", "+x", "a" * 89 + ".b" * 10, "病" * 70])
def test_import_names_any_file_stem_validly(tmp_path, stem):
    lib = ModelLibrary(tmp_path / "lib")
    src = tmp_path / f"{stem}.pt"
    save_model(tiny(3), src)
    name = lib.import_file(src)
    assert name in lib.names() and lib.load(name).meta["name"] == name


def test_long_non_latin_names_are_refused_clearly_not_by_the_file_system(tmp_path):
    lib = ModelLibrary(tmp_path / "lib")
    with pytest.raises(ValueError, match="limited in bytes"):
        lib.save(tiny(3), "病" * 90)
    from napari_nevus_seg.training.store import TrainingStore

    c = synthetic_lesion_image(seed=1, shape=(40, 50))
    pair = TrainingStore(tmp_path / "store").add(c.image, c.mask, "病" * 120)
    assert len(TrainingStore(tmp_path / "store")) == 1 and pair


def test_paths_that_are_not_what_they_should_be_are_named_clearly(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    model_file = save_model(tiny(1), tmp_path / "m.pt")
    bad = ModelLibrary(afile)
    for call in (bad.list, lambda: bad.import_file(model_file), lambda: bad.save(tiny(1), "x"),
                 lambda: bad.delete("x"), lambda: bad.rename("x", "y"), lambda: bad.export("x", tmp_path / "x.pt")):
        with pytest.raises(NotADirectoryError, match="library path .* is a file, not a folder"):
            call()
    lib = ModelLibrary(tmp_path / "lib")
    (tmp_path / "mx").mkdir()
    with pytest.raises(IsADirectoryError, match="mx is a folder, not a model file"):
        lib.import_file(tmp_path / "mx")
    lib.save(tiny(1), "mine")
    (tmp_path / "shared").mkdir()
    assert lib.export("mine", tmp_path / "shared") == tmp_path / "shared" / "mine.pt"   # into the folder
    assert same_weights(load_model(tmp_path / "shared" / "mine.pt"), tiny(1))
    for missing_folder in (f"{tmp_path / 'newdir'}/", str(tmp_path / "a" / "b") + "/"):
        with pytest.raises(NotADirectoryError, match="no such folder"):
            lib.export("mine", missing_folder)
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "a").exists()
    with pytest.raises(NotADirectoryError, match="afile is a file, not a folder"):
        lib.export("mine", afile / "sub" / "x.pt")
    assert afile.read_text() == "not a folder"
    assert lib.export("mine", tmp_path / "new" / "x.pt").is_file()   # a missing folder without a final / is made
