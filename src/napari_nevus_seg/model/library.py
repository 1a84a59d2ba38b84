"""The user's own models, saved by name in the user data folder.

::

    from napari_nevus_seg import ModelLibrary, fine_tune
    lib = ModelLibrary()                      # <user data dir>/models, or $NEVUS_SEG_MODEL_DIR
    lib.save(fine_tune(images, masks), "clinic-dermoscope")
    [e.name for e in lib.list()]              # ['clinic-dermoscope']
    model = lib.load("clinic-dermoscope")     # use with segment(img, model=model)

Each model is one checkpoint file ``<root>/<name>.pt`` (the format of :func:`save_model`), so an
exported model is an ordinary model file and any model file can be imported. Imported files are
checked with ``torch.load(weights_only=True)`` before they are copied in: a file holding pickled
code is refused. The name ``"default"`` is reserved for the model shipped with the package.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_nevus_seg.io.atomic import atomic_path
from napari_nevus_seg.model.networks import LesionModel, model_from_checkpoint, read_checkpoint, save_checkpoint

DEFAULT_NAME = "default"
_NAME_RE = re.compile(r"^[\w][\w .+()-]{0,99}$")
MAX_NAME_BYTES = 180  # UTF-8 bytes: file systems allow 255 per name, the temporary names add a few


@dataclass(frozen=True)
class ModelEntry:
    """A model of the library: its name, file and metadata (training data, fine-tuning scores, ...)."""

    name: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: for a model of several outline conventions, the one it draws unless told (its number), else None
    convention: int | None = field(default=None, compare=False, hash=False)


def default_library_dir() -> Path:
    """``$NEVUS_SEG_MODEL_DIR`` if set, else ``platformdirs.user_data_dir("napari-nevus-seg")/models``."""
    env = os.environ.get("NEVUS_SEG_MODEL_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-nevus-seg")) / "models"


def _is_valid_name(name: str) -> bool:
    try:
        return validate_name(name) == name
    except (TypeError, ValueError):
        return False


def validate_name(name: str) -> str:
    """Return ``name`` stripped if it is a usable model name, else raise ``ValueError`` saying why."""
    if not isinstance(name, str):
        raise TypeError(f"a model name must be text, got {type(name).__name__}")
    name = name.strip()
    if not name:
        raise ValueError("a model name cannot be empty")
    if "/" in name or "\\" in name or os.sep in name:
        raise ValueError(f"model name {name!r} must not contain path separators")
    if name.lower() == DEFAULT_NAME:
        raise ValueError(f"{DEFAULT_NAME!r} is reserved for the model shipped with the plugin")
    if name.lower().endswith(".pt"):
        raise ValueError(f"model name {name!r} ends in .pt, so it reads as a file name wherever a model is "
                         f"chosen (--model): name it {name[:-3].rstrip(' .') or 'something else'!r}")
    if not _NAME_RE.match(name) or name.endswith(".") or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"model name {name!r}: use up to 100 letters, digits, spaces and . + ( ) _ -, "
                         "starting with a letter or digit (fewer non-Latin letters: file names are limited "
                         "in bytes)")
    return name


_META_CACHE: dict[tuple[str, float, int], tuple[dict[str, Any], int | None]] = {}


def _meta_of(path: Path) -> tuple[dict[str, Any], int | None]:
    """A model file's metadata (without its training history) and the outline convention it draws by
    default (None for a model of one convention), cached by path, modification time and size."""
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _META_CACHE:
        checkpoint = read_checkpoint(path)
        meta = dict(checkpoint.get("meta", {}))
        meta.pop("history", None)       # long and not needed for listing
        config = checkpoint.get("config") or {}
        convention = config.get("convention", 0) if config.get("conventions") else None
        _META_CACHE[key] = (meta, convention if isinstance(convention, int) else None)
    return _META_CACHE[key]


class ModelLibrary:
    """Named model files in ``root`` (see the module docstring)."""

    suffix = ".pt"

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_library_dir()

    def __repr__(self) -> str:
        return f"ModelLibrary({str(self.root)!r})"

    def _check_root(self) -> None:
        """Raise NotADirectoryError when the library path exists but is no folder."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"the model library path {self.root} is a file, not a folder: give a folder "
                                     "(--library DIR or $NEVUS_SEG_MODEL_DIR)")

    def path(self, name: str) -> Path:
        """The file a model of this name lives in (whether or not it exists)."""
        return self.root / f"{validate_name(name)}{self.suffix}"

    def __contains__(self, name: object) -> bool:
        try:
            return isinstance(name, str) and self.path(name).is_file()
        except ValueError:
            return False

    def names(self) -> list[str]:
        """The saved models' names (files whose stem is no valid name, e.g. a copied ``default.pt``, are
        not models of the library: they could be neither loaded by name, renamed nor deleted)."""
        if not self.root.is_dir():
            return []
        return sorted((p.stem for p in self.root.glob(f"*{self.suffix}")
                       if not p.name.startswith(".") and _is_valid_name(p.stem)), key=str.lower)

    def list(self) -> list[ModelEntry]:
        """The saved models, sorted by name. Unreadable files are listed with ``meta={"error": ...}``."""
        self._check_root()
        out = []
        for name in self.names():
            path = self.root / f"{name}{self.suffix}"
            try:
                meta, convention = _meta_of(path)
            except Exception as exc:  # noqa: BLE001 - a corrupt file must not hide the others
                meta, convention = {"error": str(exc)}, None
            out.append(ModelEntry(name, path, meta, convention))
        return out

    def _existing(self, name: str) -> Path:
        self._check_root()
        p = self.path(name)
        if not p.is_file():
            known = ", ".join(self.names()) or "none"
            raise KeyError(f"no model named {name!r} in {self.root} (saved models: {known})")
        return p

    def free_name(self, name: str) -> str:
        """``name`` if no model has it, else the first of ``name-2``, ``name-3``, ... that is free."""
        base = validate_name(name)
        candidate, k = base, 1
        while candidate in self:
            k += 1
            candidate = f"{base}-{k}"
        return candidate

    # ------------------------------------------------------------------------------ operations
    def save(self, model: LesionModel, name: str, overwrite: bool = False) -> Path:
        """Save ``model`` as ``name`` (its ``meta["name"]`` is set in the file); returns the file path."""
        self._check_root()
        p = self.path(name)
        if p.exists() and not overwrite:
            raise FileExistsError(f"a model named {name!r} exists already in {self.root}")
        named = replace(model, meta={**model.meta, "name": validate_name(name)})
        return self._write(named, name, exclusive=not overwrite)

    def _write(self, model: LesionModel, name: str, exclusive: bool) -> Path:
        """Save under ``name``; ``exclusive``: only if no model has that name, decided by the file system."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            return save_checkpoint(model, self.path(name), exclusive=exclusive)
        except FileExistsError:
            raise FileExistsError(f"a model named {name!r} exists already in {self.root}") from None

    def load(self, name: str) -> LesionModel:
        """Load a saved model by name (``"default"``: the shipped model)."""
        from napari_nevus_seg.model.loading import load_model

        if name == DEFAULT_NAME:
            return load_model()
        return load_model(self._existing(name))

    def resolve(self, name_or_path: str | os.PathLike) -> Path:
        """The model file for ``"default"``, a library name, or a path to a model file."""
        from napari_nevus_seg.model.loading import default_model_path

        if isinstance(name_or_path, str):
            if name_or_path == DEFAULT_NAME:
                return default_model_path()
            if name_or_path in self:
                return self.path(name_or_path)
        p = Path(name_or_path)
        if p.is_file():
            return p
        known = ", ".join([DEFAULT_NAME, *self.names()])
        raise KeyError(f"{str(name_or_path)!r} is neither a saved model ({known}) nor a model file")

    def rename(self, old: str, new: str) -> Path:
        """Rename a model (its file and the name in its metadata)."""
        src = self._existing(old)
        dst = self.path(new)
        if dst.exists() and dst != src:
            raise FileExistsError(f"a model named {new!r} exists already in {self.root}")
        ckpt = read_checkpoint(src)
        model = model_from_checkpoint(ckpt)
        model.meta["name"] = validate_name(new)
        self._write(model, new, exclusive=dst != src)
        if dst != src:
            src.unlink()
        return dst

    def delete(self, name: str) -> None:
        """Delete a saved model file."""
        self._existing(name).unlink()

    def export(self, name: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Copy a saved model (``"default"`` too) to ``path``, an ordinary model file for sharing.

        An existing file at ``path`` is replaced only with ``overwrite`` (else :class:`FileExistsError`).
        ``path`` may be an existing folder: the model is written there as ``<name>.pt``. A path ending in a
        separator names a folder: one that does not exist is refused (``NotADirectoryError``), as is a
        path below a file.
        """
        src = self.resolve(name) if name == DEFAULT_NAME else self._existing(name)
        text = os.fspath(path)
        dst = Path(path)
        if text.endswith(tuple(sep for sep in (os.sep, os.altsep, "/") if sep)) and not dst.is_dir():
            raise NotADirectoryError(f"{text}: no such folder (a path ending in {text[-1]} names a folder); "
                                     f"create it first, or give a file name such as {dst / src.name}")
        if dst.is_dir():
            dst = dst / src.name
        for parent in dst.parents:   # the nearest existing folder above: a file there cannot hold dst
            if parent.exists():
                if not parent.is_dir():
                    raise NotADirectoryError(f"cannot write {dst}: {parent} is a file, not a folder")
                break
        if dst.resolve().parent == self.root.resolve():
            raise ValueError(f"{dst} is inside the model library: use save() or import_file() to add a model "
                             "to it, export() to copy one elsewhere")
        if dst.exists() and not overwrite:
            raise FileExistsError(f"{dst} exists already; choose another file, or replace it with overwrite=True")
        if dst.exists() and dst.resolve() == src.resolve():
            return dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return dst

    def import_file(self, path: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> str:
        """Check a model file (safe loading, weights match the architecture) and add it; returns its name.

        Without ``name``, the file's stem is used (``-2``, ``-3``, ... appended if taken).
        Raises :class:`~napari_nevus_seg.model.networks.CheckpointError` for unsafe, corrupt or foreign files.
        """
        src = Path(path)
        if src.is_dir():
            raise IsADirectoryError(f"{src} is a folder, not a model file: give the .pt file to import")
        self._check_root()
        ckpt = read_checkpoint(src)          # weights_only: refuses pickled code
        model = model_from_checkpoint(ckpt)  # refuses weights that do not fit the architecture
        if name is None:   # the file's stem, made a valid name: "(copy) -v2.pt" -> "copy_ -v2"
            base = re.sub(r"[^\w .+()-]+", "_", src.stem)
            base = re.sub(r"^[^\w]+", "", base)[:90]
            while len(base.encode("utf-8")) > MAX_NAME_BYTES - 8:
                base = base[:-1]
            while base.lower().endswith(".pt"):
                base = base[:-3]
            base = base.rstrip(" .") or "imported"
            if base.lower() == DEFAULT_NAME:
                base = "imported-default"
            model.meta.setdefault("imported_from", src.name)
            for k in range(1, 10_000):   # the first free name; another process may take one meanwhile
                name = base if k == 1 else f"{base}-{k}"
                if name in self:
                    continue
                model.meta["name"] = name
                try:
                    self._write(model, name, exclusive=True)
                    return name
                except FileExistsError:
                    continue
            raise FileExistsError(f"no free name left for {base!r} in {self.root}")
        name = validate_name(name)
        if name in self and not overwrite:
            raise FileExistsError(f"a model named {name!r} exists already in {self.root}")
        model.meta["name"] = name
        model.meta.setdefault("imported_from", src.name)
        self._write(model, name, exclusive=not overwrite)
        return name
