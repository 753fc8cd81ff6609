"""The package's version, in one place (the face, the store's manifest and the report read it)."""

__version__ = "0.1.0"
