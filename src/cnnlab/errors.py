"""Exceptions for user mistakes: the CLI prints them as one line and exits non-zero."""


class CnnlabError(Exception):
    """Base of every error caused by input a user can fix (file, key, value, shape)."""


class ConfigError(CnnlabError, ValueError):
    """A bad configuration key or value."""


class DataError(CnnlabError):
    """A dataset that cannot be found, downloaded, verified or decoded."""


class ModelError(CnnlabError, ValueError):
    """An unknown model name, bad model arguments or an input the model cannot take."""


class TrainingError(CnnlabError):
    """A run that cannot start or continue (bad labels, resume mismatch, bad checkpoint)."""
