"""Regression gate against a previous release's JSON report (in the spirit of pytest-benchmark).

``compare_fail = "auc:+0.02,extracted:+0"`` fails a check whose metric rose by more than its
allowance since the previous report. An allowance is absolute (``+0.02``) or relative to the
previous value (``+5%``). Result rows are matched by (attack, probe, domain), extraction records
by (probe, domain). Rows only in one of the two reports are listed (``new`` / ``missing``) but
never fail: a changed selection shows in the echoed config.

>>> [a.text for a in parse_allowances("auc:+0.02, extracted:0")]
['auc:+0.02', 'extracted:+0']
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from s2l_scan.checks import CheckId
from s2l_scan.errors import UsageError
from s2l_scan.report.model import ComparisonCheck


@dataclass(frozen=True)
class Metric:
    """A number the regression gate can compare between two reports."""

    name: str
    help: str
    kind: str  # "row": read from a result row; "extraction": from an extraction record
    read: Callable[[dict[str, Any]], float | None]  # None: not measured in that report


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a comparable metric; names are unique."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


register_metric(Metric("auc", "calibrated AUC of a result row", "row", lambda row: row["auc"]))
register_metric(Metric("tpr", "calibrated TPR at 1% FPR of a result row (where estimable)",
                       "row", lambda row: row["tpr_at_1pct_fpr"]))
register_metric(Metric("asr", "calibrated balanced accuracy of a result row", "row",
                       lambda row: row["asr"]))
register_metric(Metric("extracted", "distinct training images extracted ((k, ℓ2, δ)-eidetic) "
                       "by an extraction record (probe, domain)",
                       "extraction", lambda record: record["extracted"]))


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


def _row_item(attack: str, probe: str | None, domain: str) -> str:
    return str(CheckId.row(attack, probe, domain))


def _extraction_item(probe: str | None, domain: str) -> str:
    return str(CheckId.extraction(probe, domain))


def compare(previous: dict[str, Any], current: dict[str, Any],
            allowances: Iterable[Allowance] = ()) -> list[ComparisonCheck]:
    """The metrics of ``current`` beside ``previous`` (both ``ScanReport.to_dict()``), one
    check per compared item and metric; :func:`s2l_scan.gate.judge_comparison` decides which
    regressed. Without allowances the point AUC is compared for information only.
    """
    chosen = {a.metric: a for a in allowances}
    metrics: list[tuple[Metric, Allowance | None]] = (
        [(METRICS[name], allowance) for name, allowance in chosen.items()]
        if chosen else [(METRICS["auc"], None)])
    checks: list[ComparisonCheck] = []
    for metric, allowance in metrics:
        if metric.kind == "row":
            checks += _compare_rows(previous["results"], current["results"], metric, allowance)
        else:
            checks += _compare_extraction(previous, current, metric, allowance)
    return checks


def _check(item: str, metric: Metric, key: tuple[str | None, str | None, str],
           previous: float | None, current: float | None,
           allowance: Allowance | None) -> ComparisonCheck:
    status, change = "new" if previous is None else "missing", None
    if previous is not None and current is not None:
        change, status = current - previous, "ok"
    return ComparisonCheck(item=item, metric=metric.name, attack=key[0], probe=key[1],
                           domain=key[2], previous=previous, current=current, change=change,
                           allowance=None if allowance is None else allowance.text,
                           status=status)


def _compare_rows(previous: list[dict[str, Any]], current: list[dict[str, Any]], metric: Metric,
                  allowance: Allowance | None) -> list[ComparisonCheck]:
    def key(row: dict[str, Any]) -> tuple[str, str | None, str]:
        return row["attack"], row["probe"], row["domain"]

    before = {key(row): row for row in previous}
    now = {key(row): row for row in current}
    checks = []
    for k in [*now, *(k for k in before if k not in now)]:
        old, new = before.get(k), now.get(k)
        checks.append(_check(_row_item(*k), metric, k, _read(metric, old), _read(metric, new),
                             allowance))
    return checks


def _read(metric: Metric, item: dict[str, Any] | None) -> float | None:
    value = None if item is None else metric.read(item)
    return None if value is None else float(value)


def _compare_extraction(previous: dict[str, Any], current: dict[str, Any], metric: Metric,
                        allowance: Allowance | None) -> list[ComparisonCheck]:
    def counts(records: list[dict[str, Any]]) -> dict[tuple[str | None, str], float]:
        return {(r.get("probe"), r.get("domain", "all")): float(metric.read(r) or 0)
                for r in records}

    now = counts(current.get("extraction") or [])
    if "extraction" not in previous:  # a report from before extraction was measured
        return [ComparisonCheck(item=_extraction_item(None, "all"), metric=metric.name,
                                attack=None, probe=None, domain="all", previous=None,
                                current=sum(now.values()), change=None,
                                allowance=None if allowance is None else allowance.text,
                                status="no-baseline")]
    before = counts(previous["extraction"])
    return [_check(_extraction_item(*k), metric, (None, *k), before.get(k), now.get(k), allowance)
            for k in [*now, *(k for k in before if k not in now)]]
