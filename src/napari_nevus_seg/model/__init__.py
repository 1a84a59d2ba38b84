"""Networks, the checkpoint format, the default model and its cached loading, the model library, devices."""
