"""Saving under one name at once: exactly one save wins, the others are told; names that read as files."""

from __future__ import annotations

import threading

import pytest
import torch

from napari_nevus_seg import ModelLibrary, build_model


def _race(n: int, action) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("trial", range(3))
def test_concurrent_saves_under_one_name_lose_nothing_silently(tmp_path, trial):
    lib = ModelLibrary(tmp_path / "lib")
    models = [build_model(width=2, depth=1, meta={"who": i}) for i in range(6)]
    results = _race(6, lambda i: lib.save(models[i], "shared"))
    winners = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, FileExistsError) for i, r in enumerate(results) if i != winners[0])
    assert lib.load("shared").meta["who"] == winners[0]
    assert sorted(p.name for p in lib.root.iterdir()) == ["shared.pt"]   # no temporary files left


def test_concurrent_imports_of_one_file_get_distinct_names(tmp_path):
    src = tmp_path / "colleague.pt"
    torch.save(build_model(width=2, depth=1).to_checkpoint(), src)
    lib = ModelLibrary(tmp_path / "lib")
    names = _race(5, lambda i: lib.import_file(src))
    assert sorted(names) == ["colleague", "colleague-2", "colleague-3", "colleague-4", "colleague-5"], names


def test_rename_onto_a_name_taken_meanwhile_is_refused(tmp_path):
    lib = ModelLibrary(tmp_path / "lib")
    lib.save(build_model(width=2, depth=1, meta={"who": "a"}), "a")
    lib.save(build_model(width=2, depth=1, meta={"who": "b"}), "b")
    with pytest.raises(FileExistsError, match="'b' exists already"):
        lib.rename("a", "b")
    assert lib.load("b").meta["who"] == "b" and "a" in lib


@pytest.mark.parametrize("name", ["mine.pt", "MINE.PT", "x .pt"])
def test_names_ending_in_pt_are_refused_with_advice(tmp_path, name):
    lib = ModelLibrary(tmp_path / "lib")
    with pytest.raises(ValueError, match="reads as a file name"):
        lib.save(build_model(width=2, depth=1), name)


def test_import_of_a_double_suffix_file_drops_the_pt(tmp_path):
    src = tmp_path / "tuned.pt.pt"
    torch.save(build_model(width=2, depth=1).to_checkpoint(), src)
    assert ModelLibrary(tmp_path / "lib").import_file(src) == "tuned"
