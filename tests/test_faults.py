"""Faults a long run meets: signals inside a step, NaN losses, a second process, changed data, corrupt files,
runs killed before their first checkpoint. Nothing already written may be lost; every error is one clear line."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import yaml

from tests.conftest import write_image_folder
from xaigan import cli, train
from xaigan import config as cfg_mod
from xaigan.experiments import load_grid
from xaigan.io import load_torch
from xaigan.rundir import PREVIOUS, RunDir, RunLockedError


@pytest.fixture
def folder(tmp_path):
    write_image_folder(tmp_path / "imgs", n=96, size=32, mode="L")
    return tmp_path / "imgs"


def _cfg(folder, **kw):
    base = {"dataset": f"folder:{folder}", "epochs": 3, "batch_size": 32, "progress": False, "seed": 5}
    return cfg_mod.resolve({**base, "tensorboard": False, **kw})


def _same_weights(a, b):
    sa, sb = load_torch(RunDir(a).checkpoint()), load_torch(RunDir(b).checkpoint())
    assert sa["step"] == sb["step"]
    for net in ("G", "D"):
        for key in sa[net]:
            assert torch.equal(sa[net][key], sb[net][key]), f"{net}.{key}"
    assert sa["opt_d"]["state"][0]["step"] == sb["opt_d"]["state"][0]["step"]


class _SignalInsideStep:
    """Wraps a guidance: on its ``at``-th call (inside the G step, after D's update) the process signals itself."""

    def __init__(self, inner, at: int, signum: int) -> None:
        self.inner, self.at, self.signum, self.calls = inner, at, signum, 0

    def __call__(self, fake, D, scores=None):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
        return self.inner(fake, D, scores)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def terminal_signals():
    """Signals as a terminal delivers them, even when the test run itself was started with SIGINT ignored (a
    background job): Ctrl-C raises KeyboardInterrupt, SIGTERM terminates."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.mark.slow
@pytest.mark.usefixtures("terminal_signals")
@pytest.mark.parametrize(("signum", "name"), [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_signal_inside_a_step_finishes_it_and_resumes_bit_identical(tmp_path, folder, signum, name):
    cfg = _cfg(folder, xai="saliency", xai_start=0.0, xai_select="all")
    train.from_config(cfg, tmp_path / "straight").fit()
    trainer = train.from_config(cfg, tmp_path / "stopped")
    trainer.guidance = _SignalInsideStep(trainer.guidance, at=5, signum=signum)
    result = trainer.fit()
    assert result == {"interrupted": True, "signal": name, "step": 5, "epoch": 1}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    train.resume(tmp_path / "stopped").fit()
    _same_weights(tmp_path / "straight", tmp_path / "stopped")


def test_nan_loss_stops_with_the_step_in_one_clear_message(tmp_path, folder, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", f"folder:{folder}", "--epochs", "3", "--batch-size", "32", "--quiet", "--out"]
    assert cli.main([*args, str(out), "--lr-d", "1e30", "--lr-g", "1e30"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-finite" in err and "step " in err
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in metrics.jsonl"))
    assert not (out / "summary.json").exists()


def test_a_divergence_mid_training_keeps_the_last_good_checkpoint(tmp_path, folder, monkeypatch):
    """G's weights turn NaN in step 5 (epoch 1; epoch 0 ended and was checkpointed at step 3): training stops there,
    saying so, and last.pt still holds the finite state of step 3, the same as a run stopped cleanly at step 3."""
    from xaigan.train import trainer as trainer_mod

    cfg = _cfg(folder)
    train.from_config(cfg, tmp_path / "clean").fit(stop_at_step=3)
    real_step, calls = trainer_mod.gan_step, []

    def diverging(G, *args, **kwargs):
        stats = real_step(G, *args, **kwargs)
        calls.append(1)
        if len(calls) == 5:
            with torch.no_grad():
                next(G.parameters()).fill_(float("nan"))
            stats["g_loss"] = float("nan")
        return stats

    monkeypatch.setattr(trainer_mod, "gan_step", diverging)
    with pytest.raises(train.NonFiniteLossError, match=r"step 5 \(epoch 1\): non-finite \{'g_loss': nan\}"):
        train.from_config(cfg, tmp_path / "diverged").fit()
    state = load_torch(RunDir(tmp_path / "diverged").checkpoint())
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["G"].values())
    _same_weights(tmp_path / "clean", tmp_path / "diverged")


def test_overwrite_leaves_no_old_result_behind(tmp_path, folder):
    run = RunDir(tmp_path / "run")
    train.from_config(_cfg(folder, epochs=1), run).fit()
    run.write_eval({"fid": 1.0})
    train.from_config(_cfg(folder, epochs=1), run, overwrite=True)
    assert not run.eval_path.exists() and not run.summary_path.exists() and run.config_path.exists()


def test_a_second_process_cannot_take_a_run_in_use(tmp_path, folder):
    first = train.from_config(_cfg(folder, epochs=1), tmp_path / "run")
    with pytest.raises(RunLockedError, match=f"in use by another xaigan process \\(pid {os.getpid()}\\)"):
        train.from_config(_cfg(folder, epochs=1), tmp_path / "run", overwrite=True)
    first.fit()  # releases the lock when done
    train.from_config(_cfg(folder, epochs=1), tmp_path / "run", overwrite=True)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, folder):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / RunDir.LOCK).write_text("999999")  # the file stays, the dead process's flock does not
    train.from_config(_cfg(folder, epochs=1), run).fit()
    assert run.summary_path.is_file()


def test_resume_refuses_changed_data(tmp_path, folder, capsys):
    out = tmp_path / "run"
    train.from_config(_cfg(folder), out).fit(stop_at_step=2)
    before = RunDir(out).checkpoint().read_bytes()
    write_image_folder(folder, n=100, size=32, mode="L", seed=9)  # more images appear in the folder
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "started on other data" in err and "96 images" in err
    assert RunDir(out).checkpoint().read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "garble", "foreign"])
def test_damaged_checkpoint_is_one_clear_error(tmp_path, folder, capsys, damage):
    out = tmp_path / "run"
    train.from_config(_cfg(folder), out).fit(stop_at_step=2)
    ckpt = RunDir(out).checkpoint()
    payload = ckpt.read_bytes()
    if damage == "truncate":
        ckpt.write_bytes(payload[: len(payload) // 2])
    elif damage == "garble":
        ckpt.write_bytes(payload[:100] + bytes(200) + payload[300:])
    else:
        torch.save({"weights": torch.zeros(3)}, ckpt)
    damaged = ckpt.read_bytes()
    for command in (["train", "--resume", str(out), "--quiet"], ["evaluate", str(out), "--n", "10"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(ckpt) in err, err
    assert ckpt.read_bytes() == damaged  # nothing rewritten


@pytest.mark.slow
def test_grid_gets_past_a_run_killed_before_its_first_checkpoint(tmp_path, folder):
    spec = {
        "name": "tiny",
        "base": {"dataset": f"folder:{folder}", "batch_size": 32},
        "budgets": {"quick": {"epochs": 1}},
        "cells": {"normal": {"xai": "none"}},
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    run_spec = load_grid(tmp_path / "grid.yaml").runs(tmp_path / "out", "quick", [0])[0]
    run = RunDir(run_spec.run_dir)
    run.path.mkdir(parents=True)
    run.write_config(run_spec.cfg.to_dict())  # what a kill during the first epoch leaves behind
    assert run.state() == "started"
    with pytest.raises(FileNotFoundError, match="before its first checkpoint"):
        train.resume(run)
    assert cli.main(["reproduce", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "out"), "--no-eval"]) == 0
    assert run.state() == "trained"


class _Payload:
    """Unpickling this calls os.mkdir(target): the shape of a crafted pickle that runs code."""

    def __init__(self, target) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_pickles_carrying_code_are_refused_and_never_run(tmp_path):
    import pickle

    from tests.conftest import write_cifar
    from xaigan import data
    from xaigan.data.formats import FormatError

    write_cifar(tmp_path / "c", archive=False)
    batch = tmp_path / "c" / "cifar-10-batches-py" / "test_batch"
    marker = tmp_path / "was_run"
    batch.write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [1]}, protocol=2))
    with pytest.raises(FormatError, match="refusing to load posix.mkdir|refusing to load os.mkdir"):
        data.load("cifar10", data_dir=str(tmp_path / "c"), split="test")
    assert not marker.exists()


def test_corrupt_archives_are_format_errors(tmp_path, capsys):
    from tests.conftest import write_cifar, write_idx_dataset

    write_cifar(tmp_path / "c", archive=True)
    tar = tmp_path / "c" / "cifar-10-python.tar.gz"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    for sub in ("cifar-10-batches-py",):  # only the (damaged) archive is left to read
        import shutil

        shutil.rmtree(tmp_path / "c" / sub)
    write_idx_dataset(tmp_path / "m")
    gz = tmp_path / "m" / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:40] + b"\x00" * 50 + gz.read_bytes()[90:])
    for name, folder in (("cifar10", "c"), ("mnist", "m")):
        args = ["train", "--dataset", name, "--data-dir", str(tmp_path / folder), "--out", str(tmp_path / name)]
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "xaigan: error:" in err and str(tmp_path / folder) in err, err


@pytest.mark.slow
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, folder, caplog):
    cfg = _cfg(folder)
    train.from_config(cfg, tmp_path / "straight").fit()
    run = RunDir(tmp_path / "stopped")
    train.from_config(cfg, run).fit(stop_at_step=7)  # epochs 0 and 1 checkpointed (3 steps each), then step 7
    previous = load_torch(run.checkpoint(PREVIOUS))
    assert previous["step"] == 6 and load_torch(run.checkpoint())["step"] == 7
    run.checkpoint().write_bytes(run.checkpoint().read_bytes()[:1000])  # torn by bit rot, a bad disk, a user
    trainer = train.resume(run)
    assert trainer.step == 6 and "resuming from" in caplog.text and "previous.pt" in caplog.text
    trainer.save_checkpoint()  # the damaged last.pt is replaced, not kept as previous.pt over the good one
    assert load_torch(run.checkpoint(PREVIOUS))["step"] == 6 and load_torch(run.checkpoint())["step"] == 6
    trainer.save_checkpoint()  # from now on last.pt rotates as before
    assert load_torch(run.checkpoint(PREVIOUS))["step"] == 6
    trainer.fit()
    _same_weights(tmp_path / "straight", run)
    assert not run.checkpoint(PREVIOUS).exists()  # a finished run keeps one checkpoint
    steps = [r["step"] for r in run.read_metrics() if "d_loss" in r]
    assert steps == sorted(set(steps))  # no step logged twice


@pytest.mark.slow
def test_epoch_callbacks_run_after_the_checkpoint_and_again_on_resume(tmp_path, folder):
    """A failing evaluation must not cost the epoch it evaluates: the epoch is checkpointed first, marked as
    pending, and its callbacks run again (once) when the run resumes."""
    cfg = _cfg(folder)
    seen: list[tuple[int, int]] = []

    def flaky(tr, epoch):
        seen.append((epoch, tr.step))
        tr.log_record({"epoch": epoch, "step": tr.step, "score": float(epoch)})
        if epoch == 1 and len(seen) == 2:
            raise RuntimeError("evaluation failed")

    run = RunDir(tmp_path / "run")
    trainer = train.from_config(cfg, run)
    trainer.callbacks.append(flaky)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        trainer.fit()
    state = load_torch(run.checkpoint())
    assert (state["epoch"], state["step"], state["pending_epoch"]) == (2, 6, 1)  # epoch 1 kept, its callback due
    trainer = train.resume(run)
    trainer.callbacks.append(flaky)
    trainer.fit()
    assert seen == [(0, 3), (1, 6), (1, 6), (2, 9)]
    scores = [(r["epoch"], r["step"]) for r in run.read_metrics() if "score" in r]
    assert scores == [(0, 3), (1, 6), (2, 9)]  # the failed attempt's record is gone, none is doubled
    train.from_config(cfg, tmp_path / "straight").fit()
    _same_weights(tmp_path / "straight", run)


def test_missing_inception_weights_fail_before_training(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XAIGAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XAIGAN_INCEPTION_WEIGHTS", raising=False)
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "run"
    args = ["train", "--dataset", f"folder:{folder}", "--epochs", "3", "--quiet", "--out", str(out)]
    assert cli.main([*args, "--set", "eval_every=1", "--set", "eval_features=inception"]) == 2
    assert "Inception-v3 weights not found" in capsys.readouterr().err
    assert not RunDir(out).metrics_path.exists() and not RunDir(out).checkpoint().exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, umask):
    from xaigan.io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "report.html", "<p>hi</p>")
        with open(tmp_path / "plain.html", "w") as handle:  # what any other program would create
            handle.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == (tmp_path / "plain.html").stat().st_mode & 0o777
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o666 & ~umask


def test_only_temp_files_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from xaigan.io import remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "checkpoints").mkdir()
    stale = tmp_path / "checkpoints" / f".last.pt.{dead_pid}.abc123.tmp"
    live = tmp_path / "checkpoints" / f".last.pt.{os.getpid()}.def456.tmp"  # a writer still at work
    other = tmp_path / ".notes.tmp"  # not ours: no pid in the name
    for path in (stale, live, other):
        path.write_bytes(b"half")
    assert remove_stale_temps(tmp_path) == 1
    assert not stale.exists() and live.exists() and other.exists()


class _PoisonAt(_SignalInsideStep):
    """On its ``at``-th call (inside the G step) the guidance hands back NaN images: G's loss becomes NaN."""

    def __call__(self, fake, D, scores=None):
        self.calls += 1
        out = self.inner(fake, D, scores)
        return out * float("nan") if self.calls == self.at else out


@pytest.mark.slow
@pytest.mark.parametrize("at", sorted(__import__("random").Random(9).sample(range(1, 13), 4)))
def test_a_nan_at_a_random_step_stops_there_and_the_resumed_run_is_identical(tmp_path, folder, at):
    cfg = _cfg(folder, epochs=4, xai="saliency", xai_start=0.0, xai_select="all")
    train.from_config(cfg, tmp_path / "straight").fit()
    run = RunDir(tmp_path / "run")
    trainer = train.from_config(cfg, run)
    trainer.guidance = _PoisonAt(trainer.guidance, at=at, signum=0)
    with pytest.raises(train.NonFiniteLossError, match=f"step {at} "):
        trainer.fit()
    if run.checkpoint().exists():
        kept = load_torch(run.checkpoint())
        assert kept["step"] == 3 * ((at - 1) // 3)  # the last epoch boundary before the NaN
        assert all(torch.isfinite(v).all() for net in ("G", "D") for v in kept[net].values())
        train.resume(run).fit()
    else:
        assert at <= 3
        train.from_config(cfg, run, overwrite=True).fit()
    _same_weights(tmp_path / "straight", run)


def test_nan_weights_behind_a_finite_loss_are_never_checkpointed(tmp_path, folder):
    run = RunDir(tmp_path / "run")
    trainer = train.from_config(_cfg(folder, epochs=3), run)

    def poison(tr, epoch):
        if epoch == 1:
            with torch.no_grad():
                next(tr.D.parameters())[0] = float("nan")

    trainer.callbacks.append(poison)
    with pytest.raises(train.NonFiniteLossError, match="non-finite weights in D"):
        trainer.fit()
    kept = load_torch(run.checkpoint())
    assert all(torch.isfinite(v).all() for v in kept["D"].values())


@pytest.mark.slow
def test_a_run_whose_config_predates_newer_keys_resumes(tmp_path, folder):
    """config.yaml from an older version lacks keys added since: they take their defaults, the run resumes."""
    cfg = _cfg(folder)
    train.from_config(cfg, tmp_path / "straight").fit()
    run = RunDir(tmp_path / "old")
    train.from_config(cfg, run).fit(stop_at_step=4)
    stored = run.read_config()
    for key in ("xai_patience", "xai_strict", "d_output", "eval_reference"):
        del stored[key]
    run.config_path.write_text(yaml.safe_dump(stored))
    assert cli.main(["train", "--resume", str(run.path), "--quiet"]) == 0
    _same_weights(tmp_path / "straight", run)


def test_keeping_the_previous_checkpoint_leaves_no_temp_file(tmp_path):
    """After a failed write, previous.pt and last.pt are one file (two links); the next save must still leave
    nothing behind (rename() between two links to one file does nothing). Found by the fault-injection loop."""
    from xaigan.train import checkpoint

    last, previous = tmp_path / "last.pt", tmp_path / "previous.pt"
    checkpoint.save(last, {"step": torch.tensor(1)})
    os.link(last, previous)  # what a save that failed after keeping the previous one leaves
    checkpoint.save(last, {"step": torch.tensor(2)}, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "previous.pt"]
    assert int(load_torch(previous)["step"]) == 1 and int(load_torch(last)["step"]) == 2


def test_a_signal_the_parent_ignores_stays_ignored(tmp_path, folder):
    """Under ``nohup`` or as a background job SIGINT arrives ignored: training must not start honouring it."""
    cfg = _cfg(folder, epochs=1, xai="saliency", xai_start=0.0, xai_select="all")
    trainer = train.from_config(cfg, tmp_path / "run")
    trainer.guidance = _SignalInsideStep(trainer.guidance, at=2, signum=signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = trainer.fit()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not result.get("interrupted") and result["steps"] == 3


@pytest.mark.parametrize("wrapped, code", [("term", 143), ("int", 130), ("none", 1)])
def test_a_signal_surfacing_as_another_exception_is_an_interruption(monkeypatch, capsys, tmp_path, wrapped, code):
    """A signal inside C code (e.g. an extension module's import) can come out as a SystemError whose context is
    the KeyboardInterrupt: still one line and exit 143/130, not a traceback; other errors are internal errors."""
    import tempfile

    from xaigan import cli
    from xaigan.cli import study

    def fail(args):
        try:
            if wrapped == "term":
                raise cli.Terminated
            if wrapped == "int":
                raise KeyboardInterrupt
            raise ValueError("unrelated")
        except BaseException as exc:
            raise SystemError("initialization of _C raised unreported exception") from exc

    monkeypatch.setattr(study, "cmd_report", fail)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the internal error's traceback goes
    assert cli.main(["report", "somewhere"]) == code
    if wrapped == "none":
        assert capsys.readouterr().err.startswith("xaigan: internal error: SystemError: initialization of _C")
        return
    assert capsys.readouterr().err.strip() == (
        "xaigan: interrupted; files written so far are intact, run the same command again"
    )
