"""The scan's result as plain data. Renderers (console, JSON, ...) only read these objects."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2l_scan.checks import Check, CheckId, Outcome, Reason, combine
from s2l_scan.errors import UsageError

SCHEMA_VERSION = "3"
"""3: every check carries an ``outcome`` (passed, failed, inconclusive) and its reasons as
:class:`~s2l_scan.checks.Reason` objects; 2 had ``passed`` booleans and reason strings (still
read: :func:`s2l_scan.report.files.report_from_dict`)."""


def _threshold(config: dict[str, Any] | None, key: str) -> str:
    return f"{None if config is None else config.get(key)}"


@dataclass
class ResultRow:
    """One (attack, probe, domain) measurement with everything needed to recompute it.

    ``auc`` is the **calibrated** (cross-fitted) AUC: the score's direction, and the candidate
    among the attack's variants (e.g. SecMI's compared timestep), are chosen on one half of the
    samples and measured on the other, halves swapped (``choices``). ``auc_raw`` is the paper's
    fixed-sign AUC of the attack's own score on all samples. TPRs at 1 % / 0.1 % FPR are None
    where the calibration half cannot estimate that FPR; ``tpr_estimates`` says why and gives
    the TPR at the lowest FPR it can estimate.
    """

    attack: str
    probe: str | None
    domain: str  # a domain name, or "pooled"
    auc: float  # calibrated: direction and variant learned on a calibration half
    auc_ci: tuple[float, float]  # stratified bootstrap of the whole cross-fitted procedure
    auc_raw: float  # fixed sign ("higher = member"), the attack's own score, all samples
    tpr_at_1pct_fpr: float | None  # None: 1 % FPR is not estimable at this n (see estimates)
    tpr_at_01pct_fpr: float | None
    asr: float  # balanced accuracy: direction and threshold from the calibration half
    blind_auc: float
    blind_auc_ci: tuple[float, float]
    confounded: bool
    n_members: int
    n_nonmembers: int
    member_scores: list[float]
    nonmember_scores: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    choices: list[dict[str, Any]] = field(default_factory=list)  # per calibration half
    tpr_estimates: list[dict[str, Any]] = field(default_factory=list)  # 1 %, 0.1 %; CIs, reasons
    variant_auc: dict[str, float] = field(default_factory=dict)  # raw AUC, e.g. SecMI at t ± k
    variant_scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    unstable: bool = False  # the two calibration halves chose a different variant or sign
    p_value: float = 1.0  # permutation p of the calibrated AUC against "no signal"
    # family-wise adjusted: the domain's Westfall–Young step-down (shared label permutations
    # over every row of the domain), then across domains (gate.adjust_family)
    p_adjusted: float | None = None
    underpowered: bool = False  # the domain's attainable p cannot reach the membership alpha
    auc_upper: float | None = None  # one-sided 95 % upper bound; None: no bound at this n
    # the memorized few: test-half members above every calibration non-member (net of
    # non-members there), its family-wise p, and the member indices it flags
    top_members: dict[str, Any] | None = None
    delta_auc: float | None = None  # calibrated AUC(probe) − calibrated AUC(released)
    delta_auc_ci: tuple[float, float] | None = None
    delta_p_value: float | None = None  # one-sided paired-bootstrap p of "Δ ≤ 0"
    delta_p_adjusted: float | None = None  # H0: Δ ≤ max_amplification, family-wise
    delta_upper: float | None = None  # one-sided 95 % upper bound of Δ; None: no bound at this n
    outcome: Outcome = Outcome.INCONCLUSIVE  # the gate's (gate.judge_row); unjudged: not shown
    reasons: list[Reason] = field(default_factory=list)

    gating = True  # a row's AUC check always gates (its TPR check only where estimable)

    @property
    def passed(self) -> bool:
        """Whether the gate showed this check safe (``outcome`` passed)."""
        return self.outcome is Outcome.PASSED

    def properties(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """What JUnit and SARIF show of this check: ``observed_*`` measured, ``threshold_*``
        the gate's limits (from the report's ``config``)."""
        out = {"outcome": str(self.outcome), "observed_auc": f"{self.auc:.6g}",
               "observed_auc_ci": f"{self.auc_ci[0]:.6g},{self.auc_ci[1]:.6g}",
               "observed_auc_raw": f"{self.auc_raw:.6g}",
               "observed_blind_auc": f"{self.blind_auc:.6g}",
               "threshold_max_auc": _threshold(config, "max_auc"),
               "threshold_max_tpr_at_1pct_fpr": _threshold(config, "max_tpr")}
        if self.tpr_at_1pct_fpr is not None:
            out["observed_tpr_at_1pct_fpr"] = f"{self.tpr_at_1pct_fpr:.6g}"
        return out

    def candidates(self) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Members' and non-members' scores of every candidate: the attack's own (key "")
        and its variants."""
        members = {"": self.member_scores, **{k: v["members"]
                                              for k, v in self.variant_scores.items()}}
        nonmembers = {"": self.nonmember_scores, **{k: v["nonmembers"]
                                                    for k, v in self.variant_scores.items()}}
        return members, nonmembers

    @property
    def check_id(self) -> CheckId:
        """The row's check, e.g. ``baselines::secmi[identity-3]``."""
        return CheckId.row(self.attack, self.probe, self.domain)

    @property
    def item_id(self) -> str:
        """Readable id, e.g. ``baselines::secmi[identity-3]``."""
        return str(self.check_id)


@dataclass
class ExtractionRecord:
    """Extraction on one domain by the released model (``probe`` None) or a probe's copy."""

    probe: str | None
    domain: str
    n_generated: int
    # distinct known training images extracted ((k, ℓ2, δ)-eidetic): what max_extracted gates
    extracted: int
    matched_generations: int  # generations within δ of an extracted training image
    # generations within δ of a known non-member: never extraction, a false-positive indicator
    nonmember_matches: int
    # one per (generation, extracted image): {"generated_index", "known", "distance"[, "evidence"]}
    matches: list[dict[str, Any]]
    nearest_distance: float | None  # the closest any generation came to a known image
    settings: dict[str, Any]
    outcome: Outcome = Outcome.INCONCLUSIVE  # the gate's (gate.judge_extraction)
    reasons: list[Reason] = field(default_factory=list)

    gating = True

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    def properties(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"outcome": str(self.outcome), "observed_extracted": str(self.extracted),
                "observed_matched_generations": str(self.matched_generations),
                "observed_nonmember_matches": str(self.nonmember_matches),
                "threshold_max_extracted": _threshold(config, "max_extracted")}

    @property
    def check_id(self) -> CheckId:
        """The record's check, e.g. ``extraction::released[identity-3]``."""
        return CheckId.extraction(self.probe, self.domain)

    @property
    def item_id(self) -> str:
        return str(self.check_id)


def largest_value(prompts: list[dict[str, Any]]) -> float:
    """The largest ``value`` over a memorization record's prompts (0 with none), for the record
    and for a report read back as JSON alike."""
    return max((float(prompt["value"]) for prompt in prompts), default=0.0)


@dataclass
class MemorizationRecord:
    """Prompt-level memorization of one domain's prompts, found with no known image: Wen et
    al.'s text-guidance magnitude (``detector`` "wen") or Carlini et al.'s clique of near-copy
    generations ("clique"). ``prompts``: one entry per prompt (the domain's and each distinct
    caption) with its ``value`` (magnitude, or clique size), what else was measured, and the
    gate's ``flagged`` (absent when not gated)."""

    detector: str  # a name of s2l_scan.detectors: "wen" | "anisotropy" | "clique"
    domain: str
    prompts: list[dict[str, Any]]
    threshold: float | None  # the gate's: max_text_guidance, or clique_size; None: not gated
    settings: dict[str, Any]
    outcome: Outcome = Outcome.INCONCLUSIVE  # the gate's (gate.judge_memorization)
    reasons: list[Reason] = field(default_factory=list)

    @property
    def gating(self) -> bool:
        """A record without a threshold is reported, not gated."""
        return self.threshold is not None

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    def properties(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"outcome": str(self.outcome), "gating": str(self.gating).lower(),
                "largest": f"{self.largest:.6g}",
                "threshold": "" if self.threshold is None else f"{self.threshold:g}"}

    @property
    def largest(self) -> float:
        """The largest value over the domain's prompts (0 with none)."""
        return largest_value(self.prompts)

    @property
    def flagged(self) -> list[dict[str, Any]]:
        """The prompts the gate flagged (its per-prompt ``flagged`` stamp); none ungated."""
        return [prompt for prompt in self.prompts if prompt.get("flagged")]

    @property
    def check_id(self) -> CheckId:
        """The record's check, e.g. ``memorization::wen[identity-3]``."""
        return CheckId.memorization(self.detector, self.domain)

    @property
    def item_id(self) -> str:
        return str(self.check_id)


@dataclass
class ComparisonCheck:
    """One metric of one check against the previous release's report (the regression gate)."""

    item: str  # the check id compared
    metric: str
    attack: str | None
    probe: str | None
    domain: str
    previous: float | None
    current: float | None
    change: float | None
    allowance: str | None  # canonical text, e.g. "auc:+0.02"; None: compared for information
    status: str  # ok | regressed | new | missing (dropped since the previous report) | no-baseline
    passed: bool = True
    reasons: list[Reason] = field(default_factory=list)  # the gate's, when it failed

    gating = True

    @property
    def check_id(self) -> CheckId:
        return CheckId.parse(self.item)

    @property
    def item_id(self) -> str:
        return self.item

    @property
    def outcome(self) -> Outcome:
        """A regression check shows or does not show a regression: failed or passed."""
        return Outcome.PASSED if self.passed else Outcome.FAILED

    def properties(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"outcome": str(self.outcome), "metric": self.metric, "status": self.status,
                "previous": self.previous, "current": self.current, "change": self.change}


@dataclass
class ScanReport:
    """Everything one scan found, and the verdict."""

    model: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    results: list[ResultRow]
    packages: dict[str, str]
    timestamps: dict[str, str]
    extraction: list[ExtractionRecord] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    # regression checks against a previous report (s2l_scan.report.compare); empty without one
    comparison: list[ComparisonCheck] = field(default_factory=list)
    # configuration keys that differ from the previous report: {"key", "previous", "current"}
    config_changes: list[dict[str, Any]] = field(default_factory=list)
    # prompt-level memorization per detector and domain; empty unless turned on
    memorization: list[MemorizationRecord] = field(default_factory=list)

    def checks(self) -> Iterator[Check]:
        """Every judged check, in report order: rows, extraction records, memorization
        records, then the regression checks of a compare."""
        yield from self.results
        yield from self.extraction
        yield from self.memorization
        yield from self.comparison

    @property
    def outcome(self) -> Outcome:
        """FAILED if any check failed, PASSED only if every gating check passed,
        INCONCLUSIVE otherwise (:func:`s2l_scan.checks.combine`)."""
        return combine((check.outcome, check.gating) for check in self.checks())

    @property
    def passed(self) -> bool:
        """True only when every gating check showed safety (``outcome`` passed)."""
        return self.outcome is Outcome.PASSED

    @property
    def failed_items(self) -> list[str]:
        """The ids of every failed check, in report order (a check dropped or regressed on two
        metrics, or failed on its own and regressed: once)."""
        return list(dict.fromkeys(str(check.check_id) for check in self.checks()
                                  if check.outcome is Outcome.FAILED))

    @property
    def inconclusive_items(self) -> list[str]:
        """The ids of the gating checks that are inconclusive (none failed on that id)."""
        failed = set(self.failed_items)
        return [item for item in dict.fromkeys(
            str(check.check_id) for check in self.checks()
            if check.gating and check.outcome is Outcome.INCONCLUSIVE) if item not in failed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; key order is stable so identical scans give identical files."""
        body = asdict(self)
        for key in ("results", "extraction", "memorization"):
            for record in body[key]:
                record["outcome"] = str(record["outcome"])
        for check, record in zip(self.comparison, body["comparison"], strict=True):
            record["outcome"] = str(check.outcome)
        outcome = self.outcome
        body["verdict"] = {"outcome": str(outcome), "passed": outcome is Outcome.PASSED,
                           "failed_items": self.failed_items,
                           "inconclusive_items": self.inconclusive_items}
        return body


def check_writable(path: Path) -> None:
    """Fail early (a usage error) when a report could not be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"report path {path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"report path {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"report path {path}: folder {parent} is not writable")
    # os.access says yes to root on read-only or special file systems (/proc, a read-only
    # mount): create and drop a file there, so the scan fails before any compute is spent
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise UsageError(f"report path {path}: folder {parent} is not writable "
                         f"({error.strerror or error})") from None
