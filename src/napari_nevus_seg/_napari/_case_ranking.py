"""The case browser's "Cases to correct first" section: the folder's cases ranked by the model's confidence.

"Rank by confidence" segments every case of the folder in the case browser's background job
(:func:`rank_cases_job`, a call to :func:`~napari_nevus_seg.rank_least_confident`) and lists the cases least
confident first, each with its expected Dice (the lowest of its lesions; "no lesion found" first). The
browser then walks the cases in that order (Next goes to the next least confident), and a click on a row
opens that case. It finds the outlines most likely to need a correction; as the cases to *teach* the network,
the least confident did no better than random ones (docs/fine_tuning.md, "Which cases to correct").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from napari_nevus_seg.inference.confidence import REVIEW_BELOW
from napari_nevus_seg.inference.options import SegmentOptions
from napari_nevus_seg.io.text import plural
from napari_nevus_seg.training.selection import rank_least_confident

LIST_HEIGHT = 140   # px: about six rows, so that the dock stays short
USER_ROLE = Qt.ItemDataRole.UserRole   # where a row keeps its case name


class RankingTarget:
    """What a ranking run is for: the cases in the order they were ranked in (the job hands it back to the
    browser, which tells it from an image layer and checks that the folder is still the same)."""

    name = "the case order"

    def __init__(self, cases: list) -> None:
        self.cases = list(cases)


def rank_cases_job(paths: list[str], options: SegmentOptions, *, cancel=None, progress=None) -> list[tuple[int, float]]:
    """Worker body: :func:`rank_least_confident` over the case images with the browser's segment settings."""
    kwargs = options.segment_kwargs()
    model = kwargs.pop("model")

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress({"step": done, "steps": total, "text": f"{done}/{total} cases"})

    return rank_least_confident(paths, model=model, progress=report, cancel=cancel, **kwargs)


def confidence_text(value: float) -> str:
    """How a case's confidence reads in the list and the browser's position line."""
    if value <= 0:
        return "no lesion found"
    flag = ", check" if value < REVIEW_BELOW else ""
    return f"expected Dice {value:.2f}{flag}"


class CaseRanking(QWidget):
    """The rank button and the ranked list; ``case_chosen(name)`` when the user clicks a row."""

    case_chosen = Signal(str)

    def __init__(self, start: Callable[[], Any], parent: QWidget | None = None):
        super().__init__(parent)
        self.rank_button = QPushButton("Rank by confidence")
        self.rank_button.setToolTip("Segment every case of the folder and list them least confident first: the "
                                    "outlines most likely to need a correction. Next / Previous then follow "
                                    "this order")
        self.rank_button.clicked.connect(lambda: start())
        self.list = QListWidget()
        self.list.setMaximumHeight(LIST_HEIGHT)
        self.list.itemClicked.connect(lambda item: self.case_chosen.emit(item.data(USER_ROLE)))
        self.summary = QLabel("not ranked yet")
        self.summary.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 0, 0, 0)
        lay.addWidget(self.rank_button)
        lay.addWidget(self.summary)
        lay.addWidget(self.list)

    def show_ranking(self, ranked: list[tuple[str, float]]) -> None:
        """List ``(case name, confidence)`` in the given order."""
        self.list.clear()
        for name, value in ranked:
            item = QListWidgetItem(f"{name}: {confidence_text(value)}")
            item.setData(USER_ROLE, name)
            self.list.addItem(item)
        low = sum(v < REVIEW_BELOW for _, v in ranked)
        self.summary.setText(f"{len(ranked)} cases ranked, {low} below an expected Dice of {REVIEW_BELOW:g}: "
                             "check them first")

    def select(self, name: str) -> None:
        """Highlight the row of case ``name`` (the case on screen)."""
        for row in range(self.list.count()):
            if self.list.item(row).data(USER_ROLE) == name:
                self.list.setCurrentRow(row)
                return


class RankingMixin:
    """The case browser's ranking: started in its background job, the result reorders its cases.

    Mixed into :class:`~napari_nevus_seg._napari._case_browser.CaseBrowserWidget`, whose ``cases``, ``index``,
    ``task``, ``ranking`` (:class:`CaseRanking`), ``ranking_section``, ``status``, ``confidence``, ``options()``,
    ``go()``, ``_on_segmented()`` and ``_update_buttons()`` it uses.
    """

    def forget_ranking(self, why: str = "") -> None:
        """Drop the ranking's confidences (another folder or model): the list empties, the order stays."""
        had = bool(self.confidence)
        self.confidence = {}
        self.ranking.list.clear()
        self.ranking.summary.setText(f"not ranked yet ({why}: rank again)" if why and had else "not ranked yet")
        if had:
            self._update_buttons()

    def go_to_case(self, name: str) -> bool:
        """Open the case called ``name`` (a click in the ranked list)."""
        names = [c.name for c in self.cases]
        return name in names and self.go(names.index(name))

    def rank(self):
        """Rank the folder's cases by the model's confidence in a background thread (least confident first).

        Returns the worker, or None when nothing started (no folder, a run going on)."""
        if not self.cases or self.task.running:
            return None
        self.ranking.rank_button.setEnabled(False)
        return self.task.start(rank_cases_job, [str(c.image) for c in self.cases], self.options(),
                               target=RankingTarget(self.cases),
                               desc=f"Ranking {plural(len(self.cases), 'case')} by confidence")

    def _on_result(self, target, result) -> None:
        if isinstance(target, RankingTarget):
            self._on_ranked(target.cases, result)
        else:
            self._on_segmented(target, result)

    def _on_cancelled(self, target) -> str:
        if isinstance(target, RankingTarget):
            return "Ranking cancelled; the cases keep their order"
        return f"Cancelled; {target.name!r} unchanged"

    def _on_ranked(self, cases: list, ranked: list[tuple[int, float]]) -> None:
        """Walk ``cases`` (as they were ranked) least confident first; the case on screen stays open."""
        if [c.image for c in cases] != [c.image for c in self.cases]:
            self.status.setText("another folder was opened while ranking: ranking dropped")
            return
        current = self.cases[self.index] if 0 <= self.index < len(self.cases) else None
        self.cases = [cases[i] for i, _ in ranked]
        self.confidence = {cases[i].image: value for i, value in ranked}
        if current is not None:
            self.index = self.cases.index(current)
        self.ranking.show_ranking([(cases[i].name, value) for i, value in ranked])
        self.ranking_section.set_expanded(True)
        self._update_buttons()
        self.status.setText("cases ordered least confident first: Next / Previous follow the list")
