"""The one error the task package raises: bad data, an unknown task or split. Standard library only.

``tasks`` imports nothing from ``xprompt_jax`` (the dependency goes one way), so the error lives here and
``xprompt_jax.errors.DataError`` is this same class: ``except DataError`` anywhere catches task errors.
"""


class TaskDataError(ValueError):
    """A data file, folder, split, cache or task name is missing or malformed (the message names the fix)."""
