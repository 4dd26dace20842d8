"""Errors a user can act on. Each message names the problem and the fix; the CLI prints
these without a traceback."""


class LnptError(Exception):
    """Base class of every error the CLI reports as a one-line message."""


class DatasetNotFoundError(LnptError):
    pass


class CheckpointError(LnptError):
    pass


class ConfigError(LnptError):
    pass


class PruningError(LnptError):
    pass


class TrainingError(LnptError):
    pass


class TeacherMismatchError(LnptError):
    pass


class DataError(LnptError):
    """Dataset files that are readable but hold what the dataset cannot be (images of another
    size, labels outside the classes, a size that cannot fit in memory)."""
