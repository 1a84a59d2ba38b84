"""The per-lesion measurement table (size, shape, border, colour) in physical units; no torch."""
