"""``nevus-seg train``: train or fine-tune a model from a data-set folder.

Training reads any data-set layout :func:`napari_nevus_seg.io.datasets.discover_cases` knows (PH2, ISIC,
``images/`` + ``masks/``), keeps a validation split, shows progress on the terminal, and saves the
best epoch. ``--init default|PATH|NAME`` fine-tunes an existing model instead of starting afresh.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from napari_nevus_seg.cli.common import DEVICES, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP, SetupError, err, error_reason
from napari_nevus_seg.cli.progress import ProgressBar
from napari_nevus_seg.training.finetune_defaults import DEFAULTS as FINE_TUNE

#: the settings of a new model (their defaults); fine-tuning with --init keeps the base model's network
NEW_MODEL = {"size": 128, "arch": "unet", "width": 16, "depth": 4, "fill_prob": 0.0}


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (the message names the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0 (the message names the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def share_above_zero(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {text}")
    return value


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train (or fine-tune) a model on image/mask pairs",
                       description="Train a segmentation model on a data-set folder of images and expert masks "
                                   "(PH2, ISIC or images/ + masks/ layouts), or fine-tune one with --init. "
                                   "A run whose loss becomes NaN or infinite (diverged: usually --lr too high) "
                                   "stops with exit status 2 and saves nothing.")
    p.add_argument("data", metavar="DATA_FOLDER")
    p.add_argument("--out", "-o", required=True, metavar="MODEL.pt", help="where to save the trained model")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (and, with --name, a library model of that name)")
    p.add_argument("--name", help="also save the model in your model library under this name")
    p.add_argument("--init", metavar="default|PATH|NAME", help="fine-tune this model instead of a new one")
    p.add_argument("--epochs", type=int,
                   help=f"epochs (default 30; with --init the fine-tuning default, {FINE_TUNE['epochs']})")
    p.add_argument("--size", type=int, default=NEW_MODEL["size"],
                   help=f"network input size in pixels (new models; default {NEW_MODEL['size']})")
    p.add_argument("--loss", choices=("bce", "dice", "bce+dice"), help="training loss (default bce+dice)")
    p.add_argument("--batch-size", type=int, help=f"pairs per step (default 16; {FINE_TUNE['batch_size']} with --init)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"learning rate (default 2e-3; {FINE_TUNE['lr']:g} with --init)")
    p.add_argument("--val-fraction", type=float,
                   help="share of pairs kept for validation (default 0.1; 0.2 held out with --init)")
    p.add_argument("--patience", type=positive_int, metavar="EPOCHS",
                   help="stop after this many epochs (1 or more) without a better validation Dice (with --init: "
                        + ("never early by default)" if FINE_TUNE["patience"] is None
                           else f"default {FINE_TUNE['patience']})"))
    p.add_argument("--blend", type=share_above_zero, metavar="SHARE",
                   help=f"with --init: the share of the fine-tuning update kept, in (0, 1] (default "
                        f"{FINE_TUNE['blend']:g}; the widget's 'Adapt to your images')")
    p.add_argument("--replay", type=int, metavar="N",
                   help=f"with --init: synthetic images the base models were trained on, mixed in against "
                        f"forgetting (default {FINE_TUNE['replay']})")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="keep last.pt/best.pt here (needed for --resume; new models, not --init)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.pt (same settings)")
    p.add_argument("--arch", choices=("unet", "segnet"), default=NEW_MODEL["arch"])
    p.add_argument("--width", type=int, default=NEW_MODEL["width"],
                   help=f"channels of the first level (default {NEW_MODEL['width']})")
    p.add_argument("--depth", type=int, default=NEW_MODEL["depth"],
                   help=f"number of down-sampling levels (default {NEW_MODEL['depth']})")
    p.add_argument("--fill-prob", type=float, default=NEW_MODEL["fill_prob"], metavar="P",
                   help="new models: share of training images cropped inside their lesion, so that lesions larger "
                        "than the field of view are learnt (default 0; the default model's last stages used 0.4-0.8)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="use at most this many pairs, 1 or more (quick trials)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(run=run_train)


class TrainDisplay:
    """Turns the training progress dictionaries into a bar plus one line per epoch."""

    def __init__(self, enabled: bool = True, whole_run: bool = False):
        self.enabled = enabled
        self.whole_run = whole_run    # fine-tuning counts training steps over the whole run
        self.bar: ProgressBar | None = None
        self.label = ""
        self._explained = False       # what the fine-tuning epoch scores are, said once

    def _bar(self, label: str) -> ProgressBar:
        if self.bar is None or self.label != label:
            self.close()
            self.bar = ProgressBar(label, enabled=self.enabled, timed_from_first_update=True)
            self.label = label
        return self.bar

    def __call__(self, info: dict[str, Any]) -> None:
        stage = info.get("stage")
        if stage in ("load", "prepare", "score_before", "score_after"):
            label = {"score_before": "scoring the base model", "score_after": "scoring the tuned model"}
            self._bar(label.get(stage, "reading pairs")).update(int(info.get("step", 0)), int(info.get("steps", 1)))
        elif stage == "train":
            ep, eps = int(info["epoch"]), int(info["epochs"])
            label = "fine-tuning" if self.whole_run else f"epoch {ep}/{eps}"
            note = f"epoch {ep}/{eps} " if self.whole_run else ""
            self._bar(label).update(int(info["step"]), int(info["steps"]),
                                    f"{note}loss {info.get('loss', float('nan')):.4f}")
        elif stage == "val":
            self.close()
            if self.enabled:
                loss = info.get("loss")
                parts = [f"epoch {info.get('epoch')}/{info.get('epochs')}: loss "
                         + (f"{loss:.4f}" if isinstance(loss, float) else "-")]
                tuning = self.whole_run and info.get("size") is not None
                if tuning and info.get("val_dice") is not None and not self._explained:
                    self._explained = True
                    blend = info.get("blend", 1.0)
                    kept = "" if blend >= 1 else f"; the model returned keeps {blend:.0%} of the update"
                    print(f"held-out scores per epoch: {_pairs(info.get('n_val'), 'held-out pair')} at the "
                          f"network's {info['size']} px input, fully tuned weights (they pick the best epoch{kept})",
                          file=sys.stderr, flush=True)
                if info.get("val_dice") is not None:
                    jac = info.get("val_jaccard")
                    jac = f", Jaccard {jac:.4f}" if isinstance(jac, float) and math.isfinite(jac) else ""
                    parts.append(f"{'held-out' if tuning else 'val'} Dice {info['val_dice']:.4f}{jac}")
                best = info.get("best")
                if best:
                    parts.append(f"best epoch {best['epoch']} (Dice {best['dice']:.4f})")
                print(", ".join(parts), file=sys.stderr, flush=True)
        elif stage == "resume" and self.enabled:
            print(f"resuming at epoch {info.get('epoch', 0) + 1} of {info.get('epochs')}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _pairs(n: Any, noun: str) -> str:
    n = int(n or 0)
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_out(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SetupError(f"{path} exists already; use --overwrite to replace it, or another --out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.write-test")
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise SetupError(f"cannot write the model file {path}: {exc.strerror or exc}") from exc


def _load_init(value: str):
    from napari_nevus_seg.model.library import ModelLibrary
    from napari_nevus_seg.model.loading import load_model

    try:
        path = ModelLibrary().resolve(value)
    except (KeyError, ValueError) as exc:
        raise SetupError(f"--init {value!r}: {exc.args[0] if exc.args else exc}") from None
    return load_model(path)



def _fine_tune(args, base, display) -> Any:
    """Fine-tune ``base`` with :func:`napari_nevus_seg.training.finetune.fine_tune`."""
    from napari_nevus_seg.io.datasets import discover_cases
    from napari_nevus_seg.io.images import read_image
    from napari_nevus_seg.io.mask_files import read_mask
    from napari_nevus_seg.training.finetune import fine_tune
    from napari_nevus_seg.training.store import FilesAsArrays

    cases = [c for c in discover_cases(args.data) if c.mask is not None][: args.limit]
    if not cases:
        raise SetupError(f"{args.data}: no image/mask pairs found")
    # read when used, not all at once: thousands of full-size photographs would not fit in memory
    images = FilesAsArrays([c.image for c in cases], read_image)
    masks = FilesAsArrays([c.mask for c in cases], read_mask)
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "holdout": args.val_fraction,
             "patience": args.patience, "blend": args.blend, "replay": args.replay}
    options = {k: v for k, v in given.items() if v is not None}
    ignored = (["--loss"] if args.loss is not None else []) + [
        f"--{key.replace('_', '-')}" for key, default in NEW_MODEL.items() if getattr(args, key) != default]
    if ignored:
        print(f"note: {', '.join(ignored)} ignored when fine-tuning (the base model's network and the "
              "fine-tuning recipe are used)", file=sys.stderr)
    display.whole_run = True
    return fine_tune(images, masks, base=base, device=args.device, progress=display, seed=args.seed,
                     names=[c.name for c in cases], **options)


def _train_new(args, display) -> Any:
    import torch

    from napari_nevus_seg.model.networks import build_model, default_preprocess
    from napari_nevus_seg.training.augment import AugmentConfig
    from napari_nevus_seg.training.data import load_pairs, split_pairs
    from napari_nevus_seg.training.loop import TrainConfig, train

    torch.manual_seed(args.seed)   # the starting weights too: --seed makes a run reproducible
    model = build_model(args.arch, preprocess=default_preprocess(args.size), width=args.width, depth=args.depth)
    model.meta.update({"training_data": str(Path(args.data).resolve().name)})
    pairs = load_pairs(args.data, model.input_size, limit=args.limit, progress=display)
    val_fraction = 0.1 if args.val_fraction is None else args.val_fraction
    train_set, val_set = split_pairs(pairs, val_fraction, seed=args.seed)
    lr = args.lr if args.lr is not None else 2e-3
    cfg = TrainConfig(epochs=args.epochs or 30, batch_size=args.batch_size or 16, lr=lr, loss=args.loss or "bce+dice",
                      patience=args.patience, seed=args.seed, augment=AugmentConfig(fill_prob=args.fill_prob))
    result = train(model, train_set, val_set if len(val_set) else None, cfg, device=args.device, progress=display,
                   checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    return result.model


def _check_architecture(args: argparse.Namespace) -> None:
    """The network settings of a new model, checked before any data is read (and against last.pt on resume)."""
    if args.width < 1 or not 1 <= args.depth <= 8:
        raise SetupError(f"--width must be at least 1 and --depth 1 to 8, got {args.width} and {args.depth}")
    if args.size < 2 ** args.depth or args.size % 2 ** args.depth:
        raise SetupError(f"--size must be a multiple of 2**depth = {2 ** args.depth} (the network halves the "
                         f"image {args.depth} times), got {args.size}")
    if args.resume:
        from napari_nevus_seg.model.networks import CheckpointError, read_checkpoint

        last = Path(args.checkpoint_dir) / "last.pt"
        try:
            ck = read_checkpoint(last)
        except CheckpointError as exc:
            raise SetupError(str(exc)) from None
        had = (ck["arch"], int(ck["config"].get("width", -1)), int(ck["config"].get("depth", -1)),
               int(ck["preprocess"].get("size", -1)))
        if had != (args.arch, args.width, args.depth, args.size):
            raise SetupError(f"{last} was trained with --arch {had[0]} --width {had[1]} --depth {had[2]} --size "
                             f"{had[3]}: give the same settings to resume, or another --checkpoint-dir")


def run_train(args: argparse.Namespace) -> int:
    from napari_nevus_seg.model.networks import save_model

    out = Path(args.out)
    if (args.epochs is not None and args.epochs < 1) or (args.batch_size is not None and args.batch_size < 1):
        raise SetupError("--epochs and --batch-size must be at least 1")
    if args.val_fraction is not None and not 0 <= args.val_fraction < 1:
        raise SetupError(f"--val-fraction must lie in [0, 1), got {args.val_fraction}")
    if not 0 <= args.fill_prob <= 1:
        raise SetupError(f"--fill-prob must lie in [0, 1], got {args.fill_prob}")
    if args.resume and not args.checkpoint_dir:
        raise SetupError("--resume needs --checkpoint-dir (where last.pt was written)")
    if args.init and (args.checkpoint_dir or args.resume):
        raise SetupError("--init fine-tunes with the short fine-tuning recipe, which keeps no checkpoints: "
                         "--checkpoint-dir and --resume are for training a new model")
    if not args.init and (args.blend is not None or args.replay is not None):
        raise SetupError("--blend and --replay are settings of fine-tuning: use them with --init")
    if args.replay is not None and args.replay < 0:
        raise SetupError(f"--replay must be 0 or more, got {args.replay}")
    if args.resume and not (Path(args.checkpoint_dir) / "last.pt").is_file():
        raise SetupError(f"--resume: no last.pt in {args.checkpoint_dir} to continue from")
    if not args.init:
        _check_architecture(args)
    if not Path(args.data).is_dir():
        raise SetupError(f"{args.data}: no such folder")
    _check_out(out, args.overwrite)
    if args.name:
        from napari_nevus_seg.model.library import ModelLibrary, validate_name

        try:
            validate_name(args.name)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        if args.name in ModelLibrary() and not args.overwrite:
            raise SetupError(f"a model named {args.name!r} is in the library already; "
                             "use --overwrite or another --name")
    display = TrainDisplay(enabled=not args.quiet)
    try:
        if args.init:
            model = _fine_tune(args, _load_init(args.init), display)
        else:
            model = _train_new(args, display)
    except KeyboardInterrupt:
        display.close()
        where = (f"; {args.checkpoint_dir}/last.pt keeps the last whole epoch: add --resume"
                 if args.checkpoint_dir and (Path(args.checkpoint_dir) / "last.pt").is_file() else "")
        err(f"training interrupted, nothing saved to {out}{where}")
        return EXIT_INTERRUPTED
    except ValueError as exc:   # no pairs, mismatched masks, bad settings
        display.close()
        err(str(exc))
        return EXIT_SETUP
    except FloatingPointError as exc:   # the loss became NaN/inf: training.train stops the run
        display.close()
        default = FINE_TUNE["lr"] if args.init else 2e-3
        lr = args.lr if args.lr is not None else default
        hint = f"the default is {default:g}" if lr > default else f"e.g. {lr / 10:g}"
        reason = str(exc).splitlines()[0] if str(exc) else "training diverged"
        err(f"{reason}: the learning rate {lr:g} is too high for this data or model; try a lower --lr "
            f"({hint}). Nothing saved to {out}")
        return EXIT_SETUP
    finally:
        display.close()
    save_model(model, out)
    print(f"saved {out}")
    best = model.meta.get("best_val")
    ft = model.meta.get("fine_tune")
    if best:
        nan = float("nan")
        scores = f"Dice {best.get('dice', nan):.4f}, Jaccard {best.get('jaccard', nan):.4f}"
        if isinstance(ft, dict):   # three figures are shown for fine-tuning: each says what it scores
            blend = (ft.get("settings") or {}).get("blend", 1.0)
            print(f"returned model ({blend:.0%} of the update, best epoch {best.get('epoch')}) on "
                  f"{_pairs(ft.get('n_holdout'), 'held-out pair')} at the network's {model.input_size} px input: "
                  f"{scores}")
        else:
            print(f"best validation: {scores} (epoch {best.get('epoch')})")
    if isinstance(ft, dict):
        try:
            from napari_nevus_seg.training.finetune import FineTuneResult

            print(f"fine-tuning, full resolution as `nevus-seg segment` outlines, base -> returned model: "
                  f"{FineTuneResult.of(model).summary()}")
        except Exception:  # noqa: BLE001 - a report in another shape: show it raw
            print(f"fine-tuning: {model.meta['fine_tune']}")
    if args.name:
        return _save_in_library(model, args.name, args.overwrite, out)
    return EXIT_OK


def _save_in_library(model, name: str, overwrite: bool, out: Path) -> int:
    """Save the trained model in the library as ``name``; a name taken while training ran gives ``name-2``, ..."""
    from napari_nevus_seg.model.library import ModelLibrary

    lib = ModelLibrary()
    try:
        try:
            path = lib.save(model, name, overwrite=overwrite)
        except FileExistsError:   # checked before training; another program saved that name meanwhile
            taken, name = name, lib.free_name(name)
            path = lib.save(model, name)
            print(f"note: a model named {taken!r} was saved in the library while training ran; this one is saved "
                  f"as {name!r} (rename it with `nevus-seg models rename`)", file=sys.stderr)
    except (OSError, ValueError) as exc:
        err(f"not saved in the model library: {error_reason(exc)}. The trained model is in {out}: add it with "
            f"`nevus-seg models import {out} --name NAME`")
        return EXIT_SETUP
    print(f"saved in the model library as {name!r} ({path})")
    return EXIT_OK
