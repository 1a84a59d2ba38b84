"""From an RGB image to labels: options, preprocessing, the network, postprocessing, outline refinement,
scores."""
