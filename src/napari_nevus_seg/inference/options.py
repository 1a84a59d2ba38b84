"""How to segment: one set of options shared by the API, the widgets, the CLI and batch runs."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


class _NotGiven:
    """The default of a keyword that may also come from an options object: "not given"."""

    def __repr__(self) -> str:
        return "<default>"


#: a keyword argument that was not given (its value then comes from an options object or its defaults);
#: used by segment_folder's segmentation keywords and fine_tune's settings keywords
DEFAULT: Any = _NotGiven()


@dataclass(frozen=True)
class SegmentOptions:
    """The choices of :func:`~napari_nevus_seg.inference.pipeline.segment` that a user makes.

    The Segment widget, the case browser, ``nevus-seg segment`` and
    :func:`~napari_nevus_seg.batch.folder.segment_folder` all read their settings from one of these, so
    the same choices give the same outlines everywhere. Picklable (Dask tasks carry it).

    Parameters
    ----------
    model
        A model file path (str), ``None`` for the default model, or a loaded ``LesionModel``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    threshold
        Probability above which a pixel is lesion.
    tta
        Average the network's maps over horizontal and vertical flips (4 passes).
    min_size
        Smallest lesion kept, in pixels; ``None``: 0.1 % of the image.
    largest_only
        Keep only the largest lesion.
    refine
        Move the outline onto the image's visible pigment edge; None: as the model says
        (:attr:`~napari_nevus_seg.model.networks.LesionModel.refines`, yes unless a fine-tuned model recorded
        that its outlines scored better unrefined).
    zoom_small
        Look again at each lesion under 5 % of the frame on a zoomed crop and keep that outline
        (:mod:`~napari_nevus_seg.inference.zoom`).
    convention
        For a model of several outline conventions (:attr:`~napari_nevus_seg.model.networks.LesionModel.conventions`),
        the one to draw; None: the one stored in the model. A model of one convention refuses any.
    """

    model: Any = None
    device: str = "auto"
    threshold: float = 0.5
    tta: bool = False
    min_size: int | None = None
    largest_only: bool = False
    refine: bool | None = None
    zoom_small: bool = True
    convention: str | int | None = None

    def segment_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``segment(image, **options.segment_kwargs())``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}   # no asdict(): it would deep-copy a model

    def with_(self, **changes: Any) -> "SegmentOptions":
        """A copy with some options changed."""
        return replace(self, **changes)
