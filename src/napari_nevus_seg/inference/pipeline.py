"""From an RGB image to a lesion probability map and to instance labels.

The network sees the whole image resized to its input size (:func:`preprocess.model_input`, shared
with training; images more elongated than 2:1 in overlapping windows, :func:`preprocess.model_windows`);
its probability map is brought back to the image's own size with bilinear
interpolation (smooth outlines), in bands so that memory stays bounded for any image size
(see :mod:`~napari_nevus_seg.inference.postprocess`). Post-processing: optional refinement of the outline onto the image's
visible pigment edge (:mod:`refine`), threshold, hole filling, removal of specks and of fragments at the
image's frame, one label per connected lesion (numbered by decreasing area), optionally only the largest lesion.

Speed: the network runs in inference mode, channels-last, with batch normalisation folded into the
convolutions (a cached copy; the model itself is not changed), with mixed precision on CUDA, and
stacks go through it in batches.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from napari_nevus_seg.inference.confidence import lesion_confidence
from napari_nevus_seg.inference.masks import edge_labels, labels_from_mask, relabel_table
from napari_nevus_seg.inference.options import SegmentOptions
from napari_nevus_seg.inference.postprocess import (
    check_args,
    default_min_size,
    labels_from_small,
    postprocess,
    upsample_proba,
)
from napari_nevus_seg.inference.preprocess import as_uint8_rgb, merge_windows, model_windows, to_batch_tensor
from napari_nevus_seg.inference.refine import refine_small
from napari_nevus_seg.inference.zoom import zoom_small_lesions
from napari_nevus_seg.io.deadline import check_deadline
from napari_nevus_seg.io.text import named
from napari_nevus_seg.model.devices import autocast_dtype, resolve_device, use_all_cpu_threads
from napari_nevus_seg.model.loading import as_model
from napari_nevus_seg.model.networks import LesionModel

__all__ = ["default_min_size", "labels_from_map", "network_map", "postprocess", "predict_proba", "segment",
           "zoom_labels"]

# ------------------------------------------------------------------------- the network, made fast
_FAST: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()
_FAST_LOCK = threading.Lock()


def _fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold each BatchNorm that follows a convolution in an ``nn.Sequential`` into that convolution."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for mod in net.modules():
        if isinstance(mod, nn.Sequential):
            for i in range(len(mod) - 1):
                if isinstance(mod[i], nn.Conv2d) and isinstance(mod[i + 1], nn.BatchNorm2d) \
                        and mod[i + 1].track_running_stats:
                    mod[i] = fuse_conv_bn_eval(mod[i], mod[i + 1])
                    mod[i + 1] = nn.Identity()
    return net


def _fast_net(net: nn.Module, dev: torch.device) -> nn.Module:
    """An inference copy of ``net`` on ``dev``: eval mode, BatchNorm folded, channels-last.

    Cached per network, and rebuilt when the network's weights change (e.g. after fine-tuning) or its
    outline convention does.
    """
    tensors = list(net.parameters()) + list(net.buffers())
    sig = (str(dev), getattr(net, "convention", None), tuple((t.data_ptr(), t._version) for t in tensors))
    with _FAST_LOCK:
        hit = _FAST.get(net)
        if hit is not None and hit[0] == sig:
            return hit[1]
        fast = _fold_batchnorm(copy.deepcopy(net).cpu().eval())
        for p in fast.parameters():
            p.requires_grad_(False)
        fast = fast.to(dev, memory_format=torch.channels_last)
        _FAST[net] = (sig, fast)
        return fast


def _forward(model: LesionModel, batch_u8: np.ndarray, dev: torch.device, tta: bool) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, S, S) float32 probabilities on ``dev``."""
    net = _fast_net(model.net, dev)
    amp = autocast_dtype(dev)
    x = to_batch_tensor(batch_u8, model.preprocess["mean"], model.preprocess["std"], dev)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        if not tta:
            return torch.sigmoid(net(x).float())[:, 0]
        flips = [(), (-1,), (-2,), (-2, -1)]
        xs = torch.cat([x.flip(f) if f else x for f in flips]).contiguous(memory_format=torch.channels_last)
        p = torch.sigmoid(net(xs).float()).split(x.shape[0])
        return (sum(pi.flip(f) if f else pi for pi, f in zip(p, flips)) / len(flips))[:, 0]


# ------------------------------------------------------------------------------------- images
def _as_planes(img: np.ndarray) -> tuple[list[np.ndarray], bool]:
    arr = np.asarray(img)
    if arr.ndim == 4 and arr.shape[-1] == 3:
        return [arr[i] for i in range(arr.shape[0])], True
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return [arr], False
    raise ValueError(f"expected an RGB image (H, W, 3) or a stack (N, H, W, 3); got shape {arr.shape}. "
                     "Convert grayscale or RGBA images with napari_nevus_seg.to_rgb_uint8().")


def _small_probs(planes: list[np.ndarray], m: LesionModel, dev: torch.device, tta: bool, batch_size: int,
                 keep_images: bool = False):
    """Yield (index, uint8 plane or None, small probability tensor on ``dev``) for each plane, batched.

    The map is (S, S) for the input size S, or longer along an elongated image's long side (windows).
    The uint8 plane is yielded when ``keep_images`` (outline refinement needs the colours).
    """
    size, bs = m.input_size, max(1, batch_size)
    for i in range(0, len(planes), bs):
        chunk = [as_uint8_rgb(p) for p in planes[i:i + bs]]
        views, layouts = [], []
        for p in chunk:
            v, layout = model_windows(p, size)
            views += v
            layouts.append((layout, len(v)))
        probs = torch.cat([_checked_forward(m, views, k, bs, dev, tta) for k in range(0, len(views), bs)])
        k = 0
        for j, (p, (layout, n)) in enumerate(zip(chunk, layouts)):
            pr = probs[k] if layout is None else merge_windows(probs[k:k + n], layout)
            if all((v == v[:1, :1]).all() for v in views[k:k + n]):
                pr = _uniform(pr, p, i + j, len(planes))
            k += n
            yield i + j, (p if keep_images else None), pr


def _checked_forward(m: LesionModel, views: list[np.ndarray], k: int, bs: int, dev: torch.device,
                     tta: bool) -> torch.Tensor:
    """The network on ``views[k:k + bs]``, after checking the time limit of the work in progress."""
    check_deadline(f"in the network, {k} of {len(views)} views done")
    return _forward(m, np.stack(views[k:k + bs]), dev, tta)


def _uniform(pr: torch.Tensor, plane: np.ndarray, index: int, n_planes: int) -> torch.Tensor:
    """A plane of one colour has nothing to outline (the network, which always saw a lesion, outlines
    something even there): its map is zero, with a warning."""
    where = f"plane {index} of the stack" if n_planes > 1 else "the image"
    warnings.warn(named(f"{where} is a single colour (RGB {tuple(int(c) for c in plane[0, 0])}): no lesion can be "
                  "seen in it (an empty or failed read?)"), UserWarning, stacklevel=4)
    return torch.zeros_like(pr)


def with_convention(model: LesionModel | str | os.PathLike | None, convention: str | int | None) -> LesionModel:
    """The model (loaded if a path or None) drawing ``convention``; as it is when ``convention`` is None."""
    m = as_model(model)
    return m if convention is None else m.with_convention(convention)


def _setup(img, model, device, convention=None) -> tuple[list[np.ndarray], bool, LesionModel, torch.device]:
    planes, stacked = _as_planes(img)
    m = with_convention(model, convention)
    dev = resolve_device(device)
    if dev.type == "cpu":
        use_all_cpu_threads()
    return planes, stacked, m, dev


def _stack(out: list[np.ndarray], img: np.ndarray, stacked: bool, dtype) -> np.ndarray:
    if not stacked:
        return out[0]
    if not out:  # an empty stack (0, H, W, 3)
        return np.zeros(np.shape(img)[:3], dtype)
    return np.stack(out)


def labels_from_refined(refined, shape: tuple[int, int], min_size: int | None = None, fill_holes: bool = True,
                        largest_only: bool = False, drop_edge_fragments: bool = True) -> np.ndarray:
    """Labels at full resolution from a refined map (the work grid's 0.5 level is the outline).

    The refined map is already fine (at most REFINE_SIDE pixels): its own grid decides the topology.
    """
    refined = torch.as_tensor(refined)
    return labels_from_small(refined, shape, 0.5, min_size, fill_holes, largest_only, drop_edge_fragments,
                             work_factor=1)


def network_map(img: np.ndarray, model: LesionModel | str | os.PathLike | None = None,
                device: str | torch.device = "auto", tta: bool = False,
                convention: str | int | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """The first half of :func:`segment` for one (H, W, 3) image: (uint8 image, the network's small map)."""
    planes, stacked, m, dev = _setup(img, model, device, convention)
    if stacked:
        raise ValueError("network_map takes one (H, W, 3) image, not a stack")
    _, plane, pr = next(_small_probs(planes, m, dev, tta, 1, keep_images=True))
    return plane, pr


def _outline(plane, shape, prob_small, m, threshold, min_size, largest_only, refine, fill_holes,
             drop_edge_fragments) -> np.ndarray:
    """Labels from the network's small map (``plane``: the uint8 image, needed only to ``refine``)."""
    if refine:
        check_deadline("before the outline refinement")
        refined = refine_small(plane, prob_small, threshold, min_size, largest_only, drop_edge_fragments, fill_holes)
        return labels_from_refined(refined, shape, min_size, fill_holes, largest_only, drop_edge_fragments)
    return labels_from_small(prob_small, shape, threshold, min_size, fill_holes, largest_only, drop_edge_fragments)


def _look_again(plane, labels, m, dev, tta, threshold, min_size, largest_only, refine, fill_holes,
                drop_edge_fragments) -> np.ndarray:
    """``labels`` after a zoomed second look at each small lesion (:mod:`~napari_nevus_seg.inference.zoom`):
    each crop goes through the network and :func:`_outline` with the same settings."""
    def segment_crop(crop: np.ndarray) -> np.ndarray:
        check_deadline("in the zoomed second look")
        _, crop_plane, pr = next(_small_probs([crop], m, dev, tta, 1, keep_images=True))
        return _outline(crop_plane, crop.shape[:2], pr, m, threshold, None, False, refine, fill_holes, False)

    if not labels.any():
        return labels
    zoomed = zoom_small_lesions(plane, labels, segment_crop)
    if not zoomed.replaced:
        return labels
    if zoomed.joined:
        return labels_from_mask(zoomed.labels > 0, min_size, fill_holes, largest_only, drop_edge_fragments)
    # each outline is one piece in its lesion's place: number the lesions by area again, with the first
    # look's rules (smallest size, largest only, frame fragments), from the areas the second look kept
    n = len(zoomed.areas) - 1
    min_size = default_min_size(labels.shape) if min_size is None else int(min_size)
    edge = edge_labels(zoomed.labels, n) if drop_edge_fragments else None
    remap = relabel_table(zoomed.areas, n, min_size, largest_only, edge)
    if np.array_equal(remap, np.arange(n + 1)):
        return zoomed.labels
    return np.take(remap, zoomed.labels, out=zoomed.labels)


def zoom_labels(image: np.ndarray, labels: np.ndarray, model: LesionModel | str | os.PathLike | None,
                options: SegmentOptions) -> np.ndarray:
    """``labels`` of ``image`` (as segmented with ``options``) after the zoomed second look at small lesions
    (:mod:`~napari_nevus_seg.inference.zoom`), for callers that made the first labels themselves."""
    m = with_convention(model, options.convention)
    refine = m.refines if options.refine is None else options.refine
    return _look_again(as_uint8_rgb(image), labels, m, resolve_device(options.device), options.tta,
                       options.threshold, options.min_size, options.largest_only, refine, True, True)


def _labels_and_confidence(plane, shape, prob_small, m, threshold, min_size, largest_only, refine, fill_holes,
                           drop_edge_fragments, with_confidence: bool,
                           zoom: tuple[torch.device, bool] | None) -> tuple[np.ndarray, dict[int, float] | None]:
    """The second half of :func:`segment` for one plane: labels from the network's small map, a second look
    at small lesions when ``zoom`` is (device, tta), and each lesion's expected Dice when asked."""
    labels = _outline(plane, shape, prob_small, m, threshold, min_size, largest_only, refine, fill_holes,
                      drop_edge_fragments)
    if zoom is not None:
        labels = _look_again(plane, labels, m, *zoom, threshold, min_size, largest_only, refine, fill_holes,
                             drop_edge_fragments)
    conf = lesion_confidence(prob_small.float().cpu().numpy(), labels, m) if with_confidence else None
    return labels, conf


def labels_from_map(image: np.ndarray, prob_small: torch.Tensor, model: LesionModel | str | os.PathLike | None = None,
                    threshold: float = 0.5, min_size: int | None = None, largest_only: bool = False,
                    refine: bool | None = None, fill_holes: bool = True, drop_edge_fragments: bool = True,
                    return_proba: bool = False, return_confidence: bool = False, zoom_small: bool = True,
                    device: str | torch.device = "auto", tta: bool = False, convention: str | int | None = None):
    """:func:`segment`'s result from a map :func:`network_map` gave, without running the network again.

    For a new threshold, smallest lesion size or "largest only" on the same image: ``image`` and
    ``prob_small`` are what :func:`network_map` returned for it, ``model`` the model that made the map
    (its calibration gives the confidence). The labels equal ``segment(image, threshold=..., ...)``'s;
    ``return_proba`` and ``return_confidence`` add the same results in the same order as there.
    ``zoom_small``: the second look at small lesions, which runs the network on crops (on ``device``, with
    ``tta`` as the map was made); ``convention`` as the map was made.
    """
    check_args(threshold, min_size)
    m = with_convention(model, convention)
    refine = m.refines if refine is None else refine
    zoom = (resolve_device(device), tta) if zoom_small else None
    labels, conf = _labels_and_confidence(image, image.shape[:2], prob_small, m, threshold, min_size, largest_only,
                                          refine, fill_holes, drop_edge_fragments, return_confidence, zoom)
    result: list = [labels]
    if return_proba:
        result.append(upsample_proba(prob_small, image.shape[:2]))
    if return_confidence:
        result.append(conf)
    return tuple(result) if len(result) > 1 else labels


# ------------------------------------------------------------------------------------ public API
def predict_proba(img: np.ndarray, model: LesionModel | str | os.PathLike | None = None,
                  device: str | torch.device = "auto", tta: bool = False, batch_size: int = 8,
                  progress: Callable[[int, int], None] | None = None,
                  convention: str | int | None = None) -> np.ndarray:
    """Lesion probability per pixel.

    ``img``: (H, W, 3) RGB (uint8, uint16 or float in [0, 1]) -> (H, W) float32 in [0, 1];
    a stack (N, H, W, 3) -> (N, H, W). ``model``: a loaded model, a file path, or None for the
    default model. ``device``: "auto" (CUDA, then MPS, then CPU), "cuda", "mps" or "cpu"; an
    unavailable device raises :class:`~napari_nevus_seg.model.devices.DeviceUnavailableError`.
    ``tta``: average over horizontal and vertical flips. ``progress(done, total)`` is called per plane.
    ``convention``: for a model of several outline conventions, the one to draw (a name of
    :attr:`~napari_nevus_seg.model.networks.LesionModel.conventions`; None: the one stored in the model).
    """
    planes, stacked, m, dev = _setup(img, model, device, convention)
    out = []
    for i, _, pr in _small_probs(planes, m, dev, tta, batch_size):
        out.append(upsample_proba(pr, planes[i].shape[:2]))
        if progress:
            progress(i + 1, len(planes))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return _stack(out, img, stacked, np.float32)


def segment(img: np.ndarray, model: LesionModel | str | os.PathLike | None = None,
            device: str | torch.device = "auto", threshold: float = 0.5, tta: bool = False,
            min_size: int | None = None, largest_only: bool = False, fill_holes: bool = True,
            progress: Callable[[int, int], None] | None = None, batch_size: int = 8, refine: bool | None = None,
            drop_edge_fragments: bool = True, return_proba: bool = False, return_confidence: bool = False,
            zoom_small: bool = True, convention: str | int | None = None):
    """Segment lesions: (H, W, 3) RGB -> (H, W) int32 labels (0 background, 1..N lesions by decreasing area).

    A stack (N, H, W, 3) gives (N, H, W), each plane labelled on its own (planes go through the
    network in batches of ``batch_size``). See :func:`predict_proba` for ``model``, ``device`` and
    ``tta``, and :func:`postprocess` for ``threshold``, ``min_size`` (pixels; default 0.1 % of the
    image), ``fill_holes``, ``largest_only`` and ``drop_edge_fragments``. ``refine``: move the outline
    onto the image's visible pigment edge (:func:`~napari_nevus_seg.inference.refine.refine_outline`; the default
    model otherwise draws the loose outlines of its ISIC training masks); None (the default) follows the
    model (:attr:`~napari_nevus_seg.model.networks.LesionModel.refines`: yes, unless a model fine-tuned on
    a user's outlines found them better unrefined). ``progress(done, total)`` is
    called per plane. ``return_proba``: return ``(labels, probabilities)``, the probabilities as
    :func:`predict_proba` gives them, from the same pass of the network. ``return_confidence``: also
    return each lesion's expected Dice, ``{label: value}`` for a single image or a list of such dicts for
    a stack (:func:`~napari_nevus_seg.inference.confidence.lesion_confidence`; lesions below
    ``REVIEW_BELOW`` = 0.8 are worth checking). The results come in the order labels, probabilities,
    confidence. ``zoom_small``: look again at each lesion under 5 % of the frame on a zoomed crop and keep
    that outline (:mod:`~napari_nevus_seg.inference.zoom`; the probabilities stay the first look's).
    ``convention``: see :func:`predict_proba`; with ``refine=None`` the refinement then follows that
    convention's setting (``meta["convention_refine"]``).
    """
    check_args(threshold, min_size)
    planes, stacked, m, dev = _setup(img, model, device, convention)
    refine = m.refines if refine is None else refine
    out, probs, confidence = [], [], []
    zoom = (dev, tta) if zoom_small else None
    for i, plane, pr in _small_probs(planes, m, dev, tta, batch_size, keep_images=refine or zoom_small):
        shape = planes[i].shape[:2]
        if return_proba:
            probs.append(upsample_proba(pr, shape))
        labels, conf = _labels_and_confidence(plane, shape, pr, m, threshold, min_size, largest_only, refine,
                                              fill_holes, drop_edge_fragments, return_confidence, zoom)
        out.append(labels)
        if return_confidence:
            confidence.append(conf)
        if progress:
            progress(i + 1, len(planes))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    labels = _stack(out, img, stacked, np.int32)
    result: list = [labels]
    if return_proba:
        result.append(_stack(probs, img, stacked, np.float32))
    if return_confidence:
        result.append(confidence if stacked else confidence[0])
    return tuple(result) if len(result) > 1 else labels
