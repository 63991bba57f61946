"""DVIS-DAQ (ECCV 2024): dynamic-anchor-query track module, its refiner and meta-architectures."""
