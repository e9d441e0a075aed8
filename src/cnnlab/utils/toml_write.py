"""A minimal TOML writer for cnnlab's own configs (tables of scalars, lists, inline tables)."""

from __future__ import annotations

import json
import math


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        raise ValueError("TOML has no null value")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dumps(tables: dict[str, dict]) -> str:
    """``{"optim": {"lr": 0.1}}`` -> ``[optim]\\nlr = 0.1\\n``; None values are skipped."""
    out = []
    for name, table in tables.items():
        out.append(f"[{_key(name)}]")
        out += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]
        out.append("")
    return "\n".join(out)
