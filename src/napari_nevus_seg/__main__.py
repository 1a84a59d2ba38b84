"""``python -m napari_nevus_seg`` runs the ``nevus-seg`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
