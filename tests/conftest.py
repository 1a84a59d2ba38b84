"""Shared fixtures and the GUI-test policy.

- Tests that need a napari viewer carry ``pytest.mark.gui`` (every test under ``tests/napari/`` gets
  it automatically). Without an X display they are skipped, unless ``NEVUS_SEG_REQUIRE_GUI=1`` (set
  by ``.ci/run``): then a gui test skipped for want of a display or Qt/napari, or a gui test module
  skipped at import, is a FAILURE, so that CI can never pass by silently skipping the viewer tests.
  (A gui test that skips because real data or a CUDA GPU is absent stays skipped.)
- ``pytest.mark.data`` tests read the real data sets from ``$NEVUS_SEG_DATA`` or ``../shared/data``
  (relative to the repository root) through the ``data_root`` fixture, and skip when absent.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIRE_GUI = os.environ.get("NEVUS_SEG_REQUIRE_GUI", "") == "1"
# skips that mean "no usable display / Qt" (and so must not pass silently in CI); other skips of gui
# tests (absent real data, no CUDA GPU) stay skips
_DISPLAY_SKIP = re.compile(r"display|xvfb|\bx11\b|\bxcb\b|opengl|\bqt\b|qt binding|qt_api|"
                           r"could not import '(napari|qtpy|pyqt|pyside|pytestqt|vispy)", re.IGNORECASE)
_NAPARI_TESTS = REPO_ROOT / "tests" / "napari"


def _is_gui_path(path) -> bool:
    try:
        return Path(str(path)).resolve().is_relative_to(_NAPARI_TESTS)
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_gui_path(item.path) and item.get_closest_marker("gui") is None:
            item.add_marker(pytest.mark.gui)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip (or, under NEVUS_SEG_REQUIRE_GUI=1, fail) gui tests when no display is available.

    A hook rather than a fixture: it must run before the session-scoped QApplication exists, since
    Qt aborts the whole process when it finds no display.
    """
    if item.get_closest_marker("gui") is None:
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("no display: install Xvfb (pytest-xvfb starts it) or run under xvfb-run")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_GUI and report.skipped and item.get_closest_marker("gui") is not None:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not _DISPLAY_SKIP.search(reason):
            return
        report.outcome = "failed"
        report.longrepr = f"gui test skipped while NEVUS_SEG_REQUIRE_GUI=1 (skips are failures in CI): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_GUI and report.skipped and _is_gui_path(getattr(collector, "path", "")):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"gui test module skipped while NEVUS_SEG_REQUIRE_GUI=1: {reason}"


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def synthetic_case():
    """A 512x384 synthetic dermoscopy image with one lesion (seed 0, 0.02 mm pixels)."""
    from napari_nevus_seg.io.synthetic import synthetic_lesion_image

    return synthetic_lesion_image(seed=0, pixel_size_mm=0.02)


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: ``make_dataset(layout, n=3, seed=0)`` writes a synthetic data-set tree, returns (root, cases)."""
    from napari_nevus_seg.io.synthetic import dataset_folder

    def make(layout: str = "images_masks", n: int = 3, seed: int = 0, shape=(96, 128)):
        root = tmp_path / f"{layout}_{n}_{seed}"
        return root, dataset_folder(root, layout, n=n, seed=seed, shape=shape)

    return make


def _data_root() -> Path:
    env = os.environ.get("NEVUS_SEG_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder (``$NEVUS_SEG_DATA`` or ``../shared/data``); skips the test when absent."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set NEVUS_SEG_DATA)")
    return root
