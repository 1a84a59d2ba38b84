"""The ``nevus-seg`` command line: segment, train, models."""
