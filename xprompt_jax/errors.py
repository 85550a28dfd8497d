"""Errors a user can act on: each names the path, field or parameter at fault and the fix."""


class CheckpointError(ValueError):
    """A checkpoint is missing, of an unknown format, truncated, or does not fit the config."""


class ConfigError(ValueError):
    """A configuration value is inconsistent with the model or the run."""


class DataError(ValueError):
    """A data file, folder, split, cache or task name is missing or malformed."""
