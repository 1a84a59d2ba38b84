"""Starting worker processes without the caller's script.

The ``spawn`` start method (and Dask's nannies, which use it) imports the parent's main module in every
new process: a script is run again there as ``__mp_main__``. A script that calls
:func:`~napari_nevus_seg.segment_folder` at top level, without an ``if __name__ == "__main__":`` guard,
then started the batch again inside each worker, and every worker died (``BrokenProcessPool``, "Nanny
failed to start"). The workers of this package need nothing from the caller's script: they run this
package's functions on arrays and file paths.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

__all__ = ["main_module_hidden"]


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Processes started inside this block do not import the parent's ``__main__``.

    ``sys.modules["__main__"]`` is an empty module meanwhile (no ``__file__``, no ``__spec__``: nothing
    for ``multiprocessing.spawn`` to import); the real one is put back on leaving, also after an error.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
        else:
            sys.modules.pop("__main__", None)
