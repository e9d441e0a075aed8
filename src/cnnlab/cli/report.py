"""``cnnlab report SWEEP_DIR``: regenerate a sweep's tables and plots from its results store."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    from cnnlab.report.tables import METRIC_NAMES  # no matplotlib import here

    p = subparsers.add_parser(
        "report",
        help="regenerate a sweep's tables and plots from its results store",
        description="Read SWEEP_DIR/results.sqlite and write SWEEP_DIR/report/: table.md, "
                    "table.csv, a heatmap (or a line plot for a one-axis sweep), accuracy vs "
                    "parameters, training curves and report.html. Prints the table and the "
                    "paths.",
    )
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep folder (cnnlab sweep --out)")
    p.add_argument("--metric", default="test_acc", choices=METRIC_NAMES,
                   help="what the table and plots summarise (default: %(default)s)")
    p.add_argument("--sweep", default=None,
                   help="sweep name, when the store holds more than one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print the table and the file paths."""
    from cnnlab.report import generate_report

    report = generate_report(args.sweep_dir, sweep=args.sweep, metric=args.metric)
    for note in report.notes:
        print(f"note: {note}")
    print(f"sweep {report.sweep}: {len(report.cells)} cells, "
          f"{sum(c.n_runs for c in report.cells)} runs")
    print(report.table)
    if report.verdict:
        print(f"\nverdict: {report.verdict}")
    print()
    for path in report.paths.values():
        print(path)
    return 0
