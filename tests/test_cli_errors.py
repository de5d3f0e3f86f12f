"""How the command line reports what went wrong: bad input is one line and exit 2, a stopped run one line and exit 1,
and anything else an internal error (exit 1) whose traceback is kept in a file, or printed with -v."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaigan import cli
from xaigan.cli import build_parser, entry, study
from xaigan.errors import InputError, MissingFileError, RunError


def _divide_by_zero_deep_inside(args):
    return 1 / 0


def _missing_key(args):
    return {}["no-such-key"]


@pytest.fixture
def traceback_dir(tmp_path, monkeypatch):
    """A temp folder of the test's own, where internal errors leave their traceback."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _fail_with(monkeypatch, func):
    monkeypatch.setattr(study, "cmd_report", func)  # the parser binds the command at each build
    return ["report", "somewhere"]


def test_an_internal_error_says_so_and_keeps_its_traceback_in_a_file(monkeypatch, capsys, traceback_dir):
    assert cli.main(_fail_with(monkeypatch, _divide_by_zero_deep_inside)) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "xaigan: internal error: ZeroDivisionError: division by zero"
    assert len(lines) == 2 and "Traceback" not in err and "-v prints it" in lines[1]
    where = Path(re.search(r"the traceback is in (\S+\.txt)", lines[1]).group(1))
    assert where.parent == traceback_dir and where.name.startswith("xaigan-traceback-")
    saved = where.read_text()
    assert "Traceback (most recent call last)" in saved and "_divide_by_zero_deep_inside" in saved
    assert saved.rstrip().endswith("ZeroDivisionError: division by zero")


def test_a_plain_key_error_is_an_internal_error_not_bad_input(monkeypatch, capsys, traceback_dir):
    """A KeyError or ValueError from a bug used to read as the user's mistake (exit 2)."""
    assert cli.main(_fail_with(monkeypatch, _missing_key)) == 1
    err = capsys.readouterr().err
    assert err.startswith("xaigan: internal error: KeyError: 'no-such-key'\n") and "xaigan: error:" not in err
    assert len(list(traceback_dir.glob("xaigan-traceback-*.txt"))) == 1


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_prints_the_traceback_of_an_internal_error(monkeypatch, capsys, traceback_dir, where):
    argv = _fail_with(monkeypatch, _divide_by_zero_deep_inside)
    argv = ["-v", *argv] if where == "before" else [*argv, "-v"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "_divide_by_zero_deep_inside" in err
    assert "xaigan: internal error: ZeroDivisionError: division by zero" in err
    assert not list(traceback_dir.iterdir())  # printed, not saved


def test_the_message_goes_out_when_the_traceback_cannot_be_saved(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    assert cli.main(_fail_with(monkeypatch, _divide_by_zero_deep_inside)) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "xaigan: internal error: ZeroDivisionError: division by zero"
    assert "could not be saved" in lines[1] and "-v prints it" in lines[1]


def test_an_error_before_the_command_runs_is_an_internal_error_too(monkeypatch, capsys, traceback_dir):
    def broken_parser():
        raise ImportError("a module the parser needs is broken")

    monkeypatch.setattr(entry, "build_parser", broken_parser)
    assert cli.main(["report", "somewhere"]) == 1
    assert capsys.readouterr().err.startswith("xaigan: internal error: ImportError: a module the parser needs")
    assert len(list(traceback_dir.glob("xaigan-traceback-*.txt"))) == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError("bad value for --thing"), 2),
        (MissingFileError("no file runs/x/config.yaml"), 2),
        (RunError("stopped at step 7: non-finite loss"), 1),
    ],
)
def test_project_errors_are_one_line(monkeypatch, capsys, traceback_dir, error, code):
    def raise_it(args):
        raise error

    assert cli.main(_fail_with(monkeypatch, raise_it)) == code
    assert capsys.readouterr().err == f"xaigan: error: {error}\n"
    assert not list(traceback_dir.iterdir())


def test_a_missing_run_is_bad_input(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nowhere"), "--n", "100"]) == 2
    err = capsys.readouterr().err
    assert err == f"xaigan: error: {tmp_path / 'nowhere'} holds no run (no config.yaml)\n"


@pytest.mark.parametrize("argv", [["report"], ["train", "--resume"], ["evaluate", "--checkpoint", "nope.pt"]])
def test_a_folder_or_file_that_is_not_what_the_command_needs_is_bad_input(tmp_path, capsys, argv):
    """Raised deep in report, factory and evaluate: one line, exit 2 (not an OS error, not an internal error)."""
    run = tmp_path / "run"
    run.mkdir()
    if argv[0] == "evaluate":
        (run / "config.yaml").write_text("dataset: mnist\nepochs: 1\n")
        args = [argv[0], str(run), *argv[1:]]
    else:
        args = [*argv, str(run)]
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("xaigan: error: "), err


def _bad_inputs(tmp_path):
    """Bad input met inside the library: (what to call, the type callers caught before it was an InputError)."""
    from xaigan import augment, data, models
    from xaigan.io import load_torch
    from xaigan.rundir import RunDir

    garbled, listed = RunDir(tmp_path / "garbled"), RunDir(tmp_path / "listed")
    for run in (garbled, listed):
        run.path.mkdir()
    garbled.config_path.write_text("lr_d: [1, 2\n")
    garbled.data_path.write_text('{"n": 3')
    listed.config_path.write_text("- a\n- b\n")
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(tmp_path / "imgs" / "a.png")
    folder = f"folder:{tmp_path / 'imgs'}"
    return {
        "unknown dataset": (lambda: data.load("mnsit"), KeyError),
        "nothing held out": (lambda: data.load_heldout(folder), ValueError),
        "no run": (lambda: RunDir(tmp_path / "nowhere").read_config(), FileNotFoundError),
        "garbled config": (garbled.read_config, ValueError),
        "config not a mapping": (listed.read_config, ValueError),
        "garbled data.json": (garbled.read_data_meta, ValueError),
        "no data.json": (listed.read_data_meta, FileNotFoundError),
        "no checkpoint": (lambda: load_torch(tmp_path / "none.pt"), FileNotFoundError),
        "unknown augmentation": (lambda: augment.parse_policy("color,blur"), ValueError),
        "dcgan size": (lambda: models.build("dcgan", 1, 20), ValueError),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown dataset",
        "nothing held out",
        "no run",
        "garbled config",
        "config not a mapping",
        "garbled data.json",
        "no data.json",
        "no checkpoint",
        "unknown augmentation",
        "dcgan size",
    ],
)
def test_bad_input_met_in_the_library_is_an_input_error(tmp_path, case):
    call, old_type = _bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as raised:
        call()
    assert isinstance(raised.value, old_type)  # callers that caught the old type still do
    assert "\n" not in str(raised.value) and str(raised.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "RUN", "--n", "5"],
        ["copying", "RUN", "--cells", "0"],
        ["copying", "RUN", "--n", "0"],
        ["sample", "RUN", "--n", "0"],
        ["train", "--nproc", "0"],
    ],
)
def test_counts_too_small_to_use_are_refused_up_front(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xaigan: error: --") and "at least" in err


# -- flags: --nproc, and no abbreviations --------------------------------------------------------------------------


def test_nproc_is_the_process_count_and_device_the_config_key():
    args = build_parser().parse_args(["train", "--device", "cpu", "--nproc", "2"])
    assert args.nproc == 2 and args.cfg_device == "cpu"
    assert build_parser().parse_args(["train"]).nproc == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dev", "cuda"],  # was ambiguous between --device and --devices
        ["train", "--devices", "2"],  # the old name of --nproc
        ["train", "--npro", "2"],
        ["evaluate", "RUN", "--feat", "domain"],
        ["--verb", "report", "D"],
    ],
)
def test_flags_are_never_abbreviated(argv, capsys):
    """A prefix that works today could turn ambiguous, or mean another flag, when a config key is added."""
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unrecognized arguments" in err and "ambiguous" not in err
    assert [word for word in argv if word.startswith("--")][0] in err
