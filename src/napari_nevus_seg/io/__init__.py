"""Files and arrays, no torch: images of any format to RGB uint8, mask and label files, pixel sizes,
data-set layouts, synthetic images with exact masks."""
