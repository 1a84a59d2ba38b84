"""The napari face of the package: reader, writer, sample data, widgets (Qt and napari live only here)."""
