"""A lesion's key figures as short lines of text, for people rather than spreadsheets.

:func:`key_figures` reads one row of :func:`~napari_nevus_seg.measure`'s table (or the same row of a napari
Labels layer's ``features``, which may also hold the segmentation's ``expected_dice``) and returns
``(name, text)`` pairs: size, greatest diameter, the A, B and C items of the dermoscopic ABCD rule, and
the expected Dice when there is one. The "Measure lesions" widget shows them for the selected lesion;
the full table (about 60 columns) stays the place for every figure. No Qt or napari here.

    from napari_nevus_seg.measurements.summary import key_figures
    for name, text in key_figures(table.iloc[0]):
        print(f"{name}: {text}")
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from napari_nevus_seg.inference.confidence import CONFIDENCE_COLUMN
from napari_nevus_seg.measurements.colour import COLOUR_NAMES, DEFAULT_MIN_SHARE, UNASSIGNED

#: what each key figure is, for a tooltip or a legend (keys: the names :func:`key_figures` gives)
FIGURE_HELP = {
    "Area": "Pixel count times the pixel area (area_mm2; area_px2 without a pixel size)",
    "Max. diameter": "The greatest diameter (maximum Feret diameter): the largest distance between two points of "
                     "the outline (max_feret_mm); the clinical ABCDE criterion is a diameter over 6 mm",
    "Asymmetry A": "Stolz's A (0, 1 or 2), scored from the outline, colour and structure asymmetry about two "
                   "perpendicular axes by a model calibrated on 80 PH2 cases with the experts' scores "
                   "(asymmetry_score; the documentation gives its cross-validated agreement); in brackets the "
                   "share of the area unmatched by its mirror image about each axis (asymmetry_axis1, "
                   "asymmetry_axis2) and the model's expected score (0-2). Without a colour image: the outline-"
                   "only count of axes with more than 10 % unmatched (asymmetry_shape_score)",
    "Border B": "Stolz's B: the number of 45° sectors whose border ends abruptly in lightness "
                "(border_abrupt_sectors of border_scored_sectors); convexity = hull perimeter / outline length, "
                "1 for a smooth convex outline, lower when ragged or lobed (border_convexity)",
    "Colours C": "Stolz's C: the dermoscopic colours (white, red, light brown, dark brown, blue-gray, black) "
                 "called present by the detector calibrated on 80 PH2 cases with expert annotations (its "
                 "cross-validated accuracy per colour is in the documentation; red is not assessed: too few "
                 "cases); then the share of the lesion's pixels nearest each reference colour and the share "
                 "near none (unassigned), which add up to 100 %",
    "Expected Dice": "The segmentation's estimate of how well this outline matches an expert's (0-1), from the "
                     "network's confidence along the outline (expected_dice)",
    "Note": "Why some figures may mislead for this lesion",
}


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def number(value: float, significant: int = 3) -> str:
    """``value`` with about ``significant`` significant digits and never an exponent: 12.3, 0.0123, 1234."""
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    decimals = max(0, significant - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def percent(share: float, decimals: int = 0) -> str:
    """A share (0-1) as a percentage: ``0.623`` -> ``"62 %"`` (``decimals=1``: ``"62.3 %"``)."""
    return f"{100.0 * float(share):.{decimals}f}\u00a0%"   # a no-break space: never "62" and "%" on two lines


def _share_item(row: Mapping[str, Any], name: str) -> str:
    """``"light brown 59 %"``, kept on one line (no-break spaces)."""
    return f"{colour_label(name)} {percent(row[f'share_{name}'])}".replace(" ", "\u00a0")


def colour_label(name: str) -> str:
    """A colour column's name as words: ``"light_brown"`` -> ``"light brown"``, ``"blue_gray"`` -> ``"blue-gray"``."""
    return "blue-gray" if name == "blue_gray" else name.replace("_", " ")


def length_unit(row: Mapping[str, Any]) -> str:
    """``"mm"`` when the row was measured with a pixel size (it has ``max_feret_mm``), else ``"px"``."""
    return "mm" if "max_feret_mm" in row else "px"


def _size(row: Mapping[str, Any], u: str) -> list[tuple[str, str]]:
    out = []
    if u == "mm" and not _missing(row.get("area_mm2")):
        out.append(("Area", f"{number(row['area_mm2'])}\u00a0mm²"))
    elif not _missing(row.get("area_px2")):
        out.append(("Area", f"{int(row['area_px2'])}\u00a0px² (pixel size unknown)"))
    feret = row.get(f"max_feret_{u}")
    if not _missing(feret):
        text = f"{number(feret)}\u00a0{u}"
        if u == "mm":
            text += " (>\u00a06\u00a0mm)" if float(feret) > 6.0 else " (≤\u00a06\u00a0mm)"
        out.append(("Max. diameter", text))
    return out


def _asymmetry(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    score, expected = row.get("asymmetry_score"), row.get("asymmetry_score_expected")
    a1, a2 = row.get("asymmetry_axis1"), row.get("asymmetry_axis2")
    axes = None if _missing(a1) or _missing(a2) else f"{percent(a1, 1)}, {percent(a2, 1)}"
    if not _missing(score) and not _missing(expected):      # the calibrated score
        inside = [f"outline {axes} unmatched"] if axes else []
        inside.append(f"expected {float(expected):.2f}")
        return [("Asymmetry A", f"{int(score)} of 2 ({'; '.join(inside)})")]
    shape = row.get("asymmetry_shape_score", score)          # outline only (or a table of an earlier version)
    if _missing(shape):
        return []
    text = f"{int(shape)} of 2 axes"
    if "asymmetry_shape_score" in row:
        text += ", outline only"
    return [("Asymmetry A", text + (f" ({axes})" if axes else ""))]


def _border(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    scored, abrupt = row.get("border_scored_sectors"), row.get("border_abrupt_sectors")
    if _missing(scored):
        text = "abruptness not measured (no image)"
    elif int(scored) == 0 or _missing(abrupt):
        text = "no sector could be scored (no skin around the lesion in the image)"
    elif int(scored) == 8:
        text = f"{int(abrupt)} of 8 sectors abrupt"
    else:
        text = f"{int(abrupt)} of {int(scored)} scored sectors abrupt ({8 - int(scored)} without skin around)"
    convexity = row.get("border_convexity")
    if not _missing(convexity):
        text += f"; convexity {float(convexity):.2f}"
    return [("Border B", text)]


def _calibrated(row: Mapping[str, Any]) -> bool:
    """Whether the row's colours come from the calibrated detector (it has probabilities or unassessed colours)."""
    return any(not _missing(row.get(f"colour_{c}_probability")) for c in COLOUR_NAMES) or any(
        f"colour_{c}" in row and _missing(row.get(f"colour_{c}")) for c in COLOUR_NAMES)


def _calibrated_colours(row: Mapping[str, Any], count: int) -> str:
    present = [c for c in COLOUR_NAMES if not _missing(row.get(f"colour_{c}")) and bool(row.get(f"colour_{c}"))]
    present.sort(key=lambda c: -float(row.get(f"share_{c}", 0.0)))
    text = f"{count}: " + ", ".join(colour_label(c).replace(" ", "\u00a0") for c in present) if present else (
        "0 (no colour called)")
    # every colour with 0.5 % of the pixels or more, and the colours called (a called colour may have fewer)
    shares = [c for c in COLOUR_NAMES if not _missing(row.get(f"share_{c}"))
              and (float(row[f"share_{c}"]) >= 0.005 or c in present)]
    shares.sort(key=lambda c: -float(row[f"share_{c}"]))
    items = [_share_item(row, c) if float(row[f"share_{c}"]) >= 0.005 else
             f"{colour_label(c)} {percent(row[f'share_{c}'], 1)}".replace(" ", "\u00a0") for c in shares]
    unassigned = row.get(f"share_{UNASSIGNED}")
    if not _missing(unassigned):
        items.append(f"unassigned\u00a0{percent(unassigned)}")
    if items:
        text += "; pixels: " + ", ".join(items)
    unassessed = [colour_label(c) for c in COLOUR_NAMES if f"colour_{c}" in row and _missing(row.get(f"colour_{c}"))]
    if unassessed:
        text += "; not assessed: " + ", ".join(unassessed)
    return text


def _colours(row: Mapping[str, Any], min_share: float) -> list[tuple[str, str]]:
    count = row.get("colour_count")
    if _missing(count):
        grey = not _missing(row.get("lab_L_mean"))
        return [("Colours C", "not measured (grayscale image)" if grey else "not measured (no image)")]
    if _calibrated(row):
        return [("Colours C", _calibrated_colours(row, int(count)))]
    present = [c for c in COLOUR_NAMES if not _missing(row.get(f"colour_{c}")) and bool(row.get(f"colour_{c}"))]
    present.sort(key=lambda c: -float(row.get(f"share_{c}", 0.0)))
    listed = ", ".join(_share_item(row, c) for c in present)
    rule = percent(min_share)
    text = f"{int(count)}: {listed}" if present else f"0 (no colour covers {rule} of the lesion)"
    traces = [c for c in COLOUR_NAMES if c not in present and not _missing(row.get(f"share_{c}"))
              and float(row[f"share_{c}"]) >= 0.005]   # not counted in C, shown so that the shares add up
    if traces:
        traces.sort(key=lambda c: -float(row[f"share_{c}"]))
        text += f"; under {rule}: " + ", ".join(_share_item(row, c) for c in traces)
    unassigned = row.get(f"share_{UNASSIGNED}")
    if not _missing(unassigned):
        text += f"; unassigned\u00a0{percent(unassigned)}"
    return [("Colours C", text)]


def _notes(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    notes = []
    if not _missing(row.get("touches_image_edge")) and bool(row.get("touches_image_edge")):
        notes.append("cut by the image edge: size and asymmetry are underestimates")
    pieces = row.get("pieces")
    if not _missing(pieces) and int(pieces) > 1:
        notes.append(f"in {int(pieces)} separate pieces, measured as one lesion")
    return [("Note", "; ".join(notes))] if notes else []


def key_figures(row: Mapping[str, Any], min_share: float = DEFAULT_MIN_SHARE) -> list[tuple[str, str]]:
    """The key figures of one lesion as ``(name, text)`` pairs, in reading order.

    ``row`` is a mapping column -> value: a row of :func:`~napari_nevus_seg.measure`'s table
    (``table.iloc[i]``) or of a Labels layer's features. Given are: the area (mm², or px² without a pixel
    size), the greatest diameter (maximum Feret diameter, and whether it is over 6 mm), A (the calibrated
    score of 2, with each axis's mirror mismatch and the expected score; without a colour image the
    outline-only count of asymmetric axes), B (abrupt border sectors of those scored, and the outline's
    convexity), C (with the calibrated detector: the count and the colours called, then the pixel shares
    of every colour with at least 0.5 % of the lesion and the unassigned share, and the colours not
    assessed; with the reference rule: the colours present with their shares, largest first, then the
    colours with 0.5 % to ``min_share`` of the lesion, which C does not count, and the unassigned share;
    either way the percentages shown add up to 100 but for rounding), the expected Dice of the outline when the row has one, and a note when
    the lesion touches the image edge or is in several pieces. Figures the row lacks (no image, grayscale)
    say so or are left out. ``min_share`` is the reference rule's minimum share the row was measured with
    (``table.attrs["colour_min_share"]``), only used in the wording of that rule.
    """
    u = length_unit(row)
    out = _size(row, u) + _asymmetry(row) + _border(row) + _colours(row, min_share)
    dice = row.get(CONFIDENCE_COLUMN)
    if not _missing(dice):
        out.append(("Expected Dice", f"{float(dice):.2f}"))
    return out + _notes(row)
