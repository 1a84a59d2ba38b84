"""Layer helpers shared by the widgets: image data as RGB, pixel size in mm, adding or updating result layers.

No Qt here, only napari layer objects:

- :func:`image_data_rgb`: an Image layer's pixels as (H, W, 3) uint8 RGB (or (N, H, W, 3) for a stack),
  whatever their layout (grayscale, RGBA, 16-bit, float), with a clear error otherwise;
- :func:`pixel_size_mm` / :func:`pixel_size_mm_from_layer`: ``scale`` and ``units`` as a (row, column) pixel
  size in mm (the one conversion to mm, used by the widgets and the writer);
- :func:`add_or_update_labels` / :func:`add_or_update_image`: put a result next to the image it was computed
  for, with that image's scale, translate and units, updating the layer of an earlier run instead of
  stacking up copies.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_warning

from napari_nevus_seg.io.files import ImageReadError
from napari_nevus_seg.io.intensity import to_rgb_uint8

MAX_PIXELS = 200_000_000  # per plane: labels of larger images would not fit comfortably in memory
SOURCE_KEY = "nevus_seg_source"  # metadata of result layers: unique id of the image they belong to
KIND_KEY = "nevus_seg_kind"
CASE_KEY = "nevus_seg_case"  # metadata of an image and the expert mask opened with it: the same token
COLOUR_MAP_KIND = "colour map"  # KIND_KEY of the colour-map Labels layer: classes of pixels, not lesions
WRITTEN_KEY = "nevus_seg_written"  # metadata of result Labels layers: fingerprint of the data last written there
SELF_KEY = "nevus_seg_layer"  # metadata of result layers: their own unique id (a duplicate's differs: not ours)
FEATURES_BEFORE_KEY = "nevus_seg_features_before"  # a re-segmented layer's old features, when they held user columns


def fingerprint(data: np.ndarray) -> int:
    """A cheap checksum of an array (to tell whether a layer's data changed since it was written or measured)."""
    arr = np.ascontiguousarray(data)
    return zlib.crc32(memoryview(arr).cast("B")) ^ hash((arr.shape, str(arr.dtype)))


# ------------------------------------------------------------------------------------ image data
def layer_array(layer: Layer) -> Any:
    """The layer's data; the finest level of a multiscale layer."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_stack(layer: Image) -> bool:
    """True for an Image layer holding several planes: (N, H, W, 3|4) RGB or (N, H, W) grayscale."""
    return layer.ndim > 2


def rgb_from_data(data: Any, rgb: bool, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image layer's data (``rgb`` as the layer says), or (N, H, W, 3) for a stack.

    Grayscale, RGBA, 16-bit and float images are converted with :func:`napari_nevus_seg.to_rgb_uint8`.
    Raises ``ValueError`` with a clear message for data that is not an image or too large.
    """
    shape = tuple(getattr(data, "shape", np.shape(data)))
    plane_ndim = 3 if rgb else 2
    if len(shape) not in (plane_ndim, plane_ndim + 1):
        raise ValueError(f"layer {name!r} has shape {shape}: expected a 2-D image (RGB or grayscale) or a "
                         "stack of them; choose one plane or split the layer")
    h, w = shape[-3:-1] if rgb else shape[-2:]
    if h * w > MAX_PIXELS:
        raise ValueError(f"layer {name!r} is {w}x{h} pixels: more than {MAX_PIXELS / 1e6:.0f} megapixels per "
                         "image is too large to segment here; downscale it or use the nevus-seg command line")
    try:
        if len(shape) == plane_ndim:
            return to_rgb_uint8(np.asarray(data), name)
        return np.stack([to_rgb_uint8(np.asarray(data[i]), f"{name}[{i}]") for i in range(shape[0])])
    except ImageReadError as exc:
        raise ValueError(str(exc)) from exc


def image_data_rgb(layer: Image) -> np.ndarray:
    """An Image layer's pixels as (H, W, 3) uint8 RGB ((N, H, W, 3) for a stack), converted as needed."""
    if not isinstance(layer, Image):
        raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not an image layer")
    return rgb_from_data(layer_array(layer), bool(layer.rgb), layer.name)


# ---------------------------------------------------------------------------------- physical units
def pixel_size_mm(scale: Any, units: Any) -> tuple[float, float] | None:
    """(row, column) size of a pixel in mm from the last two entries of a layer's ``scale`` and ``units``.

    ``units`` are pint units or their names (mm, µm, um, micrometer, cm, ...); each axis's size is
    ``scale * unit`` converted to mm with pint. Units that are not lengths (napari's default ``pixel``,
    ``px``, seconds) and sizes that are not positive give None.
    """
    if scale is None or units is None or len(scale) < 2 or len(units) < 2:
        return None
    import pint

    ureg = pint.get_application_registry()
    sizes = []
    for s, u in zip(list(scale)[-2:], list(units)[-2:]):
        if str(u).lower() in ("", "px", "pixel", "pixels"):   # napari's default; pint's "px" is a CSS pixel
            return None
        try:
            sizes.append(float(ureg.Quantity(float(s), str(u)).to("mm").magnitude))
        except Exception:  # noqa: BLE001 - not a length (pint raises several error types)
            return None
    return (sizes[0], sizes[1]) if all(v > 0 for v in sizes) else None


def pixel_size_mm_from_layer(layer: Layer) -> tuple[float, float] | None:
    """(row, column) size of a pixel in mm from the layer's ``scale`` and ``units``, or None if unknown.

    Computed by :func:`pixel_size_mm`; when the units are not lengths, the layer's metadata
    ``pixel_size_mm`` (as this plugin's reader and sample data store it) is used.
    """
    mm = pixel_size_mm(tuple(layer.scale), tuple(getattr(layer, "units", ())))
    if mm is not None:
        return mm
    meta = layer.metadata.get("pixel_size_mm") if isinstance(layer.metadata, dict) else None
    if meta is not None:
        arr = np.asarray(meta, dtype=float).ravel()
        if arr.size in (1, 2) and np.all(arr > 0):
            return (float(arr[0]), float(arr[-1]))
    return None


def _spatial_kwargs(like: Layer | None, ndim: int) -> dict[str, Any]:
    """scale, translate, rotation, shear, affine and units of ``like`` for a layer of ``ndim`` dimensions
    (when they match), so that the result overlays its image exactly."""
    if like is None or like.ndim != ndim:
        return {}
    return {"scale": tuple(like.scale), "translate": tuple(like.translate), "rotate": np.array(like.rotate),
            "shear": np.array(like.shear), "affine": np.array(like.affine.affine_matrix),
            "units": tuple(like.units)}


def source_id(layer: Layer) -> str:
    """A stable identity of a layer (napari's ``unique_id``; kept in result layers' metadata)."""
    return str(getattr(layer, "unique_id", id(layer)))


def source_image(viewer, labels: Layer | None) -> Image | None:
    """The open image a result layer was made from (the metadata link), or the image an expert mask was
    opened with (:func:`ground_truth_of`); None when neither is open."""
    if labels is None:
        return None
    sid = labels.metadata.get(SOURCE_KEY)
    if sid is None:
        return next((ly for ly in viewer.layers if isinstance(ly, Image) and ground_truth_of(labels, ly)), None)
    return next((ly for ly in viewer.layers if isinstance(ly, Image) and source_id(ly) == sid), None)


def ground_truth_of(layer: Layer, image: Image) -> bool:
    """Whether ``layer`` is the expert mask opened with ``image`` (``metadata["ground_truth"]``, the image's
    size): the reader and the sample data give both the same ``metadata[CASE_KEY]`` (renamed layers and a
    case opened twice stay paired); without it, a mask named ``"<image> ground truth"``."""
    if not (isinstance(layer, Labels) and layer.metadata.get("ground_truth")
            and tuple(layer.data.shape[-2:]) == plane_shape(image)):
        return False
    case, own = layer.metadata.get(CASE_KEY), image.metadata.get(CASE_KEY)
    return case == own if case is not None and own is not None else layer.name == f"{image.name} ground truth"


def is_lesion_labels(layer: Layer) -> bool:
    """Whether ``layer`` holds lesion labels (to measure, correct, train on): any Labels layer but the
    plugin's colour maps."""
    return isinstance(layer, Labels) and layer.metadata.get(KIND_KEY) != COLOUR_MAP_KIND


def is_lesion_result(layer: Layer) -> bool:
    """Whether ``layer`` is a segmentation result of this plugin (lesion labels it made, not a colour map)."""
    return is_lesion_labels(layer) and bool(layer.metadata.get(KIND_KEY))


def plane_shape(image: Image) -> tuple[int, int]:
    """(rows, columns) of an image layer's planes (its largest level when multiscale)."""
    return plane_of((image.data[0] if image.multiscale else image.data).shape, image.rgb)


def plane_of(shape: tuple[int, ...], rgb: bool) -> tuple[int, int]:
    """(rows, columns) of an array of ``shape``, its last axis the colour channels when ``rgb``."""
    return tuple(shape[-3:-1]) if rgb else tuple(shape[-2:])


def viewer_camera(viewer):
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9 (``viewer.camera`` before, now deprecated)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


# ----------------------------------------------------------------------------- result layers
def find_result_layer(viewer, like: Layer | None, kind: str, layer_type: type = Labels) -> Layer | None:
    """The viewer's result layer of ``kind`` made for image ``like`` by an earlier run (linked in metadata).

    Layers are matched by that link only, never by name alone, so that a layer the user made is never
    overwritten; a copy made with napari's "Duplicate Layer" (which copies the metadata) is the user's too.
    """
    if like is None:
        return None
    sid = source_id(like)
    for ly in viewer.layers:
        if isinstance(ly, layer_type) and ly.metadata.get(SOURCE_KEY) == sid and ly.metadata.get(KIND_KEY) == kind \
                and ly.metadata.get(SELF_KEY) == source_id(ly):  # napari's "Duplicate Layer" copies metadata
            return ly
    return None


def _add_or_update(viewer, layer_type: type, name: str, data: np.ndarray, like: Layer | None, kind: str,
                   target: Layer | None, **kwargs: Any) -> Layer:
    spatial = _spatial_kwargs(like, data.ndim)
    meta = {KIND_KEY: kind}
    if like is not None:
        meta[SOURCE_KEY] = source_id(like)
        px = pixel_size_mm_from_layer(like)
        if px is not None:
            meta["pixel_size_mm"] = px
    if target is not None and target not in viewer.layers:
        target = None
    if target is None:
        target = find_result_layer(viewer, like, kind, layer_type)
    if layer_type is Labels:
        meta[WRITTEN_KEY] = fingerprint(data)
    if target is not None and isinstance(target, Labels) and _edited(target) and target.data.shape != data.shape:
        # the user's corrections cannot be kept in the undo history of a layer of another size: keep the
        # layer as theirs (no longer a result layer) and put the new result in a new one
        for key in (KIND_KEY, SOURCE_KEY, WRITTEN_KEY):
            target.metadata.pop(key, None)
        show_warning(f"{target.name!r} had edits of yours and the new result has another size "
                     f"({'x'.join(map(str, data.shape[::-1]))} instead of "
                     f"{'x'.join(map(str, target.data.shape[::-1]))}): it is kept as it is, and the result goes "
                     "to a new layer")
        target = None
    if target is not None and target.ndim == data.ndim:
        for key, value in spatial.items():
            setattr(target, key, value)
        if isinstance(target, Labels) and _edited(target) and target.data.shape == data.shape:
            _replace_undoably(target, data)
        else:
            target.data = data
        target.metadata.update(meta)
        target.metadata[SELF_KEY] = source_id(target)
        return target
    layer = layer_type(data, name=name, metadata=meta, **spatial, **kwargs)
    layer.metadata[SELF_KEY] = source_id(layer)
    return viewer.add_layer(layer)


def _edited(layer: Labels) -> bool:
    """Whether the user changed ``layer`` (painted, erased, filled) since this plugin last wrote it."""
    return layer.metadata.get(WRITTEN_KEY) != fingerprint(np.asarray(layer.data))


def _replace_undoably(layer: Labels, data: np.ndarray) -> None:
    """Write ``data`` into an edited Labels layer as one step of its undo history (Ctrl+Z brings the edits back).

    Setting ``layer.data`` would clear napari's undo history and lose the user's corrections for good.
    """
    old = np.asarray(layer.data)
    changed = np.nonzero(old != data)
    if changed[0].size:
        layer.data_setitem(changed, data[changed].astype(old.dtype, copy=False))
        show_warning(f"{layer.name!r} had edits of yours: they were replaced by the new result. "
                     "Undo (Ctrl+Z on that layer) brings them back.")


GROUND_TRUTH_COLOUR = "magenta"   # expert masks: one colour, apart from the skin tones and the results' outlines
GROUND_TRUTH_OPACITY = 0.3


def ground_truth_display() -> dict[str, Any]:
    """Layer keyword arguments for an expert mask: one colour (magenta) for every label, half transparent,
    so that it is told apart from the plugin's results; once a result of the same image is drawn, the
    mask is drawn as an outline too (:func:`add_or_update_labels`), to compare the two outlines."""
    from napari.utils.colormaps import DirectLabelColormap

    return {"colormap": DirectLabelColormap(color_dict={None: GROUND_TRUTH_COLOUR, 0: "transparent"}),
            "opacity": GROUND_TRUTH_OPACITY}


# results: bright colours that stand out against skin (pinks, beiges) and pigment (browns, black, blue-gray);
# napari's default label colours include dark reds and browns that vanish on a pigmented lesion
RESULT_COLOURS = ("#00ffff", "#ffff00", "#66ff33", "#00bfff", "#ffffff", "#00ff99")


def result_colormap(max_label: int):
    """The colours of a result layer: lesion i in ``RESULT_COLOURS[(i - 1) % 6]``, labels painted above
    ``max_label`` in the first colour, background transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    colours: dict = {None: RESULT_COLOURS[0], 0: "transparent"}
    colours.update({i: RESULT_COLOURS[(i - 1) % len(RESULT_COLOURS)] for i in range(1, max(1, max_label) + 1)})
    return DirectLabelColormap(color_dict=colours)


def outline_width(shape: tuple[int, ...]) -> int:
    """Outline thickness in pixels for a result of this shape: about 1/400 of its larger side, at least 2."""
    return max(2, round(max(shape[-2:]) / 400))


def show_outlines(layer: Labels, outlines: bool = True) -> None:
    """Draw a result layer as outlines (the pigment inside stays visible) or filled."""
    layer.contour = outline_width(layer.data.shape) if outlines else 0
    layer.opacity = 1.0 if outlines else 0.6


def add_or_update_labels(viewer, name: str, data: np.ndarray, like: Layer | None = None,
                         target: Labels | None = None, kind: str = "lesions", outlines: bool = True) -> Labels:
    """Put ``data`` in a Labels layer: ``target`` if still in the viewer, else the result layer of an earlier
    run for image ``like``, else a new layer ``name`` (napari adds a suffix if that name is taken).

    The layer takes ``like``'s scale, translate and units, and records in its metadata the image it
    belongs to (and its pixel size in mm, when known). Measurements stored in its features are cleared
    (they described the old outlines). ``outlines``: draw the lesions as outlines (default; the pigment
    stays visible), else filled.
    """
    layer = _add_or_update(viewer, Labels, name, np.asarray(data), like, kind, target)
    layer.colormap = result_colormap(int(np.max(layer.data, initial=0)) if np.size(layer.data) else 0)
    show_outlines(layer, outlines)
    if like is not None:   # the expert's mask of the same image: an outline too, to compare with the result
        for truth in viewer.layers:
            if (isinstance(truth, Labels) and truth.metadata.get("ground_truth")
                    and truth.name == f"{like.name} ground truth"
                    and truth.data.shape == layer.data.shape):
                show_outlines(truth)
    old = getattr(layer, "features", None)
    if old is not None and len(old):
        from napari_nevus_seg.inference.confidence import CONFIDENCE_COLUMN
        from napari_nevus_seg.measurements.table import user_columns

        own = [c for c in user_columns(old.columns) if c != CONFIDENCE_COLUMN]   # ours, renewed with the outlines
        if own:   # a user's annotations (a diagnosis, a note) of lesions that no longer exist as they were
            layer.metadata[FEATURES_BEFORE_KEY] = old.copy()
            show_warning(f"{layer.name!r}: the features (measurements and your column(s) "
                         f"{', '.join(map(repr, own))}) described the old outlines and were cleared; the old table "
                         f"is kept in the layer's metadata[{FEATURES_BEFORE_KEY!r}]")
        layer.features = {}
    return layer


def add_or_update_image(viewer, name: str, data: np.ndarray, like: Layer | None = None,
                        target: Image | None = None, kind: str = "probability", **kwargs: Any) -> Image:
    """Like :func:`add_or_update_labels` for a (non-RGB) Image layer such as a probability map."""
    return _add_or_update(viewer, Image, name, np.asarray(data), like, kind, target, **kwargs)
