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


def close_matches(word: str, choices, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The ``n`` choices closest in spelling to ``word`` (difflib ratio >= ``cutoff``)."""
    import difflib

    return difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=cutoff)


def did_you_mean(word: str, choices, n: int = 1, cutoff: float = 0.6) -> str:
    """The suggestion every "unknown ..." message ends with, or "" when nothing is close.

    One suggestion reads `` (did you mean 'adam'?)``; several (``n > 1``) read
    ``; did you mean optim.lr, optim.lrs?``.
    """
    close = close_matches(word, choices, n=n, cutoff=cutoff)
    if not close:
        return ""
    if n == 1:
        return f" (did you mean '{close[0]}'?)"
    return f"; did you mean {', '.join(close)}?"


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the user's eyes: a warning the library raises (skipped
    files, ...) as one ``cnnlab: warning: ...`` line, without Python's source lines."""
    import sys

    print(f"cnnlab: warning: {message}", file=sys.stderr if file is None else file)
