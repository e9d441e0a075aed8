"""Reports from a synthetic results store: tables, figures, HTML and ``cnnlab report``."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.experiments.store import ResultsStore
from cnnlab.report import ReportError, format_table, summarize, write_report
from cnnlab.report.tables import Stat, human_count, short_axis_names

SWEEP = "seed-depth"
AXES = ["model.blocks", "model.layers"]
# (blocks, layers) -> how many of the 3 reps are stuck at chance; (5, 3) rep 2 failed
STUCK = {(4, 3): 3, (5, 2): 2, (5, 3): 2, (3, 3): 1}
FAILED = {(5, 3, 2)}


def _vgg_counts(blocks: int, layers: int, width: int = 32, size: int = 32) -> tuple[int, int]:
    """Parameters and multiply-adds of the seed VGG-like net on 32x32x3 inputs."""
    params = flops = 0
    c_in, hw = 3, size
    for b in range(blocks):
        c_out = width * 2**b
        for _ in range(layers):
            params += 9 * c_in * c_out + c_out
            flops += 9 * c_in * c_out * hw * hw
            c_in = c_out
        hw = max(1, hw // 2)
    return params + c_in * 10 + 10, flops + c_in * 10


def make_depth_store(sweep_dir: Path, blocks=range(1, 6), layers=range(1, 4), reps: int = 3,
                     stuck=None, failed=None, seed: int = 0, one_axis: bool = False) -> Path:
    """A realistic store of the depth experiment: accuracy rises with blocks until 4,
    layers help a little, deep cells get stuck at chance (10%), one run crashed."""
    stuck = STUCK if stuck is None else stuck
    failed = FAILED if failed is None else failed
    rng = random.Random(seed)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(sweep_dir / "results.sqlite") as store:
        axes = ["model.blocks"] if one_axis else AXES
        store.set_sweep(SWEEP, {"grid": {a: [] for a in axes}, "reps": reps}, axes)
        for b in blocks:
            for l in layers:
                params, flops = _vgg_counts(b, l)
                cp = {"model.blocks": b} if one_axis else {"model.blocks": b, "model.layers": l}
                cell = ",".join(f"{k}={v}" for k, v in cp.items())
                for rep in range(reps):
                    is_stuck_run = rep < stuck.get((b, l), 0)
                    if (b, l, rep) in failed:
                        row = {"status": "failed", "error": "RuntimeError: out of memory"}
                        curves: list[dict] = []
                    else:
                        target = (0.10 + rng.uniform(-0.005, 0.005) if is_stuck_run else
                                  0.30 + 0.09 * min(b, 4) - 0.05 * (b == 5) + 0.02 * l
                                  + rng.gauss(0, 0.015))
                        curves = []
                        for e in range(1, 4):
                            f = e / 3
                            acc = target if is_stuck_run else 0.1 + (target - 0.1) * f
                            curves.append({
                                "epoch": e, "train_acc": acc + 0.02 * f, "val_acc": acc,
                                "train_loss": 2.303 - (2.303 - 1.0) * (acc - 0.1) / 0.6,
                                "val_loss": 2.31 - (2.31 - 1.1) * (acc - 0.1) / 0.6,
                                "lr": 1e-3, "epoch_time": 2.0 * b * l})
                        row = {
                            "status": "stuck" if is_stuck_run else "ok", "error": None,
                            "final_train_acc": curves[-1]["train_acc"],
                            "final_train_loss": curves[-1]["train_loss"],
                            "final_val_acc": target, "final_val_loss": curves[-1]["val_loss"],
                            "test_acc": target + rng.gauss(0, 0.005),
                            "test_loss": curves[-1]["val_loss"], "best_val_acc": target,
                            "best_epoch": 3, "wall_time": 6.0 * b * l + rng.uniform(0, 1),
                            "images_per_s": 5000.0 / (b * l),
                        }
                    if one_axis and l > 1:
                        continue
                    row.update(sweep=SWEEP, cell=cell, cell_params=cp, rep=rep,
                               seed=1000 * b + 10 * l + rep, params=params, flops=flops,
                               run_dir=f"runs/{cell}/rep{rep}", num_classes=10)
                    store.record_run(row, curves)
    return sweep_dir


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory) -> Path:
    return make_depth_store(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def depth_report(depth_dir) -> dict[str, Path]:
    return write_report(depth_dir)


def _png_ok(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_report_files_and_table_rows(depth_dir, depth_report):
    assert set(depth_report) == {"table_md", "table_csv", "heatmap", "acc_vs_params",
                                 "curves", "loss_curves", "html"}
    for p in depth_report.values():
        assert p.parent == depth_dir / "report" and p.is_file()
    for k in ("heatmap", "acc_vs_params", "curves", "loss_curves"):
        assert _png_ok(depth_report[k]), k
    assert not list((depth_dir / "report").glob(".*"))  # no temporary files left

    with depth_report["table_csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15
    assert [(int(r["model.blocks"]), int(r["model.layers"])) for r in rows] == [
        (b, l) for b in range(1, 6) for l in range(1, 4)]
    by = {(int(r["model.blocks"]), int(r["model.layers"])): r for r in rows}
    assert by[(4, 3)]["n_stuck"] == "3" and by[(5, 2)]["n_stuck"] == "2"
    assert by[(5, 3)]["n_failed"] == "1" and by[(5, 3)]["test_acc_n"] == "2"
    assert by[(1, 1)]["n_ok"] == "3" and by[(1, 1)]["runs"] == "3"
    assert float(by[(4, 3)]["test_acc_mean"]) < 0.12 < float(by[(4, 2)]["test_acc_mean"])
    assert int(by[(2, 1)]["params"]) == _vgg_counts(2, 1)[0]

    md = depth_report["table_md"].read_text()
    table_lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table_lines) == 2 + 15
    assert "| blocks | layers | test acc (%)" in table_lines[0]
    assert "±" in table_lines[2] and "Failed or diverged runs" in md
    assert "out of memory" in md

    page = depth_report["html"].read_text()
    for name in ("heatmap.png", "acc_vs_params.png", "curves.png", "loss_curves.png"):
        assert f'data-file="{name}"' in page  # embedded: one self-contained file
    assert page.count('src="data:image/png;base64,') == 4
    assert page.count("<tr") == 16 and page.count('class="stuck"') == 4


def test_format_table_from_runs(depth_dir):
    with ResultsStore(depth_dir / "results.sqlite", readonly=True) as s:
        runs = s.runs(SWEEP)
    text = format_table(runs, AXES)
    lines = text.splitlines()
    assert len(lines) == 17 and len({len(ln) for ln in lines}) == 1  # aligned columns
    assert lines[1].startswith("|--------|") and lines[1].endswith(":|")
    row_43 = next(ln for ln in lines if ln.startswith("| 4      | 3 "))
    cols = [c.strip() for c in row_43.strip("|").split("|")]
    assert cols[-4:] == ["3", "3", "0", "0"]  # runs, stuck, diverged, failed
    # val acc as the metric puts test acc second
    assert "val acc (%) | test acc (%)" in format_table(summarize(runs, AXES), AXES, "val_acc")


def test_one_axis_sweep_gives_a_line_plot(tmp_path):
    d = make_depth_store(tmp_path / "one", blocks=range(1, 4), layers=[1], one_axis=True,
                         stuck={(3, 1): 1}, failed=set())
    paths = write_report(d)
    assert "line" in paths and "heatmap" not in paths
    assert paths["line"].name == "line.png" and _png_ok(paths["line"])
    rows = list(csv.DictReader(paths["table_csv"].open()))
    assert [int(r["model.blocks"]) for r in rows] == [1, 2, 3]


def test_three_axes_give_panels(tmp_path):
    d = tmp_path / "three"
    d.mkdir()
    with ResultsStore(d / "results.sqlite") as s:
        axes = ["model.blocks", "model.layers", "optim.lr"]
        s.set_sweep("x", {}, axes)
        for b in (1, 2):
            for l in (1, 2):
                for lr in (1e-3, 1e-2):
                    cp = {"model.blocks": b, "model.layers": l, "optim.lr": lr}
                    s.record_run({"sweep": "x", "cell": repr(cp), "cell_params": cp, "rep": 0,
                                  "status": "ok", "test_acc": 0.2 * b + 0.1 * l,
                                  "final_val_acc": 0.5, "params": 100 * b * l,
                                  "num_classes": 10}, [{"epoch": 1, "val_acc": 0.4}])
    paths = write_report(d)
    assert _png_ok(paths["heatmap"])
    assert len(list(csv.DictReader(paths["table_csv"].open()))) == 8


def test_report_errors(tmp_path, depth_dir):
    with pytest.raises(ReportError, match="no sweep folder"):
        write_report(tmp_path / "missing")
    with pytest.raises(ReportError, match="no results store"):
        write_report(tmp_path)
    ResultsStore(tmp_path / "results.sqlite").close()
    with pytest.raises(ReportError, match="is empty"):
        write_report(tmp_path)
    with pytest.raises(ReportError, match="unknown metric 'acc'"):
        write_report(depth_dir, metric="acc")
    with pytest.raises(ReportError, match="no sweep 'other'"):
        write_report(depth_dir, sweep="other")


def test_cli_report(tmp_path, capsys):
    d = make_depth_store(tmp_path / "small", blocks=[1, 2], layers=[1, 2], reps=2, stuck={},
                         failed=set())
    assert main(["report", str(d), "--metric", "val_acc"]) == 0
    out = capsys.readouterr().out
    assert "4 cells, 8 runs" in out and "val acc (%)" in out
    assert str(d / "report" / "heatmap.png") in out
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab: error: no results store") and "\n" not in err


def test_no_test_split_falls_back_to_val_acc(tmp_path, capsys):
    with ResultsStore(tmp_path / "results.sqlite") as s:
        for b in (1, 2):
            s.record_run({"sweep": "v", "cell": f"b={b}", "cell_params": {"model.blocks": b},
                          "rep": 0, "status": "ok", "final_val_acc": 0.3 * b, "test_acc": None,
                          "params": 10 * b, "num_classes": 10}, [])
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "note: No run recorded test_acc" in out and "| val acc (%)" in out
    assert "60.0" in out
    with pytest.raises(ReportError, match="recorded test_loss"):
        write_report(tmp_path, metric="test_loss")


def test_small_helpers():
    assert human_count(1234567) == "1.23M" and human_count(512) == "512"
    assert human_count(None) == "—" and human_count(2.5e9) == "2.5G"
    assert short_axis_names(["model.lr", "optim.lr", "model.blocks"]) == {
        "model.lr": "model.lr", "optim.lr": "optim.lr", "model.blocks": "blocks"}
    s = Stat((0.5, 0.7))
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1414, abs=1e-3)
    assert Stat((0.5,)).n == 1


def test_all_failed_sweep_plots_say_no_results(tmp_path):
    d = make_depth_store(tmp_path / "f", blocks=[1, 2], layers=[1, 2], reps=1, stuck={},
                         failed={(b, l, 0) for b in (1, 2) for l in (1, 2)})
    paths = write_report(d)
    from PIL import Image

    for k in ("heatmap", "acc_vs_params", "curves", "loss_curves"):
        assert paths[k].is_file(), k
        with Image.open(paths[k]) as im:  # one small notice, not a grid of empty panels
            assert im.size[0] < 800 and im.size[1] < 400, k
    assert "out of memory" in paths["table_md"].read_text()


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


# counts what the browser shows, once every image has loaded (or failed), into the DOM
_PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    rows: document.querySelectorAll("tbody tr").length,
    images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install "
                    "chromium); .ci/run installs it")
def test_html_report_is_self_contained_in_a_browser(tmp_path, depth_report):
    """The page, copied alone into an empty folder (as a mail attachment would be), shows
    one table row per cell and every figure, in headless Chromium."""
    import json
    import re
    import subprocess

    page = depth_report["html"].read_text()
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from beside the page
    alone = tmp_path / "mailed" / "report.html"
    alone.parent.mkdir()
    alone.write_text(page.replace("</body>", _PROBE + "</body>"))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'prof'}",
           "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000",
           "--dump-dom", alone.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout)
    assert m, f"no probe in the dumped DOM (rc {out.returncode}): {out.stderr[-2000:]}"
    seen = json.loads(m.group(1).replace("&quot;", '"'))
    assert seen == {"rows": 15, "images": 4, "loaded": 4}
