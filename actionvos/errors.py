"""User-facing errors.

Every error a user can cause (bad input file, wrong checkpoint, impossible option combination)
is raised as :class:`ActionVOSError` (or a subclass) with a message that names the problem and
the fix. The CLI prints such errors as one line (a traceback only with ``--debug``) and exits
non-zero; any other exception is a bug and is shown with its traceback.
"""

from __future__ import annotations

__all__ = ["ActionVOSError", "CheckpointError", "InputError", "ConfigError"]


class ActionVOSError(Exception):
    """Base class of errors caused by user input; ``str(err)`` is a complete one-line message."""

    exit_code = 2


class CheckpointError(ActionVOSError):
    """A checkpoint cannot be read, is not plain weights, or does not match the model architecture."""


class InputError(ActionVOSError):
    """An input video, frame folder, dataset, prompt or output location is unusable."""


class ConfigError(ActionVOSError):
    """An option or option combination is invalid."""
