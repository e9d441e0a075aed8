"""The results store of a sweep: one SQLite file (``results.sqlite``) in the sweep folder.

Written by the sweep driver only, read by anyone (the report, a notebook, a second shell).
The database runs in WAL mode, so readers never block the writer and the writer never
blocks readers; every :meth:`ResultsStore.record_run` is one transaction, so a driver killed
at any instant leaves either the whole run (row and curves) or nothing.

Tables::

    sweeps (sweep PK, spec JSON, axes JSON, updated_at)
    runs   (id, sweep, cell, rep, ... one row per run ..., UNIQUE (sweep, cell, rep))
    curves (sweep, cell, rep, epoch, train_loss, ..., PRIMARY KEY (sweep, cell, rep, epoch))

Accuracies are fractions in [0, 1]. SQLite stores a float NaN as NULL, so a loss that went
NaN reads back as ``None``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.status import DONE, FINAL_STATUSES

__all__ = [
    "CURVE_COLUMNS",
    "RUN_COLUMNS",
    "STORE_FILENAME",
    "ResultsStore",
    "StoreError",
]

STORE_FILENAME = "results.sqlite"
SCHEMA_VERSION = 2  # 2: curves gained step, test_loss, test_acc (added to older stores)

# name -> SQL type; the order is the column order of the runs table after its key.
RUN_COLUMNS: dict[str, str] = {
    "cell_params": "TEXT",  # JSON {"model.blocks": 3, ...}
    "seed": "INTEGER",
    "status": "TEXT",
    "error": "TEXT",
    "final_train_acc": "REAL",
    "final_train_loss": "REAL",
    "final_val_acc": "REAL",
    "final_val_loss": "REAL",
    "test_acc": "REAL",
    "test_loss": "REAL",
    "best_val_acc": "REAL",
    "best_epoch": "INTEGER",
    "params": "INTEGER",
    "flops": "INTEGER",
    "wall_time": "REAL",  # s, whole run
    "images_per_s": "REAL",  # training throughput
    "run_dir": "TEXT",
    "num_classes": "INTEGER",
    "finished_at": "TEXT",  # ISO 8601
    "extra": "TEXT",  # JSON of any other keys the driver passed
}

CURVE_COLUMNS: dict[str, str] = {
    "epoch": "INTEGER",
    "train_loss": "REAL",
    "train_acc": "REAL",
    "val_loss": "REAL",
    "val_acc": "REAL",
    "lr": "REAL",
    "epoch_time": "REAL",  # s
    "step": "INTEGER",  # optimizer steps at the epoch's end
    "test_loss": "REAL",  # only with train.test_curve
    "test_acc": "REAL",
}

_KEY = ("sweep", "cell", "rep")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sweeps (
    sweep TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    axes TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    sweep TEXT NOT NULL,
    cell TEXT NOT NULL,
    rep INTEGER NOT NULL,
    {", ".join(f"{k} {t}" for k, t in RUN_COLUMNS.items())},
    UNIQUE (sweep, cell, rep)
);
CREATE TABLE IF NOT EXISTS curves (
    sweep TEXT NOT NULL,
    cell TEXT NOT NULL,
    rep INTEGER NOT NULL,
    {", ".join(f"{k} {t}" for k, t in CURVE_COLUMNS.items())},
    PRIMARY KEY (sweep, cell, rep, epoch)
);
"""


class StoreError(CnnlabError):
    """A results store that cannot be opened or a row that cannot be recorded."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """A value SQLite can bind: numpy / torch scalars become Python numbers."""
    if value is None or isinstance(value, str | bytes | int | float):
        return value
    if hasattr(value, "item"):  # numpy scalar, 0-d torch tensor
        return value.item()
    return value


class ResultsStore:
    """One sweep folder's results: runs, their per-epoch curves and the sweeps' specs.

    >>> store = ResultsStore(sweep_dir / "results.sqlite")
    >>> store.record_run(row, curves)          # one transaction; same key again replaces it
    >>> done = store.finished("seed-depth")    # {(cell, rep), ...} to skip on resume

    ``readonly=True`` opens an existing file without creating or changing anything (what the
    report uses). The store is also a context manager that closes itself.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 30.0):
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}")
        if not readonly and not self.path.parent.is_dir():
            raise StoreError(f"cannot create results store {self.path}: no folder "
                             f"{self.path.parent}")
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=timeout,
                                             isolation_level=None)
            else:
                self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")  # ms
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                # FULL: a committed run survives a power cut too, not only a killed driver
                self._conn.execute("PRAGMA synchronous = FULL")
                self._create_schema()
            else:
                self._check_schema()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open results store {self.path}: {e}") from None

    # -- setup -----------------------------------------------------------------------------

    def _create_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"results store {self.path} has schema version {version}; this "
                             f"cnnlab reads up to {SCHEMA_VERSION}: upgrade cnnlab")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            for name in set(CURVE_COLUMNS) - self._curve_columns():  # an older store
                self._conn.execute(f"ALTER TABLE curves ADD COLUMN {name} {CURVE_COLUMNS[name]}")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _check_schema(self) -> None:
        names = {r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = {"sweeps", "runs", "curves"} - names
        if missing:
            raise StoreError(f"{self.path} is not a cnnlab results store "
                             f"(no table {', '.join(sorted(missing))})")

    def _curve_columns(self) -> set[str]:
        return {r[1] for r in self._conn.execute("PRAGMA table_info(curves)")}

    def _curve_select(self) -> str:
        """The curve columns, as NULL where a read-only older store lacks them."""
        have = self._curve_columns()
        return ", ".join(c if c in have else f"NULL AS {c}" for c in CURVE_COLUMNS)

    @property
    def journal_mode(self) -> str:
        """The SQLite journal mode in force ("wal" for a store this class created)."""
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # -- writing ---------------------------------------------------------------------------

    def _write(self, statements: Iterable[tuple[str, Any]]) -> None:
        """Run ``(sql, params)`` pairs as one transaction (``executemany`` for list params)."""
        if self.readonly:
            raise StoreError(f"results store {self.path} is open read-only")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
            try:
                for sql, params in statements:
                    if isinstance(params, list):
                        conn.executemany(sql, params)
                    else:
                        conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:  # locked past the timeout, disk full, read-only
            raise StoreError(f"cannot write results store {self.path}: {e}") from None

    def set_sweep(self, sweep: str, spec: dict, axes: list[str]) -> None:
        """Record (or replace) a sweep's spec (JSON-serialisable) and its axis names in order."""
        if not isinstance(sweep, str) or not sweep:
            raise StoreError(f"sweep name must be a non-empty string, got {sweep!r}")
        try:
            spec_json = json.dumps(spec, sort_keys=True, default=str)
        except (TypeError, ValueError) as e:
            raise StoreError(f"sweep {sweep!r}: spec is not JSON-serialisable: {e}") from None
        self._write([(
            "INSERT INTO sweeps (sweep, spec, axes, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sweep) DO UPDATE SET spec = excluded.spec, axes = excluded.axes, "
            "updated_at = excluded.updated_at",
            (sweep, spec_json, json.dumps([str(a) for a in axes]), _now()),
        )])

    def record_run(self, row: dict, curves: list[dict]) -> None:
        """Insert or replace one run (key: sweep, cell, rep) and its curves, atomically.

        ``row`` holds the keys of :data:`RUN_COLUMNS` (missing numbers may be absent or None),
        its status one of :data:`cnnlab.status.FINAL_STATUSES`; keys the store has no column
        for are kept in a JSON ``extra`` column and come back from :meth:`runs`. ``curves``
        holds one dict per epoch with :data:`CURVE_COLUMNS`.
        """
        missing = [k for k in _KEY if row.get(k) is None]
        if missing:
            raise StoreError(f"run row is missing {', '.join(missing)}")
        sweep, cell, rep = str(row["sweep"]), str(row["cell"]), int(row["rep"])
        status = row.get("status")
        if status not in FINAL_STATUSES:
            raise StoreError(f"run {sweep}/{cell}/rep {rep}: status {status!r} is not one of "
                             f"{', '.join(FINAL_STATUSES)}")
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in row.items():
            if k in _KEY:
                continue
            if k in RUN_COLUMNS and k != "extra":
                values[k] = _plain(v)
            else:
                extra[k] = _plain(v)
        if isinstance(row.get("extra"), dict):
            extra = {**row["extra"], **{k: v for k, v in extra.items() if k != "extra"}}
        values["cell_params"] = json.dumps(row.get("cell_params") or {}, default=str)
        values["extra"] = json.dumps(extra, default=str) if extra else None
        if values.get("finished_at") is None:
            values["finished_at"] = _now()

        cols = list(RUN_COLUMNS)
        run_sql = (
            f"INSERT INTO runs (sweep, cell, rep, {', '.join(cols)}) "
            f"VALUES ({', '.join('?' * (len(cols) + 3))}) "
            f"ON CONFLICT (sweep, cell, rep) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in cols)
        )
        run_params = (sweep, cell, rep, *(values.get(c) for c in cols))

        curve_cols = list(CURVE_COLUMNS)
        curve_rows = []
        for i, c in enumerate(curves):
            unknown = set(c) - set(curve_cols)
            if unknown:
                raise StoreError(f"run {sweep}/{cell}/rep {rep}: curve row {i} has unknown "
                                 f"key(s) {', '.join(sorted(unknown))}; allowed: "
                                 f"{', '.join(curve_cols)}")
            if c.get("epoch") is None:
                raise StoreError(f"run {sweep}/{cell}/rep {rep}: curve row {i} has no epoch")
            curve_rows.append((sweep, cell, rep, *(_plain(c.get(k)) for k in curve_cols)))
        try:
            self._write([
                (run_sql, run_params),
                ("DELETE FROM curves WHERE sweep = ? AND cell = ? AND rep = ?",
                 (sweep, cell, rep)),
                (f"INSERT INTO curves (sweep, cell, rep, {', '.join(curve_cols)}) "
                 f"VALUES ({', '.join('?' * (len(curve_cols) + 3))})", curve_rows),
            ])
        except sqlite3.IntegrityError as e:
            raise StoreError(f"run {sweep}/{cell}/rep {rep}: bad curves: {e}") from None

    def delete_sweep(self, sweep: str) -> None:
        """Forget a sweep entirely: its runs, curves and spec (``cnnlab sweep --force``)."""
        self._write([
            ("DELETE FROM curves WHERE sweep = ?", (sweep,)),
            ("DELETE FROM runs WHERE sweep = ?", (sweep,)),
            ("DELETE FROM sweeps WHERE sweep = ?", (sweep,)),
        ])

    # -- reading ---------------------------------------------------------------------------

    def sweeps(self) -> list[str]:
        """Names of the sweeps with a spec or at least one run, sorted."""
        rows = self._conn.execute(
            "SELECT sweep FROM sweeps UNION SELECT DISTINCT sweep FROM runs ORDER BY 1")
        return [r[0] for r in rows]

    def sweep_meta(self, sweep: str) -> dict | None:
        """``{"spec": dict, "axes": [dotted keys]}`` for a sweep, or None if never set."""
        r = self._conn.execute("SELECT spec, axes FROM sweeps WHERE sweep = ?",
                               (sweep,)).fetchone()
        if r is None:
            return None
        return {"spec": json.loads(r["spec"]), "axes": json.loads(r["axes"])}

    def finished(self, sweep: str) -> set[tuple[str, int]]:
        """The ``(cell, rep)`` pairs of a sweep that are done: a rerun skips them. Runs with
        a retried status (``failed``, see :data:`cnnlab.status.RETRIED`) are not listed."""
        marks = ", ".join("?" * len(DONE))
        rows = self._conn.execute(
            f"SELECT cell, rep FROM runs WHERE sweep = ? AND status IN ({marks})",
            (sweep, *DONE))
        return {(r["cell"], int(r["rep"])) for r in rows}

    @staticmethod
    def _run_dict(r: sqlite3.Row) -> dict:
        d = dict(r)
        d.pop("id", None)
        d["cell_params"] = json.loads(d["cell_params"]) if d["cell_params"] else {}
        extra = d.pop("extra", None)
        if extra:
            for k, v in json.loads(extra).items():
                d.setdefault(k, v)
        return d

    def runs(self, sweep: str | None = None) -> list[dict]:
        """Run rows as dicts (``cell_params`` decoded), ordered by sweep, then insertion."""
        if sweep is None:
            rows = self._conn.execute("SELECT * FROM runs ORDER BY sweep, id")
        else:
            rows = self._conn.execute("SELECT * FROM runs WHERE sweep = ? ORDER BY id", (sweep,))
        return [self._run_dict(r) for r in rows]

    def curves(self, sweep: str, cell: str, rep: int) -> list[dict]:
        """One run's per-epoch rows, by epoch."""
        rows = self._conn.execute(
            f"SELECT {self._curve_select()} FROM curves "
            "WHERE sweep = ? AND cell = ? AND rep = ? ORDER BY epoch", (sweep, cell, int(rep)))
        return [dict(r) for r in rows]

    def all_curves(self, sweep: str) -> dict[tuple[str, int], list[dict]]:
        """Every run's curves in a sweep in one query: ``{(cell, rep): [rows by epoch]}``."""
        out: dict[tuple[str, int], list[dict]] = {}
        rows = self._conn.execute(
            f"SELECT cell, rep, {self._curve_select()} FROM curves WHERE sweep = ? "
            "ORDER BY cell, rep, epoch", (sweep,))
        for r in rows:
            d = dict(r)
            key = (d.pop("cell"), int(d.pop("rep")))
            out.setdefault(key, []).append(d)
        return out

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r}{', readonly=True' if self.readonly else ''})"
