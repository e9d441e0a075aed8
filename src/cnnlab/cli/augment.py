"""``cnnlab augment preview|sample``: see what an augmentation pipeline does to a dataset,
or write N augmented images to a folder (the Augmentor library's ``sample``)."""

from __future__ import annotations

import argparse
import textwrap

from cnnlab.cli.options import add_data_options, add_quiet_option
from cnnlab.config import parse_value
from cnnlab.data.augment import OPS, PRESETS

EPILOG = f"""\
pipelines:
  a preset        {', '.join(PRESETS)}
  a TOML file     with augment = [...] at the top level or under [data]
  an inline list  '[{{op="rotate", degrees=30}}, {{op="cutmix", alpha=1.0}}]'

ops: {textwrap.fill(', '.join(OPS), 70, subsequent_indent='     ')}"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``augment`` with its ``preview`` and ``sample`` actions."""
    fmt = argparse.RawDescriptionHelpFormatter
    augment = subparsers.add_parser(
        "augment", help="preview augmentation pipelines, write augmented samples",
        formatter_class=fmt, epilog=EPILOG,
        description="Preview data augmentation pipelines or write augmented images to disk.")
    actions = augment.add_subparsers(dest="augment_command", metavar="ACTION")
    preview = actions.add_parser(
        "preview", help="write a grid of originals and augmented versions (PNG)",
        formatter_class=fmt, epilog=EPILOG,
        description=textwrap.fill(
            "Apply a pipeline to a few training images and write a PNG grid: the originals "
            "in the first column, augmented versions beside each, every image labelled with "
            "its class (MixUp / CutMix: the mixed label weights).", 78))
    add_data_options(preview, required=True)
    preview.add_argument("--pipeline", required=True, metavar="NAME_OR_FILE",
                         help="preset name, TOML file or inline list of op tables")
    preview.add_argument("--out", required=True, metavar="PNG", help="output image file")
    preview.add_argument("--n", type=int, default=4, help="originals, one per row (default 4)")
    preview.add_argument("--k", type=int, default=6,
                         help="augmented versions per original (default 6)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    preview.add_argument("--root", metavar="DIR", help="dataset cache folder")
    add_quiet_option(preview)
    preview.set_defaults(func=run_preview)
    sample = actions.add_parser(
        "sample", help="write N augmented images (PNG) to a folder, one subfolder per class",
        formatter_class=fmt, epilog=EPILOG,
        description=textwrap.fill(
            "Draw N training images at random (with replacement, seeded), augment them "
            "with PIPELINE in batches on the device and write each as OUT/<class>/"
            "<number>_from_<source index>.png, as Augmentor's sample(n); --data folder:OUT "
            "reads them back. OUT must be new or empty.", 78))
    sample.add_argument("pipeline", metavar="PIPELINE",
                        help="preset name, TOML file or inline list of op tables")
    add_data_options(sample, required=True)
    sample.add_argument("-n", "--n", type=int, required=True, help="images to write")
    sample.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created; must be empty if it exists)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    sample.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default auto)")
    sample.add_argument("--batch-size", type=int, default=256,
                        help="images augmented at once (default 256)")
    sample.add_argument("--root", metavar="DIR", help="dataset cache folder")
    add_quiet_option(sample)
    sample.set_defaults(func=run_sample)
    augment.set_defaults(func=lambda args: (augment.print_help(), 2)[1])


def pipeline_spec(text: str):
    """A preset name or file path as it is; an inline ``[...]`` / ``{...}`` parsed as TOML."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        value = parse_value(stripped)
        if isinstance(value, str):
            from cnnlab.errors import ConfigError

            raise ConfigError(f"--pipeline {text!r} is not a valid TOML list of op tables")
        return value
    return stripped


def run_preview(args: argparse.Namespace) -> int:
    from cnnlab.data import load_dataset
    from cnnlab.data.augment.preview import preview_grid
    from cnnlab.errors import ConfigError

    if args.n < 1 or args.k < 1:
        raise ConfigError(f"--n and --k must be >= 1, got --n {args.n} --k {args.k}")
    spec = pipeline_spec(args.pipeline)
    ds = load_dataset(args.data, args.root, test_fraction=0.0, resize=args.resize or 0,
                      skip_bad=bool(args.skip_bad), progress=False if args.quiet else None)
    out = preview_grid(ds.train, spec, args.out, n=args.n, k=args.k, seed=args.seed,
                       title=None)
    print(f"wrote {out}: {args.n} {args.data} images x {args.k} augmentations "
          f"({args.pipeline})")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from cnnlab.data import load_dataset
    from cnnlab.data.augment.sample import check_out_dir, sample_images
    from cnnlab.errors import ConfigError
    from cnnlab.train.hardware import resolve_device

    if args.n < 1:  # the cheap checks first: nothing is loaded or written for a bad call
        raise ConfigError(f"-n must be >= 1, got {args.n}")
    check_out_dir(args.out)
    spec = pipeline_spec(args.pipeline)
    device = resolve_device(args.device)
    ds = load_dataset(args.data, args.root, test_fraction=0.0, resize=args.resize or 0,
                      skip_bad=bool(args.skip_bad), progress=False if args.quiet else None)
    paths = sample_images(ds.train, spec, args.n, args.out, seed=args.seed, device=device,
                          batch_size=args.batch_size, progress=False if args.quiet else None)
    folders = len({p.parent for p in paths})
    print(f"wrote {len(paths)} augmented {args.data} images to {args.out} ({folders} class "
          f"folders; {args.pipeline})")
    return 0
