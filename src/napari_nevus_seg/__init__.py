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
    "read_image": "io", "read_image_with_info": "io", "read_mask": "io", "to_rgb_uint8": "io",
    "discover_cases": "io", "iter_pairs": "io", "write_labels": "io", "ImageReadError": "io", "Case": "io",
    "read_labels": "io",
    # synthetic dermoscopy-like images with exact masks
    "synthetic_lesion_image": "synthetic",
    # networks and checkpoints
    "build_model": "model", "save_model": "model", "LesionModel": "model", "CheckpointError": "model",
    # inference
    "load_model": "inference", "predict_proba": "inference", "segment": "inference",
    "postprocess": "inference", "default_model_path": "inference", "refine_outline": "refine",
    "resolve_device": "devices", "available_devices": "devices", "DeviceUnavailableError": "devices",
    # training and fine-tuning
    "train": "training", "TrainConfig": "training", "load_pairs": "training", "prepare_pairs": "training",
    "TrainingCancelled": "training",
    "fine_tune": "finetune", "FineTuneResult": "finetune",
    "ModelLibrary": "library",
    # measurement
    "measure": "measurements",
    # scores
    "dice": "metrics", "jaccard": "metrics", "thresholded_jaccard": "metrics", "score_pairs": "metrics",
    # batch processing
    "segment_folder": "batch",
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
    from .batch import segment_folder
    from .devices import DeviceUnavailableError, available_devices, resolve_device
    from .finetune import FineTuneResult, fine_tune
    from .inference import default_model_path, load_model, postprocess, predict_proba, segment
    from .io import (Case, ImageReadError, discover_cases, iter_pairs, read_image, read_image_with_info, read_labels,
                     read_mask, to_rgb_uint8, write_labels)
    from .library import ModelLibrary
    from .measurements import measure
    from .refine import refine_outline
    from .metrics import dice, jaccard, score_pairs, thresholded_jaccard
    from .model import CheckpointError, LesionModel, build_model, save_model
    from .synthetic import synthetic_lesion_image
    from .training import TrainConfig, TrainingCancelled, load_pairs, prepare_pairs, train
