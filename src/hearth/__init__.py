"""Hearth: a private, self-hosted AI stack — train, fine-tune, inspect, know, act and serve."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hearth")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0.dev0"
