"""Regression gate against a previous release's JSON report (in the spirit of pytest-benchmark).

``compare_fail = "auc:+0.02,extracted:+0"`` fails a check whose metric rose by more than its
allowance since the previous report. An allowance is absolute (``+0.02``) or relative to the
previous value (``+5%``). Result rows are matched by (attack, probe, domain), extraction records
by (probe, domain), memorization records by (detector, domain). Every check only in one of the
two reports is listed once, whatever the metrics: ``new``, or ``missing`` (dropped: the
previous report had it, this one does not), which fails the compare unless
``allow_dropped_checks`` (a scan that quietly runs fewer checks is no evidence of no
regression). Configuration keys that changed are listed by
:func:`config_changes`; they never fail on their own.

>>> [a.text for a in parse_allowances("auc:+0.02, extracted:0")]
['auc:+0.02', 'extracted:+0']
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from s2l_scan.checks import CheckId, Reason
from s2l_scan.detectors import DETECTORS
from s2l_scan.errors import UsageError
from s2l_scan.report.model import ComparisonCheck, largest_value


@dataclass(frozen=True)
class Metric:
    """A number the regression gate can compare between two reports."""

    name: str
    help: str
    kind: str  # "row": a result row; "extraction": an extraction record; "memorization/D":
    #            a memorization record of detector D (wen, clique)
    read: Callable[[dict[str, Any]], float | None]  # None: not measured in that report


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a comparable metric; names are unique."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def _largest(record: dict[str, Any]) -> float:
    """A memorization record's largest value over its prompts, as
    :attr:`~s2l_scan.report.model.MemorizationRecord.largest`."""
    return largest_value(record["prompts"])


register_metric(Metric("auc", "calibrated AUC of a result row", "row", lambda row: row["auc"]))
register_metric(Metric("tpr", "calibrated TPR at 1% FPR of a result row (where estimable)",
                       "row", lambda row: row["tpr_at_1pct_fpr"]))
register_metric(Metric("asr", "calibrated balanced accuracy of a result row", "row",
                       lambda row: row["asr"]))
register_metric(Metric("extracted", "distinct training images extracted ((k, ℓ2, δ)-eidetic) "
                       "by an extraction record (probe, domain)",
                       "extraction", lambda record: record["extracted"]))
for _detector in DETECTORS.values():  # text_guidance, anisotropy, clique
    register_metric(Metric(_detector.metric, f"largest {_detector.measures} over a domain's "
                           f"prompts (memorization::{_detector.name}, {_detector.authors})",
                           f"memorization/{_detector.name}", _largest))


@dataclass(frozen=True)
class Allowance:
    """How much a metric may rise: ``amount`` absolute, or a fraction of the previous value."""

    metric: str
    amount: float
    relative: bool = False

    @property
    def text(self) -> str:
        """Canonical form, e.g. ``auc:+0.02`` or ``tpr:+10%``."""
        number = self.amount * 100 if self.relative else self.amount
        return f"{self.metric}:+{number:g}{'%' if self.relative else ''}"

    def limit(self, previous: float) -> float:
        """The largest rise allowed from ``previous``."""
        return self.amount * abs(previous) if self.relative else self.amount


_ALLOWANCE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*\+?\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
                        r"\s*(%?)\s*$")


def parse_allowances(text: str) -> tuple[Allowance, ...]:
    """Parse ``metric:+amount[%]`` items separated by commas (usage errors that teach)."""
    allowances: dict[str, Allowance] = {}
    for part in (p for p in text.split(",") if p.strip()):
        match = _ALLOWANCE.match(part)
        if match is None:
            raise UsageError(f"compare_fail item {part.strip()!r}: expected METRIC:+AMOUNT or "
                             f"METRIC:+PERCENT%, e.g. 'auc:+0.02,extracted:+0'; metrics: "
                             f"{', '.join(METRICS)}")
        name, number, percent = match.groups()
        if name not in METRICS:
            near = difflib.get_close_matches(name, METRICS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UsageError(f"compare_fail: unknown metric {name!r}{hint} Known metrics: "
                             + ", ".join(f"{m.name} ({m.help})" for m in METRICS.values()))
        if name in allowances:
            raise UsageError(f"compare_fail: metric {name!r} is given twice")
        amount = float(number) / (100 if percent else 1)
        if not math.isfinite(amount):
            raise UsageError(f"compare_fail item {part.strip()!r}: the amount must be finite")
        allowances[name] = Allowance(name, amount, relative=bool(percent))
    if not allowances:
        raise UsageError(f"compare_fail {text!r} names no metric; e.g. 'auc:+0.02,extracted:+0'")
    return tuple(allowances.values())


def canonical(allowances: Iterable[Allowance]) -> str:
    """The comma-separated canonical text of ``allowances`` (what the report echoes)."""
    return ",".join(allowance.text for allowance in allowances)


def compare(previous: dict[str, Any], current: dict[str, Any],
            allowances: Iterable[Allowance] = ()) -> list[ComparisonCheck]:
    """The metrics of ``current`` beside ``previous`` (both ``ScanReport.to_dict()``): one
    check per item in both and metric, then one per item only in ``current`` (``new``) or only
    in ``previous`` (``missing``), on its kind's first metric (auc, extracted, text_guidance,
    clique). Memorization records (``memorization::wen[domain]``, ``...clique[...]``) compare
    by (detector, domain); a previous report without a ``memorization`` list (from before the
    detectors) lists the current ones as new.
    :func:`s2l_scan.gate.judge_comparison` decides which fail. Without allowances the point AUC
    is compared for information only.
    """
    chosen = {a.metric: a for a in allowances}
    metrics: list[tuple[Metric, Allowance | None]] = (
        [(METRICS[name], allowance) for name, allowance in chosen.items()]
        if chosen else [(METRICS["auc"], None)])
    rows = _rows(previous), _rows(current)
    has_extraction = "extraction" in previous  # False: a report from before extraction
    records = _records(previous), _records(current)
    checks: list[ComparisonCheck] = []
    for metric, allowance in metrics:
        if metric.kind == "row":
            checks += _compare_both(*rows, metric, allowance, _row_item)
        elif metric.kind.startswith("memorization/"):
            detector = metric.kind.removeprefix("memorization/")
            checks += _compare_both(_memorized(previous, detector), _memorized(current, detector),
                                    metric, allowance, _memorization_item(detector))
        elif has_extraction:
            checks += _compare_both(*records, metric, allowance, _extraction_item)
        else:
            checks.append(_no_baseline(records[1], metric, allowance))
    checks += _membership(*rows, METRICS["auc"], _row_item)
    if has_extraction:
        checks += _membership(*records, METRICS["extracted"], _extraction_item)
    for metric in METRICS.values():
        if metric.kind.startswith("memorization/"):
            detector = metric.kind.removeprefix("memorization/")
            checks += _membership(_memorized(previous, detector), _memorized(current, detector),
                                  metric, _memorization_item(detector))
    return checks


Key = tuple[str | None, str | None, str]  # (attack, probe, domain); attack None: extraction


def _rows(report: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    return {(row["attack"], row["probe"], row["domain"]): row for row in report["results"]}


def _records(report: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    return {(None, r.get("probe"), r.get("domain", "all")): r
            for r in report.get("extraction") or []}


def _memorized(report: dict[str, Any], detector: str) -> dict[Key, dict[str, Any]]:
    """A report's memorization records of ``detector``, by (None, None, domain)."""
    return {(None, None, record["domain"]): record for record in report.get("memorization") or []
            if record["detector"] == detector}


def _memorization_item(detector: str) -> Callable[[Key], str]:
    def item(key: Key) -> str:
        return str(CheckId.memorization(detector, key[2]))

    return item


def _row_item(key: Key) -> str:
    return str(CheckId.row(str(key[0]), key[1], key[2]))


def _extraction_item(key: Key) -> str:
    return str(CheckId.extraction(key[1], key[2]))


def _check(item: str, metric: Metric, key: Key, previous: float | None,
           current: float | None, allowance: Allowance | None, status: str) -> ComparisonCheck:
    change = None if previous is None or current is None else current - previous
    return ComparisonCheck(item=item, metric=metric.name, attack=key[0], probe=key[1],
                           domain=key[2], previous=previous, current=current, change=change,
                           allowance=None if allowance is None else allowance.text,
                           status=status)


def _compare_both(before: dict[Key, dict[str, Any]], now: dict[Key, dict[str, Any]],
                  metric: Metric, allowance: Allowance | None,
                  item: Callable[[Key], str]) -> list[ComparisonCheck]:
    return [_check(item(key), metric, key, _read(metric, before[key]), _read(metric, now[key]),
                   allowance, "ok") for key in now if key in before]


def _membership(before: dict[Key, dict[str, Any]], now: dict[Key, dict[str, Any]],
                metric: Metric, item: Callable[[Key], str]) -> list[ComparisonCheck]:
    new = [_check(item(key), metric, key, None, _read(metric, now[key]), None, "new")
           for key in now if key not in before]
    return new + [_check(item(key), metric, key, _read(metric, before[key]), None, None,
                         "missing") for key in before if key not in now]


def _read(metric: Metric, item: dict[str, Any]) -> float | None:
    value = metric.read(item)
    return None if value is None else float(value)


def _no_baseline(now: dict[Key, dict[str, Any]], metric: Metric,
                 allowance: Allowance | None) -> ComparisonCheck:
    total = sum(float(metric.read(r) or 0) for r in now.values())
    return _check(_extraction_item((None, None, "all")), metric, (None, None, "all"), None,
                  total, allowance, "no-baseline")


# config keys that say where things are kept or written, or how to compare, not what is
# measured: a change there is no change of the scan
_BOOKKEEPING = ("compare", "compare_fail", "allow_dropped_checks", "cache", "cache_dir",
                "index_cache_dir", "evidence_dir", "probe_save_dir")


def config_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """The configuration keys whose value differs between two reports' ``config`` (bookkeeping
    keys and report files left out), as ``{"key", "previous", "current"}`` (None: absent).

    >>> config_changes({"max_auc": 0.6, "seed": 0}, {"max_auc": 0.7, "seed": 0})
    [{'key': 'max_auc', 'previous': 0.6, 'current': 0.7}]
    """
    before, now = json.loads(json.dumps(previous)), json.loads(json.dumps(current))
    keys = [*now, *(key for key in before if key not in now)]
    return [{"key": key, "previous": before.get(key), "current": now.get(key)} for key in keys
            if key not in _BOOKKEEPING and not key.startswith("report_")
            and before.get(key) != now.get(key)]


def summary(checks: Iterable[ComparisonCheck], changes: Iterable[dict[str, Any]],
            source: str, allowed: str | None, allow_dropped: bool) -> list[str]:
    """The comparison in plain lines: a count line, then each regression, dropped check, new
    check and configuration change (what a console prints)."""
    checks, changes = list(checks), list(changes)
    regressed = [c for c in checks if c.status == "regressed"]
    dropped = [c for c in checks if c.status == "missing"]
    new = [c for c in checks if c.status == "new"]
    lines = [f"compared with {source}: {len(regressed)} regression(s) past "
             f"{allowed or 'nothing (compare only)'}, {len(dropped)} dropped check(s)"
             f"{' (allowed)' if dropped and allow_dropped else ''}, {len(new)} new check(s), "
             f"{len(changes)} configuration change(s)"]
    lines += [f"  regressed {c.item}: {c.metric} {c.previous:.4g} → {c.current:.4g} "
              f"(+{c.change:.4g}, allowed {c.allowance})" for c in regressed]
    lines += [f"  dropped {c.item}" for c in dropped]
    lines += [f"  new {c.item}" for c in new]
    lines += [f"  config {change['key']}: {json.dumps(change['previous'])} → "
              f"{json.dumps(change['current'])}" for change in changes]
    return lines


def regression_reason(check: ComparisonCheck, source: str) -> Reason:
    """What rose, from what to what, by how much, and what was allowed (kind "regression"),
    or which check was dropped (kind "dropped")."""
    if check.status == "missing":
        return Reason("dropped", "allow_dropped_checks", None, None,
                      f"dropped: checked in the previous report {source} but not in this scan "
                      "(a scan that runs fewer checks cannot show there was no regression). "
                      "Restore the check, or accept it with --allow-dropped-checks (pytest: "
                      "--s2l-allow-dropped-checks; config: allow_dropped_checks = true)")
    return Reason("regression", "compare_fail", check.change, None, (
        f"{check.metric} rose from {check.previous:.4g} to {check.current:.4g} "
        f"(+{check.change:.4g}) since the previous report {source}; allowed "
        f"{check.allowance}"))
