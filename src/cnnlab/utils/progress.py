"""The one rule for progress bars: shown when asked, else only when stderr is a terminal."""

from __future__ import annotations

import sys


def progress_enabled(enabled: bool | None = None) -> bool:
    """``enabled`` when given; None means "only if stderr is a terminal" (no bars in logs,
    pipes or CI output)."""
    return sys.stderr.isatty() if enabled is None else bool(enabled)
