"""Data-parallel scans: units shared out across processes, one report equal to a single run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s2l_scan.parallel import World, free_port


@pytest.mark.parametrize("size", [1, 2, 3])
def test_units_are_shared_out_once(size: int) -> None:
    owners = [[r for r in range(size) if World(r, size).mine(unit)] for unit in range(7)]
    assert all(len(owner) == 1 for owner in owners)


def test_single_process_map_is_a_loop() -> None:
    assert World().map(lambda x: x * x, [3, 1, 2]) == [9, 1, 4]


def _scan(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_report(tiny_reference: Path,
                                                            tmp_path: Path) -> None:
    env = {**os.environ, "S2L_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    common = ["scan", str(tiny_reference / "model"), "--data", str(tiny_reference / "data"),
              "--probes", "noise", "--extraction-samples", "3", "--bootstrap", "100",
              "--batch-size", "4"]
    single = _scan(["-m", "s2l_scan", *common, "--report-json", str(tmp_path / "one.json")], env)
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-port", str(free_port())]
    double = _scan([*launcher, "-m", "s2l_scan", *common,
                    "--report-json", str(tmp_path / "two.json")], env)
    assert single.returncode in (0, 1, 6), single.stderr
    assert (tmp_path / "two.json").is_file(), double.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    # the two processes share the single run's unit cache: unit keys do not depend on the
    # process count, so every unit is found there
    assert two["timestamps"]["units_computed"] == "0"
    assert two["timestamps"]["units_reused"] == one["timestamps"]["units_computed"]
    for report in (one, two):
        report.pop("timestamps")
        report["config"].pop("report_json")
    assert one == two


@pytest.mark.slow
def test_two_processes_train_on_the_same_shared_sp_sets(tiny_reference: Path,
                                                         tmp_path: Path) -> None:
    # each run with its own empty store: the SP sets are the released model's extraction
    # images, sampled in slices across the processes and broadcast to every probe's process
    config = tmp_path / "s2l.toml"
    config.write_text('probes = ["lora"]\nbootstrap = 100\nextraction_samples = 3\n'
                      'sp_samples = 2\nextraction_steps = 3\nsp_steps = 3\nbatch_size = 4\n'
                      '[probe_options.lora]\nsteps = 2\n')
    common = ["scan", str(tiny_reference / "model"), "--data", str(tiny_reference / "data"),
              "--config", str(config)]
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-port", str(free_port())]
    reports = []
    for name, prefix in (("one", []), ("two", launcher)):
        env = {**os.environ, "S2L_CACHE_DIR": str(tmp_path / name), "OMP_NUM_THREADS": "1"}
        env.pop("WORLD_SIZE", None)
        run = _scan([*prefix, "-m", "s2l_scan", *common,
                     "--report-json", str(tmp_path / f"{name}.json")], env)
        assert (tmp_path / f"{name}.json").is_file(), run.stderr[-3000:]
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["timestamps"]["units_reused"] == "0"
        assert not (tmp_path / name / "units" / "sp-set").exists()
        report.pop("timestamps")
        report["config"].pop("report_json")
        reports.append(report)
    assert reports[0] == reports[1]


def test_device_and_dtype_options() -> None:
    from s2l_scan.config import make_config
    from s2l_scan.devices import resolve_device
    from s2l_scan.errors import UsageError

    assert make_config(dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(UsageError, match="dtype must be one of"):
        make_config(dtype="float64")
    assert resolve_device("cpu") == "cpu"
    import torch

    if not torch.cuda.is_available():
        assert resolve_device("auto") in ("cpu", "mps")
