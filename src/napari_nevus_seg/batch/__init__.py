"""Folders of images in this process or on Dask: resumable, bounded memory, a CSV of measurements."""
