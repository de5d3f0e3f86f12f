"""The command line behaves like its peers (pip, Ray, Hydra): --version, switches for booleans, near misses named."""

from __future__ import annotations

import pytest

from xaigan import __version__, cli, config
from xaigan.cli import build_parser
from xaigan.cli.run import config_layers


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"xaigan {__version__}"


@pytest.mark.parametrize(("argv", "expected"), [([], False), (["--xai-strict"], True), (["--no-xai-strict"], False)])
def test_boolean_keys_are_switches(argv, expected):
    cfg = config.resolve(*config_layers(build_parser().parse_args(["train", *argv])))
    assert cfg.xai_strict is expected
    assert (
        cfg.tensorboard
        is not config.resolve(*config_layers(build_parser().parse_args(["train", "--no-tensorboard"]))).tensorboard
    )


def test_switch_help_shows_no_second_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--xai-strict, --no-xai-strict" in text and "(default: None)" not in text


@pytest.mark.parametrize(
    ("key", "hint"),
    [("lr_dd", "did you mean 'lr_d'"), ("xai_treshold", "did you mean 'xai_threshold'"), ("colour", "--help lists")],
)
def test_an_unknown_key_names_the_closest_known_ones(key, hint, tmp_path, capsys):
    assert cli.main(["train", "--set", f"{key}=1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"unknown config key {key!r}" in err and hint in err and len(err) < 160
    assert not (tmp_path / "r").exists()


def test_missing_tensorboard_is_said_once(tmp_path, caplog, monkeypatch):
    import builtins
    import logging

    from xaigan import process
    from xaigan.rundir import RunDir
    from xaigan.train import logging as run_logging

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(process, "_said", set())
    with caplog.at_level(logging.INFO, logger="xaigan"):
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            run_logging.RunLogger(RunDir(tmp_path / name), tensorboard=True).close()
    said = [r for r in caplog.records if "tensorboard is not installed" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]


@pytest.mark.parametrize(
    "command", ["train", "data list", "sample RUN", "evaluate RUN", "reproduce G", "report D", "demo"]
)
def test_v_and_q_are_taken_after_every_command(command):
    words = command.split()
    assert build_parser().parse_args([*words, "-v"]).verbose is True
    assert build_parser().parse_args(["-v", *words]).verbose is True
    args = build_parser().parse_args([*words, "-q"])
    assert args.quiet is True and args.verbose is False
