"""One-way imports between the package's layers (DESIGN.md, "Layout"), read from the source.

Every import statement of every module under ``src/cnnlab`` counts: at module level or
inside a function, absolute or relative, ``import cnnlab.x`` or ``from cnnlab import x``
(a name of the root's lazy map counts as the module that defines it), and ``cnnlab.NAME``
attribute uses after a bare ``import cnnlab``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cnnlab

SRC = Path(cnnlab.__file__).parent
ANY = None  # the layer may import every other one

# layer -> the other layers it may import (a layer may always import itself). A layer is
# a subpackage (``train``) or a top-level module (``errors``); "" is the root package.
ALLOWED: dict[str, set[str] | None] = {
    "errors": set(),
    "status": set(),
    "utils": {"errors"},
    "config": {"errors", "utils"},
    "layers": {"errors"},
    "models": {"errors", "utils", "layers"},
    "data": {"errors", "utils", "config"},
    "train": {"errors", "status", "utils", "config", "data"},
    "experiments": {"errors", "status", "utils", "config", "layers", "models", "data", "train"},
    "report": {"errors", "status", "utils", "config", "experiments"},
    "api": {"errors", "status", "utils", "config", "layers", "models", "data", "train",
            "experiments", "report"},
    "cli": ANY,
    "": ANY,  # cnnlab/__init__.py (the lazy map) and __main__.py
    "__main__": ANY,
}
# ``from cnnlab import __version__`` (and ``cnnlab.__version__``) is fine anywhere
ROOT_NAMES = {"__version__"}


def layer_of(module: str) -> str:
    """``cnnlab.train.trainer`` -> ``train``; ``cnnlab`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _root_name(name: str, where: str) -> str | None:
    """The module ``from cnnlab import name`` / ``cnnlab.name`` reaches (None: the root)."""
    if name in ROOT_NAMES:
        return None
    if name in cnnlab._LAZY:
        return cnnlab._LAZY[name]
    if (SRC / name).is_dir() or (SRC / f"{name}.py").is_file():
        return f"cnnlab.{name}"
    raise AssertionError(f"{where}: cnnlab.{name} is neither a module nor a lazy name")


def imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, target module, statement)`` for each cnnlab import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    where = str(path.relative_to(SRC.parents[1]))  # src/cnnlab/...
    out: list[tuple[int, str, str]] = []
    bare_root = False
    for node in ast.walk(tree):
        text = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "cnnlab":
                    bare_root = True
                elif alias.name.startswith("cnnlab."):
                    out.append((node.lineno, alias.name, text))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "cnnlab":
                for alias in node.names:
                    reached = _root_name(alias.name, f"{where}:{node.lineno}")
                    if reached:
                        out.append((node.lineno, reached, text))
            elif target.startswith("cnnlab."):
                out.append((node.lineno, target, text))
    if bare_root:  # `import cnnlab` then cnnlab.create_model(...) is an import too
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "cnnlab"):
                reached = _root_name(node.attr, f"{where}:{node.lineno}")
                if reached:
                    out.append((node.lineno, reached, f"cnnlab.{node.attr}"))
    return out


def test_every_layer_is_in_the_table():
    layers = {layer_of(module_name(p)) for p in SRC.rglob("*.py")}
    missing = layers - set(ALLOWED)
    assert not missing, f"add a row for {sorted(missing)} to ALLOWED in {__file__}"


def test_imports_go_one_way():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        layer = layer_of(module_name(path))
        allowed = ALLOWED.get(layer, set())
        if allowed is ANY:
            continue
        for line, target, text in imports(path):
            other = layer_of(target)
            if other != layer and other not in allowed:
                rel = path.relative_to(SRC.parents[1])
                may = ", ".join(sorted(allowed)) or "nothing else in cnnlab"
                bad.append(f"{rel}:{line}: `{text}` — {layer or 'cnnlab'}/ imports "
                           f"{other or 'cnnlab'}/, but may import only {may}")
    if bad:
        pytest.fail("imports against the layering (DESIGN.md):\n" + "\n".join(bad),
                    pytrace=False)


def test_the_checker_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The reader catches relative, function-level and lazy-name imports (a check that
    cannot fail proves nothing)."""
    pkg = tmp_path / "cnnlab" / "train"
    pkg.mkdir(parents=True)
    (tmp_path / "cnnlab" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(
        "import cnnlab\n"
        "from ..models import registry\n"
        "def f():\n"
        "    from cnnlab.report import tables\n"
        "    from cnnlab import create_model\n"
        "    return cnnlab.sweep, cnnlab.__version__\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path / "cnnlab")
    found = {(line, target) for line, target, _ in imports(pkg / "bad.py")}
    assert found == {(2, "cnnlab.models"), (4, "cnnlab.report"),
                     (5, cnnlab._LAZY["create_model"]), (6, cnnlab._LAZY["sweep"])}
