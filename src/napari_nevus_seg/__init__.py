"""napari-nevus-seg: dermoscopy lesion segmentation, measurement and fine-tuning.

The public API, used by the napari widgets, the ``nevus-seg`` command line and the tests::

    from napari_nevus_seg import read_image, load_model, predict_proba, segment, measure
    img = read_image("IMD002.bmp")            # (H, W, 3) uint8 RGB
    model = load_model()                      # the default model shipped with the package
    labels = segment(img, model=model)        # (H, W) int32, 0 background, 1..N lesions
    table = measure(labels, img, pixel_size_mm=0.0125)

Names are imported lazily, so ``import napari_nevus_seg`` is cheap (PyTorch loads on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    # images and data sets
    "read_image": "io.images", "read_image_with_info": "io.images", "read_mask": "io.mask_files",
    "to_rgb_uint8": "io.intensity", "discover_cases": "io.datasets", "iter_pairs": "io.datasets",
    "write_labels": "io.labels", "ImageReadError": "io.files", "Case": "io.datasets", "read_labels": "io.labels",
    "pixel_size_from_ruler": "io.pixel_size",
    "synthetic_lesion_image": "io.synthetic",
    # networks, checkpoints, the model library
    "build_model": "model.networks", "save_model": "model.networks", "LesionModel": "model.networks",
    "CheckpointError": "model.networks", "load_model": "model.loading", "default_model_path": "model.loading",
    "resolve_device": "model.devices", "available_devices": "model.devices",
    "DeviceUnavailableError": "model.devices", "ModelLibrary": "model.library",
    # inference
    "predict_proba": "inference.pipeline", "segment": "inference.pipeline", "postprocess": "inference.pipeline",
    "network_map": "inference.pipeline", "labels_from_map": "inference.pipeline",
    "refine_outline": "inference.refine", "SegmentOptions": "inference.options",
    "lesion_confidence": "inference.confidence",
    # training and fine-tuning
    "train": "training.loop", "TrainConfig": "training.loop", "load_pairs": "training.data",
    "prepare_pairs": "training.data", "TrainingCancelled": "training.loop", "fine_tune": "training.finetune",
    "FineTuneSettings": "training.finetune", "FineTuneResult": "training.finetune_report",
    "rank_least_confident": "training.selection",
    # measurement
    "measure": "measurements.table", "find_ruler": "measurements.ruler", "RulerTicks": "measurements.ruler",
    # scores
    "dice": "inference.metrics", "jaccard": "inference.metrics", "thresholded_jaccard": "inference.metrics",
    "score_pairs": "inference.metrics",
    # batch processing
    "segment_folder": "batch.folder",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_nevus_seg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from napari_nevus_seg.batch.folder import segment_folder  # noqa: F401
    from napari_nevus_seg.inference.confidence import lesion_confidence  # noqa: F401
    from napari_nevus_seg.inference.metrics import dice, jaccard, score_pairs, thresholded_jaccard  # noqa: F401
    from napari_nevus_seg.inference.options import SegmentOptions  # noqa: F401
    from napari_nevus_seg.inference.pipeline import (  # noqa: F401
        labels_from_map,
        network_map,
        postprocess,
        predict_proba,
        segment,
    )
    from napari_nevus_seg.inference.refine import refine_outline  # noqa: F401
    from napari_nevus_seg.io.datasets import Case, discover_cases, iter_pairs  # noqa: F401
    from napari_nevus_seg.io.files import ImageReadError  # noqa: F401
    from napari_nevus_seg.io.images import read_image, read_image_with_info  # noqa: F401
    from napari_nevus_seg.io.pixel_size import pixel_size_from_ruler  # noqa: F401
    from napari_nevus_seg.io.intensity import to_rgb_uint8  # noqa: F401
    from napari_nevus_seg.io.labels import read_labels, write_labels  # noqa: F401
    from napari_nevus_seg.io.mask_files import read_mask  # noqa: F401
    from napari_nevus_seg.io.synthetic import synthetic_lesion_image  # noqa: F401
    from napari_nevus_seg.measurements.ruler import RulerTicks, find_ruler  # noqa: F401
    from napari_nevus_seg.measurements.table import measure  # noqa: F401
    from napari_nevus_seg.model.devices import DeviceUnavailableError, available_devices, resolve_device  # noqa: F401
    from napari_nevus_seg.model.library import ModelLibrary  # noqa: F401
    from napari_nevus_seg.model.loading import default_model_path, load_model  # noqa: F401
    from napari_nevus_seg.model.networks import CheckpointError, LesionModel, build_model, save_model  # noqa: F401
    from napari_nevus_seg.training.data import load_pairs, prepare_pairs  # noqa: F401
    from napari_nevus_seg.training.finetune import FineTuneSettings, fine_tune  # noqa: F401
    from napari_nevus_seg.training.finetune_report import FineTuneResult  # noqa: F401
    from napari_nevus_seg.training.loop import TrainConfig, TrainingCancelled, train  # noqa: F401
    from napari_nevus_seg.training.selection import rank_least_confident  # noqa: F401
