"""layers/ and models/ import only what sits below them (read from the import statements)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import cnnlab

ROOT = Path(cnnlab.__file__).parent
THIRD_PARTY = {"torch", "numpy", "PIL", "safetensors", "timm", "torchvision"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _allowed(name: str, cnnlab_parts: tuple[str, ...], others: set[str]) -> bool:
    top = name.split(".")[0]
    if top == "cnnlab":
        return name == "cnnlab" or any(name == p or name.startswith(p + ".")
                                       for p in cnnlab_parts)
    return top in sys.stdlib_module_names or top in others


@pytest.mark.parametrize(("package", "cnnlab_parts", "others"), [
    ("layers", ("cnnlab.errors", "cnnlab.layers"), {"torch"}),
    ("models", ("cnnlab.errors", "cnnlab.utils", "cnnlab.layers", "cnnlab.models"),
     THIRD_PARTY),
])
def test_imports(package, cnnlab_parts, others):
    bad = {f"{f.name}: {name}" for f in sorted((ROOT / package).glob("*.py"))
           for name in _imports(f) if not _allowed(name, cnnlab_parts, others)}
    if package == "layers":  # `import cnnlab` (for __version__) is models-only
        bad |= {f"{f.name}: cnnlab" for f in (ROOT / package).glob("*.py")
                if "cnnlab" in _imports(f)}
    assert not bad


def test_utils_params_is_torch_only():
    assert _imports(ROOT / "utils" / "params.py") <= {"__future__", "torch"}
