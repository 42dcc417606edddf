"""archspace's version, importable from anywhere in the package without loading the public API."""

__version__ = "0.1.0"
