"""``cnnlab eval RUN_DIR``: top-1 / top-5 and per-class accuracy and a confusion matrix of a
trained run, stored beside it (RUN_DIR/eval/eval.json and confusion.png)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnlab.cli.options import add_data_options, option_overrides
from cnnlab.utils.table import text_table

EPILOG = """\
examples:
  cnnlab eval runs/vgg-digits                       its test split, best checkpoint
  cnnlab eval runs/vgg-digits --which last
  cnnlab eval runs/vgg-digits --data folder:new --split all --resize 32"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command."""
    p = subparsers.add_parser(
        "eval", help="accuracy, per-class accuracy and confusion matrix of a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Rebuild the model of a run folder written by `cnnlab train` from its "
                    "best (or last) checkpoint and evaluate it on the run's test split (the "
                    "same carving) or on other data: top-1 and top-5 accuracy, accuracy per "
                    "class and a confusion matrix. Writes OUT/eval.json and OUT/confusion.png "
                    "(OUT: RUN_DIR/eval).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `cnnlab train`")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="checkpoint to evaluate (default: best)")
    add_data_options(p)
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test",
                   help="split of the data to evaluate on (default: test)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR/eval)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.experiments.evaluate import evaluate_run, write_eval
    from cnnlab.report.confusion import plot_confusion

    overrides = option_overrides(args, skip=("data", "device"))
    result = evaluate_run(args.run_dir, which=args.which, data=args.data, split=args.split,
                          overrides=overrides, device=args.device)
    out = Path(args.out) if args.out else Path(args.run_dir) / "eval"
    result["files"] = {"eval": str(out / "eval.json"), "confusion": str(out / "confusion.png")}
    write_eval(result, out)
    plot_confusion(result["confusion"], result["classes"], out / "confusion.png",
                   title=f"{Path(args.run_dir).name} on {result['data']} ({result['split']}): "
                         f"top-1 {100 * result['top1']:.1f}%" if result["n"] else None)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['data']} {result['split']} split, {result['n']} images, "
          f"{args.which} checkpoint: top-1 {_pct(result['top1'])}, "
          f"top-{result['topk']} {_pct(result['top5'])}")
    rows = [[name, str(result["counts"][i]), _pct(result["per_class"][name])]
            for i, name in enumerate(result["classes"])]
    print(text_table(["CLASS", "IMAGES", "ACC"], rows, right={1, 2}))
    print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
