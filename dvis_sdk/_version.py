"""The package version (one place; hub / weights and the package root read it from here)."""
__version__ = "0.1.0"
