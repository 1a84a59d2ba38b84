"""``nevus-seg models``: list, import, export, rename or delete the models of a model library."""

from __future__ import annotations

import argparse
from typing import Any

from napari_nevus_seg.cli.common import (
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SETUP,
    err,
    error_reason,
    is_write_failure,
    write_error_message,
)
from napari_nevus_seg.io.text import printable


def add_models_parser(sub) -> None:
    """Add the ``models`` command and its actions to the sub-parsers ``sub``."""
    p = sub.add_parser("models", help="list, import, export, rename or delete saved models",
                       description="Manage your model library (default folder: the user data folder, "
                                   "or $NEVUS_SEG_MODEL_DIR).")
    p.add_argument("--library", metavar="DIR", help="library folder (default: the user data folder)")
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    msub.required = True
    msub.add_parser("list", help="list saved models")
    e = msub.add_parser("export", help="copy a saved model to a file")
    e.add_argument("name")
    e.add_argument("path")
    e.add_argument("--overwrite", action="store_true", help="replace an existing file at PATH")
    i = msub.add_parser("import", help="check a model file and add it to the library")
    i.add_argument("path")
    i.add_argument("--name")
    i.add_argument("--overwrite", action="store_true")
    r = msub.add_parser("rename", help="rename a saved model")
    r.add_argument("old")
    r.add_argument("new")
    d = msub.add_parser("delete", help="delete a saved model")
    d.add_argument("name")
    p.set_defaults(run=run_models)


def describe_model(meta: dict[str, Any], convention: int | None = None) -> str:
    """One line about a saved model from its metadata: when and on what it was trained, the outline
    conventions it draws (the one it draws unless told: ``convention``), its scores."""
    if "error" in meta:
        return f"UNREADABLE: {printable(meta['error'])}"
    parts = []
    for key in ("trained_at", "training_data", "base_model"):
        if meta.get(key):
            parts.append(f"{key.replace('_', ' ')} {printable(meta[key])}")
    ft = meta.get("fine_tune")
    if isinstance(ft, dict):
        scores = ", ".join(f"{printable(k, 40)} {v:.3f}" for k, v in ft.items()
                           if isinstance(v, float) and not isinstance(v, bool))
        if scores:
            parts.append(f"fine-tune: {scores}")
    names = meta.get("conventions")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        drawn = f", draws {printable(names[convention], 40)} unless told" if convention in range(len(names)) else ""
        parts.append(f"outline conventions {printable(', '.join(names), 80)} (--convention{drawn})")
    best = meta.get("best_val")
    dice = best.get("dice") if isinstance(best, dict) else None
    if isinstance(dice, (int, float)) and not isinstance(dice, bool):   # a shared file may hold anything here
        parts.append(f"val Dice {dice:.3f}")
    return "; ".join(parts)


def run_models(args: argparse.Namespace) -> int:
    """``nevus-seg models ACTION``: list, export, import, rename or delete; returns the exit status."""
    from napari_nevus_seg.model.library import ModelLibrary

    lib = ModelLibrary(args.library)
    try:
        if args.action == "list":
            entries = lib.list()
            print(f"models in {lib.root}:")
            print("  default (shipped with the plugin)")
            for e in entries:
                print(f"  {e.name}  {describe_model(e.meta, e.convention)}".rstrip())
        elif args.action == "export":
            print(f"exported {args.name!r} to {no_clobber(lib.export, args.name, args.path, args.overwrite)}")
        elif args.action == "import":
            print(f"imported {args.path} as {no_clobber(lib.import_file, args.path, args.name, args.overwrite)!r}")
        elif args.action == "rename":
            lib.rename(args.old, args.new)
            print(f"renamed {args.old!r} to {args.new!r}")
        elif args.action == "delete":
            lib.delete(args.name)
            print(f"deleted {args.name!r}")
    except BrokenPipeError:   # stdout's reader has gone (`| head`): main() handles it
        raise
    except OSError as exc:
        if is_write_failure(exc):      # a full disk: the library is unchanged (files are written whole)
            err(write_error_message(exc))
            return EXIT_OUTPUT
        err(error_reason(exc))
        return EXIT_SETUP
    except (KeyError, ValueError) as exc:
        err(error_reason(exc))
        return EXIT_SETUP
    return EXIT_OK


def no_clobber(action, source, target, overwrite: bool):
    """``action(source, target, overwrite=overwrite)``; an existing target's error names ``--overwrite``."""
    try:
        return action(source, target, overwrite=overwrite)
    except FileExistsError as exc:
        reason = error_reason(exc).split(";")[0]
        raise FileExistsError(f"{reason}; choose another name, or add --overwrite to replace it") from None
