"""Which images a batch run processes, and where each one's labels go.

Folders give their images (masks, label files and the output folder left out), files named
explicitly are always taken, and every input gets an output name that clashes with no other input's
and never replaces an input image or a photograph.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from napari_nevus_seg.batch.options import FORMATS, SUFFIX
from napari_nevus_seg.batch.work import ImageResult, ImageTask
from napari_nevus_seg.io.datasets import IMAGE_SUFFIXES, is_not_a_photo
from napari_nevus_seg.io.labels import is_labels_file


def _folder_images(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    found = []
    # sub-folders that are links are followed, each real folder once (a link to a parent is no loop)
    walker = os.walk(folder, followlinks=True) if recursive else [(str(folder), [], os.listdir(folder))]
    seen = {folder.resolve()}
    for root, dirs, files in walker:
        root_p = Path(root)
        keep = []
        for d in sorted(dirs):
            real = (root_p / d).resolve()
            if d.startswith(".") or real in seen or (exclude is not None and real == exclude):
                continue
            seen.add(real)
            keep.append(d)
        dirs[:] = keep
        stems = {Path(f).stem for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES}
        for f in files:
            p = root_p / f
            if (f.startswith(".") or Path(f).suffix.lower() not in IMAGE_SUFFIXES or is_not_a_photo(p, stems)
                    or not p.is_file() or is_labels_file(p)):   # e.g. --out is the input folder itself
                continue
            found.append(p)
    return sorted(found)


def find_images(inputs: Iterable[str | os.PathLike], out: str | os.PathLike,
                recursive: bool = False, fmt: str = "tif") -> tuple[list[ImageTask], list[ImageResult]]:
    """Image tasks for files and folders, and a failed result for each input that does not exist.

    Folders give their images (BMP, PNG, JPEG, TIFF; hidden files, masks (named ``*_segmentation``,
    ``*_mask``, ``*_lesion`` or ``*_labels`` with their image beside them, in a mask folder or
    single-channel: :func:`~napari_nevus_seg.io.datasets.is_mask_file`), ISIC ``*_superpixels`` maps, label
    files this plugin wrote and the output folder are left out), with sub-folders when ``recursive``
    (linked ones followed, each real folder once), whose structure is kept under ``out``. Files named
    explicitly are always taken. Two inputs that would write the same output get their suffix, then a number, added;
    two inputs of the same name are named by their paths in the summary and the measurement table.
    An output (in format ``fmt``) is never an input image, nor a file that is not a label file (a photograph
    beside the inputs when ``--out`` is the input folder, or anywhere else): ``photo.tif`` gives
    ``photo_tif.tif`` there (then a number if that is taken).
    Sources are absolute paths (recorded in the label files, so that a resumed run never takes one
    image's labels for another's).
    """
    out = Path(out)
    exclude = out.resolve()
    tasks: list[tuple[Path, Path, str]] = []   # source, relative output stem, name
    missing: list[ImageResult] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for img in _folder_images(p, recursive, exclude):
                rel = img.relative_to(p)
                tasks.append((img, rel.with_suffix(""), rel.as_posix()))
        elif p.is_file():
            tasks.append((p, Path(p.stem), p.name))
        else:
            missing.append(ImageResult(str(p), str(p), "failed", reason="no such file or folder"))
    stems = _unique_stems([(src, rel) for src, rel, _ in tasks])
    stems = _spare_sources([src for src, _, _ in tasks], stems, out, fmt)
    names = [name for _, _, name in tasks]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    result = [ImageTask(os.path.abspath(src), str(out / stem), str(src) if counts[name] > 1 else name)
              for (src, _, name), stem in zip(tasks, stems)]
    return result, missing


def _unique_stems(items: list[tuple[Path, Path]]) -> list[Path]:
    """Output stems without clashes (case-insensitive): ``a.jpg`` + ``a.png`` -> ``a_jpg``, ``a_png``."""
    def clashes(stems: list[Path]) -> list[list[int]]:
        groups: dict[str, list[int]] = {}
        for i, st in enumerate(stems):
            groups.setdefault(st.as_posix().lower(), []).append(i)
        return [g for g in groups.values() if len(g) > 1]

    stems = [rel for _, rel in items]
    for group in clashes(stems):
        for i in group:
            src, rel = items[i]
            stems[i] = rel.with_name(f"{rel.name}_{src.suffix.lstrip('.').lower()}")
    taken = {st.as_posix().lower() for st in stems}
    for group in clashes(stems):   # same name and suffix in two input folders: number them
        for i in sorted(group, key=lambda j: str(items[j][0]))[1:]:
            k = 2
            while f"{stems[i].as_posix()}_{k}".lower() in taken:   # never a name another input has
                k += 1
            stems[i] = stems[i].with_name(f"{stems[i].name}_{k}")
            taken.add(stems[i].as_posix().lower())
    return stems


def file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file, after links (what ``os.path.samefile`` compares), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _spare_sources(sources: list[Path], stems: list[Path], out: Path, fmt: str) -> list[Path]:
    """Output stems whose files are never an input image (the same file, also through links or another
    letter case) nor a file that is not a label file (a photograph that is no input of this run, in a
    folder holding inputs or anywhere else; elsewhere an empty file may be replaced): ``photo.tif`` ->
    ``photo_tif`` (then ``photo_tif_2``, ...). Deterministic for the same inputs and files, so that a
    rerun finds (and skips) the outputs of the first run."""
    if fmt not in SUFFIX:
        raise ValueError(f"unknown label format {fmt!r}; use one of {FORMATS}")
    suffix = SUFFIX[fmt]
    source_ids = {i for i in map(file_id, sources) if i is not None}
    dir_ids: dict[str, tuple[int, int] | None] = {}

    def dir_id(folder: Path) -> tuple[int, int] | None:
        key = str(folder)
        if key not in dir_ids:
            dir_ids[key] = file_id(folder)
        return dir_ids[key]

    source_dirs = {dir_id(src.parent) for src in sources} - {None}

    def unsafe(stem: Path) -> bool:
        path = out / stem.with_name(stem.name + suffix)
        fid = file_id(path)
        if fid is None:
            return False       # nothing there (every input exists)
        if fid in source_ids:
            return True
        if dir_id(path.parent) in source_dirs:
            return not is_labels_file(path)
        return path.stat().st_size > 0 and not is_labels_file(path)   # a photo (an empty file is replaced)

    stems = list(stems)
    taken = {st.as_posix().lower() for st in stems}
    for i, (src, stem) in enumerate(zip(sources, stems)):
        if not unsafe(stem):
            continue
        base = stem.with_name(f"{stem.name}_{src.suffix.lstrip('.').lower()}")
        cand, k = base, 1
        while cand.as_posix().lower() in taken or unsafe(cand):
            k += 1
            cand = base.with_name(f"{base.name}_{k}")
        stems[i] = cand
        taken.add(cand.as_posix().lower())
    return stems
