"""The architecture holds: layers point down, one schema documents every key, one object owns the run folder."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xaigan import augment, config, data, explain, models
from xaigan.cli import build_parser
from xaigan.metrics import features
from xaigan.registry import Registry
from xaigan.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "xaigan"


def test_import_layers_and_no_cycles():
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.is_file():
        pytest.skip("import-linter not installed")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count(" KEPT") == 2


def test_no_source_file_over_400_lines():
    long = {p.name: n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_package_inits_only_re_export():
    """Classes and logic live in named modules; a package's ``__init__.py`` says what it is and re-exports."""
    heavy = {}
    for path in SRC.rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        defined = [n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        lines = len(path.read_text().splitlines())
        if defined or lines > 70:
            heavy[str(path.relative_to(SRC))] = (lines, defined)
    assert not heavy


def test_only_the_run_folder_spells_its_layout():
    files = [RunDir.CONFIG, RunDir.DATA, RunDir.METRICS, RunDir.EVAL, RunDir.SUMMARY, "last.pt", "best.pt"]
    folders = [RunDir.CHECKPOINTS, RunDir.SAMPLES, RunDir.EXPLANATIONS, RunDir.TENSORBOARD]
    as_file = re.compile("|".join(f"[\"'/]{re.escape(n)}[\"']" for n in files))
    as_folder = re.compile("|".join(rf"/ [\"']{re.escape(n)}[\"']" for n in folders))  # a path join
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        for line in path.read_text().splitlines():
            if as_file.search(line) or as_folder.search(line):
                offenders.append(f"{path.relative_to(SRC)}: {line.strip()}")
    # torch.hub keeps downloaded weights in its own "checkpoints" folder: not a run folder.
    assert [o for o in offenders if not o.startswith("metrics/inception.py")] == []


def test_train_help_documents_every_config_key(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option in config.schema():
        flag = "--" + option.name.replace("_", "-")
        assert f"{flag} " in text, flag
        assert option.help.split(";")[0][:30] in text, option.name
        if option.default is None:  # unset: the help says what that means, or "(default: unset)"
            assert "default" in option.help or f"{flag} STR {option.help} (default: unset)" in text, option.name
        else:
            assert f"(default: {option.default!r})" in text, option.name
    assert "one of none, deeplift, deeplift-shap" in text  # explainers are discoverable from --help


def test_docs_config_md_is_generated_from_the_schema():
    assert (ROOT / "docs" / "config.md").read_text() == config.markdown(), (
        "run: python -m xaigan.config > docs/config.md"
    )


def test_every_flag_sets_its_key(tmp_path):
    from xaigan.cli.run import config_layers

    args = build_parser().parse_args(["train", "--lr-d", "1e-3", "--xai", "lime", "--xai-strict", "--quiet"])
    cfg = config.resolve(*config_layers(args))
    assert cfg.lr_d == 1e-3 and cfg.xai == "lime" and cfg.xai_strict is True and cfg.progress is False
    assert cfg.lr_g == config.Config().lr_g  # unset flags keep the defaults


def test_a_flag_value_is_the_string_typed_not_yaml(tmp_path):
    """Read as YAML, "--name 2024" was a number (refused), "--name yes" a bool, and "runs #2" lost its "#2"."""
    from xaigan.cli.run import config_layers

    folder = tmp_path / "runs #2"
    folder.mkdir()
    argv = ["train", "--name", "2024", "--data-dir", str(folder), "--xai-strict", "--fraction", "0.5"]
    cfg = config.resolve(*config_layers(build_parser().parse_args(argv)))
    assert cfg.name == "2024" and cfg.data_dir == str(folder) and cfg.xai_strict is True and cfg.fraction == 0.5
    cfg = config.resolve(*config_layers(build_parser().parse_args(["train", "--name", "yes"])))
    assert cfg.name == "yes"


@pytest.mark.parametrize(
    "registry", [data.REGISTRY, models.REGISTRY, explain.REGISTRY, features.REGISTRY, augment.REGISTRY]
)
def test_one_registry_style_refuses_duplicates(registry):
    assert isinstance(registry, Registry) and len(registry) >= 2
    name = registry.names()[0]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(name, registry.get(name))
    with pytest.raises(KeyError, match="available: "):
        registry.get("no-such-name")


def test_old_config_without_new_keys_still_resumes(tmp_path):
    stored = config.Config().to_dict()
    for key in ("d_output", "xai_patience", "xai_strict"):
        del stored[key]
    cfg = config.Config.from_dict(stored)
    assert cfg.d_output == "auto" and cfg.xai_patience == 50 and cfg.xai_strict is False


def _private_imports(path: Path, root: Path) -> list[str]:
    """``from M import _name`` (another module's private name) and imports of a ``_module`` from outside its
    package, in one file (``root``: the folder its dotted name starts from)."""
    import ast

    here = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # relative: resolved against this file's package
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        if not module.startswith("xaigan"):
            continue
        parts = module.split(".")
        for i, part in enumerate(parts):
            owner = ".".join(parts[:i])  # the package a private module belongs to
            if part.startswith("_") and not (package == owner or package.startswith(owner + ".")):
                found.append(f"{here}: imports private module {module}")
        private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
        found += [f"{here}: imports {name} from {module}" for name in private]
    return found


def test_no_module_imports_another_modules_private_names():
    """A name starting with ``_`` belongs to its module (and a ``_module`` to its package): used elsewhere, it is
    public and must be named so."""
    src = Path(__file__).resolve().parent.parent / "src"
    scripts = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted((src / "xaigan").rglob("*.py")):
        found += _private_imports(path, src)
    for folder in ("scripts", "bench"):
        for path in sorted((scripts / folder).glob("*.py")):
            found += _private_imports(path, scripts)
    assert not found, "\n".join(found)


def test_the_private_import_scan_finds_what_it_should(tmp_path):
    (tmp_path / "xaigan" / "guidance").mkdir(parents=True)
    (tmp_path / "xaigan" / "explain").mkdir(parents=True)
    outside = tmp_path / "xaigan" / "guidance" / "x.py"
    outside.write_text("from xaigan.explain._base import y\nfrom xaigan.train.step import _step, ok\n")
    inside = tmp_path / "xaigan" / "explain" / "y.py"
    inside.write_text("from xaigan.explain._base import z\nfrom ._chain import w\nfrom xaigan import __version__\n")
    assert _private_imports(outside, tmp_path) == [
        "xaigan.guidance.x: imports private module xaigan.explain._base",
        "xaigan.guidance.x: imports _step from xaigan.train.step",
    ]
    assert _private_imports(inside, tmp_path) == []
