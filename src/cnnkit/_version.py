"""cnnkit's version, in a module of its own: the server reports it without importing the package's API."""

__version__ = "0.1.0"
