"""``cnnlab export RUN_DIR OUT_DIR`` and ``cnnlab predict MODEL IMAGE...`` (MODEL: a model
folder, a shipped tag such as ``cifar10-resnet20``, or ``hf-hub:owner/repo``)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``predict`` commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    export = subparsers.add_parser(
        "export", help="turn a training run into a shareable model folder",
        formatter_class=fmt,
        description="Rebuild the model of a run folder written by `cnnlab train`, load the "
                    "weights of its best (or last) checkpoint and write OUT_DIR/"
                    "model.safetensors, OUT_DIR/config.json (model name and arguments, classes, "
                    "input size and normalization, dataset, metrics, versions) and "
                    "OUT_DIR/README.md (the model card): the Hugging Face Hub layout.",
        epilog="example:\n  cnnlab export runs/resnet20-digits exported/resnet20\n"
               "  cnnlab predict exported/resnet20 some.png")
    export.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `cnnlab train`")
    export.add_argument("out_dir", metavar="OUT_DIR", help="model folder to write")
    export.add_argument("--which", choices=("best", "last"), default="best",
                        help="checkpoint to export (default: best)")
    export.set_defaults(func=run_export)

    predict = subparsers.add_parser(
        "predict", help="classify image files with a shipped, exported or Hub model",
        formatter_class=fmt,
        description="Print the top-k classes with probabilities for each image. Images of any "
                    "size and mode are converted (grayscale/RGB, transparency on white) and "
                    "resized (bilinear) to what the model card says. A missing or unreadable "
                    "file gets one error line on stderr and the others are still "
                    "predicted (with --json, its entry has \"error\" instead of \"top\").",
        epilog="examples:\n  cnnlab predict cifar10-resnet20 some.png    shipped weights, "
               "offline\n  cnnlab predict exported/r20 a.jpg b.jpg --topk 3\n"
               "  cnnlab predict hf-hub:owner/repo a.png       needs huggingface_hub\n\n"
               "exit status: 0 every image predicted, 1 some images failed, 2 all failed "
               "or bad input (model, options)")
    predict.add_argument("model_dir", metavar="MODEL",
                         help="a shipped tag (" + _shipped_tags() + "), a folder written by "
                              "`cnnlab export` or cnnlab.save_pretrained, or hf-hub:owner/repo")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    predict.add_argument("--topk", type=int, default=5, metavar="K",
                         help="classes to show per image (default 5)")
    predict.add_argument("--json", action="store_true", help="print the results as JSON")
    predict.set_defaults(func=run_predict)


def _shipped_tags() -> str:
    """The shipped tags, from the package's folders (no torch import)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "models" / "pretrained"
    tags = sorted(d.name for d in folder.iterdir() if (d / "config.json").is_file()) \
        if folder.is_dir() else []
    return ", ".join(tags) or "none"


def run_export(args: argparse.Namespace) -> int:
    from cnnlab.experiments.export import export_run
    from cnnlab.models.hub import read_card

    out = export_run(args.run_dir, args.out_dir, which=args.which)
    card = read_card(out)
    print(f"exported {card['name']} ({card['params']:,} parameters, {card['num_classes']} "
          f"classes, input {card['input_size'][0]}x{card['input_size'][1]}x{card['channels']}) "
          f"from {args.which} checkpoint to {out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Predict every readable file; each missing or unreadable one gets its own error line
    on stderr. Exit 0: all predicted; 1: some failed; 2: all failed (or a bad model)."""
    from cnnlab.models.hub import load_pretrained, predict

    model = load_pretrained(args.model_dir)
    results = predict(model, args.images, topk=args.topk, errors="return")
    failed = 0
    for path, r in zip(args.images, results):
        if not isinstance(r, list):
            failed += 1
            print(f"cnnlab: error: {path}: {getattr(r, 'reason', r)}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"image": str(p), "top": [{"class": c, "prob": round(v, 6)}
                                                    for c, v in r]}
                          if isinstance(r, list) else
                          {"image": str(p), "error": str(getattr(r, "reason", r))}
                          for p, r in zip(args.images, results)], indent=2))
    else:
        width = max((len(c) for r in results if isinstance(r, list) for c, _ in r), default=0)
        for path, top in zip(args.images, results):
            if not isinstance(top, list):
                continue
            print(path)
            for rank, (cls, prob) in enumerate(top, 1):
                print(f"  {rank}. {cls.ljust(width)}  {prob:.4f}")
    if not failed:
        return 0
    return 2 if failed == len(results) else 1
