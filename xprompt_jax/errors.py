"""Errors a user can act on: each names the path, field or parameter at fault and the fix."""
from tasks.errors import TaskDataError


class CheckpointError(ValueError):
    """A checkpoint is missing, of an unknown format, truncated, or does not fit the config."""


class ConfigError(ValueError):
    """A configuration value is inconsistent with the model or the run."""


# A data file, folder, split, cache or task name is missing or malformed. The task package raises it too
# (as ``tasks.errors.TaskDataError``, the same class), so ``except DataError`` catches both sides.
DataError = TaskDataError


NO_SPACE_TEXT = ("No space left on device", "ENOSPC", "Disk quota exceeded")


def no_space_left(err: BaseException):
    """``(True, path or None)`` when ``err`` (or an error it was raised from) is a full disk, else ``(False, None)``.

    Writers report it in several forms: an ``OSError`` with errno ENOSPC (numpy, json, the cache), or
    the text of tensorstore's and orbax's own errors, which carry the path in quotes.
    """
    import errno
    import re
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True, err.filename
        text = str(err)
        if any(marker in text for marker in NO_SPACE_TEXT):
            quoted = re.search(r"['\"](/[^'\"]+)['\"]", text)
            return True, quoted.group(1) if quoted else None
        err = err.__cause__ or err.__context__
    return False, None


def disk_full_message(path) -> str:
    where = f" writing {path}" if path else ""
    return f"no space left on device{where}; free space and run the same command to resume"
