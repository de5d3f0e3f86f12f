"""The guidance settings are declared once (xaigan.settings.GuidanceSettings): the run configuration, the CLI and
XAIGuidance read them from there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xaigan import config, settings
from xaigan.guidance import XAIGuidance

SRC = Path(__file__).resolve().parents[1] / "src"

TOY = """    toy: int = option(3, "a toy setting", range="> 0", group="xai", key="xai_toy")
"""

PROBE = r"""
import sys
import torch
from xaigan.config import Config, ConfigError
from xaigan.cli import build_parser
from xaigan.train.factory import build_guidance

assert Config().xai_toy == 3
cfg = Config(xai="saliency", xai_toy="7")  # a string from the command line, coerced like every key
guide = build_guidance(cfg, torch.zeros(4, 1, 32, 32, dtype=torch.uint8), None, torch.device("cpu"))
assert guide.toy == 7 and guide.settings.toy == 7 and guide.config()["toy"] == 7
try:
    Config(xai_toy=0)
except ConfigError as exc:
    assert "xai_toy must be > 0" in str(exc), exc
else:
    raise AssertionError("xai_toy=0 accepted")
print("ok")
"""


def test_a_new_setting_is_one_field(tmp_path):
    """Adding one field to GuidanceSettings gives a config key with its default, coercion and range check, a CLI
    flag, and a value that reaches XAIGuidance through the factory: nothing else is edited."""
    tree = tmp_path / "src"
    shutil.copytree(SRC / "xaigan", tree / "xaigan", ignore=shutil.ignore_patterns("__pycache__"))
    module = tree / "xaigan" / "settings" / "guidance.py"
    text = module.read_text()
    anchor = "    start_epoch: int = option("
    assert text.count(anchor) == 1
    module.write_text(text.replace(anchor, TOY + anchor))
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
    cli = subprocess.run(
        [sys.executable, "-c", _HELP],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "--xai-toy" in cli.stdout and "a toy setting" in cli.stdout


_HELP = r"""
import contextlib, io
from xaigan.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["train", "--help"])
    except SystemExit:
        pass
print(out.getvalue())
"""


def test_config_keys_are_the_settings_with_the_same_checks():
    by_key = {o.name: o for o in config.schema()}
    for o in settings.options_of(settings.GuidanceSettings):
        if o.key is None:
            assert o.name not in by_key
            continue
        mine = by_key[o.key]
        assert (mine.type, mine.default, mine.help, mine.allowed(), mine.range) == (
            o.type,
            o.default,
            o.help,
            o.allowed(),
            o.range,
        )
    assert by_key["xai_use"].allowed() == ("amplify", "suppress", "replace", "weight", "signed")
    assert by_key["explain_mode"].allowed() == ("auto", "eval", "train", "batch", "step")


def test_config_and_guidance_reject_the_same_values_with_their_own_names():
    with pytest.raises(config.ConfigError, match="xai_normalize must be one of"):
        config.Config(xai_normalize="zscore")
    with pytest.raises(config.ConfigError, match="^normalize must be one of"):
        XAIGuidance("saliency", normalize="zscore")
    with pytest.raises(config.ConfigError, match="xai_shuffle and xai_flat"):
        config.Config(xai="saliency", xai_shuffle=True, xai_flat=True)
    with pytest.raises(ValueError, match="^shuffle and flat"):
        XAIGuidance("saliency", shuffle=True, flat=True)
    with pytest.raises(TypeError, match="unknown guidance setting"):
        XAIGuidance("saliency", alhpa=0.3)


def test_guidance_from_a_config_carries_every_setting():
    cfg = config.Config(xai="saliency", alpha=0.7, xai_use="weight", xai_select="all", epochs=4, xai_start=0.5)
    s = cfg.guidance()
    assert (s.alpha, s.use, s.select, s.start_epoch, s.end_epoch) == (0.7, "weight", "all", 2, 4)
    guide = XAIGuidance("saliency", settings=s)
    assert guide.alpha == 0.7 and guide.use == "weight" and not guide.active(1) and guide.active(2)


def test_settings_import_no_torch():
    code = "import sys, xaigan.settings, xaigan.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
