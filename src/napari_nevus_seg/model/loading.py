"""The default model shipped with the package, and loading model files (cached per file version)."""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from napari_nevus_seg.model.networks import LesionModel, load_checkpoint

DEFAULT_MODEL_FILE = "default.pt"


def default_model_path() -> Path:
    """Path of the default model shipped inside the package."""
    return Path(str(resources.files("napari_nevus_seg") / "weights" / DEFAULT_MODEL_FILE))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, version: tuple) -> LesionModel:
    return load_checkpoint(path)


def load_model(path: str | os.PathLike | None = None) -> LesionModel:
    """Load the default model shipped with the package, or a saved model file (``.pt``).

    Files are read with ``torch.load(weights_only=True)``: a model file cannot run code.
    Raises :class:`~napari_nevus_seg.model.networks.CheckpointError` for missing, corrupt or unsafe files.
    Loaded models are cached per path and file version (a replaced or rewritten file is read again,
    even when a copy kept its modification time: the inode and change time differ): do not train a
    loaded model in place; ``copy.deepcopy`` it first.
    """
    p = Path(path) if path is not None else default_model_path()
    if path is None and not p.is_file():
        raise FileNotFoundError(f"the default model is missing from the installation ({p})")
    try:
        st = p.stat()
        version: tuple = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        version = ()
    return _load_cached(str(p.resolve()) if p.exists() else str(p), version)


def as_model(model: LesionModel | str | os.PathLike | None) -> LesionModel:
    """``model`` itself when it is a :class:`LesionModel`, else :func:`load_model` of it (a path or None)."""
    if isinstance(model, LesionModel):
        return model
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a LesionModel (load_model()), a model file path or None for the default "
                        f"model, not {type(model).__name__} {model!r:.60}")
    return load_model(model)
