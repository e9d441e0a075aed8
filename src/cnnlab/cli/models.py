"""``cnnlab models [PATTERN]``: the model zoo as a table (parameters, FLOPs, sizes).

Cards are computed on the meta device (shapes only) and cached on disk under the cache root
($CNNLAB_HOME, else $XDG_CACHE_HOME/cnnlab or ~/.cache/cnnlab), keyed by the versions and
the model sources, so the table is instant after its first run.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
from pathlib import Path

import torch

import cnnlab
from cnnlab.cli.options import add_quiet_option
from cnnlab.errors import CnnlabError, ModelError
from cnnlab.models.registry import (
    GENERIC_PARAMS,
    get_entry,
    list_models,
    model_info,
    suggest_models,
)
from cnnlab.utils.progress import progress_enabled
from cnnlab.utils.table import text_table

EPILOG = """\
columns:
  PARAMS        parameters of the native build (builder defaults: 1000 classes for ImageNet
                models, 10 for CIFAR ones)
  GFLOPS@S      one image at SxS (default 32), built for that size and 10 classes: "auto"
                stems pick the small-image stem at 64 pixels and below
  GFLOPS@NATIVE one image at the native size; a multiply-add counts as 2 FLOPs
  MIN           smallest input side of the native build (small-image builds may take less)

examples:
  cnnlab models                  every model
  cnnlab models 'resnet*'        a wildcard pattern
  cnnlab models efficientnet     a part of the name
  cnnlab models resnet18         one model, with its reference and arguments
  cnnlab models --pretrained     the weights cnnlab ships (create_model(NAME, pretrained=TAG))"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command."""
    p = subparsers.add_parser(
        "models", help="list the model zoo with parameters and FLOPs",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="List registered models: family, parameters, GFLOPs at a small size and "
                    "at the native size, native and minimum input sides.")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                   help="shell-style wildcard or part of a name (default: all)")
    p.add_argument("--size", type=int, default=32, metavar="S",
                   help="side of the small-image FLOPs column (default 32)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--no-cache", action="store_true", help="recompute every card")
    p.add_argument("--pretrained", action="store_true",
                   help="list the shipped pretrained weights (tags) instead")
    add_quiet_option(p)
    p.set_defaults(func=run)


def match(pattern: str) -> list[str]:
    """Names for a wildcard pattern, an exact name or a part of a name; a pattern that
    matches nothing raises a ModelError with the closest names."""
    if any(ch in pattern for ch in "*?["):
        names = list_models(pattern)
    elif pattern.lower() in list_models():
        names = [pattern.lower()]
    else:
        names = list_models(f"*{pattern}*")
    if not names:
        close = suggest_models(pattern)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `cnnlab models`"
        raise ModelError(f"no model matches '{pattern}'{hint}")
    return names


def _fingerprint() -> str:
    """Changes whenever cnnlab's model or layer sources, cnnlab or torch change."""
    h = hashlib.sha256(f"{cnnlab.__version__}|{torch.__version__}".encode())
    root = Path(cnnlab.__file__).parent
    for sub in ("models", "layers"):
        for f in sorted((root / sub).glob("*.py")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cache_path() -> Path:
    from cnnlab.data.sources.cache import cache_dir

    return cache_dir() / "model_cards.json"


def _load_cache(fingerprint: str) -> dict:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data.get("rows", {}) if data.get("fingerprint") == fingerprint else {}


def _save_cache(fingerprint: str, rows: dict) -> None:
    try:
        from cnnlab.utils.io import atomic_write_json

        atomic_write_json(_cache_path(), {"fingerprint": fingerprint, "rows": rows})
    except OSError:
        pass  # a read-only home only costs the speed-up


def card_row(name: str, size: int) -> dict:
    """Table row of one model: native card plus FLOPs at ``size``x``size``."""
    native = model_info(name)
    row = {k: native[k] for k in ("name", "family", "params", "default_input", "min_input",
                                  "paper")}
    row["gflops_native"] = native["flops"] / 1e9
    try:
        row["gflops_small"] = model_info(name, size, num_classes=10)["flops"] / 1e9
    except CnnlabError:
        row["gflops_small"] = None  # the architecture cannot take that size
    return row


def rows_for(names: list[str], size: int, use_cache: bool = True,
             progress: bool | None = None) -> list[dict]:
    """Rows for ``names``, from the disk cache where possible (with a progress bar on a
    terminal while computing the others)."""
    fingerprint = _fingerprint()
    cache = _load_cache(fingerprint) if use_cache else {}
    todo = [n for n in names if f"{n}@{size}" not in cache]
    if todo:
        from tqdm import tqdm

        for name in tqdm(todo, desc="model cards", unit="model", leave=False,
                         disable=not progress_enabled(progress)):
            cache[f"{name}@{size}"] = card_row(name, size)
        _save_cache(fingerprint, cache)
    return [cache[f"{n}@{size}"] for n in names]


def _fmt_flops(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def models_table(rows: list[dict], size: int) -> str:
    head = ["NAME", "FAMILY", "PARAMS", f"GFLOPS@{size}", "GFLOPS@NATIVE", "NATIVE", "MIN"]
    body = [[r["name"], r["family"], f"{r['params']:,}", _fmt_flops(r["gflops_small"]),
             _fmt_flops(r["gflops_native"]), str(r["default_input"]), str(r["min_input"])]
            for r in rows]
    return text_table(head, body, right={2, 3, 4, 5, 6})


def _details(name: str) -> str:
    entry = get_entry(name)
    sig = inspect.signature(entry.builder)
    own = {k: v.default for k, v in sig.parameters.items()
           if v.default is not inspect.Parameter.empty}
    args = ", ".join(f"{k}={v!r}" for k, v in {**own, **GENERIC_PARAMS}.items())
    doc = (inspect.getdoc(entry.builder) or "").split("\n\n")[0].replace("\n", " ")
    from cnnlab.models.weights import list_pretrained

    tags = [t for t, card in list_pretrained().items() if card["name"] == name]
    return "\n".join(line for line in (
        f"\n{name}: {doc}" if doc else f"\n{name}",
        f"reference: {entry.paper}" if entry.paper else "",
        f"arguments: {args}",
        f"pretrained: {', '.join(tags)} (create_model({name!r}, pretrained=TAG))" if tags else "",
    ) if line)


def pretrained_table(shipped: dict[str, dict]) -> str:
    """Shipped tags: architecture, data, held-out accuracy, parameters, file size."""
    from cnnlab.models.weights import SHIPPED_DIR

    body = []
    for tag, card in shipped.items():
        acc = (card.get("metrics") or {}).get("test_acc")
        size = (SHIPPED_DIR / tag / "model.safetensors").stat().st_size
        body.append([tag, card["name"], str(card.get("dataset") or "-"),
                     "-" if acc is None else f"{100 * acc:.2f}%", f"{card['params']:,}",
                     f"{size / 1e6:.2f} MB"])
    return text_table(["TAG", "ARCHITECTURE", "DATA", "TEST ACC", "PARAMS", "FILE"], body,
                      right={3, 4, 5})


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        from cnnlab.models.weights import list_pretrained

        shipped = list_pretrained()
        if args.json:
            print(json.dumps(shipped, indent=2))
        else:
            print(pretrained_table(shipped))
        return 0
    if args.size < 1:
        raise ModelError(f"--size must be a positive side in pixels, got {args.size}")
    names = match(args.pattern)
    rows = rows_for(names, args.size, use_cache=not args.no_cache,
                    progress=False if args.quiet else None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(models_table(rows, args.size))
    if len(names) == 1:
        print(_details(names[0]))
    return 0
