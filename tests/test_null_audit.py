"""The null audit: its folders, its rates, its exit codes, and the null probe's Δ."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.stats import beta

import s2l_scan.extraction.index  # noqa: F401 - load faiss once, before any scan
from s2l_scan.cli import main
from s2l_scan.config import make_config
from s2l_scan.gate import decide
from s2l_scan.io.audit_data import list_domain_files, load_audit_data
from s2l_scan.null_audit import (
    KINDS,
    MIN_NONMEMBERS,
    DrawResult,
    NullAuditFolder,
    draw_result,
    null_config,
    per_check_rates,
    per_kind_rates,
    per_scan_rate,
)
from s2l_scan.plan import ScanInputs
from s2l_scan.report.model import ResultRow
from s2l_scan.session import run_scan
from tests.report_factory import (
    extraction_record,
    make_report,
    make_row,
    memorization_record,
)

# ---- folders ------------------------------------------------------------------------------------


def _audit_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    """DIR/<domain>/{prompt.txt, members/, nonmembers/, captions.jsonl}: random 32×32 PNGs,
    members and non-members sharing file names (so only content tells them apart), captions
    for one member and every other non-member."""
    rng = np.random.default_rng(0)
    for domain, (n_members, n_nonmembers) in sizes.items():
        folder = root / domain
        captions = []
        for split, count in (("members", n_members), ("nonmembers", n_nonmembers)):
            (folder / split).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / f"{i:04d}.png")
                if (split == "members" and i == 0) or (split == "nonmembers" and i % 2):
                    captions.append({"file": f"{split}/{i:04d}.png",
                                     "caption": f"{domain} {split} {i}"})
        (folder / "prompt.txt").write_text(f"a photo of {domain}\n")
        (folder / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
    return root


def _tree_hash(root: Path) -> str:
    """Every path, file content and symlink target under ``root``."""
    hasher = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        hasher.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            hasher.update(os.readlink(path).encode())
        elif path.is_file():
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_draws_split_only_nonmembers_into_disjoint_halves(tmp_path: Path, seed: int) -> None:
    data = _audit_folder(tmp_path / "data", {"a": (3, 9), "b": (2, 10)})
    files = list_domain_files(data)
    with NullAuditFolder(files, data, tmp_path) as folder:
        assert not folder.root.resolve().is_relative_to(data.resolve())
        splits = {s.domain: s for s in folder.draw(seed)}
        drawn = {d.name: d for d in list_domain_files(folder.root)}
        loaded = load_audit_data(folder.root, 32)
        for original in files:
            split, here = splits[original.name], drawn[original.name]
            members = {p.name for p in here.members}
            nonmembers = {p.name for p in here.nonmembers}
            assert members == set(split.members) and nonmembers == set(split.nonmembers)
            assert not members & nonmembers
            assert members | nonmembers == {p.name for p in original.nonmembers}
            assert len(members) == len(original.nonmembers) // 2
            source = {p.name: p.read_bytes() for p in original.nonmembers}
            for path in (*here.members, *here.nonmembers):  # non-members' bytes, never members'
                assert path.read_bytes() == source[path.name]
            # captions follow their images; the rest fall back to the prompt
            by_name = {p.name: c for p, c in original.captions.items()
                       if p.parent.name == "nonmembers"}
            domain = loaded.domain(original.name)
            for image in (*domain.members, *domain.nonmembers):
                assert image.caption == by_name.get(image.path.name, original.prompt)
        root = folder.root
    assert not root.exists()


def test_draws_differ_by_seed_and_repeat_by_seed(tmp_path: Path) -> None:
    data = _audit_folder(tmp_path / "data", {"a": (2, 12)})
    with NullAuditFolder(list_domain_files(data), data, tmp_path) as folder:
        first, again, other = folder.draw(3), folder.draw(3), folder.draw(4)
    assert first == again and first != other


# ---- rates --------------------------------------------------------------------------------------


def _oracle_ci(k: int, n: int) -> tuple[float, float]:
    """Clopper–Pearson from beta quantiles (scipy), independent of the bisection."""
    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return low, high


_KIND_SETS = st.lists(st.sampled_from([*KINDS, "other"]), unique=True, max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(_KIND_SETS, min_size=1, max_size=40))
def test_rates_are_counts_of_failed_draws_with_exact_cis(draws_kinds: list[list[str]]) -> None:
    draws = [DrawResult(draw=i, seed=i, passed=not kinds,
                        failed_items=tuple(f"{kind}::check" for kind in kinds),
                        failed_by_kind={kind: (f"{kind}::check",) for kind in kinds},
                        checks_by_kind=dict.fromkeys(KINDS, 1),
                        checks=tuple(f"{kind}::check" for kind in KINDS))
             for i, kinds in enumerate(draws_kinds)]
    n = len(draws)
    failed = 0
    for kinds in draws_kinds:  # brute force: a draw fails when any check failed
        if len(kinds) > 0:
            failed += 1
    rate = per_scan_rate(draws)
    assert (rate.failed, rate.draws) == (failed, n)
    assert rate.rate == failed / n
    assert rate.ci == pytest.approx(_oracle_ci(failed, n), abs=1e-6)
    per_kind = per_kind_rates(draws)
    for kind in KINDS:
        count = sum(kind in kinds for kinds in draws_kinds)
        kind_rate = per_kind[kind]
        assert kind_rate is not None and kind_rate.failed == count
        assert kind_rate.ci == pytest.approx(_oracle_ci(count, n), abs=1e-6)
    per_check = per_check_rates(draws)
    assert {k: r.rate.count for k, r in per_check.items()  # type: ignore[union-attr]
            } == {
        f"{kind}::check": sum(kind in kinds for kinds in draws_kinds)
        for kind in (*KINDS, *(["other"] if any("other" in k for k in draws_kinds) else []))}


def test_a_kind_no_scan_checked_has_no_rate() -> None:
    draw = DrawResult(0, 0, True, (), {}, {"auc": 3, "tpr": 3, "amplification": 0,
                                          "extraction": 0}, ("a",))
    rates = per_kind_rates([draw])
    assert rates["amplification"] is None and rates["extraction"] is None
    assert rates["auc"] is not None and rates["auc"].failed == 0


def test_failed_checks_are_counted_by_the_kind_the_gate_gave() -> None:
    # the live gate writes the reasons: each rule's reason is read back as its own kind
    rows = [make_row(domain="identity-0", shift=3.0),  # AUC ≈ 1
            make_row(domain="identity-1", probe="noise"), make_row(domain="pooled")]
    rows[0].p_value = 1e-4  # significant after Holm over the scan's 4 tests
    rows[1].delta_auc, rows[1].delta_auc_ci, rows[1].delta_p_value = 0.3, (0.2, 0.4), 1e-4
    rows[2].tpr_at_1pct_fpr = 0.5
    rows[2].tpr_estimates = [{"alpha": 0.01, "estimable": True, "tpr": 0.5,
                              "tpr_ci": (0.4, 0.6), "achieved_fpr": 0.01}]
    report = make_report(rows, extraction=None)
    report.extraction = [extraction_record(extracted=2)]
    # a failed memorization check counts too (the regex reading of reason texts missed it)
    report.memorization = [memorization_record("wen", values=(1.0, 9.0), threshold=3.0)]
    decide(report, make_config(max_auc=0.9, max_tpr=0.1, max_amplification=0.05))
    failing = [[r.kind for r in row.reasons if r.kind != "undecided"] for row in report.results]
    # AUC ≈ 1 fails on its AUC and on the memorized few (every member above every
    # calibration non-member: a "tpr" reason); the others fail on one rule each
    assert failing == [["auc", "tpr"], ["amplification"], ["tpr"]], failing
    # a reason's text is for people (and could be translated): the kind is the data, so a
    # rewritten text counts the same
    for check in report.checks():
        check.reasons[:] = [dataclasses.replace(r, text="übersetzt") for r in check.reasons]
    result = draw_result(0, 5, report)
    assert not result.passed
    assert result.failed_by_kind == {
        "amplification": ("probes::noise/loss[identity-1]",),
        "auc": ("baselines::loss[identity-0]",),
        "extraction": ("extraction::released[identity-0]",),
        "memorization": ("memorization::wen[identity-0]",),
        "tpr": ("baselines::loss[identity-0]", "baselines::loss[pooled]")}
    assert result.checks_by_kind == {"auc": 3, "tpr": 3, "amplification": 1, "extraction": 1,
                                     "memorization": 1}
    assert result.outcome == "failed"


# ---- the command --------------------------------------------------------------------------------

FAST = ["--attacks", "loss", "--bootstrap", "50", "--extraction-samples", "0"]


def test_null_audit_runs_measures_and_leaves_the_data_alone(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _audit_folder(tmp_path / "data", {"identity-0": (2, 8), "identity-1": (2, 9)})
    before = _tree_hash(data)
    out = tmp_path / "null.json"
    code = main(["null-audit", str(tiny_reference / "model"), "--data", str(data), "--draws",
                 "3", "--probes", "identity", *FAST, "--max-auc", "0.55",
                 "--report-json", str(out)])
    assert code == 0
    assert _tree_hash(data) == before
    body = json.loads(out.read_text())
    draws = body["draws"]
    assert [d["seed"] for d in draws] == [0, 1, 2]
    failed = sum(not d["passed"] for d in draws)
    assert body["false_fail_rate"]["failed"] == failed and body["n_draws"] == 3
    assert body["false_fail_rate"]["ci95"] == pytest.approx(_oracle_ci(failed, 3), abs=1e-6)
    for d in draws:
        assert d["passed"] == (not d["failed_items"])
        assert {s: len(v["members"]) for s, v in d["split"].items()} == {
            "identity-0": 4, "identity-1": 4}
    # the identity probe leaves the model unchanged: its amplification checks never fail
    assert body["per_kind"]["amplification"]["failed"] == 0
    assert body["per_kind"]["extraction"] == "not checked"
    printed = capsys.readouterr().out
    assert "false-fail rate per scan" in printed
    assert "draw 2 (split seed 2, scan seed 2, resample seed 2)" in printed


def test_null_probe_delta_is_exactly_zero(tiny_reference: Path) -> None:
    report = run_scan(ScanInputs(str(tiny_reference / "model"), str(tiny_reference / "data")),
                      make_config(attacks=("loss", "pia"), probes=("identity",), bootstrap=50,
                                  extraction_samples=0, max_amplification=0.0))
    probed = [row for row in report.results if row.probe == "identity"]
    assert len(probed) == 2 * 3  # two attacks × (two domains + pooled)
    for row in probed:
        assert row.delta_auc == 0.0 and row.delta_auc_ci == (0.0, 0.0)
        assert not any(r.kind == "amplification" for r in row.reasons)


def test_identity_probe_is_never_a_default_or_swept() -> None:
    config = make_config()
    assert "identity" not in config.probes and "identity" not in config.sweep_space


@pytest.mark.parametrize(("extra", "message"), [
    (["--draws", "0"], "expected a positive integer"),
    (["--draws", "2", "--known-images", "{tmp}"], "must hold only the audit's own images"),
])
def test_bad_options_are_usage_errors(tiny_reference: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], extra: list[str],
                                      message: str) -> None:
    data = _audit_folder(tmp_path / "data", {"a": (2, 8)})
    argv = ["null-audit", str(tiny_reference / "model"), "--data", str(data),
            *(e.format(tmp=tmp_path) for e in extra)]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors exit 4 from the parser
        code = exit.code
    assert code == 4
    assert message in capsys.readouterr().err


def test_too_few_nonmembers_is_a_usage_error_naming_the_domain(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _audit_folder(tmp_path / "data", {"plenty": (2, 12), "short": (2, 7)})
    before = _tree_hash(data)
    code = main(["null-audit", str(tiny_reference / "model"), "--data", str(data),
                 "--draws", "2", *FAST])
    err = capsys.readouterr().err
    assert code == 4
    assert f"≥ {MIN_NONMEMBERS} non-members" in err and "short (7)" in err
    assert "plenty" not in err
    assert _tree_hash(data) == before


def test_config_file_reports_and_compare_are_dropped_with_a_note() -> None:
    config, notes = null_config(make_config(report_json="r.json", compare="prev.json",
                                            compare_fail="auc:+0.02"))
    assert config.reports == {} and config.compare is None and config.compare_fail is None
    assert len(notes) == 2 and "report_json" in notes[0] and "compare" in notes[1]
    assert null_config(make_config()) == (make_config(), [])


# ---- seeds, distinct splits, checks not gated at this n, the three outcomes ---------------------


def test_each_draw_scans_with_its_own_scan_and_resample_seed(
        tiny_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the old null audit re-split with seed + i but scanned every draw with the same seed
    import s2l_scan.session as session

    seen: list[tuple[int, int]] = []
    real_run = session.run

    def spy(plan, progress):  # type: ignore[no-untyped-def]
        seen.append((plan.config.seed, plan.config.resample_seed))
        return real_run(plan, progress)

    monkeypatch.setattr(session, "run", spy)
    data = _audit_folder(tmp_path / "data", {"identity-0": (2, 8)})
    out = tmp_path / "null.json"
    assert main(["null-audit", str(tiny_reference / "model"), "--data", str(data), "--draws",
                 "2", "--seed", "3", *FAST, "--report-json", str(out)]) == 0
    assert seen == [(3, 3), (4, 4)]
    draws = json.loads(out.read_text())["draws"]
    assert [(d["seed"], d["scan_seed"], d["resample_seed"]) for d in draws] == [
        (3, 3, 3), (4, 4, 4)]


def test_draw_config_moves_a_set_bootstrap_seed_with_the_draw() -> None:
    from s2l_scan.null_audit import draw_config

    config = draw_config(make_config(seed=5, bootstrap_seed=9, evidence_dir="ev"), 2)
    assert (config.seed, config.bootstrap_seed, config.resample_seed) == (7, 11, 11)
    assert config.evidence_dir == str(Path("ev") / "draw-2")
    assert draw_config(make_config(seed=5), 0).resample_seed == 5


def _split(domain: str, members: tuple[str, ...]) -> tuple:  # type: ignore[type-arg]
    from s2l_scan.null_audit import NullSplit

    return (NullSplit(domain, members, ("z",)),)


def test_recurrence_counts_distinct_splits_among_the_draws() -> None:
    from s2l_scan.null_audit import distinct_splits

    same, other = _split("a", ("x", "y")), _split("a", ("x", "w"))
    draws = [DrawResult(i, i, False, ("c",), {"auc": ("c",)}, {"auc": 1}, ("c",), splits)
             for i, splits in enumerate([same, same, other])]
    draws.append(DrawResult(3, 3, True, (), {}, {"auc": 1}, ("c",), same))
    assert distinct_splits(draws) == 2
    recurrence = per_check_rates(draws)["c"]
    assert not isinstance(recurrence, str)
    # failed in 3 of 4 draws, but those 4 draws tested only 2 different splits
    assert (recurrence.rate.count, recurrence.rate.draws, recurrence.distinct_splits) == (3, 4, 2)


def _ungated_row(domain: str) -> ResultRow:
    # 4 per class in two domains (identity-0, pooled): the gate marks the rows underpowered
    # (no AUC, nor the memorized few, could be significant), and 1 % FPR is not estimable
    row = make_row(domain=domain, n=4)
    row.tpr_estimates = [{"alpha": 0.01, "estimable": False, "reason": "n too small"}]
    return row


def test_a_check_that_cannot_fail_at_this_n_is_not_gated_not_zero_of_n() -> None:
    from s2l_scan.null_audit import NOT_GATED, kind_status

    report = make_report([_ungated_row("identity-0"), _ungated_row("pooled")], extraction=None)
    decide(report, make_config())
    assert all(row.underpowered for row in report.results)
    result = draw_result(0, 0, report)
    # the old count called each row's AUC and TPR checks made (0 failures of 1 draw)
    assert result.checks_by_kind["auc"] == 0 and result.checks_by_kind["tpr"] == 0
    assert result.made_by_kind["auc"] == 2
    assert set(result.ungated) == {r.item_id for r in report.results}
    rates = per_kind_rates([result, result])
    assert rates["auc"] is None and rates["tpr"] is None
    assert kind_status([result], "auc") == NOT_GATED
    assert kind_status([result], "extraction") == "not checked"
    assert set(per_check_rates([result]).values()) == {NOT_GATED}


def test_an_estimable_tpr_is_gated_and_an_underpowered_auc_not() -> None:
    row = _ungated_row("identity-0")
    row.tpr_estimates = [{"alpha": 0.01, "estimable": True, "tpr": 0.0, "tpr_ci": (0.0, 0.2),
                          "achieved_fpr": 0.01}]
    report = make_report([row, _ungated_row("pooled")], extraction=None)
    decide(report, make_config())
    assert all(r.underpowered for r in report.results)
    result = draw_result(0, 0, report)
    assert result.checks_by_kind["tpr"] == 1 and result.checks_by_kind["auc"] == 0
    assert result.ungated == (report.results[1].item_id,)


def _outcome_draw(i: int, outcome: str) -> DrawResult:
    failed = ("c",) if outcome == "failed" else ()
    return DrawResult(i, i, outcome != "failed", failed, {"auc": failed} if failed else {},
                      {"auc": 1}, ("c",), outcome=outcome)


def test_inconclusive_draws_are_counted_apart_from_failed_and_passed() -> None:
    from s2l_scan.null_audit import outcome_rates

    draws = [_outcome_draw(i, o) for i, o in enumerate(
        ["failed", "inconclusive", "inconclusive", "passed", "inconclusive"])]
    rates = outcome_rates(draws)
    assert {k: (r.count, r.draws) for k, r in rates.items()} == {
        "failed": (1, 5), "inconclusive": (3, 5), "passed": (1, 5)}
    assert per_scan_rate(draws).count == 1  # the false-fail rate is FAILED / draws
    assert rates["inconclusive"].ci == pytest.approx(_oracle_ci(3, 5), abs=1e-6)


def test_the_rate_ci_is_never_called_exact_and_says_the_draws_are_dependent() -> None:
    from s2l_scan.null_audit import CI_CAVEAT, NullAudit
    from s2l_scan.report.console import render_null_audit

    audit = NullAudit("m", "d", {"seed": 0}, tuple(
        _outcome_draw(i, o) for i, o in enumerate(["failed", "inconclusive", "passed"])))
    text = render_null_audit(audit, width=200)
    assert "exact" not in text.lower()
    assert CI_CAVEAT in text and "INCONCLUSIVE" in text
    body = audit.to_dict()
    assert body["false_fail_rate"]["ci95_note"] == CI_CAVEAT
    assert body["outcomes"]["inconclusive"]["count"] == 1
    import argparse

    from s2l_scan.cli import build_parser

    subparsers = next(a for a in build_parser()._actions
                      if isinstance(a, argparse._SubParsersAction))
    for command in ("null-audit", "leak-audit"):
        description = subparsers.choices[command].description
        assert "dependent" in description and "exact" not in description.lower()


# ---- the leak audit -----------------------------------------------------------------------------


def test_leak_subsets_take_n_members_and_n_nonmembers_each_from_its_own_folder(
        tmp_path: Path) -> None:
    from s2l_scan.null_audit import subsample_members

    data = _audit_folder(tmp_path / "data", {"a": (6, 7), "b": (5, 9)})
    before = _tree_hash(data)
    files = list_domain_files(data)
    with NullAuditFolder(files, data, tmp_path, members=True) as folder:
        splits = folder.lay_out(subsample_members(files, 4, seed=1))
        loaded = load_audit_data(folder.root, 32)
        for split, domain in zip(splits, files, strict=True):
            assert len(split.members) == len(split.nonmembers) == 4
            assert split.source == "members"
            # the scanned members are the user's members, byte for byte
            member_bytes = {p.read_bytes() for p in domain.members}
            for name in split.members:
                assert (folder.root / split.domain / "members" / name).read_bytes() in member_bytes
        assert {d.name: len(d.members) for d in loaded.domains} == {"a": 4, "b": 4}
        again = subsample_members(files, 4, seed=1)
        assert again == splits and subsample_members(files, 4, seed=2) != splits
        # at n = a domain's whole pool of members every draw holds the same members
        assert len({subsample_members(files, 5, s)[1].members for s in range(4)}) == 1
        assert len({subsample_members(files, 5, s)[1].nonmembers for s in range(4)}) > 1
    assert _tree_hash(data) == before


def test_leak_audit_runs_and_reports_three_rates_by_size(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "leak.json"
    data = tiny_reference / "data"
    before = _tree_hash(data)
    code = main(["leak-audit", str(tiny_reference / "model"), "--data", str(data),
                 "--sizes", "4,6", "--draws", "2", *FAST, "--report-json", str(out)])
    assert code == 0
    assert _tree_hash(data) == before
    body = json.loads(out.read_text())
    assert set(body["sizes"]) == {"4", "6"}
    for size, entry in body["sizes"].items():
        outcomes = entry["outcomes"]
        assert sum(outcomes[k]["count"] for k in ("failed", "inconclusive", "passed")) == 2
        for draw in entry["draws"]:
            assert {len(s["members"]) for s in draw["split"].values()} == {int(size)}
        assert [d["scan_seed"] for d in entry["draws"]] == [0, 1]
    # n = 6 is the tiny reference's whole pool: both draws hold the same images
    assert body["sizes"]["6"]["distinct_splits"] == 1
    printed = capsys.readouterr().out
    assert "PASSED (false pass)" in printed and "subsets of one pool" in printed


@pytest.mark.parametrize(("sizes", "message"), [
    ("4,7", "identity-0 has 6 / 6"), ("1,4", "distinct integers ≥ 2"),
    ("4,4", "distinct integers ≥ 2"), ("a", "comma-separated integers")])
def test_leak_audit_bad_sizes_are_usage_errors(tiny_reference: Path,
                                               capsys: pytest.CaptureFixture[str], sizes: str,
                                               message: str) -> None:
    try:
        code = main(["leak-audit", str(tiny_reference / "model"), "--data",
                     str(tiny_reference / "data"), "--sizes", sizes, "--draws", "1", *FAST])
    except SystemExit as exit:
        code = exit.code
    assert code == 4
    assert message in capsys.readouterr().err
