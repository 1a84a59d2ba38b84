"""The ``nevus-seg`` command line: segment folders of images, train models, manage saved models.

::

    nevus-seg segment IMAGES_OR_FOLDERS... --out labels/ [--measure lesions.csv] [--workers 4]
    nevus-seg train DATA_FOLDER --out my_model.pt [--epochs 30] [--init default]
    nevus-seg models list

Exit status: 0 when everything worked; 1 when some images failed (the others are done); 2 for a
usage or setup problem (bad arguments, unreadable model, output folder that cannot be written,
no images found); 3 when an output could not be written (a full disk: what was written is consistent,
free space and run again); 130 when interrupted with Ctrl-C, 143 when stopped by SIGTERM (a batch system's
time limit, ``kill``): run the same command again to resume.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from napari_nevus_seg.cli.common import (
    DEVICES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SETUP,
    EXIT_TERMINATED,
    SetupError,
    drop_stdout,
    err,
    say,
    setup_errors,
    write_error_message,
)


def resolve_model_arg(value: str | None) -> str | None:
    """``--model``: None/"default" (the shipped model), a file path, or a name in the model library."""
    if value is None or value == "default":
        return None
    p = Path(value).expanduser()
    if p.exists() or p.suffix == ".pt" or os.sep in value or (os.altsep and os.altsep in value):
        return str(p)   # load_model says clearly what is wrong with a bad path
    from napari_nevus_seg.model.library import ModelLibrary

    try:
        return str(ModelLibrary().resolve(value))
    except (KeyError, ValueError) as exc:
        reason = exc.args[0] if exc.args else exc
        raise SetupError(f"--model {value!r}: {reason} (see: nevus-seg models list)") from None


# ------------------------------------------------------------------------------------- segment
def add_segment_parser(sub) -> None:
    """Add the ``segment`` command to the sub-parsers ``sub``."""
    p = sub.add_parser("segment", help="segment images and folders into label images",
                       description="Segment lesions in images (files and folders) and write one label image "
                                   "per input into --out (NAME.tif instance labels, or NAME.png binary masks "
                                   "with --format png). Finished outputs are skipped, so an interrupted run "
                                   "resumes; unreadable images are reported and the others processed. An output "
                                   "never replaces an input image or another file that is not a label file: "
                                   "with --out set to the input folder, photo.tif gives photo_tif.tif.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the label images")
    p.add_argument("--measure", metavar="CSV", help="also measure every lesion into this CSV file (a new .csv "
                                                    "file, never one of the inputs)")
    p.add_argument("--pixel-size-mm", type=float, metavar="MM",
                   help="pixel size of every image, 1e-6 to 1000 mm: TIFF tags of the labels and --measure "
                        "(default: from each file's metadata, else pixels)")
    p.add_argument("--find-ruler", action="store_true",
                   help="look for a millimetre ruler in each image (about 0.3-1.5 s an image): where one is found, "
                        "its tick spacing taken as 1 mm is the pixel size, before --pixel-size-mm and the file's; "
                        "--measure then says where each pixel size came from (ruler_* columns, to check)")
    p.add_argument("--model", metavar="PATH_OR_NAME", help="model file or library name (default: shipped model)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (flips; ~4x slower)")
    p.add_argument("--min-size", type=int, metavar="PIXELS", help="smallest lesion kept (default 0.1%% of image)")
    p.add_argument("--largest-only", action="store_true", help="keep only the largest lesion per image")
    refine = p.add_mutually_exclusive_group()
    refine.add_argument("--no-refine", action="store_false", dest="refine", default=None,
                        help="keep the network's own outline (default: as the model says: refined onto the "
                             "visible pigment edge, unless a fine-tuned model found its outlines better unrefined)")
    refine.add_argument("--refine", action="store_true", dest="refine", default=None,
                        help="refine the outline onto the visible pigment edge whatever the model says")
    p.add_argument("--convention", metavar="NAME", default=None,
                   help="for a model that draws several outline conventions (listed by: nevus-seg models list), the "
                        "one to draw (default: the model's own)")
    p.add_argument("--no-zoom", action="store_false", dest="zoom_small",
                   help="do not look again at lesions under 5%% of the frame on a zoomed crop (default: look again)")
    p.add_argument("--format", choices=("tif", "png"), default="tif", dest="fmt",
                   help="tif: instance labels, uint16, with the pixel size (default); "
                        "png: binary 0/255 lesion mask, ISIC style")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, metavar="N", help="run on a local Dask cluster of N processes")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on an existing Dask cluster")
    p.add_argument("--threads-per-worker", type=int, default=1, help="Dask threads per worker (default 1)")
    p.add_argument("--readers", type=int, default=2, help="image-decoding threads in this process (default 2)")
    p.add_argument("--refine-workers", type=int, metavar="N",
                   help="processes refining outlines beside the network in this process (default: half the "
                        "CPU cores, all but one with a GPU, for 16 images or more; 0: none)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", dest="time_limit",
                   help="seconds of work allowed per image: an image that needs more is reported as failed "
                        "and the run goes on (default: no limit)")
    p.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    p.add_argument("--recursive", "-r", action="store_true", help="include sub-folders")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(run=run_segment)


def run_segment(args: argparse.Namespace) -> int:
    """``nevus-seg segment``: one SegmentOptions from the arguments, then :func:`segment_folder`; the exit status."""
    from napari_nevus_seg.batch.errors import BatchInterrupted
    from napari_nevus_seg.batch.folder import segment_folder
    from napari_nevus_seg.cli.progress import ProgressBar
    from napari_nevus_seg.inference.options import SegmentOptions
    from napari_nevus_seg.io.pixel_size import pixel_size_pair

    if args.workers is not None and args.workers < 1:
        raise SetupError(f"--workers must be at least 1, got {args.workers}")
    if args.refine_workers is not None and args.refine_workers < 0:
        raise SetupError(f"--refine-workers must be 0 or more, got {args.refine_workers}")
    if args.pixel_size_mm is not None:   # before any work: inf, 0, 1e-30 ... refused
        try:
            pixel_size_pair(args.pixel_size_mm, "--pixel-size-mm")
        except ValueError as exc:
            raise SetupError(str(exc)) from None
    options = SegmentOptions(model=resolve_model_arg(args.model), device=args.device, threshold=args.threshold,
                             tta=args.tta, min_size=args.min_size, largest_only=args.largest_only,
                             refine=args.refine, zoom_small=args.zoom_small, convention=args.convention)
    bar = ProgressBar("segment", enabled=not args.quiet)
    failed = 0

    def progress(result, done, total):
        nonlocal failed
        failed += result.status == "failed"
        bar.update(done, total, f"({failed} failed)" if failed else "")

    try:
        summary = segment_folder(
            args.inputs, args.out, options, fmt=args.fmt, measure=args.measure,
            pixel_size_mm=args.pixel_size_mm, find_ruler=args.find_ruler, overwrite=args.overwrite,
            recursive=args.recursive,
            workers=args.workers, scheduler=args.scheduler, threads_per_worker=args.threads_per_worker,
            readers=args.readers, refine_workers=args.refine_workers, progress=progress,
            time_limit_s=args.time_limit)
    except BatchInterrupted as exc:   # Ctrl-C or SIGTERM: what was done, then exit 130 / 143
        summary = exc.summary
    finally:
        bar.close()
    say(summary.report())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.table_error or summary.output_error:
        return EXIT_OUTPUT
    return EXIT_OK if summary.ok else EXIT_FAILED


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``nevus-seg`` parser with its commands: segment, train, models."""
    from napari_nevus_seg import __version__
    from napari_nevus_seg.cli.models import add_models_parser
    from napari_nevus_seg.cli.train import add_train_parser

    parser = argparse.ArgumentParser(
        prog="nevus-seg", description="Dermoscopy lesion segmentation, measurement and training.",
        epilog="Exit status: 0 success, 1 some images failed, 2 usage or setup error, 3 an output could not "
               "be written (disk full), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_segment_parser(sub)
    add_train_parser(sub)
    add_models_parser(sub)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch system's time limit): stopped as Ctrl-C stops a run."""


_TERMINATED: list[bool] = []   # set by the handler: the run below caught the interruption itself


def _on_sigterm(signum, frame) -> None:
    _TERMINATED.append(True)
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nevus-seg`` with ``argv`` (default: the process arguments); returns the exit status.

    SIGTERM stops a run as Ctrl-C does (finished outputs stay, the summary and a partial table are
    written) and gives exit status 143.
    """
    import signal
    import threading

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    _TERMINATED.clear()
    shown, warnings.showwarning = warnings.showwarning, show_warning
    try:
        rc = int(args.run(args))
        return EXIT_TERMINATED if rc == EXIT_INTERRUPTED and _TERMINATED else rc
    except _Terminated:
        err("terminated")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except setup_errors() as exc:
        err(str(exc))
        return EXIT_SETUP
    except BrokenPipeError:   # stdout's reader has gone (e.g. `nevus-seg models list | head -1`)
        drop_stdout()
        return EXIT_OK
    except OSError as exc:    # a write that failed (a full disk): files are written atomically, none is half there
        err(write_error_message(exc))
        return EXIT_OUTPUT
    finally:
        warnings.showwarning = shown
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line for people, ``nevus-seg: warning: ...`` (not Python's file, line and source)."""
    print(f"nevus-seg: warning: {message}", file=sys.stderr if file is None else file)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
