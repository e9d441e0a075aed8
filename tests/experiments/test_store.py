"""The results store: uniqueness, resume bookkeeping, atomic writes, WAL readers."""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest

from cnnlab.experiments.store import CURVE_COLUMNS, ResultsStore, StoreError
from cnnlab.status import FAILED, FINAL_STATUSES, RETRIED, is_stuck


def _row(cell: str = "model.blocks=1", rep: int = 0, status: str = "ok", acc: float = 0.5,
         sweep: str = "s", **kw) -> dict:
    row = {
        "sweep": sweep, "cell": cell, "cell_params": {"model.blocks": 1}, "rep": rep,
        "seed": 100 + rep, "status": status, "error": None,
        "final_train_acc": acc, "final_train_loss": 1.0, "final_val_acc": acc,
        "final_val_loss": 1.1, "test_acc": acc, "test_loss": 1.2, "best_val_acc": acc,
        "best_epoch": 2, "params": 1000, "flops": 20000, "wall_time": 3.5,
        "images_per_s": 900.0, "run_dir": f"runs/{cell}/{rep}", "num_classes": 10,
        "finished_at": "2024-01-01T00:00:00+00:00",
    }
    row.update(kw)
    return row


def _curves(n: int, acc: float = 0.5) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 - e * 0.1, "train_acc": acc, "val_loss": 2.1,
             "val_acc": acc, "lr": 1e-3, "epoch_time": 1.0} for e in range(1, n + 1)]


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(tmp_path / "results.sqlite")
    yield s
    s.close()


def test_same_key_twice_keeps_one_row_latest_wins_and_replaces_curves(store):
    store.record_run(_row(acc=0.3), _curves(3, 0.3))
    store.record_run(_row(acc=0.7, seed=7), _curves(2, 0.7))
    runs = store.runs("s")
    assert len(runs) == 1
    assert runs[0]["test_acc"] == 0.7 and runs[0]["seed"] == 7
    assert runs[0]["cell_params"] == {"model.blocks": 1}
    curves = store.curves("s", "model.blocks=1", 0)
    assert [c["epoch"] for c in curves] == [1, 2]
    assert all(c["val_acc"] == 0.7 for c in curves)
    # a different rep or sweep is a different row
    store.record_run(_row(rep=1), _curves(1))
    store.record_run(_row(sweep="other"), _curves(1))
    assert len(store.runs("s")) == 2 and len(store.runs()) == 3
    assert store.sweeps() == ["other", "s"]


def test_finished_lists_final_statuses_of_one_sweep(store):
    for rep, status in enumerate(FINAL_STATUSES):
        store.record_run(_row(rep=rep, status=status), [])
    store.record_run(_row(cell="model.blocks=2", sweep="other"), [])
    # finished = what a rerun skips: not the retried status (failed)
    assert store.finished("s") == {("model.blocks=1", r) for r, status
                                   in enumerate(FINAL_STATUSES) if status not in RETRIED}
    assert store.finished("nope") == set()
    with pytest.raises(StoreError, match="status 'running'"):
        store.record_run(_row(rep=9, status="running"), [])
    with pytest.raises(StoreError, match="missing rep"):
        store.record_run({"sweep": "s", "cell": "c", "status": "ok"}, [])


def test_finished_agrees_with_the_sweeps_retry_rule(store):
    """What finished() lists is what a rerun of the sweep skips: a failed run is retried
    (and listed once it succeeds), a diverged one is kept."""
    store.record_run(_row(rep=0, status=FAILED), [])
    store.record_run(_row(rep=1, status="diverged"), [])
    assert store.finished("s") == {("model.blocks=1", 1)}
    store.record_run(_row(rep=0, status="ok"), [])  # the retry, same key
    assert store.finished("s") == {("model.blocks=1", 0), ("model.blocks=1", 1)}


def test_wal_mode_is_on_and_persistent(store, tmp_path):
    assert store.journal_mode == "wal"
    raw = sqlite3.connect(tmp_path / "results.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_record_run_is_one_transaction(store):
    store.record_run(_row(acc=0.3), _curves(3, 0.3))
    bad = _curves(2, 0.9) + [{"epoch": 1, "val_acc": 0.9}]  # duplicate epoch -> rollback
    with pytest.raises(StoreError, match="bad curves"):
        store.record_run(_row(acc=0.9), bad)
    assert store.runs("s")[0]["test_acc"] == 0.3  # the old row and curves are untouched
    assert len(store.curves("s", "model.blocks=1", 0)) == 3
    with pytest.raises(StoreError, match="unknown key"):
        store.record_run(_row(acc=0.9), [{"epoch": 1, "val_accuracy": 0.9}])


def test_reader_does_not_block_writer_and_sees_only_commits(store, tmp_path):
    store.record_run(_row(rep=0), _curves(2))
    reader = ResultsStore(tmp_path / "results.sqlite", readonly=True, timeout=0.2)
    # a reader inside a read transaction: in WAL mode the writer still commits
    reader._conn.execute("BEGIN")
    assert len(reader.runs("s")) == 1
    store.record_run(_row(rep=1), _curves(2))
    assert len(reader.runs("s")) == 1  # its snapshot
    reader._conn.execute("COMMIT")
    assert len(reader.runs("s")) == 2
    # a writer inside an open write transaction: the reader reads the last commit
    store._conn.execute("BEGIN IMMEDIATE")
    store._conn.execute("DELETE FROM runs")
    assert len(reader.runs("s")) == 2
    store._conn.execute("ROLLBACK")
    with pytest.raises(StoreError, match="read-only"):
        reader.record_run(_row(rep=5), [])
    reader.close()


def test_concurrent_reader_never_sees_half_a_run(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    n, errors = 40, []

    def write() -> None:
        try:
            with ResultsStore(path) as w:
                for rep in range(n):
                    w.record_run(_row(rep=rep), _curves(3))
        except Exception as e:  # surfaced by the assert below
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    seen, reads = 0, 0
    with ResultsStore(path, readonly=True) as r:
        while True:
            done = not t.is_alive()  # checked before the read, so the last read sees all
            r._conn.execute("BEGIN")  # one snapshot for runs and curves
            runs = r.runs("s")
            curves = r.all_curves("s")
            r._conn.execute("COMMIT")
            reads += 1
            assert len(runs) >= seen
            seen = len(runs)
            assert all(len(curves[("model.blocks=1", x["rep"])]) == 3 for x in runs)
            if done:
                break
    t.join()
    assert reads > 1
    assert not errors and seen == n


def test_sweep_meta_and_delete_sweep(store):
    assert store.sweep_meta("s") is None
    spec = {"base": {"train": {"epochs": 3}}, "grid": {"model.blocks": [1, 2]}}
    store.set_sweep("s", spec, ["model.blocks", "model.layers"])
    store.set_sweep("s", spec, ["model.blocks"])  # replaces
    assert store.sweep_meta("s") == {"spec": spec, "axes": ["model.blocks"]}
    store.record_run(_row(), _curves(2))
    store.record_run(_row(sweep="keep"), _curves(2))
    store.delete_sweep("s")
    assert store.runs("s") == [] and store.curves("s", "model.blocks=1", 0) == []
    assert store.sweep_meta("s") is None and store.finished("s") == set()
    assert len(store.runs("keep")) == 1 and len(store.all_curves("keep")) == 1


def test_values_round_trip(store, tmp_path):
    row = _row(status="diverged", test_acc=np.float32(0.25), params=np.int64(12345),
               final_train_loss=float("nan"), final_val_acc=None, error="loss is NaN",
               device="cpu", threads=1)
    store.record_run(row, [{"epoch": 1, "train_loss": float("nan")}])
    store.close()
    with ResultsStore(tmp_path / "results.sqlite", readonly=True) as again:
        (got,) = again.runs("s")
        assert got["test_acc"] == pytest.approx(0.25) and got["params"] == 12345
        assert got["final_train_loss"] is None and got["final_val_acc"] is None
        assert got["device"] == "cpu" and got["threads"] == 1  # extra keys kept
        assert got["error"] == "loss is NaN" and got["status"] == "diverged"
        assert again.curves("s", "model.blocks=1", 0)[0]["train_loss"] is None


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        ResultsStore(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(StoreError, match="no folder"):
        ResultsStore(tmp_path / "nope" / "results.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(StoreError, match="cannot open"):
        ResultsStore(tmp_path / "junk.sqlite")


@pytest.mark.parametrize(("acc", "classes", "margin", "stuck"), [
    (0.10, 10, 0.02, True), (0.119, 10, 0.02, True), (0.125, 10, 0.02, False),
    (0.05, 10, 0.02, True), (0.60, 10, 0.02, False), (0.51, 2, 0.02, True),
    (0.53, 2, 0.02, False), (0.14, 10, 0.05, True), (0.011, 100, 0.0, False),
])
def test_is_stuck(acc, classes, margin, stuck):
    assert is_stuck(acc, classes, margin) is stuck


def test_is_stuck_rejects_bad_input():
    assert is_stuck(math.nan, 10) is False
    with pytest.raises(ValueError, match="num_classes"):
        is_stuck(0.1, 1)
    with pytest.raises(ValueError, match="margin"):
        is_stuck(0.1, 10, margin=-0.1)


def test_driver_killed_after_commit_loses_nothing(tmp_path):
    """A driver killed without closing (SIGKILL) leaves its commits in the WAL file; readers
    and the next driver see them, and redoing a run still leaves one row."""
    import os

    path = tmp_path / "results.sqlite"
    pid = os.fork()
    if pid == 0:  # child: the driver, which dies without closing anything
        try:
            s = ResultsStore(path)
            s.record_run(_row(rep=0), _curves(3))
            s.record_run(_row(rep=1), _curves(3))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert (tmp_path / "results.sqlite-wal").exists()
    with ResultsStore(path, readonly=True) as r:
        assert r.finished("s") == {("model.blocks=1", 0), ("model.blocks=1", 1)}
    with ResultsStore(path) as again:
        again.record_run(_row(rep=1, acc=0.9), _curves(2))
        assert len(again.runs("s")) == 2 and len(again.all_curves("s")) == 2


def test_older_store_gains_the_new_curve_columns(tmp_path):
    """A schema-1 store (curves without step / test_*) reads with NULLs, read-only, and is
    upgraded in place when opened for writing; its rows are kept."""
    import sqlite3

    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.record_run({"sweep": "s", "cell": "a", "rep": 0, "status": "ok"},
                         [{"epoch": 1, "train_loss": 1.0}])
    conn = sqlite3.connect(path)
    for col in ("step", "test_loss", "test_acc"):
        conn.execute(f"ALTER TABLE curves DROP COLUMN {col}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with ResultsStore(path, readonly=True) as store:
        assert store.curves("s", "a", 0) == [{**dict.fromkeys(CURVE_COLUMNS), "epoch": 1,
                                              "train_loss": 1.0}]
    with ResultsStore(path) as store:
        store.record_run({"sweep": "s", "cell": "b", "rep": 0, "status": "ok"},
                         [{"epoch": 1, "step": 7, "test_acc": 0.5}])
        assert store.curves("s", "b", 0)[0]["step"] == 7
        assert store.curves("s", "a", 0)[0]["train_loss"] == 1.0
