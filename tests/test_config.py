import pytest
import yaml

from xaigan import cli
from xaigan import config as cfg_mod


def test_defaults_validate():
    cfg = cfg_mod.resolve()
    assert cfg.batch_size == 128 and cfg.lr_g == 2e-4 and cfg.label_real == 0.9 and cfg.xai == "none"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"fraction": 0}, r"fraction must be in \(0, 1\]"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"lr_g": -1e-4}, "lr_g must be > 0"),
        ({"dataset": "imagenet"}, "dataset must be one of cifar10, fashion-mnist, mnist or folder:PATH"),
        ({"model": "resnet"}, "model must be one of dcgan, mlp"),
        ({"subset": "last"}, "subset must be one of random, first"),
        ({"batch_size": "many"}, "batch_size must be of type int"),
        ({"learning_rate": 1}, "unknown config key.*learning_rate"),
        ({"xai": "gradcam"}, "xai must be one of none"),
        ({"lime_samples": 1}, "lime_samples must be >= 2"),
        ({"prior": "/no/such/prior.png"}, "prior: /no/such/prior.png is not a readable image"),
        ({"xai": "saliency", "xai_start": 1.0}, "starts the guidance after the last epoch"),
        ({"xai": "saliency", "xai_threshold": 0}, "xai_threshold 0 selects no sample"),
        ({"xai": "saliency", "prior_mode": "replace"}, "prior_mode replace uses the prior as the mask: set prior"),
    ],
)
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(cfg_mod.ConfigError, match=message):
        cfg_mod.resolve(override)


def test_layers_and_set_parsing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"fraction": 0.35, "epochs": 3}))
    cfg = cfg_mod.resolve(cfg_mod.load_yaml(path), cfg_mod.parse_assignments(["epochs=5", "data-dir=/x", "lr_d=1e-3"]))
    assert cfg.fraction == 0.35 and cfg.epochs == 5 and cfg.data_dir == "/x" and cfg.lr_d == 1e-3
    with pytest.raises(cfg_mod.ConfigError, match="key=value"):
        cfg_mod.parse_assignments(["epochs"])


def test_bad_yaml_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("- a list\n- not a mapping\n")
    with pytest.raises(cfg_mod.ConfigError, match="mapping"):
        cfg_mod.load_yaml(tmp_path / "bad.yaml")


def test_cli_rejects_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--fraction", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "fraction must be in (0, 1]" in err
    assert not out.exists()


def test_cli_unknown_key_via_set(tmp_path, capsys):
    assert cli.main(["train", "--set", "colour=red", "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key 'colour'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "start, epochs, expected",
    [(0.5, 3, 2), (0.5, 4, 2), (0.5, 5, 3), (0.5, 50, 25), (0.5, 51, 26), (0.29, 100, 29), (0.3, 10, 3), (0.0, 7, 0)],
)
def test_xai_start_epoch_matches_the_original_switch(start, epochs, expected):
    """The original (experiment.py) switches on at 0-based epoch (E + 1) / 2 for odd E and E / 2 for even E."""
    if start == 0.5:
        assert expected == ((epochs + 1) / 2 if epochs % 2 == 1 else epochs / 2)
    cfg = cfg_mod.resolve({"xai": "saliency", "xai_start": start, "epochs": epochs})
    assert cfg.xai_start_epoch == expected


def test_xai_start_that_rounds_up_to_the_last_epoch_is_refused():
    with pytest.raises(cfg_mod.ConfigError, match="never run"):
        cfg_mod.resolve({"xai": "saliency", "xai_start": 0.95, "epochs": 10})
