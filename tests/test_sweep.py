"""The budgeted worst-case sweep: budget parsing, the scheduler, and a sweep inside a scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
from s2l_scan.plan import ScanInputs, build_plan
from s2l_scan.probing import sweep_specs
from s2l_scan.session import run_scan
from s2l_scan.sweep import SweepLog, budgeted, candidates, parse_budget


@pytest.mark.parametrize(("text", "seconds"), [("600", 600), ("90s", 90), ("10m", 600),
                                               ("1.5h", 5400), (" 2m ", 120)])
def test_budget_units(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "10 minutes", "1d", "m", "nan"])
def test_bad_budgets_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="sweep budget"):
        parse_budget(text)


def test_a_bad_budget_in_the_config_names_it() -> None:
    with pytest.raises(UsageError, match=r"sweep budget.*'soon'"):
        make_config(sweep="soon")


def test_candidates_change_one_knob_at_a_time() -> None:
    space = {"lora": {"rank": [1, 8], "lr": [1e-4]}, "noise": {"sigma": [1e-3]}}
    assert candidates(space) == [("lora", {"rank": 1}), ("lora", {"rank": 8}),
                                 ("lora", {"lr": 1e-4}), ("noise", {"sigma": 1e-3})]


class _Clock:
    """A fake clock: each item 'costs' what the test says when it is consumed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(items: list[tuple[str, tuple[str, float]]], budget: float) -> SweepLog:
    clock, log = _Clock(), SweepLog(budget)
    for _kind, cost in budgeted(items, budget, log, cost_key=lambda item: item[0], clock=clock):
        clock.now += cost
    return log


def test_budget_stops_the_sweep_and_skips_what_would_overrun() -> None:
    items = [("a1", ("a", 10.0)), ("a2", ("a", 10.0)), ("a3", ("a", 10.0)), ("b1", ("b", 1.0))]
    log = _run(items, budget=25.0)
    # a1 and a2 fit (20 s); a3 is predicted at 10 s → 30 > 25, skipped; b's first run is
    # unknown (predicted 0) and starts because budget is left.
    assert log.tried == ["a1", "a2", "b1"]
    assert log.skipped == ["a3"]
    assert log.seconds == 21.0


def test_nothing_starts_once_the_budget_is_spent() -> None:
    items = [("a1", ("a", 30.0)), ("b1", ("b", 1.0)), ("c1", ("c", 1.0))]
    log = _run(items, budget=25.0)
    assert log.tried == ["a1"] and log.skipped == ["b1", "c1"]


def test_sweep_specs_label_the_knob_and_keep_scalar_probe_options() -> None:
    config = make_config(probes=["lora"], probe_options={"lora": {"steps": 7}},
                         sweep="1m", sweep_space={"lora": {"rank": [2]}})
    [(label, spec)] = sweep_specs(config)
    assert label == spec.label == "sweep:lora(rank=2)"
    assert spec.probe.rank == 2 and spec.probe.steps == 7  # type: ignore[attr-defined]


def test_an_unknown_knob_in_the_sweep_space_names_the_knobs() -> None:
    config = make_config(sweep="1m", sweep_space={"lora": {"colour": [1]}})
    with pytest.raises(UsageError, match=r"no knob.*rank"):
        sweep_specs(config)


def test_sweep_rows_are_probe_rows_gated_like_the_rest(tiny_reference: Path) -> None:
    config = make_config(
        attacks=["loss"], extraction_samples=0, probes=[], sweep="1h", bootstrap=50,
        sweep_space={"noise": {"sigma": [1e-3, 1e-2]}}, max_amplification=-1.0, family_alpha=1.0)
    report = run_scan(ScanInputs(model=str(tiny_reference / "model"),
                                 data=str(tiny_reference / "data")), config)
    labels = {row.probe for row in report.results if row.probe}
    assert labels == {"sweep:noise(sigma=0.001)", "sweep:noise(sigma=0.01)"}
    sweep_rows = [row for row in report.results if row.probe]
    assert all(row.delta_auc is not None for row in sweep_rows)
    assert all(row.settings["probe"]["sweep"]["tried"] == 2 for row in sweep_rows)
    # max_amplification -1 fails every Δ > -1: the sweep's rows go through the same gate.
    assert not any(row.passed for row in sweep_rows)


def test_a_bad_sweep_space_is_refused_before_any_scan_work() -> None:
    config = make_config(sweep="1m", sweep_space={"lora": {"rank": [0]}})
    with pytest.raises(UsageError, match=r"rank must be an integer"):
        build_plan(ScanInputs("reference"), config)
