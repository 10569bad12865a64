"""Resumable scans and determinism (issue 6): a scan killed mid-way resumes from its finished
units and reports exactly what an uninterrupted scan reports; two runs on the same inputs give
byte-identical JSON apart from the run block (``timestamps``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s2l_scan.cli import main
from s2l_scan.errors import ExitCode

# Small but with every kind of unit: scores, released generations, SP sets, probe outcomes.
# LoRA training comes last and takes a few seconds, so a kill after the first probe unit lands
# before the scan ends.
CONFIG = """attacks = ["loss"]
bootstrap = 50
extraction_samples = 2
extraction_steps = 2
probes = ["noise", "lora"]
probe_options = { lora = { steps = 10 } }
sp_samples = 4
sp_steps = 2
max_auc = 1.0
max_tpr = 1.0
max_amplification = 1.0
"""
RUN_BLOCK = re.compile(r'\n  "timestamps": \{[^{}]*\},?')


def _argv(ref: Path) -> list[str]:
    # relative paths: each run works in its own folder and the configs it reports are equal
    return ["scan", str(ref / "model"), "--data", str(ref / "data"), "--config", "s2l.toml",
            "--cache-dir", "units", "--report-json", "report.json"]


def _folder(tmp: Path, name: str) -> Path:
    folder = tmp / name
    folder.mkdir()
    (folder / "s2l.toml").write_text(CONFIG)
    return folder


def _subprocess(ref: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "s2l_scan", *_argv(ref)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _units(folder: Path) -> dict[str, int]:
    """Finished units (relative path → mtime); hidden temporary files are not units."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in (folder / "units").rglob("*.npz") if not p.name.startswith(".")}


def _without_run_block(report: Path) -> str:
    text = report.read_text()
    assert len(RUN_BLOCK.findall(text)) == 1
    return RUN_BLOCK.sub("", text)


def _scan_in(folder: Path, ref: Path) -> int:
    """The CLI in this process (no second import of torch and diffusers), run from ``folder``."""
    here = Path.cwd()
    os.chdir(folder)
    try:
        return main(_argv(ref))
    finally:
        os.chdir(here)


def _run_block(report: Path) -> dict[str, str]:
    block: dict[str, str] = json.loads(report.read_text())["timestamps"]
    return block


@pytest.fixture(scope="module")
def uninterrupted(tiny_reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _folder(tmp_path_factory.mktemp("resume"), "uninterrupted")
    assert _scan_in(folder, tiny_reference) == ExitCode.INCONCLUSIVE  # 6 per class
    return folder


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_scan_resumes_from_finished_units(tiny_reference: Path, uninterrupted: Path,
                                                 tmp_path: Path, how: signal.Signals) -> None:
    folder = _folder(tmp_path, "killed")
    scan = _subprocess(tiny_reference, folder)
    deadline = time.monotonic() + 300
    while not any(name.startswith("units/probe/") for name in _units(folder)):
        assert scan.poll() is None, "the scan ended before it could be killed"
        assert time.monotonic() < deadline, "no probe unit after 300 s"
        time.sleep(0.05)
    scan.send_signal(how)
    output = scan.communicate(timeout=120)[0].decode()
    assert scan.returncode == (128 + signal.SIGTERM if how == signal.SIGTERM else -signal.SIGKILL)
    if how == signal.SIGTERM:
        assert "terminated (SIGTERM)" in output and "Traceback" not in output
    assert not (folder / "report.json").exists()
    finished = _units(folder)
    assert len(finished) < len(_units(uninterrupted)), "nothing was left to resume"

    assert _scan_in(folder, tiny_reference) == ExitCode.INCONCLUSIVE  # 6 per class
    run = _run_block(folder / "report.json")
    # every unit finished before the kill was reused, none was rewritten, and the rerun
    # computed only what was missing: the same units as an uninterrupted scan
    assert int(run["units_reused"]) >= len(finished) - sum("sp-set" in n for n in finished)
    assert int(run["units_reused"]) + int(run["units_computed"]) <= len(_units(uninterrupted))
    after = _units(folder)
    assert {name: after[name] for name in finished} == finished
    assert set(after) == set(_units(uninterrupted))
    assert _without_run_block(folder / "report.json") == \
        _without_run_block(uninterrupted / "report.json")


def test_rerun_reuses_every_unit(tiny_reference: Path, uninterrupted: Path) -> None:
    before = _units(uninterrupted)
    assert _scan_in(uninterrupted, tiny_reference) == ExitCode.INCONCLUSIVE  # 6 per class
    run = _run_block(uninterrupted / "report.json")
    assert run["units_computed"] == "0" and int(run["units_reused"]) > 0
    assert _units(uninterrupted) == before


def test_two_runs_give_byte_identical_json_apart_from_the_run_block(
        tiny_reference: Path, uninterrupted: Path, tmp_path: Path) -> None:
    # a second, independent run that computes everything again, in its own cache folder
    folder = _folder(tmp_path, "second")
    assert _scan_in(folder, tiny_reference) == ExitCode.INCONCLUSIVE  # 6 per class
    assert _run_block(folder / "report.json")["units_reused"] == "0"
    assert _without_run_block(folder / "report.json") == \
        _without_run_block(uninterrupted / "report.json")


def test_verdict_is_stable_over_bootstrap_seeds(tiny_reference: Path, uninterrupted: Path
                                                ) -> None:
    """Default gate thresholds, three bootstrap seeds: the CIs move, the verdict does not."""
    defaults = ["--max-auc", "0.6", "--max-tpr", "0.1", "--max-amplification", "0.05"]
    reports = []
    for seed in (1, 2, 3):
        here = Path.cwd()
        os.chdir(uninterrupted)
        try:
            code = main([*_argv(tiny_reference), *defaults, "--bootstrap-seed", str(seed),
                         "--report-json", f"seed-{seed}.json"])
        finally:
            os.chdir(here)
        reports.append((code, json.loads((uninterrupted / f"seed-{seed}.json").read_text())))
    assert len({code for code, _ in reports}) == 1
    assert len({json.dumps(report["verdict"]) for _, report in reports}) == 1
    assert len({json.dumps([row["auc"] for row in report["results"]])
                for _, report in reports}) == 1
    assert len({json.dumps([row["auc_ci"] for row in report["results"]])
                for _, report in reports}) == 3, "the bootstrap seed did not reach the CIs"


def test_score_units_do_not_depend_on_the_sets_batched_with_them(tiny_reference: Path,
                                                                tmp_path: Path) -> None:
    """A scan of one domain stores its score units; a scan of every domain reuses them, scores
    only the other domain (in batches that would otherwise have mixed both) and reports what a
    scan from an empty cache reports."""
    def scan(folder: str, *extra: str) -> str:
        (tmp_path / folder).mkdir(exist_ok=True)
        here = Path.cwd()
        os.chdir(tmp_path / folder)
        try:
            assert main(["scan", str(tiny_reference / "model"), "--data",
                         str(tiny_reference / "data"), "--probes", "", "--extraction-samples",
                         "0", "--bootstrap", "50", "--batch-size", "3", "--max-auc", "1",
                         "--max-tpr", "1", "--cache-dir", "units", "--report-json",
                         "report.json", *extra]) == ExitCode.INCONCLUSIVE
        finally:
            os.chdir(here)
        return str(tmp_path / folder / "report.json")

    scan("resumed", "--domains", "identity-0")
    resumed = scan("resumed")
    fresh = scan("fresh")
    attacks = 3  # loss, secmi, pia: one unit per attack, domain and members / non-members
    assert _run_block(Path(resumed))["units_reused"] == str(2 * attacks)
    assert _run_block(Path(resumed))["units_computed"] == str(2 * attacks)
    assert _without_run_block(Path(resumed)) == _without_run_block(Path(fresh))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_score_unit_is_recomputed_to_the_clean_report(
        tiny_reference: Path, tmp_path: Path, damage: str) -> None:
    """Issue 29: a score unit truncated, or rewritten with another array header, is detected
    (its digest) and recomputed in the batches of a clean scan, so the report is byte-identical
    to the clean one's (recomputed alone, its set's batches had another size and 12 scores
    moved by up to 1.5e-6)."""
    import shutil

    import numpy as np

    def scan(folder: Path) -> Path:
        here = Path.cwd()
        os.chdir(folder)
        try:
            assert main(["scan", str(tiny_reference / "model"), "--data",
                         str(tiny_reference / "data"), "--probes", "", "--extraction-samples",
                         "0", "--bootstrap", "50", "--max-auc", "1", "--max-tpr", "1",
                         "--cache-dir", "units", "--report-json", "report.json"]) == 0
        finally:
            os.chdir(here)
        return folder / "report.json"

    (tmp_path / "clean").mkdir()
    clean = scan(tmp_path / "clean")
    shutil.copytree(tmp_path / "clean", tmp_path / "damaged")
    (tmp_path / "damaged" / "report.json").unlink()
    unit = sorted((tmp_path / "damaged" / "units" / "scores").rglob("*.npz"))[0]
    if damage == "truncated":
        unit.write_bytes(unit.read_bytes()[: unit.stat().st_size // 2])
    else:
        with np.load(unit) as stored:
            body = {name: np.asarray(stored[name]) for name in stored.files}
        name = next(name for name in body if name.startswith("v_"))
        body[name] = body[name].view(np.int64 if body[name].itemsize == 8 else np.int32)
        with unit.open("wb") as out:
            np.savez(out, **body)
    damaged = scan(tmp_path / "damaged")
    assert _run_block(damaged)["units_computed"] == "1"
    assert _without_run_block(damaged) == _without_run_block(clean)
