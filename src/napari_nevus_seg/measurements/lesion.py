"""The measures of one lesion, by group: size, shape, asymmetry, border, abruptness and colour.

:func:`measure_lesion` gives one row of :func:`napari_nevus_seg.measurements.table.measure`'s table; the
methods behind each column are in docs/measurements.md and in :mod:`.shape`, :mod:`.border`, :mod:`.colour`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_nevus_seg.measurements import asymmetry as ma
from napari_nevus_seg.measurements import border as mb
from napari_nevus_seg.measurements import colour as mc
from napari_nevus_seg.measurements import shape as ms
from napari_nevus_seg.measurements.calibrated import asymmetry_inputs

MEASURE_PIXELS = 4_000_000   # a lesion's crop above this is measured on a coarser grid (bounded memory)


def _inertia_eigenvalues(les: Lesion) -> np.ndarray:
    """Eigenvalues (largest first) of the covariance of the lesion's physical coordinates on the measuring grid."""
    return np.sort(np.linalg.eigvalsh(np.cov(les.coords.T, bias=True)))[::-1] if len(les.coords) > 1 else np.zeros(2)


def _axes(les: Lesion, region, unit: str) -> dict[str, float]:
    """Major and minor axis lengths (the ellipse of the same second moments), from ``regionprops`` at full
    resolution, or from the measuring grid's coordinates for a lesion measured on a coarser grid."""
    if les.step == 1:
        return {f"major_axis_{unit}": float(region.axis_major_length),
                f"minor_axis_{unit}": float(region.axis_minor_length)}
    ev = _inertia_eigenvalues(les)
    return {f"major_axis_{unit}": float(4 * np.sqrt(max(ev[0], 0.0))),
            f"minor_axis_{unit}": float(4 * np.sqrt(max(ev[1], 0.0)))}


def _eccentricity(les: Lesion, region) -> float:
    """As ``regionprops`` gives it; from the measuring grid for a lesion measured on a coarser grid."""
    if les.step == 1:
        return float(region.eccentricity)
    ev = _inertia_eigenvalues(les)
    return float(np.sqrt(1.0 - ev[1] / ev[0])) if ev[0] > 0 else 0.0


def _solidity(area_px: int, hull_px: np.ndarray, region) -> float:
    """Area / convex area, as ``regionprops`` gives it, from the hull already at hand (fast on big lesions)."""
    convex = ms.hull_pixel_count(hull_px)
    return float(area_px / convex) if convex else float(region.solidity)


@dataclass
class Lesion:
    """One lesion, cropped with a margin wide enough for the border band, and the geometry its measures share.

    Coordinates are physical (scaled by the pixel size) unless named ``_px``; ``R0``, ``C0`` place the crop.
    """

    label: int
    area_px: int
    area: float
    r_eq: float                    # radius of the disc of the same area
    s: np.ndarray                  # (row, col) pixel size
    R0: int
    C0: int
    lab_crop: np.ndarray           # the labels in the crop
    mask: np.ndarray               # the lesion in the crop
    coords_px: np.ndarray
    coords: np.ndarray
    centroid: np.ndarray
    contours: list[np.ndarray]
    perim: float
    hull: np.ndarray               # convex hull of every piece's outline
    asym: ms.Asymmetry
    outline: np.ndarray            # outer outline of the largest piece, resampled
    outer_hull: np.ndarray
    outline_length: float
    step: int = 1                  # the crop is every step-th row and column of the image (``s`` scaled to match)

    @property
    def pixel_size(self) -> np.ndarray:
        """The image's own (row, col) pixel size."""
        return self.s / self.step

    def image_crop(self, image: np.ndarray) -> np.ndarray:
        """The crop's pixels of ``image`` (same grid as ``mask``)."""
        rows, cols = self.mask.shape
        return image[self.R0:self.R0 + rows * self.step:self.step, self.C0:self.C0 + cols * self.step:self.step]


def crop_lesion(region, labels: np.ndarray, spacing: tuple[float, float]) -> Lesion:
    """Crop label ``region.label`` of ``labels`` (a ``regionprops`` region) and compute its shared geometry.

    A crop larger than :data:`MEASURE_PIXELS` is read every ``step``-th row and column (``step`` chosen to
    bring it under that size, the spacing scaled to match), so that memory and time stay bounded for a
    lesion filling a 64-megapixel image; its area in pixels stays the exact full-resolution count.
    """
    s = np.asarray(spacing, dtype=float)
    H, W = labels.shape
    r0, c0, r1, c1 = region.bbox
    label, area_px = int(region.label), int(region.num_pixels)
    area = float(area_px * s[0] * s[1])
    r_eq = math.sqrt(area / math.pi)
    w = mb.band_width(r_eq, spacing)
    mr, mcol = int(math.ceil(w / s[0])) + 2, int(math.ceil(w / s[1])) + 2
    R0, C0, R1, C1 = max(r0 - mr, 0), max(c0 - mcol, 0), min(r1 + mr, H), min(c1 + mcol, W)
    step = measure_step((R1 - R0) * (C1 - C0))
    s = s * step
    lab_crop = labels[R0:R1:step, C0:C1:step]
    mask = lab_crop == label
    coords_px = np.argwhere(mask).astype(float)
    coords = coords_px * s
    centroid = coords.mean(axis=0)
    contours = ms.lesion_contours(mask)
    hull = ms.convex_hull(np.vstack([c[:-1] for c in contours]) * s)
    # the border measures describe the outer outline of the largest piece (holes and other pieces left out)
    outer = ms.outer_contour(contours)
    outline = ms.resample_closed(outer, tuple(s))
    return Lesion(label, area_px, area, r_eq, s, R0, C0, lab_crop, mask, coords_px, coords, centroid, contours,
                  ms.perimeter(contours, tuple(s)), hull, ms.mirror_asymmetry(mask, tuple(s), centroid, coords),
                  outline, ms.convex_hull(outer[:-1] * s), ms.closed_length(outline), step)


def measure_step(crop_pixels: int, budget: int | None = None) -> int:
    """The row and column step at which a crop of ``crop_pixels`` is measured: 1 up to ``budget`` pixels
    (default :data:`MEASURE_PIXELS`), else the smallest step that brings it under."""
    budget = MEASURE_PIXELS if budget is None else budget
    step = 1
    while crop_pixels / (step * step) > budget:
        step += 1
    return step


def size_rows(les: Lesion, region, shape: tuple[int, int], unit: str, value: int | None) -> dict[str, Any]:
    """Label, area, perimeter, diameters, axes, position, bounding box, pieces and the 6 mm flag."""
    H, W = shape
    r0, c0, r1, c1 = region.bbox
    max_feret, min_feret, feret_angle = ms.feret_diameters(les.hull, tol=float(les.s.max()))
    row: dict[str, Any] = {
        "label": les.label if value is None else int(value), "area_px2": les.area_px,
        f"perimeter_{unit}": les.perim, f"equivalent_diameter_{unit}": 2.0 * les.r_eq,
        f"max_feret_{unit}": max_feret, f"min_feret_{unit}": min_feret, "max_feret_angle_deg": feret_angle,
        **_axes(les, region, unit),
        "orientation_deg": les.asym.principal_angle_deg,
        "centroid_row_px": float(les.R0 + les.step * les.coords_px[:, 0].mean()),
        "centroid_col_px": float(les.C0 + les.step * les.coords_px[:, 1].mean()),
        "bbox_min_row": r0, "bbox_min_col": c0, "bbox_max_row": r1, "bbox_max_col": c1,
        "touches_image_edge": bool(r0 == 0 or c0 == 0 or r1 == H or c1 == W),
        "pieces": int(ndimage.label(les.mask, structure=np.ones((3, 3), bool))[1]),
        "diameter_gt_6mm": (max_feret > 6.0) if unit == "mm" else pd.NA,
    }
    if unit == "mm":
        row.update({"area_mm2": les.area, "pixel_size_row_mm": float(les.pixel_size[0]),
                    "pixel_size_col_mm": float(les.pixel_size[1])})
    return row


def shape_rows(les: Lesion, region) -> dict[str, Any]:
    """Eccentricity, solidity and circularity."""
    return {
        "eccentricity": _eccentricity(les, region),
        "solidity": _solidity(int(les.mask.sum()) if les.step > 1 else les.area_px, les.hull / les.s, region),
        # capped at 1: below ~15 px the digital perimeter falls short of a disc's (a single pixel would give 2.8)
        "circularity": min(1.0, 4.0 * math.pi * les.area / les.perim ** 2) if les.perim > 0 else float("nan"),
    }


def asymmetry_rows(les: Lesion, opts: dict) -> dict[str, Any]:
    """Mirror asymmetry about the two axes, the outline-only A score, and asymmetry about the principal axes."""
    asym, threshold = les.asym, opts["asymmetry_threshold"]
    return {"asymmetry_axis1": asym.axis1, "asymmetry_axis2": asym.axis2,
            "asymmetry_axis1_angle_deg": asym.axis1_angle_deg,
            "asymmetry_shape_score": int(asym.axis1 > threshold) + int(asym.axis2 > threshold),
            "asymmetry_principal_major": asym.principal_major, "asymmetry_principal_minor": asym.principal_minor}


def border_rows(les: Lesion) -> dict[str, Any]:
    """Convexity, fractal dimension and radial roughness of the outer outline (no image needed)."""
    return {
        "border_convexity": (min(1.0, ms.polygon_length(les.outer_hull) / les.outline_length)
                             if les.outline_length > 0 else float("nan")),
        "border_fractal_dimension": mb.box_counting_dimension(les.outline, float(les.s.min()),
                                                              ms.feret_diameters(les.outer_hull)[0]),
        "border_roughness": mb.radial_roughness(les.outline, ms.polygon_centroid(les.outline)),
    }


def abruptness_rows(les: Lesion, lab: np.ndarray, spacing: tuple[float, float], opts: dict) -> dict[str, Any]:
    """Border abruptness from the image's lightness across the border band, in sectors."""
    usable = (les.lab_crop == 0) | les.mask
    ab = mb.border_abruptness(lab[..., 0], les.mask, usable, spacing, les.centroid, les.asym.axis1_angle_deg,
                              les.r_eq, opts["abrupt_sharpness"], opts["abrupt_min_contrast"])
    if ab["scored_sectors"] == 0:
        return {"border_scored_sectors": 0}
    return {"border_abrupt_sectors": ab["abrupt_sectors"], "border_scored_sectors": ab["scored_sectors"],
            "border_sharpness": ab["sharpness"], "border_contrast_dL": ab["contrast"]}


def colour_rows(les: Lesion, lesion_lab: np.ndarray, opts: dict, features: np.ndarray | None = None) -> dict[str, Any]:
    """Colour asymmetry, CIELAB statistics and the dermoscopic colours present (a colour image).

    The colours present come from the calibrated detector ``opts["colour_detector"]`` (given the lesion's
    detector ``features``) or, when that is ``None``, from the fixed reference rule (share >= minimum share).
    """
    row: dict[str, Any] = {}
    for axis, angle in (("axis1", les.asym.axis1_angle_deg), ("axis2", les.asym.axis1_angle_deg + 90.0)):
        left = ms.side_of_axis(les.coords, les.centroid, angle)
        row[f"colour_asymmetry_{axis}_dE"] = mc.halves_delta_e(lesion_lab, left)
    stats = mc.lab_statistics(lesion_lab)
    row.update({f"lab_{k}": v for k, v in stats.items() if k != "spread"})
    row["colour_spread_dE"] = stats["spread"]
    shares = mc.colour_shares(lesion_lab, opts["references"], opts["colour_max_distance"])
    detector = opts.get("colour_detector")
    if detector is not None:
        probabilities = detector.predict(features)
        called = detector.calls(probabilities, shares)
    for name in mc.COLOUR_NAMES:
        row[f"share_{name}"] = shares[name]
        if detector is None:
            row[f"colour_{name}"] = shares[name] >= opts["colour_min_share"]
        else:   # a colour the detector does not assess stays empty (pd.NA)
            row[f"colour_{name}"] = pd.NA if called[name] is None else called[name]
            row[f"colour_{name}_probability"] = probabilities[name]
    row[f"share_{mc.UNASSIGNED}"] = shares[mc.UNASSIGNED]   # the seven shares add up to 1
    row["colour_count"] = int(sum(row[f"colour_{n}"] is not pd.NA and bool(row[f"colour_{n}"]) for n in mc.COLOUR_NAMES))
    return row


def model_features(les: Lesion, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inputs of the calibrated rules (:mod:`.calibrated`): the colour detector's features
    (:func:`.colour.detector_features`) and the asymmetry score's (:func:`.asymmetry.asymmetry_features`),
    from the crop's CIE L*a*b* ``lab`` (a colour image)."""
    lesion_lab = lab[les.mask]
    angle = les.asym.axis1_angle_deg
    halves = tuple(ms.side_of_axis(les.coords, les.centroid, a) for a in (angle, angle + 90.0))
    texture = ma.fine_texture(lab[..., 0], les.mask)
    return (mc.detector_features(lesion_lab),
            ma.asymmetry_features((les.asym.axis1, les.asym.axis2), lesion_lab, texture, halves))


def lesion_model_features(region, labels: np.ndarray, rgb: np.ndarray,
                          spacing: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """:func:`model_features` of one lesion (a ``regionprops`` region of ``labels``) in an RGB uint8 image,
    computed exactly as :func:`measure_lesion` computes them (used to calibrate the rules)."""
    les = crop_lesion(region, labels, spacing)
    return model_features(les, mc.lab_pixels(les.image_crop(rgb)))


def calibrated_asymmetry_rows(colour_features: np.ndarray, asymmetry_features: np.ndarray, opts: dict) -> dict[str, Any]:
    """The calibrated A score (0/1/2, the expected score rounded) and the expected score (0-2), from the
    model ``opts["asymmetry_scorer"]`` (:mod:`.calibrated`); left out when a feature is missing."""
    expected = opts["asymmetry_scorer"].expected(asymmetry_inputs(colour_features, asymmetry_features))
    if not math.isfinite(expected):
        return {}
    return {"asymmetry_score": int(np.rint(expected)), "asymmetry_score_expected": expected}


def measure_lesion(region, labels: np.ndarray, lab_image_rgb: np.ndarray | None, spacing: tuple[float, float],
                 unit: str, opts: dict, colour: bool = True, value: int | None = None) -> dict:
    """One table row: every measure of one lesion.

    Parameters
    ----------
    region : skimage.measure RegionProperties
        The lesion (from ``regionprops(labels, spacing=spacing)``).
    labels : (H, W) int array
        The label image; may be renumbered, ``value`` is then the user's label value of ``region``.
    lab_image_rgb : (H, W, 3) uint8 array or None
        The image; without it, colour and abruptness columns are left out.
    spacing : (float, float)
        The (row, col) pixel size.
    unit : str
        ``"mm"`` or ``"px"``.
    opts : dict
        The rule parameters (:func:`~napari_nevus_seg.measurements.table.measure` builds them).
    colour : bool
        False for a grayscale image: lightness only.
    value : int, optional
        The label value to report.

    Returns
    -------
    dict
        Column name -> value; columns left out are empty in the table.
    """
    les = crop_lesion(region, labels, spacing)
    row = {**size_rows(les, region, labels.shape, unit, value), **shape_rows(les, region),
           **asymmetry_rows(les, opts), **border_rows(les)}
    if lab_image_rgb is None:
        return row
    lab = mc.lab_pixels(les.image_crop(lab_image_rgb))
    row.update(abruptness_rows(les, lab, tuple(les.s), opts))
    if colour:
        colour_features, asymmetry_features = model_features(les, lab)
        row.update(colour_rows(les, lab[les.mask], opts, colour_features))
        row.update(calibrated_asymmetry_rows(colour_features, asymmetry_features, opts))
    else:  # a grayscale image: lightness only
        stats = mc.lab_statistics(lab[les.mask])
        row.update({"lab_L_mean": stats["L_mean"], "lab_L_std": stats["L_std"]})
    return row
