"""Exceptions edgevad raises on purpose.

Every error a user can cause (unknown names, missing or corrupt weights, bad input) is an
``EdgevadError`` with a message that names the problem and says what to do, so the CLI can print
it without a traceback.
"""


class EdgevadError(Exception):
    """Base class: a problem the user can fix, described in the message."""


class UnknownNameError(EdgevadError, KeyError):
    """A model, backbone or weights name that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsError(EdgevadError):
    """Weights are missing, fail their hash check, or do not fit the model."""


class UnsafePickleError(WeightsError):
    """A pickle asked for something other than numpy's array rebuilders."""


class ConfigError(EdgevadError, ValueError):
    """An option value that cannot work (a NaN threshold, a minimum event length of 0)."""


class DownloadError(EdgevadError):
    """A package could not be fetched from the package index."""


class MissingDependencyError(EdgevadError, ImportError):
    """An optional dependency (torch, tensorrt) is needed for this call and is not installed."""
