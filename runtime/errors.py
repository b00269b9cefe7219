"""What a user can get wrong, as one exception hierarchy.

The CLI catches :class:`ActionNetError`, prints its message on one line and exits non-zero; any
other exception is a bug and keeps its traceback. Messages say what was expected and what was
found, and, where there is one, what to do instead.
"""


class ActionNetError(Exception):
    """Base class for user-facing errors. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class InputError(ActionNetError):
    """A source that is missing, unreadable, empty, truncated or unavailable (cameras too)."""


class OutputError(ActionNetError):
    """An output path that cannot be written."""


class ModelError(ActionNetError):
    """A model file that is missing, corrupt, or does not fit the runtime's contract."""


class LabelError(ModelError):
    """A label file that is missing or does not match the model's output size."""


class ZooError(ActionNetError):
    """An unknown network name, or a zoo model that is neither cached nor downloadable."""


class MissingLibraryError(ActionNetError):
    """An optional library (TensorRT, OpenVINO, torch for export) that is not installed."""


class ServerError(ActionNetError):
    """An inference server that cannot be reached, lacks the model, refuses its inputs, or went
    away and did not come back."""


class UsageError(ActionNetError):
    """A flag value out of range or flags that contradict each other."""
