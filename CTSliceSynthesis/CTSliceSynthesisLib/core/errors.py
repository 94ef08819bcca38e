"""Exceptions with one-line, user-facing messages."""


class CTSliceSynthesisError(Exception):
    """Base class of every error the engine reports to a user (message is one line)."""


class InputError(CTSliceSynthesisError, ValueError):
    """The input volume, its geometry or a requested option cannot be processed."""


class CheckpointError(CTSliceSynthesisError):
    """A checkpoint or weights file is missing, corrupt, unsafe or does not fit the request."""


class OutputError(CTSliceSynthesisError):
    """The output cannot be written where requested."""


class SynthesisCancelled(CTSliceSynthesisError):
    """The caller asked to stop; nothing was written."""
