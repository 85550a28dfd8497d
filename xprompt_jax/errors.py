"""Errors a user can act on: each names the path, field or parameter at fault and the fix."""
from tasks.errors import TaskDataError


class CheckpointError(ValueError):
    """A checkpoint is missing, of an unknown format, truncated, or does not fit the config."""


class ConfigError(ValueError):
    """A configuration value is inconsistent with the model or the run."""


# A data file, folder, split, cache or task name is missing or malformed. The task package raises it too
# (as ``tasks.errors.TaskDataError``, the same class), so ``except DataError`` catches both sides.
DataError = TaskDataError
