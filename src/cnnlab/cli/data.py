"""``cnnlab data info SPEC`` and ``cnnlab data prepare SPEC``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import warnings
from pathlib import Path

from cnnlab.cli.options import add_quiet_option
from cnnlab.data.sources import specs_help
from cnnlab.data.sources.cache import cache_dir, text_key

SPECS_HELP = f"""\
dataset specs:
{specs_help()}

cache: --root DIR, else $CNNLAB_HOME, else $XDG_CACHE_HOME/cnnlab or ~/.cache/cnnlab
mirror: $CNNLAB_MIRROR=URL fetches files from URL/<dataset>/<file>"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="dataset spec (see below)")
    p.add_argument("--root", metavar="DIR", help="cache folder (default: see below)")
    p.add_argument("--resize", type=int, default=0, metavar="N",
                   help="resize every image to NxN (needed for folders of mixed sizes)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable image files (with a warning) instead of failing")
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                   help="share of train held out for validation (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="share of train held out for test when the source has no official "
                        "test split (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, metavar="S",
                   help="seed of the held-out splits (default 0)")
    add_quiet_option(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` with its ``info`` and ``prepare`` actions."""
    fmt = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data", help="inspect, download and cache datasets", formatter_class=fmt,
        description="Inspect, download and cache datasets.", epilog=SPECS_HELP)
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    info = actions.add_parser(
        "info", help="print classes, split sizes, image shape, mean/std and the cache",
        formatter_class=fmt, epilog=SPECS_HELP,
        description=textwrap.fill(
            "Load a dataset (downloading it if needed) and print its class names, image "
            "counts per split and in total, image shape, per-channel mean/std of the "
            "training split and where its cache lives.", 78))
    _common(info)
    info.add_argument("--no-download", action="store_true",
                      help="fail instead of downloading what the cache lacks")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=run_info)
    prepare = actions.add_parser(
        "prepare", help="download, verify and cache a dataset", formatter_class=fmt,
        epilog=SPECS_HELP,
        description=textwrap.fill(
            "Download (if needed), verify and cache a dataset so later commands start at "
            "once, offline.", 78))
    _common(prepare)
    prepare.set_defaults(func=run_prepare)
    data.set_defaults(func=lambda args: _usage(data))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _load(args: argparse.Namespace, download: bool = True):
    # warnings (skipped files, ignored val/) become one "cnnlab: warning:" line each
    from cnnlab.data.sources import load_dataset  # torch: only when data must be read

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(
            args.spec, args.root, val_fraction=args.val_fraction,
            test_fraction=args.test_fraction, split_seed=args.split_seed, resize=args.resize,
            skip_bad=args.skip_bad, download=download,
            progress=False if args.quiet else None)
    for w in caught:
        print(f"cnnlab: warning: {w.message}", file=sys.stderr)
    return ds


def summary(ds, root: str | None = None) -> dict:
    """What ``data info`` prints, as a JSON-able dict."""
    splits = ds.splits()
    mean, std = ds.train.mean_std()
    h, w, c = ds.train.shape
    return {
        "name": ds.name,
        "spec": ds.info.get("spec", ds.name),
        "classes": ds.classes,
        "image_shape": [h, w, c],
        "splits": {k: len(v) for k, v in splits.items()},
        "per_class": {k: v.counts() for k, v in splits.items()},
        "total": sum(len(v) for v in splits.values()),
        "official_test": ds.official_test,
        "mean": mean,
        "std": std,
        "cache": ds.cache_path,
        "cache_root": str(cache_dir(root)),
        "skipped": len(ds.info.get("skipped", [])),
    }


def _format(s: dict) -> str:
    h, w, c = s["image_shape"]
    classes = ", ".join(s["classes"])
    lines = [
        f"dataset   {s['spec']}",
        *textwrap.wrap(classes, 88, initial_indent=f"classes   {len(s['classes'])}: ",
                       subsequent_indent=" " * 10),
        f"image     {h}x{w}x{c} (H x W x C), uint8",
    ]
    for split, n in s["splits"].items():
        counts = s["per_class"][split]
        note = (" (official)" if split == "test" and s["official_test"]
                else " (held out, seeded)" if split in ("val", "test") else "")
        lines.append(f"{split:<9} {n:>7,} images, {min(counts):,}..{max(counts):,} per "
                     f"class{note}")
    lines += [
        f"total     {s['total']:>7,} images",
        "mean      " + " ".join(f"{m:.4f}" for m in s["mean"]) + "  (train, per channel, 0..1)",
        "std       " + " ".join(f"{v:.4f}" for v in s["std"]),
        f"cache     {s['cache'] or 'none (bundled data)'}",
    ]
    if s["skipped"]:
        lines.append(f"skipped   {s['skipped']} unreadable file(s)")
    return "\n".join(lines)


def _info_path(args: argparse.Namespace) -> Path | None:
    """Where the summary of this exact request is kept, keyed by the arguments and, for a
    file, its absolute path, size and modification time (a folder tree is always re-read)."""
    fingerprint: list = [args.spec, args.resize, args.skip_bad, args.val_fraction,
                         args.test_fraction, args.split_seed]
    _, _, path = args.spec.partition(":")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            return None
        st = p.stat()
        fingerprint += [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return cache_dir(args.root) / "info" / f"{text_key(*fingerprint)}.json"


def run_info(args: argparse.Namespace) -> int:
    """``cnnlab data info``: load the dataset and print its summary.

    The summary is cached: asking again prints it without loading torch or the images."""
    cached = _info_path(args)
    s = None
    if cached is not None and cached.is_file():
        try:
            s = json.loads(cached.read_text())
            if s.get("cache") and not Path(s["cache"]).exists():
                s = None  # the decoded data was removed: read the source again
        except (OSError, ValueError):
            s = None
    if s is None:
        ds = _load(args, download=not args.no_download)
        s = summary(ds, args.root)
        if cached is not None:
            from cnnlab.utils.io import atomic_write_json

            try:
                atomic_write_json(cached, s)
            except OSError:
                pass  # a read-only cache only costs speed
    print(json.dumps(s, indent=1) if args.json else _format(s))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    """``cnnlab data prepare``: download, verify and cache; print where it lives."""
    ds = _load(args)
    total = sum(len(v) for v in ds.splits().values())
    print(f"ready: {ds.info.get('spec', ds.name)}: {total:,} images, {ds.num_classes} classes, "
          f"{'x'.join(map(str, ds.train.shape))}; cache {ds.cache_path or 'none (bundled data)'}")
    return 0
