"""``python -m napari_nevus_seg`` runs the ``nevus-seg`` command line."""

import sys

from napari_nevus_seg.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
