"""The Ray backend on a real two-node Ray cluster on 127.0.0.1 (a head and a worker node, one
CPU each, started with ``ray start``): the same rows as the local executor, a worker killed
with SIGKILL mid-run retried, a killed driver rerun; and the refusals (no Ray, no cluster)."""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cnnlab.api import sweep
from cnnlab.errors import ConfigError
from cnnlab.experiments import spec_from_dict
from cnnlab.experiments.executor import run_sweep

SRC = str(Path(__file__).resolve().parents[2] / "src")
# 2 cells x 2 reps of a small VGG (batch norm: it learns the digits in an epoch or two); 3
# epochs, each ending with a checkpoint, make a run last long enough to be killed mid-run
SPEC = {
    "name": "ray-tiny",
    "reps": 2,
    "seed": 3,
    "base": {
        "data": {"spec": "digits", "batch_size": 32, "limit": 600, "val_fraction": 0.1,
                 "augment": "none"},
        "model": {"name": "vgg", "width": 8, "norm": "bn"},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 3, "device": "cpu"},
    },
    "grid": {"model.blocks": [1, 2]},
}
ROWS = ("cell", "rep", "seed", "status", "test_acc", "final_val_acc", "final_train_loss",
        "best_val_acc", "best_epoch", "params")


def _rows(folder: Path) -> list[tuple]:
    con = sqlite3.connect(folder / "results.sqlite")
    try:
        return con.execute(f"select {', '.join(ROWS)} from runs order by cell, rep").fetchall()
    finally:
        con.close()


def _spec_file(tmp_path: Path) -> Path:
    import tomli_w

    path = tmp_path / "ray-tiny.toml"
    path.write_bytes(tomli_w.dumps(SPEC).encode())
    return path


def test_sweep_file_backend_keys_and_bad_values():
    spec = spec_from_dict({**SPEC, "backend": "ray", "address": "auto", "gpus_per_run": 0.25})
    assert (spec.backend, spec.address, spec.gpus_per_run) == ("ray", "auto", 0.25)
    assert spec_from_dict(spec.to_dict()).backend == "ray"  # kept through resolve_spec
    with pytest.raises(ConfigError, match=r"backend must be one of local, ray.*did you mean"):
        spec_from_dict({**SPEC, "backend": "rya"})
    with pytest.raises(ConfigError, match="gpus_per_run must be a fraction"):
        spec_from_dict({**SPEC, "gpus_per_run": 1.5})
    with pytest.raises(ConfigError, match="are for the Ray backend"):
        run_sweep(spec_from_dict(SPEC), "unused", address="auto", check=False)


def test_run_resources_and_task_names():
    from cnnlab.experiments.executor import Task
    from cnnlab.experiments.ray_backend import RayCluster, _task_name

    spec = spec_from_dict(SPEC)
    cpu = spec.run_config(spec.cells()[0], 0)
    cuda = cpu.set(**{"train.device": "cuda:0"})
    assert RayCluster(None, None, None).run_gpus(cpu) == 0.0
    assert RayCluster(None, None, None).run_gpus(cuda) == 1.0
    assert RayCluster(None, None, 0.25).run_gpus(cuda) == 0.25  # four runs share a GPU
    tasks = [Task("s", spec.cells()[1], rep, rep, cpu, "d") for rep in (0, 1)]
    assert _task_name(tasks[:1]) == "cnnlab:s:model.blocks=2:rep0"
    assert _task_name(tasks) == "cnnlab:s:model.blocks=2:rep0-1"  # a stacked cell


def test_without_ray_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    from cnnlab.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", str(_spec_file(tmp_path)), "--backend", "ray",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ('cnnlab: error: the ray backend needs Ray, which is not installed: '
                   'pip install "cnnlab[ray]"')
    assert not (tmp_path / "s").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_one_line_nothing_written(tmp_path, capsys):
    pytest.importorskip("ray")
    from cnnlab.cli import main

    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    assert main(["sweep", str(_spec_file(tmp_path)), "--backend", "ray", "--address", address,
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cnnlab: error: no Ray cluster reachable at {address}")
    assert "\n" not in err
    assert not (tmp_path / "s").exists()


def _session_of(pid: str | int) -> int:
    """The session id of a process (/proc/PID/stat: the 4th field after the name)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def _in_session(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _session_of(entry.name) == sid:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def _ray_start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``ray start --block ...`` in a session of its own: the session holds every process of
    the node (GCS, raylet, workers, each worker in a group of its own), so the finalizer
    stops exactly this cluster and nothing else."""
    exe = Path(sys.executable).with_name("ray")
    cmd = [str(exe) if exe.exists() else shutil.which("ray"), "start", "--block", *args]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to ``ray start --block`` (it stops its node), then SIGKILL to whatever is
    left of its session after 15 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in [proc.pid] if sig == signal.SIGTERM else _in_session(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            proc.poll()  # reap it: a zombie stays in /proc
            if not _in_session(proc.pid):
                break
            time.sleep(0.2)
    proc.wait(timeout=10)


def _alive_nodes(address: str) -> int:
    import ray

    ray.init(address=address, logging_level="error")
    try:
        return sum(1 for n in ray.nodes() if n["Alive"])
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node on 127.0.0.1, one CPU each; yields (address, env, groups)."""
    pytest.importorskip("ray")  # CI installs it (the ray extra); elsewhere these skip
    logs = tmp_path_factory.mktemp("ray-logs")
    temp = tempfile.mkdtemp(prefix="cnr", dir="/tmp")  # short: Ray's unix socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
           "CNNLAB_HOME": str(tmp_path_factory.getbasetemp() / "cnnlab-home")}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
              "--object-store-memory=100000000", f"--temp-dir={temp}"]
    nodes = []
    try:
        nodes.append(_ray_start(["--head", f"--port={port}", "--include-dashboard=false",
                                 "--disable-usage-stats", *common], env, logs / "head.log"))
        deadline = time.monotonic() + 120
        while True:  # the GCS port answers once the head is up
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert nodes[0].poll() is None, (logs / "head.log").read_text()
                assert time.monotonic() < deadline, "Ray head did not start in 120 s"
                time.sleep(0.5)
        nodes.append(_ray_start([f"--address={address}", *common], env, logs / "worker.log"))
        while _alive_nodes(address) < 2:
            assert nodes[1].poll() is None, (logs / "worker.log").read_text()
            assert time.monotonic() < deadline, "Ray worker node did not join in 120 s"
            time.sleep(1)
        yield address, env, {p.pid for p in nodes}
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The rows of the same sweep on the local executor (2 workers x 1 thread)."""
    folder = tmp_path_factory.mktemp("local") / "s"
    sweep(SPEC, folder, workers=2, threads=1, report=False, log=lambda *a: None)
    rows = _rows(folder)
    assert len(rows) == 4 and all(r[3] == "ok" for r in rows)  # learnt: not at chance
    return rows


def test_two_node_sweep_gives_the_local_rows(cluster, reference, tmp_path):
    import ray

    address, _, _ = cluster
    lines = []
    result = run_sweep(spec_from_dict(SPEC), tmp_path / "s", backend="ray", address=address,
                       log=lines.append)
    assert result.ok and result.ran == 4
    assert "2 node(s), 2 CPU(s)" in lines[0] and "1 CPU(s) per run, 2 at once" in lines[0]
    assert _rows(tmp_path / "s") == reference  # same seeds, same accuracies and losses
    assert not ray.is_initialized()  # the driver disconnected
    again = run_sweep(spec_from_dict(SPEC), tmp_path / "s", backend="ray", address=address,
                      log=lines.append)
    assert again.ran == 0 and "all 4 runs already done" in lines[-1]


def _driver(tmp_path: Path, address: str, env: dict, folder: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnlab", "sweep", str(_spec_file(tmp_path)), "--backend",
           "ray", "--address", address, "--out", str(folder), "--no-report"]
    return subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _busy_workers(sessions: set[int]) -> dict[int, str]:
    """pid -> task name of this cluster's Ray workers running a cnnlab task (the process
    title is ``ray::NAME`` while a worker runs a task, ``ray::IDLE`` between tasks)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
            if title.startswith("ray::cnnlab:") and _session_of(entry.name) in sessions:
                out[int(entry.name)] = title
        except (OSError, ValueError, IndexError):
            continue
    return out


def _epochs_done(run_dir: Path) -> int:
    try:
        return max(0, len((run_dir / "metrics.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def test_worker_killed_mid_run_is_retried(cluster, reference, tmp_path):
    address, env, sessions = cluster
    folder = tmp_path / "s"
    proc = _driver(tmp_path, address, env, folder)
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            for pid, title in _busy_workers(sessions).items():
                cell, rep = title.split(":")[-2:]  # ray::cnnlab:SWEEP:CELL:repN
                run_dir = folder / "runs" / f"blocks{cell.split('=')[1]}" / rep
                # past its first checkpoint and not finished: killed in the middle
                if _epochs_done(run_dir) >= 1 and not (run_dir / "summary.json").exists():
                    os.kill(pid, signal.SIGKILL)
                    killed = (pid, title)
                    break
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no run was caught in the middle"
    assert proc.returncode == 0, out
    rows = _rows(folder)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == 4  # no duplicate, none missing
    assert rows == reference  # the retried run resumed (or restarted) to the same numbers


def test_driver_killed_and_rerun_matches_uninterrupted(cluster, reference, tmp_path):
    address, env, _ = cluster
    folder = tmp_path / "s"
    proc = _driver(tmp_path, address, env, folder)
    try:
        for line in proc.stdout:  # kill the driver as soon as the first run is stored
            if line.startswith("[1/4]"):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 1 <= len(_rows(folder)) < 4
    again = _driver(tmp_path, address, env, folder)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert "already done" in out
    assert _rows(folder) == reference  # no duplicate, none lost, same numbers
