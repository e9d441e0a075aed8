"""Writing cnnlab's TOML files (run.toml, sweep files) through ``tomli-w``.

TOML has no null: None values are left out, at any depth, so a config with unset
optional keys still writes (and reads back without them, i.e. with their defaults).
"""

from __future__ import annotations

from typing import Any

import tomli_w


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


def dumps(tables: dict[str, Any]) -> str:
    """``{"optim": {"lr": 0.1}}`` -> ``[optim]\\nlr = 0.1\\n``; None values are skipped."""
    return tomli_w.dumps(_without_none(tables))
