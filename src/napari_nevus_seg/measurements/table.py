"""Per-lesion measurements: size in mm, shape, asymmetry, border and colours (one table row per lesion).

    from napari_nevus_seg import measure
    table = measure(labels, image, pixel_size_mm=0.0125)   # pandas.DataFrame, one row per label

Columns carry their unit: ``_mm``/``_mm2`` when the pixel size is known, ``_px``/``_px2`` otherwise;
fractions, ratios, angles (``_deg``) and counts have none. The method behind every column, its
thresholds and the references are in ``docs/measurements.md`` and in the docstrings of
:mod:`.shape`, :mod:`.border`, :mod:`.colour` and :mod:`.lesion`.

We report the parts of the dermoscopic ABCD rule that can be measured from an outline and colours
(A from the shape, B, C) and the clinical "diameter > 6 mm" flag; we do not compute a total dermoscopy
score, because Stolz's D (differential structures) is not measured here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_nevus_seg.io.deadline import check_deadline
from napari_nevus_seg.io.labels import as_label_array
from napari_nevus_seg.io.pixel_size import pixel_size_pair
from napari_nevus_seg.io.text import named
from napari_nevus_seg.measurements import colour as mc
from napari_nevus_seg.measurements.calibrated import load_asymmetry_scorer, load_colour_detector
from napari_nevus_seg.measurements.lesion import measure_lesion

#: a mirror-asymmetry fraction above this makes an axis "asymmetric" (the outline-only score counts such axes, 0-2)
ASYMMETRY_THRESHOLD = 0.10


class MeasureCancelled(RuntimeError):
    """Raised by :func:`measure` when its ``cancel`` event was set; nothing is returned."""


# --------------------------------------------------------------------------------------- inputs
def _as_labels(labels: Any) -> np.ndarray:
    """The labels as a 2-D int32/int64 array (:func:`~napari_nevus_seg.io.labels.as_label_array`'s checks)."""
    arr = as_label_array(labels)
    if arr.size == 0:
        raise ValueError(f"labels have no pixels (shape {arr.shape})")
    return arr.astype(np.int64, copy=False) if arr.dtype.itemsize > 4 or arr.dtype.kind == "u" else arr


#: label values up to this go to regionprops as they are; above it they are renumbered 1..n first, because
#: regionprops (scipy's find_objects) keeps one slot per value from 1 to the largest: a single lesion labelled
#: 2**40 asked for terabytes, and 2**62 crashed the process
DIRECT_MAX_LABEL = 65535


def _compact_labels(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(labels, values)``: the labels unchanged and ``None`` when their largest value is small, otherwise
    the labels renumbered 1..n (0 stays background) and the original value of each new label (``values[k - 1]``)."""
    if not lab.size or int(lab.max()) <= DIRECT_MAX_LABEL:
        return lab, None
    nonzero = lab != 0
    values, inverse = np.unique(lab[nonzero], return_inverse=True)
    compact = np.zeros(lab.shape, dtype=np.int32 if len(values) < 2**31 - 1 else np.int64)
    compact[nonzero] = inverse.ravel() + 1
    return compact, values


def _warn_inferred_scale(arr: np.ndarray) -> None:
    """Colours depend on the value taken as full intensity; where it is inferred from the brightest pixel
    (integers beyond 8 bits, floats above 1), say which it was: one hot pixel changes every colour.

    The scale is the conversion's own (:func:`~napari_nevus_seg.io.intensity.array_full_scale`, alpha included). The
    message names the type and the scale, not the peak, so that a batch of images warns once per scale.
    """
    from napari_nevus_seg.io.intensity import array_full_scale

    if arr.dtype.kind not in "uif" or arr.dtype == np.uint8 or arr.size == 0:
        return
    full, peak = array_full_scale(arr)
    if arr.dtype.kind == "f":
        if peak <= 1.0:
            return
        how = ("has values above 1: colours are measured as [0, 1] data with those values clipped" if full == 1.0
               else f"has values above 2: colours are measured as 0..{full:g} data, not as [0, 1] data")
    else:
        if full == float(np.iinfo(arr.dtype).max):
            return   # the type's own range
        how = (f"does not use its type's range: colours are measured with full intensity at {full:g} "
               f"({int(np.log2(full + 1))}-bit data)")
    warnings.warn(named(f"the image ({arr.dtype}) {how}. This scale is inferred from the brightest pixel, so a single "
                  "hot or saturated pixel changes every colour measure; pass an 8-bit RGB image to set the "
                  "scale yourself."), UserWarning, stacklevel=4)


def _as_image(image: Any, shape: tuple[int, int]) -> tuple[np.ndarray | None, bool]:
    """The image as RGB uint8 and whether it has colour (False for grayscale ones, whatever their layout)."""
    if image is None:
        return None, False
    from napari_nevus_seg.io.intensity import to_rgb_uint8

    rgb = to_rgb_uint8(image, source="image", min_side=1)  # grayscale, RGBA, 16-bit, float -> RGB uint8
    _warn_inferred_scale(np.asarray(image))
    if rgb.shape[:2] != tuple(shape):
        raise ValueError(f"labels are {shape[1]}x{shape[0]} (WxH) but the image is {rgb.shape[1]}x{rgb.shape[0]}; "
                         "they must have the same height and width")
    grey = bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    return rgb, not grey


def pixel_spacing(pixel_size_mm: Any) -> tuple[tuple[float, float], str]:
    """``(row, col)`` pixel size and the length unit: ``((s, s), "mm")``, ``((sr, sc), "mm")`` or ``((1, 1), "px")``.

    The size is checked by :func:`~napari_nevus_seg.io.pixel_size.pixel_size_pair` (``True``, ``"0.1"``,
    NaN, 0 and sizes outside 1e-6..1000 mm raise ``ValueError``).
    """
    if pixel_size_mm is None:
        return (1.0, 1.0), "px"
    return pixel_size_pair(pixel_size_mm, "pixel_size_mm"), "mm"


# -------------------------------------------------------------------------------------- columns
def column_names(unit: str = "mm") -> list[str]:
    """The columns of :func:`measure`'s table, in order, for length unit ``"mm"`` or ``"px"``."""
    u = unit
    size = ["label", "area_px2"] + (["area_mm2", "pixel_size_row_mm", "pixel_size_col_mm"] if u == "mm" else []) + [
        f"perimeter_{u}", f"equivalent_diameter_{u}", f"max_feret_{u}", f"min_feret_{u}", "max_feret_angle_deg",
        f"major_axis_{u}", f"minor_axis_{u}", "orientation_deg", "centroid_row_px", "centroid_col_px",
        "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col", "touches_image_edge", "pieces", "diameter_gt_6mm"]
    shape = ["eccentricity", "solidity", "circularity"]
    asym = ["asymmetry_axis1", "asymmetry_axis2", "asymmetry_axis1_angle_deg", "asymmetry_score",
            "asymmetry_score_expected", "asymmetry_shape_score", "asymmetry_principal_major", "asymmetry_principal_minor",
            "colour_asymmetry_axis1_dE", "colour_asymmetry_axis2_dE"]
    border = ["border_convexity", "border_fractal_dimension", "border_roughness",
              "border_abrupt_sectors", "border_scored_sectors", "border_sharpness", "border_contrast_dL"]
    colour = ["lab_L_mean", "lab_a_mean", "lab_b_mean", "lab_L_std", "lab_a_std", "lab_b_std", "colour_spread_dE"]
    colour += [f"share_{c}" for c in (*mc.COLOUR_NAMES, mc.UNASSIGNED)]    # shares of the lesion, adding up to 1
    colour += [f"colour_{c}" for c in mc.COLOUR_NAMES] + ["colour_count"]
    colour += [f"colour_{c}_probability" for c in mc.COLOUR_NAMES]      # the calibrated detector's
    return size + shape + asym + border + colour


_INT_COLUMNS = {"label", "area_px2", "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col",
                "pieces", "asymmetry_shape_score"}
_NULLABLE_INT = {"border_abrupt_sectors", "border_scored_sectors", "colour_count", "asymmetry_score"}
_BOOL_COLUMNS = {"touches_image_edge"}
_NULLABLE_BOOL = {"diameter_gt_6mm"} | {f"colour_{c}" for c in mc.COLOUR_NAMES}


def user_columns(columns) -> list[str]:
    """The columns of a features table that are no measurements (nor napari's ``index``): a user's own
    per-lesion annotations, such as a diagnosis or a note."""
    measured = set(column_names("mm")) | set(column_names("px")) | {"index"}
    return [c for c in columns if c not in measured]


def _typed_frame(rows: list[dict], unit: str) -> pd.DataFrame:
    data = {}
    for c in column_names(unit):
        values = [r.get(c, pd.NA) for r in rows]
        if c in _INT_COLUMNS:
            data[c] = np.array(values, dtype=np.int64)
        elif c in _NULLABLE_INT:
            data[c] = pd.array(values, dtype="Int64")
        elif c in _BOOL_COLUMNS:
            data[c] = np.array(values, dtype=bool)
        elif c in _NULLABLE_BOOL:
            data[c] = pd.array(values, dtype="boolean")
        else:
            data[c] = np.array([np.nan if v is pd.NA else v for v in values], dtype=float)
    return pd.DataFrame(data)


# ----------------------------------------------------------------------------------- public API
def measure(labels: Any, image: Any = None, pixel_size_mm: float | tuple[float, float] | None = None, *,
            asymmetry_threshold: float = ASYMMETRY_THRESHOLD,
            reference_colours: dict | str | None = None,
            colour_min_share: float = mc.DEFAULT_MIN_SHARE,
            colour_max_distance: float = mc.DEFAULT_MAX_DISTANCE,
            colour_rule: str = "calibrated",
            colour_model: str | Path | None = None,
            asymmetry_model: str | Path | None = None,
            abrupt_sharpness: float = 2.0 / 3.0,
            abrupt_min_contrast: float = 4.0,
            progress: Callable[[dict], None] | None = None,
            cancel: Any = None) -> pd.DataFrame:
    """Measure every lesion of a label image; one row per label value (column ``label``), sorted by label.

    Parameters
    ----------
    labels : (H, W) array
        0 is background, 1, 2, ... are lesions (int, bool, or whole-number floats). Any positive value up
        to 2**63 - 1 may be used (large values are renumbered internally; the table reports the values
        given); negative values are refused with a ValueError.
    image : (H, W, 3) array, optional
        The dermoscopy image (RGB; grayscale, RGBA, 16-bit and float images are converted with
        :func:`napari_nevus_seg.io.intensity.to_rgb_uint8`). Without it, colour and border-abruptness columns are empty;
        with a grayscale one (or R = G = B), the colour columns other than ``lab_L_mean`` and ``lab_L_std``
        are empty and a :class:`UserWarning` says so.
    pixel_size_mm : float or (row, col) pair, optional
        Size of a pixel in mm. Anisotropic pixels are handled exactly (coordinates are scaled). When
        ``None``, lengths are in pixels and the column names say ``_px``.
    asymmetry_threshold : float
        For the outline-only score ``asymmetry_shape_score``: an axis is asymmetric when more than this
        share of the lesion misses its mirror image (0.10).
    asymmetry_model : path, optional
        An asymmetry-score file of one's own (the format of ``asymmetry_model.json``). The calibrated
        ``asymmetry_score`` (0/1/2, from outline, colour and structure asymmetry; fitted on 80 annotated
        PH2 cases) needs a colour image; without one it is left empty.
    reference_colours, colour_max_distance
        The colour shares (see :mod:`napari_nevus_seg.measurements.colour`): reference colours (a set name,
        default ``"normalised_rgb"``, or a dict name -> RGB) and maximum CIE76 distance to the nearest
        reference (40); each pixel is counted in the share of its nearest reference colour.
    colour_rule : ``"calibrated"`` or ``"reference"``
        Which rule says whether a colour is present (``colour_<name>``, ``colour_count``):
        ``"calibrated"`` (default), the detector fitted on 80 annotated PH2 cases
        (:mod:`napari_nevus_seg.measurements.calibrated`; it also gives ``colour_<name>_probability``; a
        colour it does not assess is left empty), or ``"reference"``, the fixed rule of earlier versions:
        present when its share is at least ``colour_min_share`` (0.05).
    colour_model : path, optional
        A colour detector file of one's own (the format of ``colour_model.json``) for the calibrated rule.
    abrupt_sharpness, abrupt_min_contrast
        A border sector is abrupt when its sharpness >= ``abrupt_sharpness`` and |ΔL*| >= ``abrupt_min_contrast``.
    progress : callable, optional
        Called with ``{"stage": "measure", "step": i, "steps": n}`` after each lesion.
    cancel : object with ``is_set()``, optional
        When set, :class:`MeasureCancelled` is raised before the next lesion.

    Returns
    -------
    pandas.DataFrame
        Columns as listed by :func:`column_names`; empty (with those columns) when there is no lesion.
        ``table.attrs`` records the pixel size, unit and rule parameters.
    """
    from skimage.measure import regionprops

    lab = _as_labels(labels)
    rgb, colour = _as_image(image, lab.shape)
    spacing, unit = pixel_spacing(pixel_size_mm)
    if not 0.0 <= float(asymmetry_threshold) <= 1.0:
        raise ValueError("asymmetry_threshold must lie in [0, 1]")
    if not 0.0 < float(colour_min_share) <= 1.0:
        raise ValueError("colour_min_share must lie in (0, 1]")
    if colour_rule not in ("calibrated", "reference"):
        raise ValueError(f"colour_rule must be 'calibrated' or 'reference', got {colour_rule!r}")
    detector = load_colour_detector(colour_model) if colour_rule == "calibrated" else None
    scorer = load_asymmetry_scorer(asymmetry_model)
    opts = {"asymmetry_threshold": float(asymmetry_threshold), "references": mc.check_references(reference_colours),
            "colour_min_share": float(colour_min_share), "colour_max_distance": float(colour_max_distance),
            "abrupt_sharpness": float(abrupt_sharpness), "abrupt_min_contrast": float(abrupt_min_contrast),
            "colour_detector": detector, "asymmetry_scorer": scorer}
    lab, values = _compact_labels(lab)  # renumbered 1..n when label values are large (sorted order is kept)
    regions = sorted(regionprops(lab, spacing=spacing), key=lambda r: r.label)
    if regions and rgb is not None and not colour:
        warnings.warn(named("the image is grayscale: dermoscopic colours, colour asymmetry and a*/b* statistics cannot "
                      "be measured and are left empty (lightness and border measurements are kept)"),
                      UserWarning, stacklevel=2)
    rows = []
    for i, region in enumerate(regions):
        if cancel is not None and cancel.is_set():
            raise MeasureCancelled(f"measurement cancelled after {i} of {len(regions)} lesions")
        check_deadline(f"measuring, {i} of {len(regions)} lesions done")
        value = None if values is None else values[region.label - 1]
        rows.append(measure_lesion(region, lab, rgb, spacing, unit, opts, colour, value))
        if progress is not None:
            progress({"stage": "measure", "step": i + 1, "steps": len(regions)})
    table = _typed_frame(rows, unit)
    _warn_pieces(table)
    table.attrs.update({"pixel_size_mm": None if unit == "px" else spacing, "length_unit": unit,
                        "asymmetry_threshold": opts["asymmetry_threshold"],
                        "reference_colours": opts["references"], "colour_min_share": opts["colour_min_share"],
                        "colour_max_distance": opts["colour_max_distance"],
                        "abrupt_sharpness": opts["abrupt_sharpness"],
                        "abrupt_min_contrast": opts["abrupt_min_contrast"], "colour_image": colour,
                        "colour_rule": colour_rule, "asymmetry_model_version": scorer.version,
                        "asymmetry_model_source": scorer.source})
    if detector is not None:
        table.attrs.update({"colour_model_version": detector.version, "colour_model_source": detector.source,
                            "colours_assessed": detector.assessed(), "colour_dominant_share": detector.dominant_share})
    return table


def _warn_pieces(table: pd.DataFrame) -> None:
    """Say which labels are in several separate pieces (often a stray pixel or a stroke of the brush)."""
    split = table.loc[table["pieces"] > 1, ["label", "pieces"]]
    if len(split):
        listed = ", ".join(f"{int(v)} ({int(n)} pieces)" for v, n in split.head(5).itertuples(index=False))
        more = f" and {len(split) - 5} more" if len(split) > 5 else ""
        if len(split) == 1:
            which = f"label {int(split.iloc[0, 0])} is in {int(split.iloc[0, 1])}"
        else:
            which = f"labels {listed}{more} are in"
        warnings.warn(named(f"{which} separate pieces, each label measured as one lesion: its diameters, "
                      "solidity and asymmetry span all of them (a stray pixel 2 mm away adds 2 mm to the "
                      "greatest diameter). Erase stray pixels, or give each piece its own label, to measure "
                      "each on its own (column 'pieces')."), UserWarning, stacklevel=3)
