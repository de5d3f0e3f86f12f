"""Grids on Ray: same results as the local executor, killed tasks retried from their checkpoint, clear errors."""

import json
import socket
import sys

import pytest
import yaml

from tests.conftest import write_image_folder
from xaigan import cli
from xaigan.experiments import PoolExecutor, RayExecutor, SerialExecutor, load_grid, make_executor, run_grid
from xaigan.experiments.runner import RunsFailedError
from xaigan.rundir import RunDir

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, logging_level="WARNING", log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


def _grid(tmp_path, cells, epochs=2):
    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    spec = {
        "name": "tiny",
        "base": {
            "dataset": f"folder:{tmp_path / 'imgs'}",
            "model": "mlp",
            "batch_size": 16,
            "checkpoint_every": 1,
            "tensorboard": False,
        },
        "budgets": {"quick": {"epochs": epochs}},
        "evaluation": {"n": 100},
        "cells": cells,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_grid(path)


TWO_CELLS = {"normal": {"xai": "none"}, "saliency": {"xai": "saliency"}}


def _results(records):
    return {(r["cell"], r["seed"]): (r["eval"]["fid"], r["summary"]["steps"]) for r in records}


def _local_dir(tmp_path, record):
    return tmp_path / "local" / record["cell"] / f"seed_{record['seed']}"


def _same_weights(a, b) -> bool:
    import torch

    sa, sb = (torch.load(p, weights_only=True) for p in (a, b))
    return all(torch.equal(sa[net][k], sb[net][k]) for net in ("G", "D") for k in sa[net])


@pytest.mark.slow
def test_ray_grid_gives_the_local_executors_results(tmp_path, local_ray):
    import torch

    grid = _grid(tmp_path, TWO_CELLS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks train with one thread each: the same arithmetic
    try:
        local = run_grid(grid, tmp_path / "local", seeds=[0, 1], progress=False, executor=SerialExecutor())
    finally:
        torch.set_num_threads(threads)
    on_ray = run_grid(grid, tmp_path / "ray", seeds=[0, 1], progress=False, executor=make_executor("ray"))
    # training is bit-identical; the FID's float64 linear algebra may run on other BLAS thread counts in Ray's
    # workers (OMP_NUM_THREADS=1 there), which moves it in the 8th digit
    ray_results, local_results = _results(on_ray), _results(local)
    assert len(on_ray) == 4 and ray_results.keys() == local_results.keys()
    for key, (fid, steps) in ray_results.items():
        assert steps == local_results[key][1] and fid == pytest.approx(local_results[key][0], rel=1e-6)
    for r in on_ray:
        ours, theirs = (RunDir(d).path / "checkpoints" / "last.pt" for d in (r["run_dir"], _local_dir(tmp_path, r)))
        assert _same_weights(ours, theirs)
    assert json.loads((tmp_path / "ray" / "grid.json").read_text())["executor"] == "ray"
    for r in on_ray:
        assert RunDir(r["run_dir"]).state() == "done"
        assert sorted(p.name for p in RunDir(r["run_dir"]).path.iterdir()) == sorted(
            p.name for p in (tmp_path / "local" / r["cell"] / f"seed_{r['seed']}").iterdir()
        )


@pytest.mark.slow
def test_every_executor_trains_a_tiny_grid_to_the_same_records(tmp_path, local_ray, monkeypatch):
    """In this process, in a pool of two worker processes and as Ray tasks, behind the one executor interface: the
    same records (steps, epochs; no evaluation), the same files and bit-identical weights (one thread each)."""
    import torch

    from xaigan.experiments import workers

    grid = _grid(tmp_path, TWO_CELLS)
    monkeypatch.setattr(workers, "threads_per_worker", lambda n: 1)  # as the serial run and the Ray tasks
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_grid(grid, tmp_path / "serial", seeds=[0, 1], progress=False, evaluate=False)
    finally:
        torch.set_num_threads(threads)
    records = {"serial": serial}
    for name, executor in (("pool", PoolExecutor(2)), ("ray", RayExecutor())):
        records[name] = run_grid(grid, tmp_path / name, seeds=[0, 1], progress=False, evaluate=False, executor=executor)

    def runs(name):
        return [(r["cell"], r["seed"], r["summary"]["steps"], r["summary"]["epochs"], r["eval"]) for r in records[name]]

    expected = [(cell, seed, 8, 2, {}) for seed in (0, 1) for cell in TWO_CELLS]  # 64 images / 16 = 4 steps an epoch
    assert runs("serial") == runs("pool") == runs("ray") == expected
    for name in ("pool", "ray"):
        for r in records[name]:
            ours = RunDir(r["run_dir"])
            theirs = RunDir(tmp_path / "serial" / r["cell"] / f"seed_{r['seed']}")
            assert ours.state() == theirs.state() == "trained"
            assert sorted(p.name for p in ours.path.iterdir()) == sorted(p.name for p in theirs.path.iterdir())
            assert _same_weights(ours.checkpoint(), theirs.checkpoint()), (name, r["cell"], r["seed"])
    assert {json.loads((tmp_path / n / "grid.json").read_text())["executor"] for n in records} == {"local", "ray"}


def _writes(counter):
    return counter.stat().st_size if counter.exists() else 0


def _train_on_ray(grid, out, seeds, **ray_options):
    """Train (no evaluation) ``grid``'s runs of ``seeds`` into ``out`` as Ray tasks."""
    return run_grid(grid, out, seeds=seeds, progress=False, evaluate=False, executor=RayExecutor(ray_options))


@pytest.mark.slow
def test_killed_task_is_retried_from_its_checkpoint(tmp_path, local_ray):
    grid = _grid(tmp_path, {"normal": {"xai": "none"}}, epochs=3)
    trace = tmp_path / "trace"
    env = {"env_vars": {"XAIGAN_FAILPOINT": f"trace:{trace}"}}
    whole = _train_on_ray(grid, tmp_path / "whole", [0], runtime_env=env)
    writes = trace.read_text().splitlines()
    uninterrupted = len(writes)
    # The second checkpoint's write: checkpoints are written one at a time in the background, so the first is on
    # disk by then whatever the order of the neighbouring writes (killing earlier races the first checkpoint).
    kill_at = [i for i, w in enumerate(writes, 1) if w.endswith("last.pt")][1]
    counter = tmp_path / "count"
    env = {"env_vars": {"XAIGAN_FAILPOINT": f"kill:{kill_at}:{counter}"}}
    retried = _train_on_ray(grid, tmp_path / "retried", [0], runtime_env=env, retries=1)
    # Killed once (the counter passed kill_at), then resumed: fewer writes than a restart from scratch would make.
    assert uninterrupted < _writes(counter) < kill_at + uninterrupted
    assert retried[0]["summary"]["steps"] == whole[0]["summary"]["steps"]
    assert RunDir(retried[0]["run_dir"]).state() == "trained"


@pytest.mark.slow
def test_run_failing_every_try_is_reported_and_the_others_finish(tmp_path, local_ray):
    grid = _grid(tmp_path, TWO_CELLS)
    counter = tmp_path / "count"
    env = {"env_vars": {"XAIGAN_FAILPOINT": f"kill:3:{counter}"}}  # the first task to write dies, no retry
    with pytest.raises(RunsFailedError) as caught:
        _train_on_ray(grid, tmp_path / "out", [0], runtime_env=env, retries=0)
    (failure,) = caught.value.failed
    meta = json.loads((tmp_path / "out" / "grid.json").read_text())
    assert meta["failed"] == [failure] and failure["error"]
    other = "saliency" if failure["cell"] == "normal" else "normal"
    assert RunDir(tmp_path / "out" / other / "seed_0").state() == "trained"
    assert RunDir(failure["run_dir"]).state() != "trained"


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("address", "message"),
    [("not-an-address", "must be HOST:PORT"), (f"127.0.0.1:{_closed_port()}", "cannot reach a Ray cluster at")],
)
def test_bad_address_is_one_clear_error_and_writes_nothing(tmp_path, capsys, address, message):
    grid = _grid(tmp_path, TWO_CELLS)
    out = tmp_path / "out"
    code = cli.main(["reproduce", str(grid.path), "--executor", "ray", "--address", address, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.slow
def test_without_ray_the_flag_is_one_clear_error(tmp_path, capsys, monkeypatch):
    grid = _grid(tmp_path, TWO_CELLS)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = cli.main(["reproduce", str(grid.path), "--executor", "ray", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'xaigan[ray]'" in err and not (tmp_path / "out").exists()
