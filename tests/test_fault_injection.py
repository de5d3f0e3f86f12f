"""A seeded subset of the fault-injection loop (the full loop: ``python -m tests.fault_injection``), and checks
that its comparisons catch what they must."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tests import fault_injection as fi

# One fault of each kind, spread over the four jobs; moments drawn from a fixed seed.
SUBSET = [
    ("train", "sigkill-write"),
    ("train", "signal"),
    ("train", "disk-full"),
    ("evaluate", "sigkill-write"),
    ("reproduce", "sigkill-time"),
    ("report", "read-only"),
]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    jobs = fi.Jobs(root)
    return root, {sc.name: sc for sc in jobs.scenarios()}, fi.build_references(root, jobs)


@pytest.mark.slow
@pytest.mark.parametrize(("job", "kind"), SUBSET)
def test_every_fault_leaves_readable_files_and_a_rerun_identical_to_an_uninterrupted_one(references, job, kind):
    root, scenarios, refs = references
    rng = random.Random(f"{job}-{kind}")
    trial = fi.run_trial(root, scenarios[job], refs[job], kind, rng, SUBSET.index((job, kind)))
    assert trial.survived, trial
    assert trial.stale_temps == 0
    if kind in ("disk-full", "read-only"):
        assert trial.fault_rc == 1 and trial.error_line.startswith("xaigan: error: cannot read or write"), trial
    if kind == "signal":
        assert trial.fault_rc in (0, 130, 143, -2, -15), trial


@pytest.mark.slow
def test_the_comparison_catches_a_changed_or_torn_file(tmp_path):
    """The harness's own checks: a bit flipped in a checkpoint tensor changes the digest, a torn checkpoint or
    JSON file does not read back, timings are ignored, a torn last metrics line is tolerated (the reader skips it)."""
    state = {"G": {"w": torch.arange(6.0)}, "step": 3, "wall_s": 1.0}
    torch.save(state, tmp_path / "a.pt")
    before = fi.read_whole(tmp_path / "a.pt")
    torch.save({**state, "wall_s": 2.0}, tmp_path / "a.pt")
    assert fi.read_whole(tmp_path / "a.pt") == before  # timing only
    state["G"]["w"][2] = torch.nextafter(state["G"]["w"][2], torch.tensor(10.0))
    torch.save(state, tmp_path / "a.pt")
    assert fi.read_whole(tmp_path / "a.pt") != before
    payload = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "a.pt").write_bytes(payload[: len(payload) // 2])
    (tmp_path / "e.json").write_text('{"fid": 1.0, "n"')
    (tmp_path / "m.jsonl").write_text(json.dumps({"step": 1}) + "\n" + '{"step": 2, "d_lo')
    n, bad = fi.check_readable(tmp_path)
    assert n == 3 and sorted(b.split(":")[0] for b in bad) == ["a.pt", "e.json"]
